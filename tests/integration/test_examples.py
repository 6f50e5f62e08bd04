# SPDX-License-Identifier: MIT
"""The examples in clients/examples/, run as a user would run them against the
real wave-bridged, wave-sim and a private dbus-daemon."""

import os
import signal
import subprocess
import tempfile
import threading
import unittest

from wbtest import SOURCE_DIR, Bridge, PrivateBus, Sim, wait_until

EXAMPLES = os.path.join(SOURCE_DIR, 'clients', 'examples')
TIMEOUT = 30


class Output:
    """A child's stdout and stderr, collected by threads."""

    def __init__(self, proc):
        self.proc = proc
        self.out = []
        self.err = []
        self.threads = [threading.Thread(target=self._read, args=(proc.stdout, self.out),
                                         daemon=True),
                        threading.Thread(target=self._read, args=(proc.stderr, self.err),
                                         daemon=True)]
        for thread in self.threads:
            thread.start()

    @staticmethod
    def _read(pipe, lines):
        try:
            for line in pipe:
                lines.append(line.rstrip('\n'))
        except ValueError:  # closed by finish() after a timeout
            pass

    def wait_contains(self, text, stream='out'):
        lines = self.out if stream == 'out' else self.err
        return wait_until(lambda: next((l for l in list(lines) if text in l), None),
                          timeout=TIMEOUT, what=repr(text))

    def finish(self):
        if self.proc.stdout.closed:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for thread in self.threads:
            thread.join(TIMEOUT)
        self.proc.stdout.close()
        self.proc.stderr.close()


