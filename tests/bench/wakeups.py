# SPDX-License-Identifier: MIT
"""What one upstream event costs the daemon at light load, against a
saturating burst (issue 15: "CPU per event at a light rate <= 2x the
saturated CPU per event, with at most one main-loop wake-up per upstream
frame").

Runs the real wave-sim and wave-bridged from a build directory (a release
build: scripts/bench makes build-bench) and one tests/bench/bench-fanout
client, and prints per upstream event:
  - daemon CPU (schedstat) at 10/s, 1000/s and saturated, and the ratios;
  - with strace attached (its own run, CPU not measured), the main loop's
    poll() calls, those that returned only because the loop's wakeup
    eventfd had been written (spurious iterations), the write()s to that
    eventfd, and the socket writes.

  python3 tests/bench/wakeups.py --build-dir build-bench [--rounds 3]
"""

import argparse
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

API_KEY = 'wave_test_key'
EVENT_SIZE = 256
# rate (events/s), events: every light run lasts a few seconds.
LIGHT_RUNS = ((10, 40), (1000, 3000))
SATURATED = (100000, 20000)
STRACE_RUN = (10, 30)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Setup:
    def __init__(self, build_dir):
        self.build_dir = build_dir
        self.dir = tempfile.mkdtemp(prefix='wave-wakeups-')
        self.sim = subprocess.Popen(
            [os.path.join(build_dir, 'sim', 'wave-sim'), '--port', '0', '--streams', '1',
             '--quiet', '--api-key', API_KEY],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready, _, _ = select.select([self.sim.stdout], [], [], 20)
        if not ready:
            raise RuntimeError('wave-sim printed no URL')
        self.url = self.sim.stdout.readline().strip()
        key = os.path.join(self.dir, 'key')
        with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), 'w') as f:
            f.write(API_KEY)
        self.socket_path = os.path.join(self.dir, 'sock')
        config = os.path.join(self.dir, 'conf')
        with open(config, 'w') as f:
            f.write(f'[Upstream]\nURL={self.url}\nAPIKeyFile={key}\n[Socket]\n'
                    f'Path={self.socket_path}\n[Limits]\nClientQueueBytes={16 << 20}\n')
        self.bridge = subprocess.Popen(
            [os.path.join(build_dir, 'daemon', 'wave-bridged'), f'--config={config}',
             '--bus=none'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket_path):
            if time.monotonic() > deadline:
                raise RuntimeError('wave-bridged did not start')
            time.sleep(0.02)
        self.seq = 0

    def run(self, rate, count):
        self.seq += 1
        cmd = [os.path.join(self.build_dir, 'tests', 'bench-fanout'), '--mode=bridge',
               f'--sim-url={self.url}', f'--stream=wakeups_{self.seq}', '--clients=1',
               f'--rate={rate}', f'--count={count}', f'--size={EVENT_SIZE}',
               f'--socket={self.socket_path}', f'--pid={self.bridge.pid}']
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def close(self):
        stop(self.bridge)
        stop(self.sim)
        shutil.rmtree(self.dir, ignore_errors=True)


def eventfds(pid):
    fds = set()
    for fd in os.listdir(f'/proc/{pid}/fd'):
        try:
            if os.readlink(f'/proc/{pid}/fd/{fd}') == 'anon_inode:[eventfd]':
                fds.add(int(fd))
        except OSError:
            pass
    return fds


def count_syscalls(setup, rate, count):
    """Runs one flood with strace attached: syscalls per upstream event."""
    log = os.path.join(setup.dir, 'strace.log')
    tracer = subprocess.Popen(['strace', '-f', '-s', '64', '-e', 'trace=poll,ppoll,write,sendmsg',
                               '-o', log, '-p', str(setup.bridge.pid)],
                              stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    report = setup.run(rate, count)
    tracer.send_signal(signal.SIGINT)
    tracer.wait(10)
    wake = eventfds(setup.bridge.pid)
    main_thread = str(setup.bridge.pid)
    counts = {'poll': 0, 'poll_woken_by_eventfd_only': 0, 'eventfd_write': 0, 'sendmsg': 0}
    events = -1  # counted from the first event's write to the last one's
    with open(log) as f:
        for line in f:
            m = re.match(r'(\d+)\s+(\w+)\((\d+)?(.*)', line)
            if not m or m.group(1) != main_thread:
                continue
            _, name, fd, rest = m.groups()
            if name == 'sendmsg' and '\\"type\\":\\"chat.message\\"' in rest:
                events += 1
                if events == 0:
                    counts = dict.fromkeys(counts, 0)
            if events < 0:
                continue
            if name in ('poll', 'ppoll'):
                counts['poll'] += 1
                ready = [int(x) for x in re.findall(r'fd=(\d+), revents', rest.split(' = ', 1)[-1])]
                if ready and all(x in wake for x in ready):
                    counts['poll_woken_by_eventfd_only'] += 1
            elif name == 'write' and fd is not None and int(fd) in wake:
                counts['eventfd_write'] += 1
            elif name == 'sendmsg':
                counts['sendmsg'] += 1
    # The last event's own iteration ends after its write: counted in full
    # for the events between the first write and the last.
    report['received'] = max(events, 1)
    return {k: v / report['received'] for k, v in counts.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--build-dir', required=True)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    setup = Setup(os.path.abspath(args.build_dir))
    cpu = {}
    try:
        setup.run(1000, 200)  # connected, warm
        for _ in range(args.rounds):
            for rate, count in LIGHT_RUNS + (SATURATED,):
                r = setup.run(rate, count)
                cpu.setdefault(rate, []).append(1e6 * r['cpu_sched_s'] / r['received'])
        syscalls = count_syscalls(setup, *STRACE_RUN) if shutil.which('strace') else None
    finally:
        setup.close()
    sat = statistics.median(cpu[SATURATED[0]])
    print(f'daemon CPU per upstream event (median of {args.rounds}): '
          f'saturated {sat:.1f} us', flush=True)
    for rate, _ in LIGHT_RUNS:
        light = statistics.median(cpu[rate])
        print(f'  at {rate}/s: {light:.1f} us = {light / sat:.2f} x saturated')
    if syscalls is not None:
        print(f'per upstream event at {STRACE_RUN[0]}/s: ' +
              ', '.join(f'{k} {v:.2f}' for k, v in syscalls.items()))
    else:
        print('strace not found: wake-ups not counted', file=sys.stderr)


if __name__ == '__main__':
    main()
