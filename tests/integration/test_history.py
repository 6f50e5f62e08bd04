# SPDX-License-Identifier: MIT
"""History on subscribe (issue 16): the last chat messages and reactions of
a stream, replayed after the state cache and before live events, against
the real wave-bridged, wave-sim and a private dbus-daemon: the socket's
"history", D-Bus GetHistory, `wavectl tail --history` and the dashboard.

Events come from /sim/emit on a stream id the simulator does not animate,
so every event a client sees is one the test sent, and upstream keeps their
order: a client that received the last of a burst was fanned out all of it.
"""

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import termios
import threading
import time
import unittest

import gi

gi.require_version('Gio', '2.0')
from gi.repository import GLib  # noqa: E402

from test_dbus import BusClient, stream_path  # noqa: E402
from test_wavectl import Tail, base_env  # noqa: E402
from wbtest import WAVECTL_BIN, Bridge, PrivateBus, Sim, wait_until  # noqa: E402

TIMEOUT = 30
STREAM = 'hist_stream01'
STREAM_IFACE = 'inc.wave.Bridge1.Stream'
LIMIT = 30


def chat(n, stream=STREAM, text=None):
    return {'type': 'chat.message',
            'payload': {'stream_id': stream, 'message_id': f'msg_{n}', 'user_id': f'u{n % 3}',
                        'username': f'user{n % 3}', 'message': text or f'history line {n}',
                        'timestamp': '2026-01-01T12:00:00Z'}}


def reaction(n, stream=STREAM):
    return {'type': 'reaction.received',
            'payload': {'stream_id': stream, 'reaction': '🎉', 'count': 1000 + n,
                        'timestamp': '2026-01-01T12:00:00Z'}}


def health(stream=STREAM, bitrate=2500.0):
    return {'type': 'stream.health',
            'payload': {'stream_id': stream, 'bitrate': bitrate, 'fps': 30.0,
                        'packet_loss': 0.0, 'latency': 20.0}}


def mixed(count, start=0):
    """Chat messages with a reaction every fourth event, numbered from start."""
    return [reaction(n) if n % 4 == 3 else chat(n) for n in range(start, start + count)]


def key(message):
    """What identifies an event in these tests."""
    payload = message['payload']
    if message['type'] == 'chat.message':
        return payload['message_id']
    if message['type'] == 'reaction.received':
        return 'r%d' % payload['count']
    return message['type']


class HistoryCase(unittest.TestCase):
    history_limit = LIMIT
    limits = {}

    def setUp(self):
        self.sim = Sim(streams=1, speed=0.2).__enter__()
        self.addCleanup(self.sim.__exit__, None, None, None)
        self.bus = PrivateBus().__enter__()
        self.addCleanup(self.bus.__exit__, None, None, None)
        self.bridge = Bridge(self.sim, bus=self.bus, config={
            'Limits': {'HistoryPerStream': str(self.history_limit), **self.limits}}).__enter__()
        self.addCleanup(self.bridge.__exit__, None, None, None)
        self.env = base_env(WAVE_BRIDGE_SOCKET=self.bridge.socket_path, **self.bus.env)

    def connect(self):
        client = self.bridge.connect()
        self.addCleanup(client.close)
        return client

    def wait_upstream(self, stream=STREAM):
        wait_until(lambda: self.sim.upstream_subscriptions(stream), timeout=TIMEOUT,
                   what=f'upstream subscription of {stream}')

    def holder(self, events=None):
        """A socket client subscribed all along: the bridge follows STREAM."""
        client = self.connect()
        request = {'type': 'subscribe', 'stream_id': STREAM}
        if events is not None:
            request['events'] = events
        client.request(request, 'subscribed')
        self.wait_upstream()
        return client

    def emit(self, messages, holder):
        """Emits messages and waits until holder got the last: all fanned out."""
        for message in messages:
            self.assertTrue(self.sim.post('/sim/emit', message).get('ok'))
        last = key(messages[-1])
        holder.recv_type(messages[-1]['type'], timeout=TIMEOUT, where=lambda m: key(m) == last)

    def subscribe(self, client, history=None, events=None, stream=STREAM):
        request = {'type': 'subscribe', 'stream_id': stream, 'id': 7}
        if history is not None:
            request['history'] = history
        if events is not None:
            request['events'] = events
        client.send(request)
        while True:
            reply = client.recv(TIMEOUT)
            if reply['type'] in ('subscribed', 'error'):
                return reply

    def events_until(self, client, last_key):
        """Stream events (bridge.* skipped) up to the live one with last_key."""
        got = []
        while True:
            message = client.recv(TIMEOUT)
            if message['type'].startswith('bridge.'):
                continue
            got.append(message)
            if key(message) == last_key and not message.get('cached'):
                return got

    def replay_then_live(self, client, marker=None):
        """Everything the client gets before a live event the test emits now."""
        marker = marker or chat(9999, text='live marker')
        self.assertTrue(self.sim.post('/sim/emit', marker).get('ok'))
        got = self.events_until(client, key(marker))
        live = got.pop()
        self.assertNotIn('cached', live)
        return got


