# SPDX-License-Identifier: MIT
"""The soak's D-Bus clients: N bus connections in one GLib process, each
subscribing, unsubscribing, sending chat and reactions and disconnecting at
random, logging everything it receives to RUN_DIR/clients/dbus-*.jsonl in
the form soak_check.py reads (see soak.py). SIGTERM ends every session
gracefully: no new calls, pending sends answered (or the wait times out),
then exit.

    python3 soak_dbus.py ADDRESS RUN_DIR N_CLIENTS SEED STREAM...
"""

import json
import os
import random
import signal
import sys
import time

import gi

gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

BUS_NAME = 'inc.wave.Bridge1'
MANAGER_PATH = '/inc/wave/Bridge1'
MANAGER_IFACE = 'inc.wave.Bridge1'
STREAM_IFACE = 'inc.wave.Bridge1.Stream'
EVENT_TYPES = ('analytics.update', 'chat.message', 'reaction.received', 'stream.ended',
               'stream.health', 'stream.started', 'viewer.joined', 'viewer.left')
# GetHistory entries: the signal each stands for, its fields in signal order.
HISTORY_SIGNALS = {
    'chat.message': ('ChatMessage', ('message_id', 'user_id', 'username', 'message', 'timestamp')),
    'reaction.received': ('ReactionReceived', ('reaction', 'count', 'timestamp')),
}
# Longer than the bridge's SendQueueTimeout in the soak (5 s) plus a reconnect.
CALL_TIMEOUT_MS = 30000
END_WAIT_S = 20.0


def stream_path(stream_id):
    out = []
    for byte in stream_id.encode():
        c = chr(byte)
        out.append(c if c.isascii() and c.isalnum() else '_%02x' % byte)
    return MANAGER_PATH + '/stream/' + ''.join(out)


class Session:
    def __init__(self, owner, client, number):
        self.owner = owner
        self.rng = owner.rng
        self.name = f'dbus-{client:02d}-{number:03d}'
        self.log = open(os.path.join(owner.run_dir, 'clients', self.name + '.jsonl'), 'w')
        self.write({'kind': 'session', 'transport': 'dbus', 'id': self.name})
        flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
                 | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
        self.conn = Gio.DBusConnection.new_for_address_sync(owner.address, flags, None, None)
        self.conn.set_exit_on_close(False)
        self.subs = {}  # stream → signal subscription id
        self.pending = set()
        self.calls = 0
        self.closed = False
        self.props_id = self.conn.signal_subscribe(
            BUS_NAME, 'org.freedesktop.DBus.Properties', 'PropertiesChanged', MANAGER_PATH, None,
            Gio.DBusSignalFlags.NONE, self.on_properties)

    def write(self, record):
        if self.log.closed:
            return  # a signal queued before the connection closed
        record.setdefault('t', time.monotonic())
        self.log.write(json.dumps(record, separators=(',', ':')) + '\n')

    def received(self, msg):
        self.write({'kind': 'in', 'msg': msg})

    def on_properties(self, conn, sender, path, iface, member, params):
        _, changed, _ = params.unpack()
        if 'State' in changed:
            self.received({'type': 'bridge.state', 'payload': {'state': changed['State']}})
        if 'EventsDropped' in changed:
            self.received({'type': 'bridge.dropped', 'payload': {'total': changed['EventsDropped']}})

    def on_signal(self, conn, sender, path, iface, member, params):
        self.received({'type': 'dbus.signal', 'path': path, 'member': member,
                       'args': list(params.unpack())})

    def call(self, method, signature, args, done, path=MANAGER_PATH, iface=MANAGER_IFACE,
             request=None):
        self.calls += 1
        call_id = f'{self.name}-{self.calls}'
        if request is not None:
            request['id'] = call_id
            self.write({'kind': 'out', 'msg': request})
        self.pending.add(call_id)

        def finish(conn, result):
            self.pending.discard(call_id)
            try:
                reply = conn.call_finish(result)
                ok, value = True, reply.unpack()
            except GLib.Error as e:
                ok, value = False, Gio.DBusError.get_remote_error(e) or e.message
            if not self.closed:
                done(call_id, ok, value)

        self.conn.call(BUS_NAME, path, iface, method, GLib.Variant(f'({signature})', args),
                       None, Gio.DBusCallFlags.NONE, CALL_TIMEOUT_MS, None, finish)

    def act(self):
        streams = self.owner.streams
        r = self.rng.random()
        if r < 0.35:
            stream = self.rng.choice(streams)
            events = [] if self.rng.random() < 0.5 else \
                sorted(self.rng.sample(EVENT_TYPES, self.rng.randint(1, 4)))

            # The match rule before the call: no signal the bridge emits
            # after it took the subscription can slip past the rule.
            if stream not in self.subs:
                self.subs[stream] = self.conn.signal_subscribe(
                    BUS_NAME, STREAM_IFACE, None, stream_path(stream), None,
                    Gio.DBusSignalFlags.NONE, self.on_signal)

            def subscribed(call_id, ok, value):
                if not ok:
                    self.received({'type': 'error', 'id': call_id, 'payload': {'code': value}})
                    return
                self.received({'type': 'subscribed', 'id': call_id,
                               'payload': {'stream_id': stream,
                                           'events': events or list(EVENT_TYPES)}})
            self.call('Subscribe', 'sas', (stream, events), subscribed,
                      request={'type': 'subscribe', 'stream_id': stream, 'events': events})
        elif r < 0.42 and self.subs:
            stream = self.rng.choice(sorted(self.subs))
            count = self.rng.randint(0, 60)

            def history(call_id, ok, value):
                if not ok:
                    self.received({'type': 'error', 'id': call_id, 'payload': {'code': value}})
                    return
                # As the socket's history reply: how many at most, then each
                # entry as the signal it stands for, marked cached.
                self.received({'type': 'dbus.history', 'id': call_id,
                               'payload': {'stream_id': stream, 'history': count}})
                for wave_type, age_ms, fields in value[0]:
                    member, names = HISTORY_SIGNALS[wave_type]
                    self.received({'type': 'dbus.signal', 'path': stream_path(stream),
                                   'member': member, 'cached': True,
                                   'args': [fields.get(n) for n in names]})
            self.call('GetHistory', 'u', (count,), history, path=stream_path(stream),
                      iface=STREAM_IFACE,
                      request={'type': 'history', 'stream_id': stream, 'count': count})
        elif r < 0.5 and self.subs:
            stream = self.rng.choice(sorted(self.subs))

            def unsubscribed(call_id, ok, value):
                if ok:
                    self.received({'type': 'unsubscribed', 'id': call_id,
                                   'payload': {'stream_id': stream, 'events': []}})
                    sub = self.subs.pop(stream, None)
                    if sub is not None:
                        self.conn.signal_unsubscribe(sub)
                else:
                    self.received({'type': 'error', 'id': call_id, 'payload': {'code': value}})
            self.call('Unsubscribe', 's', (stream,), unsubscribed,
                      request={'type': 'unsubscribe', 'stream_id': stream})
        elif r < 0.85:
            stream = self.rng.choice(streams)
            chat = self.rng.random() < 0.5
            text = f'soak {self.name} {self.calls}' if chat else self.rng.choice('👍🔥❤😂')

            def answered(call_id, ok, value):
                self.received({'type': 'sent', 'id': call_id} if ok else
                              {'type': 'error', 'id': call_id, 'payload': {'code': value}})
            on_stream = self.rng.random() < 0.3
            method = 'SendChatMessage' if chat else 'SendReaction'
            request = {'type': 'chat.message' if chat else 'reaction.sent', 'stream_id': stream}
            if on_stream:
                self.call(method, 's', (text,), answered, path=stream_path(stream),
                          iface=STREAM_IFACE, request=request)
            else:
                self.call(method, 'ss', (stream, text), answered, request=request)
        else:
            self.call('Subscribe', 'sas', (self.rng.choice(streams), ['nope']),
                      lambda call_id, ok, value: self.received(
                          {'type': 'error', 'id': call_id, 'payload': {'code': value}}))

    def close(self, graceful):
        if self.closed:
            return
        if not graceful:
            self.write({'kind': 'disconnect'})
        self.closed = True
        self.write({'kind': 'end', 'graceful': graceful})
        self.log.close()
        self.conn.close_sync(None)


