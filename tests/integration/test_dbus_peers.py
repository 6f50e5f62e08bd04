# SPDX-License-Identifier: MIT
"""New D-Bus callers cost the bridge no synchronous bus round trip (issue 12).

wave-bridged reaches its private dbus-daemon through a byte-forwarding
Unix-socket proxy that can hold what the bridge writes to the bus. While the
bridge's question about a new caller ("who is this?") sits in the proxy, the
bridge must keep answering its socket clients, must answer that caller's
calls in order once the bus replies, and must forget a caller that left in
the meantime. Clients talk to the real bus directly; only the bridge's own
connection goes through the proxy.
"""

import os
import select
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import gi

gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

from wbtest import Bridge, PrivateBus, Sim, wait_until  # noqa: E402

BUS_NAME = 'inc.wave.Bridge1'
MANAGER_PATH = '/inc/wave/Bridge1'
MANAGER_IFACE = 'inc.wave.Bridge1'
TIMEOUT = 15.0
# sd-bus waits this long for a synchronous reply: a bridge that asked the
# bus synchronously would not answer a ping for this long.
SD_BUS_CALL_TIMEOUT = 25.0
MAX_WAITING_CALLS = 32  # WB_DBUS_MAX_WAITING_CALLS in daemon/dbus-client.c
MAX_WAITING_BYTES = 256 * 1024  # WB_DBUS_MAX_WAITING_BYTES in daemon/dbus-client.c
MAX_WAITING_BYTES_TOTAL = 16 * 1024 * 1024  # WB_DBUS_MAX_WAITING_BYTES_TOTAL
NOBODY = 65534
# A system-style bus that lets anyone call anything: what the daemon itself
# refuses is all that is refused.
OPEN_BUS_CONFIG = '''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
'''
RELOAD_CLIENT = r'''
import sys
import gi
gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib
flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
         | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
conn = Gio.DBusConnection.new_for_address_sync(sys.argv[1], flags, None, None)
try:
    conn.call_sync('inc.wave.Bridge1', '/inc/wave/Bridge1', 'inc.wave.Bridge1', 'Reload', None,
                   None, Gio.DBusCallFlags.NONE, 15000, None)
    print('ok')
except GLib.Error as e:
    print(Gio.DBusError.get_remote_error(e), e.message)
'''


def bus_socket_address(address):
    """The socket address of a unix: D-Bus address (path or abstract)."""
    for part in address.split(';')[0].split(':', 1)[1].split(','):
        key, _, value = part.partition('=')
        if key == 'path':
            return value
        if key == 'abstract':
            return '\0' + value
    raise ValueError(f'no unix socket in {address}')


class BusProxy:
    """Forwards bytes between one client (the bridge) and the bus; can hold
    what the client writes to the bus (the bus then seems stalled to it).
    Later connections (GIO's own, to a system bus) are forwarded as they are."""

    def __init__(self, bus_address):
        self.target = bus_socket_address(bus_address)
        self.dir = tempfile.mkdtemp(prefix='wb-busproxy-')
        self.path = os.path.join(self.dir, 'bus')
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.lock = threading.Lock()
        self.holding = False
        self.held = bytearray()      # client → bus, not yet forwarded
        self.to_client = bytearray()  # everything the bus sent the client
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f'unix:path={self.path}'

    def hold(self):
        with self.lock:
            self.holding = True

    def release(self):
        with self.lock:
            self.holding = False

    def held_bytes(self):
        with self.lock:
            return bytes(self.held)

    def bytes_to_client(self):
        with self.lock:
            return bytes(self.to_client)

    def _run(self):
        client, _ = self.listener.accept()
        bus = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bus.connect(self.target)
        threading.Thread(target=self._accept_others, daemon=True).start()
        try:
            self._forward(client, bus)
        except OSError:
            pass  # either side went away: the test is ending
        client.close()
        bus.close()

    def _accept_others(self):
        while not self.stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed: the test is ending
            bus = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            bus.connect(self.target)
            threading.Thread(target=self._pass, args=(client, bus), daemon=True).start()

    def _pass(self, client, bus):
        try:
            while not self.stop:
                readable, _, _ = select.select([client, bus], [], [], 0.1)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        raise OSError('closed')
                    (bus if source is client else client).sendall(data)
        except OSError:
            pass
        client.close()
        bus.close()

    def _forward(self, client, bus):
        while not self.stop:
            readable, _, _ = select.select([client, bus], [], [], 0.02)
            with self.lock:
                if self.held and not self.holding:
                    bus.sendall(self.held)
                    self.held.clear()
            if client in readable:
                data = client.recv(65536)
                if not data:
                    break
                with self.lock:
                    if self.holding or self.held:
                        self.held += data
                    else:
                        bus.sendall(data)
            if bus in readable:
                data = bus.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.to_client += data
                client.sendall(data)

    def close(self):
        self.stop = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(timeout=5)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.rmdir(self.dir)


