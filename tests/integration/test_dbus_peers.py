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
import socket
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
    what the client writes to the bus (the bus then seems stalled to it)."""

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
        try:
            self._forward(client, bus)
        except OSError:
            pass  # either side went away: the test is ending
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


if __name__ == '__main__':
    unittest.main()
