# SPDX-License-Identifier: MIT
"""The soak's independent checker: exact accounting of every numbered
event between wave-sim's event log (what upstream sent, on which
connection, when) and what each local client logged (every line or signal
it received, every request it made). It knows nothing of the bridge's
internals; docs/reliability.md "Soak" states the rules it holds the bridge
to, and tests/soak/test_soak_check.py proves it fails on doctored logs.

    python3 soak_check.py RUN_DIR      # exit 0: all rules hold

RUN_DIR holds sim-events.jsonl (wave-sim --event-log), clients/*.jsonl
(one file per client session, written by soak.py and soak_dbus.py) and,
optionally, faults.jsonl and daemon.json (the driver's own findings).
"""

import bisect
import collections
import glob
import json
import os
import sys

STREAM_EVENTS = ('stream.started', 'stream.ended', 'stream.health', 'viewer.joined',
                 'viewer.left', 'analytics.update', 'chat.message', 'reaction.received')
SEQ = 'sim_stream_seq'
# An event may miss the bridge's connection because its subscription is not
# upstream yet: the bridge paces subscription changes (MessagesPerSecond)
# and re-sends the whole union after each connect. Longer than this after
# the client's subscribed reply (or the connection's start) is a failure.
NOT_UPSTREAM_SLACK_S = 3.0
ANNOUNCEMENTS = ('bridge.state', 'bridge.dropped', 'bridge.resync')
# Kept by the bridge and replayed on subscribe with "history" (as cached).
HISTORY_TYPES = ('chat.message', 'reaction.received')

# D-Bus signal member → (event type, payload fields in argument order, how
# the bridge marshals each: s string, d double, i integer, n nullable string)
DBUS_SIGNALS = {
    'Started': ('stream.started', (('started_at', 's'), ('protocol', 's'),
                                   ('ingest_endpoint', 's'))),
    'Ended': ('stream.ended', (('ended_at', 's'), ('duration', 'd'), ('recording_id', 'n'))),
    'Health': ('stream.health', (('bitrate', 'd'), ('fps', 'd'), ('packet_loss', 'd'),
                                 ('latency', 'd'))),
    'ViewerJoined': ('viewer.joined', (('viewer_id', 's'), ('country', 's'), ('device', 's'),
                                       ('joined_at', 's'))),
    'ViewerLeft': ('viewer.left', (('viewer_id', 's'), ('watch_time', 'd'), ('left_at', 's'))),
    'AnalyticsUpdate': ('analytics.update', (('concurrent_viewers', 'i'), ('total_views', 'i'),
                                             ('peak_viewers', 'i'),
                                             ('average_watch_time', 'd'))),
    'ChatMessage': ('chat.message', (('message_id', 's'), ('user_id', 's'), ('username', 's'),
                                     ('message', 's'), ('timestamp', 's'))),
    'ReactionReceived': ('reaction.received', (('reaction', 's'), ('count', 'i'),
                                               ('timestamp', 's'))),
}
TYPE_TO_MEMBER = {v[0]: k for k, v in DBUS_SIGNALS.items()}


def fingerprint(member, values):
    out = [member]
    for (_, kind), value in zip(DBUS_SIGNALS[member][1], values):
        if kind == 'd':
            out.append(repr(float(value if value is not None else 0)))
        elif kind == 'i':
            out.append(str(int(value if value is not None else 0)))
        else:
            out.append('' if value is None else str(value))
    return '\x1f'.join(out)


def payload_fingerprint(event_type, payload):
    member = TYPE_TO_MEMBER[event_type]
    return fingerprint(member, [payload.get(name) for name, _ in DBUS_SIGNALS[member][1]])


def stream_from_path(path):
    """sd_bus_path_decode of /inc/wave/Bridge1/stream/<escaped>."""
    tail = path.rsplit('/', 1)[-1]
    out = bytearray()
    i = 0
    while i < len(tail):
        if tail[i] == '_' and i + 2 < len(tail):
            out += bytes([int(tail[i + 1:i + 3], 16)])
            i += 3
        else:
            out += tail[i].encode()
            i += 1
    return out.decode()


