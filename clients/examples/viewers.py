#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Print the viewer count of a WAVE stream as wave-bridge publishes it on D-Bus.

Subscribes to analytics.update through inc.wave.Bridge1.Subscribe, then
prints a line whenever the stream object's ConcurrentViewers property changes
(org.freedesktop.DBus.Properties.PropertiesChanged). The subscription ends
when this process leaves the bus.

    viewers.py stream_abc123            # session bus, else system bus
    viewers.py --system stream_abc123
    viewers.py --count 3 --timeout 60 stream_abc123   # for scripts and tests
"""

import argparse
import sys
import time

import gi

gi.require_version('Gio', '2.0')
gi.require_version('GLib', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

NAME = 'inc.wave.Bridge1'
PATH = '/inc/wave/Bridge1'
IFACE = 'inc.wave.Bridge1'
STREAM_IFACE = 'inc.wave.Bridge1.Stream'


def pick_bus(args):
    """The bus the bridge is on: the one asked for, else session then system."""
    kinds = [Gio.BusType.SYSTEM] if args.system else [Gio.BusType.SESSION]
    if not args.system and not args.session:
        kinds.append(Gio.BusType.SYSTEM)
    for kind in kinds:
        try:
            bus = Gio.bus_get_sync(kind, None)
            owned = bus.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus',
                                  'org.freedesktop.DBus', 'NameHasOwner',
                                  GLib.Variant('(s)', (NAME,)), GLib.VariantType('(b)'),
                                  Gio.DBusCallFlags.NONE, -1, None).unpack()[0]
            if owned:
                return bus
        except GLib.Error:
            continue
    sys.exit('viewers.py: wave-bridge is not on the bus (start it with '
             '`wave-bridged --bus=session` or `systemctl start wave-bridge`)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('stream_id')
    parser.add_argument('--system', action='store_true', help='use the system bus')
    parser.add_argument('--session', action='store_true', help='use the session bus')
    parser.add_argument('--count', type=int, default=0,
                        help='exit after this many updates (default: run until Ctrl-C)')
    parser.add_argument('--timeout', type=float, default=0,
                        help='give up after this many seconds (exit 1)')
    args = parser.parse_args()

    bus = pick_bus(args)
    try:
        path = bus.call_sync(NAME, PATH, IFACE, 'Subscribe',
                             GLib.Variant('(sas)', (args.stream_id, ['analytics.update'])),
                             GLib.VariantType('(o)'), Gio.DBusCallFlags.NONE, -1,
                             None).unpack()[0]
    except GLib.Error as error:
        sys.exit(f'viewers.py: Subscribe failed: {error.message}')

    loop = GLib.MainLoop()
    state = {'seen': 0, 'code': 0}

    def show(viewers, peak):
        stamp = time.strftime('%H:%M:%S')
        peak_text = f' (peak {peak})' if peak is not None else ''
        print(f'{stamp} {args.stream_id} viewers {viewers}{peak_text}', flush=True)
        state['seen'] += 1
        if args.count and state['seen'] >= args.count:
            loop.quit()

    def on_properties_changed(_bus, _sender, _path, _iface, _signal, params):
        iface, changed, _invalidated = params.unpack()
        if iface == STREAM_IFACE and 'ConcurrentViewers' in changed:
            show(changed['ConcurrentViewers'], changed.get('PeakViewers'))

    bus.signal_subscribe(NAME, 'org.freedesktop.DBus.Properties', 'PropertiesChanged', path,
                         None, Gio.DBusSignalFlags.NONE, on_properties_changed)

    def on_timeout():
        print(f'viewers.py: no viewer update within {args.timeout:g} s', file=sys.stderr)
        state['code'] = 1
        loop.quit()
        return False

    if args.timeout:
        GLib.timeout_add(int(args.timeout * 1000), on_timeout)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, 2, lambda: loop.quit() or True)   # SIGINT
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, 15, lambda: loop.quit() or True)  # SIGTERM
    print(f'watching {args.stream_id} at {path} (Ctrl-C to stop)', file=sys.stderr, flush=True)
    loop.run()
    return state['code']


if __name__ == '__main__':
    sys.exit(main())
