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
import collections
import json
import math
import re
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
FANOUT_SIZES = (1, 10, 100, 1000)
# Latency: a moderate rate, the same flood for every N and the baseline.
LAT_RATE = 100
LAT_COUNT = 300
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
# CPU per event at light rates (events/s, events) against the saturated run.
LIGHT_LOADS = ((1000, 2000), (10, 30))
IDLE_SAMPLE_S = 2.0
# The D-Bus path: receivers are separate processes on a private dbus-daemon.
DBUS_SIZES = (1, 10, 100)
DBUS_LAT_COUNT = 200
DBUS_TP_DELIVERIES = 200000
DBUS_TP_MAX_COUNT = 20000
DBUS_LIMITS = {'MaxClients': '2000', 'MaxClientsPerUser': '2000',
               'ClientQueueBytes': str(16 * 1024 * 1024), 'SlowClientTimeout': '120'}
DBUS_STALL_RECEIVERS = 10
DBUS_STALL_RATE = 1000
DBUS_STALL_S = 6
DBUS_STALL_AFTER_S = 1.5
# Not timed: the first events after ten fresh subscriptions.
DBUS_STALL_WARMUP_MS = 300
# sd-bus refuses a send (ENOBUFS) past 384 Ki queued messages (BUS_WQUEUE_MAX);
# offered at a rate the daemon takes in without its own intake bound
# (16 MiB of frames) dropping first.
BUS_STALL_EVENTS = 400000
BUS_STALL_RATE = 30000
BUS_STALL_CONTROL_EVENTS = 90000
# "Without the bridge": N processes with their own WebSocket vs N bridge clients.
WITHOUT_SIZES = (10, 100)
WITHOUT_RATE = 1000
WITHOUT_COUNT = 2000
STARTUP_REPS = 5
# Main-loop iterations per upstream frame = poll() calls per event (strace -c -f).
STRACE_LOADS = ((1000, 1000), (10, 20))
# Targets (issue 15): (name, measured key, comparison, bound).
IDLE_RSS_TARGET_KIB = 15 * 1024
PER_CLIENT_TARGET_KIB = 16


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
    def __init__(self, build_dir, workdir, max_connections=64):
        self.proc = subprocess.Popen(
            [os.path.join(build_dir, 'sim', 'wave-sim'), '--port', '0', '--streams', '1',
             '--quiet', '--api-key', API_KEY, f'--max-connections={max_connections}'],
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


def sched_ns(pid):
    """Run time of every thread of @pid, in ns (0 once it is gone)."""
    total = 0
    try:
        for task in os.listdir(f'/proc/{pid}/task'):
            with open(f'/proc/{pid}/task/{task}/schedstat') as stat:
                total += int(stat.read().split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def status_kib(pid, field='VmRSS:'):
    try:
        with open(f'/proc/{pid}/status') as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def pss_kib(pid):
    try:
        with open(f'/proc/{pid}/smaps_rollup') as rollup:
            for line in rollup:
                if line.startswith('Pss:'):
                    return int(line.split()[1])
    except (FileNotFoundError, PermissionError):
        pass
    return 0


def hist_percentile(hists, p):
    """p-th percentile (µs) of merged bench-dbus histograms."""
    counts = collections.Counter()
    for hist in hists:
        for bucket, count in hist:
            counts[bucket] += count
    total = sum(counts.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(total * p / 100))
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return bucket if bucket < 100 else 100 * 1.02 ** (bucket - 100 + 0.5)
    return None


def dbus_path(stream_id):
    """sd_bus_path_encode('/inc/wave/Bridge1/stream', stream_id)."""
    return '/inc/wave/Bridge1/stream/' + ''.join(
        c if c.isascii() and c.isalnum() else f'_{ord(c):02x}' for c in stream_id)


class BusDaemon:
    """A private dbus-daemon with the session configuration."""

    def __init__(self, workdir):
        self.proc = subprocess.Popen(['dbus-daemon', '--session', '--nofork', '--print-address=1'],
                                     stdout=subprocess.PIPE, text=True,
                                     stderr=open(os.path.join(workdir, 'dbus.log'), 'ab'))
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError('dbus-daemon printed no address')
        self.pid = self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
        stop_process(self.proc)


class Bridge:
    def __init__(self, build_dir, workdir, sim, limits, name, bus=None, activation_fd=None,
                 notify_path=None, wait=True):
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
        env = dict(os.environ)
        env.pop('NOTIFY_SOCKET', None)
        cmd = [os.path.join(build_dir, 'daemon', 'wave-bridged'), f'--config={self.config_path}',
               '--bus=none' if bus is None else '--bus=session']
        if bus is not None:
            env['DBUS_SESSION_BUS_ADDRESS'] = bus.address
        if notify_path is not None:
            env['NOTIFY_SOCKET'] = notify_path
        kwargs = {}
        if activation_fd is not None:
            # systemd's way: the socket as fd 3, LISTEN_PID = the daemon's pid.
            env['LISTEN_FDS'] = '1'
            cmd = ['sh', '-c', 'LISTEN_PID=$$ exec "$0" "$@"'] + cmd
            kwargs = {'preexec_fn': lambda: os.dup2(activation_fd, 3), 'pass_fds': (3,)}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log_path, 'ab'), env=env, **kwargs)
        self.pid = self.proc.pid
        if not wait:
            return
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(self.socket_path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f'wave-bridged did not start; see {self.log_path}')
            time.sleep(0.02)
        while bus is not None and not self.on_bus(bus):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f'wave-bridged never owned its name; see {self.log_path}')
            time.sleep(0.02)

    @staticmethod
    def on_bus(bus):
        out = subprocess.run(['busctl', f'--address={bus.address}', 'call',
                              'org.freedesktop.DBus', '/org/freedesktop/DBus',
                              'org.freedesktop.DBus', 'NameHasOwner', 's', 'inc.wave.Bridge1'],
                             capture_output=True, text=True)
        return out.returncode == 0 and out.stdout.strip() == 'b true'

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
        self.rawsock = os.path.join(self.build_dir, 'tests', 'bench-rawsock')
        self.dbus_tool = os.path.join(self.build_dir, 'tests', 'bench-dbus')
        self.dbus_arg_bytes = None
        self.workdir = tempfile.mkdtemp(prefix='wave-bench-')
        self.stream_seq = 0
        self.raw = {'fanout': [], 'memory': [], 'slow_client': [], 'bystanders': [],
                    'responsiveness': [], 'light': [], 'dbus': [], 'dbus_stall': [],
                    'bus_stall': [], 'bus_stall_control': None, 'without': [], 'startup': [], 'strace': None}

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

    def raw_tool(self, clients, rate, count, write, sim=None):
        """Baseline (a): bench-rawsock writing to @clients bench-fanout readers;
        with @sim, as a forwarder of wave-sim's flood (the same upstream hop)."""
        path = os.path.join(self.workdir, f'raw-{self.stream_seq}.sock')
        stream_id = self.stream('fw')
        writer_cmd = [self.rawsock, f'--socket={path}', f'--clients={clients}', f'--rate={rate}',
                      f'--count={count}', f'--size={EVENT_SIZE}', f'--write={write}']
        if sim is not None:
            writer_cmd += [f'--upstream={sim.url}', f'--api-key={API_KEY}', f'--stream={stream_id}']
        writer = subprocess.Popen(writer_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        try:
            if '"listening"' not in writer.stdout.readline():
                raise RuntimeError(f'bench-rawsock: {writer.stderr.read()}')
            cmd = [self.tool, '--mode=raw' if sim is None else '--mode=bridge', f'--socket={path}',
                   f'--stream={stream_id}', f'--clients={clients}', f'--rate={rate}',
                   f'--count={count}', f'--size={EVENT_SIZE}', f'--pid={writer.pid}']
            if sim is not None:
                cmd.append(f'--sim-url={sim.url}')
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                raise RuntimeError(f'{" ".join(cmd)} failed: {result.stderr.strip()}')
            writer.wait(30)
            return json.loads(result.stdout.strip().splitlines()[-1])
        finally:
            stop_process(writer)

    def strace_counts(self, sim, bridge, rate, count):
        """System calls of the daemon per upstream event at @rate, N = 1 (strace -c -f)."""
        if shutil.which('strace') is None:
            return None
        out = os.path.join(self.workdir, 'strace.txt')
        tracer = subprocess.Popen(['strace', '-f', '-c', '-o', out, '-p', str(bridge.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        try:
            self.fanout_tool(sim, 'bridge', self.stream('st'), rate=rate, count=count,
                             bridge=bridge)
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
        calls = {}
        try:
            with open(out) as table:
                for line in table:
                    fields = line.split()
                    if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != 'total':
                        calls[fields[-1]] = int(fields[3])
        except FileNotFoundError:
            return None
        return {name: calls[name] / count for name in calls}

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
                # Baseline (a): the same lines from an ideal C forwarder of the
                # same upstream flood to the same readers, one write per line
                # and batched; and the local ceiling: a writer with no upstream.
                for part in ('raw_latency', 'raw_line', 'raw_batch', 'local_batch'):
                    rnd[part] = {}
                for n in self.sizes:
                    key = str(n)
                    rnd['raw_latency'][key] = self.raw_tool(n, LAT_RATE, LAT_COUNT, 'line', sim)
                    count = max(TP_MIN_COUNT, min(TP_MAX_COUNT, self.tp_deliveries // n))
                    rnd['raw_line'][key] = self.raw_tool(n, TP_RATE, count, 'line', sim)
                    rnd['raw_batch'][key] = self.raw_tool(n, TP_RATE, count, 'batch', sim)
                    rnd['local_batch'][key] = self.raw_tool(n, TP_RATE, count, 'batch')
                    log(f'  C forwarder N={n}: latency p99 {rnd["raw_latency"][key]["lat_p99_us"]} us;'
                        f' {rnd["raw_line"][key]["deliveries_per_s"]:.0f} deliveries/s a write per '
                        f'line, {rnd["raw_batch"][key]["deliveries_per_s"]:.0f} batched; local '
                        f'writer {rnd["local_batch"][key]["deliveries_per_s"]:.0f}')
                # CPU per event at light rates, N = 1 (the saturated run is above),
                # and what the daemon spends doing nothing, for comparison.
                light = {'round': r + 1}
                idle_cpu = sched_ns(bridge.pid)
                time.sleep(IDLE_SAMPLE_S)
                light['idle_cpu_us_per_s'] = (sched_ns(bridge.pid) - idle_cpu) / 1000 / IDLE_SAMPLE_S
                for rate, count in LIGHT_LOADS:
                    light[str(rate)] = self.fanout_tool(sim, 'bridge', self.stream('lo'),
                                                        rate=rate, count=count, bridge=bridge)
                    x = light[str(rate)]
                    log(f'  light load {rate}/s: {1e6 * x["cpu_sched_s"] / count:.1f} us CPU and '
                        f'{x["main_wakeups"] / count:.2f} main-loop wake-ups per event')
                self.raw['light'].append(light)
                self.raw['fanout'].append(rnd)
                # Bystanders: one flooded client while 1000 others sit on another stream.
                by = {'round': r + 1}
                by['alone'] = self.fanout_tool(sim, 'bridge', self.stream('a'), bridge=bridge)
                by['with'] = self.fanout_tool(
                    sim, 'bridge', self.stream('a'), bridge=bridge,
                    extra=[f'--bystanders={self.bystanders}',
                           f'--bystander-stream={self.stream("by")}'])
                self.raw['bystanders'].append(by)
            self.raw['strace'] = {str(rate): self.strace_counts(sim, bridge, rate, count)
                                  for rate, count in STRACE_LOADS}
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

    # ---- 7: the D-Bus path ---------------------------------------------------
    def dbus_receivers(self, bus, n, path, count, subscribe=None, extra=()):
        cmd = [self.dbus_tool, '--role=recv', f'--address={bus.address}', f'--path={path}',
               f'--count={count}', '--quiet=3'] + list(extra)
        if subscribe is not None:
            cmd.append(f'--subscribe={subscribe}')
        errlog = open(os.path.join(self.workdir, 'bench-dbus.log'), 'ab')
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errlog, text=True)
                 for _ in range(n)]
        for proc in procs:
            line = proc.stdout.readline()
            if '"ready"' not in line:
                for other in procs:
                    stop_process(other)
                raise RuntimeError(f'bench-dbus receiver: {line!r} (see bench-dbus.log)')
        return procs

    @staticmethod
    def dbus_collect(procs):
        reports = []
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports

    @staticmethod
    def dbus_summary(reports, count, cpu_ns, bus_cpu_ns, upstream_cpu_ns=0):
        received = sum(x['received'] for x in reports)
        sent = [x['min_sent_us'] for x in reports if x['min_sent_us'] > 0]
        last = [x['last_recv_us'] for x in reports if x['last_recv_us'] > 0]
        span = (max(last) - min(sent)) / 1e6 if sent and last else 0
        hists = [x['hist'] for x in reports] + [x['hist_after'] for x in reports]
        return {'receivers': len(reports), 'count': count, 'expected': count * len(reports),
                'received': received, 'lost': count * len(reports) - received,
                'lat_p50_us': hist_percentile(hists, 50), 'lat_p99_us': hist_percentile(hists, 99),
                'deliveries_per_s': received / span if span > 0 else None,
                'sender_cpu_us_per_event': cpu_ns / 1000 / count,
                'bus_cpu_us_per_delivery': bus_cpu_ns / 1000 / max(1, received),
                'upstream_cpu_us_per_event': upstream_cpu_ns / 1000 / count,
                'receiver_cpu_us_per_delivery': 1e6 * sum(x['self_cpu_s'] for x in reports)
                / max(1, received),
                'arg_bytes': max((x['arg_bytes'] for x in reports), default=0)}

    def dbus_bridge_run(self, bus, sim, bridge, n, rate, count):
        stream_id = self.stream('db')
        procs = self.dbus_receivers(bus, n, dbus_path(stream_id), count, subscribe=stream_id)
        deadline = time.monotonic() + START_TIMEOUT
        while not sim.has_subscription(stream_id):
            if time.monotonic() > deadline:
                raise RuntimeError('the D-Bus subscription never reached wave-sim')
            time.sleep(0.02)
        cpu, bus_cpu, sim_cpu = sched_ns(bridge.pid), sched_ns(bus.pid), sched_ns(sim.proc.pid)
        sim.request('/sim/flood', {'stream_id': stream_id, 'type': 'chat.message', 'rate': rate,
                                   'size': EVENT_SIZE, 'count': count, 'stamp_message_id': True})
        reports = self.dbus_collect(procs)
        result = self.dbus_summary(reports, count, sched_ns(bridge.pid) - cpu,
                                   sched_ns(bus.pid) - bus_cpu, sched_ns(sim.proc.pid) - sim_cpu)
        if result['arg_bytes']:
            self.dbus_arg_bytes = result['arg_bytes']
        return result

    def dbus_raw_run(self, bus, n, rate, count):
        """Baseline (b): a raw sd-bus sender, the same signal, the same bus."""
        self.stream_seq += 1
        path = f'/inc/wave/Bridge1/stream/raw_5f{self.stream_seq}'
        sender = subprocess.Popen([self.dbus_tool, '--role=send', f'--address={bus.address}',
                                   f'--path={path}', f'--rate={rate}', f'--count={count}',
                                   f'--arg-bytes={self.dbus_arg_bytes or 150}'],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            if '"ready"' not in sender.stdout.readline():
                raise RuntimeError('bench-dbus sender did not start')
            procs = self.dbus_receivers(bus, n, path, count)
            cpu, bus_cpu = sched_ns(sender.pid), sched_ns(bus.pid)
            sender.stdin.write('go\n')
            sender.stdin.flush()
            reports = self.dbus_collect(procs)
            result = self.dbus_summary(reports, count, sched_ns(sender.pid) - cpu,
                                       sched_ns(bus.pid) - bus_cpu)
            sender.stdin.close()
            sender.wait(30)
            return result
        finally:
            stop_process(sender)

    def run_dbus(self):
        sim = Sim(self.build_dir, self.workdir)
        bus = BusDaemon(self.workdir)
        bridge = Bridge(self.build_dir, self.workdir, sim, DBUS_LIMITS, 'dbus', bus=bus)
        try:
            for r in range(self.args.rounds):
                log(f'D-Bus round {r + 1}/{self.args.rounds}')
                rnd = {'round': r + 1}
                for n in DBUS_SIZES:
                    count = max(TP_MIN_COUNT, min(DBUS_TP_MAX_COUNT, self.dbus_tp_deliveries // n))
                    rec = {
                        'bridge_lat': self.dbus_bridge_run(bus, sim, bridge, n, LAT_RATE,
                                                           DBUS_LAT_COUNT),
                        'raw_lat': self.dbus_raw_run(bus, n, LAT_RATE, DBUS_LAT_COUNT),
                        'bridge_tp': self.dbus_bridge_run(bus, sim, bridge, n, TP_RATE, count),
                        'raw_tp': self.dbus_raw_run(bus, n, TP_RATE, count),
                    }
                    rnd[str(n)] = rec
                    log(f'  N={n}: deliveries/s bridge {rec["bridge_tp"]["deliveries_per_s"] or 0:.0f}'
                        f' raw {rec["raw_tp"]["deliveries_per_s"] or 0:.0f}; p99 bridge '
                        f'{rec["bridge_lat"]["lat_p99_us"] or 0:.0f} us raw '
                        f'{rec["raw_lat"]["lat_p99_us"] or 0:.0f} us')
                self.raw['dbus'].append(rnd)
            self.raw['dbus_stall'].append(self.dbus_receiver_stall(bus, sim, bridge))
            if not self.args.quick:
                self.raw['bus_stall'].append(self.dbus_bus_stall(bus, sim, bridge))
                self.raw['bus_stall_control'] = self.dbus_bus_stall(bus, sim, bridge, stall=False)
        finally:
            bridge.stop()
            bus.stop()
            sim.stop()

    def dbus_receiver_stall(self, bus, sim, bridge):
        """One of 10 receivers stops reading (SIGSTOP) in the middle of a flood."""
        log('D-Bus: a stalled receiver')
        stream_id = self.stream('ds')
        stall_s = DBUS_STALL_S // (2 if self.args.quick else 1)
        count = DBUS_STALL_RATE * stall_s
        procs = self.dbus_receivers(bus, DBUS_STALL_RECEIVERS, dbus_path(stream_id), count,
                                    subscribe=stream_id,
                                    extra=[f'--split-after-ms={int(DBUS_STALL_AFTER_S * 1000)}',
                                           f'--warmup-ms={DBUS_STALL_WARMUP_MS}'])
        while not sim.has_subscription(stream_id):
            time.sleep(0.02)
        dropped = bridge.status()['events_dropped']
        bus_rss = status_kib(bus.pid)
        bridge_rss = status_kib(bridge.pid)
        sim.request('/sim/flood', {'stream_id': stream_id, 'type': 'chat.message',
                                   'rate': DBUS_STALL_RATE, 'size': EVENT_SIZE, 'count': count,
                                   'stamp_message_id': True})
        started = time.monotonic()
        time.sleep(DBUS_STALL_AFTER_S)
        os.kill(procs[0].pid, signal.SIGSTOP)
        bus_peak, bridge_peak = bus_rss, bridge_rss
        while time.monotonic() < started + stall_s + 1:
            bus_peak = max(bus_peak, status_kib(bus.pid))
            bridge_peak = max(bridge_peak, status_kib(bridge.pid))
            time.sleep(0.05)
        rec = {'bridge_alive': bridge.proc.poll() is None,
               'events_dropped': bridge.status()['events_dropped'] - dropped,
               'bus_rss_growth_kib': bus_peak - bus_rss,
               'bridge_rss_growth_kib': bridge_peak - bridge_rss}
        os.kill(procs[0].pid, signal.SIGCONT)
        reports = self.dbus_collect(procs)
        others = reports[1:]
        rec.update({
            'others_p99_before_us': hist_percentile([x['hist'] for x in others], 99),
            'others_p99_during_us': hist_percentile([x['hist_after'] for x in others], 99),
            'others_lost': sum(count - x['received'] for x in others),
            'stalled_received': reports[0]['received'], 'count': count,
        })
        log(f'  others p99 {rec["others_p99_before_us"] or 0:.0f} -> '
            f'{rec["others_p99_during_us"] or 0:.0f} us; dropped {rec["events_dropped"]}; '
            f'dbus-daemon +{rec["bus_rss_growth_kib"]} KiB')
        return rec

    def dbus_bus_stall(self, bus, sim, bridge, stall=True):
        """dbus-daemon itself stops reading: the bridge's sd-bus queue fills
        until ENOBUFS; a socket client on the same stream must not notice.
        Without @stall: the control, the same rate with dbus-daemon reading."""
        events = BUS_STALL_EVENTS if stall else BUS_STALL_CONTROL_EVENTS
        log('D-Bus: dbus-daemon stalled until the bridge gets ENOBUFS' if stall
            else 'D-Bus: the same flood, dbus-daemon reading (control)')
        stream_id = self.stream('bs')
        procs = self.dbus_receivers(bus, 1, dbus_path(stream_id), events, subscribe=stream_id)
        client = subprocess.Popen(
            [self.tool, '--mode=bridge', f'--sim-url={sim.url}', f'--stream={stream_id}',
             '--clients=1', f'--rate={BUS_STALL_RATE}', f'--count={events}',
             f'--size={EVENT_SIZE}', f'--socket={bridge.socket_path}', f'--pid={bridge.pid}',
             '--await-go'], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            if '"ready"' not in client.stdout.readline():
                raise RuntimeError('socket client did not start')
            dropped = bridge.status()['events_dropped']
            rss = status_kib(bridge.pid)
            if stall:
                os.kill(bus.pid, signal.SIGSTOP)
            client.stdin.write('go\n')
            client.stdin.flush()
            sim.request('/sim/flood', {'stream_id': stream_id, 'type': 'chat.message',
                                       'rate': BUS_STALL_RATE, 'size': EVENT_SIZE,
                                       'count': events, 'stamp_message_id': True})
            peak = rss
            while client.poll() is None:
                peak = max(peak, status_kib(bridge.pid))
                time.sleep(0.05)
            rec = {'events': events, 'bridge_alive': bridge.proc.poll() is None,
                   'events_dropped': bridge.status()['events_dropped'] - dropped,
                   'bridge_rss_growth_kib': peak - rss}
            os.kill(bus.pid, signal.SIGCONT)
            report = json.loads(client.stdout.read().strip().splitlines()[-1])
            rec.update({'socket_lost': report['lost'], 'socket_p99_us': report['lat_p99_us'],
                        'socket_events_per_s': report['upstream_events_per_s']})
            recv = self.dbus_collect(procs)[0]
            rec['dbus_received'] = recv['received']
            # What the socket client missed never got past the bridge's
            # intake (its 16 MiB frame bound); of the rest, what the D-Bus
            # receiver did not get is what sd-bus refused (ENOBUFS).
            rec['intake_dropped'] = rec['socket_lost']
            rec['enobufs_dropped'] = events - rec['socket_lost'] - rec['dbus_received']
            log(f'  bridge alive {rec["bridge_alive"]}, EventsDropped +{rec["events_dropped"]} '
                f'({rec["intake_dropped"]} at the intake, {rec["enobufs_dropped"]} ENOBUFS), RSS '
                f'+{rec["bridge_rss_growth_kib"]} KiB; D-Bus receiver got {rec["dbus_received"]}')
            return rec
        finally:
            os.kill(bus.pid, signal.SIGCONT)
            stop_process(client)
            for proc in procs:
                stop_process(proc)

    # ---- 8: without the bridge: N WebSockets vs N clients of one bridge -------
    def spawn_clients(self, sim, mode, n, stream_id, bridge=None):
        cmd = [self.tool, f'--mode={mode}', f'--sim-url={sim.url}', f'--stream={stream_id}',
               '--clients=1', f'--rate={WITHOUT_RATE}', f'--count={self.without_count}',
               f'--size={EVENT_SIZE}', '--await-go']
        if bridge is not None:
            cmd.append(f'--socket={bridge.socket_path}')
        procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for _ in range(n)]
        for proc in procs:
            if '"ready"' not in proc.stdout.readline():
                raise RuntimeError(f'bench-fanout --mode={mode} --await-go did not start')
        return procs

    def without_run(self, sim, mode, n, bridge=None):
        stream_id = self.stream('wo')
        procs = self.spawn_clients(sim, mode, n, stream_id, bridge)
        try:
            pids = [p.pid for p in procs] + ([bridge.pid] if bridge else [])
            rec = {'mode': mode, 'n': n, 'upstream_connections': sim.stats()['connections'],
                   'rss_kib': sum(status_kib(pid) for pid in pids),
                   'pss_kib': sum(pss_kib(pid) for pid in pids),
                   'bridge_rss_kib': status_kib(bridge.pid) if bridge else 0}
            bridge_cpu = sched_ns(bridge.pid) if bridge else 0
            sim_cpu = sched_ns(sim.proc.pid)
            for proc in procs:
                proc.stdin.write('\n')
                proc.stdin.flush()
            sim.request('/sim/flood', {'stream_id': stream_id, 'type': 'chat.message',
                                       'rate': WITHOUT_RATE, 'size': EVENT_SIZE,
                                       'count': self.without_count})
            reports = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1])
                       for p in procs]
            rec['bridge_cpu_s'] = (sched_ns(bridge.pid) - bridge_cpu) / 1e9 if bridge else 0
            rec['clients_cpu_s'] = sum(x['self_cpu_sched_s'] for x in reports)
            rec['cpu_s'] = rec['clients_cpu_s'] + rec['bridge_cpu_s']
            rec['sim_cpu_s'] = (sched_ns(sim.proc.pid) - sim_cpu) / 1e9
            rec['lost'] = sum(x['lost'] for x in reports)
            rec['lat_p99_us'] = median(x['lat_p99_us'] for x in reports)
            return rec
        finally:
            for proc in procs:
                stop_process(proc)

    def run_without(self):
        for n in self.without_sizes:
            log(f'without the bridge, N={n}')
            sim = Sim(self.build_dir, self.workdir, max_connections=n + 16)
            try:
                direct = self.without_run(sim, 'direct', n)
            finally:
                sim.stop()
            sim = Sim(self.build_dir, self.workdir)
            bridge = Bridge(self.build_dir, self.workdir, sim, FANOUT_LIMITS, 'without')
            try:
                via = self.without_run(sim, 'bridge', n, bridge)
            finally:
                bridge.stop()
                sim.stop()
            self.raw['without'].append({'n': n, 'direct': direct, 'bridge': via})
            log(f'  {n} WebSockets: {direct["upstream_connections"]} connections, CPU '
                f'{direct["cpu_s"]:.2f} s, PSS {direct["pss_kib"]} KiB; bridge: '
                f'{via["upstream_connections"]} connection, CPU {via["cpu_s"]:.2f} s, PSS '
                f'{via["pss_kib"]} KiB')

    # ---- 9: start-up -------------------------------------------------------------
    def run_startup(self):
        sim = Sim(self.build_dir, self.workdir)
        try:
            for rep in range(STARTUP_REPS):
                log(f'start-up {rep + 1}/{STARTUP_REPS}')
                rec = {}
                notify_path = os.path.join(self.workdir, f'notify-{rep}')
                notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                notify.bind(notify_path)
                notify.settimeout(START_TIMEOUT)
                bridge = Bridge(self.build_dir, self.workdir, sim, MEMORY_LIMITS, 'startup',
                                notify_path=notify_path, wait=False)
                try:
                    while True:
                        if b'READY=1' in notify.recv(4096):
                            rec['exec_to_ready_ms'] = (time.monotonic() - bridge.started) * 1000
                            break
                    rec['rss_at_ready_kib'] = status_kib(bridge.pid)
                finally:
                    bridge.stop()
                    notify.close()
                rec['activation_to_event_ms'] = self.activation_to_event(sim)
                log(f'  exec -> READY=1 {rec["exec_to_ready_ms"]:.1f} ms; socket activation -> '
                    f'first event {rec["activation_to_event_ms"]:.1f} ms')
                self.raw['startup'].append(rec)
        finally:
            sim.stop()

    def activation_to_event(self, sim):
        """A client connects to the listening socket (what makes systemd start
        the service), the daemon is started with it; until the client's first
        event. A flood is already running on the stream, one event a ms."""
        stream_id = self.stream('act')
        path = os.path.join(self.workdir, f'act-{stream_id}.sock')
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(16)
        sim.request('/sim/flood', {'stream_id': stream_id, 'type': 'chat.message', 'rate': 1000,
                                   'size': EVENT_SIZE, 'count': 30000})
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bridge = None
        try:
            started = time.monotonic()
            client.connect(path)
            client.sendall(f'{{"type":"subscribe","stream_id":"{stream_id}"}}\n'.encode())
            bridge = Bridge(self.build_dir, self.workdir, sim, MEMORY_LIMITS, 'activated',
                            activation_fd=listener.fileno(), wait=False)
            listener.close()
            client.settimeout(START_TIMEOUT)
            buffer = b''
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    raise RuntimeError('the activated daemon closed the connection')
                buffer += chunk
                if b'"sim_sent_us"' in buffer:
                    return (time.monotonic() - started) * 1000
        finally:
            client.close()
            if bridge is not None:
                bridge.stop()

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

    # ---- summary of the new parts, and the targets ---------------------------------
    def summarize_more(self, s):
        rounds = self.raw['fanout']
        raw = {}
        for n in self.sizes:
            key = str(n)
            raw[key] = {
                'lat_p50_us': median(r['raw_latency'][key]['lat_p50_us'] for r in rounds),
                'lat_p99_us': median(r['raw_latency'][key]['lat_p99_us'] for r in rounds),
                'line_deliveries_per_s': median(r['raw_line'][key]['deliveries_per_s']
                                                for r in rounds),
                'batch_deliveries_per_s': median(r['raw_batch'][key]['deliveries_per_s']
                                                 for r in rounds),
                'local_deliveries_per_s': median(r['local_batch'][key]['deliveries_per_s']
                                                 for r in rounds),
                'line_cpu_us_per_event': median(1e6 * r['raw_line'][key]['cpu_sched_s']
                                                / r['raw_line'][key]['count'] for r in rounds),
                'batch_cpu_us_per_event': median(1e6 * r['raw_batch'][key]['cpu_sched_s']
                                                 / r['raw_batch'][key]['count'] for r in rounds),
                'bridge_cpu_us_per_event': median(1e6 * r['throughput'][key]['cpu_sched_s']
                                                  / r['throughput'][key]['count'] for r in rounds),
                'tp_ratio_vs_batch': median(
                    r['throughput'][key]['deliveries_per_s']
                    / max(1e-9, r['raw_batch'][key]['deliveries_per_s']) for r in rounds),
                'tp_ratio_vs_line': median(
                    r['throughput'][key]['deliveries_per_s']
                    / max(1e-9, r['raw_line'][key]['deliveries_per_s']) for r in rounds),
                'p99_ratio_vs_line': median(
                    r['latency'][key]['lat_p99_us'] / max(1, r['raw_latency'][key]['lat_p99_us'])
                    for r in rounds),
                'p50_ratio_vs_line': median(
                    r['latency'][key]['lat_p50_us'] / max(1, r['raw_latency'][key]['lat_p50_us'])
                    for r in rounds),
            }
        s['raw_socket'] = raw

        def per_event(x):
            return 1e6 * x['cpu_sched_s'] / x['count'] if x.get('cpu_sched_s') is not None else None

        light = {'saturated_us_per_event': median(per_event(r['throughput']['1']) for r in rounds),
                 'idle_cpu_us_per_s': median(x['idle_cpu_us_per_s'] for x in self.raw['light']),
                 'saturated_wakeups_per_event': median(
                     r['throughput']['1']['main_wakeups'] / r['throughput']['1']['count']
                     for r in rounds)}
        for rate, _ in LIGHT_LOADS:
            light[str(rate)] = {
                'us_per_event': median(per_event(x[str(rate)]) for x in self.raw['light']),
                'wakeups_per_event': median(x[str(rate)]['main_wakeups'] / x[str(rate)]['count']
                                            for x in self.raw['light']),
                'all_threads_wakeups_per_event': median(
                    x[str(rate)]['wakeups'] / x[str(rate)]['count'] for x in self.raw['light']),
                'ratio_vs_saturated': median(
                    per_event(x[str(rate)]) / max(1e-9, per_event(r['throughput']['1']))
                    for x, r in zip(self.raw['light'], rounds)),
            }
        s['light'] = light
        s['strace_calls_per_event'] = self.raw['strace']
        s['n1_vs_direct'] = {
            'bridge_cpu_us_per_event': light['saturated_us_per_event'],
            'direct_cpu_us_per_event': median(
                1e6 * r['throughput']['direct']['self_cpu_sched_s'] / r['throughput']['direct']['count']
                for r in rounds),
            'cpu_ratio': median(
                per_event(r['throughput']['1'])
                / max(1e-9, 1e6 * r['throughput']['direct']['self_cpu_sched_s']
                      / r['throughput']['direct']['count']) for r in rounds),
            'light_cpu_ratio': median(
                r['latency']['1']['cpu_sched_s']
                / max(1e-9, r['latency']['direct']['self_cpu_sched_s']) for r in rounds),
            'burst_p50_ratio': median(
                r['throughput']['1']['lat_p50_us'] / max(1, r['throughput']['direct']['lat_p50_us'])
                for r in rounds),
        }
        dbus = {}
        for n in DBUS_SIZES:
            key = str(n)
            recs = [r[key] for r in self.raw['dbus'] if key in r]
            if not recs:
                continue
            dbus[key] = {
                part: {field: median(x[part][field] for x in recs)
                       for field in ('deliveries_per_s', 'lat_p50_us', 'lat_p99_us',
                                     'sender_cpu_us_per_event', 'bus_cpu_us_per_delivery', 'lost',
                                     'upstream_cpu_us_per_event', 'receiver_cpu_us_per_delivery')}
                for part in ('bridge_tp', 'raw_tp', 'bridge_lat', 'raw_lat')}
            dbus[key]['tp_ratio'] = median(x['bridge_tp']['deliveries_per_s']
                                           / max(1e-9, x['raw_tp']['deliveries_per_s'] or 0)
                                           for x in recs if x['bridge_tp']['deliveries_per_s'])
            dbus[key]['p99_ratio'] = median(x['bridge_lat']['lat_p99_us']
                                            / max(1, x['raw_lat']['lat_p99_us'] or 0)
                                            for x in recs if x['bridge_lat']['lat_p99_us'])
            dbus[key]['p50_ratio'] = median(x['bridge_lat']['lat_p50_us']
                                            / max(1, x['raw_lat']['lat_p50_us'] or 0)
                                            for x in recs if x['bridge_lat']['lat_p50_us'])
            dbus[key]['cpu_ratio'] = median(x['bridge_tp']['sender_cpu_us_per_event']
                                            / max(1e-9, x['raw_tp']['sender_cpu_us_per_event'])
                                            for x in recs)
            dbus[key]['bus_cpu_ratio'] = median(x['bridge_tp']['bus_cpu_us_per_delivery']
                                                / max(1e-9, x['raw_tp']['bus_cpu_us_per_delivery'])
                                                for x in recs)
        s['dbus'] = dbus
        s['dbus_stall'] = self.raw['dbus_stall'][0] if self.raw['dbus_stall'] else None
        s['bus_stall'] = self.raw['bus_stall'][0] if self.raw['bus_stall'] else None
        s['bus_stall_control'] = self.raw['bus_stall_control']
        s['without'] = self.raw['without']
        st = self.raw['startup']
        s['startup'] = {'exec_to_ready_ms': median(x['exec_to_ready_ms'] for x in st),
                        'activation_to_event_ms': median(x['activation_to_event_ms'] for x in st),
                        'rss_at_ready_kib': median(x['rss_at_ready_kib'] for x in st)}
        s['targets'] = self.targets(s)

    def targets(self, s):
        """(what, measured, bound text, PASS/FAIL): the list of issue 15."""
        out = []

        def add(what, value, ok, bound, fmt='.2f'):
            shown = '-' if value is None else format(value, fmt)
            out.append({'target': what, 'measured': value, 'shown': shown, 'bound': bound,
                        'pass': bool(ok) if value is not None else False})

        for n in self.sizes:
            if n >= 10:
                v = s['raw_socket'][str(n)]['tp_ratio_vs_batch']
                add(f'socket deliveries/s N={n} / C forwarder batched', v,
                    v is not None and v >= 1.0, '>= 1.0')
        for n in self.sizes:
            v = s['raw_socket'][str(n)]['p99_ratio_vs_line']
            add(f'socket p99 at {LAT_RATE}/s N={n} / C forwarder per line', v,
                v is not None and v <= 1.5, '<= 1.5')
        for n in DBUS_SIZES:
            d = s['dbus'].get(str(n))
            if d is None:
                continue
            add(f'D-Bus deliveries/s N={n} / raw sd-bus sender', d['tp_ratio'],
                d['tp_ratio'] is not None and d['tp_ratio'] >= 0.8, '>= 0.8')
            add(f'D-Bus p99 at {LAT_RATE}/s N={n} / raw sd-bus sender', d['p99_ratio'],
                d['p99_ratio'] is not None and d['p99_ratio'] <= 1.5, '<= 1.5')
        for rate, _ in LIGHT_LOADS:
            v = s['light'][str(rate)]['ratio_vs_saturated']
            add(f'CPU per event at {rate}/s / saturated (N=1)', v, v is not None and v <= 2.0,
                '<= 2.0')
            calls = (s['strace_calls_per_event'] or {}).get(str(rate)) or {}
            w = calls.get('poll', calls.get('ppoll'))
            add(f'main-loop wake-ups (poll calls, strace) per upstream frame at {rate}/s', w,
                w is not None and w <= 1.0, '<= 1')
        c = s['n1_vs_direct']
        add('CPU per upstream event N=1 / direct client (saturated)', c['cpu_ratio'],
            c['cpu_ratio'] is not None and c['cpu_ratio'] <= 1.1, '<= 1.1')
        add('burst p50 N=1 / direct client', c['burst_p50_ratio'],
            c['burst_p50_ratio'] is not None and c['burst_p50_ratio'] <= 2.0, '<= 2.0')
        m = s['memory']
        add('RSS idle, MiB', m['rss_idle_kib'] / 1024 if m['rss_idle_kib'] else None,
            m['rss_idle_kib'] is not None and m['rss_idle_kib'] <= IDLE_RSS_TARGET_KIB, '<= 15')
        # The marginal client: against 1 client, so the upstream connection
        # (a fixed cost) is not spread over the idle ones.
        add(f'RSS per idle client ({m["clients"]} vs 1), KiB', m['kib_per_client_vs_1'],
            m['kib_per_client_vs_1'] is not None
            and m['kib_per_client_vs_1'] <= PER_CLIENT_TARGET_KIB, '<= 16', '.1f')
        for queue_bytes, sc in s['slow_client'].items():
            # Net of a reading client under the same flood (same run): what
            # the stalled client itself costs.
            v = ((sc['growth_kib'] - sc['control_growth_kib']) * 1024 / int(queue_bytes)
                 if sc['growth_kib'] is not None and sc['control_growth_kib'] is not None else None)
            add(f'never-reading client: (RSS growth - reading client\'s) / ClientQueueBytes '
                f'({int(queue_bytes) >> 20} MiB)', v, v is not None and v <= 1.0, '<= 1.0')
        ds = s['dbus_stall']
        if ds is not None:
            v = (ds['others_p99_during_us'] / ds['others_p99_before_us']
                 if ds['others_p99_before_us'] and ds['others_p99_during_us'] else None)
            add('stalled D-Bus receiver: others p99 during / before', v,
                v is not None and v <= 1.5 and ds['bridge_alive'] and ds['others_lost'] == 0,
                '<= 1.5, none lost, bridge alive')
            add('stalled D-Bus receiver: bridge RSS growth, KiB', ds['bridge_rss_growth_kib'],
                ds['bridge_rss_growth_kib'] * 1024 <= int(DBUS_LIMITS['ClientQueueBytes']),
                '<= ClientQueueBytes', '.0f')
        bs = s['bus_stall']
        if bs is not None:
            lost = BUS_STALL_EVENTS - bs['dbus_received']
            add('stalled dbus-daemon: D-Bus events lost and not in EventsDropped',
                lost - bs['events_dropped'], lost == bs['events_dropped'] and bs['bridge_alive'],
                '0, bridge alive', '.0f')
            add('stalled dbus-daemon: socket client events lost', bs['socket_lost'],
                bs['socket_lost'] == 0, '0', '.0f')
            control = s['bus_stall_control']
            if control is not None:
                v = bs['socket_p99_us'] / max(1, control['socket_p99_us'])
                add('stalled dbus-daemon: socket client p99 / the same flood with it reading', v,
                    v <= 1.5, '<= 1.5')
            add('stalled dbus-daemon: bridge RSS growth, MiB', bs['bridge_rss_growth_kib'] / 1024,
                bs['bridge_rss_growth_kib'] * 1024 <= int(DBUS_LIMITS['ClientQueueBytes']),
                f'<= ClientQueueBytes ({int(DBUS_LIMITS["ClientQueueBytes"]) >> 20})', '.0f')
        return out

    def print_more(self, s):
        out = []

        def fmt(value, spec='.0f'):
            return '-' if value is None else format(value, spec)

        out.append('1a. Baseline (a): an ideal C forwarder of the same flood to the same readers '
                   '(raw WebSocket in, one write per line or per upstream read out); "local": a C '
                   'writer with no upstream at all')
        out.append(f'   {"N":<6}{"fwd p50":>9}{"fwd p99":>9}{"p99 x":>7}{"line/s":>11}{"batch/s":>11}'
                   f'{"bridge/s":>11}{"x line":>8}{"x batch":>8}{"local/s":>11}')
        for n in self.sizes:
            r, f = s['raw_socket'][str(n)], s['fanout'][str(n)]
            out.append(f'   {n:<6}{fmt(r["lat_p50_us"]):>9}{fmt(r["lat_p99_us"]):>9}'
                       f'{fmt(r["p99_ratio_vs_line"], ".2f"):>7}{fmt(r["line_deliveries_per_s"]):>11}'
                       f'{fmt(r["batch_deliveries_per_s"]):>11}{fmt(f["deliveries_per_s"]):>11}'
                       f'{fmt(r["tp_ratio_vs_line"], ".2f"):>8}{fmt(r["tp_ratio_vs_batch"], ".2f"):>8}'
                       f'{fmt(r["local_deliveries_per_s"]):>11}')
        out.append('   CPU per upstream event at saturation (us), bridge / forwarder per line / batched: '
                   + '; '.join(f'N={n} {fmt(s["raw_socket"][str(n)]["bridge_cpu_us_per_event"], ".1f")}'
                               f' / {fmt(s["raw_socket"][str(n)]["line_cpu_us_per_event"], ".1f")}'
                               f' / {fmt(s["raw_socket"][str(n)]["batch_cpu_us_per_event"], ".1f")}'
                               for n in self.sizes))
        li = s['light']
        out.append(f'3a. Light load. The idle daemon (a subscribed stream, nothing coming) spends '
                   f'{fmt(li["idle_cpu_us_per_s"], ".0f")} us CPU per second.')
        out.append(f'   CPU per upstream event, N=1: saturated {fmt(li["saturated_us_per_event"], ".1f")} us '
                   f'({fmt(li["saturated_wakeups_per_event"], ".2f")} wake-ups/event); ' + '; '.join(
                       f'{rate}/s {fmt(li[str(rate)]["us_per_event"], ".1f")} us '
                       f'(x{fmt(li[str(rate)]["ratio_vs_saturated"], ".1f")}), sleeps in poll '
                       f'{fmt(li[str(rate)]["wakeups_per_event"], ".2f")}/event (all threads '
                       f'{fmt(li[str(rate)]["all_threads_wakeups_per_event"], ".2f")})'
                       for rate, _ in LIGHT_LOADS))
        for rate, per_event in (s['strace_calls_per_event'] or {}).items():
            if per_event:
                calls = sorted(per_event.items(), key=lambda kv: -kv[1])[:8]
                out.append(f'   strace -c -f at {rate}/s, system calls per upstream event: '
                           + ', '.join(f'{name} {value:.2f}' for name, value in calls))
        c = s['n1_vs_direct']
        out.append(f'   N=1 vs direct client: CPU/event {fmt(c["bridge_cpu_us_per_event"], ".1f")} vs '
                   f'{fmt(c["direct_cpu_us_per_event"], ".1f")} us (x{fmt(c["cpu_ratio"], ".2f")}; at '
                   f'{LAT_RATE}/s x{fmt(c["light_cpu_ratio"], ".2f")}); burst p50 x{fmt(c["burst_p50_ratio"], ".1f")}')
        out.append('7. D-Bus (separate sd-bus receiver processes, private dbus-daemon):')
        out.append(f'   {"N":<5}{"bridge/s":>10}{"raw/s":>10}{"x":>6}{"p50":>8}{"raw p50":>9}{"p99":>8}'
                   f'{"raw p99":>9}{"p99 x":>7}{"us/ev":>7}{"raw":>6}{"bus/deliv":>10}{"raw":>6}')
        for n in DBUS_SIZES:
            d = s['dbus'].get(str(n))
            if d is None:
                continue
            out.append(f'   {n:<5}{fmt(d["bridge_tp"]["deliveries_per_s"]):>10}'
                       f'{fmt(d["raw_tp"]["deliveries_per_s"]):>10}{fmt(d["tp_ratio"], ".2f"):>6}'
                       f'{fmt(d["bridge_lat"]["lat_p50_us"]):>8}{fmt(d["raw_lat"]["lat_p50_us"]):>9}'
                       f'{fmt(d["bridge_lat"]["lat_p99_us"]):>8}{fmt(d["raw_lat"]["lat_p99_us"]):>9}'
                       f'{fmt(d["p99_ratio"], ".2f"):>7}'
                       f'{fmt(d["bridge_tp"]["sender_cpu_us_per_event"], ".1f"):>7}'
                       f'{fmt(d["raw_tp"]["sender_cpu_us_per_event"], ".1f"):>6}'
                       f'{fmt(d["bridge_tp"]["bus_cpu_us_per_delivery"], ".1f"):>10}'
                       f'{fmt(d["raw_tp"]["bus_cpu_us_per_delivery"], ".1f"):>6}')
        for n in DBUS_SIZES:
            d = s['dbus'].get(str(n))
            if d is None:
                continue
            b, r = d['bridge_tp'], d['raw_tp']
            out.append(f'   N={n} CPU per event along the whole path (2 cores for all of it): bridge path '
                       f'{fmt(b["upstream_cpu_us_per_event"], ".1f")} wave-sim + '
                       f'{fmt(b["sender_cpu_us_per_event"], ".1f")} bridge + '
                       f'{fmt(b["bus_cpu_us_per_delivery"] * n, ".1f")} dbus-daemon + '
                       f'{fmt(b["receiver_cpu_us_per_delivery"] * n, ".1f")} receivers; raw '
                       f'{fmt(r["sender_cpu_us_per_event"], ".1f")} sender + '
                       f'{fmt(r["bus_cpu_us_per_delivery"] * n, ".1f")} dbus-daemon + '
                       f'{fmt(r["receiver_cpu_us_per_delivery"] * n, ".1f")} receivers (us)')
        ds = s['dbus_stall']
        if ds:
            out.append(f'   stalled receiver (1 of {DBUS_STALL_RECEIVERS}, {DBUS_STALL_RATE}/s): others p99 '
                       f'{fmt(ds["others_p99_before_us"])} -> {fmt(ds["others_p99_during_us"])} us, '
                       f'others lost {ds["others_lost"]}, bridge alive {ds["bridge_alive"]}, '
                       f'EventsDropped +{ds["events_dropped"]}, bridge RSS +{ds["bridge_rss_growth_kib"]} KiB, '
                       f'dbus-daemon RSS +{ds["bus_rss_growth_kib"]} KiB (the backlog sits there); '
                       f'the stalled one got {ds["stalled_received"]}/{ds["count"]} after SIGCONT')
        bs = s['bus_stall']
        if bs:
            out.append(f'   stalled dbus-daemon, {bs["events"]} events at {BUS_STALL_RATE}/s: bridge alive '
                       f'{bs["bridge_alive"]}, EventsDropped +{bs["events_dropped"]} ({bs["intake_dropped"]} '
                       f'at the upstream intake, {bs["enobufs_dropped"]} refused by sd-bus), bridge RSS '
                       f'+{bs["bridge_rss_growth_kib"] >> 10} MiB; socket client on the same stream lost '
                       f'{bs["socket_lost"]} (p99 {fmt(bs["socket_p99_us"])} us; with dbus-daemon '
                       f'reading: p99 {fmt((s["bus_stall_control"] or {}).get("socket_p99_us"))} us)')
        out.append('8. Without the bridge: N processes with their own WebSocket vs N clients of one bridge '
                   f'({WITHOUT_RATE}/s, {self.without_count} events):')
        for w in s['without']:
            d, b = w['direct'], w['bridge']
            out.append(f'   N={w["n"]}: upstream connections {d["upstream_connections"]} vs '
                       f'{b["upstream_connections"]}; CPU {d["cpu_s"]:.2f} s vs {b["cpu_s"]:.2f} s '
                       f'(bridge {b["bridge_cpu_s"]:.2f}); RSS {d["rss_kib"] >> 10} vs '
                       f'{b["rss_kib"] >> 10} MiB, PSS {d["pss_kib"] >> 10} vs {b["pss_kib"] >> 10} MiB; '
                       f'server CPU {d["sim_cpu_s"]:.2f} vs {b["sim_cpu_s"]:.2f} s')
        st = s['startup']
        out.append(f'9. Start-up (median of {STARTUP_REPS}): exec -> READY=1 {fmt(st["exec_to_ready_ms"], ".1f")} ms '
                   f'(RSS {fmt(st["rss_at_ready_kib"])} KiB); socket activation -> first delivered event '
                   f'{fmt(st["activation_to_event_ms"], ".1f")} ms')
        out.append('')
        out.append('TARGETS (issue 15), ratios against baselines of this run:')
        for t in s['targets']:
            out.append(f'   {"PASS" if t["pass"] else "FAIL"}  {t["target"]:<66} {t["shown"]:>8}  '
                       f'({t["bound"]})')
        passed = sum(1 for t in s['targets'] if t['pass'])
        out.append(f'   {passed}/{len(s["targets"])} pass')
        print('\n'.join(out), flush=True)

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
        self.dbus_tp_deliveries = DBUS_TP_DELIVERIES // (4 if quick else 1)
        self.without_sizes = (10,) if quick else WITHOUT_SIZES
        self.without_count = WITHOUT_COUNT // (2 if quick else 1)
        started = time.monotonic()
        log('note: absolute numbers depend on what else runs on this machine; '
            'the ratios compare runs of the same moment')
        # Logs stay in the work dir when a run fails; a good run removes it.
        self.phase_s = {}
        for phase in (self.run_fanout, self.run_dbus, self.run_memory, self.run_slow_client,
                      self.run_responsiveness, self.run_without, self.run_startup):
            phase_started = time.monotonic()
            phase()
            self.phase_s[phase.__name__] = time.monotonic() - phase_started
            log(f'  ({phase.__name__}: {self.phase_s[phase.__name__]:.0f} s)')
        shutil.rmtree(self.workdir, ignore_errors=True)
        summary = self.summarize()
        self.summarize_more(summary)
        self.print_table(summary)
        self.print_more(summary)
        result = {
            'machine': {'host': platform.node(), 'cpus': os.cpu_count(),
                        'loadavg_at_end': os.getloadavg(), 'kernel': platform.release()},
            'rounds': self.args.rounds,
            'quick': quick,
            'duration_s': time.monotonic() - started,
            'phase_s': self.phase_s,
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
