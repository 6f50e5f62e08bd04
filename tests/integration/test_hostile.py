# SPDX-License-Identifier: MIT
"""Hostile local clients (issue 13), each against the real daemon, wave-sim
and (for D-Bus) a private dbus-daemon, next to a well-behaved client of
another user, the witness: each hostile kind gets the treatment
docs/protocol.md, docs/dbus.md and docs/configuration.md document, and the
witness gets every event of a flood on its stream (wave-sim numbers them)
and an answer to every ping while it happens. Hostile clients run as their
own uids (hostile_clients.Connector), so the per-user quotas apply to them
and not to the witness. Bounds are generous: this is about what happens,
not how fast (the latencies are in tests/bench/bench_hostile.py).
"""

import json
import os
import pwd
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

from hostile_clients import (OPEN_BUS_CONFIG, Connector, RawBus, Witness, bus_socket_path,
                             read_lines)
from wbtest import Bridge, PrivateBus, Sim, emulated, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
WITNESS_UID = 32100
WITNESS_STREAM = 'stream_witness'
# Small bounds, so that a test reaches them in a moment.
QUEUE_BYTES = 64 * 1024
USER_QUEUE_BYTES = 256 * 1024
MAX_LINE_BYTES = 65536
MAX_CLIENTS_PER_USER = 64
LIMITS = {
    'ClientQueueBytes': str(QUEUE_BYTES),
    'MaxQueuedBytesPerUser': str(USER_QUEUE_BYTES),
    'SlowClientTimeout': '3',
}
# The witness's flood: numbered chat.message events of about this size.
FLOOD_RATE = 200
FLOOD_SIZE = 300
STUCK_EVENT_SIZE = 1000
# Sanitizer builds (CI's second run) do the same work several times slower.
SLOWDOWN = 4 if 'ASAN_OPTIONS' in os.environ else 1
WAIT = 30 * SLOWDOWN