class Client:
    def __init__(self, owner, index):
        self.owner = owner
        self.index = index
        self.number = 0
        self.session = None
        self.deadline = 0
        self.start()

    def start(self):
        self.number += 1
        self.session = Session(self.owner, self.index, self.number)
        self.deadline = time.monotonic() + self.owner.rng.uniform(5, 40)
        GLib.timeout_add(int(self.owner.rng.uniform(100, 1500)), self.tick)

    def tick(self):
        if self.owner.stopping:
            return GLib.SOURCE_REMOVE
        if time.monotonic() > self.deadline:
            self.session.close(graceful=False)
            GLib.timeout_add(int(self.owner.rng.uniform(200, 2000)), self.restart)
            return GLib.SOURCE_REMOVE
        self.session.act()
        GLib.timeout_add(int(self.owner.rng.uniform(500, 2500)), self.tick)
        return GLib.SOURCE_REMOVE

    def restart(self):
        if not self.owner.stopping:
            self.start()
        return GLib.SOURCE_REMOVE


class Owner:
    def __init__(self, address, run_dir, n, seed, streams):
        self.address = address
        self.run_dir = run_dir
        self.rng = random.Random(seed)
        self.streams = streams
        self.stopping = False
        self.loop = GLib.MainLoop()
        self.clients = [Client(self, i) for i in range(n)]

    def stop(self):
        if self.stopping:
            return GLib.SOURCE_CONTINUE
        self.stopping = True
        deadline = time.monotonic() + END_WAIT_S
        # Whatever the bus does, the process ends (a dead bus can block).
        GLib.timeout_add_seconds(int(END_WAIT_S) + 10, lambda: os._exit(1))

        def drain():
            sessions = [c.session for c in self.clients if not c.session.closed]
            if any(s.pending for s in sessions) and time.monotonic() < deadline:
                return GLib.SOURCE_CONTINUE
            for s in sessions:
                s.close(graceful=True)
            self.loop.quit()
            return GLib.SOURCE_REMOVE
        GLib.timeout_add(100, drain)
        return GLib.SOURCE_CONTINUE


def main(argv):
    address, run_dir, n, seed = argv[1], argv[2], int(argv[3]), int(argv[4])
    owner = Owner(address, run_dir, n, seed, argv[5:])
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, owner.stop)
    parent = os.getppid()

    def orphaned():
        # The driver is gone (killed): so is its bus, maybe; do not linger.
        if os.getppid() != parent:
            os._exit(1)
        return GLib.SOURCE_CONTINUE
    GLib.timeout_add_seconds(1, orphaned)
    print('ready', flush=True)
    owner.loop.run()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
