// SPDX-License-Identifier: MIT
// Runs the WAVE documentation's own WaveWebSocket class (wave-websocket-doc.js)
// against the bridge's local endpoint, for test_websocket.py.
//   node doc-client.js API_KEY STREAM_ID     (WAVE_BRIDGE_ADDRESS=127.0.0.1:PORT)
// The class leaves handleMessage to its user: this one prints every message
// as a JSON line {"message": …}. The class's own console.log lines
// ("Connected", "Disconnected: CODE") are printed as they are.
'use strict';
const WaveWebSocket = require('./wave-websocket-doc.js');

WaveWebSocket.prototype.handleMessage = function (msg) {
  console.log(JSON.stringify({ message: msg }));
};

const [apiKey, streamId] = process.argv.slice(2);
const client = new WaveWebSocket(apiKey, streamId);

// The test asks, on stdin, for the doc's sendMessage (one line = one chat
// message), written as the doc writes it.
let input = '';
process.stdin.on('data', (chunk) => {
  input += chunk;
  let newline;
  while ((newline = input.indexOf('\n')) >= 0) {
    const text = input.slice(0, newline);
    input = input.slice(newline + 1);
    client.ws.send(JSON.stringify({
      type: 'chat.message',
      stream_id: streamId,
      message: text
    }));
  }
});
process.on('SIGTERM', () => process.exit(0));
