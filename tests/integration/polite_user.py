# SPDX-License-Identifier: MIT
"""A well-behaved local user next to hostile ones (test_fairness.py): how
long its subscribe takes to reach upstream (from sending it to receiving an
event wave-sim emits for that stream, which wave-sim sends only to
connections subscribed upstream) and how long its chat takes to be `sent`.
Prints a JSON summary.

    polite_user.py SOCKET_PATH SIM_URL STREAM_ID ROUNDS
"""

import json
import socket
import sys
import time
import urllib.request


class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buffer = b''

    def send(self, message):
        self.sock.sendall(json.dumps(message).encode() + b'\n')

    def recv(self, timeout):
        deadline = time.monotonic() + timeout
        while b'\n' not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                raise EOFError('closed by the bridge')
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b'\n', 1)
        return json.loads(line)


def emit(sim_url, stream_id, marker):
    body = json.dumps({'type': 'chat.message', 'payload': {
        'stream_id': stream_id, 'message_id': marker, 'user_id': 'u', 'username': 'sim',
        'message': marker, 'timestamp': '2024-01-01T00:00:00Z'}}).encode()
    request = urllib.request.Request(sim_url + '/sim/emit', data=body, method='POST',
                                     headers={'Content-Type': 'application/json'})
    urllib.request.urlopen(request, timeout=5).read()


def main():
    path, sim_url, stream_id, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    result = {'subscribe_s': [], 'chat_sent_s': [], 'status_ok': 0}
    for round_index in range(rounds):
        client = Client(path)
        assert client.recv(10)['type'] == 'bridge.hello'
        start = time.monotonic()
        client.send({'type': 'subscribe', 'stream_id': stream_id, 'events': ['chat.message'],
                     'id': 's'})
        received = None
        marker_index = 0
        while received is None and time.monotonic() - start < 30:
            marker_index += 1
            marker = f'mark-{round_index}-{marker_index}'
            emit(sim_url, stream_id, marker)
            poll_end = time.monotonic() + 0.05
            while time.monotonic() < poll_end:
                message = client.recv(max(poll_end - time.monotonic(), 0.001))
                if message and message.get('type') == 'chat.message' \
                        and message['payload'].get('message', '').startswith(f'mark-{round_index}-'):
                    received = time.monotonic() - start
                    break
        result['subscribe_s'].append(received)

        start = time.monotonic()
        client.send({'type': 'chat.message', 'stream_id': stream_id, 'message': 'hello',
                     'id': 'c'})
        sent = None
        while sent is None and time.monotonic() - start < 30:
            message = client.recv(30)
            if message and message.get('id') == 'c':
                sent = time.monotonic() - start if message['type'] == 'sent' else message
        result['chat_sent_s'].append(sent)

        client.send({'type': 'status', 'id': 'st'})
        while True:
            message = client.recv(10)
            if message is None:
                break
            if message.get('id') == 'st':
                result['status_ok'] += message['type'] == 'bridge.status'
                break
        client.sock.close()
        time.sleep(0.5)
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
    main()
