# SPDX-License-Identifier: MIT
"""The local WAVE endpoint ([WebSocket] Listen, docs/websocket.md) against the
real wave-bridged and wave-sim, with clients nobody here wrote: the WAVE
documentation's own WaveWebSocket class (js/wave-websocket-doc.js, changed
only in its URL) and the `ws` package of Node (Debian's node-ws).

Events come from /sim/emit on stream ids the simulator does not animate, so
every event a client sees is one the test sent.
"""

import base64
import json
import os
import queue
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

from wbtest import BRIDGE_BIN, DEFAULT_TIMEOUT, Bridge, Sim, emulated, wait_until

JS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'js')
# Debian's node-ws lives here; Node from elsewhere does not look there.
NODE_PATH = '/usr/share/nodejs'
NOBODY = 65534
NOGROUP = 65534
AS_NOBODY = ['setpriv', f'--reuid={NOBODY}', f'--regid={NOGROUP}', '--clear-groups']
EXIT_CONFIG = 78


def have_node_ws():
    if shutil.which('node') is None:
        return False
    env = dict(os.environ, NODE_PATH=NODE_PATH)
    return subprocess.run(['node', '-e', 'require("ws")'], env=env,
                          capture_output=True).returncode == 0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def started(stream_id):
    return {'type': 'stream.started',
            'payload': {'stream_id': stream_id, 'started_at': '2024-01-01T00:00:00Z',
                        'protocol': 'rtmp', 'ingest_endpoint': 'rtmp://ingest/x'}}


def analytics(stream_id, viewers):
    return {'type': 'analytics.update',
            'payload': {'stream_id': stream_id, 'concurrent_viewers': viewers,
                        'total_views': 10, 'peak_viewers': 7, 'average_watch_time': 12.5}}


def health(stream_id, bitrate=1000.0):
    return {'type': 'stream.health',
            'payload': {'stream_id': stream_id, 'bitrate': bitrate, 'fps': 30.0,
                        'packet_loss': 0.0, 'latency': 20.0}}



def raw_frame(opcode, payload, fin=True):
    """A client's frame, masked, built by hand (for what no client library
    sends on purpose)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    elif len(payload) < 65536:
        head += bytes([0x80 | 126]) + struct.pack('!H', len(payload))
    else:
        head += bytes([0x80 | 127]) + struct.pack('!Q', len(payload))
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def raw_connect(port, key, rcvbuf=None):
    """A WebSocket handshake by hand; the socket, past the 101 answer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(('127.0.0.1', port))
    s.sendall(f'GET /v1/streams?api_key={key} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n'
              'Upgrade: websocket\r\nConnection: Upgrade\r\n'
              f'Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n'
              'Sec-WebSocket-Version: 13\r\n\r\n'.encode())
    answer = b''
    while b'\r\n\r\n' not in answer:
        data = s.recv(4096)
        if not data:
            raise ConnectionError('closed during the handshake')
        answer += data
    if b' 101 ' not in answer.split(b'\r\n')[0]:
        raise ConnectionError(answer.split(b'\r\n')[0].decode())
    return s


def upstream_has(sim, stream_id):
    return bool(sim.upstream_subscriptions(stream_id))


_shared_js_dir = None


def js_dir_for(prefix):
    """JS_DIR, or for a client run as another user (prefix) a copy that user
    can read: a checkout under /root is closed to nobody."""
    global _shared_js_dir
    if not prefix:
        return JS_DIR
    if _shared_js_dir is None:
        _shared_js_dir = tempfile.mkdtemp(prefix='wb-js-')
        os.chmod(_shared_js_dir, 0o755)
        for name in os.listdir(JS_DIR):
            target = os.path.join(_shared_js_dir, name)
            shutil.copyfile(os.path.join(JS_DIR, name), target)
            os.chmod(target, 0o644)
    return _shared_js_dir


def tearDownModule():
    if _shared_js_dir is not None:
        shutil.rmtree(_shared_js_dir, ignore_errors=True)


