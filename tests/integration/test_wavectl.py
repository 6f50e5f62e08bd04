# SPDX-License-Identifier: MIT
"""wavectl against the real wave-bridged, wave-sim and a private dbus-daemon:
every command, both transports, the dashboard in a pseudo-terminal, and the
error cases users meet (bridge not running, permission denied, forbidden,
not connected, usage errors)."""

import fcntl
import json
import os
import pty
import queue
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import time
import unittest

from wbtest import WAVECTL_BIN, Bridge, PrivateBus, Sim, wait_until

NOBODY = 65534
NOGROUP = 65534
# A group that exists on Debian and that nobody is not a member of.
SEND_GROUP = 'adm'
NOT_RUNNING = 'wave-bridge is not running'
TIMEOUT = 30


def base_env(**extra):
    env = dict(os.environ)
    for name in ('WAVE_BRIDGE_SOCKET', 'DBUS_SESSION_BUS_ADDRESS'):
        env.pop(name, None)
    env.update(extra)
    return env


def run(args, env=None, timeout=TIMEOUT, preexec_fn=None, binary=WAVECTL_BIN):
    return subprocess.run([binary] + args, env=env or base_env(), capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec_fn)


def wavectl_for_nobody(testcase):
    """A copy of wavectl that uid nobody can execute: the checkout may sit
    under a directory it cannot enter (/root is 0700 on a fresh Debian)."""
    directory = tempfile.mkdtemp(prefix='wb-wavectl-')
    testcase.addCleanup(shutil.rmtree, directory, ignore_errors=True)
    os.chmod(directory, 0o755)
    path = os.path.join(directory, 'wavectl')
    shutil.copy2(WAVECTL_BIN, path)
    os.chmod(path, 0o755)
    return path


def as_nobody(groups=(), gid=NOGROUP):
    def drop():
        os.setgroups(list(groups))
        os.setgid(gid)
        os.setuid(NOBODY)
    return drop


class Lines:
    """Collects a stream's lines in a thread; waits for them with a deadline."""

    def __init__(self, stream):
        self.lines = []
        self.queue = queue.Queue()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for line in stream:
            with self.lock:
                self.lines.append(line.rstrip('\n'))

    def wait_for(self, predicate, timeout=TIMEOUT, what='a line'):
        def found():
            with self.lock:
                for line in self.lines:
                    if predicate(line):
                        return line
            return None
        return wait_until(found, timeout=timeout, what=what)

    def wait_contains(self, text, timeout=TIMEOUT):
        return self.wait_for(lambda line: text in line, timeout, repr(text))

    def snapshot(self):
        with self.lock:
            return list(self.lines)


