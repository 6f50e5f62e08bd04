# SPDX-License-Identifier: MIT
"""scripts/demo-run: the dashboard in a real terminal (tmux, fixed size),
the tail mode without one, and that every way out cleans up: no process of
the demo left, its temporary directory gone.

Every process the demo starts inherits WB_DEMO_TEST_MARK from the test, so
leftovers are found through /proc/PID/environ whatever their names."""

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import uuid

from wbtest import BUILD_DIR, SOURCE_DIR, wait_until

DEMO = os.path.join(SOURCE_DIR, 'scripts', 'demo-run')
TIMEOUT = 60
MARK_VARIABLE = 'WB_DEMO_TEST_MARK'


def processes_with(mark):
    """PIDs of live processes whose environment carries @mark."""
    needle = f'{MARK_VARIABLE}={mark}'.encode()
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/environ', 'rb') as f:
                if needle in f.read().split(b'\0'):
                    with open(f'/proc/{entry}/stat') as stat:
                        # Zombies are dead already, just not yet reaped.
                        if stat.read().rsplit(')', 1)[1].split()[0] != 'Z':
                            found.append(int(entry))
        except OSError:
            continue
    return found


def read_text(path):
    with open(path) as f:
        return f.read()


class DemoCase(unittest.TestCase):
    def setUp(self):
        self.mark = uuid.uuid4().hex
        self.tmpdir = tempfile.mkdtemp(prefix='wb-demo-test-')
        self.addCleanup(shutil.rmtree, self.tmpdir, ignore_errors=True)
        self.addCleanup(self.kill_leftovers)
        self.env = dict(os.environ, TMPDIR=self.tmpdir, WB_DEMO_PAUSE='0',
                        **{MARK_VARIABLE: self.mark})
        for name in ('WAVE_BRIDGE_SOCKET', 'DBUS_SESSION_BUS_ADDRESS'):
            self.env.pop(name, None)

    def kill_leftovers(self):
        for pid in processes_with(self.mark):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def assert_cleaned_up(self):
        wait_until(lambda: not processes_with(self.mark), timeout=TIMEOUT,
                   what='every demo process gone')
        self.assertEqual(os.listdir(self.tmpdir), [], 'the demo left files behind')


