# SPDX-License-Identifier: MIT
"""wave-bridged as a process: command line, exit codes, sd_notify."""

import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from wbtest import BRIDGE_BIN, Bridge, Sim, wait_until

EX_CONFIG = 78


class NotifyCapture:
    """A NOTIFY_SOCKET that records what the daemon tells systemd."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix='wb-notify-')
        self.path = os.path.join(self.dir.name, 'notify')
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.assignments = []

    def poll(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, BlockingIOError):
                return self.assignments
            self.assignments.extend(data.decode(errors='replace').split('\n'))

    def wait_for(self, predicate, what, timeout=15):
        return wait_until(lambda: any(predicate(a) for a in self.poll()), timeout=timeout,
                          what=what)

    def close(self):
        self.sock.close()
        self.dir.cleanup()


class Notify(unittest.TestCase):
    def setUp(self):
        self.notify = NotifyCapture()
        self.addCleanup(self.notify.close)

    def test_ready_status_and_stopping(self):
        with Sim(streams=1) as sim, Bridge(sim, env={'NOTIFY_SOCKET': self.notify.path}) as bridge:
            self.notify.wait_for(lambda a: a == 'READY=1', 'READY=1')
            self.assertIn('STATUS=upstream idle', self.notify.poll())
            with bridge.connect() as client:
                client.send({'type': 'subscribe', 'stream_id': sim.streams[0]})
                self.notify.wait_for(lambda a: a == 'STATUS=upstream connected',
                                     'STATUS=upstream connected')
            bridge.stop()
            self.notify.wait_for(lambda a: a == 'STOPPING=1', 'STOPPING=1')

    def test_server_text_cannot_inject_notify_assignments(self):
        # The server chooses error texts and close reasons; the daemon puts
        # them in STATUS=. A newline must not start a new assignment.
        with Sim(streams=1) as sim, Bridge(sim, env={'NOTIFY_SOCKET': self.notify.path}) as bridge:
            self.notify.wait_for(lambda a: a == 'READY=1', 'READY=1')
            with bridge.connect() as client:
                client.send({'type': 'subscribe', 'stream_id': sim.streams[0]})
                self.notify.wait_for(lambda a: a == 'STATUS=upstream connected', 'connected')
                sim.post('/sim/emit', {'type': 'error', 'payload': {
                    'code': 'x', 'message': 'boom\nWATCHDOG=trigger\nSTOPPING=1', 'details': {}}})
                sim.post('/sim/close', {'code': 4500, 'reason': 'bye\nWATCHDOG=trigger'})
                self.notify.wait_for(lambda a: a.startswith('STATUS=upstream waiting'),
                                     'STATUS=upstream waiting')
                time.sleep(0.5)
                assignments = self.notify.poll()
                self.assertNotIn('WATCHDOG=trigger', assignments)
                self.assertNotIn('STOPPING=1', assignments)
                waiting = [a for a in assignments if a.startswith('STATUS=upstream waiting')]
                self.assertTrue(any('WATCHDOG=trigger' in a for a in waiting), waiting)


class CommandLine(unittest.TestCase):
    def run_bridge(self, args, env=None):
        full_env = dict(os.environ, **(env or {}))
        full_env.pop('WAVE_API_KEY', None)
        return subprocess.run([BRIDGE_BIN] + args, capture_output=True, text=True, timeout=30,
                              env=full_env)

    def test_version_and_help(self):
        result = self.run_bridge(['--version'])
        self.assertEqual(result.returncode, 0)
        self.assertRegex(result.stdout, r'^wave-bridged \d+\.\d+\.\d+\n$')
        result = self.run_bridge(['--help'])
        self.assertEqual(result.returncode, 0)
        for option in ('--config', '--url', '--api-key-file', '--socket', '--bus', '--verbose'):
            self.assertIn(option, result.stdout)

    def test_api_key_never_on_the_command_line(self):
        for args in (['--api-key=secret'], ['--api-key', 'secret']):
            result = self.run_bridge(args)
            self.assertEqual(result.returncode, EX_CONFIG)
            self.assertIn('never accepted on the command line', result.stderr)
            self.assertNotIn('secret', result.stderr)

    def test_bad_config_names_file_and_key(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'bad.conf')
            with open(path, 'w') as f:
                f.write('[Limits]\nMaxClients=zero\n')
            result = self.run_bridge([f'--config={path}', '--bus=none'])
            self.assertEqual(result.returncode, EX_CONFIG)
            self.assertIn(f'{path}: [Limits] MaxClients', result.stderr)

    def test_missing_key_says_where_to_put_it(self):
        with tempfile.TemporaryDirectory() as tmp:
            key = os.path.join(tmp, 'api-key')
            result = self.run_bridge([f'--api-key-file={key}', '--bus=none',
                                      f'--socket={tmp}/s.sock'])
            self.assertEqual(result.returncode, EX_CONFIG)
            self.assertIn(key, result.stderr)
            self.assertIn('WAVE_API_KEY', result.stderr)

    def test_stray_argument_refused(self):
        result = self.run_bridge(['--bus=none', 'extra'])
        self.assertEqual(result.returncode, EX_CONFIG)
        self.assertIn("unexpected argument 'extra'", result.stderr)

    def test_reload_reports_only_real_socket_changes(self):
        with Sim(streams=1) as sim, Bridge(sim) as bridge:
            note = 'take effect on restart'
            bridge.write_config({'Socket': {'Path': bridge.socket_path + '.new'}})
            bridge.reload()
            wait_until(lambda: bridge.log().count(note) == 1, what='the restart note')
            bridge.write_config()
            bridge.reload()
            wait_until(lambda: bridge.log().count('configuration reloaded') == 2,
                       what='the second reload')
            self.assertEqual(bridge.log().count(note), 1, bridge.log())

    def test_bad_bus_name(self):
        result = self.run_bridge(['--bus=elsewhere'])
        self.assertEqual(result.returncode, EX_CONFIG)
        self.assertIn('--bus must be system, session or none', result.stderr)

    def test_key_never_logged(self):
        with Sim(streams=1, api_key='wave_live_topsecret') as sim, \
                Bridge(sim, args=['--verbose']) as bridge:
            with bridge.connect() as client:
                client.send({'type': 'subscribe', 'stream_id': sim.streams[0]})
                client.recv_type('bridge.state', timeout=15,
                                 where=lambda m: m['payload']['state'] == 'connected')
                status = bridge.status()
            bridge.stop(signal.SIGTERM)
            self.assertIn('api_key=REDACTED', status['upstream_url'])
            self.assertNotIn('topsecret', bridge.log())
            self.assertNotIn('topsecret', str(status))


if __name__ == '__main__':
    unittest.main()