class Tail:
    """A running `wavectl tail`, its stdout and stderr collected."""

    def __init__(self, args, env):
        self.proc = subprocess.Popen([WAVECTL_BIN] + args, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     text=True)
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)

    def stop(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for lines, pipe in ((self.out, self.proc.stdout), (self.err, self.proc.stderr)):
                lines.thread.join(TIMEOUT)
                pipe.close()


def health(stream, bitrate=4500, fps=30, loss=0.002, latency=45):
    return {'type': 'stream.health',
            'payload': {'stream_id': stream, 'bitrate': bitrate, 'fps': fps,
                        'packet_loss': loss, 'latency': latency}}


def chat(stream, username, message):
    return {'type': 'chat.message',
            'payload': {'stream_id': stream, 'message_id': 'm_' + message[:8],
                        'user_id': 'u_' + username, 'username': username, 'message': message,
                        'timestamp': '2026-01-01T12:00:00Z'}}


def analytics(stream, viewers=123, total=5000, peak=200, watch=192.0):
    return {'type': 'analytics.update',
            'payload': {'stream_id': stream, 'concurrent_viewers': viewers, 'total_views': total,
                        'peak_viewers': peak, 'average_watch_time': watch}}


def reaction(stream, emoji='🎉', count=7):
    return {'type': 'reaction.received',
            'payload': {'stream_id': stream, 'reaction': emoji, 'count': count,
                        'timestamp': '2026-01-01T12:00:00Z'}}


class BridgeCase(unittest.TestCase):
    """A sim slowed down (so its own events are rare), a bus and a bridge."""

    bridge_config = None

    def setUp(self):
        self.sim = Sim(streams=2, speed=0.2).__enter__()
        self.addCleanup(self.sim.__exit__, None, None, None)
        self.bus = PrivateBus().__enter__()
        self.addCleanup(self.bus.__exit__, None, None, None)
        self.bridge = Bridge(self.sim, bus=self.bus, config=self.bridge_config).__enter__()
        self.addCleanup(self.bridge.__exit__, None, None, None)
        self.env = base_env(WAVE_BRIDGE_SOCKET=self.bridge.socket_path, **self.bus.env)
        self.stream = self.sim.streams[0]

    def wait_upstream(self, stream, events=None):
        """Until the sim holds the bridge's subscription (emits reach it then)."""
        def subscribed():
            for sub in self.sim.upstream_subscriptions(stream):
                if events is None or set(events) <= set(sub.get('events') or events):
                    return True
            return False
        wait_until(subscribed, timeout=TIMEOUT, what=f'upstream subscription of {stream}')

    def emit(self, message):
        self.assertTrue(self.sim.post('/sim/emit', message).get('ok'))

    def holder(self, stream):
        """A socket client kept subscribed, so the bridge follows @stream."""
        client = self.bridge.connect()
        self.addCleanup(client.close)
        client.request({'type': 'subscribe', 'stream_id': stream}, 'subscribed')
        self.wait_upstream(stream)
        return client


class Usage(unittest.TestCase):
    def test_help(self):
        result = run(['--help'])
        self.assertEqual(result.returncode, 0)
        for command in ('status', 'streams', 'tail', 'chat', 'react', 'watch'):
            self.assertIn(command, result.stdout)
            sub = run([command, '--help'])
            self.assertEqual(sub.returncode, 0, sub.stderr)
            self.assertIn(f'wavectl', sub.stdout)
            self.assertIn('--socket', sub.stdout)
        self.assertIn('--events', run(['tail', '--help']).stdout)
        self.assertEqual(run(['--version']).returncode, 0)

    def test_usage_errors_exit_2(self):
        missing = os.path.join(tempfile.gettempdir(), 'no-such-dir', 'wave.sock')
        cases = [
            [],
            ['frobnicate'],
            ['tail'],
            ['watch'],
            ['watch', 'a', 'b'],
            ['chat', 'stream_abc123'],
            ['react', 'stream_abc123'],
            ['status', 'extra'],
            ['chat', 'stream_abc123', ''],
            ['tail', 'stream_abc123', '--events', 'stream.health,bogus.event'],
            ['tail', 'stream_abc123', '--events', ','],
            ['status', '--bus=elsewhere'],
            ['status', '--no-such-option'],
        ]
        for args in cases:
            with self.subTest(args=args):
                # Usage is checked before connecting: no bridge needed.
                result = run(['--socket', missing] + args)
                self.assertEqual(result.returncode, 2, (result.stdout, result.stderr))
                self.assertIn('wavectl', result.stderr)
        result = run(['--socket', missing, 'tail', 's', '--events', 'bogus'])
        self.assertIn("unknown event type 'bogus'", result.stderr)


class NotRunning(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='wavectl-test-')
        self.addCleanup(subprocess.run, ['rm', '-rf', self.dir])

    def test_socket_missing(self):
        path = os.path.join(self.dir, 'wave.sock')
        for args, env in ((['--socket', path, 'status'], None),
                          (['status'], base_env(WAVE_BRIDGE_SOCKET=path)),
                          (['tail', 'stream_abc123'], base_env(WAVE_BRIDGE_SOCKET=path)),
                          (['chat', 'stream_abc123', 'hi'], base_env(WAVE_BRIDGE_SOCKET=path))):
            with self.subTest(args=args):
                result = run(args, env=env)
                self.assertEqual(result.returncode, 1)
                self.assertIn(NOT_RUNNING, result.stderr)
                self.assertIn('systemctl start wave-bridge', result.stderr)
                self.assertIn('wave-bridged --bus=session', result.stderr)
                self.assertIn(path, result.stderr)

    def test_connection_refused(self):
        # A socket node nobody listens on: what a crashed daemon leaves.
        path = os.path.join(self.dir, 'stale.sock')
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)
        stale.close()
        result = run(['--socket', path, 'streams'])
        self.assertEqual(result.returncode, 1)
        self.assertIn(NOT_RUNNING, result.stderr)

    def test_dbus_name_missing(self):
        with PrivateBus() as bus:
            result = run(['--dbus', 'status'], env=base_env(**bus.env))
            self.assertEqual(result.returncode, 1)
            self.assertIn(NOT_RUNNING, result.stderr)


