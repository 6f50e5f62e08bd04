# SPDX-License-Identifier: MIT
"""Secrets and permissions, checked on the real daemon (docs/reliability.md):

- the API key appears nowhere a user or another process can look: the log
  at debug level through connects, reconnects, refusals, a wrong key and
  reloads; /proc/PID/cmdline and /proc/PID/environ; the D-Bus properties of
  the manager; the socket's bridge.status;
- the socket is created 0660 whatever the umask;
- the daemon cannot leave its memory in a core dump (RLIMIT_CORE 0) and is
  not dumpable, so processes of its own user cannot read /proc/PID/environ
  (or attach to it, or read /proc/PID/mem): checked as a non-root user,
  against a dumpable process of the same user that can be read.
"""

import os
import secrets
import signal
import stat
import subprocess
import tempfile
import shutil
import unittest

from wbtest import Bridge, PrivateBus, Sim, wait_until

NOBODY = 65534
NOGROUP = 65534
TIMEOUT = 20
AS_NOBODY = ['setpriv', f'--reuid={NOBODY}', f'--regid={NOGROUP}', '--clear-groups']
ALLOW_CORE = ['prlimit', '--core=unlimited:unlimited']


def new_key(label):
    # Distinctive, and only characters a URL carries as they are.
    return f'wbsecret-{label}-{secrets.token_hex(12)}'


def busctl(bus, *args):
    out = subprocess.run(['busctl', f'--address={bus.address}'] + list(args),
                         capture_output=True, text=True, timeout=TIMEOUT)
    return out


def proc_read(pid, name):
    with open(f'/proc/{pid}/{name}', 'rb') as f:
        return f.read().decode(errors='replace')


def proc_uid(pid):
    for line in proc_read(pid, 'status').splitlines():
        if line.startswith('Uid:'):
            return int(line.split()[1])
    raise AssertionError(f'no Uid in /proc/{pid}/status')


