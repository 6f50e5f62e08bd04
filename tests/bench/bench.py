# SPDX-License-Identifier: MIT
"""wave-bridge benchmarks (docs/benchmarks.md); run through scripts/bench.

Runs the real wave-sim and wave-bridged from a build directory, drives them
with tests/bench/bench-fanout.c and /proc, and reports RATIOS against a
baseline measured in the same run, as medians over rounds: the machine is
shared and noisy, so absolute times are printed for information and never
judged.

  python3 tests/bench/bench.py --build-dir build-bench --json out.json [--rounds 3] [--quick]
"""

import argparse
import json
import os
import platform
import shutil
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

API_KEY = 'wave_test_key'
START_TIMEOUT = 20.0
FANOUT_SIZES = (1, 100, 1000)
# Latency: a moderate rate, the same flood for every N and the baseline.
LAT_RATE = 100
LAT_COUNT = 400
EVENT_SIZE = 256
# Throughput: offered faster than anything here can take; about the same
# number of deliveries for every N so each run lasts seconds, not minutes.
TP_RATE = 100000
TP_DELIVERIES = 2000000
TP_MAX_COUNT = 20000
TP_MIN_COUNT = 1000
IDLE_CLIENTS = 1000
BYSTANDERS = 1000
# Slow client: events this big, this many queue bounds' worth of them.
SLOW_EVENT_SIZE = 4096
SLOW_FLOOD_FACTOR = 4
SLOW_RATE = 5000
SLOW_QUEUE_BYTES = (1048576, 4194304)
RSS_SAMPLE_INTERVAL = 0.005
# Responsiveness: a local client's ping while upstream floods as fast as
# wave-sim can send (issue 12: "answered within 50 ms p99").
FLOOD_RATE = 100000
FLOOD_COUNT = 200000
PING_INTERVAL = 0.01
SETTLE = 0.5
# The fan-out daemon: a queue bound above a whole throughput burst per
# client (TP_DELIVERIES / N events of ~270 B), so the throughput runs measure
# speed, not the drop policy (the bytes are shared between clients anyway).
FANOUT_LIMITS = {
    'MaxClients': '1100',
    'ClientQueueBytes': str(16 * 1024 * 1024),
    'SlowClientTimeout': '120',
}
MEMORY_LIMITS = {'MaxClients': '1100'}


def log(text):
    print(text, file=sys.stderr, flush=True)


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return float('nan')
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class Sim:
    def __init__(self, build_dir, workdir):
        self.proc = subprocess.Popen(
            [os.path.join(build_dir, 'sim', 'wave-sim'), '--port', '0', '--streams', '1',
             '--quiet', '--api-key', API_KEY],
            stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, 'sim.log'), 'ab'),
            text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        if not ready:
            self.stop()
            raise RuntimeError('wave-sim printed no URL')
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith('ws://'):
            self.stop()
            raise RuntimeError(f'wave-sim printed {self.url!r}')
        self.http = 'http://' + self.url[len('ws://'):].split('/', 1)[0]

    def request(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.http + path, data=data,
                                     method='GET' if body is None else 'POST')
        with urllib.request.urlopen(req, timeout=10) as answer:
            return json.loads(answer.read())

    def stats(self):
        return self.request('/sim/stats')

    def has_subscription(self, stream_id):
        return any(s.get('stream_id') == stream_id for s in self.stats().get('subscriptions', []))

    def flood_done(self, flood_id):
        for flood in self.stats().get('floods', []):
            if flood.get('flood') == flood_id:
                return flood.get('done') or flood.get('sent') == flood.get('count')
        return False

    def stop(self):
        stop_process(self.proc)


