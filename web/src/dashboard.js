// The live operations dashboard (/dashboard): loads the catalog, the last 7 days of history,
// the state and the recommendations, draws the shared views, then keeps them live from the
// WebSocket — stream events for the heatmap and virtual time, closed buckets fetched from the
// history API as they close (exact values, expectations and z), notices for events, scenarios
// and recommendations.
(function startDashboard(global) {
  'use strict';
  const Marketsim = global.Marketsim;
  const format = Marketsim.format;

  const DAY_MS = Marketsim.MS_PER_DAY;
  const DEFAULT_SPAN_MS = 7 * DAY_MS;
  const LONG_SPAN_MS = 30 * DAY_MS;
  /** Points older than this before the newest are dropped: memory stays bounded. */
  const RETENTION_MS = 31 * DAY_MS;
  const MAX_CHARTED = 12;
  const STATE_POLL_MS = 2000;
  /** The runner's lag past which the connection shows "lagging". */
  const LAGGING_RUNNER_MS = 1000;
  const STARTUP_RETRY_MS = 2000;

  const page = {
    /** Whether the recommendations were fetched again after the first subscription. */
    recommendationsSynced: false,
    store: null,
    chart: null,
    heatmap: null,
    flow: null,
    events: null,
    recommendations: null,
    client: null,
    charted: [],
    epochMs: 0,
    bucketMs: 3600 * 1000,
    virtualNowMs: null,
    speed: null,
    paused: false,
    analyzed: false,
    connectionState: 'connecting',
    incrementInFlight: false,
    incrementAgain: false,
    uiFrameRequested: false,
    eventsDirty: false,
    markedEventId: null,
  };

  function getJson(path, init) {
    // Every request carries the server's token when it has one (asked for on the first 401):
    // changes need the admin token, and reads the read token when the server has one.
    return window.marketsimToken.fetchWithToken(path, init).then((response) => {
      return response.text().then((text) => {
        let body = null;
        try {
          body = text ? JSON.parse(text) : null;
        } catch (error) {
          body = null;
        }
        if (!response.ok) {
          const message = body && body.message ? body.message : response.status + ' ' + response.statusText;
          throw new Error(message);
        }
        return body;
      });
    });
  }

  function historyPath(startMs, endMs) {
    const query = [];
    if (startMs !== null && startMs !== undefined) query.push('start=' + encodeURIComponent(new Date(startMs).toISOString()));
    if (endMs !== null && endMs !== undefined) query.push('end=' + encodeURIComponent(new Date(endMs).toISOString()));
    return '/api/simulation/history' + (query.length ? '?' + query.join('&') : '');
  }

  function showBanner(text) {
    const banner = document.getElementById('banner');
    banner.textContent = text || '';
    banner.hidden = !text;
  }

  // ------------------------------------------------------------------------------------------
  // Start-up
  // ------------------------------------------------------------------------------------------

  function start() {
    Promise.all([
      getJson('/api/catalog/flows'),
      getJson('/api/simulation/state'),
      getJson('/api/simulation/history'),
      getJson('/api/dashboard/recommendations'),
    ])
      .then(([flows, state, history, recommendations]) => {
        showBanner('');
        build(flows, state, history, recommendations);
      })
      .catch((error) => {
        showBanner('Could not load the dashboard (' + error.message + '); retrying…');
        setTimeout(start, STARTUP_RETRY_MS);
      });
  }

  function build(flows, state, history, recommendations) {
    page.epochMs = Date.parse(state.epoch);
    page.bucketMs = state.bucketMs;
    applyState(state);
    const store = new Marketsim.SeriesStore(flows.streams, RETENTION_MS);
    page.store = store;
    store.mergeHistory(history.streams);
    store.addEvents(history.events);
    store.addScenarios(history.scenarios || []);
    store.addScenarios(state.scenarios);
    // Lead with what deviates: the flagged streams, else the few furthest from expected.
    page.charted = store.mostDeviating(5);

    performance.mark('marketsim-data-loaded');
    page.chart = new Marketsim.TimeSeriesView(document.getElementById('timeseries'), store, {
      onEventClick: (id) => markEvent(id),
    });
    performance.mark('marketsim-chart-created');
    page.heatmap = new Marketsim.HeatmapView(document.getElementById('heatmap'), store, {
      onToggle: toggleStream,
      isCharted: isCharted,
    });
    page.flow = new Marketsim.FlowView(document.getElementById('flow'), store, flows, {
      onSelect: toggleStream,
      isCharted: isCharted,
    });
    performance.mark('marketsim-flow-drawn');
    page.events = new Marketsim.EventsView(document.getElementById('events'), store, {
      onMark: markEvent,
      onStream: (name) => chartStreams([name], true),
      markedId: () => page.markedEventId,
    });
    page.recommendations = new Marketsim.RecommendationsView(document.getElementById('recommendations'), {
      onStreams: (names) => chartStreams(names, false),
      onEvent: markEvent,
      onTakeAction: takeAction,
      eventTitle: (id) => {
        const event = store.eventsById.get(id);
        return event ? format.dateTime(event.timeMs) + ' ' + event.title : id;
      },
    });
    page.recommendations.setAll(recommendations.recommendations || []);
    performance.mark('marketsim-panels-drawn');
    page.chart.streamNames = page.charted.slice();
    page.chart.window = { startMs: store.newestTimeMs - DEFAULT_SPAN_MS, endMs: store.newestTimeMs, followLive: true };
    page.chart.render(true);
    wireControls();
    updateRangeButtons(DEFAULT_SPAN_MS);

    document.body.dataset.ready = 'true';
    performance.mark('marketsim-interactive');
    const interactiveMs = Math.round(performance.now());
    document.body.dataset.interactiveMs = String(interactiveMs);
    document.getElementById('interactive-time').textContent = 'interactive in ' + interactiveMs + ' ms';

    page.client = new Marketsim.LiveClient({
      topics: ['*', 'recommendations', 'anomalies', 'scenarios', 'timeline'],
      onMessage: receive,
      onState: (connection) => {
        page.connectionState = connection;
        renderConnection();
      },
      onReconnected: afterReconnect,
    });
    page.client.connect();
    setInterval(pollState, STATE_POLL_MS);
  }

  function wireControls() {
    for (const button of document.querySelectorAll('[data-range-days]')) {
      button.addEventListener('click', () => showRange(Number(button.dataset.rangeDays) * DAY_MS));
    }
    document.getElementById('chart-deviating').addEventListener('click', () => chartStreams(page.store.mostDeviating(5), false));
    document.getElementById('chart-clear').addEventListener('click', () => chartStreams([], false));
  }

  function updateRangeButtons(spanMs) {
    for (const button of document.querySelectorAll('[data-range-days]')) {
      button.setAttribute('aria-pressed', Number(button.dataset.rangeDays) * DAY_MS === spanMs ? 'true' : 'false');
    }
  }

  /** The last `spanMs`, fetching the older history first when zooming out past what is held. */
  function showRange(spanMs) {
    const store = page.store;
    const wantedFrom = store.newestTimeMs - spanMs;
    updateRangeButtons(spanMs);
    if (wantedFrom >= store.oldestLoadedMs) {
      page.chart.showLast(spanMs);
      return;
    }
    const status = document.getElementById('chart-status');
    status.textContent = 'Loading older history…';
    getJson(historyPath(wantedFrom, store.oldestLoadedMs))
      .then((history) => {
        store.mergeHistory(history.streams);
        store.addEvents(history.events);
        store.addScenarios(history.scenarios || []);
        status.textContent = '';
        page.chart.showLast(spanMs);
        page.events.render();
      })
      .catch((error) => {
        status.textContent = 'Older history failed to load: ' + error.message;
      });
  }

  // ------------------------------------------------------------------------------------------
  // Selection
  // ------------------------------------------------------------------------------------------

  function isCharted(name) {
    return page.charted.includes(name);
  }

  function toggleStream(name) {
    if (isCharted(name)) page.charted = page.charted.filter((charted) => charted !== name);
    else page.charted = page.charted.concat([name]).slice(-MAX_CHARTED);
    applyCharted();
  }

  /** Charts `names` (replacing the selection, or adding to it when `add`). */
  function chartStreams(names, add) {
    const known = names.filter((name) => page.store.streamByName.has(name));
    const next = add ? page.charted.filter((name) => !known.includes(name)).concat(known) : known;
    page.charted = next.slice(-MAX_CHARTED);
    applyCharted();
    document.getElementById('timeseries').scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  }

  function applyCharted() {
    page.chart.setStreams(page.charted);
    page.heatmap.update();
    page.flow.update();
  }

  function markEvent(id) {
    if (!page.store.eventsById.has(id)) return;
    page.markedEventId = page.markedEventId === id ? null : id;
    page.chart.markEvent(page.markedEventId);
    page.events.render();
  }

  function takeAction(id, actionId) {
    return getJson('/api/dashboard/recommendations/' + encodeURIComponent(id) + '/action', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ actionId: actionId }),
    }).then((answer) => answer && answer.recommendation, (error) => {
      // Refused (already resolved, say): show the server's state, then the refusal.
      syncRecommendations();
      throw error;
    });
  }

  function syncRecommendations() {
    return getJson('/api/dashboard/recommendations')
      .then((answer) => page.recommendations.setAll(answer.recommendations || []))
      .catch(() => {});
  }

  // ------------------------------------------------------------------------------------------
  // Live updates
  // ------------------------------------------------------------------------------------------

  function receive(message) {
    switch (message.type) {
      case 'batch':
        receiveEvents(message.events || []);
        break;
      case 'event':
        receiveEvents(message.data ? [message.data] : []);
        break;
      case 'catchup':
        if (message.complete === false) reloadHistory();
        else receiveEvents(message.events || []);
        break;
      case 'anomaly':
        if (page.store.updateLatest(message.stream, {
          normalized: message.normalized,
          z: message.z,
          flag: message.flag,
          timeMs: Date.parse(message.timestamp),
        })) scheduleUi();
        break;
      case 'subscribed':
        // The list was fetched before the socket opened: a recommendation that changed in
        // between (a finding cleared a moment after the page loaded) was told to nobody, so
        // fetch it once more now that every later change arrives here.
        if (!page.recommendationsSynced) {
          page.recommendationsSynced = true;
          syncRecommendations();
        }
        break;
      case 'recommendation':
        if (message.data) page.recommendations.upsert(message.data);
        break;
      case 'timeline':
        if (message.event && page.store.addEvents([message.event])) {
          page.eventsDirty = true;
          page.chart.render(true);
          scheduleUi();
        }
        break;
      case 'scenario':
        receiveScenario(message);
        break;
      case 'history_rewritten':
        refetchFrom(Date.parse(message.from));
        break;
      default:
        break;
    }
  }

  function receiveEvents(events) {
    if (!events.length) return;
    const store = page.store;
    let changed = false;
    let newestMs = page.virtualNowMs || 0;
    for (const event of events) {
      if (event.normalizedValue !== undefined && event.normalizedValue !== null) {
        if (store.updateLatest(event.stream, { normalized: event.normalizedValue, flag: event.anomalyFlag })) changed = true;
      }
      const timeMs = Date.parse(event.timestamp);
      if (timeMs > newestMs) newestMs = timeMs;
    }
    page.virtualNowMs = newestMs;
    renderConnection();
    if (changed) scheduleUi();
    // A bucket has closed when virtual time passed its end: fetch its exact scores.
    const latestClosedStart = bucketStart(newestMs) - page.bucketMs;
    if (latestClosedStart > store.newestTimeMs) fetchIncrement();
  }

  function bucketStart(timeMs) {
    return page.epochMs + Math.floor((timeMs - page.epochMs) / page.bucketMs) * page.bucketMs;
  }

  /** Fetches the buckets closed since the newest held (one request at a time). */
  function fetchIncrement() {
    if (page.incrementInFlight) {
      page.incrementAgain = true;
      return;
    }
    const store = page.store;
    const startMs = Number.isFinite(store.newestTimeMs) ? store.newestTimeMs + page.bucketMs : page.virtualNowMs - DEFAULT_SPAN_MS;
    const endMs = Math.max(page.virtualNowMs || 0, startMs + page.bucketMs);
    page.incrementInFlight = true;
    getJson(historyPath(startMs, endMs))
      .then((history) => {
        if (store.mergeHistory(history.streams)) {
          page.eventsDirty = true;
          page.chart.render();
          scheduleUi();
        }
        const newScenario = store.addScenarios(history.scenarios || []);
        if (store.addEvents(history.events) || newScenario) {
          page.eventsDirty = true;
          page.chart.render(true);
        }
      })
      .catch(() => {
        // The next batch asks again; a dead connection shows in the indicator.
      })
      .finally(() => {
        page.incrementInFlight = false;
        if (page.incrementAgain) {
          page.incrementAgain = false;
          fetchIncrement();
        }
      });
  }

  /** Merges a history answer (streams, events, scenario windows) into the store and redraws. */
  function mergeLoadedHistory(history) {
    page.store.mergeHistory(history.streams);
    page.store.addEvents(history.events);
    page.store.addScenarios(history.scenarios || []);
    page.eventsDirty = true;
    page.chart.render(true);
    scheduleUi();
  }

  /** A backdated command rewrote history from `fromMs`: refetch it and redraw. */
  function refetchFrom(fromMs) {
    const startMs = Math.max(bucketStart(fromMs), page.store.oldestLoadedMs);
    getJson(historyPath(startMs, page.virtualNowMs || undefined))
      .then(mergeLoadedHistory)
      .catch(() => {});
  }

  /** The gap was older than the server's recent buffer: reload the whole window. */
  function reloadHistory() {
    const spanMs = Math.max(DEFAULT_SPAN_MS, page.store.newestTimeMs - page.store.oldestLoadedMs);
    getJson('/api/simulation/state')
      .then((state) => {
        applyState(state);
        const endMs = Date.parse(state.now);
        return getJson(historyPath(endMs - Math.min(spanMs, LONG_SPAN_MS), endMs));
      })
      .then(mergeLoadedHistory)
      .catch(() => {});
  }

  /**
   * After a reconnect: the same session → fill the gap (buckets and recommendations missed);
   * a restarted server (another epoch, or virtual time behind what the page holds) → replace
   * everything in place, without reloading the page.
   */
  function afterReconnect() {
    getJson('/api/simulation/state')
      .then((state) => {
        const restarted = Date.parse(state.epoch) !== page.epochMs || Date.parse(state.now) < page.store.newestTimeMs;
        if (restarted) return replaceSession(state);
        applyState(state);
        fetchIncrement();
        return getJson('/api/dashboard/recommendations').then((answer) => {
          page.recommendations.setAll(answer.recommendations || []);
        });
      })
      .catch(() => {});
  }

  function replaceSession(state) {
    page.epochMs = Date.parse(state.epoch);
    page.bucketMs = state.bucketMs;
    page.virtualNowMs = Date.parse(state.now);
    page.client.lastTimestamp = null;
    page.markedEventId = null;
    page.store.clear();
    // A fresh server fits its baseline after it starts; its scored history is fetched then.
    page.analyzed = state.analyzed;
    applyState(state);
    return Promise.all([getJson('/api/simulation/history'), getJson('/api/dashboard/recommendations')]).then(([history, answer]) => {
      page.store.mergeHistory(history.streams);
      page.store.addEvents(history.events);
      page.store.addScenarios(history.scenarios || []);
      page.store.addScenarios(state.scenarios);
      page.recommendations.setAll(answer.recommendations || []);
      page.chart.markedEventId = null;
      page.chart.showLast(DEFAULT_SPAN_MS);
      updateRangeButtons(DEFAULT_SPAN_MS);
      page.eventsDirty = true;
      scheduleUi();
    });
  }

  function receiveScenario(message) {
    const timeMs = Date.parse(message.timestamp);
    let changed = false;
    if (message.status === 'reset') changed = page.store.endScenarios(() => true, timeMs);
    else if (message.status === 'stop') changed = page.store.endScenarios((window) => window.kind === message.scenario, timeMs);
    if (changed) page.chart.render(true);
    // The state has the new windows (activation, settling times).
    pollState();
  }

  function pollState() {
    // While the socket reconnects, its attempts are the probe; polling too would only add
    // failed requests.
    if (page.connectionState === 'reconnecting') return;
    getJson('/api/simulation/state')
      .then((state) => {
        applyState(state);
        if (page.store && page.store.addScenarios(state.scenarios)) page.chart.render(true);
        if (state.analyzed && !page.analyzed) {
          // The baseline became ready after the page loaded: reload the scored history.
          page.analyzed = true;
          reloadHistory();
        }
      })
      .catch(() => {});
  }

  function applyState(state) {
    page.speed = state.speed;
    page.paused = state.paused;
    if (page.analyzed === false && state.analyzed && !page.store) page.analyzed = true;
    const nowMs = Date.parse(state.now);
    if (!page.virtualNowMs || nowMs > page.virtualNowMs) page.virtualNowMs = nowMs;
    if (state.lagMs > LAGGING_RUNNER_MS && page.client) page.client.markLagging({ runnerLagMs: state.lagMs });
    renderConnection();
  }

  // ------------------------------------------------------------------------------------------
  // Rendering
  // ------------------------------------------------------------------------------------------

  /** Heatmap, flow and events at most once per animation frame, however many messages came. */
  function scheduleUi() {
    if (page.uiFrameRequested) return;
    page.uiFrameRequested = true;
    requestAnimationFrame(() => {
      page.uiFrameRequested = false;
      page.heatmap.update();
      page.flow.update();
      if (page.eventsDirty) {
        page.eventsDirty = false;
        page.events.render();
      }
    });
  }

  const CONNECTION_WORDS = {
    connecting: 'Connecting',
    live: 'Live',
    reconnecting: 'Reconnecting',
    lagging: 'Lagging',
  };

  let shownConnectionText = '';
  function renderConnection() {
    const indicator = document.getElementById('connection');
    const state = page.connectionState;
    if (indicator.dataset.state !== state) {
      indicator.dataset.state = state;
      document.getElementById('connection-announcer').textContent = 'Connection: ' + (CONNECTION_WORDS[state] || state);
    }
    const parts = [CONNECTION_WORDS[state] || state];
    if (page.virtualNowMs) parts.push(format.dateTime(page.virtualNowMs) + ' UTC');
    if (page.speed) parts.push(page.paused ? 'paused' : format.number(page.speed) + '× speed');
    const text = parts.join(' · ');
    if (text !== shownConnectionText) {
      shownConnectionText = text;
      indicator.querySelector('.connection-text').textContent = text;
    }
  }

  // Scripts sit at the end of the body, so the elements exist.
  // For the browser tests and for poking at the page from the console.
  Marketsim.dashboard = page;
  performance.mark('marketsim-scripts-run');
  renderConnection();
  start();
})(window);
