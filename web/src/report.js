// The run report's page script: draws the charts of a finished run from its JSON data block
// with the shared views' helpers (views-format.js, views-tables.js, inlined before it), and
// makes the long tables filterable, sortable and folded. Classic script: the report is one
// file opened from disk.
(function drawReport(global) {
  'use strict';
  const Marketsim = global.Marketsim;
  const format = Marketsim.format;
  const data = JSON.parse(document.getElementById('report-data').textContent);
  const times = data.timestamps;
  const DAY = Marketsim.MS_PER_DAY;
  const OPEN_SPAN_MS = 7 * DAY;
  const GREY = '#c3c8d0';

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
  const windowAreas = data.windows.filter((window) => !window.redHerring).map((window) => [
    { xAxis: ms(window.start), name: window.name, label: { show: true, position: 'insideTop', fontSize: 10, color: '#8a4b12' }, itemStyle: { color: 'rgba(237, 137, 54, 0.13)' } },
    { xAxis: ms(window.settledAt) },
  ]);

  /**
   * Event lines with their labels, thinned so labels do not overlap in the opening window of a
   * chart `plotWidthPx` wide (the others show their label on hover). The report knows the
   * ground truth, so red herrings are drawn apart (dashed grey), unlike the live dashboard.
   */
  function eventLines(plotWidthPx) {
    const minimumGapMs = 16 * (lastTime - openStart) / Math.max(plotWidthPx, 100);
    let previous = -Infinity;
    return data.events.map((event) => {
      const timeMs = ms(event.timestamp);
      const labelled = timeMs >= openStart && timeMs - previous >= minimumGapMs;
      if (labelled) previous = timeMs;
      const title = event.title.length > 28 ? event.title.slice(0, 27) + '…' : event.title;
      return {
        xAxis: timeMs,
        name: event.id,
        label: { show: labelled, formatter: title, position: 'insideEndTop', fontSize: 10, color: event.redHerring ? '#888' : '#553c9a' },
        lineStyle: event.redHerring ? { color: '#999', type: 'dashed', width: 1 } : { color: '#6b46c1', type: 'solid', width: 1 },
        emphasis: { label: { show: true, formatter: event.id + ' ' + event.title } },
      };
    });
  }

  const yAxisTitle = data.meta.analyzed ? 'Normalized (50 = expected, 10 per σ)' : '% of the stream’s own mean';
  const timeAxis = {
    type: 'time',
    name: 'Time (UTC)',
    nameLocation: 'middle',
    nameGap: 38,
    axisLabel: { hideOverlap: true, lineHeight: 14, formatter: (value) => format.day(value) + '\n' + format.clock(value) },
  };

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
    let colourIndex = 0;
    const series = ordered.map((stream, index) => {
      const values = plotted(stream);
      const inColour = coloured.has(stream.name);
      const item = {
        name: stream.name,
        type: 'line',
        showSymbol: false,
        sampling: 'lttb',
        z: inColour ? 3 : 2,
        lineStyle: { width: inColour ? 1.6 : 1, color: inColour ? undefined : GREY },
        itemStyle: inColour ? { color: Marketsim.SERIES_COLORS[colourIndex++ % Marketsim.SERIES_COLORS.length] } : { color: GREY },
        data: times.map((time, bucket) => [time, values[bucket] === undefined ? null : values[bucket]]),
      };
      if (inColour) item.lineStyle.color = item.itemStyle.color;
      if (index === 0) {
        item.markArea = {
          silent: true,
          data: (data.meta.analyzed ? [[{ yAxis: 30, itemStyle: { color: 'rgba(160, 174, 192, 0.18)' } }, { yAxis: 70 }]] : []).concat(windowAreas),
        };
        item.markLine = { symbol: 'none', silent: false, data: eventLines(element.clientWidth - 80) };
      }
      return item;
    });
    // The legend wraps rather than pages: rows are estimated from the width, and the plot
    // starts below them, so no name is cut off.
    const perRow = Math.max(1, Math.floor((element.clientWidth - 40) / 210));
    const legendRows = Math.ceil(ordered.length / perRow);
    element.style.height = (300 + legendRows * 22) + 'px';
    const caption = element.previousElementSibling;
    if (caption && caption.classList.contains('domain-caption')) {
      caption.textContent = highest > 0
        ? 'In colour, the ' + coloured.size + ' most flagged of ' + streams.length + ' streams (legend order: most flagged first); the others in grey.'
        : 'No stream flagged in this domain.';
    }
    init(element).setOption({
      animation: false,
      useUTC: true,
      tooltip: { trigger: 'axis', confine: true, valueFormatter: (value) => (value === null || value === undefined ? '–' : format.number(value)) },
      legend: { type: 'plain', top: 0, left: 50, right: 10, itemWidth: 18, textStyle: { fontSize: 11 }, formatter: (name) => Marketsim.shortName(name) },
      grid: { left: 58, right: 20, top: 14 + legendRows * 22, bottom: 96 },
      xAxis: timeAxis,
      yAxis: data.meta.analyzed
        ? { type: 'value', min: 0, max: 100, name: yAxisTitle, nameLocation: 'middle', nameGap: 36 }
        : { type: 'value', name: yAxisTitle, nameLocation: 'middle', nameGap: 40 },
      dataZoom: [
        { type: 'inside', startValue: openStart, endValue: lastTime },
        { type: 'slider', startValue: openStart, endValue: lastTime, height: 20, bottom: 6, labelFormatter: (value) => format.dateTime(value) },
      ],
      series: series,
    });
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
