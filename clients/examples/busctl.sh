#!/bin/bash
# SPDX-License-Identifier: MIT
# A tour of wave-bridge's D-Bus API with busctl.
#
#   busctl.sh [--user|--system] [STREAM]
#
# Shows the object tree, the bridge's properties, subscribes to STREAM (if
# given) and shows the stream object's properties. busctl leaves the bus
# after each call and its subscription ends with it, so a stream object is
# only still there if someone else is subscribed (e.g. `wavectl watch
# STREAM` in another terminal); the script says so when it is not.
set -euo pipefail

NAME=inc.wave.Bridge1
BRIDGE_PATH=/inc/wave/Bridge1

bus=()
case ${1:-} in
    --user|--session) bus=(--user); shift ;;
    --system) bus=(--system); shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
stream=${1:-}

# Asks the bus itself (`busctl status` also needs the owner's credentials).
has_owner() {
    [ "$(busctl "$@" call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
        NameHasOwner s "$NAME" 2>/dev/null)" = "b true" ]
}

if ((${#bus[@]} == 0)); then
    # The user's session first (a user service), else the system bus.
    if has_owner --user; then
        bus=(--user)
    else
        bus=(--system)
    fi
fi
if ! has_owner "${bus[@]}"; then
    echo "$0: $NAME is not on the ${bus[0]#--} bus (is wave-bridge running?)" >&2
    exit 1
fi

run() {
    echo "\$ busctl ${bus[*]} $*"
    busctl "${bus[@]}" "$@"
    echo
}

run tree "$NAME"
run introspect "$NAME" "$BRIDGE_PATH" inc.wave.Bridge1
run get-property "$NAME" "$BRIDGE_PATH" inc.wave.Bridge1 State UpstreamRTT Clients Version

if [[ -n $stream ]]; then
    # Subscribe answers with the stream's object path: o "/inc/wave/Bridge1/stream/…".
    echo "\$ busctl ${bus[*]} call $NAME $BRIDGE_PATH inc.wave.Bridge1 Subscribe sas $stream 0"
    reply=$(busctl "${bus[@]}" call "$NAME" "$BRIDGE_PATH" inc.wave.Bridge1 Subscribe sas "$stream" 0)
    echo "$reply"
    echo
    path=${reply#o }
    path=${path//\"/}
    if busctl "${bus[@]}" introspect "$NAME" "$path" >/dev/null 2>&1; then
        run introspect "$NAME" "$path" inc.wave.Bridge1.Stream
        run get-property "$NAME" "$path" inc.wave.Bridge1.Stream Live ConcurrentViewers PeakViewers Bitrate
    else
        echo "$path is gone again: busctl's subscription ended when it left the bus."
        echo "Keep one open elsewhere (wavectl watch $stream) to read the stream's properties."
    fi
    echo "Follow the stream's signals with:"
    echo "  busctl ${bus[*]} monitor --match \"type='signal',sender='$NAME',path='$path'\""
fi