def stop_process(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Bridge:
    def __init__(self, build_dir, workdir, sim, limits, name):
        self.dir = tempfile.mkdtemp(prefix=name + '-', dir=workdir)
        self.socket_path = os.path.join(self.dir, 'wave.sock')
        key_path = os.path.join(self.dir, 'api-key')
        with open(os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600), 'w') as key:
            key.write(API_KEY)
        self.config_path = os.path.join(self.dir, 'wave-bridge.conf')
        with open(self.config_path, 'w') as config:
            config.write(f'[Upstream]\nURL={sim.url}\nAPIKeyFile={key_path}\n')
            config.write(f'[Socket]\nPath={self.socket_path}\n[Limits]\n')
            for key_name, value in limits.items():
                config.write(f'{key_name}={value}\n')
        self.log_path = os.path.join(self.dir, 'wave-bridged.log')
        self.proc = subprocess.Popen(
            [os.path.join(build_dir, 'daemon', 'wave-bridged'), f'--config={self.config_path}',
             '--bus=none'],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, 'ab'))
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(self.socket_path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f'wave-bridged did not start; see {self.log_path}')
            time.sleep(0.02)
        self.pid = self.proc.pid

    def rss_kib(self):
        with open(f'/proc/{self.pid}/status') as status:
            for line in status:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
        raise RuntimeError('no VmRSS')

    def status(self):
        """The bridge.status payload, over a fresh socket connection."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(self.socket_path)
            sock.sendall(b'{"type":"status"}\n')
            buffer = b''
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError('no bridge.status')
                buffer += chunk
                while b'\n' in buffer:
                    line, buffer = buffer.split(b'\n', 1)
                    message = json.loads(line)
                    if message.get('type') == 'bridge.status':
                        return message['payload']

    def stop(self):
        stop_process(self.proc)


class Bench:
    def __init__(self, args):
        self.args = args
        self.build_dir = os.path.abspath(args.build_dir)
        self.tool = os.path.join(self.build_dir, 'tests', 'bench-fanout')
        self.workdir = tempfile.mkdtemp(prefix='wave-bench-')
        self.stream_seq = 0
        self.raw = {'fanout': [], 'memory': [], 'slow_client': [], 'bystanders': [],
                    'responsiveness': []}

    def stream(self, tag):
        self.stream_seq += 1
        return f'bench_{tag}_{self.stream_seq}'

    def fanout_tool(self, sim, mode, stream_id, clients=1, rate=LAT_RATE, count=LAT_COUNT,
                    size=EVENT_SIZE, bridge=None, extra=()):
        cmd = [self.tool, f'--mode={mode}', f'--sim-url={sim.url}', f'--stream={stream_id}',
               f'--clients={clients}', f'--rate={rate}', f'--count={count}', f'--size={size}']
        if bridge is not None:
            cmd += [f'--socket={bridge.socket_path}', f'--pid={bridge.pid}']
        cmd += list(extra)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f'{" ".join(cmd)} failed: {result.stderr.strip()}')
        report = json.loads(result.stdout.strip().splitlines()[-1])
        if report['lost'] > 0:
            log(f'  note: {report["lost"]} of {report["expected"]} events not received '
                f'({report["dropped_events"]} reported dropped)')
        return report

    # ---- 1 + 3: fan-out latency, throughput, CPU ----------------------------
    def run_fanout(self):
        sim = Sim(self.build_dir, self.workdir)
        bridge = Bridge(self.build_dir, self.workdir, sim, FANOUT_LIMITS, 'fanout')
        try:
            for r in range(self.args.rounds):
                log(f'fan-out round {r + 1}/{self.args.rounds}')
                rnd = {'round': r + 1, 'latency': {}, 'throughput': {}}
                rnd['latency']['direct'] = self.fanout_tool(sim, 'direct', self.stream('d'))
                for n in self.sizes:
                    rnd['latency'][str(n)] = self.fanout_tool(
                        sim, 'bridge', self.stream('l'), clients=n, bridge=bridge)
                    log(f'  latency N={n}: p50 {rnd["latency"][str(n)]["lat_p50_us"]} us')
                rnd['throughput']['direct'] = self.fanout_tool(
                    sim, 'direct', self.stream('dt'), rate=TP_RATE, count=TP_MAX_COUNT)
                for n in self.sizes:
                    count = max(TP_MIN_COUNT, min(TP_MAX_COUNT, self.tp_deliveries // n))
                    rnd['throughput'][str(n)] = self.fanout_tool(
                        sim, 'bridge', self.stream('t'), clients=n, rate=TP_RATE, count=count,
                        bridge=bridge)
                    log(f'  throughput N={n}: '
                        f'{rnd["throughput"][str(n)]["deliveries_per_s"]:.0f} deliveries/s')
                self.raw['fanout'].append(rnd)
                # Bystanders: one flooded client while 1000 others sit on another stream.
                by = {'round': r + 1}
                by['alone'] = self.fanout_tool(sim, 'bridge', self.stream('a'), bridge=bridge)
                by['with'] = self.fanout_tool(
                    sim, 'bridge', self.stream('a'), bridge=bridge,
                    extra=[f'--bystanders={self.bystanders}',
                           f'--bystander-stream={self.stream("by")}'])
                self.raw['bystanders'].append(by)
        finally:
            bridge.stop()
            sim.stop()

    # ---- 6: a local ping while upstream floods -------------------------------
    def ping_rtts(self, socket_path, until):
        """Pings the bridge every PING_INTERVAL until until() is true; RTTs in ms."""
        rtts = []
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(socket_path)
        sock.settimeout(10)
        buffer = b''
        sequence = 0
        while not until():
            sequence += 1
            started = time.monotonic()
            sock.sendall(json.dumps({'type': 'ping', 'id': sequence}).encode() + b'\n')
            while True:
                while b'\n' not in buffer:
                    buffer += sock.recv(65536)
                line, buffer = buffer.split(b'\n', 1)
                if json.loads(line).get('id') == sequence:
                    break
            rtts.append((time.monotonic() - started) * 1000)
            time.sleep(PING_INTERVAL)
        sock.close()
        return rtts

    def run_responsiveness(self):
        sim = Sim(self.build_dir, self.workdir)
        bridge = Bridge(self.build_dir, self.workdir, sim, FANOUT_LIMITS, 'flood')
        try:
            for r in range(self.args.rounds):
                log(f'responsiveness round {r + 1}/{self.args.rounds}')
                idle_end = time.monotonic() + 1.0
                idle = self.ping_rtts(bridge.socket_path, lambda: time.monotonic() > idle_end)
                cmd = [self.tool, '--mode=bridge', f'--sim-url={sim.url}',
                       f'--stream={self.stream("f")}', '--clients=1', f'--rate={FLOOD_RATE}',
                       f'--count={FLOOD_COUNT}', f'--size={EVENT_SIZE}',
                       f'--socket={bridge.socket_path}', f'--pid={bridge.pid}']
                flood = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
                time.sleep(0.3)
                during = self.ping_rtts(bridge.socket_path, lambda: flood.poll() is not None)
                out, err = flood.communicate(timeout=600)
                if flood.returncode != 0:
                    raise RuntimeError(f'flood failed: {err.strip()}')
                report = json.loads(out.strip().splitlines()[-1])
                rnd = {'round': r + 1, 'idle_ms': idle, 'flood_ms': during,
                       'flood_events_per_s': report['upstream_events_per_s']}
                log(f'  ping p99 idle {percentile(idle, 99):.2f} ms, during the flood '
                    f'{percentile(during, 99):.2f} ms ({len(during)} pings, '
                    f'{report["upstream_events_per_s"]:.0f} events/s taken in)')
                self.raw['responsiveness'].append(rnd)
        finally:
            bridge.stop()
            sim.stop()

    # ---- 2 + 4: memory per idle client, upstream subscribes -------------------
    def hold_clients(self, sim, bridge, clients, stream_id):
        cmd = [self.tool, '--mode=bridge', f'--sim-url={sim.url}', f'--stream={stream_id}',
               f'--socket={bridge.socket_path}', f'--clients={clients}', '--hold']
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        if '"ready"' not in line:
            stop_process(proc)
            raise RuntimeError(f'bench-fanout --hold: {line!r}')
        return proc

    def release(self, proc):
        proc.stdin.close()
        proc.wait(30)

    def run_memory(self):
        for r in range(self.args.rounds):
            log(f'memory round {r + 1}/{self.args.rounds}')
            sim = Sim(self.build_dir, self.workdir)
            bridge = Bridge(self.build_dir, self.workdir, sim, MEMORY_LIMITS, 'memory')
            try:
                time.sleep(SETTLE)
                rec = {'round': r + 1, 'rss_idle_kib': bridge.rss_kib()}
                stream_id = self.stream('m')
                proc = self.hold_clients(sim, bridge, 1, stream_id)
                time.sleep(SETTLE)
                rec['rss_1_kib'] = bridge.rss_kib()
                self.release(proc)
                time.sleep(SETTLE)
                subscribes_before = sim.stats()['received'].get('subscribe', 0)
                stream_id = self.stream('m')
                proc = self.hold_clients(sim, bridge, self.idle_clients, stream_id)
                time.sleep(SETTLE)
                rec['rss_n_kib'] = bridge.rss_kib()
                rec['clients'] = self.idle_clients
                rec['bridge_clients'] = bridge.status()['clients']
                stats = sim.stats()
                rec['upstream_subscribes'] = stats['received'].get('subscribe', 0) - subscribes_before
                rec['upstream_subscriptions_for_stream'] = sum(
                    1 for s in stats.get('subscriptions', []) if s.get('stream_id') == stream_id)
                self.release(proc)
                time.sleep(SETTLE)
                rec['rss_after_release_kib'] = bridge.rss_kib()
                rec['kib_per_client_vs_idle'] = (rec['rss_n_kib'] - rec['rss_idle_kib']) / self.idle_clients
                rec['kib_per_client_vs_1'] = (rec['rss_n_kib'] - rec['rss_1_kib']) / (self.idle_clients - 1)
                log(f'  RSS idle {rec["rss_idle_kib"]} KiB, 1 client {rec["rss_1_kib"]} KiB, '
                    f'{self.idle_clients} clients {rec["rss_n_kib"]} KiB; '
                    f'upstream subscribes: {rec["upstream_subscribes"]}')
                self.raw['memory'].append(rec)
            finally:
                bridge.stop()
                sim.stop()

    # ---- 2b: a client that never reads ------------------------------------------
    def sample_peak_rss(self, bridge, until):
        peak = bridge.rss_kib()
        while not until():
            peak = max(peak, bridge.rss_kib())
            time.sleep(RSS_SAMPLE_INTERVAL)
        end = time.monotonic() + SETTLE
        while time.monotonic() < end:
            peak = max(peak, bridge.rss_kib())
            time.sleep(RSS_SAMPLE_INTERVAL)
        return peak

    def run_slow_client(self):
        for queue_bytes in SLOW_QUEUE_BYTES:
            for r in range(self.args.rounds):
                log(f'slow client, ClientQueueBytes={queue_bytes}, round {r + 1}/{self.args.rounds}')
                self.raw['slow_client'].append(self.slow_client_round(queue_bytes, r + 1))

    def slow_client_round(self, queue_bytes, round_no):
        count = SLOW_FLOOD_FACTOR * queue_bytes // SLOW_EVENT_SIZE
        rec = {'round': round_no, 'client_queue_bytes': queue_bytes, 'event_size': SLOW_EVENT_SIZE,
               'count': count}
        before, peak, _ = self.flood_one_client(queue_bytes, count, reading=True)
        rec['control_growth_kib'] = peak - before
        before, peak, dropped = self.flood_one_client(queue_bytes, count, reading=False)
        rec['rss_before_kib'] = before
        rec['rss_peak_kib'] = peak
        rec['growth_kib'] = peak - before
        rec['growth_over_queue'] = (peak - before) * 1024 / queue_bytes
        rec['events_dropped'] = dropped
        log(f'  RSS growth {rec["growth_kib"]} KiB = {rec["growth_over_queue"]:.2f} x '
            f'ClientQueueBytes (reading client: {rec["control_growth_kib"]} KiB); '
            f'{rec["events_dropped"]} events dropped')
        return rec

    def flood_one_client(self, queue_bytes, count, reading):
        """A fresh daemon, one client on the flooded stream (reading it or
        never reading at all): (RSS before, peak RSS, events dropped)."""
        limits = {'MaxClients': '1100', 'ClientQueueBytes': str(queue_bytes),
                  'SlowClientTimeout': '120'}
        sim = Sim(self.build_dir, self.workdir)
        bridge = Bridge(self.build_dir, self.workdir, sim, limits, 'slow')
        stream_id = self.stream('s')
        client = None
        try:
            # An idle client on another stream keeps upstream connected, so
            # the baseline does not include connecting.
            holder = self.hold_clients(sim, bridge, 1, self.stream('h'))
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(bridge.socket_path)
            client.sendall(f'{{"type":"subscribe","stream_id":"{stream_id}"}}\n'.encode())
            deadline = time.monotonic() + START_TIMEOUT
            while not sim.has_subscription(stream_id):
                if time.monotonic() > deadline:
                    raise RuntimeError('the subscription never reached wave-sim')
                time.sleep(0.02)
            time.sleep(SETTLE)
            dropped_before = bridge.status()['events_dropped']
            before = bridge.rss_kib()
            flood = sim.request('/sim/flood', {'stream_id': stream_id, 'type': 'chat.message',
                                               'rate': SLOW_RATE, 'size': SLOW_EVENT_SIZE,
                                               'count': count})['flood']
            if reading:
                client.setblocking(False)

            def done():
                if reading:
                    try:
                        while client.recv(1 << 20):
                            pass
                    except BlockingIOError:
                        pass
                return sim.flood_done(flood)

            peak = self.sample_peak_rss(bridge, done)
            if reading:
                done()
            dropped = bridge.status()['events_dropped'] - dropped_before
            self.release(holder)
            return before, peak, dropped
        finally:
            if client is not None:
                client.close()
            bridge.stop()
            sim.stop()

    # ---- summary ----------------------------------------------------------------
    def summarize(self):
        s = {'fanout': {}, 'cpu': {}, 'memory': {}, 'slow_client': {}, 'bystanders': {}}
        resp = self.raw['responsiveness']
        s['responsiveness'] = {
            'idle_p50_ms': median(percentile(r['idle_ms'], 50) for r in resp),
            'idle_p99_ms': median(percentile(r['idle_ms'], 99) for r in resp),
            'flood_p50_ms': median(percentile(r['flood_ms'], 50) for r in resp),
            'flood_p99_ms': median(percentile(r['flood_ms'], 99) for r in resp),
            'flood_events_per_s': median(r['flood_events_per_s'] for r in resp),
        }
        rounds = self.raw['fanout']
        for n in self.sizes:
            key = str(n)
            lat = [r['latency'][key] for r in rounds]
            tp = [r['throughput'][key] for r in rounds]
            s['fanout'][key] = {
                'lat_p50_us': median(x['lat_p50_us'] for x in lat),
                'lat_p99_us': median(x['lat_p99_us'] for x in lat),
                'lat_p50_ratio_vs_direct': median(
                    r['latency'][key]['lat_p50_us'] / max(1, r['latency']['direct']['lat_p50_us'])
                    for r in rounds),
                'lat_p99_ratio_vs_direct': median(
                    r['latency'][key]['lat_p99_us'] / max(1, r['latency']['direct']['lat_p99_us'])
                    for r in rounds),
                'deliveries_per_s': median(x['deliveries_per_s'] for x in tp),
                'upstream_events_per_s': median(x['upstream_events_per_s'] for x in tp),
                'us_per_upstream_event': median(x['us_per_upstream_event'] for x in tp),
                'burst_lat_p50_us': median(x['lat_p50_us'] for x in tp),
                'burst_span_s': median(x['span_s'] for x in tp),
                'throughput_ratio_vs_direct': median(
                    r['throughput'][key]['upstream_events_per_s']
                    / max(1e-9, r['throughput']['direct']['upstream_events_per_s'])
                    for r in rounds),
                'lost': sum(x['lost'] for x in lat + tp),
            }
        s['fanout']['direct'] = {
            'lat_p50_us': median(r['latency']['direct']['lat_p50_us'] for r in rounds),
            'lat_p99_us': median(r['latency']['direct']['lat_p99_us'] for r in rounds),
            'deliveries_per_s': median(r['throughput']['direct']['deliveries_per_s'] for r in rounds),
            'upstream_events_per_s': median(
                r['throughput']['direct']['upstream_events_per_s'] for r in rounds),
            'us_per_upstream_event': median(
                r['throughput']['direct']['us_per_upstream_event'] for r in rounds),
            'burst_lat_p50_us': median(r['throughput']['direct']['lat_p50_us'] for r in rounds),
            'burst_span_s': median(r['throughput']['direct']['span_s'] for r in rounds),
        }
        small, big = str(min(self.sizes)), str(max(self.sizes))
        if small != big:
            per_event = median(r['throughput'][big]['us_per_upstream_event']
                               / r['throughput'][small]['us_per_upstream_event'] for r in rounds)
            s['fanout']['per_client_cost'] = {
                'n_small': int(small), 'n_big': int(big),
                'time_per_event_ratio': per_event,
                'time_per_delivery_ratio': per_event / (int(big) / int(small)),
            }
        # CPU from the latency runs: the same flood at every N.
        cpu_n = '100' if 100 in self.sizes else big
        for key in {small, cpu_n}:
            lat = [r['latency'][key] for r in rounds]
            s['cpu'][key] = {
                'cpu_s_stat': median(x['cpu_s'] for x in lat),
                'cpu_s_sched': median(x['cpu_sched_s'] for x in lat),
                'cpu_ms_per_1000_upstream_events': median(
                    1e6 * x['cpu_sched_s'] / x['count'] for x in lat),
                'cpu_ms_per_1000_deliveries': median(
                    1e6 * x['cpu_sched_s'] / max(1, x['received']) for x in lat),
            }
        if cpu_n != small:
            s['cpu']['ratio'] = {
                'n': int(cpu_n), 'vs_n': int(small),
                'cpu_per_1000_events_ratio_stat': median(
                    r['latency'][cpu_n]['cpu_s'] / max(1e-9, r['latency'][small]['cpu_s'])
                    for r in rounds),
                'cpu_per_1000_events_ratio': median(
                    r['latency'][cpu_n]['cpu_sched_s'] / max(1e-9, r['latency'][small]['cpu_sched_s'])
                    for r in rounds),
            }
            s['cpu']['ratio']['cpu_per_delivery_ratio'] = (
                s['cpu']['ratio']['cpu_per_1000_events_ratio'] / (int(cpu_n) / int(small)))
        mem = self.raw['memory']
        s['memory'] = {
            'clients': self.idle_clients,
            'rss_idle_kib': median(m['rss_idle_kib'] for m in mem),
            'rss_1_kib': median(m['rss_1_kib'] for m in mem),
            'rss_n_kib': median(m['rss_n_kib'] for m in mem),
            'kib_per_client_vs_idle': median(m['kib_per_client_vs_idle'] for m in mem),
            'kib_per_client_vs_1': median(m['kib_per_client_vs_1'] for m in mem),
            'upstream_subscribes': [m['upstream_subscribes'] for m in mem],
        }
        for queue_bytes in SLOW_QUEUE_BYTES:
            recs = [x for x in self.raw['slow_client'] if x['client_queue_bytes'] == queue_bytes]
            s['slow_client'][str(queue_bytes)] = {
                'flood_bytes': recs[0]['count'] * SLOW_EVENT_SIZE if recs else None,
                'growth_kib': median(x['growth_kib'] for x in recs),
                'growth_over_queue': median(x['growth_over_queue'] for x in recs),
                'control_growth_kib': median(x['control_growth_kib'] for x in recs),
                'events_dropped': median(x['events_dropped'] for x in recs),
            }
        by = self.raw['bystanders']
        s['bystanders'] = {
            'bystanders': self.bystanders,
            'lat_p50_ratio': median(b['with']['lat_p50_us'] / max(1, b['alone']['lat_p50_us'])
                                    for b in by),
            'cpu_ratio': median(b['with']['cpu_sched_s'] / max(1e-9, b['alone']['cpu_sched_s'])
                                for b in by),
            'cpu_ms_per_1000_events_alone': median(1e6 * b['alone']['cpu_sched_s'] / b['alone']['count']
                                                   for b in by),
            'cpu_ms_per_1000_events_with': median(1e6 * b['with']['cpu_sched_s'] / b['with']['count']
                                                  for b in by),
        }
        return s

    def print_table(self, s):
        def fmt(value, spec='.0f'):
            return '-' if value is None else format(value, spec)

        out = []
        out.append('')
        out.append(f'wave-bridge benchmarks: medians over {self.args.rounds} rounds; '
                   f'ratios vs. a baseline of the same run')
        out.append(f'1. Fan-out: latency flood {LAT_COUNT} x {EVENT_SIZE} B at {LAT_RATE}/s; '
                   f'throughput flood offered at {TP_RATE}/s')
        out.append(f'   {"receiver":<14}{"p50 us":>9}{"p99 us":>9}{"p50 x":>8}{"p99 x":>8}'
                   f'{"deliv/s":>11}{"events/s":>10}{"us/event":>10}{"burst p50":>11}')
        d = s['fanout']['direct']
        out.append(f'   {"direct ws":<14}{fmt(d["lat_p50_us"]):>9}{fmt(d["lat_p99_us"]):>9}'
                   f'{"1.0":>8}{"1.0":>8}{fmt(d["deliveries_per_s"]):>11}'
                   f'{fmt(d["upstream_events_per_s"]):>10}{fmt(d["us_per_upstream_event"], ".1f"):>10}'
                   f'{fmt(d["burst_lat_p50_us"] / 1000, ".0f") + " ms":>11}')
        for n in self.sizes:
            f = s['fanout'][str(n)]
            out.append(f'   {"bridge N=" + str(n):<14}{fmt(f["lat_p50_us"]):>9}{fmt(f["lat_p99_us"]):>9}'
                       f'{fmt(f["lat_p50_ratio_vs_direct"], ".1f"):>8}'
                       f'{fmt(f["lat_p99_ratio_vs_direct"], ".1f"):>8}'
                       f'{fmt(f["deliveries_per_s"]):>11}{fmt(f["upstream_events_per_s"]):>10}'
                       f'{fmt(f["us_per_upstream_event"], ".1f"):>10}'
                       f'{fmt(f["burst_lat_p50_us"] / 1000, ".0f") + " ms":>11}')
        if 'per_client_cost' in s['fanout']:
            c = s['fanout']['per_client_cost']
            out.append(f'   per-client cost: time per event N={c["n_big"]} / N={c["n_small"]} = '
                       f'{c["time_per_event_ratio"]:.1f} (per delivery: '
                       f'{c["time_per_delivery_ratio"]:.3f})')
        lost = sum(s['fanout'][str(n)]['lost'] for n in self.sizes)
        out.append(f'   events not received: {lost}')
        if 'ratio' in s['cpu']:
            c = s['cpu']['ratio']
            a, b = s['cpu'][str(c['vs_n'])], s['cpu'][str(c['n'])]
            out.append(f'3. CPU (daemon utime+stime, latency flood): N={c["vs_n"]}: '
                       f'{a["cpu_ms_per_1000_upstream_events"]:.0f} ms/1000 events; '
                       f'N={c["n"]}: {b["cpu_ms_per_1000_upstream_events"]:.0f} ms/1000 events, '
                       f'{b["cpu_ms_per_1000_deliveries"]:.1f} ms/1000 deliveries')
            out.append(f'   ratio N={c["n"]}/N={c["vs_n"]} for the same events: '
                       f'{c["cpu_per_1000_events_ratio"]:.1f} (from /proc stat ticks: '
                       f'{fmt(c["cpu_per_1000_events_ratio_stat"], ".1f")}); per delivery: '
                       f'{c["cpu_per_delivery_ratio"]:.3f}')
        m = s['memory']
        out.append(f'2. Memory (VmRSS): idle {fmt(m["rss_idle_kib"])} KiB, 1 client '
                   f'{fmt(m["rss_1_kib"])} KiB, {m["clients"]} idle clients {fmt(m["rss_n_kib"])} KiB')
        out.append(f'   per client: {fmt(m["kib_per_client_vs_idle"], ".1f")} KiB vs. idle, '
                   f'{fmt(m["kib_per_client_vs_1"], ".1f")} KiB vs. 1 client')
        for queue_bytes, sc in s['slow_client'].items():
            out.append(f'   client never reading, ClientQueueBytes={queue_bytes}, flood '
                       f'{fmt(sc["flood_bytes"])} B: RSS growth {fmt(sc["growth_kib"])} KiB = '
                       f'{fmt(sc["growth_over_queue"], ".2f")} x ClientQueueBytes (reading client: '
                       f'{fmt(sc["control_growth_kib"])} KiB), {fmt(sc["events_dropped"])} dropped')
        out.append(f'4. Upstream subscribes for {m["clients"]} clients on one stream: '
                   f'{m["upstream_subscribes"]} (per round; expected 1)')
        b = s['bystanders']
        out.append(f'5. Bystanders: 1 flooded client with {b["bystanders"]} idle clients on another '
                   f'stream vs. alone: CPU x{fmt(b["cpu_ratio"], ".2f")} '
                   f'({fmt(b["cpu_ms_per_1000_events_alone"])} -> '
                   f'{fmt(b["cpu_ms_per_1000_events_with"])} ms/1000 events), '
                   f'p50 latency x{fmt(b["lat_p50_ratio"], ".2f")}')
        resp = s['responsiveness']
        out.append(f'6. Responsiveness: a local ping every {PING_INTERVAL * 1000:.0f} ms while '
                   f'upstream floods at up to {FLOOD_RATE}/s ({fmt(resp["flood_events_per_s"])} '
                   f'events/s taken in): p50 {fmt(resp["flood_p50_ms"], ".2f")} ms, '
                   f'p99 {fmt(resp["flood_p99_ms"], ".2f")} ms (idle: p50 '
                   f'{fmt(resp["idle_p50_ms"], ".2f")} ms, p99 {fmt(resp["idle_p99_ms"], ".2f")} ms)')
        print('\n'.join(out), flush=True)

    def run(self):
        quick = self.args.quick
        self.sizes = (1, 10, 100) if quick else FANOUT_SIZES
        self.tp_deliveries = TP_DELIVERIES // (10 if quick else 1)
        self.idle_clients = 100 if quick else IDLE_CLIENTS
        self.bystanders = 100 if quick else BYSTANDERS
        started = time.monotonic()
        # Logs stay in the work dir when a run fails; a good run removes it.
        self.run_fanout()
        self.run_memory()
        self.run_slow_client()
        self.run_responsiveness()
        shutil.rmtree(self.workdir, ignore_errors=True)
        summary = self.summarize()
        self.print_table(summary)
        result = {
            'machine': {'host': platform.node(), 'cpus': os.cpu_count(),
                        'loadavg_at_end': os.getloadavg(), 'kernel': platform.release()},
            'rounds': self.args.rounds,
            'quick': quick,
            'duration_s': time.monotonic() - started,
            'summary': summary,
            'raw': self.raw,
        }
        if self.args.json:
            with open(self.args.json, 'w') as out:
                json.dump(result, out, indent=1)
            print(f'results: {self.args.json} ({result["duration_s"]:.0f} s)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--build-dir', required=True)
    parser.add_argument('--json')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--quick', action='store_true', help='smaller N, for a smoke run')
    args = parser.parse_args()
    Bench(args).run()


if __name__ == '__main__':
    main()
