// SPDX-License-Identifier: MIT
// The WaveWebSocket class of the WAVE WebSocket API documentation
// (../shared/upstream/wave-websocket-api.txt, "Example Reconnection
// Logic"), copied as it is. Changed: the URL (the bridge's local endpoint
// instead of wss://ws.wave.inc). The key is the constructor's argument.
// Added around it: Node has no global WebSocket, so the `ws` package
// provides it, and the class is exported. Compared with the doc, `diff`
// shows only the URL line.
const WebSocket = require('ws');

class WaveWebSocket {
  constructor(apiKey, streamId) {
    this.apiKey = apiKey;
    this.streamId = streamId;
    this.reconnectDelay = 1000; // Start at 1s
    this.maxReconnectDelay = 30000; // Max 30s
    this.connect();
  }

  connect() {
    this.ws = new WebSocket(
      `ws://${process.env.WAVE_BRIDGE_ADDRESS}/v1/streams?api_key=${this.apiKey}`
    );

    this.ws.onopen = () => {
      console.log('Connected');
      this.reconnectDelay = 1000; // Reset backoff
      this.subscribe();
      this.startHeartbeat();
    };

    this.ws.onclose = (event) => {
      console.log('Disconnected:', event.code);
      this.stopHeartbeat();

      // Determine if we should reconnect
      if (this.shouldReconnect(event.code)) {
        setTimeout(() => {
          this.reconnectDelay = Math.min(
            this.reconnectDelay * 2,
            this.maxReconnectDelay
          );
          this.connect();
        }, this.reconnectDelay);
      }
    };

    this.ws.onerror = (error) => {
      console.error('WebSocket error:', error);
    };

    this.ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === 'pong') {
        this.lastPong = Date.now();
      } else {
        this.handleMessage(msg);
      }
    };
  }

  shouldReconnect(code) {
    // Don't reconnect on normal closure or auth errors
    return code !== 1000 && code !== 4401;
  }

  startHeartbeat() {
    this.heartbeatInterval = setInterval(() => {
      if (this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify({
          type: 'ping',
          timestamp: Date.now()
        }));

        // Check if pong received within 5s
        setTimeout(() => {
          if (Date.now() - this.lastPong > 5000) {
            console.warn('No pong received, reconnecting');
            this.ws.close(1006);
          }
        }, 5000);
      }
    }, 30000); // Every 30s
  }

  stopHeartbeat() {
    if (this.heartbeatInterval) {
      clearInterval(this.heartbeatInterval);
    }
  }

  subscribe() {
    this.ws.send(JSON.stringify({
      type: 'subscribe',
      stream_id: this.streamId,
      events: ['stream.started', 'analytics.update']
    }));
  }
}

module.exports = WaveWebSocket;