class Commands(BridgeCase):
    def test_status(self):
        result = run(['status'], env=self.env)
        self.assertEqual(result.returncode, 0, result.stderr)
        for label in ('Upstream:', 'RTT:', 'Reconnects:', 'Last close:', 'Last error:',
                      'Clients:', 'Streams:', 'Events:', 'Version:'):
            self.assertIn(label, result.stdout)
        self.assertIn('REDACTED', result.stdout)
        self.assertNotIn(self.sim.api_key, result.stdout)

        self.holder(self.stream)
        wait_until(lambda: self.bridge.status()['state'] == 'connected', timeout=TIMEOUT,
                   what='upstream connected')
        result = run(['status', '--json'], env=self.env)
        self.assertEqual(result.returncode, 0, result.stderr)
        status = json.loads(result.stdout)
        self.assertEqual(status['state'], 'connected')
        self.assertEqual([s['stream_id'] for s in status['streams']], [self.stream])
        human = run(['status'], env=self.env).stdout
        self.assertIn('connected since', human)
        self.assertIn(self.stream, human)

    def test_streams(self):
        result = run(['streams'], env=self.env)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn('No streams', result.stdout)

        client = self.holder(self.stream)
        self.emit(analytics(self.stream, viewers=321, peak=654))
        client.recv_type('analytics.update', timeout=TIMEOUT)
        result = run(['streams'], env=self.env)
        self.assertEqual(result.returncode, 0, result.stderr)
        header, row = result.stdout.splitlines()[:2]
        self.assertTrue(header.startswith('STREAM'), header)
        self.assertIn('VIEWERS', header)
        self.assertTrue(row.startswith(self.stream), row)
        self.assertIn('321', row)
        self.assertIn('654', row)
        listed = json.loads(run(['streams', '--json'], env=self.env).stdout)
        self.assertEqual(listed[0]['stream_id'], self.stream)

    def test_tail_formats_every_event(self):
        tail = Tail(['tail', self.stream], self.env)
        self.addCleanup(tail.stop, signal.SIGKILL)
        tail.err.wait_contains(f'waiting for events of {self.stream}')
        self.wait_upstream(self.stream)

        self.emit(health(self.stream))
        self.emit(chat(self.stream, 'alice', 'hello'))
        self.emit(analytics(self.stream))
        self.emit(reaction(self.stream))
        self.emit({'type': 'viewer.joined',
                   'payload': {'stream_id': self.stream, 'viewer_id': 'v_joe', 'country': 'DE',
                               'device': 'tv', 'joined_at': '2026-01-01T12:00:00Z'}})
        self.emit({'type': 'viewer.left',
                   'payload': {'stream_id': self.stream, 'viewer_id': 'v_joe',
                               'watch_time': 312, 'left_at': '2026-01-01T12:05:12Z'}})
        self.emit({'type': 'stream.ended',
                   'payload': {'stream_id': self.stream, 'ended_at': '2026-01-01T13:00:00Z',
                               'duration': 3723, 'recording_id': 'rec_42'}})
        for text in (f'{self.stream} health 4500 kbps 30 fps loss 0.2% 45 ms',
                     f'{self.stream} chat alice: hello',
                     f'{self.stream} viewers 123 (peak 200) total 5,000 avg watch 3m12s',
                     f'{self.stream} reaction 🎉 x7',
                     f'{self.stream} viewer joined v_joe (DE, tv)',
                     f'{self.stream} viewer left v_joe after 5m12s',
                     f'{self.stream} ended after 1h02m, recording rec_42'):
            line = tail.out.wait_contains(text)
            # Local time first: HH:MM:SS.
            self.assertRegex(line, r'^\d\d:\d\d:\d\d ')
        # Terminal escapes sent by strangers never reach the terminal.
        self.emit(chat(self.stream, 'mallory', 'evil \x1b[2J\x07 text'))
        line = tail.out.wait_contains('mallory')
        self.assertNotIn('\x1b', line)
        self.assertNotIn('\x07', line)
        self.assertEqual(tail.stop(), 0)

    def test_tail_marks_cached_events(self):
        client = self.holder(self.stream)
        self.emit(health(self.stream, bitrate=1234))
        client.recv_type('stream.health', timeout=TIMEOUT,
                         where=lambda m: m['payload']['bitrate'] == 1234)
        tail = Tail(['tail', self.stream], self.env)
        self.addCleanup(tail.stop, signal.SIGKILL)
        line = tail.out.wait_contains('health 1234 kbps')
        self.assertIn('[cached', line)
        self.emit(health(self.stream, bitrate=2345))
        line = tail.out.wait_contains('health 2345 kbps')
        self.assertNotIn('cached', line)

    def test_tail_json_and_event_filter(self):
        tail = Tail(['tail', '--json', '--events', 'chat.message', self.stream], self.env)
        self.addCleanup(tail.stop, signal.SIGKILL)
        self.wait_upstream(self.stream, ['chat.message'])
        self.emit(health(self.stream, bitrate=999))
        self.emit(chat(self.stream, 'bob', 'json please'))
        tail.out.wait_contains('json please')
        self.assertEqual(tail.stop(), 0)
        types = set()
        for line in tail.out.snapshot():
            message = json.loads(line)
            types.add(message['type'])
        self.assertIn('chat.message', types)
        self.assertNotIn('stream.health', types)

    def test_tail_several_streams(self):
        second = self.sim.streams[1]
        tail = Tail(['tail', self.stream, second, '--events', 'chat.message'], self.env)
        self.addCleanup(tail.stop, signal.SIGKILL)
        self.wait_upstream(self.stream)
        self.wait_upstream(second)
        self.emit(chat(self.stream, 'ann', 'first'))
        self.emit(chat(second, 'ben', 'second'))
        tail.out.wait_contains(f'{self.stream} chat ann: first')
        tail.out.wait_contains(f'{second} chat ben: second')

    def test_tail_unknown_stream(self):
        tail = Tail(['tail', 'stream_zzz999'], self.env)
        self.addCleanup(tail.stop, signal.SIGKILL)
        tail.err.wait_contains('waiting for events of stream_zzz999')
        time.sleep(1)
        self.assertEqual([l for l in tail.out.snapshot() if 'stream_zzz999' in l], [])
        self.assertEqual(tail.stop(signal.SIGTERM), 0)

    def test_tail_ends_when_the_bridge_stops(self):
        tail = Tail(['tail', self.stream], self.env)
        self.addCleanup(tail.stop, signal.SIGKILL)
        tail.err.wait_contains('waiting for events')
        self.bridge.stop()
        self.assertEqual(tail.proc.wait(TIMEOUT), 1)
        tail.err.wait_contains('the bridge closed the connection')

    def test_chat_and_react(self):
        client = self.holder(self.stream)
        result = run(['chat', self.stream, 'hello from wavectl'], env=self.env)
        self.assertEqual(result.returncode, 0, result.stderr)
        echoed = client.recv_type('chat.message', timeout=TIMEOUT,
                                  where=lambda m: m['payload']['message'] == 'hello from wavectl')
        self.assertEqual(echoed['payload']['username'], 'you')
        result = run(['react', self.stream, '🔥'], env=self.env)
        self.assertEqual(result.returncode, 0, result.stderr)
        # Exit status 0 means handed to the WebSocket; the simulator counts it a moment later.
        wait_until(lambda: self.sim.stats()['received'].get('chat.message') == 1
                   and self.sim.stats()['received'].get('reaction.sent') == 1,
                   what='one chat and one reaction at the simulator')

    def test_dbus_transport(self):
        result = run(['--dbus', 'status'], env=self.env)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn('Upstream:', result.stdout)
        status = json.loads(run(['--dbus', 'status', '--json'], env=self.env).stdout)
        self.assertIn('state', status)
        self.assertIn('version', status)

        tail = Tail(['--dbus', 'tail', self.stream, '--events', 'chat.message,stream.health'],
                    self.env)
        self.addCleanup(tail.stop, signal.SIGKILL)
        tail.err.wait_contains('waiting for events')
        self.wait_upstream(self.stream)
        self.emit(analytics(self.stream, viewers=77))
        self.emit(chat(self.stream, 'dora', 'over dbus'))
        self.emit(health(self.stream, bitrate=3210))
        tail.out.wait_contains(f'{self.stream} chat dora: over dbus')
        tail.out.wait_contains(f'{self.stream} health 3210 kbps')
        # Signals are broadcast; wavectl keeps to the events it asked for.
        self.assertFalse([l for l in tail.out.snapshot() if 'viewers 77' in l])

        result = run(['--dbus', 'chat', self.stream, 'sent over dbus'], env=self.env)
        self.assertEqual(result.returncode, 0, result.stderr)
        tail.out.wait_contains('you: sent over dbus')
        listed = json.loads(run(['--dbus', 'streams', '--json'], env=self.env).stdout)
        self.assertIn(self.stream, [s['stream_id'] for s in listed])
        self.assertEqual(tail.stop(), 0)

    def test_dbus_replays_no_start_it_never_saw(self):
        # Live is inferred from health, but no stream.started was seen: the
        # D-Bus replay must not invent one (the socket replays none either).
        stream = 'stream_qqq111'
        self.holder(stream)
        self.wait_upstream(stream)
        self.emit(health(stream, bitrate=1234))
        wait_until(lambda: any(s['stream_id'] == stream and s['live'] for s in
                               json.loads(run(['streams', '--json'], env=self.env).stdout)),
                   timeout=TIMEOUT, what='the stream to count as live')
        for transport in ([], ['--dbus']):
            tail = Tail(transport + ['tail', stream, '--json'], self.env)
            self.addCleanup(tail.stop, signal.SIGKILL)
            tail.out.wait_contains('"stream.health"')
            self.assertEqual(tail.stop(signal.SIGTERM), 0)
            types = [json.loads(l).get('type') for l in tail.out.snapshot() if l.startswith('{')]
            self.assertNotIn('stream.started', types, transport)

    def test_bash_completion(self):
        self.holder(self.stream)
        script = os.path.join(os.environ.get('WB_SOURCE_DIR', '../..'), 'clients', 'completion',
                              'wavectl.bash')
        program = (f'source {script}\n'
                   'complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1));'
                   ' COMPREPLY=(); _wavectl; echo "${COMPREPLY[*]}"; }\n'
                   'complete_words wavectl st\n'
                   'complete_words wavectl tail --events chat.message,stream.h\n'
                   'complete_words wavectl watch ""\n'
                   'complete_words wavectl chat "" ""\n')
        env = dict(self.env, PATH=os.path.dirname(WAVECTL_BIN) + ':' + os.environ['PATH'])
        result = subprocess.run(['bash', '-c', program], env=env, capture_output=True,
                                text=True, timeout=TIMEOUT)
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.split('\n')
        self.assertEqual(lines[0], 'status streams')
        self.assertEqual(lines[1], 'chat.message,stream.health')
        self.assertEqual(lines[2], self.stream)
        self.assertEqual(lines[3], '')

    def test_default_socket_paths(self):
        # Root tries /run/wave-bridge first, then $XDG_RUNTIME_DIR's socket;
        # with neither variable set the user's socket is found.
        runtime = tempfile.mkdtemp(prefix='wavectl-xdg-')
        self.addCleanup(subprocess.run, ['rm', '-rf', runtime])
        os.makedirs(os.path.join(runtime, 'wave-bridge'))
        os.symlink(self.bridge.socket_path, os.path.join(runtime, 'wave-bridge', 'wave.sock'))
        if os.path.exists('/run/wave-bridge/wave.sock'):
            self.skipTest('a system wave-bridge runs on this machine')
        result = run(['status', '--json'], env=base_env(XDG_RUNTIME_DIR=runtime))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn('state', json.loads(result.stdout))
        result = run(['status'], env=base_env(XDG_RUNTIME_DIR='/nonexistent'))
        self.assertEqual(result.returncode, 1)
        self.assertIn('/run/wave-bridge/wave.sock', result.stderr)


