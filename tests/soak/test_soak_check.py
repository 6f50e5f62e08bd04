# SPDX-License-Identifier: MIT
"""The soak checker must be able to fail: a small run written by hand, whole
it passes; doctored (an event lost, duplicated, reordered, of a type not
subscribed, a gap nobody announced, a send answered twice or never) it
fails, naming the rule."""

import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import soak_check  # noqa: E402

S = 'stream_abc123'


def event(seq, etype='stream.health', stream=S, cached=False):
    payloads = {
        'stream.health': {'bitrate': 1000.0 + seq, 'fps': 30.0, 'packet_loss': 0.0,
                          'latency': 40},
        'chat.message': {'message_id': f'msg_{seq}', 'user_id': 'u', 'username': 'n',
                         'message': 'hi', 'timestamp': f'2026-01-01T00:00:{seq:02d}Z'},
    }
    payload = {'stream_id': stream, **payloads[etype], 'sim_stream_seq': seq}
    msg = {'type': etype, 'payload': payload}
    if cached:
        msg['cached'] = True
        msg['age_ms'] = 5
    return msg


class Run:
    """A sim log and one socket session, built step by step with a clock."""

    def __init__(self):
        self.t = 100.0
        self.sim = []
        self.client = [{'kind': 'session', 'transport': 'socket', 'id': 'c'}]

    def tick(self):
        self.t += 0.01
        return self.t

    def sim_rec(self, kind, **fields):
        self.sim.append({'t': int(self.tick() * 1e6), 'kind': kind, **fields})

    def emit(self, seq, conns, etype='stream.health'):
        self.sim_rec('event', conns=conns, message=event(seq, etype))

    def got(self, msg):
        self.client.append({'t': self.tick(), 'kind': 'in', 'msg': msg})

    def out(self, msg):
        self.client.append({'t': self.tick(), 'kind': 'out', 'msg': msg})

    def write(self, run_dir):
        os.makedirs(os.path.join(run_dir, 'clients'), exist_ok=True)
        with open(os.path.join(run_dir, 'sim-events.jsonl'), 'w') as f:
            for rec in self.sim:
                f.write(json.dumps(rec) + '\n')
        with open(os.path.join(run_dir, 'clients', 'c.jsonl'), 'w') as f:
            for rec in self.client:
                f.write(json.dumps(rec) + '\n')


def scenario(lose=None, duplicate=None, swap=None, announce=True, extra=None):
    """Connection 1 carries events 1-5, then the sim closes it with 4500
    (events 6 and 7 go to no connection: the bridge is reconnecting),
    connection 2 carries 8-10. The client subscribed to health before
    event 1 and sends one chat message."""
    r = Run()
    r.sim_rec('open', conn=1)
    r.out({'type': 'subscribe', 'stream_id': S, 'events': ['stream.health'], 'id': 1})
    r.got({'type': 'subscribed', 'id': 1,
           'payload': {'stream_id': S, 'events': ['stream.health']}})
    r.sim_rec('subscribe', conn=1, stream_id=S, events=['stream.health'])
    r.out({'type': 'chat.message', 'stream_id': S, 'message': 'x', 'id': 'c1'})
    delivered = []
    for seq in range(1, 6):
        r.emit(seq, [1])
        delivered.append(seq)
    r.sim_rec('close', conn=1, code=4500, initiator='server')
    r.emit(6, [])
    r.emit(7, [])
    r.sim_rec('open', conn=2)
    r.sim_rec('subscribe', conn=2, stream_id=S, events=['stream.health'])
    for seq in range(8, 11):
        r.emit(seq, [2])
        delivered.append(seq)
    order = [s for s in delivered if s != lose]
    if duplicate is not None:
        order.insert(order.index(duplicate) + 1, duplicate)
    if swap is not None:
        i = order.index(swap)
        order[i], order[i + 1] = order[i + 1], order[i]
    r.got({'type': 'sent', 'id': 'c1', 'payload': {'stream_id': S, 'type': 'chat.message'}})
    for seq in order:
        if seq == 8 and announce:
            r.got({'type': 'bridge.state', 'payload': {'state': 'waiting'}})
        r.got(event(seq))
    if extra is not None:
        extra(r)
    r.client.append({'t': r.tick(), 'kind': 'end', 'graceful': True})
    return r


