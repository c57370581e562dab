// The admin token of a server started with --admin-token: asked for once, when the server first
// refuses a change with 401, and kept in this tab's sessionStorage (gone when the tab closes;
// never in localStorage or a cookie, so other tabs and sites cannot send it).
'use strict';

(function exposeAdminToken(global) {
  const STORAGE_KEY = 'marketsim.adminToken';

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

  /** The Authorization header to send with a change, when a token is known. */
  function headers() {
    const token = stored();
    return token ? { authorization: 'Bearer ' + token } : {};
  }

  /**
   * Asks the operator for the token after a 401 (a wrong stored token is forgotten first).
   * Returns true when one was given, so the caller can retry once.
   */
  function ask() {
    const hadToken = stored() !== null;
    store(null);
    const question = hadToken
      ? 'The admin token was refused. Enter the admin token this server was started with:'
      : 'This server needs an admin token to change the simulation (--admin-token). Enter it:';
    const answer = global.prompt(question, '');
    const token = answer === null ? '' : answer.trim();
    store(token);
    return token !== '';
  }

  /**
   * fetch() for a change: sends the stored token, and on 401 asks for it once and retries.
   * `init.headers` is a plain object.
   */
  async function fetchWithToken(path, init) {
    const send = () => global.fetch(path, { ...init, headers: { ...(init.headers || {}), ...headers() } });
    const response = await send();
    if (response.status !== 401 || !ask()) return response;
    return send();
  }

  global.marketsimAdminToken = { headers, ask, fetchWithToken };
})(window);