class Watch(BridgeCase):
    def spawn(self, stream, columns=80, rows=24, options=()):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', rows, columns, 0, 0))
        env = dict(self.env, TERM='xterm')
        proc = subprocess.Popen([WAVECTL_BIN, *options, 'watch', stream], stdin=slave, stdout=slave,
                                stderr=slave, env=env, start_new_session=True)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        self.addCleanup(os.close, master)
        self.addCleanup(os.close, slave)
        output = bytearray()
        lock = threading.Lock()

        def reader():
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    return
                if not data:
                    return
                with lock:
                    output.extend(data)

        threading.Thread(target=reader, daemon=True).start()

        def text():
            with lock:
                return output.decode(errors='replace')
        return proc, master, slave, text

    def test_dashboard(self):
        proc, master, slave, text = self.spawn(self.stream)
        wait_until(lambda: '\x1b[?1049h' in text(), timeout=TIMEOUT, what='alternate screen')
        self.assertIn('\x1b[?25l', text())
        # The first frame is written after the escapes that take the screen.
        wait_until(lambda: self.stream in text(), timeout=TIMEOUT, what='first frame')
        # Raw mode: no echo, no line buffering, while the dashboard runs.
        lflag = termios.tcgetattr(slave)[3]
        self.assertFalse(lflag & termios.ECHO)
        self.assertFalse(lflag & termios.ICANON)

        self.wait_upstream(self.stream)
        self.emit({'type': 'stream.started',
                   'payload': {'stream_id': self.stream, 'started_at': '2026-01-01T12:00:00Z',
                               'protocol': 'rtmp', 'ingest_endpoint': 'rtmp://ingest'}})
        for bitrate in (1000, 2000, 3000, 4500):
            self.emit(health(self.stream, bitrate=bitrate))
        self.emit(analytics(self.stream, viewers=123, peak=200, total=5000))
        for i in range(3):
            self.emit(chat(self.stream, 'alice', f'dashboard hello {i}'))
        self.emit(reaction(self.stream, '🎉', 7))
        for expected in ('LIVE', '4500 kbps', '123 now', 'peak 200', 'total views 5,000',
                         'avg watch 3m12s', 'alice: dashboard hello 2', '🎉 7', 'Latency 45 ms',
                         '0.20 %', 'upstream connected'):
            wait_until(lambda: expected in text(), timeout=TIMEOUT, what=repr(expected))
        # The sparkline of the four samples: lowest to highest bar.
        wait_until(lambda: '▁▃▅█' in text(), timeout=TIMEOUT, what='sparkline')

        # A resize is laid out again (cleared, redrawn at the new width).
        before = len(text())
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 30, 100, 0, 0))
        proc.send_signal(signal.SIGWINCH)
        wait_until(lambda: '\x1b[2J' in text()[before:] and self.stream in text()[before:],
                   timeout=TIMEOUT, what='redraw after SIGWINCH')

        os.write(master, b'q')
        self.assertEqual(proc.wait(TIMEOUT), 0)
        wait_until(lambda: '\x1b[?1049l' in text(), timeout=TIMEOUT, what='screen restored')
        self.assertIn('\x1b[?25h', text())
        lflag = termios.tcgetattr(slave)[3]
        self.assertTrue(lflag & termios.ECHO)
        self.assertTrue(lflag & termios.ICANON)

    def test_dashboard_over_dbus(self):
        proc, master, slave, text = self.spawn(self.stream, options=['--dbus'])
        wait_until(lambda: self.stream in text(), timeout=TIMEOUT, what='dashboard')
        self.wait_upstream(self.stream)
        self.emit(health(self.stream, bitrate=3333))
        self.emit(analytics(self.stream, viewers=4444, peak=5555))
        self.emit(chat(self.stream, 'dbus_user', 'hello over the bus'))
        for expected in ('3333 kbps', '4,444 now', 'peak 5,555', 'dbus_user: hello over the bus'):
            wait_until(lambda: expected in text(), timeout=TIMEOUT, what=repr(expected))
        os.write(master, b'q')
        self.assertEqual(proc.wait(TIMEOUT), 0)

    def test_signals_restore_the_terminal(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=sig):
                proc, master, slave, text = self.spawn(self.stream)
                wait_until(lambda: self.stream in text(), timeout=TIMEOUT, what='dashboard')
                proc.send_signal(sig)
                self.assertEqual(proc.wait(TIMEOUT), 0)
                wait_until(lambda: '\x1b[?1049l' in text(), timeout=TIMEOUT,
                           what='screen restored')
                self.assertTrue(termios.tcgetattr(slave)[3] & termios.ECHO)

    def test_unknown_stream_and_small_sizes(self):
        proc, master, slave, text = self.spawn('stream_zzz998', columns=80, rows=24)
        wait_until(lambda: 'waiting for events of stream_zzz998' in text(), timeout=TIMEOUT,
                   what='waiting notice')
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 8, 30, 0, 0))
        proc.send_signal(signal.SIGWINCH)
        wait_until(lambda: 'terminal too small' in text(), timeout=TIMEOUT, what='too small')
        os.write(master, b'q')
        self.assertEqual(proc.wait(TIMEOUT), 0)

    def test_bridge_not_running(self):
        self.bridge.stop()
        os.unlink(self.bridge.socket_path) if os.path.exists(self.bridge.socket_path) else None
        proc, master, slave, text = self.spawn(self.stream)
        self.assertEqual(proc.wait(TIMEOUT), 1)
        wait_until(lambda: NOT_RUNNING in text(), timeout=TIMEOUT, what='error message')
        # It failed before taking the screen over.
        self.assertNotIn('\x1b[?1049h', text())


