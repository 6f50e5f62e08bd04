# SPDX-License-Identifier: MIT
"""Strict at every boundary (issue 12), against the real wave-bridged,
wave-sim and a private dbus-daemon: wave-sim plays a hostile server (lenient
JSON, odd Unicode, a reason phrase that is not UTF-8, a frame over the
limit), local clients send odd identifiers over the socket and D-Bus, and
Python's json module, as strict as it goes, is the independent reader of
every line the bridge writes.
"""

import base64
import json
import os
import unittest

from test_dbus import ERROR_PREFIX, MANAGER_PATH, OM_IFACE, STREAM_IFACE, BusClient, stream_path
from wbtest import Bridge, PrivateBus, Sim, wait_until

EX_CONFIG = 78
REPLACEMENT = '\ufffd'
TEXT_MAX_BYTES = 512


def no_constants(name):
    raise ValueError(f'{name} is not JSON')


def no_duplicates(pairs):
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise ValueError(f'duplicate member names in {names}')
    return dict(pairs)


def all_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for name, member in value.items():
            yield name
            yield from all_strings(member)
    elif isinstance(value, list):
        for element in value:
            yield from all_strings(element)


def strict_json(line):
    """Python's json as strict as it goes: UTF-8 (decode raises), no raw
    control characters in strings (json's default), no NaN or Infinity, no
    duplicate names, and no lone surrogates (json accepts them escaped)."""
    value = json.loads(line.decode('utf-8'), parse_constant=no_constants,
                       object_pairs_hook=no_duplicates)
    for text in all_strings(value):
        text.encode('utf-8')
    return value


def health_text(stream_id, bitrate):
    """A stream.health frame with bitrate written exactly as given."""
    return ('{"type":"stream.health","payload":{"stream_id":"%s","bitrate":%s,"fps":30,'
            '"packet_loss":0,"latency":20}}' % (stream_id, bitrate))


def chat_text(stream_id, message_json, timestamp='"2024-01-01T00:00:00Z"'):
    """A chat.message frame with the message's JSON text as given."""
    return ('{"type":"chat.message","payload":{"stream_id":"%s","message_id":"m",'
            '"user_id":"u","username":"ana","message":%s,"timestamp":%s}}'
            % (stream_id, message_json, timestamp))


def chat(stream_id, text):
    return {'type': 'chat.message',
            'payload': {'stream_id': stream_id, 'message_id': 'm-' + str(len(text)),
                        'user_id': 'u1', 'username': 'ana\ufffe', 'message': text,
                        'timestamp': '2024-01-01T00:00:00Z'}}


def read_until(client, done, timeout=10):
    """Raw lines (each checked strictly) until done(parsed) is true."""
    lines = []
    while True:
        raw = client.recv_line(timeout)
        message = strict_json(raw)
        lines.append((raw, message))
        if done(message):
            return lines


def is_marker(text):
    return lambda m: m['type'] == 'chat.message' and m['payload']['message'] == text


class StrictFixture(unittest.TestCase):
    """One sim, bus and bridge; every test uses stream ids of its own."""

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim(streams=1, speed=1).__enter__()
        cls.bus = PrivateBus().__enter__()
        cls.bridge = Bridge(cls.sim, bus=cls.bus).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.bridge.__exit__(None, None, None)
        cls.bus.__exit__(None, None, None)
        cls.sim.__exit__(None, None, None)

    def setUp(self):
        self.bus_client = BusClient(self.bus.address)
        self.addCleanup(self.bus_client.close)

    def tearDown(self):
        if self.bridge.proc.poll() is not None:
            self.fail(f'wave-bridged died: {self.bridge.log()}')

    def subscribe(self, client, stream_id):
        client.send({'type': 'subscribe', 'stream_id': stream_id})
        client.recv_type('subscribed')
        wait_until(lambda: self.sim.upstream_subscriptions(stream_id),
                   what=f'upstream subscription to {stream_id}')
        self.bus_client.wait_property('State', 'connected')


