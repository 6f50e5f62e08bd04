# SPDX-License-Identifier: MIT
"""The local Unix socket (DESIGN.md "Local Unix socket", docs/protocol.md),
against the real wave-bridged and wave-sim.

Events come from /sim/emit on stream ids the simulator does not animate, so
every event a test sees is one it sent. Upstream keeps message order, so an
event a client receives proves every earlier event was already fanned out:
tests end each burst with such a marker instead of sleeping.
"""

import grp
import json
import os
import resource
import socket
import subprocess
import time
import unittest

from wbtest import BRIDGE_BIN, Bridge, Sim, SocketClient, wait_until

ALL_EVENTS = sorted(['analytics.update', 'chat.message', 'reaction.received', 'stream.ended',
                     'stream.health', 'stream.started', 'viewer.joined', 'viewer.left'])
NOBODY = 65534
NOGROUP = 65534
# A group that exists on Debian and that nobody is not a member of.
SEND_GROUP = 'adm'


def health(stream_id, bitrate=1000.0):
    return {'type': 'stream.health',
            'payload': {'stream_id': stream_id, 'bitrate': bitrate, 'fps': 30.0,
                        'packet_loss': 0.0, 'latency': 20.0}}


def chat(stream_id, text):
    return {'type': 'chat.message',
            'payload': {'stream_id': stream_id, 'message_id': 'm-' + text, 'user_id': 'u1',
                        'username': 'alice', 'message': text,
                        'timestamp': '2024-01-01T00:00:00Z'}}


def started(stream_id):
    return {'type': 'stream.started',
            'payload': {'stream_id': stream_id, 'started_at': '2024-01-01T00:00:00Z',
                        'protocol': 'rtmp', 'ingest_endpoint': 'rtmp://ingest/x'}}


def analytics(stream_id, viewers=5):
    return {'type': 'analytics.update',
            'payload': {'stream_id': stream_id, 'concurrent_viewers': viewers,
                        'total_views': 10, 'peak_viewers': 7, 'average_watch_time': 12.5}}


def upstream_events(sim, stream_id):
    """The events upstream holds for stream_id, or None when not subscribed."""
    subs = sim.upstream_subscriptions(stream_id)
    if not subs:
        return None
    assert len(subs) == 1, subs
    return sorted(subs[0]['events'])


def wait_upstream(sim, stream_id, events):
    wait_until(lambda: upstream_events(sim, stream_id) == sorted(events),
               what=f'upstream subscription {stream_id} {events}')