class Permissions(BridgeCase):
    bridge_config = {'Access': {'SendGroup': SEND_GROUP}}

    def test_permission_denied(self):
        os.chmod(self.bridge.socket_path, 0o600)
        result = run(['--socket', self.bridge.socket_path, 'status'], env=base_env(),
                     preexec_fn=as_nobody(), binary=wavectl_for_nobody(self))
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(f'permission denied on {self.bridge.socket_path}', result.stderr)
        self.assertIn("add yourself to group 'wave'", result.stderr)

    def test_chat_forbidden(self):
        os.chmod(self.bridge.socket_path, 0o666)
        wavectl = wavectl_for_nobody(self)
        result = run(['--socket', self.bridge.socket_path, 'chat', self.stream, 'hi'],
                     env=base_env(), preexec_fn=as_nobody(), binary=wavectl)
        self.assertEqual(result.returncode, 1)
        self.assertIn('forbidden', result.stderr)
        self.assertEqual(self.sim.stats()['received'].get('chat.message', 0), 0)
        # Reading stays allowed for non-members.
        result = run(['--socket', self.bridge.socket_path, 'status'], env=base_env(),
                     preexec_fn=as_nobody(), binary=wavectl)
        self.assertEqual(result.returncode, 0, result.stderr)


class NotConnected(unittest.TestCase):
    def test_chat_not_connected_when_auth_failed(self):
        with Sim(streams=1, speed=0.2) as sim, \
                Bridge(sim, api_key='wrong_key') as bridge:
            env = base_env(WAVE_BRIDGE_SOCKET=bridge.socket_path)
            with bridge.connect() as client:
                client.send({'type': 'subscribe', 'stream_id': sim.streams[0]})
                client.recv_type('bridge.state', timeout=TIMEOUT,
                                 where=lambda m: m['payload'].get('state') == 'auth-failed')
                for args in (['chat', sim.streams[0], 'hello?'], ['react', sim.streams[0], '👍']):
                    result = run(args, env=env)
                    self.assertEqual(result.returncode, 1, result.stdout)
                    self.assertIn('not_connected', result.stderr)
                status = run(['status'], env=env).stdout
                self.assertIn('auth-failed', status)
                self.assertIn('4401', status)
                # A tail started now says why nothing will come.
                tail = Tail(['tail', sim.streams[0]], env)
                self.addCleanup(tail.stop, signal.SIGKILL)
                tail.err.wait_contains('upstream is auth-failed: closed by the server with 4401')
                self.assertEqual(tail.stop(signal.SIGTERM), 0)


class Resync(BridgeCase):
    def test_tail_shows_state_and_resync(self):
        tail = Tail(['tail', self.stream], self.env)
        self.addCleanup(tail.stop, signal.SIGKILL)
        self.wait_upstream(self.stream)
        self.sim.post('/sim/close', {'code': 4500, 'reason': 'test'})
        tail.out.wait_contains('bridge upstream waiting')
        line = tail.out.wait_contains('bridge resync')
        self.assertIn('may be missing', line)
        self.assertIn(self.stream, line)
        tail.out.wait_contains('bridge upstream connected')


if __name__ == '__main__':
    unittest.main()