class SimLog:
    """wave-sim's event log: the truth about upstream."""

    def __init__(self, path):
        self.events = {}  # (stream, seq) → event dict
        self.by_stream = collections.defaultdict(list)  # stream → [event] in seq order
        self.conns = {}  # conn → {'open': t, 'close': t, 'code', 'initiator', 'order'}
        self.fingerprints = collections.defaultdict(dict)  # stream → fp → [seq]
        self.subs = collections.defaultdict(list)  # (conn, stream) → [(t, set(types))]
        self.problems = []
        order = 0
        with open(path) as f:
            for index, line in enumerate(f):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    # A sim killed mid-write may leave half a line at the end.
                    self.problems.append(f'sim log line {index + 1} is not JSON')
                    continue
                kind = rec['kind']
                if kind == 'open':
                    order += 1
                    self.conns[rec['conn']] = {'open': rec['t'] / 1e6, 'close': None,
                                               'code': None, 'initiator': None,
                                               'order': order}
                elif kind == 'close':
                    c = self.conns.setdefault(rec['conn'], {'open': 0, 'order': 0})
                    c.update(close=rec['t'] / 1e6, code=rec['code'], initiator=rec['initiator'])
                elif kind == 'subscribe':
                    self.subs[(rec['conn'], rec['stream_id'])].append(
                        (rec['t'] / 1e6, set(rec['events'])))
                elif kind == 'unsubscribe':
                    self.subs[(rec['conn'], rec['stream_id'])].append((rec['t'] / 1e6, set()))
                elif kind == 'event':
                    msg = rec['message']
                    payload = msg['payload']
                    if SEQ not in payload:
                        continue
                    ev = {'index': index, 't': rec['t'] / 1e6, 'type': msg['type'],
                          'stream': payload['stream_id'], 'seq': payload[SEQ],
                          'conns': rec['conns'], 'payload': payload}
                    key = (ev['stream'], ev['seq'])
                    if key in self.events:
                        self.problems.append(f'sim numbered {key} twice')
                    self.events[key] = ev
                    self.by_stream[ev['stream']].append(ev)
                    fp = payload_fingerprint(ev['type'], payload)
                    self.fingerprints[ev['stream']].setdefault(fp, []).append(ev['seq'])
        # Numbers follow emission order: each stream's events are sorted by time too.
        self.stream_times = {s: [ev['t'] for ev in evs] for s, evs in self.by_stream.items()}
        self.open_times = sorted((c['open'], n) for n, c in self.conns.items())

    def conn_at(self, t):
        """The connection open at time t, or None."""
        i = bisect.bisect_right(self.open_times, (t, float('inf'))) - 1
        if i < 0:
            return None
        conn = self.open_times[i][1]
        close = self.conns[conn]['close']
        return conn if close is None or close > t else None


class Session:
    """One client session's log, reduced to what the rules need."""

    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        self.records = []
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        self.records.append(json.loads(line))
                    except ValueError:
                        pass  # a driver killed mid-line: the rest still counts
        head = self.records[0] if self.records and self.records[0].get('kind') == 'session' \
            else {}
        self.transport = head.get('transport', 'socket')
        self.graceful = any(r.get('kind') == 'end' and r.get('graceful') for r in self.records)


