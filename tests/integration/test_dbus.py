# SPDX-License-Identifier: MIT
"""The D-Bus frontend against the real wave-bridged, wave-sim and a private
dbus-daemon, driven with Gio (python3-gi) and busctl the way users do.

The policy test (TestPolicy) needs root: it starts a private *system-style*
dbus-daemon that includes dbus/inc.wave.Bridge1.conf, runs the bridge on it
as root (--bus=system) and calls it as uid nobody, with and without the
groups the policy names. If the groups "wave" / "wave-chat" do not exist it
creates them with groupadd for the test and deletes them afterwards.
"""

import grp
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

import gi

gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

from wbtest import BRIDGE_BIN, SOURCE_DIR, Bridge, PrivateBus, Sim, wait_until  # noqa: E402

BUS_NAME = 'inc.wave.Bridge1'
MANAGER_PATH = '/inc/wave/Bridge1'
MANAGER_IFACE = 'inc.wave.Bridge1'
STREAM_IFACE = 'inc.wave.Bridge1.Stream'
PROPS_IFACE = 'org.freedesktop.DBus.Properties'
OM_IFACE = 'org.freedesktop.DBus.ObjectManager'
ERROR_PREFIX = 'inc.wave.Bridge1.Error.'
XML_PATH = os.path.join(SOURCE_DIR, 'dbus', 'inc.wave.Bridge1.xml')
CONF_PATH = os.path.join(SOURCE_DIR, 'dbus', 'inc.wave.Bridge1.conf')
TIMEOUT = 15.0
NOBODY = 65534


def stream_path(stream_id):
    """sd_bus_path_encode(): every byte but [A-Za-z0-9] becomes _XX."""
    out = []
    for byte in stream_id.encode():
        c = chr(byte)
        out.append(c if c.isascii() and c.isalnum() else '_%02x' % byte)
    return MANAGER_PATH + '/stream/' + ''.join(out)


def project_version():
    with open(os.path.join(SOURCE_DIR, 'meson.build')) as f:
        return re.search(r"version:\s*'([^']+)'", f.read()).group(1)


class Signal:
    def __init__(self, sender, path, iface, member, params):
        self.sender, self.path, self.iface, self.member = sender, path, iface, member
        self.params = params
        self.args = params.unpack()
        self.signature = params.get_type_string()

    def __repr__(self):
        return f'<{self.iface}.{self.member} {self.path} {self.signature} {self.args}>'


class BusClient:
    """One connection to the bus (so one unique name), collecting every
    signal the bridge broadcasts."""

    def __init__(self, address):
        flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
                 | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
        self.conn = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
        self.signals = []
        self.conn.signal_subscribe(BUS_NAME, None, None, None, None,
                                   Gio.DBusSignalFlags.NONE, self._on_signal)

    def _on_signal(self, conn, sender, path, iface, member, params):
        self.signals.append(Signal(sender, path, iface, member, params))

    @property
    def unique_name(self):
        return self.conn.get_unique_name()

    def call(self, method, signature=None, args=(), path=MANAGER_PATH, iface=MANAGER_IFACE,
             timeout=TIMEOUT):
        params = GLib.Variant(f'({signature})', tuple(args)) if signature else None
        reply = self.conn.call_sync(BUS_NAME, path, iface, method, params, None,
                                    Gio.DBusCallFlags.NONE, int(timeout * 1000), None)
        return reply.unpack() if reply is not None else None

    def call_error(self, method, signature=None, args=(), **kwargs):
        """The D-Bus error name the call fails with (fails the test if it succeeds)."""
        try:
            self.call(method, signature, args, **kwargs)
        except GLib.Error as e:
            return Gio.DBusError.get_remote_error(e), e.message
        raise AssertionError(f'{method}{args} succeeded, expected an error')

    def get_all(self, path=MANAGER_PATH, iface=MANAGER_IFACE):
        """Properties with their D-Bus type: {name: (type, value)}."""
        reply = self.conn.call_sync(BUS_NAME, path, PROPS_IFACE, 'GetAll',
                                    GLib.Variant('(s)', (iface,)), None,
                                    Gio.DBusCallFlags.NONE, int(TIMEOUT * 1000), None)
        props = reply.get_child_value(0)
        result = {}
        for i in range(props.n_children()):
            entry = props.get_child_value(i)
            name = entry.get_child_value(0).get_string()
            value = entry.get_child_value(1).get_variant()
            result[name] = (value.get_type_string(), value.unpack())
        return result

    def get(self, name, path=MANAGER_PATH, iface=MANAGER_IFACE):
        return self.call('Get', 'ss', (iface, name), path=path, iface=PROPS_IFACE)[0]

    def pump(self, seconds=0.0):
        context = GLib.MainContext.default()
        deadline = time.monotonic() + seconds
        while True:
            while context.iteration(False):
                pass
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)

    def wait_signal(self, member, path=None, where=None, timeout=TIMEOUT, start=0):
        """The first signal at index >= start matching member/path/where."""
        def find():
            self.pump()
            for s in self.signals[start:]:
                if s.member == member and (path is None or s.path == path) \
                        and (where is None or where(s)):
                    return s
            return None
        return wait_until(find, timeout=timeout, what=f'signal {member} on {path}')

    def wait_property(self, name, expected, path=MANAGER_PATH, iface=MANAGER_IFACE,
                      timeout=TIMEOUT):
        def check():
            self.pump()
            value = self.get(name, path, iface)
            return value == expected if not callable(expected) else expected(value)
        wait_until(check, timeout=timeout, what=f'{name} == {expected}')
        return self.get(name, path, iface)

    def close(self):
        self.conn.close_sync(None)