def stream_events_until(client, done, timeout=10):
    """Stream events (bridge.* and replies skipped) until done(message) is true."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        message = client.recv(max(0.1, deadline - time.monotonic()))
        if message['type'].startswith('bridge.') or message['type'] in ('subscribed', 'pong'):
            continue
        got.append(message)
        if done(message):
            return got


def subscribe(client, stream_id, events=None, request_id=None):
    request = {'type': 'subscribe', 'stream_id': stream_id}
    if events is not None:
        request['events'] = events
    if request_id is not None:
        request['id'] = request_id
    client.send(request)
    return client.recv_type('subscribed')


def run_as(path, uid, gid, groups, request):
    """Connects as another user in a forked child; returns the reply lines."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            client = SocketClient(path)
            client.recv()  # bridge.hello
            client.send(request)
            reply = client.recv()
            while reply['type'] in ('bridge.state', 'bridge.resync'):
                reply = client.recv()
            os.write(write_end, json.dumps(reply).encode())
            status = 0
        except BaseException as error:  # noqa: B902 - report anything from the child
            os.write(write_end, json.dumps({'child_error': repr(error)}).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    data = b''
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    return json.loads(data)


def raise_nofile(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class SocketBasics(unittest.TestCase):
    def setUp(self):
        self.sim = Sim(streams=1, speed=1).__enter__()
        self.addCleanup(self.sim.__exit__, None, None, None)

    def bridge(self, **kwargs):
        bridge = Bridge(self.sim, **kwargs).__enter__()
        self.addCleanup(bridge.__exit__, None, None, None)
        return bridge

    def test_hello(self):
        bridge = self.bridge()
        self.assertEqual(os.stat(bridge.socket_path).st_mode & 0o777, 0o660)
        with bridge.connect() as client:
            payload = client.hello['payload']
            self.assertEqual(sorted(payload['events']), ALL_EVENTS)
            self.assertIsInstance(payload['version'], str)
            self.assertTrue(payload['version'])
            self.assertEqual(payload['state'], 'idle')

    def test_subscribe_ack_and_cache_replay(self):
        bridge = self.bridge()
        stream = 'stream_tst001'
        with bridge.connect() as first:
            first.send({'type': 'subscribe', 'stream_id': stream, 'id': 'sub-1'})
            # The ack comes first, before the state change (connecting) it causes.
            ack = first.recv()
            self.assertEqual(ack['type'], 'subscribed')
            self.assertEqual(ack['id'], 'sub-1')
            self.assertEqual(ack['payload'], {'stream_id': stream, 'events': ALL_EVENTS})
            wait_upstream(self.sim, stream, ALL_EVENTS)

            for message in (started(stream), health(stream, 1234.0), analytics(stream, 42)):
                self.sim.post('/sim/emit', message)
            got = stream_events_until(first, lambda m: m['type'] == 'analytics.update')
            self.assertEqual([m['type'] for m in got],
                             ['stream.started', 'stream.health', 'analytics.update'])
            self.assertEqual(got[1]['payload']['bitrate'], 1234.0)
            self.assertNotIn('cached', got[0])

            with bridge.connect() as second:
                second.send({'type': 'subscribe', 'stream_id': stream,
                             'events': ['stream.health', 'analytics.update', 'stream.started']})
                ack = second.recv_type('subscribed')
                self.assertNotIn('id', ack)
                self.assertEqual(ack['payload']['events'],
                                 ['analytics.update', 'stream.health', 'stream.started'])
                cached = {}
                while len(cached) < 3:
                    message = second.recv()
                    if message['type'].startswith('bridge.'):
                        continue
                    self.assertTrue(message.get('cached'), message)
                    self.assertGreaterEqual(message['age_ms'], 0)
                    self.assertLess(message['age_ms'], 60000)
                    cached[message['type']] = message
                self.assertEqual(set(cached), {'stream.started', 'stream.health',
                                               'analytics.update'})
                self.assertEqual(cached['stream.health']['payload']['bitrate'], 1234.0)
                self.assertEqual(cached['analytics.update']['payload']['concurrent_viewers'], 42)

                # Live again after the replay.
                self.sim.post('/sim/emit', health(stream, 99.0))
                live = stream_events_until(second, lambda m: m['type'] == 'stream.health')
                self.assertNotIn('cached', live[-1])
                self.assertEqual(live[-1]['payload']['bitrate'], 99.0)

    def test_unsubscribe(self):
        bridge = self.bridge()
        stream = 'stream_tst002'
        with bridge.connect() as client:
            subscribe(client, stream, ['stream.health'])
            wait_upstream(self.sim, stream, ['stream.health'])
            client.send({'type': 'unsubscribe', 'stream_id': stream, 'id': 5})
            reply = client.recv_type('unsubscribed')
            self.assertEqual(reply['id'], 5)
            self.assertEqual(reply['payload'], {'stream_id': stream, 'events': []})
            wait_until(lambda: upstream_events(self.sim, stream) is None,
                       what='upstream unsubscribe')
            # Not subscribed any more: an error, the connection stays.
            client.send({'type': 'unsubscribe', 'stream_id': stream, 'id': 6})
            error = client.recv_type('error')
            self.assertEqual(error['payload']['code'], 'invalid_message')
            self.assertEqual(error['id'], 6)
            self.assertEqual(error['payload']['details']['stream_id'], stream)

    def test_fan_out_filtering(self):
        bridge = self.bridge()
        s1, s2 = 'stream_tst011', 'stream_tst012'
        with bridge.connect() as c1, bridge.connect() as c2, bridge.connect() as c3:
            subscribe(c1, s1)
            subscribe(c2, s1, ['chat.message'])
            subscribe(c3, s1, ['stream.health'])
            subscribe(c3, s2, ['stream.health'])
            wait_upstream(self.sim, s1, ALL_EVENTS)
            wait_upstream(self.sim, s2, ['stream.health'])

            for message in (health(s1, 1.0), chat(s1, 'one'), health(s2, 2.0), chat(s2, 'two'),
                            analytics(s1), chat(s1, 'end'), health(s2, -1.0)):
                self.sim.post('/sim/emit', message)

            def summary(messages):
                return [(m['type'], m['payload']['stream_id']) for m in messages]

            got1 = stream_events_until(c1, lambda m: m['payload'].get('message') == 'end')
            self.assertEqual(summary(got1), [('stream.health', s1), ('chat.message', s1),
                                             ('analytics.update', s1), ('chat.message', s1)])
            got2 = stream_events_until(c2, lambda m: m['payload'].get('message') == 'end')
            self.assertEqual(summary(got2), [('chat.message', s1), ('chat.message', s1)])
            got3 = stream_events_until(c3, lambda m: m['payload'].get('bitrate') == -1.0)
            self.assertEqual(summary(got3), [('stream.health', s1), ('stream.health', s2),
                                             ('stream.health', s2)])

            # The union shrinks when c1 leaves: upstream keeps what c2, c3 want.
            c1.close()
            wait_upstream(self.sim, s1, ['chat.message', 'stream.health'])

    def test_union_refcount(self):
        bridge = self.bridge()
        stream = 'stream_tst021'
        first = bridge.connect()
        second = bridge.connect()
        try:
            subscribe(first, stream, ['stream.health'])
            subscribe(second, stream, ['stream.health'])
            wait_upstream(self.sim, stream, ['stream.health'])
            self.assertEqual(len(self.sim.upstream_subscriptions(stream)), 1)
            subscribes = self.sim.stats()['received']['subscribe']

            first.send({'type': 'unsubscribe', 'stream_id': stream})
            first.recv_type('unsubscribed')
            # Still wanted by the second client: upstream is not told anything.
            second.send({'type': 'ping'})
            second.recv_type('pong')
            self.assertEqual(upstream_events(self.sim, stream), ['stream.health'])
            self.assertEqual(self.sim.stats()['received'].get('unsubscribe', 0), 0)
            self.assertEqual(self.sim.stats()['received']['subscribe'], subscribes)

            # The last one leaves without unsubscribing: closing is enough.
            second.close()
            wait_until(lambda: upstream_events(self.sim, stream) is None,
                       what='upstream unsubscribe after the last client left')
        finally:
            first.close()
            second.close()

    def test_bad_lines_keep_the_connection(self):
        bridge = self.bridge()
        with bridge.connect() as client:
            cases = [
                (b'{nope\n', 'invalid_json', None, None),
                (b'[1,2]\n', 'invalid_json', None, None),
                (b'"text"\n', 'invalid_json', None, None),
                (b'{"type":"ping","x":"\xff\xfe"}\n', 'invalid_json', None, None),
                (b'[' * 100 + b']' * 100 + b'\n', 'invalid_json', None, None),
                (b'{"type":"bogus","id":7}\n', 'unknown_type', 7, None),
                (b'{"id":"x"}\n', 'invalid_message', 'x', None),
                (b'{"type":"subscribe","id":"a"}\n', 'invalid_message', 'a', None),
                (b'{"type":"subscribe","stream_id":"s1","events":["nope"],"id":"b"}\n',
                 'invalid_message', 'b', 's1'),
                (b'{"type":"subscribe","stream_id":"s1","events":"stream.health"}\n',
                 'invalid_message', None, 's1'),
                (b'{"type":"chat.message","stream_id":"s2","message":"","id":1.5}\n',
                 'invalid_message', 1.5, 's2'),
                (b'{"type":"stream.health","stream_id":"s3"}\n', 'invalid_message', None, 's3'),
                (b'{"type":"ping","id":{"nested":1}}\n', 'invalid_message', None, None),
            ]
            for raw, code, request_id, stream_id in cases:
                with self.subTest(raw=raw[:60]):
                    client.send_raw(raw)
                    error = client.recv_type('error')
                    self.assertEqual(error['payload']['code'], code)
                    self.assertIsInstance(error['payload']['message'], str)
                    self.assertIsInstance(error['payload']['details'], dict)
                    if request_id is None:
                        self.assertNotIn('id', error)
                    else:
                        self.assertEqual(error['id'], request_id)
                    self.assertEqual(error['payload']['details'].get('stream_id'), stream_id)
            # Empty lines are ignored, CRLF is accepted, and the connection lives on.
            client.send_raw(b'\n\r\n\n{"type":"ping","timestamp":5,"id":"crlf"}\r\n')
            pong = client.recv()
            self.assertEqual(pong, {'type': 'pong', 'payload': {'timestamp': 5}, 'id': 'crlf'})

    def test_line_too_long(self):
        limit = 1024
        bridge = self.bridge(config={'Limits': {'MaxLineBytes': str(limit)}})
        with bridge.connect() as client:
            # Exactly the limit (terminator excluded) is fine, with \r\n too.
            prefix = b'{"type":"ping","id":"edge","pad":"'
            line = prefix + b'x' * (limit - len(prefix) - 2) + b'"}'
            self.assertEqual(len(line), limit)
            client.send_raw(line + b'\r\n')
            self.assertEqual(client.recv_type('pong')['id'], 'edge')
            # One byte more, even before any newline arrives: error, then closed.
            client.send_raw(b'{"type":"ping","pad":"' + b'y' * (limit + 200))
            error = client.recv()
            self.assertEqual(error['type'], 'error')
            self.assertEqual(error['payload']['code'], 'line_too_long')
            self.assertTrue(client.is_closed_by_peer(timeout=5))
        with bridge.connect() as client:
            client.send_raw(b'{"type":"ping","pad":"' + b'z' * limit + b'"}\n')
            self.assertEqual(client.recv()['payload']['code'], 'line_too_long')
            self.assertTrue(client.is_closed_by_peer(timeout=5))

    def test_line_too_long_reaches_socat_still_sending(self):
        # `socat` piping a huge line is still writing when the bridge gives
        # up; if the bridge closed at once, socat would hit EPIPE and exit
        # before printing the error. The bridge shuts only its write side
        # and discards input until socat is done.
        bridge = self.bridge(config={'Limits': {'MaxLineBytes': '1024'}})
        line = b'{"type":"ping","pad":"' + b'w' * (4 << 20) + b'"}\n'
        for attempt in range(3):
            result = subprocess.run(['socat', '-t', '5', '-', f'UNIX-CONNECT:{bridge.socket_path}'],
                                    input=line, capture_output=True, timeout=30)
            self.assertIn(b'"line_too_long"', result.stdout, (attempt, result.stderr[-300:]))

    def test_ping_and_status(self):
        bridge = self.bridge()
        with bridge.connect() as client:
            client.send({'type': 'ping', 'timestamp': 123, 'id': 'p1'})
            self.assertEqual(client.recv(), {'type': 'pong', 'payload': {'timestamp': 123},
                                             'id': 'p1'})
            before = int(time.time() * 1000)
            client.send({'type': 'ping'})
            pong = client.recv()
            self.assertNotIn('id', pong)
            self.assertLessEqual(abs(pong['payload']['timestamp'] - before), 60000)

            with bridge.connect():
                client.send({'type': 'status', 'id': 1})
                status = client.recv_type('bridge.status')
                self.assertEqual(status['id'], 1)
                payload = status['payload']
                for key in ('state', 'upstream_url', 'upstream_rtt_us', 'connected_since',
                            'reconnects', 'last_close_code', 'last_error', 'clients',
                            'streams', 'events_received', 'events_delivered',
                            'events_dropped', 'version'):
                    self.assertIn(key, payload)
                self.assertEqual(payload['clients'], 2)
                self.assertNotIn(self.sim.api_key, json.dumps(status))

    def test_half_closed_client_keeps_receiving(self):
        bridge = self.bridge()
        stream = 'stream_tst031'
        client = bridge.connect()
        try:
            client.send({'type': 'subscribe', 'stream_id': stream, 'events': ['stream.health']})
            client.sock.shutdown(socket.SHUT_WR)
            client.recv_type('subscribed')
            wait_upstream(self.sim, stream, ['stream.health'])
            self.sim.post('/sim/emit', health(stream, 7.0))
            got = stream_events_until(client, lambda m: m['type'] == 'stream.health')
            self.assertEqual(got[-1]['payload']['bitrate'], 7.0)
            self.assertEqual(bridge.status()['clients'], 2)
        finally:
            client.close()
        # Fully closed now: the bridge notices without reading and lets go.
        wait_until(lambda: bridge.status()['clients'] == 1, what='half-closed client cleanup')
        wait_until(lambda: upstream_events(self.sim, stream) is None,
                   what='upstream unsubscribe')

    def test_too_many_clients(self):
        bridge = self.bridge(config={'Limits': {'MaxClients': '2'}})
        first = bridge.connect()
        second = bridge.connect()
        try:
            third = bridge.connect(read_hello=False)
            error = third.recv()
            self.assertEqual(error['type'], 'error')
            self.assertEqual(error['payload']['code'], 'too_many_clients')
            self.assertTrue(third.is_closed_by_peer(timeout=5))
            third.close()
            # The two admitted clients are unaffected.
            second.send({'type': 'ping', 'id': 2})
            self.assertEqual(second.recv_type('pong')['id'], 2)
            first.close()

            def admitted():
                with bridge.connect(read_hello=False) as client:
                    return client.recv()['type'] == 'bridge.hello'
            wait_until(admitted, what='a free client slot')
        finally:
            first.close()
            second.close()

    def test_replies_not_read_disconnects(self):
        bridge = self.bridge(config={'Limits': {'ClientQueueBytes': '4096',
                                                'SlowClientTimeout': '60'}})
        client = bridge.connect()
        try:
            # Far more pongs than the socket buffer plus twice the queue bound.
            request = b'{"type":"ping","timestamp":1}\n' * 1000
            try:
                for _ in range(100):
                    client.send_raw(request)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.assertTrue(client.is_closed_by_peer(timeout=10))
            wait_until(lambda: 'not reading its replies' in bridge.log(),
                       what='the disconnect in the log')
        finally:
            client.close()


class SocketSending(unittest.TestCase):
    def setUp(self):
        self.sim = Sim(streams=1, speed=1).__enter__()
        self.addCleanup(self.sim.__exit__, None, None, None)

    def bridge(self, **kwargs):
        bridge = Bridge(self.sim, **kwargs).__enter__()
        self.addCleanup(bridge.__exit__, None, None, None)
        return bridge

    def test_sends_over_the_upstream_pace_wait_and_all_go_out(self):
        # Past MessagesPerSecond, sends on a healthy connection are held for
        # the pace, not lost: each still gets exactly one "sent".
        bridge = self.bridge(config={'Upstream': {'MessagesPerSecond': '2'},
                                     'Limits': {'ChatPerMinute': '100'}})
        stream = 'stream_tst042'
        with bridge.connect() as client:
            client.send({'type': 'subscribe', 'stream_id': stream, 'events': ['stream.health']})
            client.recv_type('bridge.state', timeout=15,
                             where=lambda m: m['payload']['state'] == 'connected')
            time.sleep(1.5)  # the first pong, and a full bucket again
            before = self.sim.stats()['received'].get('chat.message', 0)
            started = time.monotonic()
            for i in range(6):
                client.send({'type': 'chat.message', 'stream_id': stream,
                             'message': f'paced {i}', 'id': i})
            ids = sorted(client.recv_type('sent', timeout=15)['id'] for _ in range(6))
            elapsed = time.monotonic() - started
            self.assertEqual(ids, list(range(6)))
            # 2 at once, then 2 per second.
            self.assertGreaterEqual(elapsed, 1.5)
            wait_until(lambda: self.sim.stats()['received'].get('chat.message', 0) == before + 6,
                       what='six chat messages upstream')

    def test_rate_limit_is_per_user_not_per_connection(self):
        # Reconnecting must not refill the allowance; another user has its own.
        bridge = self.bridge(config={'Limits': {'ChatPerMinute': '2'}})
        stream = 'stream_tst043'
        for i in range(2):
            with bridge.connect() as client:
                client.send({'type': 'chat.message', 'stream_id': stream, 'message': f'm{i}'})
                client.recv_type('sent', timeout=15)
        with bridge.connect() as client:
            client.send({'type': 'chat.message', 'stream_id': stream, 'message': 'again'})
            self.assertEqual(client.recv_type('error')['payload']['code'], 'rate_limited')
        # The socket is 0660 root-owned in the test dir: let nobody in for this.
        os.chmod(bridge.socket_path, 0o666)
        reply = run_as(bridge.socket_path, 65534, 65534, [],
                       {'type': 'chat.message', 'stream_id': stream, 'message': 'nobody'})
        self.assertEqual(reply['type'], 'sent', reply)

    def test_sent_and_rate_limited(self):
        bridge = self.bridge(config={'Limits': {'ChatPerMinute': '2',
                                                'ReactionsPerMinute': '1'}})
        stream = 'stream_tst041'
        with bridge.connect() as client:
            for i in range(2):
                client.send({'type': 'chat.message', 'stream_id': stream,
                             'message': f'hello {i}', 'id': i})
                sent = client.recv_type('sent', timeout=15)
                self.assertEqual(sent['id'], i)
                self.assertEqual(sent['payload'], {'stream_id': stream, 'type': 'chat.message'})
            client.send({'type': 'chat.message', 'stream_id': stream, 'message': 'x', 'id': 'c3'})
            error = client.recv_type('error')
            self.assertEqual(error['payload']['code'], 'rate_limited')
            self.assertEqual(error['id'], 'c3')
            self.assertEqual(error['payload']['details']['stream_id'], stream)

            client.send({'type': 'reaction.sent', 'stream_id': stream, 'reaction': '🔥',
                         'id': 'r1'})
            self.assertEqual(client.recv_type('sent')['payload']['type'], 'reaction.sent')
            client.send({'type': 'reaction.sent', 'stream_id': stream, 'reaction': '🔥',
                         'id': 'r2'})
            self.assertEqual(client.recv_type('error')['payload']['code'], 'rate_limited')
            # `sent` means handed to the WebSocket; the simulator counts it a moment later.
            wait_until(lambda: self.sim.stats()['received'].get('chat.message') == 2
                       and self.sim.stats()['received'].get('reaction.sent') == 1,
                       what='two chats and one reaction at the simulator')

    def test_send_group(self):
        bridge = self.bridge(config={'Access': {'SendGroup': SEND_GROUP}})
        # The bridge's socket is 0660 root:root; let the test's other users in.
        os.chmod(bridge.socket_path, 0o666)
        group = grp.getgrnam(SEND_GROUP).gr_gid
        stream = 'stream_tst051'
        request = {'type': 'chat.message', 'stream_id': stream, 'message': 'hi', 'id': 'f'}

        reply = run_as(bridge.socket_path, NOBODY, NOGROUP, [], request)
        self.assertEqual(reply['type'], 'error', reply)
        self.assertEqual(reply['payload']['code'], 'forbidden')
        self.assertEqual(reply['id'], 'f')
        self.assertEqual(reply['payload']['details']['stream_id'], stream)
        self.assertEqual(self.sim.stats()['received'].get('chat.message', 0), 0)

        # Reading is still allowed for non-members.
        reply = run_as(bridge.socket_path, NOBODY, NOGROUP, [],
                       {'type': 'subscribe', 'stream_id': stream, 'id': 's'})
        self.assertEqual(reply['type'], 'subscribed', reply)

        # Members by supplementary group (SO_PEERGROUPS) and by primary group may send.
        reply = run_as(bridge.socket_path, NOBODY, NOGROUP, [group], request)
        self.assertEqual(reply['type'], 'sent', reply)
        reply = run_as(bridge.socket_path, NOBODY, group, [], request)
        self.assertEqual(reply['type'], 'sent', reply)
        # root is always allowed.
        with bridge.connect() as client:
            client.send(request)
            self.assertEqual(client.recv_type('sent', timeout=15)['id'], 'f')
        # `sent` means handed to the WebSocket; the simulator reads it a moment later.
        wait_until(lambda: self.sim.stats()['received'].get('chat.message') == 3,
                   what='three chats at the simulator')

    def test_unknown_send_group_fails_closed(self):
        bridge = self.bridge(config={'Access': {'SendGroup': 'no-such-group-wb'}})
        os.chmod(bridge.socket_path, 0o666)
        request = {'type': 'reaction.sent', 'stream_id': 'stream_tst052', 'reaction': 'x'}
        reply = run_as(bridge.socket_path, NOBODY, NOGROUP, [NOGROUP], request)
        self.assertEqual(reply['payload']['code'], 'forbidden', reply)
        with bridge.connect() as client:
            client.send(request)
            self.assertEqual(client.recv_type('sent', timeout=15)['payload']['type'],
                             'reaction.sent')
        self.assertIn('no-such-group-wb', bridge.log())

    def test_reload_applies_send_group_and_limits(self):
        bridge = self.bridge()
        os.chmod(bridge.socket_path, 0o666)
        request = {'type': 'reaction.sent', 'stream_id': 'stream_tst053', 'reaction': 'x'}
        self.assertEqual(run_as(bridge.socket_path, NOBODY, NOGROUP, [], request)['type'],
                         'sent')
        with bridge.connect() as before:
            bridge.write_config({'Access': {'SendGroup': SEND_GROUP},
                                 'Limits': {'MaxLineBytes': '1024'}})
            bridge.reload()
            wait_until(lambda: run_as(bridge.socket_path, NOBODY, NOGROUP, [], request)
                       .get('payload', {}).get('code') == 'forbidden',
                       what='SendGroup after SIGHUP')
            # Connections made before the reload get the new limits too.
            before.send_raw(b'{"type":"ping","pad":"' + b'x' * 1100 + b'"}\n')
            self.assertEqual(before.recv_type('error')['payload']['code'], 'line_too_long')

    def test_send_failed_while_upstream_down(self):
        self.sim.post('/sim/reject', {'count': 100000, 'http_status': 503})
        bridge = self.bridge(config={'Limits': {'SendQueueTimeout': '0.5'}})
        with bridge.connect() as client:
            client.send({'type': 'chat.message', 'stream_id': 'stream_tst061',
                         'message': 'lost?', 'id': 'q'})
            error = client.recv_type('error', timeout=15)
            self.assertEqual(error['payload']['code'], 'send_failed')
            self.assertEqual(error['id'], 'q')
            self.assertEqual(error['payload']['details']['stream_id'], 'stream_tst061')

    def test_not_connected_when_auth_failed(self):
        bridge = self.bridge(api_key='wrong_key')
        with bridge.connect() as client:
            client.send({'type': 'subscribe', 'stream_id': 'stream_tst071'})
            client.recv_type('bridge.state', timeout=15,
                             where=lambda m: m['payload'].get('state') == 'auth-failed')
            client.send({'type': 'reaction.sent', 'stream_id': 'stream_tst071',
                         'reaction': 'x', 'id': 'nc'})
            error = client.recv_type('error', timeout=15)
            self.assertEqual(error['payload']['code'], 'not_connected')
            self.assertEqual(error['id'], 'nc')


class SocketUpstreamEvents(unittest.TestCase):
    def setUp(self):
        self.sim = Sim(streams=1, speed=1).__enter__()
        self.addCleanup(self.sim.__exit__, None, None, None)

    def test_state_and_resync_after_reconnect(self):
        with Bridge(self.sim) as bridge, bridge.connect() as client, \
                bridge.connect() as bystander:
            streams = ['stream_tst081', 'stream_tst082']
            for stream in streams:
                subscribe(client, stream, ['stream.health'])
            client.recv_type('bridge.state', timeout=15,
                             where=lambda m: m['payload']['state'] == 'connected')
            # Every client hears about state changes, subscribed or not.
            bystander.recv_type('bridge.state', timeout=15,
                                where=lambda m: m['payload']['state'] == 'connected')
            for stream in streams:
                wait_upstream(self.sim, stream, ['stream.health'])

            self.sim.post('/sim/drop')
            states = []
            resynced = {}
            deadline = time.monotonic() + 20
            while len(resynced) < len(streams):
                message = client.recv(max(0.1, deadline - time.monotonic()))
                if message['type'] == 'bridge.state':
                    states.append(message['payload']['state'])
                elif message['type'] == 'bridge.resync':
                    resynced[message['payload']['stream_id']] = message['payload']['gap_ms']
            self.assertEqual(sorted(resynced), streams)
            for gap in resynced.values():
                self.assertGreaterEqual(gap, 0)
                self.assertLess(gap, 60000)
            self.assertIn('connected', states)
            self.assertNotEqual(states[0], 'connected', states)
            # The bystander subscribed to nothing, so it gets no resync.
            bystander.send({'type': 'ping', 'id': 'b'})
            while True:
                message = bystander.recv()
                self.assertNotEqual(message['type'], 'bridge.resync')
                if message['type'] == 'pong':
                    break
            # Events flow again after the reconnect.
            for stream in streams:
                wait_upstream(self.sim, stream, ['stream.health'])
            self.sim.post('/sim/emit', health(streams[1], 5.0))
            got = stream_events_until(client, lambda m: m['type'] == 'stream.health')
            self.assertEqual(got[-1]['payload']['bitrate'], 5.0)


    def test_oversized_event_does_not_wedge_a_reading_client(self):
        # One event bigger than the whole queue bound, into an empty queue:
        # delivered, and the client is not left "congested" with nothing to
        # drain (which would drop everything after and cut it as slow).
        stream = 'stream_tst093'
        config = {'Limits': {'ClientQueueBytes': '4096', 'SlowClientTimeout': '2'}}
        with Bridge(self.sim, config=config) as bridge, bridge.connect() as client:
            subscribe(client, stream, ['chat.message', 'stream.health'])
            wait_upstream(self.sim, stream, ['chat.message', 'stream.health'])
            self.sim.post('/sim/emit', {'type': 'chat.message', 'payload': {
                'stream_id': stream, 'message_id': 'm1', 'user_id': 'u', 'username': 'big',
                'message': 'x' * 5000, 'timestamp': '2026-01-01T00:00:00Z'}})
            big = client.recv_type('chat.message')
            self.assertEqual(len(big['payload']['message']), 5000)
            time.sleep(2.5)
            for bitrate in (1.0, 2.0, 3.0):
                self.sim.post('/sim/emit', health(stream, bitrate))
            got = [client.recv_type('stream.health')['payload']['bitrate'] for _ in range(3)]
            self.assertEqual(got, [1.0, 2.0, 3.0])

    def test_no_resync_after_an_idle_period(self):
        # A loss that nobody was subscribed across is no gap for anyone.
        stream = 'stream_tst094'
        with Bridge(self.sim) as bridge:
            with bridge.connect() as first:
                subscribe(first, stream, ['stream.health'])
                wait_upstream(self.sim, stream, ['stream.health'])
                self.sim.post('/sim/drop')
            wait_until(lambda: bridge.status()['state'] == 'idle', timeout=15,
                       what='the bridge to go idle')
            with bridge.connect() as second:
                subscribe(second, 'stream_tst095', ['stream.health'])
                second.recv_type('bridge.state', timeout=15,
                                 where=lambda m: m['payload']['state'] == 'connected')
                second.send({'type': 'ping', 'id': 'after'})
                while True:
                    message = second.recv()
                    self.assertNotEqual(message['type'], 'bridge.resync', message)
                    if message['type'] == 'pong':
                        break

    def test_many_subscriptions_stay_under_the_upstream_rate_limit(self):
        # One client with 60 streams: unpaced, the re-sent union after a
        # reconnect exceeds wave-sim's 50 messages/s and earns 4429 again and
        # again. Paced at MessagesPerSecond (default 20), it never does.
        streams = [f'stream_pace{i:03d}' for i in range(60)]
        with Bridge(self.sim) as bridge, bridge.connect() as client:
            started = time.monotonic()
            for stream in streams:
                client.send({'type': 'subscribe', 'stream_id': stream, 'events': ['stream.health']})
            wait_until(lambda: len({s['stream_id'] for s in self.sim.upstream_subscriptions()
                                    if s['stream_id'] in streams}) == 60,
                       timeout=30, what='60 upstream subscriptions')
            # 20 at once, the other 40 at 20/s.
            self.assertGreaterEqual(time.monotonic() - started, 1.5)
            self.sim.post('/sim/drop')
            client.recv_type('bridge.resync', timeout=30)
            wait_until(lambda: len({s['stream_id'] for s in self.sim.upstream_subscriptions()
                                    if s['stream_id'] in streams}) == 60,
                       timeout=30, what='60 upstream subscriptions after the reconnect')
            closes = [c.get('code') for c in self.sim.stats().get('closes', [])]
            self.assertNotIn(4429, closes)
            self.assertEqual(bridge.status()['state'], 'connected')

    def test_server_ping_is_answered(self):
        # WAVE's ping is bidirectional: the bridge answers the server's.
        stream = 'stream_tst096'
        with Bridge(self.sim) as bridge, bridge.connect() as client:
            subscribe(client, stream, ['stream.health'])
            wait_upstream(self.sim, stream, ['stream.health'])
            before = self.sim.stats()['received'].get('pong', 0)
            self.sim.post('/sim/emit', {'type': 'ping', 'payload': {'timestamp': 1234}})
            wait_until(lambda: self.sim.stats()['received'].get('pong', 0) == before + 1,
                       what='the pong upstream')
            # The ping is the bridge's business, not the clients'.
            client.send({'type': 'ping', 'id': 'mine'})
            while True:
                message = client.recv()
                self.assertNotEqual(message['type'], 'ping', message)
                if message['type'] == 'pong':
                    self.assertEqual(message['id'], 'mine')
                    break

    def test_subscribe_reconnects_after_server_close_1000(self):
        """DESIGN.md: after a 1000 from the server the bridge stays closed
        until local demand; a new subscriber is demand even when the stream
        is already in the union (so nothing new is sent upstream)."""
        stream = 'stream_tst091'
        with Bridge(self.sim) as bridge, bridge.connect() as first:
            subscribe(first, stream, ['stream.health'])
            wait_upstream(self.sim, stream, ['stream.health'])
            self.sim.post('/sim/close', {'code': 1000, 'reason': 'bye'})
            first.recv_type('bridge.state', timeout=15,
                            where=lambda m: m['payload']['state'] == 'closed')
            # Parked: no retry by itself.
            time.sleep(1.0)
            self.assertEqual(bridge.status()['state'], 'closed')
            with bridge.connect() as second:
                self.assertEqual(second.hello['payload']['state'], 'closed')
                subscribe(second, stream, ['stream.health'])
                second.recv_type('bridge.state', timeout=15,
                                 where=lambda m: m['payload']['state'] == 'connected')
                wait_upstream(self.sim, stream, ['stream.health'])
                self.sim.post('/sim/emit', health(stream, 7.0))
                got = stream_events_until(second, lambda m: m['type'] == 'stream.health')
                self.assertEqual(got[-1]['payload']['bitrate'], 7.0)

class SocketSlowClients(unittest.TestCase):
    def setUp(self):
        self.sim = Sim(streams=1, speed=1).__enter__()
        self.addCleanup(self.sim.__exit__, None, None, None)

    def run_flood(self, slow_timeout):
        stream = 'stream_tst091'
        count, size, rate = 8000, 1000, 2000
        config = {'Limits': {'ClientQueueBytes': str(1024 * 1024),
                             'SlowClientTimeout': str(slow_timeout)}}
        bridge = Bridge(self.sim, config=config).__enter__()
        self.addCleanup(bridge.__exit__, None, None, None)
        fast = bridge.connect()
        slow = bridge.connect()
        self.addCleanup(fast.close)
        self.addCleanup(slow.close)
        subscribe(fast, stream, ['chat.message'])
        subscribe(slow, stream, ['chat.message'])
        # From here on the slow client reads nothing. The kernel holds only
        # the bridge's SO_SNDBUF worth (~200 KiB) for it; the rest is the
        # bridge's queue, bounded at ClientQueueBytes.
        wait_upstream(self.sim, stream, ['chat.message'])
        rss_before = bridge.rss_kib()

        self.sim.post('/sim/flood', {'stream_id': stream, 'type': 'chat.message',
                                     'rate': rate, 'size': size, 'count': count})
        received = 0
        rss_peak = rss_before
        deadline = time.monotonic() + 60
        while received < count:
            message = fast.recv(max(0.1, deadline - time.monotonic()))
            if message['type'] == 'chat.message':
                received += 1
                if received % 500 == 0:
                    rss_peak = max(rss_peak, bridge.rss_kib())
            else:
                self.assertNotEqual(message['type'], 'bridge.dropped')
        self.assertEqual(received, count)
        # Unbounded queueing would hold the whole flood (~9 MB) for the slow
        # one. AddressSanitizer's quarantine keeps freed memory: no bound then.
        if not bridge.sanitized():
            self.assertLess(rss_peak - rss_before, 4 * 1024,
                            f'RSS grew from {rss_before} to {rss_peak} KiB')
        return bridge, slow, count

    def test_slow_client_gets_dropped_notice(self):
        bridge, slow, count = self.run_flood(slow_timeout=60)
        events = 0
        dropped = 0
        # Reading now: the backlog, one bridge.dropped, and the books balance.
        while events + dropped < count:
            message = slow.recv(timeout=15)
            if message['type'] == 'chat.message':
                events += 1
            elif message['type'] == 'bridge.dropped':
                self.assertGreater(message['payload']['count'], 0)
                dropped += message['payload']['count']
        self.assertGreater(dropped, 0)
        self.assertEqual(events + dropped, count)
        slow.send({'type': 'ping', 'id': 'alive'})
        self.assertEqual(slow.recv_type('pong')['id'], 'alive')
        self.assertGreaterEqual(bridge.status()['events_dropped'], dropped)

    def test_stuck_client_is_disconnected(self):
        bridge, slow, count = self.run_flood(slow_timeout=1)
        wait_until(lambda: 'too slow' in bridge.log(), timeout=20,
                   what='the slow client disconnect in the log')
        self.assertTrue(slow.is_closed_by_peer(timeout=15))
        self.assertEqual(bridge.status()['clients'], 2)


class SocketManyClients(unittest.TestCase):
    def test_thousand_clients_one_upstream_subscription(self):
        n = 1000
        if raise_nofile(n + 200) < n + 100:
            self.skipTest('RLIMIT_NOFILE hard limit too low for 1000 clients')
        stream = 'stream_tst101'
        with Sim(streams=1, speed=1) as sim, Bridge(sim) as bridge:
            clients = []
            try:
                for _ in range(n):
                    client = bridge.connect(timeout=30)
                    client.send({'type': 'subscribe', 'stream_id': stream,
                                 'events': ['stream.health']})
                    clients.append(client)
                for client in clients:
                    client.recv_type('subscribed', timeout=30)
                wait_upstream(sim, stream, ['stream.health'])
                self.assertEqual(len(sim.upstream_subscriptions(stream)), 1)
                self.assertEqual(sim.stats()['connections'], 1)

                sim.post('/sim/emit', health(stream, 321.0))
                for client in clients:
                    message = client.recv_type('stream.health', timeout=30)
                    self.assertEqual(message['payload']['bitrate'], 321.0)
                self.assertEqual(bridge.status()['clients'], n + 1)
            finally:
                for client in clients:
                    client.close()
            wait_until(lambda: upstream_events(sim, stream) is None, timeout=30,
                       what='upstream unsubscribe after 1000 clients left')


class SocketOutOfFiles(unittest.TestCase):
    def test_accept_resumes_after_emfile(self):
        limit = 48
        with Sim(streams=1, speed=1) as sim:
            bridge = Bridge(sim).__enter__()
            self.addCleanup(bridge.__exit__, None, None, None)
            # Squeeze the running daemon's open-files limit (like prlimit(1)).
            resource.prlimit(bridge.proc.pid, resource.RLIMIT_NOFILE, (limit, limit))

            clients = []
            self.addCleanup(lambda: [c.close() for c in clients])
            waiting = None
            for _ in range(limit + 10):
                client = bridge.connect(read_hello=False)
                clients.append(client)
                try:
                    client.recv(timeout=1)
                except TimeoutError:
                    waiting = client  # connected in the backlog, not accepted
                    break
            self.assertIsNotNone(waiting, 'never ran out of descriptors')
            wait_until(lambda: 'Cannot accept local connections' in bridge.log(),
                       what='the EMFILE warning')
            for client in clients[:5]:
                client.close()
            self.assertEqual(waiting.recv(timeout=10)['type'], 'bridge.hello')
            # One warning per episode, not one per retry.
            self.assertEqual(bridge.log().count('Cannot accept local connections'), 1)
            self.assertIn('Accepting local connections again', bridge.log())
            waiting.send({'type': 'ping', 'id': 'late'})
            self.assertEqual(waiting.recv_type('pong')['id'], 'late')
            self.assertIsNone(bridge.proc.poll())


class SocketPath(unittest.TestCase):
    def setUp(self):
        self.sim = Sim(streams=1, speed=1).__enter__()
        self.addCleanup(self.sim.__exit__, None, None, None)

    def test_stale_socket_replaced(self):
        bridge = Bridge(self.sim, wait_ready=False)
        self.addCleanup(bridge.__exit__, None, None, None)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(bridge.socket_path)
        stale.close()  # the node stays, nobody listens: what a crash leaves
        bridge.__enter__()

        def connects():
            try:
                with bridge.connect(timeout=2) as client:
                    return client.hello['type'] == 'bridge.hello'
            except (ConnectionRefusedError, FileNotFoundError):
                return False
        wait_until(connects, what='the bridge on the replaced socket')
        self.assertIsNone(bridge.proc.poll())
        self.assertEqual(os.stat(bridge.socket_path).st_mode & 0o777, 0o660)

    def test_second_daemon_refuses(self):
        with Bridge(self.sim) as bridge:
            second = subprocess.run([BRIDGE_BIN, f'--config={bridge.config_path}', '--bus=none'],
                                    capture_output=True, text=True, timeout=30, env=bridge.env)
            self.assertNotEqual(second.returncode, 0)
            self.assertIn('already listening', second.stderr)
            # The first one still owns and serves its socket.
            with bridge.connect() as client:
                client.send({'type': 'ping', 'id': 1})
                self.assertEqual(client.recv_type('pong')['id'], 1)
            # A clean shutdown removes the node it created.
            self.assertEqual(bridge.stop(), 0)
            self.assertFalse(os.path.exists(bridge.socket_path))

    def test_parent_directory_created(self):
        bridge = Bridge(self.sim, wait_ready=False)
        self.addCleanup(bridge.__exit__, None, None, None)
        bridge.socket_path = os.path.join(bridge.dir, 'run', 'sub', 'wave.sock')
        bridge.__enter__()
        wait_until(lambda: os.path.exists(bridge.socket_path) or bridge.proc.poll() is not None,
                   what='the socket in a new directory')
        self.assertIsNone(bridge.proc.poll(), bridge.log())
        self.assertEqual(os.stat(os.path.dirname(bridge.socket_path)).st_mode & 0o777, 0o755)
        with bridge.connect() as client:
            self.assertEqual(client.hello['type'], 'bridge.hello')


if __name__ == '__main__':
    unittest.main()