class TestSoakCheck(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='wb-soak-check-')

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def check(self, run):
        run.write(self.dir)
        checker = soak_check.Checker(self.dir)
        ok = checker.run()
        return ok, checker

    def assert_fails(self, run, words):
        ok, checker = self.check(run)
        self.assertFalse(ok, checker.report())
        self.assertTrue(any(words in f for f in checker.failures), checker.report())

    def test_whole_run_passes(self):
        ok, checker = self.check(scenario())
        self.assertTrue(ok, checker.report())
        self.assertEqual(checker.counts['events delivered (socket)'], 8)
        self.assertEqual(checker.counts['events in announced gaps'], 2)
        self.assertEqual(checker.counts['sends answered sent'], 1)

    def test_lost_event_fails(self):
        self.assert_fails(scenario(lose=3), 'lost while connected')

    def test_lost_before_a_close_frame_fails(self):
        # Event 5 was the last of connection 1, which the sim ended with a
        # close frame: the bridge read it before the close, so it is owed.
        self.assert_fails(scenario(lose=5), 'lost while connected')

    def test_drop_announced_passes_and_elsewhere_fails(self):
        def notice(where):
            run = scenario(lose=3)
            i = next(i for i, rec in enumerate(run.client)
                     if rec.get('msg', {}).get('payload', {}).get('sim_stream_seq') == where)
            run.client.insert(i, {'t': run.client[i]['t'] - 0.001, 'kind': 'in', 'msg': {
                'type': 'bridge.dropped', 'payload': {'count': 1}}})
            return run
        ok, checker = self.check(notice(4))
        self.assertTrue(ok, checker.report())
        self.assertEqual(checker.counts['events dropped for a slow client (announced)'], 1)
        # A notice before the loss does not announce it.
        self.assert_fails(notice(2), 'lost while connected')

    def test_duplicate_fails(self):
        self.assert_fails(scenario(duplicate=4), 'duplicate')

    def test_wrong_order_fails(self):
        self.assert_fails(scenario(swap=2), 'out of order')

    def test_unannounced_gap_fails(self):
        self.assert_fails(scenario(announce=False), 'unannounced gap')

    def test_resync_of_another_stream_does_not_announce(self):
        run = scenario(announce=False)
        # A resync for a different stream between 5 and 8 is no notice for S.
        i = next(i for i, rec in enumerate(run.client)
                 if rec.get('msg', {}).get('payload', {}).get('sim_stream_seq') == 8)
        run.client.insert(i, {'t': run.client[i]['t'] - 0.001, 'kind': 'in', 'msg': {
            'type': 'bridge.resync', 'payload': {'stream_id': 'stream_other', 'gap_ms': 5}}})
        self.assert_fails(run, 'unannounced gap')

    def test_unsubscribed_type_fails(self):
        def chat(r):
            r.emit(11, [2], 'chat.message')
            r.got(event(11, 'chat.message'))
        self.assert_fails(scenario(extra=chat), 'not subscribed')

    def test_event_never_emitted_fails(self):
        self.assert_fails(scenario(extra=lambda r: r.got(event(99))), 'never emitted')

    def test_send_answered_twice_fails(self):
        self.assert_fails(scenario(extra=lambda r: r.got(
            {'type': 'error', 'id': 'c1', 'payload': {'code': 'send_failed'}})),
            'answered 2 times')

    def test_send_never_answered_fails(self):
        run = scenario()
        run.client = [rec for rec in run.client if rec.get('msg', {}).get('type') != 'sent']
        self.assert_fails(run, 'never answered')

    def test_cached_replay_is_not_a_duplicate(self):
        ok, checker = self.check(scenario(extra=lambda r: (
            r.out({'type': 'subscribe', 'stream_id': S, 'events': [], 'id': 2}),
            r.got({'type': 'subscribed', 'id': 2,
                   'payload': {'stream_id': S, 'events': list(soak_check.STREAM_EVENTS)}}),
            r.got(event(10, cached=True)))))
        self.assertTrue(ok, checker.report())

    def history_run(self, numbers, allowed=5, unsubscribe_first=False):
        """Chat events 11-13 go live to a client subscribed to chat, then it
        subscribes again asking for history and gets @numbers as history."""
        def chat(r):
            r.out({'type': 'subscribe', 'stream_id': S, 'events': ['chat.message'], 'id': 3})
            r.got({'type': 'subscribed', 'id': 3,
                   'payload': {'stream_id': S, 'events': ['chat.message']}})
            for seq in (11, 12, 13):
                r.emit(seq, [2], 'chat.message')
                r.got(event(seq, 'chat.message'))
            if unsubscribe_first:
                r.got({'type': 'unsubscribed', 'id': 4, 'payload': {'stream_id': S, 'events': []}})
            r.got({'type': 'subscribed', 'id': 5, 'payload': {
                'stream_id': S, 'events': ['chat.message'], 'history': allowed}})
            for seq in numbers:
                r.got(event(seq, 'chat.message', cached=True))
        run = scenario(extra=chat)
        return run

    def test_history_of_older_events_passes(self):
        ok, checker = self.check(self.history_run([]))
        self.assertTrue(ok, checker.report())

    def test_history_repeating_a_live_event_fails(self):
        self.assert_fails(self.history_run([12]), 'already had it')

    def test_history_after_unsubscribe_may_repeat(self):
        ok, checker = self.check(self.history_run([12, 13], unsubscribe_first=True))
        self.assertTrue(ok, checker.report())

    def test_history_beyond_its_number_fails(self):
        self.assert_fails(self.history_run([11, 12], allowed=1, unsubscribe_first=True),
                          'more than the "history"')

    def test_history_not_oldest_first_fails(self):
        self.assert_fails(self.history_run([13, 12], unsubscribe_first=True),
                          'not oldest first')

    def test_dbus_signal_maps_to_its_event(self):
        run = scenario()
        run.client[0]['transport'] = 'dbus'
        for rec in run.client:
            msg = rec.get('msg', {})
            if msg.get('type') == 'stream.health':
                p = msg['payload']
                rec['msg'] = {'type': 'dbus.signal', 'member': 'Health',
                              'path': '/inc/wave/Bridge1/stream/stream_5fabc123',
                              'args': [p['bitrate'], p['fps'], p['packet_loss'],
                                       float(p['latency'])]}
        ok, checker = self.check(run)
        self.assertTrue(ok, checker.report())
        self.assertEqual(checker.counts['events delivered (dbus)'], 8)
        # and a lost signal is found the same way
        i = next(i for i, rec in enumerate(run.client)
                 if rec.get('msg', {}).get('args', [0])[0] == 1003.0)
        del run.client[i]
        self.assert_fails(run, 'lost while connected')