def parse_interfaces(xml_text, names):
    """{iface: {'methods': {...}, 'signals': {...}, 'properties': {...}}} for names,
    ignoring annotations and documentation."""
    root = ET.fromstring(xml_text)
    result = {}
    for iface in root.findall('interface'):
        name = iface.get('name')
        if name not in names:
            continue
        methods = {}
        for m in iface.findall('method'):
            methods[m.get('name')] = [(a.get('name'), a.get('type'), a.get('direction', 'in'))
                                      for a in m.findall('arg')]
        signals = {}
        for s in iface.findall('signal'):
            signals[s.get('name')] = [(a.get('name'), a.get('type')) for a in s.findall('arg')]
        properties = {p.get('name'): (p.get('type'), p.get('access'))
                      for p in iface.findall('property')}
        result[name] = {'methods': methods, 'signals': signals, 'properties': properties}
    return result


# Exact payloads for /sim/emit and what they must become on the bus.
EVENTS = [
    ('stream.started',
     {'started_at': '2025-03-04T05:06:07Z', 'protocol': 'srt',
      'ingest_endpoint': 'srt://ingest.example:9000/live'},
     'Started', '(sss)', ('2025-03-04T05:06:07Z', 'srt', 'srt://ingest.example:9000/live')),
    ('stream.health',
     {'bitrate': 4500.5, 'fps': 29.97, 'packet_loss': 0.0125, 'latency': 42},
     'Health', '(dddd)', (4500.5, 29.97, 0.0125, 42.0)),
    ('viewer.joined',
     {'viewer_id': 'viewer_q1', 'country': 'NL', 'device': 'tv',
      'joined_at': '2025-03-04T05:07:00Z'},
     'ViewerJoined', '(ssss)', ('viewer_q1', 'NL', 'tv', '2025-03-04T05:07:00Z')),
    ('viewer.left',
     {'viewer_id': 'viewer_q1', 'watch_time': 12.5, 'left_at': '2025-03-04T05:07:12Z'},
     'ViewerLeft', '(sds)', ('viewer_q1', 12.5, '2025-03-04T05:07:12Z')),
    ('analytics.update',
     {'concurrent_viewers': 123, 'total_views': 5000000000, 'peak_viewers': 456,
      'average_watch_time': 77.25},
     'AnalyticsUpdate', '(utud)', (123, 5000000000, 456, 77.25)),
    ('chat.message',
     {'message_id': 'msg_1', 'user_id': 'user_7', 'username': 'ana',
      'message': 'héllo ✓ "quoted"', 'timestamp': '2025-03-04T05:08:00Z'},
     'ChatMessage', '(sssss)',
     ('msg_1', 'user_7', 'ana', 'héllo ✓ "quoted"', '2025-03-04T05:08:00Z')),
    ('reaction.received',
     {'reaction': '🔥', 'count': 7, 'timestamp': '2025-03-04T05:09:00Z'},
     'ReactionReceived', '(sus)', ('🔥', 7, '2025-03-04T05:09:00Z')),
    ('stream.ended',
     {'ended_at': '2025-03-04T06:06:07Z', 'duration': 3600.5, 'recording_id': 'rec_42'},
     'Ended', '(sds)', ('2025-03-04T06:06:07Z', 3600.5, 'rec_42')),
]

MANAGER_TYPES = {
    'State': 's', 'StateSince': 't', 'UpstreamURL': 's', 'UpstreamRTT': 't',
    'ConnectedSince': 't', 'NextAttempt': 't', 'Reconnects': 'u', 'LastCloseCode': 'q',
    'LastCloseReason': 's', 'LastError': 's', 'HeldSends': 'u', 'InvalidMessages': 't',
    'Clients': 'u', 'EventsReceived': 't', 'EventsDelivered': 't', 'EventsDropped': 't',
    'Version': 's',
}

SUBSCRIBER_SCRIPT = r'''
import sys
import gi
gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib
flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
         | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
conn = Gio.DBusConnection.new_for_address_sync(sys.argv[1], flags, None, None)
conn.call_sync('inc.wave.Bridge1', '/inc/wave/Bridge1', 'inc.wave.Bridge1', 'Subscribe',
               GLib.Variant('(sas)', (sys.argv[2], ['stream.health'])), None,
               Gio.DBusCallFlags.NONE, 15000, None)
print(conn.get_unique_name(), flush=True)
sys.stdin.readline()
'''


class BridgeBusFixture(unittest.TestCase):
    """One sim, bus and bridge for the non-destructive tests. Each test uses
    its own connection (own unique name) and its own stream ids, which
    wave-sim accepts and feeds only through /sim/emit. The send allowance is
    per user, shared by all of them: generous here, tested in TestRateLimit."""

    bridge_limits = {'ChatPerMinute': '100', 'ReactionsPerMinute': '100'}

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim(streams=2, speed=1).__enter__()
        cls.bus = PrivateBus().__enter__()
        cls.bridge = Bridge(cls.sim, bus=cls.bus, config={
            'Limits': cls.bridge_limits,
        }).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.bridge.__exit__(None, None, None)
        cls.bus.__exit__(None, None, None)
        cls.sim.__exit__(None, None, None)

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        if self.bridge.proc.poll() is not None:
            self.fail(f'wave-bridged died: {self.bridge.log()}')

    def client(self):
        c = BusClient(self.bus.address)
        self.clients.append(c)
        return c

    def emit(self, type_name, stream_id, payload):
        body = dict(payload)
        body['stream_id'] = stream_id
        reply = self.sim.post('/sim/emit', {'type': type_name, 'payload': body})
        self.assertTrue(reply.get('ok'), reply)
        return reply

    def wait_upstream_subscribed(self, stream_id, events=None):
        def check():
            subs = self.sim.upstream_subscriptions(stream_id)
            if not subs:
                return None
            if events is not None and sorted(subs[0].get('events') or []) != sorted(events):
                return None
            return subs
        return wait_until(check, timeout=TIMEOUT, what=f'upstream subscription to {stream_id}')

    def subscribe(self, client, stream_id, events=()):
        (path,) = client.call('Subscribe', 'sas', (stream_id, list(events)))
        self.assertEqual(path, stream_path(stream_id))
        self.wait_upstream_subscribed(stream_id, list(events) if events else None)
        client.wait_property('State', 'connected')
        return path

    # ---- introspection ----------------------------------------------------