class Examples(unittest.TestCase):
    def setUp(self):
        # Slow simulated time: the only events that matter are the test's.
        self.sim = Sim(streams=2, speed=0.05).__enter__()
        self.addCleanup(self.sim.__exit__, None, None, None)
        self.bus = PrivateBus().__enter__()
        self.addCleanup(self.bus.__exit__, None, None, None)
        self.bridge = Bridge(self.sim, bus=self.bus).__enter__()
        self.addCleanup(self.bridge.__exit__, None, None, None)
        self.env = dict(os.environ, WAVE_BRIDGE_SOCKET=self.bridge.socket_path, **self.bus.env)
        self.stream = self.sim.streams[0]

    def start(self, args):
        proc = subprocess.Popen(args, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                start_new_session=True)
        output = Output(proc)
        self.addCleanup(output.finish)
        return output

    def wait_upstream(self, stream):
        wait_until(lambda: self.sim.upstream_subscriptions(stream), timeout=TIMEOUT,
                   what=f'upstream subscription of {stream}')

    def emit(self, message):
        self.assertTrue(self.sim.post('/sim/emit', message).get('ok'))

    def test_viewers_py(self):
        run = self.start(['/usr/bin/python3', os.path.join(EXAMPLES, 'viewers.py'),
                          '--session', '--timeout', str(TIMEOUT), self.stream])
        run.wait_contains('watching', stream='err')
        self.wait_upstream(self.stream)
        self.emit({'type': 'analytics.update',
                   'payload': {'stream_id': self.stream, 'concurrent_viewers': 4242,
                               'total_views': 9000, 'peak_viewers': 5000,
                               'average_watch_time': 60.0}})
        line = run.wait_contains('viewers 4242')
        self.assertIn(self.stream, line)
        self.assertIn('(peak 5000)', line)

    def test_viewers_py_count_exits(self):
        run = self.start(['/usr/bin/python3', os.path.join(EXAMPLES, 'viewers.py'),
                          '--count', '1', '--timeout', str(TIMEOUT), self.stream])
        run.wait_contains('watching', stream='err')
        self.wait_upstream(self.stream)
        self.emit({'type': 'analytics.update',
                   'payload': {'stream_id': self.stream, 'concurrent_viewers': 17,
                               'total_views': 20, 'peak_viewers': 18,
                               'average_watch_time': 6.0}})
        self.assertEqual(run.proc.wait(TIMEOUT), 0)

    def test_viewers_py_without_bridge(self):
        with PrivateBus() as empty:
            result = subprocess.run(['/usr/bin/python3', os.path.join(EXAMPLES, 'viewers.py'),
                                     '--session', self.stream],
                                    env=dict(os.environ, **empty.env), capture_output=True,
                                    text=True, timeout=TIMEOUT)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn('not on the bus', result.stderr)

    def test_socat_jq(self):
        # Upstream connected first, so no bridge.state line comes in between.
        holder = self.bridge.connect()
        self.addCleanup(holder.close)
        holder.request({'type': 'subscribe', 'stream_id': self.stream}, 'subscribed')
        wait_until(lambda: self.bridge.status()['state'] == 'connected', timeout=TIMEOUT,
                   what='upstream connected')
        run = self.start([os.path.join(EXAMPLES, 'socat-jq.sh'), '-n', '3', self.stream,
                          'chat.message,stream.health'])
        # Two local subscribers: the holder and socat.
        wait_until(lambda: any(s['subscribers'] == 2 for s in self.bridge.status()['streams']),
                   timeout=TIMEOUT, what='the script subscribed')
        self.emit({'type': 'chat.message',
                   'payload': {'stream_id': self.stream, 'message_id': 'm1', 'user_id': 'u1',
                               'username': 'alice', 'message': 'hi from socat',
                               'timestamp': '2026-01-01T12:00:00Z'}})
        self.emit({'type': 'stream.health',
                   'payload': {'stream_id': self.stream, 'bitrate': 4500, 'fps': 30,
                               'packet_loss': 0.002, 'latency': 45}})
        self.emit({'type': 'analytics.update',
                   'payload': {'stream_id': self.stream, 'concurrent_viewers': 1,
                               'total_views': 1, 'peak_viewers': 1,
                               'average_watch_time': 1}})
        self.emit({'type': 'chat.message',
                   'payload': {'stream_id': self.stream, 'message_id': 'm2', 'user_id': 'u2',
                               'username': 'bob', 'message': 'bye',
                               'timestamp': '2026-01-01T12:00:01Z'}})
        self.assertEqual(run.proc.wait(TIMEOUT), 0, run.err)
        run.finish()
        # The holder's subscription kept upstream busy; ours only added events.
        self.assertRegex(run.out[0], r'^\d\d:\d\d:\d\d chat\.message +alice: hi from socat$')
        self.assertRegex(run.out[1], r'stream\.health +4500 kbps 30 fps loss 0\.2% 45 ms$')
        self.assertRegex(run.out[2], r'chat\.message +bob: bye$')
        self.assertEqual(len(run.out), 3)

    def test_socat_jq_without_bridge(self):
        env = dict(self.env, WAVE_BRIDGE_SOCKET=os.path.join(tempfile.gettempdir(), 'nope.sock'))
        result = subprocess.run([os.path.join(EXAMPLES, 'socat-jq.sh'), self.stream], env=env,
                                capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(result.returncode, 1)
        self.assertIn('no wave-bridge socket', result.stderr)

    def test_busctl_sh(self):
        # Someone holds a subscription, so the stream object stays.
        holder = self.bridge.connect()
        self.addCleanup(holder.close)
        holder.request({'type': 'subscribe', 'stream_id': self.stream}, 'subscribed')
        self.wait_upstream(self.stream)
        self.emit({'type': 'analytics.update',
                   'payload': {'stream_id': self.stream, 'concurrent_viewers': 31337,
                               'total_views': 40000, 'peak_viewers': 32000,
                               'average_watch_time': 60.0}})
        holder.recv_type('analytics.update', timeout=TIMEOUT)

        result = subprocess.run([os.path.join(EXAMPLES, 'busctl.sh'), '--user', self.stream],
                                env=self.env, capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(result.returncode, 0, result.stderr)
        encoded = self.stream.replace('_', '_5f')
        self.assertIn(f'/inc/wave/Bridge1/stream/{encoded}', result.stdout)
        self.assertIn('.State', result.stdout)
        self.assertIn('.Subscribe', result.stdout)
        self.assertIn('.ConcurrentViewers', result.stdout)
        self.assertIn('u 31337', result.stdout)
        self.assertIn('busctl --user monitor', result.stdout)

        # Without an argument: the tree and the bridge's properties only.
        result = subprocess.run([os.path.join(EXAMPLES, 'busctl.sh')], env=self.env,
                                capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn('/inc/wave/Bridge1', result.stdout)
        self.assertIn('s "connected"', result.stdout)

    def test_busctl_sh_without_bridge(self):
        with PrivateBus() as empty:
            result = subprocess.run([os.path.join(EXAMPLES, 'busctl.sh'), '--user'],
                                    env=dict(os.environ, **empty.env), capture_output=True,
                                    text=True, timeout=TIMEOUT)
        self.assertEqual(result.returncode, 1)
        self.assertIn('is not on the user bus', result.stderr)


if __name__ == '__main__':
    unittest.main()
