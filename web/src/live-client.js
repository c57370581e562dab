// The WebSocket client of the live pages: subscribes to `/ws`, answers pings, reconnects by
// itself with exponential backoff (with jitter) and asks to catch up from the last event it saw;
// reports its state (connecting, live, reconnecting, lagging) to the page.
(function attachLiveClient(global) {
  'use strict';
  const Marketsim = global.Marketsim || (global.Marketsim = {});

  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  /** The server pings every 10 s; silence for this long means the connection is dead. */
  const SILENCE_LIMIT_MS = 25000;
  /** How long a `lag` notice (messages the server skipped for us) keeps the state "lagging". */
  const LAGGING_FOR_MS = 5000;

  /**
   * `options.topics`: what to subscribe to. `options.onMessage(message)`: every server message
   * but pings. `options.onState(state, detail)`: `connecting | live | reconnecting | lagging`.
   * `options.onReconnected()`: after a reconnect's subscribe (the page refills its gaps).
   */
  function LiveClient(options) {
    this.options = options;
    this.url = options.url || (global.location.protocol === 'https:' ? 'wss://' : 'ws://') + global.location.host + '/ws';
    this.socket = null;
    this.state = 'connecting';
    this.attempt = 0;
    this.lastTimestamp = null;
    this.lastMessageAt = 0;
    this.laggingUntil = 0;
    this.hasConnectedBefore = false;
    this.closedByPage = false;
    this.reconnectTimer = null;
    this.watchdog = setInterval(() => this.checkHealth(), 1000);
  }

  LiveClient.prototype.setState = function setState(state, detail) {
    if (this.state === state && !detail) return;
    this.state = state;
    if (this.options.onState) this.options.onState(state, detail || {});
  };

  LiveClient.prototype.connect = function connect() {
    this.closedByPage = false;
    let socket;
    try {
      // The server's read token, when the page was given one, rides in the URL: a browser's
      // WebSocket cannot send an Authorization header. Read at each attempt, so a token given
      // after a refused handshake is used by the next one.
      const token = global.marketsimToken;
      socket = new WebSocket(token ? token.socketUrl(this.url) : this.url);
    } catch (error) {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.addEventListener('open', () => {
      const reconnect = this.hasConnectedBefore;
      this.hasConnectedBefore = true;
      this.attempt = 0;
      this.lastMessageAt = Date.now();
      const subscribe = { type: 'subscribe', topics: this.options.topics };
      // After a drop, the server sends what we missed since the last event we saw.
      if (reconnect && this.lastTimestamp) subscribe.lastTimestamp = this.lastTimestamp;
      socket.send(JSON.stringify(subscribe));
      this.setState('live');
      if (reconnect && this.options.onReconnected) this.options.onReconnected();
    });
    socket.addEventListener('message', (message) => this.receive(message.data));
    socket.addEventListener('close', () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (!this.closedByPage) this.scheduleReconnect();
    });
    // An error is always followed by `close`, which reconnects.
    socket.addEventListener('error', () => {});
  };

  LiveClient.prototype.scheduleReconnect = function scheduleReconnect() {
    clearTimeout(this.reconnectTimer);
    this.attempt += 1;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * Math.pow(2, this.attempt - 1));
    // Full jitter halves a thundering herd when a server restarts under many pages.
    const delayMs = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
    this.setState('reconnecting', { attempt: this.attempt, delayMs: delayMs });
    this.reconnectTimer = setTimeout(() => this.connect(), delayMs);
  };

  LiveClient.prototype.receive = function receive(text) {
    this.lastMessageAt = Date.now();
    let message;
    try {
      message = JSON.parse(text);
    } catch (error) {
      return;
    }
    if (message.type === 'ping') {
      this.send({ type: 'pong' });
      return;
    }
    if (message.type === 'lag') {
      this.laggingUntil = Date.now() + LAGGING_FOR_MS;
      this.setState('lagging', { skipped: message.skipped });
    }
    if (message.type === 'batch' || message.type === 'catchup') {
      const events = message.events || [];
      if (events.length) this.noteTimestamp(events[events.length - 1].timestamp);
    } else if (message.type === 'event' && message.data) {
      this.noteTimestamp(message.data.timestamp);
    }
    if (this.options.onMessage) this.options.onMessage(message);
  };

  LiveClient.prototype.noteTimestamp = function noteTimestamp(timestamp) {
    if (timestamp && (!this.lastTimestamp || timestamp > this.lastTimestamp)) this.lastTimestamp = timestamp;
  };

  LiveClient.prototype.send = function send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  };

  /** Once a second: end "lagging" when it has passed; drop a connection gone silent. */
  LiveClient.prototype.checkHealth = function checkHealth() {
    if (this.state === 'lagging' && Date.now() > this.laggingUntil) this.setState('live');
    if (this.socket && this.socket.readyState === WebSocket.OPEN && Date.now() - this.lastMessageAt > SILENCE_LIMIT_MS) {
      this.socket.close();
    }
  };

  /** Marks the connection lagging for a while (the page saw the server fall behind). */
  LiveClient.prototype.markLagging = function markLagging(detail) {
    this.laggingUntil = Date.now() + LAGGING_FOR_MS;
    if (this.state === 'live' || this.state === 'lagging') this.setState('lagging', detail);
  };

  LiveClient.prototype.close = function close() {
    this.closedByPage = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.watchdog);
    if (this.socket) this.socket.close();
  };

  Marketsim.LiveClient = LiveClient;
})(typeof window !== 'undefined' ? window : globalThis);