class HostileFrames(StrictFixture):
    def test_lenient_frames_are_counted_not_forwarded(self):
        stream = 'stream_len001'
        lenient = [health_text(stream, number) for number in (
            '0x10', '$ff', '0b101', '017', '01.5', '.5', '1.', '+1', 'NaN', 'Infinity',
            '99999999999999999999', '1e400', '4500,"bitrate":1')]
        lenient += [
            chat_text(stream, '"a\x01b"'),                 # raw control characters
            chat_text(stream, '"a\x1fb"'),
            chat_text(stream, '"tab\tin text"'),
            chat_text(stream, '"\\x41"'),                  # not a JSON escape
            chat_text(stream, '"\\udc00 lone"'),           # not Unicode
            chat_text(stream, '"\\ud83d"'),
            chat_text(stream, "'single'"),
            '\ufeff' + chat_text(stream, '"bom"'),
            chat_text(stream, '"trailing",'),
            # json-glib would route this to subscribers of stream_len001.
            health_text(stream + '\\u0000x', '1'),
            chat_text(stream, '"cut \\u0000 here"'),
            # Not an identifier (a noncharacter): no D-Bus path could name it.
            health_text(stream + '\ufffe', '1'),
            # Schema failures vanished uncounted once (issue 12).
            chat_text(stream, '"numeric timestamp"', timestamp='1700000000'),
        ]
        with self.bridge.connect() as client:
            self.subscribe(client, stream)
            before = self.bridge.status()['invalid_messages']
            for frame in lenient:
                self.assertTrue(self.sim.post('/sim/raw', {'text': frame})['ok'])
            self.sim.post('/sim/emit', chat(stream, 'marker'))
            lines = read_until(client, is_marker('marker'))
            events = [m for _, m in lines if not m['type'].startswith('bridge.')]
            self.assertEqual(len(events), 1, [raw for raw, _ in lines])
            wait_until(lambda: self.bridge.status()['invalid_messages'] == before + len(lenient),
                       what=f'{len(lenient)} more invalid_messages')
            # The same count on D-Bus (coalesced: within a second or so).
            self.bus_client.wait_property('InvalidMessages', before + len(lenient))

    def test_odd_but_valid_text_arrives_intact_and_on_the_bus(self):
        stream = 'stream_odd001'
        texts = ['bad\ufffechat', '\ufdd0\U0010ffff', 'line\u2028break\u2029',
                 'ctl \x01\x1f\x7f\x85', 'emoji 😀 ✓', '"quoted" \\ back/slash']
        with self.bridge.connect() as client:
            self.subscribe(client, stream)
            dropped = self.bus_client.get('EventsDropped')
            start = len(self.bus_client.signals)
            for text in texts:
                self.sim.post('/sim/emit', chat(stream, text))
            self.sim.post('/sim/emit', chat(stream, 'marker'))
            lines = read_until(client, is_marker('marker'))
            got = [m['payload'] for _, m in lines if m['type'] == 'chat.message']
            self.assertEqual([p['message'] for p in got], texts + ['marker'])
            self.assertEqual(got[0]['username'], 'ana\ufffe')
            # Escaped or raw, U+001F is never written raw.
            for raw, _ in lines:
                self.assertNotIn(b'\x1f', raw)
            # D-Bus gets every one, noncharacters as U+FFFD, nothing dropped.
            path = stream_path(stream)
            signal = self.bus_client.wait_signal('ChatMessage', path=path, start=start,
                                                 where=lambda s: s.args[3] == 'marker')
            chats = [s.args for s in self.bus_client.signals[start:]
                     if s.member == 'ChatMessage' and s.path == path]
            expected = [t.replace('\ufffe', REPLACEMENT).replace('\ufdd0', REPLACEMENT)
                        .replace('\U0010ffff', REPLACEMENT) for t in texts + ['marker']]
            self.assertEqual([args[3] for args in chats], expected)
            self.assertEqual(signal.args[2], 'ana' + REPLACEMENT)
            self.assertEqual(self.bus_client.get('EventsDropped'), dropped)

    def test_upstream_text_in_stream_properties(self):
        stream = 'stream_odd002'
        with self.bridge.connect() as client:
            self.subscribe(client, stream)
            self.sim.post('/sim/emit', {'type': 'stream.started', 'payload': {
                'stream_id': stream, 'started_at': '2024\ufffe', 'protocol': 'rtmp\uffff',
                'ingest_endpoint': 'rtmp://i/\x01'}})
            started = client.recv_type('stream.started')
            self.assertEqual(started['payload']['protocol'], 'rtmp\uffff')
            # The cache keeps upstream's text; D-Bus gets what it can carry.
            path = stream_path(stream)
            props = self.bus_client.wait_property(
                'Protocol', 'rtmp' + REPLACEMENT, path=path, iface=STREAM_IFACE)
            self.assertEqual(props, 'rtmp' + REPLACEMENT)
            everything = self.bus_client.get_all(path=path, iface=STREAM_IFACE)
            self.assertEqual(everything['StartedAt'], ('s', '2024' + REPLACEMENT))
            self.assertEqual(everything['IngestEndpoint'], ('s', 'rtmp://i/\x01'))
            (objects,) = self.bus_client.call('GetManagedObjects', iface=OM_IFACE)
            self.assertEqual(objects[path][STREAM_IFACE]['Protocol'], 'rtmp' + REPLACEMENT)
            # A new subscriber's replay of the cached event is the same JSON.
            with self.bridge.connect() as second:
                second.send({'type': 'subscribe', 'stream_id': stream})
                replay = read_until(second, lambda m: m['type'] == 'stream.started')
                self.assertEqual(replay[-1][1]['payload'], started['payload'])
                self.assertTrue(replay[-1][1]['cached'])


