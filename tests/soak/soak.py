#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The chaos soak (docs/reliability.md "Soak"): the real wave-bridged
between the real wave-sim and a private dbus-daemon, dozens of socket and
D-Bus clients that subscribe, unsubscribe, send chat and reactions and
disconnect at random, while wave-sim injects random faults of every class
it knows. Everything is logged; soak_check.py then does the accounting,
and this driver checks the daemon itself: alive throughout, exit 0, RSS
and descriptors back near the baseline, reconnect waits within the close
table.

    python3 tests/soak/soak.py [--seconds N] [--seed N] [--out DIR]

Length: --seconds, else $WB_SOAK_SECONDS, else --default-seconds (meson
passes -Dsoak_seconds), else 120; the whole run, start-up and the final
checks included, takes about that long. Exit 0 when every
check passes. The run directory (kept with --out, else a temporary one
removed on success) holds the logs and summary.json.
"""

import argparse
import asyncio
import collections
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
sys.path.insert(0, HERE)

from wbtest import Bridge, PrivateBus, Sim, wait_until  # noqa: E402
import soak_check  # noqa: E402

EVENT_TYPES = soak_check.STREAM_EVENTS
N_STREAMS = 4
# A stream id no simulated broadcast has: only bursts (/sim/flood) feed it.
EXTRA_STREAM = 'stream_zzz999'
TIMINGS = {'PingInterval': 2.0, 'PongTimeout': 1.0, 'BackoffInitial': 0.1, 'BackoffMax': 1.0,
           'GoingAwayWait': 0.3, 'RateLimitedWait': 0.6}
CONFIG = {
    'Upstream': {k: str(v) for k, v in TIMINGS.items()} | {'IdleTimeout': '30'},
    'Limits': {'ChatPerMinute': '6000', 'ReactionsPerMinute': '6000',
               'MaxClientsPerUser': '512', 'SendQueueTimeout': '5',
               # Small, so a burst overflows the slow readers' queues.
               'ClientQueueBytes': '32768'},
}
# Close codes of the WAVE table (shared/upstream, daemon/close-policy.c)
# and codes it does not name; 1005/1006/1015 cannot be sent.
CLOSE_CODES = (1000, 1001, 1008, 1011, 3000, 4000, 4401, 4429, 4500, 4999)
REJECT_STATUSES = (400, 401, 403, 429, 500, 503)
REJECT_CLOSE_CODES = (1001, 4401, 4429, 4500)
# Each needs a Reload before the bridge tries again (auth-failed).
PARKING = {'close:4401', 'reject-http:401', 'reject-http:403', 'reject-close:4401'}
GARBAGE = (
    '{not json',
    '[1,2,3]',
    '{"type":"stream.health","payload":{"stream_id":"stream_x","bitrate":"fast"}}',
    '{"type":"chat.message"}',
    '{"type":"viewer.joined","payload":{"stream_id":"","viewer_id":7}}',
    '{"type":"bogus.type","payload":{}}',
    '{"type":"stream.health","payload":{"stream_id":"s","bitrate":0x10}}',
)
# RSS may grow this much over the run (allocator arenas, caches that are
# bounded by design: the per-stream cache, the close history).
RSS_GROWTH_LIMIT_KIB = 4096
SLOW_READ_BUFFER = 16384
SLOW_READ_BYTES_PER_S = 16000
END_SETTLE_S = 10.0
# The daemon logs HH:MM:SS.mmm
LOG_RESOLUTION_S = 0.002
LOG_LINE = re.compile(r'^[\w-]+-Message: (?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d\.\d+): (?P<text>.*)$')
LOST = re.compile(r'^upstream \S+ lost: (?P<why>[^(]+?) \(')
LOG_PROBLEM = re.compile(r'-(?P<level>WARNING|CRITICAL|ERROR) \*\*: [\d:.]+: (?P<text>.*)$')
# What the faults make the bridge say: garbage and oversized frames.
EXPECTED_WARNING = re.compile(r'^(ignoring invalid upstream message: |\d+ more invalid upstream)')
PLAN = re.compile(r'^next upstream attempt in (?P<ms>\d+) ms')
WAIT_UPPER_SLACK_S = 2.0  # a loaded machine


def now():
    return time.monotonic()


def socket_kinds(pid):
    """inode → 'unix:PATH', 'tcp:LOCAL-REMOTE STATE', 'netlink', … for
    the descriptors' sockets: what a leaked one was."""
    kinds = {}
    for proto in ('tcp', 'tcp6', 'udp', 'unix', 'netlink'):
        try:
            with open(f'/proc/{pid}/net/{proto}') as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if proto == 'unix':
                        inode = cols[6]
                        kinds[inode] = 'unix:' + (cols[7] if len(cols) > 7 else '(peer)')
                    elif proto == 'netlink':
                        kinds[cols[-1]] = 'netlink'
                    else:
                        kinds[cols[9]] = f'{proto}:{cols[1]}-{cols[2]} {cols[3]}'
        except (OSError, StopIteration):
            pass
    return kinds


