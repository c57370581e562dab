// The server's token, for a server started with --admin-token (changes need it) or --read-token
// (reads need it too): asked for once, when the server first refuses a request with 401, and kept
// in this tab's sessionStorage (gone when the tab closes; never in localStorage or a cookie, so
// other tabs and sites cannot send it). The WebSocket, which cannot carry a header from a browser,
// sends it as the `access_token` query parameter.
'use strict';

(function exposeAccessToken(global) {
  const STORAGE_KEY = 'marketsim.token';

  function stored() {
    try {
      return global.sessionStorage.getItem(STORAGE_KEY);
    } catch {
      return null;
    }
  }

  function store(token) {
    try {
      if (token) global.sessionStorage.setItem(STORAGE_KEY, token);
      else global.sessionStorage.removeItem(STORAGE_KEY);
    } catch {
      // Storage disabled: the token lives only as long as this call.
    }
  }

  /** The Authorization header to send, when a token is known. */
  function headers() {
    const token = stored();
    return token ? { authorization: 'Bearer ' + token } : {};
  }

  /**
   * Asks the operator for the token after a 401 (a wrong stored token is forgotten first).
   * `isChange`: whether the refused request changes the simulation (which needs the admin token)
   * or reads it (which needs the read token, or the admin token). Returns true when one was
   * given, so the caller can retry once.
   */
  function ask(isChange) {
    const hadToken = stored() !== null;
    store(null);
    const question = isChange
      ? hadToken
        ? 'The token was refused for this change. Enter the admin token this server was started with:'
        : 'This server needs an admin token to change the simulation (--admin-token). Enter it:'
      : hadToken
        ? 'The token was refused. Enter the read token (or the admin token) this server was started with:'
        : 'This server needs a read token to show its data (--read-token). Enter the read token (or the admin token):';
    const answer = global.prompt(question, '');
    const token = answer === null ? '' : answer.trim();
    store(token);
    return token !== '';
  }

  /**
   * fetch() with the stored token; on 401 asks for it once and retries. Requests refused
   * together (the page's first reads run in parallel) ask once: a request that was sent before
   * another one stored a new token retries with it without asking. `init.headers` is a plain
   * object.
   */
  async function fetchWithToken(path, init) {
    const options = init || {};
    const send = () => global.fetch(path, { ...options, headers: { ...(options.headers || {}), ...headers() } });
    const sentWith = stored();
    const response = await send();
    if (response.status !== 401) return response;
    if (stored() !== sentWith && stored() !== null) return send();
    const isChange = Boolean(options.method) && options.method !== 'GET';
    if (!ask(isChange)) return response;
    return send();
  }

  /** `url` with the stored token as its `access_token` parameter, for the WebSocket. */
  function socketUrl(url) {
    const token = stored();
    if (!token) return url;
    return url + (url.includes('?') ? '&' : '?') + 'access_token=' + encodeURIComponent(token);
  }

  global.marketsimToken = { headers, ask, fetchWithToken, socketUrl };
})(window);
