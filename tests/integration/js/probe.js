// SPDX-License-Identifier: MIT
// One WebSocket connection for test_websocket.py, reporting what happens
// as JSON lines: {"open":true}, {"message":…}, {"close":{"code","reason"}},
// {"http_status":N} (the handshake was refused), {"error":"…"}.
//   node probe.js URL [ORIGIN]
// Every line on stdin is sent as one text message; "FLOOD N TEXT" sends
// TEXT N times at once; "FRAGMENTS N SIZE" sends N fragments of SIZE bytes
// of one text message that never ends ("PONGFRAGMENTS N SIZE": the same
// with a pong frame after each fragment, as RFC 6455 allows); "PONGS N"
// sends N empty pongs.
'use strict';
const WebSocket = require('ws');

const [url, origin] = process.argv.slice(2);
const options = origin ? { origin } : {};
const ws = new WebSocket(url, options);
const out = (object) => console.log(JSON.stringify(object));

// Lines read before the handshake is done wait for it.
let opened = false;
const waiting = [];
ws.on('open', () => {
  out({ open: true });
  opened = true;
  waiting.splice(0).forEach(handle);
});
ws.on('message', (data) => out({ message: JSON.parse(data.toString()) }));
ws.on('close', (code, reason) => {
  out({ close: { code, reason: reason.toString() } });
  process.exit(0);
});
ws.on('unexpected-response', (request, response) => {
  out({ http_status: response.statusCode });
  process.exit(0);
});
ws.on('error', (error) => out({ error: String(error.message) }));

function handle(line) {
  if (ws.readyState !== WebSocket.OPEN)
    return;
  const fragments = /^(PONG)?FRAGMENTS (\d+) (\d+)$/.exec(line);
  if (fragments) {
    const chunk = 'x'.repeat(Number(fragments[3]));
    for (let i = 0; i < Number(fragments[2]); i++) {
      ws.send(chunk, { fin: false });
      if (fragments[1])
        ws.pong();
    }
    return;
  }
  const pongs = /^PONGS (\d+)$/.exec(line);
  if (pongs) {
    for (let i = 0; i < Number(pongs[1]); i++)
      ws.pong();
    return;
  }
  const flood = /^FLOOD (\d+) (.*)$/.exec(line);
  if (flood) {
    for (let i = 0; i < Number(flood[1]); i++)
      ws.send(flood[2]);
  } else {
    ws.send(line);
  }
}

let input = '';
process.stdin.on('data', (chunk) => {
  input += chunk;
  let newline;
  while ((newline = input.indexOf('\n')) >= 0) {
    const line = input.slice(0, newline);
    input = input.slice(newline + 1);
    if (opened)
      handle(line);
    else
      waiting.push(line);
  }
});