class TestBridgeBus(BridgeBusFixture):
    """The non-destructive tests on the shared bridge."""

    def test_introspection_matches_xml(self):
        c = self.client()
        path = self.subscribe(c, 'stream_int001')
        with open(XML_PATH) as f:
            expected = parse_interfaces(f.read(), {MANAGER_IFACE, STREAM_IFACE})
        self.assertEqual(set(expected), {MANAGER_IFACE, STREAM_IFACE})

        (manager_xml,) = c.call('Introspect', path=MANAGER_PATH,
                                iface='org.freedesktop.DBus.Introspectable')
        (stream_xml,) = c.call('Introspect', path=path,
                               iface='org.freedesktop.DBus.Introspectable')
        got_manager = parse_interfaces(manager_xml, {MANAGER_IFACE, STREAM_IFACE})
        got_stream = parse_interfaces(stream_xml, {MANAGER_IFACE, STREAM_IFACE})
        self.assertEqual(got_manager, {MANAGER_IFACE: expected[MANAGER_IFACE]})
        self.assertEqual(got_stream, {STREAM_IFACE: expected[STREAM_IFACE]})
        self.assertIn(f'<interface name="{OM_IFACE}">', manager_xml)
        for standard in ('org.freedesktop.DBus.Properties', 'org.freedesktop.DBus.Peer',
                         'org.freedesktop.DBus.Introspectable'):
            self.assertIn(f'<interface name="{standard}">', stream_xml)

    def test_busctl_tree_lists_stream_objects(self):
        c = self.client()
        path = self.subscribe(c, 'stream_tre001')
        out = subprocess.run(['busctl', f'--address={self.bus.address}', 'tree', '--list',
                              BUS_NAME], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(MANAGER_PATH + '\n', out.stdout)
        self.assertIn(path + '\n', out.stdout)

    # ---- manager properties -------------------------------------------------

    def test_manager_properties(self):
        c = self.client()
        before_us = int(time.time() * 1e6)
        self.subscribe(c, 'stream_prp001')
        props = c.get_all()
        self.assertEqual({k: v[0] for k, v in props.items()}, MANAGER_TYPES)
        self.assertEqual(props['State'][1], 'connected')
        self.assertEqual(props['Version'][1], project_version())
        url = props['UpstreamURL'][1]
        self.assertTrue(url.startswith(self.sim.url), url)
        self.assertIn('REDACTED', url)
        self.assertNotIn(self.sim.api_key, url)
        self.assertGreaterEqual(props['Clients'][1], 1)
        self.assertEqual(props['EventsDropped'][1], 0)
        connected = props['ConnectedSince'][1]
        # Connected before or after we started, but today, in realtime µs.
        self.assertLess(abs(connected - before_us), 600 * 1e6, connected)
        self.assertLessEqual(connected, int(time.time() * 1e6))
        # PingInterval is 2 s in the tests: an RTT gets measured.
        c.wait_property('UpstreamRTT', lambda v: v > 0)

        received = c.get('EventsReceived')
        self.emit('stream.health', 'stream_prp001', EVENTS[1][1])
        c.wait_property('EventsReceived', lambda v: v >= received + 1)

        # An upstream `error` becomes LastError.
        self.sim.post('/sim/raw', {'text': json.dumps({
            'type': 'error',
            'payload': {'code': 'test_error', 'message': 'dbus test boom', 'details': {}}})})
        c.wait_property('LastError', lambda v: 'dbus test boom' in v)

    def test_clients_property_counts_peers(self):
        watcher = self.client()
        base = watcher.get('Clients')
        c = self.client()
        self.subscribe(c, 'stream_cli001')
        watcher.wait_property('Clients', base + 1)
        c.close()
        self.clients.remove(c)
        watcher.wait_property('Clients', base)

    # ---- stream objects: signals and properties ----------------------------

    def test_every_signal_typed_with_exact_values(self):
        c = self.client()
        stream_id = 'stream_sig001'
        path = self.subscribe(c, stream_id)
        for type_name, payload, member, signature, expected in EVENTS:
            with self.subTest(event=type_name):
                start = len(c.signals)
                self.emit(type_name, stream_id, payload)
                s = c.wait_signal(member, path=path, start=start)
                self.assertEqual(s.iface, STREAM_IFACE)
                self.assertEqual(s.signature, signature)
                self.assertEqual(s.args, expected)

        # recording_id null → "".
        start = len(c.signals)
        self.emit('stream.ended', stream_id,
                  {'ended_at': '2025-03-04T07:00:00Z', 'duration': 1, 'recording_id': None})
        s = c.wait_signal('Ended', path=path, start=start)
        self.assertEqual(s.args, ('2025-03-04T07:00:00Z', 1.0, ''))

    def test_stream_properties_follow_events(self):
        c = self.client()
        stream_id = 'stream_prp002'
        path = self.subscribe(c, stream_id)
        props = c.get_all(path, STREAM_IFACE)
        self.assertEqual(props['StreamId'], ('s', stream_id))
        self.assertEqual(props['Live'], ('b', False))

        start = len(c.signals)
        self.emit('stream.started', stream_id, EVENTS[0][1])
        changed = c.wait_signal('PropertiesChanged', path=path, start=start,
                                where=lambda s: 'Live' in s.args[1])
        self.assertEqual(changed.args[0], STREAM_IFACE)
        self.assertEqual(changed.args[1]['Live'], True)
        self.assertEqual(changed.args[1]['StartedAt'], '2025-03-04T05:06:07Z')

        start = len(c.signals)
        self.emit('stream.health', stream_id, EVENTS[1][1])
        changed = c.wait_signal('PropertiesChanged', path=path, start=start,
                                where=lambda s: 'Bitrate' in s.args[1])
        self.assertEqual(changed.args[1], {'Bitrate': 4500.5, 'Fps': 29.97,
                                           'PacketLoss': 0.0125, 'Latency': 42.0})
        changed_types = {k: changed.params.get_child_value(1).lookup_value(k, None)
                         .get_type_string() for k in changed.args[1]}
        self.assertEqual(changed_types, {'Bitrate': 'd', 'Fps': 'd', 'PacketLoss': 'd',
                                         'Latency': 'd'})

        start = len(c.signals)
        self.emit('analytics.update', stream_id, EVENTS[4][1])
        c.wait_signal('AnalyticsUpdate', path=path, start=start)

        props = c.get_all(path, STREAM_IFACE)
        expected = {
            'StreamId': ('s', stream_id), 'Live': ('b', True),
            'StartedAt': ('s', '2025-03-04T05:06:07Z'), 'Protocol': ('s', 'srt'),
            'IngestEndpoint': ('s', 'srt://ingest.example:9000/live'),
            'EndedAt': ('s', ''), 'Duration': ('d', 0.0), 'RecordingId': ('s', ''),
            'Bitrate': ('d', 4500.5), 'Fps': ('d', 29.97), 'PacketLoss': ('d', 0.0125),
            'Latency': ('d', 42.0), 'ConcurrentViewers': ('u', 123),
            'TotalViews': ('t', 5000000000), 'PeakViewers': ('u', 456),
            'AverageWatchTime': ('d', 77.25),
        }
        self.assertEqual(props, expected)

        start = len(c.signals)
        self.emit('stream.ended', stream_id, EVENTS[7][1])
        c.wait_signal('Ended', path=path, start=start)
        props = c.get_all(path, STREAM_IFACE)
        self.assertEqual(props['Live'], ('b', False))
        self.assertEqual(props['EndedAt'], ('s', '2025-03-04T06:06:07Z'))
        self.assertEqual(props['Duration'], ('d', 3600.5))
        self.assertEqual(props['RecordingId'], ('s', 'rec_42'))

    def test_signals_are_received_with_busctl_monitor(self):
        c = self.client()
        stream_id = 'stream_mon001'
        path = self.subscribe(c, stream_id)
        monitor = subprocess.Popen(
            ['busctl', f'--address={self.bus.address}', 'monitor', '--json=short',
             f"--match=type='signal',path='{path}',member='Health'"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            # busctl needs a moment to become a monitor; emit until it sees one.
            def seen():
                self.emit('stream.health', stream_id, EVENTS[1][1])
                line = _readline_with_timeout(monitor.stdout, 1.0)
                return json.loads(line) if line else None
            message = wait_until(seen, timeout=TIMEOUT, what='busctl monitor output')
        finally:
            monitor.terminate()
            monitor.wait(5)
            monitor.stdout.close()
        self.assertEqual(message['member'], 'Health')
        self.assertEqual(message['interface'], STREAM_IFACE)
        self.assertEqual(message['payload']['type'], 'dddd')
        self.assertEqual(message['payload']['data'], [4500.5, 29.97, 0.0125, 42])

    # ---- subscriptions ------------------------------------------------------

    def test_subscribe_event_filter_reaches_upstream(self):
        c = self.client()
        stream_id = 'stream_flt001'
        c.call('Subscribe', 'sas', (stream_id, ['stream.health', 'chat.message']))
        self.wait_upstream_subscribed(stream_id, ['chat.message', 'stream.health'])
        # Re-subscribing replaces the set.
        c.call('Subscribe', 'sas', (stream_id, ['analytics.update']))
        self.wait_upstream_subscribed(stream_id, ['analytics.update'])

    def test_subscription_ends_when_busctl_exits(self):
        watcher = self.client()
        stream_id = 'stream_bct001'
        path = stream_path(stream_id)
        out = subprocess.run(['busctl', f'--address={self.bus.address}', 'call', BUS_NAME,
                              MANAGER_PATH, MANAGER_IFACE, 'Subscribe', 'sas', stream_id, '0'],
                             capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), f'o "{path}"')
        added = watcher.wait_signal('InterfacesAdded', where=lambda s: s.args[0] == path)
        self.assertIn(STREAM_IFACE, added.args[1])
        watcher.wait_signal('InterfacesRemoved', where=lambda s: s.args[0] == path)
        wait_until(lambda: not self.sim.upstream_subscriptions(stream_id), timeout=TIMEOUT,
                   what='the upstream unsubscribe')

    def test_union_shrinks_when_subscriber_process_exits(self):
        watcher = self.client()
        stream_id = 'stream_prc001'
        path = stream_path(stream_id)
        proc = subprocess.Popen([sys.executable, '-c', SUBSCRIBER_SCRIPT, self.bus.address,
                                 stream_id], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        try:
            name = proc.stdout.readline().strip()
            self.assertTrue(name.startswith(':'), name)
            self.wait_upstream_subscribed(stream_id, ['stream.health'])
            self.assertIn(path, watcher.call('GetManagedObjects', iface=OM_IFACE)[0])
            # Still there while the process lives.
            watcher.pump(0.5)
            self.assertTrue(self.sim.upstream_subscriptions(stream_id))
            proc.stdin.write('\n')
            proc.stdin.flush()
            self.assertEqual(proc.wait(TIMEOUT), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdin.close()
            proc.stdout.close()
        wait_until(lambda: not self.sim.upstream_subscriptions(stream_id), timeout=TIMEOUT,
                   what='the union to shrink')
        watcher.wait_signal('InterfacesRemoved', where=lambda s: s.args[0] == path)
        self.assertNotIn(path, watcher.call('GetManagedObjects', iface=OM_IFACE)[0])

    def test_two_subscribers_share_one_upstream_subscription(self):
        a, b = self.client(), self.client()
        stream_id = 'stream_two001'
        a.call('Subscribe', 'sas', (stream_id, ['stream.health']))
        b.call('Subscribe', 'sas', (stream_id, ['chat.message']))
        self.wait_upstream_subscribed(stream_id, ['chat.message', 'stream.health'])
        self.assertEqual(len(self.sim.upstream_subscriptions(stream_id)), 1)
        a.call('Unsubscribe', 's', (stream_id,))
        self.wait_upstream_subscribed(stream_id, ['chat.message'])
        b.close()
        self.clients.remove(b)
        wait_until(lambda: not self.sim.upstream_subscriptions(stream_id), timeout=TIMEOUT,
                   what='the union to shrink')

    def test_unsubscribe(self):
        c = self.client()
        stream_id = 'stream_uns001'
        path = self.subscribe(c, stream_id)
        start = len(c.signals)
        self.assertEqual((), c.call('Unsubscribe', 's', (stream_id,)))
        removed = c.wait_signal('InterfacesRemoved', start=start,
                                where=lambda s: s.args[0] == path)
        self.assertEqual(removed.args[1], [STREAM_IFACE])
        wait_until(lambda: not self.sim.upstream_subscriptions(stream_id), timeout=TIMEOUT,
                   what='the upstream unsubscribe')
        name, _ = c.call_error('Get', 'ss', (STREAM_IFACE, 'StreamId'), path=path,
                               iface=PROPS_IFACE)
        self.assertEqual(name, 'org.freedesktop.DBus.Error.UnknownObject')
        self.assertEqual(c.call_error('Unsubscribe', 's', (stream_id,))[0],
                         ERROR_PREFIX + 'NotSubscribed')
        # A peer that never subscribed.
        self.assertEqual(self.client().call_error('Unsubscribe', 's', (stream_id,))[0],
                         ERROR_PREFIX + 'NotSubscribed')

    def test_object_manager(self):
        c = self.client()
        stream_id = 'stream_om.x/1'  # needs escaping in the path
        path = stream_path(stream_id)
        self.assertEqual(path, MANAGER_PATH + '/stream/stream_5fom_2ex_2f1')
        start = len(c.signals)
        self.assertEqual(c.call('Subscribe', 'sas', (stream_id, []))[0], path)
        added = c.wait_signal('InterfacesAdded', start=start, where=lambda s: s.args[0] == path)
        self.assertEqual(added.path, MANAGER_PATH)
        self.assertEqual(added.signature, '(oa{sa{sv}})')
        self.assertEqual(added.args[1][STREAM_IFACE]['StreamId'], stream_id)
        self.assertEqual(len(added.args[1][STREAM_IFACE]), 16)

        (objects,) = c.call('GetManagedObjects', iface=OM_IFACE)
        self.assertIn(path, objects)
        self.assertEqual(objects[path][STREAM_IFACE]['StreamId'], stream_id)
        self.assertNotIn(MANAGER_PATH, objects)

        c.call('Unsubscribe', 's', (stream_id,))
        removed = c.wait_signal('InterfacesRemoved', start=start,
                                where=lambda s: s.args[0] == path)
        self.assertEqual(removed.path, MANAGER_PATH)
        self.assertEqual(removed.signature, '(oas)')
        self.assertNotIn(path, c.call('GetManagedObjects', iface=OM_IFACE)[0])

    def test_invalid_arguments(self):
        c = self.client()
        invalid = ERROR_PREFIX + 'InvalidArgument'
        self.assertEqual(c.call_error('Subscribe', 'sas', ('', []))[0], invalid)
        self.assertEqual(c.call_error('Subscribe', 'sas', ('x' * 300, []))[0], invalid)
        name, message = c.call_error('Subscribe', 'sas', ('stream_inv001', ['bogus.event']))
        self.assertEqual(name, invalid)
        self.assertIn('bogus.event', message)
        self.assertEqual(c.call_error('Subscribe', 'sas', ('stream_inv001', ['ping']))[0],
                         invalid)
        self.assertEqual(c.call_error('SendChatMessage', 'ss', ('stream_inv001', ''))[0],
                         invalid)
        self.assertEqual(c.call_error('SendReaction', 'ss', ('', '🔥'))[0], invalid)
        self.assertEqual(c.call_error('SendChatMessage', 'ss', ('stream_inv001', 'x' * 5000))[0],
                         invalid)
        # Wrong signature: sd-bus answers before our code runs.
        self.assertEqual(c.call_error('Subscribe', 's', ('stream_inv001',))[0],
                         'org.freedesktop.DBus.Error.InvalidArgs')
        self.assertFalse(self.sim.upstream_subscriptions('stream_inv001'))

    # ---- sending ------------------------------------------------------------

    def test_send_chat_and_reaction(self):
        c = self.client()
        stream_id = 'stream_snd001'
        path = self.subscribe(c, stream_id)
        received = self.sim.stats()['received']

        start = len(c.signals)
        self.assertEqual((), c.call('SendChatMessage', 'ss', (stream_id, 'hi from dbus ✓')))
        chat = c.wait_signal('ChatMessage', path=path, start=start)
        self.assertEqual(chat.args[3], 'hi from dbus ✓')
        self.assertEqual(chat.args[2], 'you')

        start = len(c.signals)
        self.assertEqual((), c.call('SendChatMessage', 's', ('via the stream object',), path=path,
                                 iface=STREAM_IFACE))
        chat = c.wait_signal('ChatMessage', path=path, start=start)
        self.assertEqual(chat.args[3], 'via the stream object')

        self.assertEqual((), c.call('SendReaction', 'ss', (stream_id, '🔥')))
        self.assertEqual((), c.call('SendReaction', 's', ('👍',), path=path, iface=STREAM_IFACE))
        stats = wait_until(
            lambda: (lambda s: s if s['received'].get('reaction.sent', 0)
                     >= received.get('reaction.sent', 0) + 2 else None)(self.sim.stats()),
            timeout=TIMEOUT, what='the reactions upstream')
        self.assertEqual(stats['received'].get('chat.message', 0),
                         received.get('chat.message', 0) + 2)

    # ---- control --------------------------------------------------------------

    def test_reconnect(self):
        c = self.client()
        self.subscribe(c, 'stream_rec001')
        reconnects = c.get('Reconnects')
        total = self.sim.stats()['connections_total']
        start = len(c.signals)
        self.assertEqual((), c.call('Reconnect'))
        wait_until(lambda: self.sim.stats()['connections_total'] > total, timeout=TIMEOUT,
                   what='a new upstream connection')
        c.wait_property('Reconnects', lambda v: v > reconnects)
        c.wait_property('State', 'connected')
        # State went through another value and back, each change published.
        states = []
        c.wait_signal('PropertiesChanged', path=MANAGER_PATH, start=start,
                      where=lambda s: 'State' in s.args[1] and states.append(s.args[1]['State'])
                      is None and s.args[1]['State'] == 'connected')
        self.assertGreaterEqual(len(states), 2, states)
        # One user cannot make the shared upstream flap.
        name, message = c.call_error('Reconnect')
        self.assertEqual(name, ERROR_PREFIX + 'RateLimited')
        self.assertIn('at most every 5 s', message)

    def test_reload(self):
        c = self.client()
        self.assertEqual((), c.call('Reload'))
        # A broken configuration: Reload() fails and the bridge keeps running.
        try:
            self.bridge.write_config({'Limits': {'MaxClients': 'not-a-number'}})
            name, message = c.call_error('Reload')
            self.assertEqual(name, ERROR_PREFIX + 'Failed')
            self.assertIn('MaxClients', message)
        finally:
            self.bridge.write_config()
        self.assertEqual((), c.call('Reload'))
        self.assertIsNone(self.bridge.proc.poll())
        self.assertIn(c.get('State'), ('idle', 'connecting', 'connected', 'waiting'))

    def test_counter_changes_are_coalesced(self):
        c = self.client()
        stream_id = 'stream_coa001'
        self.subscribe(c, stream_id)
        c.pump(1.2)
        start = len(c.signals)
        received = c.get('EventsReceived')
        count = 150
        reply = self.sim.post('/sim/flood', {'stream_id': stream_id, 'type': 'stream.health',
                                             'rate': 100, 'count': count, 'size': 100})
        self.assertTrue(reply.get('ok'), reply)
        began = time.monotonic()
        c.wait_property('EventsReceived', lambda v: v >= received + count, timeout=30)
        c.pump(1.5)  # the last batch
        elapsed = time.monotonic() - began
        batches = [s for s in c.signals[start:]
                   if s.member == 'PropertiesChanged' and s.path == MANAGER_PATH
                   and 'EventsReceived' in s.args[1]]
        health = [s for s in c.signals[start:] if s.member == 'Health']
        self.assertEqual(len(health), count)
        # At most one batch per second (+2 for the edges), far fewer than events.
        self.assertGreaterEqual(len(batches), 1)
        self.assertLessEqual(len(batches), int(elapsed) + 2, (len(batches), elapsed))
        self.assertEqual(batches[-1].args[1]['EventsReceived'], c.get('EventsReceived'))


def _readline_with_timeout(stream, timeout):
    import select
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else None


class TestRateLimit(BridgeBusFixture):
    """ChatPerMinute / ReactionsPerMinute over D-Bus, with a bridge of its own."""

    bridge_limits = {'ChatPerMinute': '3', 'ReactionsPerMinute': '3'}

    def test_rate_limited(self):
        c = self.client()
        stream_id = 'stream_rat001'
        path = self.subscribe(c, stream_id)
        for i in range(3):  # ChatPerMinute=3
            c.call('SendChatMessage', 'ss', (stream_id, f'message {i}'))
        name, _ = c.call_error('SendChatMessage', 'ss', (stream_id, 'one too many'))
        self.assertEqual(name, ERROR_PREFIX + 'RateLimited')
        self.assertEqual(c.call_error('SendChatMessage', 's', ('again',), path=path,
                                      iface=STREAM_IFACE)[0], ERROR_PREFIX + 'RateLimited')
        for i in range(3):  # ReactionsPerMinute=3, a separate budget
            c.call('SendReaction', 's', ('👍',), path=path, iface=STREAM_IFACE)
        self.assertEqual(c.call_error('SendReaction', 'ss', (stream_id, '👍'))[0],
                         ERROR_PREFIX + 'RateLimited')
        # The allowance is the user's: another connection of the same user
        # (or reconnecting) does not refill it.
        self.assertEqual(self.client().call_error('SendChatMessage', 'ss',
                                                  (stream_id, 'other peer'))[0],
                         ERROR_PREFIX + 'RateLimited')


class TestReconnectRefused(BridgeBusFixture):
    """Reconnect() against a wait the server imposed, with a bridge of its own
    (it closes the shared upstream and uses Reconnect's 5 s allowance)."""

    def test_reconnect_keeps_the_servers_wait(self):
        c = self.client()
        self.subscribe(c, 'stream_rec002')
        c.wait_property('State', 'connected')
        total = self.sim.stats()['connections_total']
        self.sim.post('/sim/close', {'code': 4429})
        c.wait_property('State', 'rate-limited')
        name, message = c.call_error('Reconnect')
        self.assertEqual(name, ERROR_PREFIX + 'RateLimited')
        self.assertIn('the server asked the bridge to wait (rate-limited)', message)
        self.assertIn('the next attempt is in', message)
        # Refused, so no handshake came early: the retry is the wait's own.
        self.assertEqual(self.sim.stats()['connections_total'], total)
        c.wait_property('State', 'connected')


class TestUpstreamDown(unittest.TestCase):
    """Send errors that depend on the upstream state: own sim and bridge."""

    def test_not_connected_when_auth_failed(self):
        with Sim(streams=1) as sim, PrivateBus() as bus, \
                Bridge(sim, bus=bus, api_key='wrong-key') as bridge:
            c = BusClient(bus.address)
            try:
                c.call('Subscribe', 'sas', ('stream_auth01', []))
                c.wait_property('State', 'auth-failed')
                self.assertEqual(c.get('LastCloseCode'), 4401)
                name, _ = c.call_error('SendChatMessage', 'ss', ('stream_auth01', 'hello'))
                self.assertEqual(name, ERROR_PREFIX + 'NotConnected')
                name, _ = c.call_error('SendReaction', 's', ('🔥',),
                                       path=stream_path('stream_auth01'), iface=STREAM_IFACE)
                self.assertEqual(name, ERROR_PREFIX + 'NotConnected')
            finally:
                c.close()
            self.assertIsNone(bridge.proc.poll(), bridge.log())

    def test_send_failed_when_held_too_long(self):
        with Sim(streams=1) as sim, PrivateBus() as bus, \
                Bridge(sim, bus=bus, config={'Limits': {'SendQueueTimeout': '1'}}) as bridge:
            c = BusClient(bus.address)
            try:
                c.call('Subscribe', 'sas', ('stream_held01', []))
                c.wait_property('State', 'connected')
                # Upstream goes away and stays away.
                sim.post('/sim/reject', {'count': 10000, 'http_status': 503})
                sim.post('/sim/drop', {})
                c.wait_property('State', lambda s: s in ('waiting', 'connecting'))
                began = time.monotonic()
                name, _ = c.call_error('SendChatMessage', 'ss', ('stream_held01', 'held'),
                                       timeout=30)
                waited = time.monotonic() - began
                self.assertEqual(name, ERROR_PREFIX + 'SendFailed')
                # Held for SendQueueTimeout (1 s), not failed at once.
                self.assertGreaterEqual(waited, 0.8)
                self.assertLess(waited, 20)
                self.assertNotEqual(c.get('LastCloseCode'), 0)
            finally:
                c.close()
            self.assertIsNone(bridge.proc.poll(), bridge.log())


class TestBusLifecycle(unittest.TestCase):

    def test_bus_lost_makes_the_daemon_exit_nonzero(self):
        with Sim(streams=1) as sim:
            bus = PrivateBus().__enter__()
            try:
                bridge = Bridge(sim, bus=bus).__enter__()
                try:
                    bus.proc.kill()
                    bus.proc.wait()
                    rc = wait_until(lambda: bridge.proc.poll(), timeout=TIMEOUT,
                                    what='wave-bridged to exit')
                    self.assertNotEqual(rc, 0)
                    self.assertGreater(rc, 0, 'exited by a signal, not by itself')
                    self.assertIn('Lost the connection to the session bus', bridge.log())
                finally:
                    bridge.__exit__(None, None, None)
            finally:
                bus.__exit__(None, None, None)

    def test_name_already_owned(self):
        with Sim(streams=1) as sim, PrivateBus() as bus, Bridge(sim, bus=bus):
            second = Bridge(sim, bus=bus, wait_ready=False)
            with second:
                rc = wait_until(lambda: second.proc.poll(), timeout=TIMEOUT,
                                what='the second wave-bridged to exit')
                self.assertNotEqual(rc, 0)
                self.assertIn('already owned', second.log())

    def test_clean_shutdown_releases_the_name(self):
        with Sim(streams=1) as sim, PrivateBus() as bus:
            with Bridge(sim, bus=bus) as bridge:
                self.assertTrue(bus.name_has_owner(BUS_NAME))
                self.assertEqual(bridge.stop(), 0, bridge.log())
            wait_until(lambda: not bus.name_has_owner(BUS_NAME), timeout=TIMEOUT,
                       what='the name to be released')


SYSTEM_BUS_CONFIG = '''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <user>root</user>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <!-- What the stock system.conf does: deny calls and names by default. -->
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>{policy}</include>
</busconfig>
'''

POLICY_CLIENT = r'''
import sys
import time
import gi
gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib
flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
         | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
conn = Gio.DBusConnection.new_for_address_sync(sys.argv[1], flags, None, None)
health = []
conn.signal_subscribe(None, 'inc.wave.Bridge1.Stream', 'Health', None, None,
                      Gio.DBusSignalFlags.NONE, lambda *args: health.append(args))
results = []
calls = [('inc.wave.Bridge1', 'Subscribe', '(sas)', ('stream_pol001', [])),
         ('inc.wave.Bridge1', 'SendChatMessage', '(ss)', ('stream_pol001', 'hi')),
         ('org.freedesktop.DBus.Properties', 'Get', '(ss)', ('inc.wave.Bridge1', 'State')),
         ('inc.wave.Bridge1', 'Reconnect', None, None),
         ('inc.wave.Bridge1', 'Reload', None, None)]
for iface, method, signature, args in calls:
    try:
        conn.call_sync('inc.wave.Bridge1', '/inc/wave/Bridge1', iface, method,
                       GLib.Variant(signature, args) if signature else None, None,
                       Gio.DBusCallFlags.NONE, 15000, None)
        results.append('ok')
    except GLib.Error as e:
        name = Gio.DBusError.get_remote_error(e) or e.message
        # The daemon answered, so the policy let the call through; a second
        # user's Reconnect within 5 s is throttled by the daemon itself.
        if method == 'Reconnect' and name == 'inc.wave.Bridge1.Error.RateLimited':
            name = 'ok'
        results.append(name)
print('ready', flush=True)
context = GLib.MainContext.default()
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    while context.iteration(False):
        pass
    time.sleep(0.01)
results.append('signals' if health else 'no-signals')
print(' '.join(results), flush=True)
'''


class TestPolicy(unittest.TestCase):
    """dbus/inc.wave.Bridge1.conf in a private system-style dbus-daemon."""

    created_groups = []

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest('needs root to run clients as nobody')
        for group in ('wave', 'wave-chat'):
            try:
                grp.getgrnam(group)
            except KeyError:
                subprocess.run(['groupadd', group], check=True)
                cls.created_groups.append(group)

    @classmethod
    def tearDownClass(cls):
        for group in cls.created_groups:
            subprocess.run(['groupdel', group], check=False)
        cls.created_groups = []

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='wb-policy-')
        os.chmod(self.dir, 0o755)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_policy(self, policy_path, bridge_config=None):
        socket_path = os.path.join(self.dir, 'system_bus_socket')
        config_path = os.path.join(self.dir, 'system.conf')
        with open(config_path, 'w') as f:
            f.write(SYSTEM_BUS_CONFIG.format(socket=socket_path, policy=policy_path))
        results = {}
        with Sim(streams=1) as sim, PrivateBus(config_file=config_path) as bus:
            self.assertTrue(bus.address.startswith('unix:path='), bus.address)
            os.chmod(socket_path, 0o777)
            with Bridge(sim, bus=bus, args=['--bus=system'], config=bridge_config,
                        env={'DBUS_SYSTEM_BUS_ADDRESS': bus.address}) as bridge:
                # Root may do everything: it keeps a stream alive for the signal check.
                root = BusClient(bus.address)
                try:
                    root.call('Subscribe', 'sas', ('stream_pol001', []))
                    for label, groups in (('none', []), ('wave', ['wave']),
                                          ('both', ['wave', 'wave-chat'])):
                        results[label] = self.run_client(sim, bus, groups)
                finally:
                    root.close()
                self.assertIn('Owning inc.wave.Bridge1 on the system bus', bridge.log())
        return results

    def run_client(self, sim, bus, groups):
        """Runs POLICY_CLIENT as nobody with @groups while health events flow."""
        proc = subprocess.Popen(
            [sys.executable, '-c', POLICY_CLIENT, bus.address],
            user=NOBODY, group=NOBODY, extra_groups=groups, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={'PATH': os.environ.get('PATH', '/usr/bin:/bin')})
        try:
            self.assertEqual(proc.stdout.readline().strip(), 'ready', proc.stderr)
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                sim.post('/sim/emit', {'type': 'stream.health', 'payload': {
                    'stream_id': 'stream_pol001', 'bitrate': 1.0, 'fps': 2.0,
                    'packet_loss': 0.0, 'latency': 3.0}})
                time.sleep(0.2)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        self.assertEqual(proc.returncode, 0, err)
        return out.split()

    def test_shipped_policy(self):
        results = self.run_policy(CONF_PATH)
        denied = 'org.freedesktop.DBus.Error.AccessDenied'
        # Subscribe, SendChatMessage, Get(State), Reconnect, Reload, signals
        self.assertEqual(results['none'], [denied] * 5 + ['no-signals'])
        self.assertEqual(results['wave'], ['ok', 'ok', 'ok', 'ok', denied, 'signals'])
        self.assertEqual(results['both'], ['ok', 'ok', 'ok', 'ok', denied, 'signals'])

    def test_send_group_restricts_dbus_sends(self):
        """The restriction docs/dbus.md describes: the shipped policy unchanged,
        [Access] SendGroup=wave-chat in the bridge's configuration. (Editing a
        copy of the policy in /etc cannot take a right away: dbus-daemon loads
        both files and their <allow> rules add up.)"""
        results = self.run_policy(CONF_PATH, {'Access': {'SendGroup': 'wave-chat'}})
        denied = 'org.freedesktop.DBus.Error.AccessDenied'
        forbidden = 'inc.wave.Bridge1.Error.Forbidden'
        self.assertEqual(results['none'], [denied] * 5 + ['no-signals'])
        self.assertEqual(results['wave'], ['ok', forbidden, 'ok', 'ok', denied, 'signals'])
        self.assertEqual(results['both'], ['ok', 'ok', 'ok', 'ok', denied, 'signals'])

if __name__ == '__main__':
    unittest.main()