class Identifiers(StrictFixture):
    BAD = ['bad\ufffeid', '\U0001fffe', '\ufdef', 'a\nb', 'tab\tid', 'del\x7f', 'nel\x85',
           'ls\u2028', 'rtl\u202eevil', 'zw\u200bsp', '\ufeffbom', 'x' * 257, '']

    def test_socket_refuses_what_a_transport_cannot_carry(self):
        start = len(self.bus_client.signals)
        with self.bridge.connect() as client:
            for n, stream_id in enumerate(self.BAD):
                with self.subTest(stream_id=stream_id):
                    client.send({'type': 'subscribe', 'stream_id': stream_id, 'id': n})
                    raw = client.recv_line()
                    error = strict_json(raw)
                    self.assertEqual(error['type'], 'error', error)
                    self.assertEqual(error['payload']['code'], 'invalid_message')
                    self.assertEqual(error['id'], n)
            # "s\u0000x" would be "s" to json-glib: neither id nor stream echoed.
            client.send_raw(b'{"type":"subscribe","stream_id":"s\\u0000x","id":"n\\u0000"}\n')
            error = strict_json(client.recv_line())
            self.assertEqual(error['payload']['code'], 'invalid_message')
            self.assertNotIn('id', error)
            self.assertEqual(error['payload']['details'], {})
            # Nothing reached upstream, and D-Bus works for everyone.
            subscribed = {s['stream_id'] for s in self.sim.upstream_subscriptions()}
            self.assertFalse(subscribed & set(self.BAD + ['s', 's\x00x']), subscribed)
            (objects,) = self.bus_client.call('GetManagedObjects', iface=OM_IFACE)
            self.subscribe(client, 'stream_ok_after')
            self.bus_client.wait_signal('InterfacesAdded', start=start,
                                        where=lambda s: s.args[0] == stream_path('stream_ok_after'))
            (objects,) = self.bus_client.call('GetManagedObjects', iface=OM_IFACE)
            self.assertIn(stream_path('stream_ok_after'), objects)

    def test_dbus_refuses_with_invalid_argument(self):
        invalid = ERROR_PREFIX + 'InvalidArgument'
        c = self.bus_client
        for stream_id in self.BAD:
            with self.subTest(stream_id=stream_id):
                self.assertEqual(c.call_error('Subscribe', 'sas', (stream_id, []))[0], invalid)
                self.assertEqual(c.call_error('SendChatMessage', 'ss', (stream_id, 'hi'))[0],
                                 invalid)
        # Text D-Bus cannot carry, in a method call: refused the same way.
        self.assertEqual(c.call_error('SendChatMessage', 'ss', ('stream_ok', 'x\ufffe'))[0],
                         invalid)
        # An event name too long to repeat whole is cut by characters.
        name, message = c.call_error('Subscribe', 'sas', ('stream_ok', ['é' * 100]))
        self.assertEqual(name, invalid)
        self.assertIn('…', message)
        (objects,) = c.call('GetManagedObjects', iface=OM_IFACE)
        for stream_id in self.BAD:
            self.assertFalse(any(p.startswith(MANAGER_PATH + '/stream/') and
                                 objects[p][STREAM_IFACE]['StreamId'] == stream_id
                                 for p in objects))