class KeyNeverShown(unittest.TestCase):
    def assert_secret_absent(self, keys, where, text):
        for key in keys:
            self.assertNotIn(key, text, f'the API key shows in {where}')
            # Not even most of it (a cut or wrapped copy).
            self.assertNotIn(key[:-4], text, f'part of the API key shows in {where}')

    def manager_properties(self, bus):
        out = busctl(bus, 'call', 'inc.wave.Bridge1', '/inc/wave/Bridge1',
                     'org.freedesktop.DBus.Properties', 'GetAll', 's', 'inc.wave.Bridge1')
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def test_key_file_through_reconnects_errors_and_reloads(self):
        key = new_key('good')
        wrong = new_key('wrong')
        seen = []  # everything a user could read, to search at the end
        with Sim(streams=1, api_key=key) as sim, PrivateBus() as bus, \
                Bridge(sim, bus=bus, args=['--verbose'],
                       env={'G_MESSAGES_DEBUG': 'all'}) as bridge:
            pid = bridge.proc.pid
            stream = sim.streams[0]
            client = bridge.connect()
            client.send({'type': 'subscribe', 'stream_id': stream})

            def state_is(name):
                return lambda m: m['payload']['state'] == name
            client.recv_type('bridge.state', TIMEOUT, where=state_is('connected'))
            seen.append(client.request({'type': 'status'}, 'bridge.status'))
            seen.append(self.manager_properties(bus))

            # The server closes, drops, refuses handshakes, sends an error.
            sim.post('/sim/close', {'code': 4500, 'reason': 'maintenance'})
            client.recv_type('bridge.state', TIMEOUT, where=state_is('connected'))
            sim.post('/sim/reject', {'count': 2, 'http_status': 503})
            sim.post('/sim/drop')
            client.recv_type('bridge.state', TIMEOUT, where=state_is('connected'))
            sim.post('/sim/emit', {'type': 'error',
                                   'payload': {'code': 'internal', 'message': 'oops'}})

            # A wrong key in the file: the bridge reloads it by itself, the
            # server says 4401 and the bridge parks in auth-failed.
            bridge.write_key(wrong)
            client.recv_type('bridge.state', TIMEOUT, where=state_is('auth-failed'))
            seen.append(client.request({'type': 'status'}, 'bridge.status'))
            seen.append(self.manager_properties(bus))
            # The right key again, then every kind of reload.
            bridge.write_key(key)
            client.recv_type('bridge.state', TIMEOUT, where=state_is('connected'))
            bridge.reload()
            out = busctl(bus, 'call', 'inc.wave.Bridge1', '/inc/wave/Bridge1',
                         'inc.wave.Bridge1', 'Reload')
            self.assertEqual(out.returncode, 0, out.stderr)
            seen.append(client.request({'type': 'status'}, 'bridge.status'))
            seen.append(self.manager_properties(bus))

            seen.append(proc_read(pid, 'cmdline'))
            seen.append(proc_read(pid, 'environ'))
            client.close()
            self.assertEqual(bridge.stop(), 0, bridge.log())
            log = bridge.log()

        # The test saw what it meant to see: debug messages, the URL the
        # bridge dialled (redacted), the refusal.
        self.assertIn('-DEBUG', log)
        self.assertIn('api_key=REDACTED', log)
        self.assertIn('4401', log)
        self.assertTrue(any('api_key=REDACTED' in str(s) for s in seen))
        self.assert_secret_absent([key, wrong], 'the log at debug level', log)
        for index, text in enumerate(seen):
            self.assert_secret_absent([key, wrong], f'output #{index}', str(text))

    def test_credential(self):
        """The key as a systemd credential ($CREDENTIALS_DIRECTORY): the
        environment names the directory, never the key."""
        key = new_key('credential')
        with tempfile.TemporaryDirectory(prefix='wb-credentials-') as credentials, \
                Sim(streams=1, api_key=key) as sim:
            path = os.path.join(credentials, 'wave-api-key')
            with open(path, 'w') as f:
                f.write(key + '\n')
            os.chmod(path, 0o400)
            # The key file the configuration names holds a wrong key: the
            # credential must win.
            with Bridge(sim, api_key='not-this-one', args=['--verbose'],
                        env={'CREDENTIALS_DIRECTORY': credentials,
                             'G_MESSAGES_DEBUG': 'all'}) as bridge:
                client = bridge.connect()
                client.send({'type': 'subscribe', 'stream_id': sim.streams[0]})
                client.recv_type('bridge.state', TIMEOUT,
                                 where=lambda m: m['payload']['state'] == 'connected')
                status = client.request({'type': 'status'}, 'bridge.status')
                environ = proc_read(bridge.proc.pid, 'environ')
                cmdline = proc_read(bridge.proc.pid, 'cmdline')
                client.close()
                self.assertEqual(bridge.stop(), 0, bridge.log())
                log = bridge.log()
        self.assertIn('CREDENTIALS_DIRECTORY=', environ)
        self.assertIn('wave-api-key', log)  # "API key from …/wave-api-key"
        for where, text in (('the log', log), ('environ', environ), ('cmdline', cmdline),
                            ('bridge.status', str(status))):
            self.assert_secret_absent([key], where, text)


class SocketMode(unittest.TestCase):
    def test_socket_is_0660_whatever_the_umask(self):
        for mask in (0o000, 0o002, 0o022, 0o077, 0o777):
            with self.subTest(umask=oct(mask)), Sim(streams=1) as sim:
                old = os.umask(mask)
                try:
                    bridge = Bridge(sim)
                    bridge.__enter__()
                finally:
                    os.umask(old)
                try:
                    st = os.stat(bridge.socket_path)
                    self.assertTrue(stat.S_ISSOCK(st.st_mode))
                    self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
                    # And it serves.
                    bridge.connect().close()
                finally:
                    bridge.__exit__(None, None, None)


    # Under 077 a umasked directory would be 0700 and the group could not
    # reach the 0660 socket.
    def test_missing_directory_is_created_0755_whatever_the_umask(self):
        for mask in (0o022, 0o077):
            with self.subTest(umask=oct(mask)), Sim(streams=1) as sim:
                bridge = Bridge(sim)
                directory = os.path.join(bridge.dir, 'run', 'wave-bridge')
                bridge.socket_path = os.path.join(directory, 'wave.sock')
                old = os.umask(mask)
                try:
                    bridge.__enter__()
                finally:
                    os.umask(old)
                try:
                    # docs/protocol.md: "the parent directory is created (mode 0755)".
                    self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o755)
                finally:
                    bridge.__exit__(None, None, None)