class Socket(HistoryCase):
    def test_order_and_bounds(self):
        holder = self.holder()
        self.emit([health()], holder)
        burst = mixed(40)
        self.emit(burst, holder)
        expected = [key(m) for m in burst]

        # The state cache first, then the newest 20, oldest first, marked.
        client = self.connect()
        reply = self.subscribe(client, history=20)
        self.assertEqual(reply['type'], 'subscribed', reply)
        self.assertEqual(reply['payload']['history'], 20)
        self.assertEqual(reply['id'], 7)
        got = self.replay_then_live(client)
        self.assertEqual([key(m) for m in got], ['stream.health'] + expected[-20:])
        for message in got:
            self.assertIs(message['cached'], True)
            self.assertGreaterEqual(message['age_ms'], 0)
            self.assertEqual(message['payload']['stream_id'], STREAM)
        # The payload is the event as it came.
        self.assertEqual(got[1]['payload'], burst[20]['payload'])

        # More than kept: HistoryPerStream, and the acknowledgement says so.
        client = self.connect()
        reply = self.subscribe(client, history=1000)
        self.assertEqual(reply['payload']['history'], LIMIT)
        got = self.replay_then_live(client, chat(9998, text='second marker'))
        # The ring holds the newest LIMIT: the first marker is one of them now.
        ring = (expected + ['msg_9999'])[-LIMIT:]
        self.assertEqual([key(m) for m in got], ['stream.health'] + ring)

        # 0 and none at all: the cached state only.
        for i, history in enumerate((0, None)):
            client = self.connect()
            reply = self.subscribe(client, history=history)
            self.assertEqual(reply['type'], 'subscribed')
            if history is None:
                self.assertNotIn('history', reply['payload'])
            else:
                self.assertEqual(reply['payload']['history'], 0)
            got = self.replay_then_live(client, chat(9990 + i))
            self.assertEqual([key(m) for m in got], ['stream.health'])

        # Asking again on the same subscription: the newest it never had,
        # not msg_9991, which it took live.
        reply = self.subscribe(client, history=5)
        self.assertEqual(reply['type'], 'subscribed')
        got = self.replay_then_live(client, chat(9980))
        self.assertEqual([key(m) for m in got],
                         ['stream.health'] + (ring + ['msg_9998', 'msg_9990'])[-5:])

    def test_again_gives_only_what_was_missed(self):
        holder = self.holder()
        self.emit(mixed(10), holder)
        client = self.connect()
        self.assertEqual(self.subscribe(client, history=3)['type'], 'subscribed')
        got = self.replay_then_live(client, chat(100))
        self.assertEqual([key(m) for m in got], ['r1007', 'msg_8', 'msg_9'])
        # The same again with more: the older ones it has not had, not the
        # three it had, nor msg_100 it took live.
        self.assertEqual(self.subscribe(client, history=50)['type'], 'subscribed')
        got = self.replay_then_live(client, chat(101))
        self.assertEqual([key(m) for m in got],
                         ['msg_0', 'msg_1', 'msg_2', 'r1003', 'msg_4', 'msg_5', 'msg_6'])
        self.assertEqual(self.subscribe(client, history=50)['type'], 'subscribed')
        self.assertEqual(self.replay_then_live(client, chat(102)), [])
        # The holder, subscribed all along, has all of it already.
        self.assertEqual(self.subscribe(holder, history=50)['type'], 'subscribed')
        self.assertEqual([key(m) for m in self.replay_then_live(holder, chat(103))], [])

    def test_type_filter(self):
        holder = self.holder()
        self.emit([health()] + mixed(12), holder)
        for i, (events, expected) in enumerate((
                (['chat.message'], ['msg_%d' % n for n in range(12) if n % 4 != 3]),
                (['reaction.received'], ['r1003', 'r1007', 'r1011']),
                (['stream.health'], ['stream.health']),
                (['reaction.received', 'stream.health'],
                 # r1501: the second client's live marker, history by now.
                 ['stream.health', 'r1003', 'r1007', 'r1011', 'r1501']))):
            client = self.connect()
            reply = self.subscribe(client, history=50, events=events)
            self.assertEqual(reply['type'], 'subscribed', reply)
            # Markers are history too: each its own, after the expected ones.
            marker = reaction(500 + i) if 'reaction.received' in events else (
                chat(500 + i) if 'chat.message' in events else health(bitrate=500.0))
            got = self.replay_then_live(client, marker)
            if events == ['stream.health']:
                # The live marker is health too: the replay is what came before it.
                got = [m for m in got if m.get('cached')]
            self.assertEqual([key(m) for m in got], expected, events)
            client.close()

    def test_invalid_history(self):
        holder = self.holder()
        self.emit(mixed(3), holder)
        client = self.connect()
        for history in (-1, 2.5, '5', True, [3], {}):
            client.send({'type': 'subscribe', 'stream_id': 'hist_other', 'id': 'x',
                         'history': history})
            reply = client.recv(TIMEOUT)
            self.assertEqual(reply['type'], 'error', (history, reply))
            self.assertEqual(reply['payload']['code'], 'invalid_message', reply)
            self.assertEqual(reply['id'], 'x')
            if history in (-1, 2.5):
                self.assertIn('history', reply['payload']['message'])
        # Nothing was subscribed by the refused requests.
        client.send({'type': 'unsubscribe', 'stream_id': 'hist_other', 'id': 'u'})
        reply = client.recv(TIMEOUT)
        self.assertEqual(reply['type'], 'error')
        self.assertIn('Not subscribed', reply['payload']['message'])
        self.assertEqual(self.sim.upstream_subscriptions('hist_other'), [])

    def test_no_duplicates_across_reconnect(self):
        holder = self.holder(events=['chat.message'])
        self.emit([chat(n) for n in range(10)], holder)
        # The bridge's upstream connection drops; it reconnects and
        # subscribes again. WAVE then sends msg_5 again (nothing in its doc
        # forbids it), then new messages.
        self.assertGreaterEqual(self.sim.post('/sim/drop', {})['dropped'], 1)
        holder.recv_type('bridge.resync', timeout=TIMEOUT)
        wait_until(lambda: self.sim.stats()['connections'] == 1, timeout=TIMEOUT,
                   what='one upstream connection again')
        self.wait_upstream()
        self.emit([chat(5)] + [chat(n) for n in range(10, 15)], holder)

        client = self.connect()
        self.assertEqual(self.subscribe(client, history=50)['type'], 'subscribed')
        got = self.replay_then_live(client, chat(900))
        self.assertEqual([key(m) for m in got], ['msg_%d' % n for n in range(15)])
        # The holder got everything live: nothing is replayed to it.
        self.assertEqual(self.subscribe(holder, history=50, events=['chat.message'])['type'],
                         'subscribed')
        self.assertEqual(self.replay_then_live(holder, chat(901)), [])
        self.assertEqual([key(m) for m in self.events_until(client, 'msg_901')], ['msg_901'])
        # A second reconnect replays nothing to anyone by itself.
        self.sim.post('/sim/close', {'code': 4500, 'reason': 'maintenance'})
        holder.recv_type('bridge.resync', timeout=TIMEOUT)
        self.wait_upstream()
        got = self.replay_then_live(client, chat(902))
        self.assertEqual(got, [])


