// The run report's page script: a finished run's JSON data block drawn with the dashboard's
// shared views (inlined before it): the domain charts are the time-series view over a store
// of the whole run, the tables get the shared filter/sort/fold; the lifecycle and the
// streams × time heatmap are drawn here. Classic script: the report is one file from disk.
(function drawReport(global) {
  'use strict';
  const Marketsim = global.Marketsim;
  const format = Marketsim.format;
  const data = JSON.parse(document.getElementById('report-data').textContent);
  const times = data.timestamps;
  const DAY = Marketsim.MS_PER_DAY;
  const OPEN_SPAN_MS = 7 * DAY;

  // A chart redraws only when its own box changes size. A window resize that leaves it as it
  // was (a full-page capture stretches the window's height) must not clear and redraw its
  // canvas, or the capture catches it half drawn.
  const resizeObserver = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const chart = global.echarts.getInstanceByDom(entry.target);
      const size = entry.target.clientWidth + 'x' + entry.target.clientHeight;
      if (chart && entry.target.dataset.drawnSize !== size) {
        entry.target.dataset.drawnSize = size;
        chart.resize();
      }
    }
  });

  function init(element) {
    const chart = global.echarts.init(element, null, { renderer: 'canvas' });
    element.dataset.drawnSize = element.clientWidth + 'x' + element.clientHeight;
    resizeObserver.observe(element);
    return chart;
  }

  /** The window the charts open on: the last seven days of the run (all of it when shorter). */
  const lastTime = times.length ? times[times.length - 1] : 0;
  const openStart = times.length ? Math.max(times[0], lastTime - OPEN_SPAN_MS) : 0;

  /** A stream's plotted values: the normalized score, or (not analyzed) % of its own mean. */
  function plotted(stream) {
    if (data.meta.analyzed) return stream.normalized;
    let sum = 0;
    let count = 0;
    for (const value of stream.values) {
      if (value !== null) {
        sum += value;
        count += 1;
      }
    }
    const mean = count ? sum / count : 0;
    return stream.values.map((value) => (value === null || mean === 0 ? null : Math.round(1000 * value / mean) / 10));
  }

  /** How much a stream deviated over the run: critical buckets weigh three, warnings one. */
  function deviationScore(stream) {
    let score = 0;
    for (const flag of stream.flags || '') score += flag === 'c' ? 3 : flag === 'w' ? 1 : 0;
    return score;
  }

  /** Lines drawn in colour per domain chart at most; the rest are grey context. */
  const MAX_COLOURED = 5;
  /** A stream is coloured when it deviated at least this share of the domain's most deviant. */
  const COLOURED_SHARE = 0.25;

  const ms = (text) => Date.parse(text);
  const timeAxis = {
    type: 'time',
    name: 'Time (UTC)',
    nameLocation: 'middle',
    nameGap: 38,
    axisLabel: { hideOverlap: true, lineHeight: 14, formatter: (value) => format.day(value) + '\n' + format.clock(value) },
  };

  // The run as the dashboard's store: every bucket of every stream, the events and the
  // scenario windows, so the domain charts are the dashboard's time-series view.
  const FLAG_NAMES = { n: 'normal', w: 'warning', c: 'critical' };
  const store = new Marketsim.SeriesStore(
    data.streams.map((stream) => ({ name: stream.name, domain: stream.domain, description: '', unit: '' })),
    Infinity,
  );
  for (const stream of data.streams) {
    const values = plotted(stream);
    const flags = stream.flags || '';
    store.setPoints(stream.name, times.map((time, bucket) => {
      const normalized = values[bucket] === undefined ? null : values[bucket];
      return {
        timeMs: time,
        value: stream.values[bucket] === undefined ? null : stream.values[bucket],
        normalized: normalized,
        expected: null,
        z: data.meta.analyzed && normalized !== null ? Marketsim.zOfNormalized(normalized) : null,
        flag: FLAG_NAMES[flags[bucket]] || null,
      };
    }));
  }
  store.addEvents(data.events);
  for (const window of data.windows) {
    if (window.redHerring) continue;
    store.scenariosById.set(window.id, {
      id: window.id,
      name: window.name,
      kind: window.ref,
      startMs: ms(window.start),
      untilMs: ms(window.activeUntil),
      settledMs: ms(window.settledAt),
    });
  }

  // Per-domain charts. What deviates leads: the streams flagged most over the run are drawn in
  // colour and listed first; the others are grey context (a legend click hides or shows one).
  document.querySelectorAll('[data-domain]').forEach((element) => {
    const domain = element.getAttribute('data-domain');
    const streams = data.streams.filter((stream) => stream.domain === domain);
    const scores = new Map(streams.map((stream) => [stream.name, deviationScore(stream)]));
    const ordered = streams.slice().sort((a, b) => scores.get(b.name) - scores.get(a.name));
    const highest = scores.get(ordered[0].name);
    const coloured = new Set(ordered
      .filter((stream) => highest === 0 || scores.get(stream.name) >= COLOURED_SHARE * highest)
      .slice(0, highest === 0 ? ordered.length : MAX_COLOURED)
      .map((stream) => stream.name));
    // The legend wraps rather than pages; the chart grows by its rows so no name is cut off.
    const perRow = Math.max(1, Math.floor((element.clientWidth - 40) / 190));
    element.style.height = (330 + Math.ceil(ordered.length / perRow) * 22) + 'px';
    const caption = element.previousElementSibling;
    if (caption && caption.classList.contains('domain-caption')) {
      caption.textContent = highest > 0
        ? 'In colour, the ' + coloured.size + ' most flagged of ' + streams.length + ' streams (legend order: most flagged first); the others in grey.'
        : 'No stream flagged in this domain.';
    }
    const view = new Marketsim.TimeSeriesView(element, store, {
      contextStreams: ordered.filter((stream) => !coloured.has(stream.name)).map((stream) => stream.name),
      wrapLegend: true,
      normalized: data.meta.analyzed,
      // The report knows the ground truth: red herrings are drawn apart (dashed grey).
      eventStyle: (event) => (event.redHerring ? { color: '#999999', type: 'dashed' } : { color: '#6b46c1', type: 'solid' }),
    });
    view.streamNames = ordered.map((stream) => stream.name);
    view.window = { startMs: openStart, endMs: lastTime, followLive: false };
    view.render(true);
  });

  // Scenario lifecycle: one row per scenario, active then settling.
  const lifecycleElement = document.querySelector('[data-chart="lifecycle"]');
  if (lifecycleElement) {
    const windows = data.windows;
    const bars = [];
    windows.forEach((window, row) => {
      bars.push({ value: [row, ms(window.start), ms(window.activeUntil)], itemStyle: { color: '#dd6b20' }, name: window.name + ' (active)' });
      bars.push({ value: [row, ms(window.activeUntil), ms(window.settledAt)], itemStyle: { color: '#fbd38d' }, name: window.name + ' (settling)' });
    });
    init(lifecycleElement).setOption({
      animation: false,
      useUTC: true,
      tooltip: { formatter: (point) => point.name + '<br>' + format.dateTime(point.value[1]) + ' → ' + format.dateTime(point.value[2]) },
      grid: { left: 190, right: 20, top: 10, bottom: 44 },
      xAxis: Object.assign({}, timeAxis, { min: times[0], max: lastTime + data.meta.bucketMs, nameGap: 32 }),
      yAxis: { type: 'category', data: windows.map((window) => window.id + ' ' + window.ref), inverse: true },
      series: [{
        type: 'custom',
        renderItem: (params, api) => {
          const start = api.coord([api.value(1), api.value(0)]);
          const end = api.coord([api.value(2), api.value(0)]);
          const height = api.size([0, 1])[1] * 0.6;
          return { type: 'rect', shape: { x: start[0], y: start[1] - height / 2, width: Math.max(2, end[0] - start[0]), height: height }, style: api.style() };
        },
        encode: { x: [1, 2], y: 0 },
        data: bars,
      }],
    });
  }

  // Heatmap: streams (grouped by domain, a line between domains) × time, coloured by the
  // deviation from expected in σ. Long runs are drawn at most MAX_COLUMNS columns wide; a
  // column keeps its most extreme bucket, so a short anomaly stays visible. Drawn in one pass
  // (not progressively), so a capture of the page never catches it half drawn.
  const MAX_COLUMNS = 240;
  const SIGMA_LIMIT = 5;
  const heatmapElement = document.querySelector('[data-chart="heatmap"]');
  if (heatmapElement) {
    const names = data.streams.map((stream) => stream.name);
    const firstOfDomain = new Set();
    data.streams.forEach((stream, row) => {
      if (row === 0 || data.streams[row - 1].domain !== stream.domain) firstOfDomain.add(row);
    });
    const perColumn = Math.max(1, Math.ceil(times.length / MAX_COLUMNS));
    const columns = Math.ceil(times.length / perColumn);
    const labels = [];
    for (let column = 0; column < columns; column++) labels.push(times[column * perColumn]);
    const cells = [];
    data.streams.forEach((stream, row) => {
      const values = plotted(stream);
      for (let column = 0; column < columns; column++) {
        let extreme = null;
        for (let bucket = column * perColumn; bucket < Math.min(times.length, (column + 1) * perColumn); bucket++) {
          const value = values[bucket];
          if (value === null || value === undefined) continue;
          // σ from the normalized score (10 points a σ); unanalyzed runs: % of mean / 10.
          const deviation = data.meta.analyzed ? (value - 50) / 10 : (value - 100) / 10;
          if (extreme === null || Math.abs(deviation) > Math.abs(extreme)) extreme = deviation;
        }
        if (extreme !== null) cells.push([column, row, Math.round(Math.max(-SIGMA_LIMIT, Math.min(SIGMA_LIMIT, extreme)) * 10) / 10]);
      }
    });
    const unit = data.meta.analyzed ? 'σ' : '×10 % of mean';
    init(heatmapElement).setOption({
      animation: false,
      tooltip: {
        formatter: (point) => names[point.value[1]] + '<br>' + format.dateTime(labels[point.value[0]]) +
          (perColumn > 1 ? ' (' + perColumn + ' buckets; the most extreme)' : '') + '<br>deviation ' + format.sigma(point.value[2]),
      },
      grid: { left: 230, right: 30, top: 10, bottom: 110 },
      // The time axis stays at the bottom (`onZero` would draw it under the first stream).
      xAxis: { type: 'category', data: labels, axisLine: { onZero: false }, axisLabel: { hideOverlap: true, lineHeight: 14, formatter: (value) => format.day(Number(value)) + '\n' + format.clock(Number(value)) } },
      yAxis: {
        type: 'category',
        data: names,
        inverse: true,
        axisLabel: { fontSize: 10, interval: 0, formatter: (value, index) => (firstOfDomain.has(index) ? '{domain|' + value + '}' : value), rich: { domain: { fontWeight: 'bold', fontSize: 10 } } },
        // A line above the first stream of each domain separates the groups; the axis is drawn
        // over the cells (z) so the line shows.
        z: 5,
        splitLine: { show: true, interval: (index) => firstOfDomain.has(index + 1), lineStyle: { color: '#1d2433', width: 1 } },
      },
      visualMap: {
        min: -SIGMA_LIMIT,
        max: SIGMA_LIMIT,
        calculable: true,
        orient: 'horizontal',
        left: 'center',
        bottom: 0,
        text: ['+' + SIGMA_LIMIT + ' ' + unit + ' above expected', '−' + SIGMA_LIMIT + ' ' + unit + ' below'],
        formatter: (value) => format.sigma(value),
        inRange: { color: ['#2b6cb0', '#bee3f8', '#ffffff', '#fed7d7', '#c53030'] },
      },
      dataZoom: [{ type: 'inside', xAxisIndex: 0 }, { type: 'slider', xAxisIndex: 0, bottom: 44, height: 20 }],
      series: [{ type: 'heatmap', data: cells, progressive: 0, progressiveThreshold: Number.MAX_SAFE_INTEGER }],
    });
  }

  Marketsim.enhanceTables(document);
  global.marketsimReportReady = true;
})(window);
