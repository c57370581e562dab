// The data the views draw: per stream its scored buckets sorted by time, the external events
// and scenario windows, and each stream's latest score. Shared by the live dashboard (filled
// from the history API and the WebSocket) and the reports (filled from a run's data block).
(function attachSeriesStore(global) {
  'use strict';
  const Marketsim = global.Marketsim || (global.Marketsim = {});

  /**
   * One bucket of one stream: `{timeMs, value, normalized, expected, z, flag}`. `normalized`,
   * `expected`, `z` and `flag` are absent until the session has a baseline.
   */
  function pointOf(raw) {
    return {
      timeMs: Date.parse(raw.timestamp),
      value: raw.value === undefined ? null : raw.value,
      normalized: raw.normalized === undefined ? null : raw.normalized,
      expected: raw.expected === undefined ? null : raw.expected,
      z: raw.z === undefined ? null : raw.z,
      flag: raw.flag || null,
    };
  }

  /**
   * `streams`: `[{name, domain, description, unit}]` in catalog order.
   * `retentionMs`: points older than the newest minus this are dropped, so a page left open
   * for days holds a bounded amount of data.
   */
  function SeriesStore(streams, retentionMs) {
    this.streams = streams;
    this.streamByName = new Map(streams.map((stream) => [stream.name, stream]));
    this.pointsByStream = new Map(streams.map((stream) => [stream.name, []]));
    /** Per stream: `{timeMs, normalized, z, flag}` of its latest closed bucket. */
    this.latestByStream = new Map();
    /** External events by id (the seed's `ExternalEvent`, plus `timeMs`). */
    this.eventsById = new Map();
    /** Scenario windows by instance id: `{id, name, kind, startMs, untilMs, settledMs}`. */
    this.scenariosById = new Map();
    this.retentionMs = retentionMs || Infinity;
    this.newestTimeMs = -Infinity;
    this.oldestLoadedMs = Infinity;
    /** Bumped on every change of the points, so views redraw only when needed. */
    this.version = 0;
  }

  /** Forgets everything held (the server now runs another session). */
  SeriesStore.prototype.clear = function clear() {
    for (const points of this.pointsByStream.values()) points.length = 0;
    this.latestByStream.clear();
    this.eventsById.clear();
    this.scenariosById.clear();
    this.newestTimeMs = -Infinity;
    this.oldestLoadedMs = Infinity;
    this.version += 1;
  };

  /**
   * Merges `{streamName: [rawPoint…]}` (the history API's `streams`): a bucket already held is
   * replaced (a backdated command rewrites history), a new one inserted in order.
   */
  SeriesStore.prototype.mergeHistory = function mergeHistory(streamsObject) {
    let changed = false;
    for (const name of Object.keys(streamsObject)) {
      const points = this.pointsByStream.get(name);
      if (!points) continue;
      const incoming = streamsObject[name].map(pointOf).filter((point) => !Number.isNaN(point.timeMs));
      if (incoming.length === 0) continue;
      changed = true;
      const last = points.length ? points[points.length - 1].timeMs : -Infinity;
      if (incoming[0].timeMs > last) {
        // The common live case: new buckets after the newest held.
        for (const point of incoming) points.push(point);
      } else {
        for (const point of incoming) {
          const index = Marketsim.lowerBound(points, point.timeMs);
          if (index < points.length && points[index].timeMs === point.timeMs) points[index] = point;
          else points.splice(index, 0, point);
        }
      }
      const newest = points[points.length - 1];
      this.newestTimeMs = Math.max(this.newestTimeMs, newest.timeMs);
      this.oldestLoadedMs = Math.min(this.oldestLoadedMs, points[0].timeMs);
      const latest = this.latestByStream.get(name);
      if (!latest || latest.timeMs <= newest.timeMs) {
        this.latestByStream.set(name, {
          timeMs: newest.timeMs,
          normalized: newest.normalized,
          z: newest.z,
          flag: newest.flag,
        });
      }
    }
    if (changed) {
      this.dropOldPoints();
      this.version += 1;
    }
    return changed;
  };

  SeriesStore.prototype.dropOldPoints = function dropOldPoints() {
    if (!Number.isFinite(this.retentionMs)) return;
    const cutoff = this.newestTimeMs - this.retentionMs;
    for (const points of this.pointsByStream.values()) {
      const keepFrom = Marketsim.lowerBound(points, cutoff);
      if (keepFrom > 0) points.splice(0, keepFrom);
    }
    this.oldestLoadedMs = Math.max(this.oldestLoadedMs, cutoff);
    // Events and scenario windows older than the points go too: the timeline stays bounded.
    for (const [id, event] of this.eventsById) if (event.timeMs < cutoff) this.eventsById.delete(id);
    for (const [id, window] of this.scenariosById) if (window.settledMs < cutoff) this.scenariosById.delete(id);
  };

  /**
   * Sets every point of `name` at once (a finished run's data block), sorted by `timeMs`, in
   * the shape `mergeHistory` builds.
   */
  SeriesStore.prototype.setPoints = function setPoints(name, points) {
    if (!this.pointsByStream.has(name) || points.length === 0) return;
    this.pointsByStream.set(name, points);
    const newest = points[points.length - 1];
    this.newestTimeMs = Math.max(this.newestTimeMs, newest.timeMs);
    this.oldestLoadedMs = Math.min(this.oldestLoadedMs, points[0].timeMs);
    this.latestByStream.set(name, { timeMs: newest.timeMs, normalized: newest.normalized, z: newest.z, flag: newest.flag });
    this.version += 1;
  };

  /**
   * A live score of a stream's latest closed bucket (from a WebSocket event or anomaly
   * message); returns whether what the heatmap shows changed.
   */
  SeriesStore.prototype.updateLatest = function updateLatest(name, score) {
    if (!this.streamByName.has(name)) return false;
    const previous = this.latestByStream.get(name);
    if (previous && previous.normalized === score.normalized && previous.flag === score.flag &&
        (score.z === undefined || score.z === previous.z)) {
      return false;
    }
    const z = score.z !== undefined && score.z !== null
      ? score.z
      : score.normalized > 0 && score.normalized < 100
        ? Marketsim.zOfNormalized(score.normalized)
        : previous ? previous.z : null;
    this.latestByStream.set(name, {
      timeMs: score.timeMs !== undefined ? score.timeMs : previous ? previous.timeMs : null,
      normalized: score.normalized,
      z: z,
      flag: score.flag || (previous && previous.flag) || null,
    });
    return true;
  };

  /** Adds or replaces external events (the seed's shape); returns whether any was new. */
  SeriesStore.prototype.addEvents = function addEvents(events) {
    let added = false;
    for (const event of events) {
      if (!event || !event.id) continue;
      if (!this.eventsById.has(event.id)) added = true;
      this.eventsById.set(event.id, Object.assign({}, event, { timeMs: Date.parse(event.timestamp) }));
    }
    return added;
  };

  /** The events sorted by time, oldest first. */
  SeriesStore.prototype.eventsInOrder = function eventsInOrder() {
    return Array.from(this.eventsById.values()).sort((a, b) => a.timeMs - b.timeMs || (a.id < b.id ? -1 : 1));
  };

  /** Records scenario windows from the state's `scenarios` (the seed's shape, camelCase). */
  SeriesStore.prototype.addScenarios = function addScenarios(scenarios) {
    let changed = false;
    for (const scenario of scenarios) {
      // Event effects appear in the timeline as events; only scenarios are shaded.
      if (!scenario.id || !scenario.id.startsWith('mod_')) continue;
      const window = {
        id: scenario.id,
        name: scenario.name || scenario.type,
        kind: scenario.type,
        startMs: Date.parse(scenario.startTime),
        untilMs: Date.parse(scenario.activeUntil),
        settledMs: Date.parse(scenario.settledAt),
      };
      const previous = this.scenariosById.get(scenario.id);
      if (!previous || previous.untilMs !== window.untilMs || previous.settledMs !== window.settledMs) {
        this.scenariosById.set(scenario.id, window);
        changed = true;
      }
    }
    return changed;
  };

  /** A scenario stopped or reset at `timeMs`: its window ends there (settling follows). */
  SeriesStore.prototype.endScenarios = function endScenarios(predicate, timeMs) {
    let changed = false;
    for (const window of this.scenariosById.values()) {
      if (predicate(window) && window.untilMs > timeMs) {
        window.untilMs = timeMs;
        changed = true;
      }
    }
    return changed;
  };

  /** The mean normalized value of `name` over `[fromMs, toMs)`, or null without points. */
  SeriesStore.prototype.meanNormalized = function meanNormalized(name, fromMs, toMs) {
    const points = this.pointsByStream.get(name) || [];
    let sum = 0;
    let count = 0;
    for (let index = Marketsim.lowerBound(points, fromMs); index < points.length && points[index].timeMs < toMs; index++) {
      if (points[index].normalized === null) continue;
      sum += points[index].normalized;
      count += 1;
    }
    return count ? sum / count : null;
  };

  /**
   * The streams that moved after `timeMs`: the mean over the `windowMs` after it against the
   * `windowMs` before, in σ, the largest first, only those that moved by at least `minSigma`.
   */
  SeriesStore.prototype.movedAfter = function movedAfter(timeMs, windowMs, minSigma, limit) {
    const moved = [];
    for (const stream of this.streams) {
      const before = this.meanNormalized(stream.name, timeMs - windowMs, timeMs);
      const after = this.meanNormalized(stream.name, timeMs, timeMs + windowMs);
      if (before === null || after === null) continue;
      const shiftSigma = (after - before) / Marketsim.POINTS_PER_SIGMA;
      if (Math.abs(shiftSigma) >= minSigma) moved.push({ name: stream.name, shiftSigma: shiftSigma });
    }
    moved.sort((a, b) => Math.abs(b.shiftSigma) - Math.abs(a.shiftSigma));
    return moved.slice(0, limit);
  };

  /** Stream names ordered by how far their latest bucket deviates, the largest first. */
  SeriesStore.prototype.mostDeviating = function mostDeviating(limit) {
    const scored = this.streams.map((stream) => {
      const latest = this.latestByStream.get(stream.name);
      const rank = latest && latest.flag === 'critical' ? 2 : latest && latest.flag === 'warning' ? 1 : 0;
      return { name: stream.name, rank: rank, deviation: latest && latest.z !== null ? Math.abs(latest.z) : 0 };
    });
    scored.sort((a, b) => b.rank - a.rank || b.deviation - a.deviation);
    return scored.slice(0, limit).map((entry) => entry.name);
  };

  Marketsim.SeriesStore = SeriesStore;
})(typeof window !== 'undefined' ? window : globalThis);
