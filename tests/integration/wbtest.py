# SPDX-License-Identifier: MIT
"""Integration test harness: the real wave-sim, wave-bridged and a private
dbus-daemon, driven the way users drive them (socket lines, D-Bus calls).

Everything lives in a temporary directory and every process is killed on
exit, so tests can run in any order and leave nothing behind.
"""

import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

BUILD_DIR = os.environ.get('WB_BUILD_DIR') or os.path.abspath(
    os.path.join(os.path.dirname(__file__), '..', '..', 'build'))
SOURCE_DIR = os.environ.get('WB_SOURCE_DIR') or os.path.abspath(
    os.path.join(os.path.dirname(__file__), '..', '..'))
SIM_BIN = os.path.join(BUILD_DIR, 'sim', 'wave-sim')
BRIDGE_BIN = os.path.join(BUILD_DIR, 'daemon', 'wave-bridged')
WAVECTL_BIN = os.path.join(BUILD_DIR, 'clients', 'wavectl')

DEFAULT_TIMEOUT = 10.0
# Short but sane timings for tests; individual tests override them.
TEST_TIMINGS = {
    'Upstream': {
        'PingInterval': '2',
        'PongTimeout': '1',
        'IdleTimeout': '30',
        'BackoffInitial': '0.1',
        'BackoffMax': '1',
        'GoingAwayWait': '0.3',
        'RateLimitedWait': '0.6',
    },
}


def wait_until(predicate, timeout=DEFAULT_TIMEOUT, what='condition', interval=0.02):
    """Polls predicate until it returns a truthy value, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout}s waiting for {what}')
        time.sleep(interval)


def _stop(proc, sig=signal.SIGTERM, timeout=5.0):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def emulated(binary=None):
    """The binary (wave-bridged by default) is for another machine:
    scripts/cross-test runs it under qemu-user, whose timing, RSS and
    netlink support (NETLINK_SOCK_DIAG, which names a TCP peer's uid) are
    not the target's."""
    with open(binary or BRIDGE_BIN, 'rb') as f:
        header = f.read(20)
    machine = int.from_bytes(header[18:20], 'little')
    host = {'x86_64': 62, 'aarch64': 183, 'armv7l': 40, 'i686': 3}.get(platform.machine())
    return host is not None and machine != host


class Sim:
    """The real wave-sim on 127.0.0.1, port chosen by the kernel."""

    def __init__(self, streams=3, speed=1.0, api_key='wave_test_key', extra_args=(), seed=1):
        self.api_key = api_key
        self.args = [SIM_BIN, '--port', '0', '--streams', str(streams), '--speed', str(speed),
                     '--seed', str(seed), '--quiet']
        if api_key is None:
            self.args.append('--any-key')
        else:
            self.args += ['--api-key', api_key]
        self.args += list(extra_args)
        self.proc = None
        self.url = None
        self.streams = []
        self._stderr = None

    def __enter__(self):
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith(('ws://', 'wss://')):
            self.proc.kill()
            raise RuntimeError(f'wave-sim did not print its URL: {self.url!r} {self.log()}')
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                break
            if line.startswith('stream '):
                self.streams.append(line.split(' ', 1)[1])
        self.http = self.url.replace('wss://', 'https://').replace('ws://', 'http://')
        self.http = self.http.split('/v1/')[0]
        return self

    def __exit__(self, *exc):
        _stop(self.proc)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def log(self):
        if self._stderr is None:
            return ''
        self._stderr.seek(0)
        return self._stderr.read().decode(errors='replace')

    def _request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.http + path, data=data, method=method,
                                     headers={'Content-Type': 'application/json'})
        ctx = None
        if self.http.startswith('https://'):
            import ssl
            ctx = ssl._create_unverified_context()
        with urllib.request.urlopen(req, timeout=DEFAULT_TIMEOUT, context=ctx) as resp:
            return json.loads(resp.read().decode())

    def post(self, path, body=None):
        return self._request('POST', path, {} if body is None else body)

    def stats(self):
        return self._request('GET', '/sim/stats')

    def upstream_subscriptions(self, stream_id=None):
        subs = self.stats().get('subscriptions', [])
        return [s for s in subs if stream_id is None or s['stream_id'] == stream_id]


class PrivateBus:
    """A private dbus-daemon with the session configuration."""

    def __init__(self, config_file=None):
        self.config_file = config_file
        self.proc = None
        self.address = None

    def __enter__(self):
        args = ['dbus-daemon', '--nofork', '--print-address=1']
        args.append(f'--config-file={self.config_file}' if self.config_file else '--session')
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError('dbus-daemon did not print its address')
        return self

    def __exit__(self, *exc):
        _stop(self.proc)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    @property
    def env(self):
        return {'DBUS_SESSION_BUS_ADDRESS': self.address}

    def name_has_owner(self, name):
        # Ask the bus itself: `busctl status` also needs the owner's
        # credentials, which are not available in every container.
        out = subprocess.run(['busctl', f'--address={self.address}', 'call',
                              'org.freedesktop.DBus', '/org/freedesktop/DBus',
                              'org.freedesktop.DBus', 'NameHasOwner', 's', name],
                             capture_output=True, text=True)
        return out.returncode == 0 and out.stdout.strip() == 'b true'