class ServerText(unittest.TestCase):
    """Text the server chooses reaches status, D-Bus and the log sanitized."""

    def setUp(self):
        self.sim = Sim(streams=1).__enter__()
        self.addCleanup(self.sim.__exit__, None, None, None)
        self.bus = PrivateBus().__enter__()
        self.addCleanup(self.bus.__exit__, None, None, None)
        self.bridge = Bridge(self.sim, bus=self.bus).__enter__()
        self.addCleanup(self.bridge.__exit__, None, None, None)
        self.bus_client = BusClient(self.bus.address)
        self.addCleanup(self.bus_client.close)

    def status_line(self):
        with self.bridge.connect() as client:
            client.send({'type': 'status'})
            while True:
                message = strict_json(client.recv_line())
                if message['type'] == 'bridge.status':
                    return message['payload']

    def assert_log_clean(self):
        with open(os.path.join(self.bridge.dir, 'daemon.log'), 'rb') as f:
            log = f.read()
        log.decode('utf-8')
        self.assertNotIn(b'\x1b', log)

    def test_reason_phrase_that_is_not_utf8(self):
        # A captive portal's Latin-1, an escape sequence, and far too long.
        reason = b'Acc\xe8s refus\xe9 \x1b[2J\x7f' + b'y' * 900
        self.sim.post('/sim/reject', {'count': 1, 'http_status': 503,
                                      'reason_base64': base64.b64encode(reason).decode()})
        start = len(self.bus_client.signals)
        with self.bridge.connect() as client:
            client.send({'type': 'subscribe', 'stream_id': 'stream_rsn001'})
            client.recv_type('bridge.state', where=lambda m: m['payload']['state'] == 'waiting')
            status = self.status_line()
        expected_start = ('handshake failed: HTTP 503 Acc' + REPLACEMENT + 's refus' + REPLACEMENT
                          + ' ' + REPLACEMENT + '[2J' + REPLACEMENT + 'yyy')
        last_error = status['last_error']
        self.assertTrue(last_error.startswith(expected_start), last_error)
        self.assertTrue(last_error.endswith('…'), last_error)
        self.assertLessEqual(len(last_error.encode()), TEXT_MAX_BYTES)
        # D-Bus: Get, GetAll and the PropertiesChanged that carried it.
        self.assertEqual(self.bus_client.get('LastError'), last_error)
        self.assertEqual(self.bus_client.get_all()['LastError'], ('s', last_error))
        self.bus_client.wait_signal(
            'PropertiesChanged', path=MANAGER_PATH, start=start,
            where=lambda s: s.args[1].get('LastError') == last_error)
        self.assert_log_clean()

    def test_error_message_and_close_reason(self):
        with self.bridge.connect() as client:
            client.send({'type': 'subscribe', 'stream_id': 'stream_rsn002'})
            client.recv_type('bridge.state', where=lambda m: m['payload']['state'] == 'connected')
            self.sim.post('/sim/emit', {'type': 'error', 'payload': {
                'code': 'e\x1b[31m', 'message': 'boom\nWATCHDOG=1\ufffe', 'details': {}}})
            expected = 'e' + REPLACEMENT + '[31m: boom' + REPLACEMENT + 'WATCHDOG=1' + REPLACEMENT
            wait_until(lambda: self.status_line()['last_error'] == expected, what=expected)
            self.assertEqual(self.bus_client.wait_property('LastError', expected), expected)
            self.sim.post('/sim/close', {'code': 4500, 'reason': 'bye\ufffe\n\x01'})
            client.recv_type('bridge.state', where=lambda m: m['payload']['state'] == 'waiting')
        reason = 'bye' + REPLACEMENT * 3
        self.assertEqual(self.status_line()['last_close_reason'], reason)
        self.assertEqual(self.bus_client.wait_property('LastCloseReason', reason), reason)
        self.assertEqual(self.bus_client.get_all()['LastCloseReason'], ('s', reason))
        self.assert_log_clean()