class NodeProcess:
    """A Node program printing one line per event; lines are read by a thread."""

    def __init__(self, args, env=None, prefix=()):
        full_env = dict(os.environ, NODE_PATH=NODE_PATH)
        full_env.update(env or {})
        self.proc = subprocess.Popen(list(prefix) + ['node'] + args, cwd=js_dir_for(prefix),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=full_env)
        self.lines = queue.Queue()
        self.seen = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip('\n'))
        self.lines.put(None)

    def send_line(self, text):
        self.proc.stdin.write(text + '\n')
        self.proc.stdin.flush()

    def next_line(self, timeout=DEFAULT_TIMEOUT):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f'no output within {timeout}s; seen {self.seen[-5:]}') from None
        if line is None:
            raise EOFError(f'node exited: {self.proc.stderr.read()}')
        self.seen.append(line)
        return line

    def expect(self, predicate, timeout=DEFAULT_TIMEOUT, what='a line'):
        """Lines (parsed if JSON) until predicate(value) holds; returns that value."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f'no {what} within {timeout}s; seen {self.seen[-8:]}')
            line = self.next_line(remaining)
            try:
                value = json.loads(line)
            except ValueError:
                value = line
            if predicate(value):
                return value

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass


class Probe(NodeProcess):
    """js/probe.js: one `ws` connection; every stdin line is one message."""

    def __init__(self, url, origin=None, prefix=()):
        super().__init__(['probe.js', url] + ([origin] if origin else []), prefix=prefix)

    def send(self, message):
        self.send_line(json.dumps(message))

    def opened(self, timeout=DEFAULT_TIMEOUT):
        value = self.expect(lambda v: isinstance(v, dict) and
                            ('open' in v or 'close' in v or 'http_status' in v),
                            timeout, 'open')
        return value.get('open', False)

    def message(self, type_name, timeout=DEFAULT_TIMEOUT, where=None):
        value = self.expect(lambda v: isinstance(v, dict) and 'message' in v and
                            v['message'].get('type') == type_name and
                            (where is None or where(v['message'])), timeout, type_name)
        return value['message']

    def closed(self, timeout=DEFAULT_TIMEOUT):
        return self.expect(lambda v: isinstance(v, dict) and 'close' in v, timeout,
                           'close')['close']

    def messages_until_close(self, timeout=DEFAULT_TIMEOUT):
        got = []
        deadline = time.monotonic() + timeout
        while True:
            value = json.loads(self.next_line(max(0.1, deadline - time.monotonic())))
            if 'message' in value:
                got.append(value['message'])
            if 'close' in value:
                return got, value['close']


@unittest.skipUnless(have_node_ws(), 'needs node and the ws package (apt install nodejs node-ws)')
class WebSocketEndpoint(unittest.TestCase):
    def setUp(self):
        self.sim = Sim(streams=1, speed=1).__enter__()
        self.addCleanup(self.sim.__exit__, None, None, None)
        self.processes = []
        self.addCleanup(self._stop_processes)

    def _stop_processes(self):
        for process in self.processes:
            process.stop()

    def bridge(self, websocket=None, config=None, **kwargs):
        self.port = free_port()
        sections = {'WebSocket': {'Listen': f'127.0.0.1:{self.port}'}}
        sections['WebSocket'].update(websocket or {})
        for section, values in (config or {}).items():
            sections.setdefault(section, {}).update(values)
        bridge = Bridge(self.sim, config=sections, **kwargs)
        sections['WebSocket'].setdefault('LocalKeyFile', os.path.join(bridge.dir, 'state',
                                                                      'local-key'))
        bridge.__enter__()
        self.addCleanup(bridge.__exit__, None, None, None)
        bridge.local_key_path = sections['WebSocket']['LocalKeyFile']
        return bridge

    def local_key(self, bridge):
        with open(bridge.local_key_path) as f:
            return f.read().strip()

    def url(self, key, query=''):
        return f'ws://127.0.0.1:{self.port}/v1/streams?api_key={key}{query}'

    def probe(self, url, origin=None, prefix=()):
        probe = Probe(url, origin, prefix)
        self.processes.append(probe)
        return probe

    def doc_client(self, key, stream_id):
        client = NodeProcess(['doc-client.js', key, stream_id],
                             env={'WAVE_BRIDGE_ADDRESS': f'127.0.0.1:{self.port}'})
        self.processes.append(client)
        return client

    # ---- the doc's own client ---------------------------------------------

    def test_doc_client_gets_events_and_survives_an_upstream_reconnect(self):
        stream = 'stream_wsdoc1'
        bridge = self.bridge()
        client = self.doc_client(self.local_key(bridge), stream)
        client.expect(lambda v: v == 'Connected', what='Connected')
        # The class subscribes to stream.started and analytics.update.
        wait_until(lambda: upstream_has(self.sim, stream), what='the upstream subscription')
        self.assertEqual(sorted(self.sim.upstream_subscriptions(stream)[0]['events']),
                         ['analytics.update', 'stream.started'])

        def event(type_name, check=None):
            return client.expect(lambda v: isinstance(v, dict) and 'message' in v and
                                 v['message']['type'] == type_name and
                                 (check is None or check(v['message'])),
                                 what=type_name)['message']

        self.sim.post('/sim/emit', health(stream))  # not subscribed: never seen
        self.sim.post('/sim/emit', started(stream))
        self.sim.post('/sim/emit', analytics(stream, 11))
        self.assertEqual(event('stream.started')['payload']['protocol'], 'rtmp')
        message = event('analytics.update')
        self.assertEqual(message['payload']['concurrent_viewers'], 11)
        self.assertEqual(message, analytics(stream, 11), 'exactly what WAVE sent')

        # The bridge loses WAVE and comes back; the local connection stays.
        reconnects = bridge.status()['reconnects']
        self.sim.post('/sim/drop')
        wait_until(lambda: bridge.status()['reconnects'] > reconnects and
                   upstream_has(self.sim, stream), timeout=20, what='the bridge back upstream')
        self.sim.post('/sim/emit', analytics(stream, 22))
        event('analytics.update', lambda m: m['payload']['concurrent_viewers'] == 22)
        seen = '\n'.join(client.seen)
        self.assertEqual(client.seen.count('Connected'), 1, seen)
        self.assertNotIn('Disconnected', seen)
        self.assertNotIn('health', seen)
        # Only what the WAVE doc defines, no bridge notices.
        for line in client.seen:
            if line.startswith('{'):
                self.assertFalse(json.loads(line)['message']['type'].startswith('bridge.'), line)

    def test_chat_reaction_ping_and_errors_as_wave_sends_them(self):
        stream = 'stream_wschat'
        bridge = self.bridge()
        probe = self.probe(self.url(self.local_key(bridge)))
        self.assertTrue(probe.opened())
        probe.send({'type': 'subscribe', 'stream_id': stream, 'events': ['chat.message']})
        wait_until(lambda: upstream_has(self.sim, stream), what='the upstream subscription')
        probe.send({'type': 'chat.message', 'stream_id': stream, 'message': 'hi from ws'})
        echo = probe.message('chat.message')
        self.assertEqual(echo['payload']['message'], 'hi from ws')
        probe.send({'type': 'reaction.sent', 'stream_id': stream, 'reaction': '🔥'})
        wait_until(lambda: self.sim.stats()['received'].get('reaction.sent', 0) >= 1,
                   what='the reaction upstream')
        probe.send({'type': 'ping', 'timestamp': 1234})
        self.assertEqual(probe.message('pong')['payload'], {'timestamp': 1234})
        # Errors have WAVE's shape: code, message, details.
        probe.send_line('{"type":')
        error = probe.message('error')
        self.assertEqual(error['payload']['code'], 'invalid_json')
        self.assertEqual(set(error['payload']), {'code', 'message', 'details'})
        probe.send({'type': 'subscribe', 'stream_id': stream, 'events': ['nope']})
        error = probe.message('error')
        self.assertEqual(error['payload']['code'], 'invalid_message')
        self.assertEqual(error['payload']['details'],
                         {'type': 'subscribe', 'stream_id': stream})
        # The socket's own request is not WAVE's.
        probe.send({'type': 'status'})
        self.assertEqual(probe.message('error')['payload']['code'], 'unknown_type')
        # Unsubscribing ends the stream's events, without a reply.
        probe.send({'type': 'unsubscribe', 'stream_id': stream})
        wait_until(lambda: not upstream_has(self.sim, stream), what='the upstream unsubscribe')
        probe.send({'type': 'ping', 'timestamp': 5})
        self.assertEqual(probe.message('pong')['payload'], {'timestamp': 5})
        got = [json.loads(line) for line in probe.seen if line.startswith('{')]
        types = [v['message']['type'] for v in got if 'message' in v]
        self.assertNotIn('subscribed', types)
        self.assertNotIn('unsubscribed', types)
        self.assertNotIn('sent', types)

    def test_cache_replay_on_subscribe(self):
        stream = 'stream_wscache'
        bridge = self.bridge()
        first = self.probe(self.url(self.local_key(bridge)))
        self.assertTrue(first.opened())
        first.send({'type': 'subscribe', 'stream_id': stream})
        wait_until(lambda: upstream_has(self.sim, stream), what='the upstream subscription')
        self.sim.post('/sim/emit', analytics(stream, 33))
        first.message('analytics.update')
        second = self.probe(self.url(self.local_key(bridge)))
        self.assertTrue(second.opened())
        second.send({'type': 'subscribe', 'stream_id': stream, 'events': ['analytics.update']})
        replay = second.message('analytics.update')
        self.assertTrue(replay['cached'])
        self.assertEqual(replay['payload']['concurrent_viewers'], 33)

    def test_history_on_subscribe(self):
        stream = 'stream_wshist'
        bridge = self.bridge(config={'Limits': {'HistoryPerStream': '8'}})
        key = self.local_key(bridge)
        live = self.probe(self.url(key))
        self.assertTrue(live.opened())
        live.send({'type': 'subscribe', 'stream_id': stream,
                   'events': ['chat.message', 'reaction.received']})
        wait_until(lambda: upstream_has(self.sim, stream), what='the upstream subscription')
        for n in range(12):
            self.sim.post('/sim/emit', {'type': 'chat.message', 'payload': {
                'stream_id': stream, 'message_id': f'm{n}', 'user_id': 'u', 'username': 'a',
                'message': f'line {n}', 'timestamp': '2026-01-01T00:00:00Z'}})
        live.message('chat.message', where=lambda m: m['payload']['message'] == 'line 11')

        late = self.probe(self.url(key))
        self.assertTrue(late.opened())
        # Not a number of events: refused, nothing subscribed.
        late.send({'type': 'subscribe', 'stream_id': stream, 'history': -1})
        error = late.message('error')
        self.assertEqual(error['payload']['code'], 'invalid_message')
        # More than HistoryPerStream is cut to it; oldest first, marked cached.
        late.send({'type': 'subscribe', 'stream_id': stream, 'events': ['chat.message'],
                   'history': 50})
        # The pong comes after the replay: the subscription is in place.
        late.send({'type': 'ping', 'timestamp': 12})
        late.message('pong')
        self.sim.post('/sim/emit', {'type': 'chat.message', 'payload': {
            'stream_id': stream, 'message_id': 'm12', 'user_id': 'u', 'username': 'a',
            'message': 'line 12', 'timestamp': '2026-01-01T00:00:00Z'}})
        late.message('chat.message', where=lambda m: m['payload']['message'] == 'line 12')
        got = [json.loads(line)['message'] for line in late.seen
               if line.startswith('{"message"')]
        got = [m for m in got if m['type'] == 'chat.message']
        self.assertEqual([m['payload']['message'] for m in got],
                         [f'line {n}' for n in range(4, 13)])
        self.assertTrue(all(m.get('cached') for m in got[:-1]))
        self.assertNotIn('cached', got[-1])
        # What a client took live is never replayed to it.
        live.send({'type': 'subscribe', 'stream_id': stream, 'events': ['chat.message'],
                   'history': 8})
        live.send({'type': 'ping', 'timestamp': 99})
        live.message('pong')
        replayed = [json.loads(line)['message'] for line in live.seen
                    if line.startswith('{"message"')]
        self.assertFalse([m for m in replayed if m.get('cached')], replayed)

    # ---- bridge notices -------------------------------------------------

    def test_bridge_notices_only_on_request(self):
        stream = 'stream_wsnote'
        bridge = self.bridge()
        key = self.local_key(bridge)
        plain = self.probe(self.url(key))
        notices = self.probe(self.url(key, '&bridge_notices=1'))
        self.assertTrue(plain.opened())
        self.assertTrue(notices.opened())
        hello = notices.message('bridge.hello')
        self.assertIn('stream.health', hello['payload']['events'])
        for probe in (plain, notices):
            probe.send({'type': 'subscribe', 'stream_id': stream, 'events': ['stream.health']})
        wait_until(lambda: upstream_has(self.sim, stream), what='the upstream subscription')
        self.sim.post('/sim/drop')
        resync = notices.message('bridge.resync', timeout=20)
        self.assertEqual(resync['payload']['stream_id'], stream)
        wait_until(lambda: upstream_has(self.sim, stream), timeout=20, what='resubscribed')
        self.sim.post('/sim/emit', health(stream, 77.0))
        plain.message('stream.health', where=lambda m: m['payload']['bitrate'] == 77.0)
        notices.message('stream.health', where=lambda m: m['payload']['bitrate'] == 77.0)
        plain_types = [json.loads(line)['message']['type'] for line in plain.seen
                       if line.startswith('{"message"')]
        self.assertEqual(set(plain_types), {'stream.health'}, plain_types)
        notice_types = [json.loads(line)['message']['type'] for line in notices.seen
                        if line.startswith('{"message"')]
        self.assertIn('bridge.state', notice_types)

    # ---- refusals -------------------------------------------------------

    def test_listen_must_be_a_loopback_address(self):
        port = free_port()
        for listen in ['0.0.0.0:%d' % port, '192.0.2.1:%d' % port, '[::]:%d' % port,
                       'localhost:%d' % port, '[::ffff:127.0.0.1]:%d' % port, '127.0.0.1',
                       '127.0.0.1:0', '127.0.0.1:70000', '10.0.0.1']:
            with self.subTest(listen=listen):
                bridge = Bridge(self.sim, config={'WebSocket': {'Listen': listen}},
                                wait_ready=False)
                with bridge:
                    self.assertEqual(bridge.proc.wait(10), EXIT_CONFIG, bridge.log())
                    log = bridge.log()
                    self.assertIn('[WebSocket] Listen', log)
                    self.assertFalse(os.path.exists(bridge.socket_path))
        # 127.0.0.0/8 is loopback, all of it.
        bridge = self.bridge(websocket={'Listen': f'127.0.0.2:{free_port()}'})
        self.assertIn('Local WAVE endpoint on ws://127.0.0.2:', bridge.log())

    def test_off_by_default(self):
        with Bridge(self.sim) as bridge:
            self.assertNotIn('Local WAVE endpoint', bridge.log())

    def test_bad_key_closes_with_4401(self):
        bridge = self.bridge()
        key = self.local_key(bridge)
        for url in [self.url('wrong'), self.url(key[:-1]), self.url(key + 'x'),
                    f'ws://127.0.0.1:{self.port}/v1/streams',
                    # The real key is not a local key.
                    self.url(self.sim.api_key)]:
            with self.subTest(url=url.replace(key, 'KEY')):
                probe = self.probe(url)
                probe.send({'type': 'ping', 'timestamp': 1})
                messages, close = probe.messages_until_close()
                self.assertEqual(close['code'], 4401)
                self.assertEqual(messages, [])
        # The right one still works.
        probe = self.probe(self.url(key))
        self.assertTrue(probe.opened())
        probe.send({'type': 'ping', 'timestamp': 2})
        probe.message('pong')

    def test_origin_refused_unless_listed(self):
        bridge = self.bridge(websocket={'AllowedOrigins': 'http://overlay.example:8080 '
                                                          'https://dash.example'})
        key = self.local_key(bridge)
        for origin in ['http://evil.example', 'null', 'http://overlay.example',
                       'http://overlay.example:8080.evil.example', 'https://dash.example.evil']:
            with self.subTest(origin=origin):
                probe = self.probe(self.url(key), origin=origin)
                value = probe.expect(lambda v: isinstance(v, dict) and
                                     ('http_status' in v or 'open' in v), what='an answer')
                self.assertEqual(value, {'http_status': 403})
        self.assertIn('not in [WebSocket] AllowedOrigins', bridge.log())
        for origin in ['http://overlay.example:8080', 'https://dash.example',
                       'HTTPS://DASH.EXAMPLE']:
            with self.subTest(origin=origin):
                probe = self.probe(self.url(key), origin=origin)
                self.assertTrue(probe.opened())
                probe.send({'type': 'ping', 'timestamp': 3})
                probe.message('pong')

    def test_no_origin_allowed_by_default(self):
        bridge = self.bridge()
        probe = self.probe(self.url(self.local_key(bridge)), origin='http://127.0.0.1:8000')
        self.assertEqual(probe.expect(lambda v: isinstance(v, dict), what='an answer'),
                         {'http_status': 403})

    def test_over_the_message_allowance_closes_with_4429(self):
        bridge = self.bridge(websocket={'MessagesPerSecond': '5'})
        key = self.local_key(bridge)
        probe = self.probe(self.url(key))
        self.assertTrue(probe.opened())
        probe.send_line('FLOOD 50 {"type":"ping","timestamp":7}')
        messages, close = probe.messages_until_close()
        self.assertEqual(close['code'], 4429)
        pongs = [m for m in messages if m['type'] == 'pong']
        self.assertLessEqual(len(pongs), 5)
        self.assertEqual(messages[-1]['type'], 'error')
        self.assertEqual(messages[-1]['payload']['code'], 'rate_limited')
        # Others are not affected.
        other = self.probe(self.url(key))
        self.assertTrue(other.opened())
        other.send({'type': 'ping', 'timestamp': 8})
        other.message('pong')

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which('setpriv'),
                         'needs root and setpriv to run clients as nobody')
    @unittest.skipIf(emulated(), 'qemu-user cannot answer NETLINK_SOCK_DIAG: no peer uid')
    def test_a_flood_of_one_users_connections_is_bounded(self):
        bridge = self.bridge(config={'Limits': {'MaxClientsPerUser': '3'}})
        key = self.local_key(bridge)
        admitted = []
        for _ in range(3):
            probe = self.probe(self.url(key), prefix=AS_NOBODY)
            self.assertTrue(probe.opened())
            probe.send({'type': 'ping', 'timestamp': 1})
            probe.message('pong')
            admitted.append(probe)
        refused = self.probe(self.url(key), prefix=AS_NOBODY)
        messages, close = refused.messages_until_close()
        self.assertEqual(close['code'], 4429)
        self.assertEqual(messages[0]['payload']['code'], 'too_many_clients')
        self.assertIn('uid 65534', messages[0]['payload']['message'])
        self.assertIn('uid=65534', bridge.log())
        # Root (exempt) and the socket are not affected by nobody's quota.
        root = self.probe(self.url(key))
        self.assertTrue(root.opened())
        # One leaves, one more gets in.
        admitted[0].stop()

        def one_more():
            probe = self.probe(self.url(key), prefix=AS_NOBODY)
            probe.send({'type': 'ping', 'timestamp': 9})
            value = probe.expect(lambda v: isinstance(v, dict) and
                                 ('close' in v or v.get('message', {}).get('type') == 'pong'),
                                 what='pong or close')
            return 'message' in value
        wait_until(one_more, what='a free slot for nobody')

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which('setpriv'),
                         'needs root and setpriv to run clients as nobody')
    @unittest.skipIf(emulated(), 'qemu-user cannot answer NETLINK_SOCK_DIAG: no peer uid')
    def test_handshakes_are_bounded_per_user_and_in_time(self):
        # Connections that never send a request: 16 of one user wait for
        # their handshake at once, the rest are shut at once; those 16
        # are shut after 10 s; others are not affected meanwhile.
        bridge = self.bridge()
        script = '''
import json, socket, sys, time
port = int(sys.argv[1])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
def state():
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return closed
time.sleep(1)
print(json.dumps({"closed": state()}), flush=True)
time.sleep(10.5)
print(json.dumps({"closed": state()}), flush=True)
'''
        # /usr/bin/python3: nobody may not reach an interpreter under /root.
        child = subprocess.Popen(AS_NOBODY + ['/usr/bin/python3', '-c', script, str(self.port)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = child.stdout.readline()
            self.assertTrue(line, child.stderr.read() if child.poll() is not None else 'no output')
            first = json.loads(line)
            self.assertEqual(first, {'closed': 4})
            self.assertIn('too many handshakes of this user at once', bridge.log())
            # Root (another user) still gets in while nobody's 16 wait.
            probe = self.probe(self.url(self.local_key(bridge)))
            self.assertTrue(probe.opened())
            probe.send({'type': 'ping', 'timestamp': 4})
            probe.message('pong')
            second = json.loads(child.stdout.readline())
            self.assertEqual(second, {'closed': 20})
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
            child.stderr.close()

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which('setpriv'),
                         'needs root and setpriv to run clients as nobody')
    @unittest.skipIf(emulated(), 'qemu-user cannot answer NETLINK_SOCK_DIAG: no peer uid')
    def test_send_group_by_the_peers_uid(self):
        # nobody is not in adm: its chat is refused; root's goes out.
        stream = 'stream_wsgroup'
        bridge = self.bridge(config={'Access': {'SendGroup': 'adm'}})
        key = self.local_key(bridge)
        outsider = self.probe(self.url(key), prefix=AS_NOBODY)
        self.assertTrue(outsider.opened())
        outsider.send({'type': 'chat.message', 'stream_id': stream, 'message': 'not me'})
        error = outsider.message('error')
        self.assertEqual(error['payload']['code'], 'forbidden')
        self.assertIn("group 'adm'", error['payload']['message'])
        root = self.probe(self.url(key))
        self.assertTrue(root.opened())
        root.send({'type': 'subscribe', 'stream_id': stream, 'events': ['chat.message']})
        wait_until(lambda: upstream_has(self.sim, stream), what='the upstream subscription')
        root.send({'type': 'chat.message', 'stream_id': stream, 'message': 'from root'})
        self.assertEqual(root.message('chat.message')['payload']['message'], 'from root')
        self.assertEqual(self.sim.stats()['received'].get('chat.message', 0), 1)
        # nobody's group in the group database (its primary, nogroup) admits it.
        bridge.write_config({'Access': {'SendGroup': 'nogroup'}})
        bridge.reload()
        wait_until(lambda: bridge.log().count('reloading') >= 1, what='the reload')
        member = self.probe(self.url(key), prefix=AS_NOBODY)
        self.assertTrue(member.opened())
        member.send({'type': 'chat.message', 'stream_id': stream, 'message': 'from nobody'})
        self.assertEqual(root.message('chat.message')['payload']['message'], 'from nobody')

    def test_message_too_big_ends_the_connection(self):
        bridge = self.bridge(config={'Limits': {'MaxLineBytes': '1024'}})
        key = self.local_key(bridge)
        probe = self.probe(self.url(key))
        self.assertTrue(probe.opened())
        probe.send({'type': 'chat.message', 'stream_id': 's', 'message': 'x' * 2000})
        # libsoup 3.2 drops the connection without a close frame (1006);
        # later versions say 1009 (message too big).
        self.assertIn(probe.closed()['code'], (1006, 1009))
        other = self.probe(self.url(key))
        self.assertTrue(other.opened())
        other.send({'type': 'ping', 'timestamp': 1})
        other.message('pong')

    def test_a_message_of_endless_fragments_ends_the_connection(self):
        # libsoup 3.2 bounds each frame, not a message: the meter does.
        bridge = self.bridge(config={'Limits': {'MaxLineBytes': '1024'}})
        key = self.local_key(bridge)
        probe = self.probe(self.url(key))
        self.assertTrue(probe.opened())
        rss = bridge.rss_kib()
        probe.send_line('FRAGMENTS 2000 1000')
        self.assertIn(probe.closed()['code'], (1006, 1009))
        self.assertLess(bridge.rss_kib() - rss, 1024, 'the 2 MB message was not gathered')
        other = self.probe(self.url(key))
        self.assertTrue(other.opened())
        other.send({'type': 'ping', 'timestamp': 1})
        other.message('pong')

    def test_pongs_between_fragments_do_not_restart_the_budget(self):
        # RFC 6455 lets control frames interleave with a message's
        # fragments; a pong after each fragment once reset the meter, and
        # libsoup 3.2 gathered a 50 MB message with MaxLineBytes=1024.
        bridge = self.bridge(config={'Limits': {'MaxLineBytes': '1024'}})
        key = self.local_key(bridge)
        probe = self.probe(self.url(key))
        self.assertTrue(probe.opened())
        rss = bridge.rss_kib()
        probe.send_line('PONGFRAGMENTS 5000 1000')
        self.assertIn(probe.closed()['code'], (1006, 1009))
        self.assertLess(bridge.rss_kib() - rss, 1024, 'the 5 MB message was not gathered')
        # An idle client answering keepalives (pongs alone) is not cut.
        idle = self.probe(self.url(key))
        self.assertTrue(idle.opened())
        idle.send_line('PONGS 20000')
        idle.send({'type': 'ping', 'timestamp': 2})
        self.assertEqual(idle.message('pong')['payload']['timestamp'], 2)

    def test_a_peer_that_pings_but_never_reads_is_not_read(self):
        # libsoup answers every ping with a pong and holds what the socket
        # does not take without bound: a client sending pings (a message
        # now and then restarts the meter) and reading nothing grew the
        # daemon by megabytes a second. Now the bridge stops reading a peer
        # whose socket takes no output, and its pings wait in the kernel.
        bridge = self.bridge()
        key = self.local_key(bridge)
        rss = bridge.rss_kib()
        s = raw_connect(self.port, key, rcvbuf=4096)
        self.addCleanup(s.close)
        s.settimeout(3)
        batch = raw_frame(9, b'p' * 125) * 900 + raw_frame(1, b'{"type":"pong"}')
        sent = 0
        deadline = time.monotonic() + 20
        with self.assertRaises(socket.timeout, msg='the bridge kept reading'):
            while time.monotonic() < deadline:
                s.sendall(batch)
                sent += len(batch)
                time.sleep(1 / 40)  # under MessagesPerSecond
        self.assertLess(sent, 24 * 1024 * 1024)
        self.assertLess(bridge.rss_kib() - rss, 32 * 1024)
        # Others are served meanwhile.
        other = self.probe(self.url(key))
        self.assertTrue(other.opened())
        other.send({'type': 'ping', 'timestamp': 3})
        self.assertEqual(other.message('pong')['payload']['timestamp'], 3)

    @unittest.skipIf(emulated(), "under qemu-user RSS is the emulator's")
    def test_an_http_request_body_is_not_kept(self):
        # SoupServer would keep a request body of any size in memory: the
        # connection ends once the request passes 64 KiB.
        bridge = self.bridge()
        rss = bridge.rss_kib()
        sent = 0
        with socket.create_connection(('127.0.0.1', self.port), timeout=10) as s:
            s.sendall(b'POST /v1/streams HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                      b'Content-Length: 100000000\r\n\r\n')
            chunk = b'x' * 65536
            with self.assertRaises(OSError):
                while sent < 100000000:
                    s.sendall(chunk)
                    sent += len(chunk)
        self.assertLess(sent, 10000000)
        self.assertLess(bridge.rss_kib() - rss, 2048)
        probe = self.probe(self.url(self.local_key(bridge)))
        self.assertTrue(probe.opened())

    def test_shutdown_closes_with_1001(self):
        bridge = self.bridge()
        probe = self.probe(self.url(self.local_key(bridge)))
        self.assertTrue(probe.opened())
        probe.send({'type': 'ping', 'timestamp': 1})
        probe.message('pong')
        self.assertEqual(bridge.stop(), 0)
        close = probe.closed()
        self.assertEqual(close['code'], 1001)

    # ---- keys -----------------------------------------------------------

    def test_local_key_created_readable_by_group_and_rotated(self):
        bridge = self.bridge()
        path = bridge.local_key_path
        info = os.stat(path)
        self.assertEqual(stat.S_IMODE(info.st_mode), 0o640)
        self.assertEqual(info.st_gid, os.getegid())
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o750)
        old = self.local_key(bridge)
        self.assertRegex(old, r'^wave_local_[0-9a-f]{64}$')
        self.assertNotIn(old, bridge.log())
        probe = self.probe(self.url(old))
        self.assertTrue(probe.opened())
        # Rotation: remove the file and reload; holders of the old key are out.
        os.unlink(path)
        bridge.reload()
        self.assertEqual(probe.closed()['code'], 4401)
        wait_until(lambda: os.path.exists(path), what='a new local key')
        new = self.local_key(bridge)
        self.assertNotEqual(new, old)
        refused = self.probe(self.url(old))
        self.assertEqual(refused.closed()['code'], 4401)
        accepted = self.probe(self.url(new))
        self.assertTrue(accepted.opened())
        # A key written by hand is taken as it is on reload.
        with open(path, 'w') as f:
            f.write('my-own-local-key-0123456789\n')
        bridge.reload()
        self.assertEqual(accepted.closed()['code'], 4401)
        mine = self.probe(self.url('my-own-local-key-0123456789'))
        self.assertTrue(mine.opened())

    def test_local_key_may_not_be_the_real_key(self):
        port = free_port()
        bridge = Bridge(self.sim, api_key='the-real-key-of-the-account-0123',
                        config={'WebSocket': {'Listen': f'127.0.0.1:{port}'}}, wait_ready=False)
        key_path = os.path.join(bridge.dir, 'local-key')
        bridge.extra_config['WebSocket']['LocalKeyFile'] = key_path
        with open(key_path, 'w') as f:
            f.write('the-real-key-of-the-account-0123\n')
        with bridge:
            self.assertEqual(bridge.proc.wait(10), EXIT_CONFIG)
            self.assertIn('must not be the real API key', bridge.log())
            self.assertNotIn('the-real-key-of-the-account-0123', bridge.log())

    def test_real_key_never_reaches_a_local_client(self):
        stream = 'stream_wssecret'
        bridge = self.bridge()
        real = self.sim.api_key
        key = self.local_key(bridge)
        self.assertNotEqual(real, key)
        probe = self.probe(self.url(key, '&bridge_notices=1'))
        self.assertTrue(probe.opened())
        probe.send({'type': 'subscribe', 'stream_id': stream})
        wait_until(lambda: upstream_has(self.sim, stream), what='the upstream subscription')
        # Errors, upstream trouble and every notice the bridge has to say.
        probe.send({'type': 'status'})
        probe.send_line('not json')
        self.sim.post('/sim/emit', {'type': 'error', 'payload': {
            'code': 'server_error', 'message': 'oops', 'details': {'stream_id': stream}}})
        # A server quoting the key back (an error, a chat line) has it
        # replaced before anyone sees it, the history included.
        self.sim.post('/sim/emit', {'type': 'error', 'payload': {
            'code': 'invalid_api_key', 'message': f'bad key {real}',
            'details': {'stream_id': stream, 'api_key': real}}})
        probe.message('error', where=lambda m: m['payload']['code'] == 'invalid_api_key')
        self.sim.post('/sim/emit', {'type': 'chat.message', 'payload': {
            'stream_id': stream, 'message_id': 'k1', 'user_id': 'u1', 'username': 'u',
            'message': f'{real}{real}', 'timestamp': '2024-01-01T00:00:00Z'}})
        chat = probe.message('chat.message')
        self.assertEqual(chat['payload']['message'], '(api key removed)' * 2)
        late = self.probe(self.url(key))
        self.assertTrue(late.opened())
        late.send({'type': 'subscribe', 'stream_id': stream, 'history': 5})
        replayed = late.message('chat.message')
        self.assertTrue(replayed.get('cached'))
        self.assertEqual(replayed['payload']['message'], '(api key removed)' * 2)
        self.assertIn('The server sent the API key back', bridge.log())
        self.sim.post('/sim/close', {'code': 4500, 'reason': 'maintenance'})
        probe.message('bridge.resync', timeout=20)
        self.sim.post('/sim/emit', started(stream))
        probe.message('stream.started', where=lambda m: 'cached' not in m)
        # The handshake's HTTP answer, and a plain HTTP request.
        try:
            urllib.request.urlopen(f'http://127.0.0.1:{self.port}/v1/streams', timeout=5)
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors='replace') + str(error.headers)
        everything = '\n'.join(probe.seen + late.seen) + body
        self.assertGreater(len(probe.seen), 5)
        self.assertNotIn(real, everything)
        self.assertNotIn('REDACTED', everything)  # not even the redacted URL
        self.assertNotIn(real, bridge.log())


if __name__ == '__main__':
    unittest.main()