def cpu_seconds(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def read_accounts(sock, count):
    """Reads what @sock has: (events, dropped as announced), until they
    add up to @count or nothing more comes."""
    events = dropped = 0

    def done(message):
        nonlocal events, dropped
        if message['type'] == 'chat.message':
            events += 1
        elif message['type'] == 'bridge.dropped':
            dropped += message['payload']['count']
        return events + dropped >= count

    if count > 0:
        read_lines(sock, WAIT, until=done)
    return events, dropped


def line(message):
    return json.dumps(message).encode() + b'\n'


def read_first_line(sock, timeout=WAIT):
    messages = read_lines(sock, timeout, until=lambda m: True)
    return messages[0] if messages else None


class HostileCase(unittest.TestCase):
    """One sim, one bridge (and bus, if asked), one witness per test."""

    BUS = False
    LIMITS = LIMITS
    UPSTREAM = {}

    def setUp(self):
        if os.geteuid() != 0:
            raise unittest.SkipTest('needs root to run clients as other users')
        self.sim = Sim(streams=1).__enter__()
        self.addCleanup(self.sim.__exit__, None, None, None)
        self.bus = None
        if self.BUS:
            self.bus_dir = tempfile.mkdtemp(prefix='wb-hostile-bus-')
            os.chmod(self.bus_dir, 0o755)
            self.addCleanup(shutil.rmtree, self.bus_dir, ignore_errors=True)
            config = os.path.join(self.bus_dir, 'bus.conf')
            with open(config, 'w') as f:
                f.write(OPEN_BUS_CONFIG.format(socket=os.path.join(self.bus_dir, 'bus')))
            self.bus = PrivateBus(config_file=config).__enter__()
            self.addCleanup(self.bus.__exit__, None, None, None)
            os.chmod(bus_socket_path(self.bus.address), 0o777)
        self.bridge = Bridge(self.sim, bus=self.bus, config={'Limits': dict(self.LIMITS), 'Upstream': dict(self.UPSTREAM)}, args=['--verbose'] if os.environ.get('WB_HOSTILE_VERBOSE') else [])
        self.bridge.__enter__()
        self.addCleanup(self.bridge.__exit__, None, None, None)
        # Runs before the bridge's own cleanup: a clean exit, whatever the
        # test did to it (under ASan, no leak or error report either).
        self.addCleanup(self.check_exit)
        # Other users need the socket (the default 0660 admits group wave).
        os.chmod(self.bridge.socket_path, 0o666)
        self.connectors = {}
        self.witness = self.start_witness()
        self.baseline_clients = self.bridge.status()['clients']

    def check_exit(self):
        self.assertEqual(self.bridge.stop(), 0, self.bridge.log()[-3000:])
        for report in ('AddressSanitizer', 'LeakSanitizer', 'runtime error'):
            self.assertNotIn(report, self.bridge.log())

    def tearDown(self):
        for connector in self.connectors.values():
            connector.close()

    def user(self, uid):
        if uid not in self.connectors:
            self.connectors[uid] = Connector(uid)
        return self.connectors[uid]

    def connect(self, uid, count=1, hello=True):
        """@count connections of @uid; with @hello, each has read bridge.hello."""
        socks = self.user(uid).connect(self.bridge.socket_path, count)
        for sock in socks:
            self.assertIsNotNone(sock, 'connect() failed')
            self.addCleanup(sock.close)
            if hello:
                self.assertEqual(read_first_line(sock)['type'], 'bridge.hello')
        return socks

    def start_witness(self):
        sock, = self.connect(WITNESS_UID)
        witness = Witness(sock, WITNESS_STREAM)
        witness.start()
        self.addCleanup(witness.stop)
        self.assertTrue(witness.subscribed.wait(WAIT), witness.error)
        wait_until(lambda: self.sim.upstream_subscriptions(WITNESS_STREAM), timeout=WAIT,
                   what='the witness subscription upstream')
        return witness

    def flood(self, stream_id, count, rate=FLOOD_RATE, size=FLOOD_SIZE):
        return self.sim.post('/sim/flood', {'stream_id': stream_id, 'type': 'chat.message',
                                            'rate': rate, 'size': size, 'count': count})['flood']

    def flood_done(self, flood_id):
        for flood in self.sim.stats().get('floods', []):
            if flood['flood'] == flood_id:
                return flood['done']
        return False

    def while_flooding(self, count, step=None, rate=FLOOD_RATE, size=FLOOD_SIZE):
        """Floods the witness's stream with @count events, calling step()
        until wave-sim has sent them all, then checks the witness."""
        self.witness.reset()
        flood_id = self.flood(WITNESS_STREAM, count, rate, size)
        next_check = 0
        deadline = time.monotonic() + count / rate * 10 + WAIT
        while True:
            if step is not None:
                step()
            else:
                time.sleep(0.05)
            if time.monotonic() >= next_check:
                if self.flood_done(flood_id):
                    break
                next_check = time.monotonic() + 0.2
            self.assertLess(time.monotonic(), deadline, 'the flood did not end')
        self.check_witness(count)

    def check_witness(self, count):
        """Every event of the flood, once, in order; every ping answered."""
        witness = self.witness
        wait_until(lambda: len(witness.snapshot()['seqs']) >= count or witness.error,
                   timeout=WAIT, what=f'the witness to get {count} events')
        witness.pinging.clear()
        wait_until(lambda: witness.snapshot()['pings_unanswered'] == 0 or witness.error,
                   timeout=WAIT, what='answers to all of the witness pings')
        snap = witness.snapshot()
        witness.pinging.set()
        self.assertIsNone(witness.error)
        self.assertEqual(snap['seqs'], list(range(count)))
        self.assertEqual(snap['dropped'], [])
        self.assertGreater(len(snap['ping_rtt_us']), 0)
        print(f'\n{self.id()}: witness got {count} events, {len(snap["ping_rtt_us"])} pongs, '
              f'ping max {max(snap["ping_rtt_us"]) / 1000:.1f} ms, event latency max '
              f'{max(snap["event_latency_us"]) / 1000:.1f} ms', file=sys.stderr)
        return snap

    def check_daemon(self):
        """Alive, back to the clients it had, nothing but expected noise logged."""
        self.assertIsNone(self.bridge.proc.poll(), self.bridge.log())
        wait_until(lambda: self.bridge.status()['clients'] == self.baseline_clients,
                   timeout=WAIT, what='the hostile clients to be gone')
        log = self.bridge.log()
        for bad in ('CRITICAL', 'failed:', 'WARNING'):
            self.assertNotIn(bad, log)


class SocketFloods(HostileCase):
    def test_connection_flood_past_the_quota(self):
        uid = 31101
        held = []

        def storm():
            # Open past the quota: exactly MaxClientsPerUser greetings, then
            # too_many_clients and the end of the connection.
            socks = self.connect(uid, MAX_CLIENTS_PER_USER + 8, hello=False)
            firsts = [read_first_line(s) for s in socks]
            kinds = [m['type'] if m['type'] != 'error' else m['payload']['code'] for m in firsts]
            self.assertEqual(kinds.count('bridge.hello'), MAX_CLIENTS_PER_USER, kinds)
            self.assertEqual(kinds.count('too_many_clients'), 8, kinds)
            for sock, message in zip(socks, firsts):
                if message['type'] == 'error':
                    self.assertIn('MaxClientsPerUser', message['payload']['message'])
                    self.assertEqual(read_lines(sock, WAIT), [])  # then EOF
            for sock in socks:
                sock.close()
            # Connections that never read their greeting, closed at once.
            for sock in self.connect(uid, 100, hello=False):
                sock.close()
            # Gone for the bridge too before the next round.
            wait_until(lambda: self.bridge.status()['clients'] == self.baseline_clients,
                       timeout=WAIT, what='the connections of the storm to be gone')
            held.append(1)

        self.while_flooding(3 * FLOOD_RATE, step=storm)
        print(f'{len(held)} rounds of {MAX_CLIENTS_PER_USER + 108} connections', file=sys.stderr)
        self.assertTrue(held)
        self.check_daemon()
        # The quota is whole again.
        socks = self.connect(uid, MAX_CLIENTS_PER_USER)
        self.assertEqual(self.bridge.status()['clients'],
                         self.baseline_clients + MAX_CLIENTS_PER_USER)
        for sock in socks:
            sock.close()

    def test_half_written_lines_held_open(self):
        uid = 31102
        rss_before = self.bridge.rss_kib()
        socks = self.connect(uid, MAX_CLIENTS_PER_USER)
        prefix = b'{"type":"ping","id":"'
        pad = MAX_LINE_BYTES - len(prefix) - 2
        for sock in socks:
            sock.sendall(prefix + b'x' * pad)  # no '"}', no newline
        self.while_flooding(3 * FLOOD_RATE)
        rss_held = self.bridge.rss_kib()
        # Completing the line: it is answered (it fits MaxLineBytes exactly).
        for sock in socks[:32]:
            sock.sendall(b'"}\n')
        for sock in socks[:32]:
            pong = read_first_line(sock)
            self.assertEqual(pong['type'], 'pong', pong)
            self.assertEqual(len(pong['id']), pad)
        # One byte more than MaxLineBytes: line_too_long, closed.
        for sock in socks[32:]:
            sock.sendall(b'"}}\n')
        for sock in socks[32:]:
            messages = read_lines(sock, WAIT)
            self.assertEqual([m['payload']['code'] for m in messages], ['line_too_long'])
        for sock in socks:
            sock.close()
        self.check_daemon()
        growth = rss_held - rss_before
        print(f'RSS {rss_before} KiB, with {len(socks)} half lines of {MAX_LINE_BYTES} B held: '
              f'{rss_held} KiB (+{growth} KiB)', file=sys.stderr)
        if not self.bridge.sanitized():
            # Each held line costs about its own size, not more.
            self.assertLess(growth, len(socks) * MAX_LINE_BYTES * 2 // 1024)

    def test_one_byte_at_a_time(self):
        uid = 31103
        socks = self.connect(uid, 16)
        requests = [line({'type': 'ping', 'id': f'slow-{i}-' + 'y' * 2000}) for i in range(16)]
        cpu_before = cpu_seconds(self.bridge.proc.pid)
        position = [0]

        def trickle():
            # One byte per connection per step, all connections in turn.
            for _ in range(50):
                for sock, request in zip(socks, requests):
                    if position[0] < len(request):
                        sock.send(request[position[0]:position[0] + 1])
                position[0] += 1

        self.while_flooding(3 * FLOOD_RATE, step=trickle)
        while position[0] < len(requests[0]):
            trickle()
        for i, sock in enumerate(socks):
            pong = read_first_line(sock)
            self.assertEqual(pong['type'], 'pong')
            self.assertTrue(pong['id'].startswith(f'slow-{i}-'))
        # A line past MaxLineBytes, a byte at a time: refused as it arrives.
        sock = socks[0]
        sock.setblocking(True)
        sent = 0
        closed = False
        try:
            while sent < MAX_LINE_BYTES + 16:
                sock.send(b'z')
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        messages = read_lines(sock, WAIT)
        self.assertEqual([m['payload']['code'] for m in messages], ['line_too_long'])
        self.assertGreater(sent, MAX_LINE_BYTES - 1)
        cpu = cpu_seconds(self.bridge.proc.pid) - cpu_before
        print(f'daemon CPU for {16 * len(requests[0]) + sent} bytes sent one at a time: '
              f'{cpu:.2f} s (connection cut by the bridge: {closed})', file=sys.stderr)
        for sock in socks:
            sock.close()
        self.check_daemon()


class SlowReaders(HostileCase):
    LIMITS = dict(LIMITS, SlowClientTimeout='60')

    def stuck_and_reader(self, uid, count):
        """Eight connections of @uid subscribed to the witness's stream that
        never read, and one of the same user that reads all the time while
        the flood of @count runs: returns (stuck, reader, what the reader got)."""
        stuck = self.connect(uid, 8)
        reader, = self.connect(uid, 1)
        for sock in stuck + [reader]:
            sock.sendall(line({'type': 'subscribe', 'stream_id': WITNESS_STREAM,
                               'events': ['chat.message']}))
            self.assertEqual(read_first_line(sock)['type'], 'subscribed')
        reader.setblocking(False)
        reader_lines = []
        buffer = [b'']

        def read_some():
            try:
                while True:
                    chunk = reader.recv(1 << 20)
                    if not chunk:
                        break
                    buffer[0] += chunk
            except BlockingIOError:
                pass
            *lines, buffer[0] = buffer[0].split(b'\n')
            reader_lines.extend(json.loads(x) for x in lines)
            time.sleep(0.01)

        # Large events: what the kernel holds for a connection (~200 KiB)
        # is soon full, and the rest piles up in the bridge.
        self.while_flooding(count, step=read_some, size=STUCK_EVENT_SIZE)
        reader.setblocking(True)
        events = sum(1 for m in reader_lines if m['type'] == 'chat.message')
        dropped = sum(m['payload']['count'] for m in reader_lines if m['type'] == 'bridge.dropped')
        return stuck, reader, events, dropped

    def test_never_readers_of_one_user(self):
        """Eight connections of one user that never read and one of the same
        user that does: every event each one misses is counted and announced,
        the reader's included (its events go while the user's queued total
        is over MaxQueuedBytesPerUser), and the books balance exactly."""
        uid = 31104
        count = 6 * FLOOD_RATE
        status_before = self.bridge.status()
        stuck, reader, events, dropped = self.stuck_and_reader(uid, count)
        # The stuck ones, reading at last: the backlog, the notice, the sum.
        total_dropped = 0
        for sock in stuck:
            stuck_events, stuck_dropped = read_accounts(sock, count)
            self.assertGreater(stuck_dropped, 0)
            self.assertEqual(stuck_events + stuck_dropped, count)
            total_dropped += stuck_dropped
        # The reader kept up, yet lost events to its user's total: now that
        # the total is under the bound, it is told how many, without waiting
        # for another event.
        more_events, more_dropped = read_accounts(reader, count - events - dropped)
        events += more_events
        dropped += more_dropped
        print(f'reader of the hostile user: {events} events, {dropped} announced dropped',
              file=sys.stderr)
        self.assertGreater(dropped, 0)
        self.assertEqual(events + dropped, count)
        total_dropped += dropped
        status = self.bridge.status()
        self.assertEqual(status['events_dropped'] - status_before['events_dropped'], total_dropped)
        for sock in stuck + [reader]:
            sock.close()
        self.check_daemon()

    def test_reply_hog_is_disconnected(self):
        """Requests whose replies are never read: cut past twice the bound."""
        uid = 31105
        hog, = self.connect(uid)
        hog.setblocking(False)
        request = line({'type': 'status', 'streams_limit': 1000, 'id': 'x' * 1000})
        sent = [0]

        def step():
            try:
                for _ in range(100):
                    hog.send(request)
                    sent[0] += 1
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.01)

        self.while_flooding(3 * FLOOD_RATE, step=step)
        wait_until(lambda: 'not reading its replies' in self.bridge.log(), timeout=WAIT,
                   what='the reply hog to be cut off')
        hog.close()
        self.assertIn(f'uid={uid}', self.bridge.log())
        self.check_daemon_quietly()

    def check_daemon_quietly(self):
        self.assertIsNone(self.bridge.proc.poll())
        wait_until(lambda: self.bridge.status()['clients'] == self.baseline_clients,
                   timeout=WAIT, what='the hostile clients to be gone')


class StuckReader(HostileCase):
    def test_stuck_reader_is_cut_after_slow_client_timeout(self):
        uid = 31106
        stuck, = self.connect(uid)
        stuck.sendall(line({'type': 'subscribe', 'stream_id': WITNESS_STREAM}))
        # Never read again. SlowClientTimeout is 3 s; the flood lasts 6.
        self.while_flooding(6 * FLOOD_RATE)
        wait_until(lambda: 'too slow' in self.bridge.log(), timeout=WAIT,
                   what='the stuck client to be cut')
        self.assertIn(f'uid={uid}', self.bridge.log())
        messages = read_lines(stuck, WAIT)
        self.assertTrue(messages)  # what the kernel held, then EOF
        stuck.close()
        wait_until(lambda: self.bridge.status()['clients'] == self.baseline_clients,
                   timeout=WAIT, what='the stuck client to be gone')

class StuckUser(HostileCase):
    LIMITS = dict(LIMITS, ClientQueueBytes=str(1024 * 1024))

    def test_stuck_connections_do_not_silence_their_user_for_ever(self):
        """A user's connections that never read hold its total over
        MaxQueuedBytesPerUser while each stays under its own (larger)
        ClientQueueBytes, so its reading connection gets nothing: the stuck
        ones count as over their bound all the same, SlowClientTimeout cuts
        them, and the reader is told how much it missed."""
        uid = 31113
        count = 4 * FLOOD_RATE
        stuck, reader, events, dropped = SlowReaders.stuck_and_reader(self, uid, count)
        wait_until(lambda: self.bridge.log().count('too slow') >= len(stuck), timeout=WAIT,
                   what='the stuck connections to be cut')
        more_events, more_dropped = read_accounts(reader, count - events - dropped)
        print(f'reader of the stuck user: {events + more_events} events, '
              f'{dropped + more_dropped} announced dropped', file=sys.stderr)
        self.assertGreater(dropped + more_dropped, 0)
        self.assertEqual(events + more_events + dropped + more_dropped, count)
        for sock in stuck + [reader]:
            sock.close()


class HostileServer(HostileCase):
    # A bridge's ping waits behind the whole burst (the sanitizer build
    # takes seconds for it): a pong timeout then would reconnect and lose
    # the frames not read yet.
    UPSTREAM = {'PingInterval': '60', 'PongTimeout': '30'}

    @unittest.skipIf(emulated(), "under qemu-user the timing is the emulator's")
    def test_large_frames_do_not_freeze_the_loop(self):
        """A server's burst of 1 MB frames full of numbers (about 50 ms
        each to check and build): the loop parses a bounded share of frame
        bytes per iteration, so a local client's pings are answered in
        between, not after the whole burst."""
        head = ('{"type":"chat.message","payload":{"stream_id":"stream_bigframes",'
                '"message_id":"m","user_id":"u","username":"a","message":"x",'
                '"timestamp":"t","n":[')
        text = head + ','.join(['0'] * ((1000 * 1000 - len(head)) // 2)) + ']}}'
        before = self.bridge.status()
        self.witness.reset()
        started = time.monotonic()
        self.assertEqual(self.sim.post('/sim/raw', {'text': text, 'repeat': 64})['sent'], 1)
        # Every frame parsed (an event of a stream nobody follows) or, past
        # the bridge's 16 MiB of waiting frames, dropped and counted.
        wait_until(lambda: self.bridge.status()['events_received']
                   + self.bridge.status()['events_dropped'] >= before['events_received']
                   + before['events_dropped'] + 64 - 1, timeout=WAIT,
                   what='the burst to be handled')
        elapsed = time.monotonic() - started
        time.sleep(0.2)
        worst_ms = max(self.witness.ping_rtt_us) / 1000
        print(f'64 frames of 1 MB in {elapsed:.2f} s; worst ping {worst_ms:.0f} ms',
              file=sys.stderr)
        self.assertLess(worst_ms, 1000 * SLOWDOWN)
        self.assertEqual(self.bridge.status()['state'], 'connected')


    def test_error_messages_do_not_flood_the_log(self):
        """A server that sends error messages without end: status shows the
        last one, the log only a few (like invalid messages), so a hostile
        server cannot fill the journal."""
        error = ('{"type":"error","payload":{"code":"E","message":"%s"}}'
                 % ('x' * 400))
        last = '{"type":"error","payload":{"code":"LAST","message":"the end"}}'
        self.sim.post('/sim/raw', {'text': error, 'repeat': 1000})
        self.sim.post('/sim/raw', {'text': last})
        wait_until(lambda: 'LAST' in self.bridge.status()['last_error'], timeout=WAIT,
                   what='the last error in status')
        self.assertLessEqual(self.bridge.log().count('upstream error:'), 5)


class Storms(HostileCase):
    def test_subscribe_storm(self):
        """Three users at their connection quota flooding subscribes
        (hostile_user.py, as in test_fairness.py): refused past their
        quotas, upstream gets no more than MessagesPerSecond, the witness
        misses nothing and a new subscription of its user still gets
        through."""
        tools = tempfile.mkdtemp(prefix='wb-hostile-')
        os.chmod(tools, 0o755)
        self.addCleanup(shutil.rmtree, tools, ignore_errors=True)
        shutil.copy2(os.path.join(HERE, 'hostile_user.py'), tools)
        uids = (31107, 31108, 31109)
        seconds = 6 * SLOWDOWN
        storm = [subprocess.Popen([sys.executable, os.path.join(tools, 'hostile_user.py'),
                                   self.bridge.socket_path, str(seconds), f'storm{uid}-', '500'],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  user=uid, group=uid, extra_groups=[])
                 for uid in uids]
        for proc in storm:
            self.assertEqual(json.loads(proc.stdout.readline()), {'ready': MAX_CLIENTS_PER_USER})
        received_before = self.sim.stats()['received']
        started = time.monotonic()
        for proc in storm:
            proc.stdin.write('go\n')
            proc.stdin.flush()
        fresh, = self.connect(WITNESS_UID)
        fresh.sendall(line({'type': 'subscribe', 'stream_id': 'stream_fresh', 'id': 'f'}))
        self.assertEqual(read_first_line(fresh)['type'], 'subscribed')
        self.while_flooding(4 * FLOOD_RATE)
        wait_until(lambda: self.sim.upstream_subscriptions('stream_fresh'), timeout=WAIT,
                   what='a subscription of the well-behaved user to reach upstream')
        summaries = [json.loads(p.communicate(timeout=seconds + 120)[0]) for p in storm]
        elapsed = time.monotonic() - started
        received = self.sim.stats()['received']
        upstream = sum(received.get(k, 0) - received_before.get(k, 0)
                       for k in ('subscribe', 'unsubscribe'))
        print(f'storm: {sum(s["subscribes"] for s in summaries)} subscribes sent, '
              f'{upstream} subscription messages upstream in {elapsed:.1f} s', file=sys.stderr)
        for summary in summaries:
            self.assertEqual(summary['alive_connections'], MAX_CLIENTS_PER_USER, summary)
            self.assertGreater(summary['errors'].get('too_many_subscriptions', 0), 0, summary)
        # MessagesPerSecond (20) with a burst of 20: the pace is a ceiling.
        self.assertLessEqual(upstream, 20 * elapsed + 20 + 20)
        fresh.close()
        self.check_daemon()


class BadBytes(HostileCase):
    BAD_LINES = [
        b'\xff',
        b'{"type":"ping","id":"\xff"}',
        b'{"type":"ping","id":"\xc0\xaf"}',  # overlong '/'
        b'{"type":"ping","id":"\xed\xa0\x80"}',  # a surrogate, encoded
        b'{"type":"ping","id":"\xf4\x90\x80\x80"}',  # past U+10FFFF
        b'{"type":"ping","id":"\xe2\x82"}',  # cut short
        b'{"type":"subscribe","stream_id":"s\xfe"}',
        b'[' * 32000 + b']' * 32000,
        b'{"a":' * 10000 + b'1' + b'}' * 10000,
        b'{"type":"ping","x":' + b'[' * 32 + b']' * 32 + b'}',  # 33 levels
        b'"' + b'\\u' * 30000 + b'"',
        b'{"type":"ping"' + b',"a":1' * 10000 + b'}',  # 10000 members: a duplicate name
    ]

    def test_invalid_utf8_and_deep_json(self):
        uid = 31110
        socks = self.connect(uid, 8)
        # The deepest nesting allowed (32 levels) is a request like any other.
        socks[0].sendall(line_bytes(b'{"type":"ping","id":"deep","x":'
                                    + b'[' * 31 + b']' * 31 + b'}'))
        self.assertEqual(read_first_line(socks[0])['id'], 'deep')
        rounds = [0]

        def step():
            for sock in socks:
                sock.sendall(b'\n'.join(self.BAD_LINES) + b'\n')
            rounds[0] += 1
            # Each bad line: one invalid_json, and the connection stays.
            for sock in socks:
                codes = []
                read_lines(sock, WAIT, until=lambda m: codes.append(
                    m['payload']['code']) or len(codes) == len(self.BAD_LINES))
                self.assertEqual(codes, ['invalid_json'] * len(self.BAD_LINES))

        self.while_flooding(3 * FLOOD_RATE, step=step)
        for sock in socks:
            sock.sendall(line({'type': 'ping', 'id': 'still-here'}))
            self.assertEqual(read_first_line(sock)['id'], 'still-here')
        print(f'{rounds[0]} rounds of {len(self.BAD_LINES)} bad lines on {len(socks)} '
              'connections', file=sys.stderr)
        for sock in socks:
            sock.close()
        self.check_daemon()


def line_bytes(data):
    return data + b'\n'


class Vanishing(HostileCase):
    def test_clients_vanish_mid_write(self):
        uid = 31111
        self.rounds = 0
        linger_reset = struct.pack('ii', 1, 0)

        def step():
            # Half a line, then gone: with a FIN, and with a reset.
            for reset in (False, True):
                sock, = self.connect(uid, hello=False)
                sock.sendall(b'{"type":"subscribe","stream_id":"stream_witness","ev')
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_reset)
                sock.close()
            # A request whose reply finds nobody.
            sock, = self.connect(uid, hello=False)
            sock.sendall(line({'type': 'status', 'streams_limit': 1000}))
            sock.close()
            # Subscribed, output queued and unread, then reset.
            sock, = self.connect(uid, hello=False)
            sock.sendall(line({'type': 'subscribe', 'stream_id': WITNESS_STREAM}))
            time.sleep(0.02)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_reset)
            sock.close()
            self.rounds += 1

        self.while_flooding(4 * FLOOD_RATE, step=step)
        print(f'{self.rounds} rounds of 4 vanishing clients', file=sys.stderr)
        self.check_daemon()
        # The user's quota is whole again.
        socks = self.connect(uid, MAX_CLIENTS_PER_USER)
        for sock in socks:
            sock.close()


class VanishingBusCallers(HostileCase):
    BUS = True

    def bus_connect(self, uid, count=1, hello=True):
        socks = self.user(uid).connect(bus_socket_path(self.bus.address), count)
        return [RawBus(s, uid, hello=hello) for s in socks]

    def test_callers_vanish_mid_call(self):
        # dbus-daemon wants a passwd entry (it looks up the user's groups).
        try:
            uid = pwd.getpwnam('backup').pw_uid
        except KeyError:
            self.skipTest('needs the system user "backup" for a second bus user')
        self.calls = 0

        def step():
            for i in range(10):
                self.calls += 1
                bus, = self.bus_connect(uid)
                if i % 3 == 0:
                    bus.send_bridge_call('Subscribe', 'sas', (f'stream_dv{self.calls % 50}', []))
                elif i % 3 == 1:
                    bus.send_bridge_call('SendChatMessage', 'ss', (WITNESS_STREAM, 'bye'))
                else:
                    # Not even waiting for Hello's reply.
                    bus.send_call('org.freedesktop.DBus', '/org/freedesktop/DBus',
                                  'org.freedesktop.DBus', 'Hello')
                    bus.send_bridge_call('Subscribe', 'sas', (f'stream_dw{self.calls % 50}', []))
                bus.close()

        bus_baseline = self.bridge.status()['clients']
        self.while_flooding(4 * FLOOD_RATE, step=step)
        print(f'{self.calls} D-Bus callers vanished mid-call', file=sys.stderr)
        wait_until(lambda: self.bridge.status()['clients'] == bus_baseline, timeout=WAIT,
                   what='the vanished callers to be forgotten')
        wait_until(lambda: not [s for s in self.sim.upstream_subscriptions()
                                if s['stream_id'].startswith(('stream_dv', 'stream_dw'))],
                   timeout=WAIT, what='their subscriptions to end upstream')

        # Many callers of one user: MaxClientsPerUser bus names, then
        # LimitsExceeded; gone, and the quota is whole again.
        for attempt in range(2):
            buses = self.bus_connect(uid, MAX_CLIENTS_PER_USER + 1)
            results = [b.bridge_call('Subscribe', 'sas', (f'stream_m{i}', []))[0]
                       for i, b in enumerate(buses)]
            self.assertEqual(results[:MAX_CLIENTS_PER_USER], ['return'] * MAX_CLIENTS_PER_USER)
            self.assertEqual(results[MAX_CLIENTS_PER_USER], 'inc.wave.Bridge1.Error.LimitsExceeded')
            for bus in buses:
                bus.close()
            wait_until(lambda: self.bridge.status()['clients'] == bus_baseline, timeout=WAIT,
                       what='the callers to be forgotten')
        self.check_daemon()


if __name__ == '__main__':
    unittest.main()