class Caller:
    """One bus connection making asynchronous calls, answers in arrival order."""

    def __init__(self, address):
        flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
                 | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
        self.conn = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
        self.answers = []  # (tag, 'ok', value) or (tag, 'error', D-Bus error name)

    def call(self, tag, method, signature, args):
        def done(conn, result, _data):
            try:
                reply = conn.call_finish(result)
                self.answers.append((tag, 'ok', reply.unpack()))
            except GLib.Error as e:
                self.answers.append((tag, 'error', Gio.DBusError.get_remote_error(e)))

        self.conn.call(BUS_NAME, MANAGER_PATH, MANAGER_IFACE, method,
                       GLib.Variant(f'({signature})', tuple(args)), None,
                       Gio.DBusCallFlags.NONE, int(60 * 1000), None, done, None)
        self.conn.flush_sync(None)

    def close(self):
        self.conn.close_sync(None)


def pump(seconds=0.0):
    context = GLib.MainContext.default()
    deadline = time.monotonic() + seconds
    while True:
        while context.iteration(False):
            pass
        if time.monotonic() >= deadline:
            return
        time.sleep(0.01)


class TestNewCallersWithAStalledBus(unittest.TestCase):

    def setUp(self):
        self.sim = Sim(streams=2, speed=1).__enter__()
        self.bus = PrivateBus().__enter__()
        self.proxy = BusProxy(self.bus.address)
        self.bridge = Bridge(self.sim, bus=self.bus, env={
            'DBUS_SESSION_BUS_ADDRESS': self.proxy.address,
        }).__enter__()
        self.callers = []

    def tearDown(self):
        alive = self.bridge.proc.poll() is None
        log = self.bridge.log()
        self.proxy.release()
        for c in self.callers:
            c.close()
        self.bridge.__exit__(None, None, None)
        self.proxy.close()
        self.bus.__exit__(None, None, None)
        self.sim.__exit__(None, None, None)
        self.assertTrue(alive, f'wave-bridged died: {log}')

    def caller(self):
        c = Caller(self.bus.address)
        self.callers.append(c)
        return c

    def wait_delivered_to_bridge(self, method, count=1):
        """Until the bus has handed the bridge @count calls of @method."""
        wait_until(lambda: self.proxy.bytes_to_client().count(method.encode()) >= count,
                   timeout=TIMEOUT, what=f'{count} {method} delivered to the bridge')

    def test_socket_clients_answered_while_the_bus_holds_a_new_callers_credentials(self):
        socket_client = self.bridge.connect()
        caller = self.caller()
        self.proxy.hold()
        caller.call('subscribe', 'Subscribe', 'sas', ('stream-a', []))
        self.wait_delivered_to_bridge('Subscribe')

        # The bridge asks the bus who the caller is, and that question is
        # stuck in the proxy; the loop must go on.
        wait_until(lambda: b'GetConnectionCredentials' in self.proxy.held_bytes(),
                   timeout=TIMEOUT, what='the credentials question written to the bus')
        start = time.monotonic()
        pong = socket_client.request({'type': 'ping'}, 'pong', timeout=SD_BUS_CALL_TIMEOUT / 5)
        self.assertLess(time.monotonic() - start, SD_BUS_CALL_TIMEOUT / 5, pong)
        status = socket_client.request({'type': 'status'}, 'bridge.status')['payload']
        self.assertEqual(status['streams_total'], 0, status)  # not subscribed yet
        pump(0.3)
        self.assertEqual(caller.answers, [], 'answered before the bus said who it is')

        self.proxy.release()
        wait_until(lambda: (pump(), caller.answers)[1], timeout=TIMEOUT,
                   what='the Subscribe answer')
        self.assertEqual(caller.answers,
                         [('subscribe', 'ok', ('/inc/wave/Bridge1/stream/stream_2da',))])
        wait_until(lambda: self.sim.upstream_subscriptions('stream-a'), timeout=TIMEOUT,
                   what='stream-a subscribed upstream')
        socket_client.close()

    def test_calls_of_a_new_caller_run_in_order_after_its_credentials(self):
        caller = self.caller()
        self.proxy.hold()
        caller.call(1, 'Subscribe', 'sas', ('stream-a', []))
        caller.call(2, 'Unsubscribe', 's', ('stream-a',))
        caller.call(3, 'Subscribe', 'sas', ('stream-b', ['chat.message']))
        caller.call(4, 'Unsubscribe', 's', ('stream-c',))
        self.wait_delivered_to_bridge('Unsubscribe', 2)
        self.proxy.release()
        wait_until(lambda: (pump(), len(caller.answers) == 4)[1], timeout=TIMEOUT,
                   what='four answers')
        # Out of order, the first Unsubscribe would have found nothing.
        self.assertEqual([a[:2] for a in caller.answers],
                         [(1, 'ok'), (2, 'ok'), (3, 'ok'), (4, 'error')], caller.answers)
        self.assertEqual(caller.answers[3][2], 'inc.wave.Bridge1.Error.NotSubscribed')
        wait_until(lambda: self.sim.upstream_subscriptions('stream-b'), timeout=TIMEOUT,
                   what='stream-b subscribed upstream')
        self.assertEqual(self.sim.upstream_subscriptions('stream-a'), [])

    def test_a_caller_that_leaves_before_its_credentials_is_forgotten(self):
        stayer = self.caller()
        leaver = Caller(self.bus.address)
        self.proxy.hold()
        leaver.call('subscribe', 'Subscribe', 'sas', ('stream-gone', []))
        stayer.call('subscribe', 'Subscribe', 'sas', ('stream-kept', []))
        self.wait_delivered_to_bridge('Subscribe', 2)
        leaver.close()
        # The bus tells the bridge (that direction is open) that it left.
        wait_until(lambda: b'NameOwnerChanged' in self.proxy.bytes_to_client(),
                   timeout=TIMEOUT, what='NameOwnerChanged delivered to the bridge')
        self.proxy.release()
        wait_until(lambda: (pump(), stayer.answers)[1], timeout=TIMEOUT,
                   what='the stayer answered')
        self.assertEqual(stayer.answers[0][1], 'ok', stayer.answers)
        wait_until(lambda: self.sim.upstream_subscriptions('stream-kept'), timeout=TIMEOUT,
                   what='stream-kept subscribed upstream')
        time.sleep(0.5)
        self.assertEqual(self.sim.upstream_subscriptions('stream-gone'), [])
        # The stayer is the only client: nothing of the leaver lingers.
        self.assertEqual(self.bridge.status()['clients'] - 1, 1, self.bridge.log())

    def test_calls_waiting_for_credentials_are_bounded(self):
        caller = self.caller()
        self.proxy.hold()
        total = MAX_WAITING_CALLS + 8
        caller.call(0, 'Subscribe', 'sas', ('stream-a', []))
        for i in range(1, total):
            caller.call(i, 'Unsubscribe', 's', (f'never-{i}',))
        self.wait_delivered_to_bridge('Unsubscribe', total - 1)
        self.proxy.release()
        wait_until(lambda: (pump(), len(caller.answers) == total)[1], timeout=TIMEOUT,
                   what=f'{total} answers')
        outcome = {tag: (kind, value) for tag, kind, value in caller.answers}
        self.assertEqual(outcome[0][0], 'ok', caller.answers)
        # The first MAX_WAITING_CALLS waited and ran; the rest were refused.
        for i in range(1, total):
            expected = ('inc.wave.Bridge1.Error.NotSubscribed' if i < MAX_WAITING_CALLS
                        else 'inc.wave.Bridge1.Error.LimitsExceeded')
            self.assertEqual(outcome[i], ('error', expected), (i, caller.answers))

    def test_bytes_waiting_for_credentials_are_bounded(self):
        """32 calls of a few MiB each are 100 MiB or more held for one caller
        (a system bus message may be 32 MiB): the bytes are bounded too."""
        caller = self.caller()
        self.proxy.hold()
        big = 'x' * (MAX_WAITING_BYTES // 4)  # far over the 4096 bytes of a message
        caller.call(0, 'Subscribe', 'sas', ('stream-a', []))
        for i in range(1, 9):
            caller.call(i, 'SendChatMessage', 'ss', ('stream-a', big))
        # Small calls still fit after the refused big ones.
        caller.call(9, 'Unsubscribe', 's', ('stream-a',))
        self.wait_delivered_to_bridge('Unsubscribe')
        self.proxy.release()
        wait_until(lambda: (pump(), len(caller.answers) == 10)[1], timeout=TIMEOUT,
                   what='ten answers')
        outcome = {tag: (kind, value) for tag, kind, value in caller.answers}
        self.assertEqual(outcome[0][0], 'ok', caller.answers)
        # Three fit beside the Subscribe (and fail when they run: too long);
        # the fourth would pass the bound and is refused at once.
        for i in range(1, 4):
            self.assertEqual(outcome[i], ('error', 'inc.wave.Bridge1.Error.InvalidArgument'), i)
        for i in range(4, 9):
            self.assertEqual(outcome[i], ('error', 'inc.wave.Bridge1.Error.LimitsExceeded'), i)
        self.assertEqual(outcome[9], ('ok', ()), caller.answers)

    def test_bytes_waiting_for_credentials_are_bounded_in_all(self):
        """Each caller within its own bound, many callers together are bounded
        too (MaxClients times the caller's bound would be 256 MiB)."""
        text = 'x' * (250 * 1024)
        fit = MAX_WAITING_BYTES_TOTAL // len(text)  # a little less: paths, ids
        callers = [self.caller() for _ in range(fit + 5)]
        self.proxy.hold()
        for c in callers:
            c.call('big', 'SendChatMessage', 'ss', ('stream-a', text))
        self.wait_delivered_to_bridge('SendChatMessage', len(callers))
        self.proxy.release()
        wait_until(lambda: (pump(), all(c.answers for c in callers))[1], timeout=TIMEOUT,
                   what='every caller answered')
        outcome = [c.answers[0][2] for c in callers]
        # Those that waited ran and failed (too long for a chat message).
        self.assertGreaterEqual(outcome.count('inc.wave.Bridge1.Error.InvalidArgument'), fit - 2)
        self.assertGreaterEqual(outcome.count('inc.wave.Bridge1.Error.LimitsExceeded'), 5)
        self.assertEqual(len(outcome), outcome.count('inc.wave.Bridge1.Error.InvalidArgument')
                         + outcome.count('inc.wave.Bridge1.Error.LimitsExceeded'), outcome)
        # Nothing stays counted: a new caller still gets in.
        late = self.caller()
        late.call('late', 'Subscribe', 'sas', ('stream-a', []))
        wait_until(lambda: (pump(), late.answers)[1], timeout=TIMEOUT, what='the late answer')
        self.assertEqual(late.answers[0][:2], ('late', 'ok'), late.answers)

    def test_a_bus_too_slow_to_answer_is_no_refusal(self):
        """sd-bus gives up on the credentials question after its method call
        timeout (25 s; SYSTEMD_BUS_TIMEOUT here): the caller is told to try
        again, not that it is denied, and its next call asks again."""
        self.bridge.__exit__(None, None, None)
        self.proxy.close()
        self.proxy = BusProxy(self.bus.address)
        self.bridge = Bridge(self.sim, bus=self.bus, env={
            'DBUS_SESSION_BUS_ADDRESS': self.proxy.address,
            'SYSTEMD_BUS_TIMEOUT': '1',
        }).__enter__()
        caller = self.caller()
        self.proxy.hold()
        caller.call(0, 'Subscribe', 'sas', ('stream-a', []))
        caller.call(1, 'Unsubscribe', 's', ('stream-a',))
        self.wait_delivered_to_bridge('Unsubscribe')
        time.sleep(2)  # past the timeout
        self.proxy.release()
        wait_until(lambda: (pump(), len(caller.answers) == 2)[1], timeout=TIMEOUT,
                   what='two answers')
        self.assertEqual(caller.answers, [(0, 'error', 'org.freedesktop.DBus.Error.Timeout'),
                                          (1, 'error', 'org.freedesktop.DBus.Error.Timeout')])
        caller.call(2, 'Subscribe', 'sas', ('stream-a', []))
        wait_until(lambda: (pump(), len(caller.answers) == 3)[1], timeout=TIMEOUT,
                   what='the third answer')
        self.assertEqual(caller.answers[2][:2], (2, 'ok'), caller.answers)


class TestReloadWithAStalledSystemBus(unittest.TestCase):
    """On a system bus sd-bus checks an unprivileged-less method's caller
    itself, with a synchronous GetConnectionCredentials: Reload() must not."""

    def setUp(self):
        self.sim = Sim(streams=1, speed=1).__enter__()
        self.bus = PrivateBus().__enter__()
        self.proxy = BusProxy(self.bus.address)
        # sd_bus_open_system() and GIO's system bus both read this.
        self.bridge = Bridge(self.sim, bus=self.bus, args=['--bus=system'], env={
            'DBUS_SYSTEM_BUS_ADDRESS': self.proxy.address,
        }).__enter__()
        self.caller = Caller(self.bus.address)

    def tearDown(self):
        alive = self.bridge.proc.poll() is None
        log = self.bridge.log()
        self.proxy.release()
        self.caller.close()
        self.bridge.__exit__(None, None, None)
        self.proxy.close()
        self.bus.__exit__(None, None, None)
        self.sim.__exit__(None, None, None)
        self.assertTrue(alive, f'wave-bridged died: {log}')

    def test_reload_does_not_block_the_loop(self):
        socket_client = self.bridge.connect()
        self.assertIn('on the system bus', self.bridge.log())
        self.proxy.hold()
        self.caller.call('reload', 'Reload', '', ())
        wait_until(lambda: b'Reload' in self.proxy.bytes_to_client(), timeout=TIMEOUT,
                   what='Reload delivered to the bridge')
        time.sleep(0.3)  # the bridge reads it and asks the bus about the caller
        start = time.monotonic()
        pong = socket_client.request({'type': 'ping'}, 'pong', timeout=SD_BUS_CALL_TIMEOUT / 5)
        self.assertLess(time.monotonic() - start, SD_BUS_CALL_TIMEOUT / 5, pong)
        pump(0.3)
        self.assertEqual(self.caller.answers, [], 'answered before the bus said who it is')
        self.proxy.release()
        wait_until(lambda: (pump(), self.caller.answers)[1], timeout=TIMEOUT,
                   what='the Reload answer')
        # The caller is this test's user, the daemon's own: allowed.
        self.assertEqual(self.caller.answers, [('reload', 'ok', ())])
        wait_until(lambda: 'Reload() over D-Bus' in self.bridge.log(), timeout=TIMEOUT,
                   what='the reload')
        socket_client.close()

    def test_reload_with_a_bus_too_slow_to_answer(self):
        self.bridge.__exit__(None, None, None)
        self.proxy.close()
        self.proxy = BusProxy(self.bus.address)
        self.bridge = Bridge(self.sim, bus=self.bus, args=['--bus=system'], env={
            'DBUS_SYSTEM_BUS_ADDRESS': self.proxy.address,
            'SYSTEMD_BUS_TIMEOUT': '1',
        }).__enter__()
        self.proxy.hold()
        self.caller.call('reload', 'Reload', '', ())
        wait_until(lambda: b'Reload' in self.proxy.bytes_to_client(), timeout=TIMEOUT,
                   what='Reload delivered to the bridge')
        time.sleep(2)  # past the timeout
        self.proxy.release()
        wait_until(lambda: (pump(), self.caller.answers)[1], timeout=TIMEOUT,
                   what='the Reload answer')
        self.assertEqual(self.caller.answers,
                         [('reload', 'error', 'org.freedesktop.DBus.Error.Timeout')])
        self.assertNotIn('Reload() over D-Bus', self.bridge.log())


class TestReloadRefusedToOtherUsers(unittest.TestCase):
    """Reload() is root's and the daemon's own user's, whatever the bus policy
    lets through: the daemon asks the bus who the caller is."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest('needs root to call as nobody')
        self.dir = tempfile.mkdtemp(prefix='wb-reload-')
        os.chmod(self.dir, 0o755)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def reload_as(self, address, uid):
        out = subprocess.run([sys.executable, '-c', RELOAD_CLIENT, address], user=uid, group=uid,
                             capture_output=True, text=True, timeout=30,
                             env={'PATH': os.environ.get('PATH', '/usr/bin:/bin')})
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout.strip()

    def test_reload_refused_to_nobody(self):
        socket_path = os.path.join(self.dir, 'system_bus_socket')
        config_path = os.path.join(self.dir, 'system.conf')
        with open(config_path, 'w') as f:
            f.write(OPEN_BUS_CONFIG.format(socket=socket_path))
        with Sim(streams=1) as sim, PrivateBus(config_file=config_path) as bus:
            os.chmod(socket_path, 0o777)
            with Bridge(sim, bus=bus, args=['--bus=system'],
                        env={'DBUS_SYSTEM_BUS_ADDRESS': bus.address}) as bridge:
                answer = self.reload_as(bus.address, NOBODY)
                self.assertTrue(answer.startswith('org.freedesktop.DBus.Error.AccessDenied'),
                                answer)
                self.assertNotIn('Reload requested', bridge.log())
                self.assertEqual(self.reload_as(bus.address, 0), 'ok')
                wait_until(lambda: 'Reload() over D-Bus' in bridge.log(), timeout=TIMEOUT,
                           what='the reload')


class TestStoppedBusDaemon(unittest.TestCase):
    """A dbus-daemon that stops reading (SIGSTOP) during a flood: the bridge
    keeps at most WB_DBUS_MAX_QUEUED_MESSAGES signals for it (and the kernel
    what the socket buffer holds), counts the rest in EventsDropped, and its
    socket clients miss nothing. Every event is either a signal a watcher
    gets once the bus reads again, or counted."""

    FLOOD = 60000
    # 4096 queued signals are about 5 MiB; the whole flood queued (as sd-bus
    # alone allows, up to 384 Ki messages) is over 70 MiB.
    MAX_GROWTH_KIB = 40 * 1024

    def test_stopped_bus_daemon_costs_a_bounded_queue(self):
        limits = {'ClientQueueBytes': '67108864', 'MaxQueuedBytesPerUser': '134217728'}
        with Sim(streams=1, speed=1) as sim, PrivateBus() as bus, \
                Bridge(sim, bus=bus, config={'Limits': limits}) as bridge:
            watcher = Caller(bus.address)
            signals = []
            watcher.conn.signal_subscribe(BUS_NAME, 'inc.wave.Bridge1.Stream', 'ChatMessage',
                                          None, None, Gio.DBusSignalFlags.NONE,
                                          lambda *args: signals.append(args[-1]))
            client = bridge.connect()
            client.request({'type': 'subscribe', 'stream_id': 'flood-s'}, 'subscribed')
            wait_until(lambda: sim.upstream_subscriptions('flood-s'), timeout=TIMEOUT,
                       what='flood-s subscribed upstream')
            pump(0.2)
            rss_before = bridge.rss_kib()
            os.kill(bus.proc.pid, signal.SIGSTOP)
            try:
                sim.post('/sim/flood', {'stream_id': 'flood-s', 'type': 'chat.message',
                                        'rate': 20000, 'count': self.FLOOD, 'size': 300})
                received = 0
                peak_rss = rss_before
                deadline = time.monotonic() + 60
                buffer = b''
                while received < self.FLOOD and time.monotonic() < deadline:
                    client.sock.settimeout(5)
                    chunk = client.sock.recv(1 << 20)
                    if not chunk:
                        break
                    buffer += chunk
                    lines = buffer.split(b'\n')
                    buffer = lines.pop()
                    received += sum(1 for line in lines if b'"chat.message"' in line)
                    self.assertFalse(any(b'"bridge.dropped"' in line for line in lines))
                    peak_rss = max(peak_rss, bridge.rss_kib())
                # The socket client is not held back by the stopped bus.
                self.assertEqual(received, self.FLOOD)
                peak_rss = max(peak_rss, bridge.rss_kib())
                if not bridge.sanitized():
                    self.assertLess(peak_rss - rss_before, self.MAX_GROWTH_KIB,
                                    f'RSS {rss_before} -> {peak_rss} KiB')
                dropped = client.request({'type': 'status'}, 'bridge.status')['payload'][
                    'events_dropped']
                self.assertGreater(dropped, self.FLOOD // 2)
            finally:
                os.kill(bus.proc.pid, signal.SIGCONT)

            # The bus reads again: what was queued arrives, the rest was counted.
            def settled():
                before = len(signals)
                pump(0.5)
                return len(signals) == before and len(signals) > 0
            wait_until(settled, timeout=TIMEOUT * 2, what='the queued signals delivered')
            self.assertIsNone(bridge.proc.poll(), bridge.log())
            self.assertTrue(bus.name_has_owner(BUS_NAME))
            self.assertEqual(len(signals) + dropped, self.FLOOD,
                             f'{len(signals)} signals, {dropped} dropped')
            reply = watcher.conn.call_sync(
                BUS_NAME, MANAGER_PATH, 'org.freedesktop.DBus.Properties', 'Get',
                GLib.Variant('(ss)', (MANAGER_IFACE, 'EventsDropped')), None,
                Gio.DBusCallFlags.NONE, 15000, None)
            self.assertEqual(reply.unpack()[0], dropped)
            watcher.close()
            client.close()


if __name__ == '__main__':
    unittest.main()