class DemoInTmux(DemoCase):
    COLUMNS = 80
    ROWS = 24

    def setUp(self):
        super().setUp()
        if shutil.which('tmux') is None:
            self.skipTest('tmux is not installed')
        self.tmux_socket = f'wb-demo-{self.mark[:12]}'
        self.addCleanup(subprocess.run, self.tmux(['kill-server']), capture_output=True)

    def tmux(self, args):
        return ['tmux', '-L', self.tmux_socket, '-f', '/dev/null'] + args

    def capture(self, history=False):
        # With history: the scrollback too (long paths push the top of the
        # printed instructions out of an 80x24 pane).
        args = ['capture-pane', '-p', '-t', 'demo'] + (['-S', '-'] if history else [])
        return subprocess.run(self.tmux(args), capture_output=True, text=True).stdout

    def pane(self, fmt):
        return subprocess.run(self.tmux(['display-message', '-p', '-t', 'demo', fmt]),
                              capture_output=True, text=True).stdout.strip()

    def start_demo(self):
        # The tmux server must not carry the mark (it outlives the demo):
        # only the pane's command gets it.
        env = {k: v for k, v in self.env.items() if k != MARK_VARIABLE}
        env['TERM'] = 'xterm-256color'
        env.pop('TMUX', None)
        self.status_file = os.path.join(tempfile.mkdtemp(prefix='wb-demo-status-'), 'status')
        self.addCleanup(shutil.rmtree, os.path.dirname(self.status_file), ignore_errors=True)
        command = (f'env {MARK_VARIABLE}={self.mark} '
                   f'{shlex.quote(DEMO)} {shlex.quote(BUILD_DIR)}; '
                   f'echo $? > {shlex.quote(self.status_file)}')
        subprocess.run(self.tmux(['new-session', '-d', '-s', 'demo', '-x', str(self.COLUMNS),
                                  '-y', str(self.ROWS), command]), env=env, check=True)
        # Keep the pane after the demo exits, to read its exit status.
        subprocess.run(self.tmux(['set-option', '-t', 'demo', 'remain-on-exit', 'on']),
                       check=True)

    def wait_dashboard(self):
        def ready():
            screen = self.capture()
            chat = screen.split(' Chat', 1)[1] if ' Chat' in screen else ''
            if (re.search(r'stream_[a-z]{3}\d{3}', screen) and 'Viewers' in screen
                    and re.search(r'\d now', screen) and re.search(r'\d+ kbps', screen)
                    and re.search(r'\d\d:\d\d:\d\d \S+: ', chat)):
                return screen
            return None
        return wait_until(ready, timeout=TIMEOUT, what='the dashboard with data',
                          interval=0.5)

    def test_dashboard_then_q(self):
        self.start_demo()
        screen = self.wait_dashboard()
        lines = screen.splitlines()
        self.assertLessEqual(len(lines), self.ROWS)
        self.assertTrue(all(len(line) <= self.COLUMNS for line in lines), screen)
        first = re.search(r'stream_[a-z]{3}\d{3}', lines[0])
        self.assertIsNotNone(first, screen)
        self.assertRegex(screen, r'Viewers +\d+ now +peak \d+')
        self.assertRegex(screen, r'Bitrate +\d+ kbps +[▁▂▃▄▅▆▇█]+')
        self.assertRegex(screen, r'FPS +\d+\.\d')
        self.assertRegex(screen, r'Latency \d+ ms')
        self.assertIn('upstream connected', screen)
        self.assertIn('q quit', screen)
        self.assertTrue(processes_with(self.mark))

        subprocess.run(self.tmux(['send-keys', '-t', 'demo', 'q']), check=True)
        wait_until(lambda: self.pane('#{pane_dead}') == '1', timeout=TIMEOUT,
                   what='the demo to exit')
        # tmux does not always reap its pane's process here, so the shell
        # around the demo records the exit status.
        wait_until(lambda: os.path.exists(self.status_file), timeout=TIMEOUT,
                   what='the exit status')
        wait_until(lambda: read_text(self.status_file).strip(), timeout=TIMEOUT,
                   what='the exit status written')
        self.assertEqual(read_text(self.status_file).strip(), '0', self.capture())
        self.assert_cleaned_up()
        # The normal screen is back, with the instructions printed before.
        after = self.capture(history=True)
        self.assertIn('Try from another terminal', after)
        self.assertIn('demo finished', after)

    def test_ctrl_c(self):
        self.start_demo()
        self.wait_dashboard()
        subprocess.run(self.tmux(['send-keys', '-t', 'demo', 'C-c']), check=True)
        wait_until(lambda: os.path.exists(self.status_file), timeout=TIMEOUT,
                   what='the demo to exit')
        self.assert_cleaned_up()

    def test_printed_commands_work(self):
        self.start_demo()
        self.wait_dashboard()
        socket_path = next(
            os.path.join(root, 'wave.sock') for root, _dirs, files in os.walk(self.tmpdir)
            if 'wave.sock' in files)
        stream = re.search(r'stream_[a-z]{3}\d{3}', self.capture()).group(0)
        with open(os.path.join(os.path.dirname(socket_path), 'bus.address')) as f:
            bus_address = f.readline().strip()
        env = dict(os.environ, WAVE_BRIDGE_SOCKET=socket_path,
                   DBUS_SESSION_BUS_ADDRESS=bus_address)
        wavectl = os.path.join(BUILD_DIR, 'clients', 'wavectl')
        result = subprocess.run([wavectl, 'chat', stream, 'hello from the test'], env=env,
                                capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(result.returncode, 0, result.stderr)
        wait_until(lambda: 'you: hello from the test' in self.capture(), timeout=TIMEOUT,
                   what='our chat line on the dashboard', interval=0.5)
        result = subprocess.run(['busctl', f'--address={bus_address}', 'tree',
                                 'inc.wave.Bridge1'], capture_output=True, text=True,
                                timeout=TIMEOUT)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn('/inc/wave/Bridge1/stream/', result.stdout)
        subprocess.run(self.tmux(['send-keys', '-t', 'demo', 'q']), check=True)
        self.assert_cleaned_up()


class DemoWithoutTerminal(DemoCase):
    def test_tail_with_time_limit(self):
        env = dict(self.env, WB_DEMO_SECONDS='6')
        result = subprocess.run([DEMO, BUILD_DIR], env=env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=TIMEOUT * 2)
        self.assertEqual(result.returncode, 0, result.stderr)
        out = result.stdout
        self.assertIn('Try from another terminal', out)
        self.assertRegex(out, r'export WAVE_BRIDGE_SOCKET=\S+/wave\.sock '
                              r'DBUS_SESSION_BUS_ADDRESS=\S+')
        self.assertIn('socat - UNIX-CONNECT:', out)
        self.assertIn('busctl --address=', out)
        first = re.search(r'streams: (stream_[a-z]{3}\d{3})', out).group(1)
        self.assertRegex(out, rf'\d\d:\d\d:\d\d {first} (health|viewers|chat) ')
        self.assert_cleaned_up()

    def test_sigterm_cleans_up(self):
        proc = subprocess.Popen([DEMO, BUILD_DIR], env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        seen = []
        deadline = time.monotonic() + TIMEOUT
        for line in proc.stdout:
            seen.append(line)
            if re.match(r'\d\d:\d\d:\d\d stream_', line) or time.monotonic() > deadline:
                break
        self.assertTrue(any(re.match(r'\d\d:\d\d:\d\d stream_', l) for l in seen), seen)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(TIMEOUT), 143)
        proc.stdout.close()
        self.assert_cleaned_up()

    def test_missing_build_dir(self):
        result = subprocess.run([DEMO, os.path.join(self.tmpdir, 'no-build')], env=self.env,
                                capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(result.returncode, 2)
        self.assertIn('meson compile', result.stderr)


if __name__ == '__main__':
    unittest.main()