class Quotas(HistoryCase):
    """History goes through the client's queue like any event: its bound
    holds, and what did not fit is announced with bridge.dropped."""
    history_limit = 1000
    limits = {'HistoryBytesPerStream': str(16 * 1024 * 1024), 'ClientQueueBytes': '65536'}

    def test_history_within_queue_bound(self):
        # The holder is a D-Bus subscriber: signals are broadcast, with no
        # queue of the bridge's to overflow while the flood goes by.
        holder = BusClient(self.bus.address)
        self.addCleanup(holder.conn.close_sync, None)
        holder.call('Subscribe', 'sas', (STREAM, ['chat.message']))
        self.wait_upstream()
        count, size = 300, 4096
        self.sim.post('/sim/flood', {'stream_id': STREAM, 'type': 'chat.message', 'rate': 2000,
                                     'size': size, 'count': count})
        wait_until(lambda: all(f['done'] for f in self.sim.stats()['floods']), timeout=TIMEOUT,
                   what='the flood to be sent')
        self.assertTrue(self.sim.post('/sim/emit', chat(1)).get('ok'))
        holder.wait_signal('ChatMessage', where=lambda s: s.args[0] == 'msg_1')

        client = self.connect()
        # Asked for and not read: 1.2 MiB for a queue of 64 KiB.
        client.send({'type': 'subscribe', 'stream_id': STREAM, 'events': ['chat.message'],
                     'history': 1000})
        time.sleep(1)
        # Read what the queue holds; once it has drained, a live event
        # brings the count of those discarded (bridge.dropped) before it.
        lines = []
        while True:
            try:
                lines.append(client.recv(1.0))
            except (TimeoutError, OSError):
                break
        marker = chat(2)
        self.assertTrue(self.sim.post('/sim/emit', marker).get('ok'))
        replayed, dropped, reply = 0, 0, None
        while True:
            message = lines.pop(0) if lines else client.recv(TIMEOUT)
            if message['type'] == 'subscribed':
                reply = message
            elif message['type'] == 'bridge.dropped':
                dropped += message['payload']['count']
            elif message.get('cached'):
                replayed += 1
            elif key(message) == 'msg_2':
                break
        self.assertEqual(reply['payload']['history'], 1000)
        self.assertGreater(dropped, 0)
        self.assertLess(replayed, count)
        self.assertEqual(replayed + dropped, count + 1)
        self.assertGreater(self.bridge.status()['events_dropped'], 0)


