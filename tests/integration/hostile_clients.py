# SPDX-License-Identifier: MIT
"""Local clients of other users, for test_hostile.py and tests/bench/
bench_hostile.py: sockets connected by another uid, a raw D-Bus client that
can vanish in the middle of a call, and a well-behaved socket client (the
witness) that counts every event and every pong it gets.

The bridge knows who a client is from the credentials the kernel recorded
at connect() (SO_PEERCRED, and dbus-daemon's own SO_PEERCRED for a bus
connection). So a small helper process running as the other uid connects
and hands the connected socket back over SCM_RIGHTS: the test then drives
the connection itself, as that user, from one process. Needs root.
"""

import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

# The helper: connects as its uid whatever it is asked to, sends back the fd.
_CONNECTOR = r'''
import os, socket, sys
ctl = socket.socket(fileno=int(sys.argv[1]))
while True:
    request = ctl.recv(4096)
    if not request:
        break
    path, count = request.decode().rsplit('\0', 1)
    for _ in range(int(count)):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        try:
            s.connect(path)
        except OSError as e:
            ctl.send(b'-' + str(e.errno).encode())
        else:
            socket.send_fds(ctl, [b'+'], [s.fileno()])
        s.close()
'''


class Connector:
    """Connects Unix sockets as @uid (gid @uid, no supplementary groups)."""

    def __init__(self, uid):
        self.uid = uid
        self.ctl, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([sys.executable, '-c', _CONNECTOR, str(child.fileno())],
                                     pass_fds=[child.fileno()], user=uid, group=uid,
                                     extra_groups=[], env={'PATH': '/usr/bin:/bin'})
        child.close()

    def connect(self, path, count=1):
        """@count sockets connected as the uid; None for each refused one."""
        self.ctl.send(f'{path}\0{count}'.encode())
        result = []
        for _ in range(count):
            message, fds, _, _ = socket.recv_fds(self.ctl, 64, 1)
            if message.startswith(b'+') and fds:
                sock = socket.socket(fileno=fds[0])
                # The helper's timeout left the descriptor non-blocking.
                sock.setblocking(True)
                result.append(sock)
            else:
                result.append(None)
        return result

    def close(self):
        self.ctl.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def read_lines(sock, timeout, until=None):
    """Reads JSON lines from @sock until EOF, @timeout, or until(message)."""
    sock.settimeout(timeout)
    buffer = b''
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b'\n')
            for line in lines:
                messages.append(json.loads(line))
                if until is not None and until(messages[-1]):
                    return messages
    except (socket.timeout, TimeoutError, ConnectionResetError):
        pass
    return messages


# ---- a raw D-Bus client ------------------------------------------------------

_METHOD_CALL, _METHOD_RETURN, _ERROR, _SIGNAL = 1, 2, 3, 4
_NO_REPLY_EXPECTED = 1


class _Writer:
    def __init__(self):
        self.buf = bytearray()

    def align(self, n):
        self.buf += b'\0' * (-len(self.buf) % n)

    def byte(self, value):
        self.buf.append(value)

    def u32(self, value):
        self.align(4)
        self.buf += struct.pack('<I', value)

    def string(self, text):
        data = text.encode() if isinstance(text, str) else text
        self.u32(len(data))
        self.buf += data + b'\0'

    def signature(self, text):
        self.byte(len(text))
        self.buf += text.encode() + b'\0'

    def value(self, sig, value):
        if sig in ('s', 'o'):
            self.string(value)
        elif sig == 'g':
            self.signature(value)
        elif sig == 'u':
            self.u32(value)
        elif sig == 'as':
            self.u32(0)
            at = len(self.buf) - 4
            start = len(self.buf)
            for item in value:
                self.string(item)
            struct.pack_into('<I', self.buf, at, len(self.buf) - start)
        else:
            raise ValueError(sig)


def _split_signature(signature):
    out, i = [], 0
    while i < len(signature):
        if signature[i] == 'a':
            out.append(signature[i:i + 2])
            i += 2
        else:
            out.append(signature[i])
            i += 1
    return out