class Checker:
    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.sim = SimLog(os.path.join(run_dir, 'sim-events.jsonl'))
        self.failures = []
        self.counts = collections.Counter()
        self.gaps = set()  # (session, stream, line before, line after)

    def fail(self, session, text):
        self.failures.append(f'{session.name}: {text}')

    def run(self):
        for problem in self.sim.problems:
            self.failures.append(f'sim log: {problem}')
        for path in sorted(glob.glob(os.path.join(self.run_dir, 'clients', '*.jsonl'))):
            self.check_session(Session(path))
        for key in ('events lost while connected', 'events in unannounced gaps',
                    'gaps announced'):
            self.counts.setdefault(key, 0)
        self.counts['violations'] = len(self.failures)
        self.counts['events emitted'] = len(self.sim.events)
        self.counts['upstream connections'] = len(self.sim.conns)
        return not self.failures

    # -- one session --------------------------------------------------------

    def resolve(self, session, msg, had=None):
        """(stream, seq) of a received event message, or None. @had: for a
        history entry, what the subscription has (to tell identical
        payloads apart)."""
        if msg.get('type') == 'dbus.signal':
            member = msg['member']
            if member not in DBUS_SIGNALS:
                return None
            stream = stream_from_path(msg['path'])
            seqs = self.sim.fingerprints.get(stream, {}).get(fingerprint(member, msg['args']))
            if not seqs:
                self.fail(session, f'D-Bus {member} on {msg["path"]} matches no event the sim '
                                   f'emitted for {stream}: {msg["args"]}')
                return None
            if had is not None:
                if len(seqs) > 1:
                    self.counts['D-Bus signals with an ambiguous payload'] += 1
                new = [q for q in seqs if q not in had.get(stream, ())]
                return stream, (new or seqs)[-1]
            # Identical payloads (an ended stream's analytics repeat) are
            # indistinguishable: take the first one after the last this
            # session got of the stream, as an in-order delivery would be.
            last = session.dbus_last.get(stream, 0)
            seq = next((q for q in seqs if q > last), seqs[-1])
            if len(seqs) > 1:
                self.counts['D-Bus signals with an ambiguous payload'] += 1
            session.dbus_last[stream] = max(last, seq)
            return stream, seq
        payload = msg.get('payload') or {}
        if SEQ not in payload:
            self.fail(session, f'a stream event without {SEQ}: {msg}')
            return None
        return payload.get('stream_id'), payload[SEQ]

    def check_session(self, session):
        dbus = session.transport == 'dbus'
        session.dbus_last = {}
        pos = 0
        intervals = []  # closed ones
        open_iv = {}  # stream → interval
        deliveries = []  # (pos, event)
        last_seq = {}
        seen = set()
        announcements = []  # (pos, type, stream or None)
        requests = {}  # id → request
        had = {}  # stream → numbers received in the current subscription
        history_left = {}  # stream → history events the last subscribed reply allows
        history_last = {}  # stream → number of the last history event of that reply
        answers = collections.Counter()
        end_t = None

        def close_interval(stream, p, t):
            iv = open_iv.pop(stream, None)
            if iv is not None:
                iv['end_pos'], iv['end_t'] = p, t
                intervals.append(iv)

        for rec in session.records:
            kind = rec.get('kind')
            t = rec.get('t')
            if t is not None:
                end_t = t
            if kind == 'out':
                msg = rec['msg']
                if 'id' in msg:
                    requests[msg['id']] = msg
                continue
            if kind == 'disconnect':
                # The client stops here; what it had is no longer owed.
                for stream in list(open_iv):
                    close_interval(stream, pos, t)
                continue
            if kind != 'in':
                continue
            pos += 1
            msg = rec['msg']
            mtype = msg.get('type')
            if mtype == 'subscribed':
                stream = msg['payload']['stream_id']
                close_interval(stream, pos, t)
                # A history reply follows (docs/protocol.md "History on
                # subscribe"): at most this many, oldest first.
                history_left[stream] = msg['payload'].get('history', 0)
                history_last[stream] = 0
                open_iv[stream] = {'stream': stream, 'types': set(msg['payload']['events']),
                                   'start_pos': pos, 'start_t': t, 'end_pos': None,
                                   'end_t': None}
            elif mtype == 'dbus.history':
                # GetHistory's reply: the entries that follow, as cached signals.
                stream = msg['payload']['stream_id']
                history_left[stream] = msg['payload']['history']
                history_last[stream] = 0
                self.counts['D-Bus GetHistory replies'] += 1
            elif mtype == 'unsubscribed':
                close_interval(msg['payload']['stream_id'], pos, t)
                had.pop(msg['payload']['stream_id'], None)
            elif mtype in ANNOUNCEMENTS:
                stream = (msg.get('payload') or {}).get('stream_id')
                announcements.append((pos, mtype, stream))
                self.counts[f'announcements {mtype}'] += 1
            elif mtype in ('sent', 'error') and 'id' in msg:
                req = requests.get(msg['id'])
                if req is not None and req.get('type') in ('chat.message', 'reaction.sent'):
                    answers[msg['id']] += 1
                    self.counts[f'sends answered {mtype}'] += 1
            elif mtype in STREAM_EVENTS or mtype == 'dbus.signal':
                if msg.get('cached'):
                    key = self.resolve(session, msg, had)
                    if key is not None and key not in self.sim.events:
                        self.fail(session, f'cached {mtype} {key} was never emitted')
                    elif key is not None and (mtype in HISTORY_TYPES or dbus):
                        self.check_history(session, key, mtype, pos, open_iv, had,
                                           history_left, history_last)
                    else:
                        self.counts['cached state replays'] += 1
                    continue
                key = self.resolve(session, msg)
                if key is None:
                    continue
                stream, seq = key
                ev = self.sim.events.get(key)
                if ev is None:
                    self.fail(session, f'{mtype} {key} was never emitted by the sim')
                    continue
                if not dbus and mtype != ev['type']:
                    self.fail(session, f'{key} arrived as {mtype}, the sim sent {ev["type"]}')
                if key in seen:
                    self.fail(session, f'duplicate: {ev["type"]} {key} at line {pos}')
                    continue
                seen.add(key)
                iv = open_iv.get(stream)
                holds = iv is not None and ev['type'] in iv['types']
                if seq in had.get(stream, ()) and holds:
                    self.fail(session, f'{ev["type"]} {key} live at line {pos}, but a history '
                                       'reply of this subscription gave it already')
                if holds:
                    # D-Bus: a signal of a type the caller did not subscribe
                    # to may still come (broadcast); GetHistory need not
                    # know it had it.
                    had.setdefault(stream, set()).add(seq)
                if seq <= last_seq.get(stream, 0):
                    self.fail(session, f'out of order: {stream} #{seq} after #{last_seq[stream]}')
                last_seq[stream] = max(seq, last_seq.get(stream, 0))
                if not ev['conns']:
                    self.fail(session, f'{key} reached a client but the sim sent it to no '
                                       'connection')
                    continue
                iv = open_iv.get(stream)
                if iv is None or (not dbus and ev['type'] not in iv['types']):
                    if dbus:
                        # Signals are broadcast on the stream's path; the
                        # match rule, not the bridge, filters (docs/dbus.md).
                        self.counts['D-Bus signals outside a subscription'] += 1
                        continue
                    self.fail(session, f'{ev["type"]} {key} not subscribed at line {pos}')
                    continue
                deliveries.append((pos, ev))
                self.counts[f'events delivered ({session.transport})'] += 1
        for stream in list(open_iv):
            close_interval(stream, pos + 1, end_t)

        for req_id, req in requests.items():
            if req.get('type') not in ('chat.message', 'reaction.sent'):
                continue
            self.counts['sends'] += 1
            n = answers.get(req_id, 0)
            if n > 1:
                self.fail(session, f'send {req_id} answered {n} times')
            elif n == 0 and session.graceful:
                self.fail(session, f'send {req_id} never answered')
            elif n == 0:
                self.counts['sends unanswered at a random disconnect'] += 1

        for iv in intervals:
            self.check_interval(session, iv, deliveries, announcements)

    def check_history(self, session, key, mtype, pos, open_iv, had, history_left,
                      history_last):
        """A history event (docs/protocol.md "History on subscribe"): of a
        type the subscription holds, within the number the reply allowed,
        oldest first, and never one the subscription already had, live or
        from an earlier history reply (subscribed … unsubscribed, however
        often re-subscribed)."""
        stream, seq = key
        mtype = self.sim.events[key]['type']  # D-Bus entries come as signals
        self.counts['history events'] += 1
        iv = open_iv.get(stream)
        if iv is None or mtype not in iv['types']:
            self.fail(session, f'history {mtype} {key} at line {pos}: type not subscribed')
        if history_left.get(stream, 0) <= 0:
            self.fail(session, f'history {mtype} {key} at line {pos}: more than the '
                               '"history" the subscribed reply allowed')
        history_left[stream] = history_left.get(stream, 0) - 1
        if seq <= history_last.get(stream, 0):
            self.fail(session, f'history {mtype} {key} at line {pos}: not oldest first')
        history_last[stream] = seq
        if seq in had.get(stream, ()):
            self.fail(session, f'history {mtype} {key} at line {pos}: the subscription '
                               'already had it')
        had.setdefault(stream, set()).add(seq)

    def check_interval(self, session, iv, deliveries, announcements):
        stream, types = iv['stream'], iv['types']
        inside = [(p, ev) for p, ev in deliveries if iv['start_pos'] < p <= iv['end_pos']]
        mine = [(p, ev) for p, ev in inside if ev['stream'] == stream]
        got = {ev['seq'] for _, ev in mine}
        seqs = [ev['seq'] for _, ev in mine]
        horizon = {}  # conn → highest sim log index delivered in the interval
        later_conn_seen = set()  # connections a delivery came from
        for _, ev in inside:
            c = ev['conns'][0]
            horizon[c] = max(horizon.get(c, -1), ev['index'])
            later_conn_seen.add(c)
        max_order = max((self.sim.conns[c]['order'] for c in later_conn_seen), default=0)
        dropped = [p for p, kind, _ in announcements
                   if kind == 'bridge.dropped' and iv['start_pos'] < p <= iv['end_pos']]

        def announced(lo, hi):
            return any(lo < p < hi and (kind != 'bridge.resync' or s == stream)
                       for p, kind, s in announcements)

        events = self.sim.by_stream.get(stream, [])
        times = self.sim.stream_times.get(stream, [])
        for ev in events[bisect.bisect_right(times, iv['start_t']):]:
            if ev['type'] not in types:
                continue
            if iv['end_t'] is not None and ev['t'] >= iv['end_t']:
                break
            if ev['seq'] in got:
                continue
            i = bisect.bisect_left(seqs, ev['seq'])
            prev_pos = mine[i - 1][0] if i > 0 else iv['start_pos']
            next_pos = mine[i][0] if i < len(mine) else None
            key = (stream, ev['seq'])
            if not ev['conns']:
                conn = self.sim.conn_at(ev['t'])
                if conn is not None:
                    since = max(iv['start_t'], self.sim.conns[conn]['open'])
                    if not self.upstream_has(conn, stream, ev['type'], ev['t']) \
                            and ev['t'] - since > NOT_UPSTREAM_SLACK_S:
                        self.fail(session, f'{key} {ev["type"]}: subscribed since '
                                           f'{ev["t"] - since:.1f} s but not upstream on '
                                           f'connection {conn}')
                        continue
                    self.counts['events before the subscription was upstream'] += 1
                    continue
                if next_pos is None:
                    continue  # a tail: nothing after it to make it a gap
                self.count_gap(session, key, ev, prev_pos, next_pos, announced)
                continue
            conn = ev['conns'][0]
            info = self.sim.conns.get(conn, {})
            lost = ev['index'] < horizon.get(conn, -1) or (
                info.get('initiator') == 'server' and max_order > info.get('order', 0))
            if lost:
                # Dropped for a slow reader, and said so: the notice comes
                # after the drop and before the stream's next event.
                hi = next_pos if next_pos is not None else iv['end_pos'] + 1
                if any(prev_pos < p < hi for p in dropped):
                    self.counts['events dropped for a slow client (announced)'] += 1
                    continue
                why = ('a later event of that connection was delivered'
                       if ev['index'] < horizon.get(conn, -1) else
                       f'its connection ended with a close frame ({info.get("code")}) and a '
                       'later connection delivered')
                self.fail(session, f'lost while connected: {ev["type"]} {key} '
                                   f'(connection {conn}; {why})')
                self.counts['events lost while connected'] += 1
                continue
            if next_pos is None:
                continue
            self.count_gap(session, key, ev, prev_pos, next_pos, announced)

    def count_gap(self, session, key, ev, prev_pos, next_pos, announced):
        if announced(prev_pos, next_pos):
            self.counts['events in announced gaps'] += 1
            gap = (session.name, ev['stream'], prev_pos, next_pos)
            if gap not in self.gaps:
                self.gaps.add(gap)
                self.counts['gaps announced'] += 1
        else:
            self.fail(session, f'unannounced gap: {ev["type"]} {key} missing between lines '
                               f'{prev_pos} and {next_pos}, no bridge.state/resync/dropped '
                               'between')
            self.counts['events in unannounced gaps'] += 1

    def upstream_has(self, conn, stream, event_type, t):
        types = set()
        for when, wanted in self.sim.subs.get((conn, stream), ()):
            if when > t:
                break
            types = wanted
        return event_type in types

    def report(self):
        lines = [f'{k}: {v}' for k, v in sorted(self.counts.items())]
        if self.failures:
            lines.append(f'FAILED: {len(self.failures)} violations')
            lines += ['  ' + f for f in self.failures[:50]]
            if len(self.failures) > 50:
                lines.append(f'  … and {len(self.failures) - 50} more')
        else:
            lines.append('OK: every rule holds')
        return '\n'.join(lines)


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    checker = Checker(argv[1])
    ok = checker.run()
    print(checker.report())
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv))
