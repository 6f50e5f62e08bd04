# SPDX-License-Identifier: MIT
"""The real wave-bridged under valgrind's memcheck for one whole session
against wave-sim and a private dbus-daemon: subscribe, receive events, send a
chat message, read the status on the socket and D-Bus, lose the upstream
connection and get it back, then SIGTERM. The daemon must exit 0 and
valgrind must report no error and no definite leak (suite `valgrind`, run by
scripts/valgrind; docs/reliability.md)."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

from wbtest import SOURCE_DIR, Bridge, PrivateBus, Sim, wait_until

# Everything takes far longer under valgrind.
TIMEOUT = 120
VALGRIND_ERROR_EXIT = 99


def health(stream_id):
    return {'type': 'stream.health',
            'payload': {'stream_id': stream_id, 'bitrate': 2500.5, 'fps': 30.0,
                        'packet_loss': 0.01, 'latency': 40}}


def chat(stream_id, text):
    return {'type': 'chat.message',
            'payload': {'stream_id': stream_id, 'message_id': 'm1', 'user_id': 'u1',
                        'username': 'ada', 'message': text,
                        'timestamp': '2024-01-01T00:00:00Z'}}


@unittest.skipIf(shutil.which('valgrind') is None, 'valgrind is not installed')
class ValgrindSession(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='wb-valgrind-')
        self.log_path = os.path.join(self.dir, 'memcheck.log')
        self.wrapper = [
            'valgrind', f'--error-exitcode={VALGRIND_ERROR_EXIT}', '--leak-check=full',
            '--errors-for-leak-kinds=definite', '--show-leak-kinds=definite',
            '--num-callers=30', f'--log-file={self.log_path}',
            '--suppressions=' + os.path.join(SOURCE_DIR, 'tests', 'valgrind.supp'),
        ]

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def memcheck_log(self):
        with open(self.log_path, errors='replace') as f:
            return f.read()

    def test_session_is_clean(self):
        with Sim(streams=1) as sim, PrivateBus() as bus, \
                Bridge(sim, bus=bus, wrapper=self.wrapper) as bridge:
            stream = 'stream_valgrind'
            client = bridge.connect(timeout=TIMEOUT)
            client.send({'type': 'subscribe', 'stream_id': stream, 'id': 1})
            client.recv_type('subscribed', TIMEOUT)
            client.recv_type('bridge.state', TIMEOUT,
                             where=lambda m: m['payload']['state'] == 'connected')
            wait_until(lambda: sim.upstream_subscriptions(stream), timeout=TIMEOUT,
                       what='the upstream subscription')

            sim.post('/sim/emit', health(stream))
            sim.post('/sim/emit', chat(stream, 'hello valgrind'))
            client.recv_type('stream.health', TIMEOUT)
            client.recv_type('chat.message', TIMEOUT)

            client.send({'type': 'chat.message', 'stream_id': stream, 'message': 'hi', 'id': 2})
            client.recv_type('sent', TIMEOUT)
            client.send({'type': 'status', 'id': 3})
            status = client.recv_type('bridge.status', TIMEOUT)
            self.assertEqual(status['payload']['state'], 'connected')
            out = subprocess.run(['busctl', f'--address={bus.address}', 'call',
                                  'inc.wave.Bridge1', '/inc/wave/Bridge1',
                                  'org.freedesktop.DBus.Properties', 'GetAll', 's',
                                  'inc.wave.Bridge1'],
                                 capture_output=True, text=True, timeout=TIMEOUT)
            self.assertEqual(out.returncode, 0, out.stderr)

            # The connection drops; the bridge reconnects and resubscribes.
            sim.post('/sim/drop')
            client.recv_type('bridge.resync', TIMEOUT)
            sim.post('/sim/emit', health(stream))
            client.recv_type('stream.health', TIMEOUT)
            client.send({'type': 'unsubscribe', 'stream_id': stream, 'id': 4})
            client.recv_type('unsubscribed', TIMEOUT)
            client.close()

            returncode = bridge.stop()
            log = self.memcheck_log()
            self.assertNotEqual(returncode, VALGRIND_ERROR_EXIT, log)
            self.assertEqual(returncode, 0, bridge.log() + log)
            summary = re.findall(r'ERROR SUMMARY: (\d+) errors', log)
            # For scripts/valgrind's count of memcheck errors.
            print(f'wave-bridged: ERROR SUMMARY: {",".join(summary)} errors', file=sys.stderr)
            self.assertEqual(summary, ['0'], log)
            self.assertRegex(log, r'definitely lost: 0 bytes|All heap blocks were freed')


if __name__ == '__main__':
    unittest.main()