class RunLog:
    """A JSON-lines file with a monotonic time on every record."""

    def __init__(self, path):
        self.f = open(path, 'w')
        self.lock = threading.Lock()

    def write(self, record):
        record.setdefault('t', now())
        with self.lock:
            self.f.write(json.dumps(record, separators=(',', ':')) + '\n')

    def write_raw_in(self, t, line):
        # A line from the bridge is one strict JSON object: embed it as is.
        with self.lock:
            self.f.write('{"t":%r,"kind":"in","msg":%s}\n' % (t, line))

    def close(self):
        with self.lock:
            self.f.close()


class SocketSession:
    """One connection of a socket client."""

    def __init__(self, run_dir, name, path, slow=False):
        self.name = name
        self.slow = slow
        self.path = path
        self.log = RunLog(os.path.join(run_dir, 'clients', name + '.jsonl'))
        self.log.write({'kind': 'session', 'transport': 'socket', 'id': name})
        self.pending = set()  # ids of sends not yet answered
        self.subs = {}  # stream → events
        self.n = 0
        self.state = None
        self.reader_task = None

    async def open(self):
        # A slow reader buffers little, so the bridge's queue for it fills.
        self.reader, self.writer = await asyncio.open_unix_connection(
            self.path, limit=SLOW_READ_BUFFER if self.slow else 1 << 20)
        self.reader_task = asyncio.ensure_future(self.read_loop())

    async def read_loop(self):
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    return
                t = now()
                text = line.decode().rstrip('\n')
                self.log.write_raw_in(t, text)
                if self.slow:
                    await asyncio.sleep(len(line) / SLOW_READ_BYTES_PER_S)
                msg = json.loads(text)
                mtype = msg.get('type')
                if mtype in ('sent', 'error') and msg.get('id') in self.pending:
                    self.pending.discard(msg['id'])
                elif mtype == 'subscribed':
                    self.subs[msg['payload']['stream_id']] = msg['payload']['events']
                elif mtype == 'unsubscribed':
                    self.subs.pop(msg['payload']['stream_id'], None)
                elif mtype == 'bridge.state':
                    self.state = msg['payload']['state']
                elif mtype == 'bridge.hello':
                    self.state = msg['payload']['state']
        except (ConnectionError, asyncio.CancelledError):
            return

    def send(self, msg):
        self.n += 1
        msg['id'] = f'{self.name}-{self.n}'
        if msg['type'] in ('chat.message', 'reaction.sent'):
            self.pending.add(msg['id'])
        self.log.write({'kind': 'out', 'msg': msg})
        self.writer.write(json.dumps(msg).encode() + b'\n')

    async def close(self, graceful, wait_s=20.0):
        if graceful:
            deadline = now() + wait_s
            while self.pending and now() < deadline:
                await asyncio.sleep(0.05)
        else:
            self.log.write({'kind': 'disconnect'})
        try:
            self.writer.close()
        except OSError:
            pass
        if self.reader_task is not None:
            if graceful:
                # Whatever the bridge still sent is read and logged.
                try:
                    await asyncio.wait_for(self.reader_task, 2.0)
                except (asyncio.TimeoutError, ConnectionError):
                    pass
            self.reader_task.cancel()
        self.log.write({'kind': 'end', 'graceful': graceful})
        self.log.close()


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.run_dir = args.out
        os.makedirs(os.path.join(self.run_dir, 'clients'), exist_ok=True)
        self.faults = RunLog(os.path.join(self.run_dir, 'faults.jsonl'))
        self.fault_counts = collections.Counter()
        self.fault_names = collections.Counter()  # with the code or status
        self.failures = []
        self.samples = []
        self.stop_clients = False
        self.phase = 0
        self.stop_faults = threading.Event()
        self.lock = threading.Lock()

    # -- faults -------------------------------------------------------------

    def fault(self, name, action):
        self.faults.write({'kind': 'fault', 'fault': name})
        self.fault_counts[name.split(':')[0]] += 1
        self.fault_names[name] += 1
        self.fault_counts['total'] += 1
        try:
            action()
        except Exception as e:  # the sim refusing is a finding, not a crash of the driver
            self.failures.append(f'fault {name}: {e}')
        if name in PARKING or (name == 'close:1000' and self.rng.random() < 0.5):
            # auth-failed waits for a reload; closed for demand or a reload.
            self.stop_faults.wait(self.rng.uniform(0.3, 1.5))
            self.faults.write({'kind': 'reload'})
            self.bridge.reload()

    def fault_loop(self):
        sim, rng = self.sim, self.rng
        streams = self.streams + [EXTRA_STREAM]
        while not self.stop_faults.wait(rng.uniform(1.0, 3.5)):
            r = rng.random()
            if r < 0.30:
                code = rng.choice(CLOSE_CODES)
                self.fault(f'close:{code}',
                           lambda: sim.post('/sim/close', {'code': code, 'reason': 'soak'}))
            elif r < 0.42:
                self.fault('drop', lambda: sim.post('/sim/drop'))
            elif r < 0.52:
                status = rng.choice(REJECT_STATUSES)
                self.fault(f'reject-http:{status}', lambda: (
                    sim.post('/sim/reject', {'count': rng.randint(1, 2), 'http_status': status}),
                    sim.post('/sim/close', {'code': 4500})))
            elif r < 0.60:
                code = rng.choice(REJECT_CLOSE_CODES)
                self.fault(f'reject-close:{code}', lambda: (
                    sim.post('/sim/reject', {'count': 1, 'close_code': code}),
                    sim.post('/sim/close', {'code': 4500})))
            elif r < 0.68:
                stall = rng.uniform(2.5, 4.5)

                def stall_pongs():
                    sim.post('/sim/pings', {'answer': False})
                    self.stop_faults.wait(stall)
                    sim.post('/sim/pings', {'answer': True})
                self.fault('stall-pongs', stall_pongs)
            elif r < 0.80:
                text = rng.choice(GARBAGE + ('binary', 'error'))
                if text == 'binary':
                    self.fault('garbage', lambda: sim.post('/sim/raw', {'binary_base64': 'AP8A'}))
                elif text == 'error':
                    body = {'text': json.dumps({'type': 'error', 'payload': {
                        'code': 'soak', 'message': 'injected',
                        'details': {'stream_id': rng.choice(streams)}}})}
                    self.fault('garbage', lambda: sim.post('/sim/raw', body))
                else:
                    self.fault('garbage', lambda: sim.post('/sim/raw', {'text': text}))
            elif r < 0.86:
                self.fault('oversized', lambda: sim.post(
                    '/sim/raw', {'text': '{"type":"pong"}', 'pad_to': 1048577}))
            else:
                # A third to the stream the slow readers take whole.
                target = EXTRA_STREAM if rng.random() < 0.33 else rng.choice(streams)
                body = {'stream_id': target, 'type': rng.choice(EVENT_TYPES),
                        'rate': rng.randint(500, 3000), 'count': rng.randint(50, 1500)}
                self.fault('burst', lambda: sim.post('/sim/flood', body))

    # -- the daemon ---------------------------------------------------------

    def sample(self, phase):
        pid = self.bridge.proc.pid
        try:
            fd_dir = f'/proc/{pid}/fd'
            sockets = socket_kinds(pid)
            targets = []
            for n in os.listdir(fd_dir):
                target = os.readlink(os.path.join(fd_dir, n))
                if target.startswith('socket:['):
                    target = sockets.get(target[8:-1], 'socket:?')
                targets.append(target.split('[')[0])
            fds = len(targets)
            rss = self.bridge.rss_kib()
        except (FileNotFoundError, ProcessLookupError):
            fds = rss = targets = None
        entry = {'t': now(), 'phase': phase, 'rss_kib': rss, 'fds': fds,
                 'fd_kinds': dict(collections.Counter(targets)) if fds is not None else None,
                 'alive': self.bridge.proc.poll() is None}
        self.samples.append(entry)
        return entry

    def monitor_loop(self):
        while not self.stop_monitor.wait(2.0):
            entry = self.sample('run')
            if not entry['alive']:
                self.failures.append(f'wave-bridged died: exit {self.bridge.proc.returncode}')
                return

    # -- clients ------------------------------------------------------------

    async def socket_client(self, index, lifetime=(5, 40)):
        rng = random.Random(self.rng.random())
        number = 0
        while not self.stop_clients:
            number += 1
            session = SocketSession(self.run_dir, f'sock-{index:02d}-{number:03d}',
                                    self.bridge.socket_path)
            try:
                await session.open()
            except OSError as e:
                session.log.write({'kind': 'end', 'graceful': False, 'error': str(e)})
                session.log.close()
                await asyncio.sleep(0.5)
                continue
            deadline = now() + rng.uniform(*lifetime)
            while not self.stop_clients and now() < deadline:
                await asyncio.sleep(rng.uniform(0.5, 2.5))
                if self.stop_clients:
                    break
                self.socket_act(session, rng)
            if self.stop_clients:
                await session.close(graceful=True)
                return
            await session.close(graceful=False)
            await asyncio.sleep(rng.uniform(0.2, 2.0))

    def socket_act(self, session, rng):
        streams = self.streams + [EXTRA_STREAM]
        r = rng.random()
        if r < 0.35:
            events = [] if rng.random() < 0.5 else sorted(rng.sample(EVENT_TYPES,
                                                                     rng.randint(1, 4)))
            request = {'type': 'subscribe', 'stream_id': rng.choice(streams), 'events': events}
            if rng.random() < 0.4:
                request['history'] = rng.randint(0, 60)
            session.send(request)
        elif r < 0.5 and session.subs:
            session.send({'type': 'unsubscribe', 'stream_id': rng.choice(sorted(session.subs))})
        elif r < 0.68:
            session.send({'type': 'chat.message', 'stream_id': rng.choice(streams),
                          'message': f'soak {session.name} {session.n}'})
        elif r < 0.86:
            session.send({'type': 'reaction.sent', 'stream_id': rng.choice(streams),
                          'reaction': rng.choice('👍🔥❤😂')})
        elif r < 0.93:
            session.send({'type': 'status'})
        else:
            session.send({'type': 'ping'})

    async def slow_reader(self, index):
        """Subscribed to every stream, reading at SLOW_READ_BYTES_PER_S: a
        burst outgrows its queue (ClientQueueBytes), so the bridge drops
        events for it and must say so with bridge.dropped."""
        session = SocketSession(self.run_dir, f'slow-{index:02d}-{self.phase}',
                                self.bridge.socket_path, slow=True)
        await session.open()
        # Bursts feed EXTRA_STREAM; one stream's health keeps it busy between.
        session.send({'type': 'subscribe', 'stream_id': EXTRA_STREAM, 'events': []})
        session.send({'type': 'subscribe', 'stream_id': self.streams[0],
                      'events': ['stream.health']})
        while not self.stop_clients:
            await asyncio.sleep(0.2)
        await session.close(graceful=True)

    async def observer(self):
        """Subscribed to every stream from start to end, never leaving: the
        strictest accounting, and the witness of reconnect waits."""
        session = SocketSession(self.run_dir, 'observer', self.bridge.socket_path)
        await session.open()
        for stream in self.streams + [EXTRA_STREAM]:
            session.send({'type': 'subscribe', 'stream_id': stream, 'events': []})
        self.observer_session = session
        while not self.stop_observer:
            await asyncio.sleep(0.1)
        await session.close(graceful=True)

    async def clients_phase(self, seconds, faults):
        self.stop_clients = False
        self.phase += 1
        dbus = subprocess.Popen([sys.executable, os.path.join(HERE, 'soak_dbus.py'),
                                 self.bus.address, self.run_dir, str(self.args.dbus_clients),
                                 str(self.rng.randint(0, 1 << 30))] + self.streams
                                + [EXTRA_STREAM], stdout=subprocess.PIPE, text=True)
        dbus.stdout.readline()
        tasks = [asyncio.ensure_future(self.socket_client(i))
                 for i in range(self.args.socket_clients)]
        tasks += [asyncio.ensure_future(self.slow_reader(i)) for i in range(self.args.slow_clients)]
        fault_thread = None
        if faults:
            self.stop_faults.clear()
            fault_thread = threading.Thread(target=self.fault_loop, daemon=True)
            fault_thread.start()
        await asyncio.sleep(seconds)
        if fault_thread is not None:
            self.stop_faults.set()
            fault_thread.join()
            await asyncio.get_running_loop().run_in_executor(None, self.settle)
        self.stop_clients = True
        dbus.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)
        rc = await asyncio.get_running_loop().run_in_executor(None, dbus.wait)
        if rc != 0:
            self.failures.append(f'the D-Bus clients exited with {rc}')

    def settle(self):
        """Faults off, the bridge connected again and subscriptions upstream."""
        self.sim.post('/sim/pings', {'answer': True})
        self.sim.post('/sim/reject', {'count': 0, 'http_status': 503})
        self.faults.write({'kind': 'reload'})
        self.bridge.reload()  # out of auth-failed or closed, if a fault left it there
        wait_until(lambda: self.observer_session.state == 'connected', timeout=30,
                   what='the bridge connected after the faults')
        time.sleep(3.0)

    # -- the run ------------------------------------------------------------

    async def run_async(self, seconds):
        self.stop_observer = False
        observer = asyncio.ensure_future(self.observer())
        await asyncio.sleep(0.5)
        await asyncio.get_running_loop().run_in_executor(None, lambda: wait_until(
            lambda: self.observer_session.state == 'connected', timeout=30,
            what='the bridge connected'))
        warmup = min(15.0, max(5.0, seconds * 0.05))
        await self.clients_phase(warmup, faults=False)
        await asyncio.sleep(2.0)
        self.baseline = self.sample('baseline')
        with open(f'/proc/{self.bridge.proc.pid}/maps') as f:
            self.sanitized = 'libasan' in f.read()
        self.stop_monitor = threading.Event()
        monitor = threading.Thread(target=self.monitor_loop, daemon=True)
        monitor.start()
        chaos = max(10.0, seconds - warmup - 20.0)
        await self.clients_phase(chaos, faults=True)
        self.stop_monitor.set()
        monitor.join()
        # Closing clients is asynchronous on the bridge's side too: give
        # the descriptors a moment to come back before calling it a leak.
        deadline = now() + END_SETTLE_S
        while True:
            await asyncio.sleep(0.5)
            self.end = self.sample('end')
            if self.end['fds'] is None or self.end['fds'] <= self.baseline['fds'] \
                    or now() > deadline:
                break
        self.upstream_union = self.sim.upstream_subscriptions()
        self.stop_observer = True
        await observer

    def run(self):
        seconds = self.args.seconds
        started = now()
        with PrivateBus() as bus, Sim(streams=N_STREAMS, speed=self.args.speed,
                                      seed=self.args.seed,
                                      extra_args=['--event-log', os.path.join(
                                          self.run_dir, 'sim-events.jsonl')]) as sim:
            self.bus, self.sim = bus, sim
            self.streams = list(sim.streams)
            with Bridge(sim, bus, config=CONFIG) as bridge:
                self.bridge = bridge
                try:
                    asyncio.run(self.run_async(seconds))
                finally:
                    self.stop_faults.set()
                rc = bridge.stop()
                if rc != 0:
                    self.failures.append(f'wave-bridged exited with {rc} on SIGTERM')
                shutil.copy(os.path.join(bridge.dir, 'daemon.log'),
                            os.path.join(self.run_dir, 'daemon.log'))
        self.faults.close()
        self.wall_s = now() - started
        self.check_daemon()
        return self.summarize()

    # -- the daemon's checks ------------------------------------------------

    def check_daemon(self):
        if any(not s['alive'] for s in self.samples):
            self.failures.append('wave-bridged was not alive throughout')
        b, e = self.baseline, self.end
        if e['fds'] is None or e['fds'] > b['fds']:
            self.failures.append(f'descriptors: {b["fds"]} at the baseline {b["fd_kinds"]}, '
                                 f'{e["fds"]} at the end {e["fd_kinds"]}')
        if self.sanitized:
            pass  # ASan's quarantine keeps freed memory: RSS says nothing
        elif e['rss_kib'] is None or e['rss_kib'] - b['rss_kib'] > RSS_GROWTH_LIMIT_KIB:
            self.failures.append(f'RSS: {b["rss_kib"]} KiB at the baseline, {e["rss_kib"]} KiB '
                                 f'at the end (limit +{RSS_GROWTH_LIMIT_KIB})')
        wanted = {(s, tuple(sorted(EVENT_TYPES))) for s in self.streams + [EXTRA_STREAM]}
        have = {(s['stream_id'], tuple(s['events'])) for s in self.upstream_union}
        if have != wanted:
            self.failures.append(f'upstream subscriptions at the end {sorted(have)} are not the '
                                 f'observer\'s {sorted(wanted)}')
        self.check_waits()
        self.check_log()

    def check_log(self):
        """No CRITICAL (a g_return_if_fail: a programmer error) or ERROR in
        the daemon's log, and no warning but those the faults provoke."""
        self.log_warnings = collections.Counter()
        with open(os.path.join(self.run_dir, 'daemon.log'), errors='replace') as f:
            for line in f:
                m = LOG_PROBLEM.search(line)
                if m is None:
                    continue
                text = m['text'].strip()
                if m['level'] == 'WARNING' and EXPECTED_WARNING.match(text):
                    self.log_warnings['expected: ' + text.split(':')[0]] += 1
                    continue
                self.log_warnings[m['level']] += 1
                if self.log_warnings[m['level']] <= 5:
                    self.failures.append(f'daemon log: {m["level"]}: {text}')

    def check_waits(self):
        """Reconnect waits, from the daemon's own log (the observer's clock
        is a Python process on a loaded machine: it may read a second of
        lines at once). Each close or failed handshake the daemon reports
        ("lost: DESCRIPTION (close code N …)") must plan the wait the close
        table gives ("next upstream attempt in N ms": the fixed wait or a
        backoff step, + at most 20 % jitter), and the next attempt must not
        end (connected, or failed) before that wait is over, unless a
        reload or a network change cut it short (as documented)."""
        fixed = {'going away': TIMINGS['GoingAwayWait'],
                 'rate limited': TIMINGS['RateLimitedWait'],
                 'handshake rate limited': TIMINGS['RateLimitedWait']}
        no_wait = {'normal closure', 'invalid api key', 'handshake unauthorized',
                   'handshake forbidden'}
        events = []  # (seconds of the day, kind, detail)
        with open(os.path.join(self.run_dir, 'daemon.log'), errors='replace') as f:
            for line in f:
                m = LOG_LINE.match(line)
                if not m:
                    continue
                t = int(m['h']) * 3600 + int(m['m']) * 60 + float(m['s'])
                text = m['text']
                lost = LOST.search(text)
                plan = PLAN.search(text)
                if lost:
                    events.append((t, 'lost', lost['why']))
                elif plan:
                    events.append((t, 'plan', int(plan['ms']) / 1000.0))
                elif text.startswith('connected to '):
                    events.append((t, 'attempt', None))
                elif text.startswith(('reloading', 'network changed', 'reconnect requested')):
                    events.append((t, 'cut', text))
        self.waits = collections.Counter()
        for i, (t, kind, detail) in enumerate(events):
            if kind != 'lost':
                continue
            why = detail
            plan = events[i + 1] if i + 1 < len(events) else None
            if why in no_wait:
                self.waits['no retry (' + why + ')'] += 1
                if plan and plan[1] == 'plan' and abs(plan[0] - t) < 0.01:
                    self.failures.append(f'"{why}" at {t:.3f} planned a retry')
                continue
            if plan is None or plan[1] != 'plan':
                self.failures.append(f'"{why}" at {t:.3f} planned no retry')
                continue
            wait = plan[2]
            if why in fixed:
                lo, hi, name = fixed[why], fixed[why] * 1.2, why
            else:
                lo, hi, name = TIMINGS['BackoffInitial'], TIMINGS['BackoffMax'] * 1.2, 'backoff'
            self.waits[name] += 1
            if not lo - 0.001 <= wait <= hi + 0.001:
                self.failures.append(f'"{why}" at {t:.3f}: planned {wait * 1000:.0f} ms, the '
                                     f'table says {lo * 1000:.0f}-{hi * 1000:.0f} ms')
            following = events[i + 2] if i + 2 < len(events) else None
            if following is None or following[1] == 'cut':
                continue
            if following[0] - plan[0] < wait - LOG_RESOLUTION_S:
                self.failures.append(f'"{why}" at {t:.3f}: planned {wait * 1000:.0f} ms, the next '
                                     f'attempt ended after {(following[0] - plan[0]) * 1000:.0f} ms')
            elif following[0] - plan[0] > wait + WAIT_UPPER_SLACK_S:
                self.failures.append(f'"{why}" at {t:.3f}: planned {wait * 1000:.0f} ms, the next '
                                     f'attempt came after {(following[0] - plan[0]):.1f} s')

    def summarize(self):
        checker = soak_check.Checker(self.run_dir)
        ok = checker.run()
        report = checker.report()
        summary = {
            'seconds': self.args.seconds, 'wall_s': round(self.wall_s, 1), 'seed': self.args.seed,
            'faults': dict(self.fault_counts), 'faults_by_name': dict(self.fault_names),
            'accounting': dict(checker.counts),
            'accounting_failures': len(checker.failures), 'daemon_failures': self.failures,
            'waits': dict(self.waits), 'log': dict(self.log_warnings),
            'rss_kib': {'baseline': self.baseline['rss_kib'], 'end': self.end['rss_kib'],
                        'peak': max(s['rss_kib'] or 0 for s in self.samples)},
            'fds': {'baseline': self.baseline['fds'], 'end': self.end['fds'],
                    'peak': max(s['fds'] or 0 for s in self.samples)},
        }
        with open(os.path.join(self.run_dir, 'summary.json'), 'w') as f:
            json.dump(summary, f, indent=1)
        with open(os.path.join(self.run_dir, 'daemon-samples.jsonl'), 'w') as f:
            for entry in self.samples:
                f.write(json.dumps(entry) + '\n')
        print(report)
        print('faults:', json.dumps(summary['faults'], sort_keys=True))
        print('reconnect waits checked:', json.dumps(summary['waits'], sort_keys=True))
        print(f'RSS KiB {summary["rss_kib"]}{" (ASan: not checked)" if self.sanitized else ""}; '
              f'fds {summary["fds"]}; wall {summary["wall_s"]} s')
        for failure in self.failures:
            print('FAILED (daemon):', failure)
        return ok and not self.failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float,
                        help='length (default: $WB_SOAK_SECONDS, else --default-seconds)')
    parser.add_argument('--default-seconds', type=float, default=120,
                        help='length without --seconds or $WB_SOAK_SECONDS (meson: '
                        '-Dsoak_seconds)')
    parser.add_argument('--seed', type=int, default=int(os.environ.get('WB_SOAK_SEED', '0')) or
                        random.randrange(1, 1 << 31))
    parser.add_argument('--socket-clients', type=int, default=24)
    parser.add_argument('--dbus-clients', type=int, default=8)
    parser.add_argument('--slow-clients', type=int, default=2)
    parser.add_argument('--speed', type=float, default=5.0)
    parser.add_argument('--out', default=os.environ.get('WB_SOAK_OUT'))
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = float(os.environ.get('WB_SOAK_SECONDS') or args.default_seconds)
    keep = args.out is not None
    if not keep:
        args.out = tempfile.mkdtemp(prefix='wb-soak-')
    print(f'soak: {args.seconds:.0f} s, seed {args.seed}, {args.socket_clients} socket and '
          f'{args.dbus_clients} D-Bus clients, logs in {args.out}', flush=True)
    ok = Soak(args).run()
    if ok and not keep:
        shutil.rmtree(args.out, ignore_errors=True)
    elif not ok:
        print(f'soak: FAILED; logs kept in {args.out}')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