def encode_call(serial, destination, path, interface, member, signature='', args=(), flags=0):
    body = _Writer()
    for sig, value in zip(_split_signature(signature), args):
        body.value(sig, value)
    fields = [(1, 'o', path), (3, 's', member), (6, 's', destination)]
    if interface:
        fields.append((2, 's', interface))
    if signature:
        fields.append((8, 'g', signature))
    header = _Writer()
    header.buf += b'l' + bytes([_METHOD_CALL, flags, 1])
    header.u32(len(body.buf))
    header.u32(serial)
    header.u32(0)
    start = len(header.buf)
    for code, sig, value in fields:
        header.align(8)
        header.byte(code)
        header.signature(sig)
        header.value(sig, value)
    struct.pack_into('<I', header.buf, 12, len(header.buf) - start)
    header.align(8)
    return bytes(header.buf + body.buf)


class _Reader:
    def __init__(self, data, offset=0):
        self.data, self.pos = data, offset

    def align(self, n):
        self.pos += -self.pos % n

    def u32(self):
        self.align(4)
        value, = struct.unpack_from('<I', self.data, self.pos)
        self.pos += 4
        return value

    def string(self):
        length = self.u32()
        text = self.data[self.pos:self.pos + length].decode(errors='replace')
        self.pos += length + 1
        return text

    def signature(self):
        length = self.data[self.pos]
        text = self.data[self.pos + 1:self.pos + 1 + length].decode()
        self.pos += length + 2
        return text


class RawBus:
    """One bus connection over an already connected socket (connected by
    the uid it authenticates as), written by hand so that a call can be
    sent and the connection dropped before the reply."""

    BRIDGE = ('inc.wave.Bridge1', '/inc/wave/Bridge1', 'inc.wave.Bridge1')

    def __init__(self, sock, uid, hello=True):
        self.sock = sock
        self.sock.settimeout(30)
        self.serial = 0
        self.buffer = b''
        self.unique_name = None
        self.sock.sendall(b'\0AUTH EXTERNAL ' + str(uid).encode().hex().encode() + b'\r\n')
        reply = b''
        while b'\r\n' not in reply:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError('the bus closed the connection during auth')
            reply += chunk
        if not reply.startswith(b'OK '):
            raise ConnectionError(f'auth refused: {reply!r}')
        self.sock.sendall(b'BEGIN\r\n')
        if hello:
            self.unique_name = self.call('org.freedesktop.DBus', '/org/freedesktop/DBus',
                                         'org.freedesktop.DBus', 'Hello')[1]

    def send_call(self, destination, path, interface, member, signature='', args=(), flags=0):
        self.serial += 1
        self.sock.sendall(encode_call(self.serial, destination, path, interface, member,
                                      signature, args, flags))
        return self.serial

    def send_bridge_call(self, member, signature='', args=()):
        return self.send_call(*self.BRIDGE, member, signature, args)

    def _read_message(self):
        while True:
            if len(self.buffer) >= 16:
                body_len, = struct.unpack_from('<I', self.buffer, 4)
                fields_len, = struct.unpack_from('<I', self.buffer, 12)
                header_len = 16 + fields_len + (-(16 + fields_len) % 8)
                if len(self.buffer) >= header_len + body_len:
                    message = self.buffer[:header_len + body_len]
                    self.buffer = self.buffer[header_len + body_len:]
                    return message, header_len, fields_len
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError('the bus closed the connection')
            self.buffer += chunk

    def wait_reply(self, serial):
        """(kind, first string argument or None): kind is 'return' or the error name."""
        while True:
            message, header_len, fields_len = self._read_message()
            kind = message[1]
            reader = _Reader(message, 16)
            fields = {}
            while reader.pos < 16 + fields_len:
                reader.align(8)
                code = message[reader.pos]
                reader.pos += 1
                sig = reader.signature()
                if sig in ('s', 'o'):
                    fields[code] = reader.string()
                elif sig == 'g':
                    fields[code] = reader.signature()
                elif sig == 'u':
                    fields[code] = reader.u32()
                else:
                    raise ValueError(f'unexpected header field type {sig}')
            if kind not in (_METHOD_RETURN, _ERROR) or fields.get(5) != serial:
                continue
            body_sig = fields.get(8, '')
            first = None
            if body_sig[:1] in ('s', 'o'):
                first = _Reader(message, header_len).string()
            return ('return' if kind == _METHOD_RETURN else fields.get(4)), first

    def call(self, *args, **kwargs):
        return self.wait_reply(self.send_call(*args, **kwargs))

    def bridge_call(self, member, signature='', args=()):
        return self.wait_reply(self.send_bridge_call(member, signature, args))

    def close(self):
        self.sock.close()