class SocketClient:
    """One local client of the bridge's Unix socket, speaking JSON lines."""

    def __init__(self, path, timeout=DEFAULT_TIMEOUT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buffer = b''
        self.closed = False

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, message):
        self.send_raw(json.dumps(message).encode() + b'\n')

    def recv_line(self, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while b'\n' not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError('no line from the bridge within %.1fs' % timeout)
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                self.closed = True
                raise EOFError('the bridge closed the connection')
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b'\n', 1)
        return line

    def recv(self, timeout=DEFAULT_TIMEOUT):
        return json.loads(self.recv_line(timeout))

    def recv_type(self, type_name, timeout=DEFAULT_TIMEOUT, where=None):
        """Skips lines until one of type_name (and where(msg), if given)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f'no {type_name} within {timeout}s')
            message = self.recv(remaining)
            if message.get('type') == type_name and (where is None or where(message)):
                return message

    def request(self, message, reply_type, timeout=DEFAULT_TIMEOUT):
        self.send(message)
        return self.recv_type(reply_type, timeout)

    def is_closed_by_peer(self, timeout=DEFAULT_TIMEOUT):
        try:
            while True:
                self.recv_line(timeout)
        except EOFError:
            return True
        except (TimeoutError, socket.timeout):
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Bridge:
    """The real wave-bridged, configured through a real config file."""

    # A prefix for the command line, such as valgrind: WB_BRIDGE_WRAPPER
    # (split like a shell would), or the wrapper argument. Waits for it to
    # start and stop are this many times longer.
    WRAPPER_SLOWDOWN = 10

    def __init__(self, sim, bus=None, config=None, env=None, api_key=None, args=(),
                 wait_ready=True, wrapper=None):
        self.sim = sim
        self.bus = bus
        self.dir = tempfile.mkdtemp(prefix='wb-test-')
        os.chmod(self.dir, 0o755)
        self.socket_path = os.path.join(self.dir, 'wave.sock')
        self.key_path = os.path.join(self.dir, 'api-key')
        self.config_path = os.path.join(self.dir, 'wave-bridge.conf')
        self.extra_config = config or {}
        self.extra_env = env or {}
        self.api_key = api_key if api_key is not None else (sim.api_key if sim else 'k')
        self.args = list(args)
        self.wait_ready = wait_ready
        if wrapper is None:
            wrapper = shlex.split(os.environ.get('WB_BRIDGE_WRAPPER', ''))
        self.wrapper = list(wrapper)
        self.slowdown = self.WRAPPER_SLOWDOWN if self.wrapper else 1
        self.proc = None
        self._stderr = None

    def write_config(self, overrides=None):
        sections = {s: dict(v) for s, v in TEST_TIMINGS.items()}
        sections.setdefault('Upstream', {})['URL'] = self.sim.url if self.sim else 'ws://127.0.0.1:9/v1/streams'
        sections['Upstream']['APIKeyFile'] = self.key_path
        sections.setdefault('Socket', {})['Path'] = self.socket_path
        for source in (self.extra_config, overrides or {}):
            for section, values in source.items():
                sections.setdefault(section, {}).update(values)
        with open(self.config_path, 'w') as f:
            for section, values in sections.items():
                f.write(f'[{section}]\n')
                for key, value in values.items():
                    f.write(f'{key}={value}\n')

    def write_key(self, key):
        tmp = self.key_path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(key + '\n')
        os.chmod(tmp, 0o600)
        os.rename(tmp, self.key_path)

    @property
    def env(self):
        env = dict(os.environ)
        env.pop('WAVE_API_KEY', None)
        env.pop('NOTIFY_SOCKET', None)
        if self.bus:
            env.update(self.bus.env)
        env.update(self.extra_env)
        return env

    def __enter__(self):
        self.write_config()
        self.write_key(self.api_key)
        self.start()
        return self

    def start(self):
        bus = 'session' if self.bus else 'none'
        self._stderr = open(os.path.join(self.dir, 'daemon.log'), 'ab')
        # GLib writes debug and info to stdout, the rest to stderr: keep both.
        self.proc = subprocess.Popen(self.wrapper + [BRIDGE_BIN, f'--config={self.config_path}',
                                                     f'--bus={bus}'] + self.args,
                                     stdout=self._stderr, stderr=self._stderr, env=self.env)
        if self.wait_ready:
            wait_until(lambda: os.path.exists(self.socket_path) or self.proc.poll() is not None,
                       timeout=DEFAULT_TIMEOUT * self.slowdown, what='the bridge socket')
            if self.proc.poll() is not None:
                raise RuntimeError(f'wave-bridged exited with {self.proc.returncode}: {self.log()}')
            if self.bus:
                wait_until(lambda: self.bus.name_has_owner('inc.wave.Bridge1'),
                           timeout=DEFAULT_TIMEOUT * self.slowdown,
                           what='inc.wave.Bridge1 on the bus')

    def stop(self, sig=signal.SIGTERM):
        _stop(self.proc, sig, timeout=5.0 * self.slowdown)
        if self._stderr:
            self._stderr.close()
            self._stderr = None
        return self.proc.returncode if self.proc else None

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(os.path.join(self.dir, 'daemon.log'), 'rb') as f:
                return f.read().decode(errors='replace')
        except FileNotFoundError:
            return ''

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def connect(self, timeout=DEFAULT_TIMEOUT, read_hello=True):
        client = SocketClient(self.socket_path, timeout)
        if read_hello:
            hello = client.recv(timeout)
            assert hello['type'] == 'bridge.hello', hello
            client.hello = hello
        return client

    def status(self):
        with self.connect() as client:
            return client.request({'type': 'status'}, 'bridge.status')['payload']

    def sanitized(self):
        """Built with AddressSanitizer: its quarantine keeps freed memory,
        so RSS says nothing about what the bridge holds."""
        with open(f'/proc/{self.proc.pid}/maps') as maps:
            return 'libasan' in maps.read()

    def rss_kib(self):
        with open(f'/proc/{self.proc.pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
        return 0