DAEMON_LOG = """\
wave-upstream-Message: 16:05:22.930: upstream ws://x lost: other close code (close code 4000: soak)
wave-upstream-Message: 16:05:22.930: next upstream attempt in 100 ms
wave-upstream-Message: 16:05:23.032: connected to ws://x
wave-upstream-Message: 16:05:24.100: upstream ws://x lost: going away (close code 1001)
wave-upstream-Message: 16:05:24.100: next upstream attempt in 310 ms
wave-upstream-Message: 16:05:24.420: connected to ws://x
wave-upstream-Message: 16:05:25.000: upstream ws://x lost: invalid api key (close code 4401)
wave-bridged-Message: 16:05:25.194: reloading (SIGHUP)
wave-upstream-Message: 16:05:25.197: connected to ws://x
"""


class TestReconnectWaits(unittest.TestCase):
    """soak.py's check of the daemon's reconnect waits against the close table."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='wb-soak-waits-')

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def check(self, log):
        import soak
        with open(os.path.join(self.dir, 'daemon.log'), 'w') as f:
            f.write(log)
        run = soak.Soak.__new__(soak.Soak)
        run.run_dir, run.failures = self.dir, []
        run.check_waits()
        return run

    def test_table_waits_pass(self):
        run = self.check(DAEMON_LOG)
        self.assertEqual(run.failures, [])
        self.assertEqual(run.waits['backoff'], 1)
        self.assertEqual(run.waits['going away'], 1)

    def test_short_plan_fails(self):
        run = self.check(DAEMON_LOG.replace('in 310 ms', 'in 100 ms'))
        self.assertTrue(any('the table says 300-360 ms' in f for f in run.failures), run.failures)

    def test_early_attempt_fails(self):
        run = self.check(DAEMON_LOG.replace('16:05:24.420', '16:05:24.300'))
        self.assertTrue(any('ended after 200 ms' in f for f in run.failures), run.failures)

    def test_retry_after_4401_fails(self):
        run = self.check(DAEMON_LOG.replace(
            'lost: invalid api key (close code 4401)\n',
            'lost: invalid api key (close code 4401)\n'
            'wave-upstream-Message: 16:05:25.000: next upstream attempt in 100 ms\n'))
        self.assertTrue(any('planned a retry' in f for f in run.failures), run.failures)



class TestDaemonLog(unittest.TestCase):
    """soak.py's check that the daemon's log has no CRITICAL, ERROR or
    unexpected warning."""

    def check(self, log):
        import soak
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, 'daemon.log'), 'w') as f:
                f.write(log)
            run = soak.Soak.__new__(soak.Soak)
            run.run_dir, run.failures = d, []
            run.check_log()
            return run.failures

    def test_invalid_frames_are_expected(self):
        self.assertEqual(self.check(
            "(wave-bridged:1): wave-upstream-WARNING **: 16:00:47.479: ignoring invalid "
            "upstream message: binary frame\n"), [])

    def test_critical_fails(self):
        failures = self.check("(wave-bridged:1): wave-upstream-CRITICAL **: 16:35:34.051: "
                              "write_json: assertion 'is_connected (self)' failed\n")
        self.assertTrue(any('CRITICAL' in f for f in failures), failures)

    def test_other_warning_fails(self):
        failures = self.check("(wave-bridged:1): wave-hub-WARNING **: 16:35:34.051: "
                              "A kept event no longer parses\n")
        self.assertTrue(any('WARNING' in f for f in failures), failures)


if __name__ == '__main__':
    unittest.main()