class Disabled(HistoryCase):
    history_limit = 0

    def test_history_per_stream_zero(self):
        holder = self.holder()
        self.emit([health()] + mixed(5), holder)
        client = self.connect()
        reply = self.subscribe(client, history=10)
        self.assertEqual(reply['type'], 'subscribed', reply)
        self.assertEqual(reply['payload']['history'], 0)
        got = self.replay_then_live(client)
        self.assertEqual([key(m) for m in got], ['stream.health'])
        # D-Bus: an empty list.
        bus = BusClient(self.bus.address)
        self.addCleanup(bus.conn.close_sync, None)
        bus.call('Subscribe', 'sas', (STREAM, []))
        self.assertEqual(bus.call('GetHistory', 'u', (10,), path=stream_path(STREAM),
                                  iface=STREAM_IFACE), ([],))


class Dbus(HistoryCase):
    def test_get_history(self):
        holder = self.holder()
        burst = mixed(12)
        self.emit(burst, holder)
        path = stream_path(STREAM)
        caller = BusClient(self.bus.address)
        self.addCleanup(caller.conn.close_sync, None)

        # Only a subscriber may ask.
        error, _ = caller.call_error('GetHistory', 'u', (5,), path=path, iface=STREAM_IFACE)
        self.assertEqual(error, 'inc.wave.Bridge1.Error.NotSubscribed')

        caller.call('Subscribe', 'sas', (STREAM, []))
        (events,) = caller.call('GetHistory', 'u', (5,), path=path, iface=STREAM_IFACE)
        self.assertEqual([e[0] for e in events], [m['type'] for m in burst[-5:]])
        for (type_name, age_ms, fields), message in zip(events, burst[-5:]):
            self.assertLess(age_ms, 60_000)
            payload = message['payload']
            if type_name == 'chat.message':
                self.assertEqual(fields, {k: payload[k] for k in (
                    'message_id', 'user_id', 'username', 'message', 'timestamp')})
            else:
                self.assertEqual(fields, {'reaction': payload['reaction'],
                                          'count': payload['count'],
                                          'timestamp': payload['timestamp']})
        # Typed like the signals: count is u.
        reply = caller.conn.call_sync('inc.wave.Bridge1', path, STREAM_IFACE, 'GetHistory',
                                      GLib.Variant('(u)', (0,)), None, 0, 15000, None)
        self.assertEqual(reply.get_type_string(), '(a(sta{sv}))')
        # The older ones next, then nothing: each event once.
        (events,) = caller.call('GetHistory', 'u', (100,), path=path, iface=STREAM_IFACE)
        self.assertEqual([fields.get('message_id', fields.get('count')) for _, _, fields in events],
                         [m['payload'].get('message_id', m['payload'].get('count'))
                          for m in burst[:-5]])
        self.assertEqual(caller.call('GetHistory', 'u', (100,), path=path,
                                     iface=STREAM_IFACE), ([],))
        # What it receives as signals after subscribing is not history.
        start = len(caller.signals)
        self.emit([chat(50)], holder)
        caller.wait_signal('ChatMessage', path=path, start=start,
                           where=lambda s: s.args[0] == 'msg_50')
        self.assertEqual(caller.call('GetHistory', 'u', (100,), path=path,
                                     iface=STREAM_IFACE), ([],))

        # Another caller, subscribed to reactions only, gets only reactions.
        other = BusClient(self.bus.address)
        self.addCleanup(other.conn.close_sync, None)
        other.call('Subscribe', 'sas', (STREAM, ['reaction.received']))
        (events,) = other.call('GetHistory', 'u', (100,), path=path, iface=STREAM_IFACE)
        self.assertEqual([fields['count'] for _, _, fields in events], [1003, 1007, 1011])