class CoreDumpsAndProc(unittest.TestCase):
    """As nobody, so that /proc's rules for the same user apply (root may read
    anything)."""

    def setUp(self):
        if os.getuid() != 0:
            self.skipTest('needs root to run the daemon as another user')
        if shutil.which('setpriv') is None or shutil.which('prlimit') is None:
            self.skipTest('needs setpriv and prlimit (util-linux)')

    def start_as_nobody(self, sim, key):
        # Started with core dumps allowed: the daemon must turn them off.
        bridge = Bridge(sim, api_key=key, wrapper=ALLOW_CORE + AS_NOBODY)
        bridge.write_config()
        bridge.write_key(key)
        for path in (bridge.dir, bridge.key_path, bridge.config_path):
            os.chown(path, NOBODY, NOGROUP)
        bridge.start()
        return bridge

    def as_nobody(self, *command):
        return subprocess.run(AS_NOBODY + list(command), capture_output=True, timeout=TIMEOUT)

    def test_not_dumpable_and_no_core(self):
        key = new_key('memory')
        with Sim(streams=1, api_key=key) as sim:
            bridge = self.start_as_nobody(sim, key)
            # A dumpable process of the same user, for comparison.
            witness = subprocess.Popen(AS_NOBODY + ['sleep', '60'])
            try:
                pid = bridge.proc.pid
                # setpriv has become the daemon (its socket is there), as nobody.
                self.assertIn('wave-bridged', proc_read(pid, 'cmdline'))
                self.assertEqual(proc_uid(pid), NOBODY)
                # 'comm', not 'cmdline': setpriv's own command line names sleep
                # before it has dropped to nobody and exec'd it.
                wait_until(lambda: proc_read(witness.pid, 'comm').strip() == 'sleep',
                           what='the witness running')
                self.assertEqual(proc_uid(witness.pid), NOBODY)
                with bridge.connect() as client:
                    client.send({'type': 'subscribe', 'stream_id': sim.streams[0]})
                    client.recv_type('bridge.state', TIMEOUT,
                                     where=lambda m: m['payload']['state'] == 'connected')

                # RLIMIT_CORE: no core file, and systemd-coredump keeps none.
                limits = proc_read(pid, 'limits')
                core = [line for line in limits.splitlines()
                        if line.startswith('Max core file size')]
                self.assertEqual(core[0].split()[4:6], ['0', '0'], limits)

                # Not dumpable: the kernel hands /proc/PID to root ...
                self.assertEqual(os.stat(f'/proc/{pid}/environ').st_uid, 0)
                self.assertEqual(os.stat(f'/proc/{witness.pid}/environ').st_uid, NOBODY)
                # ... so the same user cannot read the daemon's environment
                # or memory, while it can read its own dumpable process's.
                witness_read = self.as_nobody('cat', f'/proc/{witness.pid}/environ')
                self.assertEqual(witness_read.returncode, 0, witness_read.stderr)
                daemon_read = self.as_nobody('cat', f'/proc/{pid}/environ')
                self.assertNotEqual(daemon_read.returncode, 0)
                self.assertIn(b'Permission denied', daemon_read.stderr)
                memory_read = self.as_nobody('head', '-c', '1', f'/proc/{pid}/mem')
                self.assertNotEqual(memory_read.returncode, 0)
            finally:
                witness.kill()
                witness.wait()
                self.assertEqual(bridge.stop(signal.SIGTERM), 0, bridge.log())
                bridge.__exit__(None, None, None)


if __name__ == '__main__':
    unittest.main()
