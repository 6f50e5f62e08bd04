#!/bin/bash
# SPDX-License-Identifier: MIT
# Follow a stream through wave-bridge's socket with nothing but socat and jq.
#
#   socat-jq.sh STREAM [EVENTS]          e.g. socat-jq.sh stream_abc123 chat.message,stream.health
#   WAVE_BRIDGE_SOCKET=/path/wave.sock socat-jq.sh STREAM
#   socat-jq.sh -n 5 STREAM              stop after 5 events
#   socat-jq.sh -r STREAM                raw pretty-printed JSON instead of one line per event
set -euo pipefail

usage() {
    echo "usage: $0 [-n COUNT] [-r] STREAM [EVENT,EVENT...]" >&2
    exit 2
}

count=0
raw=0
while getopts "n:rh" opt; do
    case $opt in
        n) count=$OPTARG ;;
        r) raw=1 ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[[ $# -ge 1 && $# -le 2 ]] || usage
stream=$1
events=${2:-}

if [[ -n ${WAVE_BRIDGE_SOCKET:-} ]]; then
    socket=$WAVE_BRIDGE_SOCKET
elif [[ $(id -u) -ne 0 && -n ${XDG_RUNTIME_DIR:-} && -S $XDG_RUNTIME_DIR/wave-bridge/wave.sock ]]; then
    socket=$XDG_RUNTIME_DIR/wave-bridge/wave.sock
else
    socket=/run/wave-bridge/wave.sock
fi
if [[ ! -S $socket ]]; then
    echo "$0: no wave-bridge socket at $socket (is wave-bridge running?)" >&2
    exit 1
fi

# The subscribe request, built by jq so any stream id is quoted correctly.
request=$(jq -cn --arg s "$stream" --arg e "$events" \
    '{type: "subscribe", stream_id: $s, events: ($e | split(",") | map(select(. != "")))}')

# One line per message: local time, type, and the fields that matter.
filter='
  def show:
    if .type == "chat.message" then "\(.payload.username): \(.payload.message)"
    elif .type == "stream.health" then
      "\(.payload.bitrate) kbps \(.payload.fps) fps loss \(.payload.packet_loss * 100 | . * 100 | round / 100)% \(.payload.latency) ms"
    elif .type == "analytics.update" then
      "viewers \(.payload.concurrent_viewers) (peak \(.payload.peak_viewers))"
    elif .type == "reaction.received" then "\(.payload.reaction) x\(.payload.count)"
    elif .type == "viewer.joined" then "\(.payload.viewer_id) from \(.payload.country)"
    elif .type == "viewer.left" then "\(.payload.viewer_id) after \(.payload.watch_time)s"
    else (.payload | tostring) end;
  "\(now | strflocaltime("%H:%M:%S")) \(.type)\(if .cached then " (cached)" else "" end)  \(show)"'
if ((raw)); then
    filter='.'
fi

# socat keeps the connection open after sending the request (shut-none and a
# long -t), so it does not exit on its own while jq is still reading.
# With -n, jq's limit() stops after COUNT messages and socat is stopped.
select='select(.type != "bridge.hello" and .type != "subscribed")'
if ((count > 0)); then
    program="limit($count; inputs | $select) | $filter"
else
    program="inputs | $select | $filter"
fi
# socat writes into a FIFO rather than a pipe so that its pid is known:
# with -n, jq ends first and socat would otherwise wait for one more event.
fifo_dir=$(mktemp -d)
socat_pid=""
trap 'if [[ -n $socat_pid ]]; then kill "$socat_pid" 2>/dev/null || true; fi; rm -rf "$fifo_dir"' EXIT
mkfifo "$fifo_dir/events"
socat -t 2000000 - "UNIX-CONNECT:$socket,shut-none" <<<"$request" >"$fifo_dir/events" &
socat_pid=$!
status=0
jq --unbuffered -n -r "$program" <"$fifo_dir/events" || status=$?
exit "$status"