class Wavectl(HistoryCase):
    def tail_history(self, options):
        holder = self.holder()
        # 30 events, 23 chat messages and 7 reactions; the last 20 are expected.
        burst = mixed(30)
        self.emit([health()] + burst, holder)
        tail = Tail([*options, 'tail', STREAM, '--history', '20'], self.env)
        self.addCleanup(tail.stop, signal.SIGKILL)
        tail.err.wait_contains(f'waiting for events of {STREAM}')
        last = burst[-1]['payload']
        tail.out.wait_contains('reaction 🎉 x%d' % last['count'] if last.get('count')
                               else last['message'])
        self.emit([chat(777, text='a live one')], holder)
        tail.out.wait_contains('a live one')
        lines = tail.out.snapshot()
        self.assertEqual(tail.stop(), 0)

        # The cached health, the 20, then the live message: nothing else.
        self.assertEqual(len(lines), 22, lines)
        self.assertIn('health 2500 kbps', lines[0])
        self.assertIn('[cached', lines[0])
        for line, message in zip(lines[1:21], burst[-20:]):
            payload = message['payload']
            if message['type'] == 'chat.message':
                self.assertIn(f'chat {payload["username"]}: {payload["message"]}', line)
            else:
                self.assertIn(f'reaction 🎉 x{payload["count"]}', line)
            self.assertIn('[cached', line)
            self.assertRegex(line, r'^\d\d:\d\d:\d\d ')
        self.assertIn('a live one', lines[21])
        self.assertNotIn('cached', lines[21])

    def test_tail_history_socket(self):
        self.tail_history([])

    def test_tail_history_dbus(self):
        self.tail_history(['--dbus'])

    def test_tail_history_json_and_usage(self):
        holder = self.holder()
        self.emit(mixed(4), holder)
        tail = Tail(['tail', '--json', '--history', '2', '--events', 'chat.message', STREAM],
                    self.env)
        self.addCleanup(tail.stop, signal.SIGKILL)
        tail.out.wait_for(lambda line: 'msg_2' in line)
        lines = [json.loads(line) for line in tail.out.snapshot()]
        lines = [m for m in lines if not m['type'].startswith('bridge.')]
        self.assertEqual([key(m) for m in lines], ['msg_1', 'msg_2'])
        self.assertTrue(all(m['cached'] for m in lines))
        self.assertEqual(tail.stop(), 0)

        result = subprocess.run([WAVECTL_BIN, 'tail', STREAM, '--history', '-3'], env=self.env,
                                capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn('--history', result.stderr)
        result = subprocess.run([WAVECTL_BIN, 'tail', '--help'], env=self.env,
                                capture_output=True, text=True, timeout=TIMEOUT)
        self.assertIn('--history', result.stdout)

    def test_watch_starts_with_chat_history(self):
        holder = self.holder()
        self.emit([chat(1, text='said before the dashboard'), chat(2, text='and this too')],
                  holder)
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 30, 100, 0, 0))
        env = dict(self.env, TERM='xterm')
        proc = subprocess.Popen([WAVECTL_BIN, 'watch', STREAM], stdin=slave, stdout=slave,
                                stderr=slave, env=env, start_new_session=True)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        self.addCleanup(os.close, master)
        self.addCleanup(os.close, slave)
        output = bytearray()
        lock = threading.Lock()

        def reader():
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    return
                if not data:
                    return
                with lock:
                    output.extend(data)

        threading.Thread(target=reader, daemon=True).start()

        def text():
            with lock:
                return output.decode(errors='replace')
        # No live chat is sent: what the pane shows is the history.
        for expected in ('user1: said before the dashboard', 'user2: and this too'):
            wait_until(lambda: expected in text(), timeout=TIMEOUT, what=repr(expected))
        os.write(master, b'q')
        self.assertEqual(proc.wait(TIMEOUT), 0)


if __name__ == '__main__':
    unittest.main()