class ReloadErrors(unittest.TestCase):
    def test_reload_error_quoting_bytes_that_are_not_utf8(self):
        # The error quotes the bad value: Reload() must still be answered.
        with Sim(streams=1) as sim, PrivateBus() as bus, Bridge(sim, bus=bus) as bridge:
            client = BusClient(bus.address)
            with open(bridge.config_path, 'ab') as f:
                f.write(b'[Limits]\nMaxClients=\xff\xfe\x01\n')
            name, message = client.call_error('Reload', timeout=10)
            client.close()
            self.assertEqual(name, ERROR_PREFIX + 'Failed')
            self.assertIn('[Limits] MaxClients', message)
            self.assertIn(REPLACEMENT, message)


class OversizedFrames(unittest.TestCase):
    def test_frame_over_the_limit_gets_1009(self):
        limit = 1024 * 1024
        with Sim(streams=1) as sim, \
                Bridge(sim, config={'Limits': {'ClientQueueBytes': str(4 * limit)}}) as bridge, \
                bridge.connect() as client:
            stream = 'stream_big001'
            client.send({'type': 'subscribe', 'stream_id': stream})
            client.recv_type('bridge.state', where=lambda m: m['payload']['state'] == 'connected')
            wait_until(lambda: sim.upstream_subscriptions(stream), what='subscription')
            # At the limit (libsoup 3.2 takes 1 MiB): a valid event, delivered whole.
            event = json.dumps(chat(stream, 'at the limit'))
            sim.post('/sim/raw', {'text': event, 'pad_to': limit})
            line = client.recv_line()
            while strict_json(line)['type'] != 'chat.message':
                line = client.recv_line()
            self.assertEqual(len(line), limit)
            # One byte more: the bridge says 1009 before libsoup drops the TCP connection.
            sim.post('/sim/raw', {'text': event, 'pad_to': limit + 1})
            client.recv_type('bridge.state', where=lambda m: m['payload']['state'] == 'waiting')
            closes = wait_until(lambda: sim.stats()['closes'], what='the close record')
            self.assertEqual(closes[-1]['code'], 1009, closes)
            self.assertEqual(closes[-1]['initiator'], 'client', closes)
            status = bridge.status()
            self.assertEqual(status['last_close_code'], 1009)
            self.assertEqual(status['last_close_reason'], 'frame too big')
            self.assertEqual(status['last_error'],
                             'server sent a frame over 1 MiB; closed with 1009')
            # Backoff, then back.
            client.recv_type('bridge.state', where=lambda m: m['payload']['state'] == 'connected')
            self.assertNotIn('write error', bridge.log())


class InsecureUrls(unittest.TestCase):
    def start(self, url, extra=None):
        upstream = {'URL': url}
        upstream.update(extra or {})
        bridge = Bridge(None, config={'Upstream': upstream}, wait_ready=False)
        bridge.__enter__()
        self.addCleanup(bridge.__exit__, None, None, None)
        return bridge

    def test_clear_text_key_refused(self):
        bridge = self.start('ws://192.0.2.1:9/v1/streams')
        self.assertEqual(bridge.proc.wait(30), EX_CONFIG)
        self.assertIn('[Upstream] URL: ws:// would send the API key in clear text', bridge.log())

    def test_clear_text_allowed_when_asked_for(self):
        bridge = self.start('ws://192.0.2.1:9/v1/streams', {'AllowInsecure': 'true'})
        wait_until(lambda: os.path.exists(bridge.socket_path) or bridge.proc.poll() is not None,
                   what='the socket')
        self.assertIsNone(bridge.proc.poll(), bridge.log())
        self.assertIn('AllowInsecure=true: the API key goes to 192.0.2.1 in clear text',
                      bridge.log())

    def test_credentials_in_url_refused(self):
        bridge = self.start('wss://someone:hunter2@ws.wave.inc/v1/streams')
        self.assertEqual(bridge.proc.wait(30), EX_CONFIG)
        self.assertIn('[Upstream] URL: credentials in the URL', bridge.log())
        self.assertNotIn('hunter2', bridge.log())


if __name__ == '__main__':
    unittest.main()
