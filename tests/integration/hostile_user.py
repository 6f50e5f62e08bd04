# SPDX-License-Identifier: MIT
"""One hostile local user of the bridge's socket, for tests/integration/
test_fairness.py: opens as many connections as the bridge allows, says so on stdout and waits
for a line on stdin, then floods subscribes to ever new stream ids on all of them, undoing old ones
when refused, for a while. Reads every reply (a client that never reads is
another test's business) and prints a JSON summary on stdout at the end.

    hostile_user.py SOCKET_PATH SECONDS PREFIX [REQUESTS_PER_SECOND]

REQUESTS_PER_SECOND (default 2000) caps the subscribes it sends: far past
its quotas and the upstream pace (20/s), but not so fast that ten of these
only measure who gets the CPU (see docs/configuration.md, the note on
request rates).
"""

import json
import selectors
import socket
import sys
import time


def main():
    path, seconds, prefix = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 2000.0
    summary = {'connections': 0, 'refused_connections': 0, 'subscribes': 0, 'unsubscribes': 0,
               'errors': {}}
    conns = []
    for _ in range(1000):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(60)
        try:
            sock.connect(path)
            first = b''
            while b'\n' not in first:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                first += chunk
        except OSError as error:
            summary['connect_error'] = repr(error)
            sock.close()
            break
        line = first.split(b'\n', 1)[0]
        message = json.loads(line) if line else {}
        if message.get('type') != 'bridge.hello':
            summary['refused_connections'] += 1
            sock.close()
            break
        sock.setblocking(False)
        conns.append({'sock': sock, 'buffer': first.split(b'\n', 1)[1], 'held': [], 'next': 0})
    summary['connections'] = len(conns)
    # All users connect first, then flood together: the test says when.
    print(json.dumps({'ready': len(conns)}), flush=True)
    sys.stdin.readline()

    selector = selectors.DefaultSelector()
    for index, conn in enumerate(conns):
        selector.register(conn['sock'], selectors.EVENT_READ, index)
    deadline = time.monotonic() + seconds
    counter = 0
    started = time.monotonic()
    while time.monotonic() < deadline:
        for conn in conns:
            if conn['sock'] is None:
                continue
            if summary['subscribes'] >= rate * (time.monotonic() - started):
                break
            counter += 1
            stream = f'{prefix}{counter}'
            try:
                conn['sock'].send(json.dumps({'type': 'subscribe', 'stream_id': stream}).encode()
                                  + b'\n')
                conn['held'].append(stream)
                summary['subscribes'] += 1
            except BlockingIOError:
                pass
        for key, _ in selector.select(timeout=0.01):
            conn = conns[key.data]
            try:
                data = conn['sock'].recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                selector.unregister(conn['sock'])
                conn['sock'].close()
                conn['sock'] = None
                continue
            conn['buffer'] += data
            *lines, conn['buffer'] = conn['buffer'].split(b'\n')
            for line in lines:
                message = json.loads(line)
                if message.get('type') != 'error':
                    continue
                code = message['payload']['code']
                summary['errors'][code] = summary['errors'].get(code, 0) + 1
                if code == 'too_many_subscriptions' and conn['held']:
                    # At the quota: give one back and keep churning.
                    old = conn['held'].pop(0)
                    try:
                        conn['sock'].send(json.dumps({'type': 'unsubscribe',
                                                      'stream_id': old}).encode() + b'\n')
                        summary['unsubscribes'] += 1
                    except BlockingIOError:
                        pass
    summary['alive_connections'] = sum(1 for c in conns if c['sock'] is not None)
    print(json.dumps(summary), flush=True)


if __name__ == '__main__':
    main()