def bus_socket_path(address):
    assert address.startswith('unix:path='), address
    return address[len('unix:path='):].split(',')[0]


# A private bus that any uid may use (the session configuration admits only
# its own user).
OPEN_BUS_CONFIG = '''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="max_connections_per_user">100000</limit>
  <limit name="max_completed_connections">100000</limit>
  <limit name="max_incomplete_connections">10000</limit>
</busconfig>
'''


# ---- the well-behaved client -------------------------------------------------

class Witness(threading.Thread):
    """A well-behaved client of the bridge's socket, on its own thread:
    subscribed to @stream_id, reading everything at once, and pinging every
    @ping_interval seconds. Records every event's sim_seq and receive
    latency (wave-sim's sim_sent_us is CLOCK_MONOTONIC, like
    time.monotonic_ns()), and each ping's round trip."""

    def __init__(self, sock, stream_id, ping_interval=0.02):
        super().__init__(daemon=True)
        self.sock = sock
        self.stream_id = stream_id
        self.ping_interval = ping_interval
        self.lock = threading.Lock()
        self.seqs = []
        self.event_latency_us = []
        self.pings_sent = {}
        self.ping_rtt_us = []
        self.dropped = []
        self.other = {}
        self.error = None
        self.closed = False
        self.subscribed = threading.Event()
        self.stopping = threading.Event()
        self.pinging = threading.Event()
        self.pinging.set()
        self._next_ping = 0

    def reset(self):
        with self.lock:
            self.seqs, self.event_latency_us, self.ping_rtt_us = [], [], []
            self.dropped, self.other = [], {}

    def run(self):
        try:
            self._run()
        except Exception as error:  # reported by the test through .error
            self.error = repr(error)

    def _send(self, message):
        self.sock.sendall(json.dumps(message).encode() + b'\n')

    def _run(self):
        self.sock.setblocking(False)
        buffer = b''
        self._send({'type': 'subscribe', 'stream_id': self.stream_id,
                    'events': ['chat.message'], 'id': 'witness-sub'})
        next_ping = time.monotonic()
        while not self.stopping.is_set():
            now = time.monotonic()
            if self.pinging.is_set() and now >= next_ping:
                self._next_ping += 1
                ping_id = self._next_ping
                with self.lock:
                    self.pings_sent[ping_id] = time.monotonic_ns()
                self._send({'type': 'ping', 'id': ping_id})
                next_ping = now + self.ping_interval
            ready, _, _ = select.select([self.sock], [], [], max(0.0, min(0.005, next_ping - now)))
            if not ready:
                continue
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            received_ns = time.monotonic_ns()
            if not chunk:
                self.closed = True
                self.error = 'the bridge closed the witness connection'
                return
            buffer += chunk
            *lines, buffer = buffer.split(b'\n')
            for line in lines:
                self._handle(json.loads(line), received_ns)

    def _handle(self, message, received_ns):
        kind = message.get('type')
        with self.lock:
            if kind == 'chat.message':
                payload = message['payload']
                if 'sim_seq' in payload:
                    self.seqs.append(payload['sim_seq'])
                    self.event_latency_us.append(received_ns // 1000 - payload['sim_sent_us'])
            elif kind == 'pong':
                sent = self.pings_sent.pop(message.get('id'), None)
                if sent is not None:
                    self.ping_rtt_us.append((received_ns - sent) // 1000)
            elif kind == 'subscribed':
                self.subscribed.set()
            elif kind == 'bridge.dropped':
                self.dropped.append(message['payload'])
            else:
                self.other[kind] = self.other.get(kind, 0) + 1

    def snapshot(self):
        with self.lock:
            return {'seqs': list(self.seqs), 'event_latency_us': list(self.event_latency_us),
                    'ping_rtt_us': list(self.ping_rtt_us), 'pings_unanswered': len(self.pings_sent),
                    'dropped': list(self.dropped), 'other': dict(self.other)}

    def stop(self):
        self.stopping.set()
        self.join(10)


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]
