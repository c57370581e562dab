// The normalized time-series chart (ECharts): the chosen streams on the 0–100 scale, the
// baseline band (±2σ) and the ±3.5σ critical lines, external events as labelled vertical lines,
// scenario windows shaded, flagged buckets marked; keeps the user's zoom while live data arrives.
(function attachTimeSeriesView(global) {
  'use strict';
  const Marketsim = global.Marketsim || (global.Marketsim = {});
  const format = Marketsim.format;

  const BAND_LOW = 30; // −2σ
  const BAND_HIGH = 70; // +2σ
  const LINE_LOW = 15; // −3.5σ: the critical line (stats::score::CRITICAL_Z)
  const LINE_HIGH = 85; // +3.5σ
  const EVENT_LABEL_CHARS = 26;
  const CONTEXT_GREY = '#c3c8d0';

  function truncate(text, length) {
    return text.length > length ? text.slice(0, length - 1) + '…' : text;
  }

  /**
   * `container`: the chart's element. `store`: a SeriesStore. Options:
   * - `onStreamClick(name)`, `onEventClick(id)`: a line or an event line was clicked;
   * - `contextStreams`: charted names drawn thin and grey, behind the others (a report leads
   *   with what deviates and keeps the rest as context);
   * - `wrapLegend`: the legend wraps onto rows instead of paging (a report has no pager to
   *   click in print); the plot starts below it;
   * - `eventStyle(event)`: `{color, type}` for an event's line (a report, which knows the
   *   ground truth, draws red herrings apart; the live dashboard never does);
   * - `normalized` (default true): the 0–100 scale with its band; false for runs without a
   *   baseline (values as % of their mean, axis from the data).
   */
  function TimeSeriesView(container, store, options) {
    this.container = container;
    this.store = store;
    this.options = options || {};
    this.streamNames = [];
    this.markedEventId = null;
    /** The visible window; `followLive` keeps its width and slides it as buckets arrive. */
    this.window = { startMs: null, endMs: null, followLive: true };
    this.drawnVersion = -1;
    this.chart = global.echarts.init(container, null, { renderer: 'canvas' });
    this.chart.on('datazoom', () => {
      this.readZoom();
      // Labels thin out or return with the zoom; redraw after the gesture settles.
      clearTimeout(this.zoomRedrawTimer);
      this.zoomRedrawTimer = setTimeout(() => this.render(true), 120);
    });
    this.chart.on('click', (params) => {
      if (params.componentType === 'markLine' && params.data && params.data.eventId) {
        if (this.options.onEventClick) this.options.onEventClick(params.data.eventId);
      } else if (params.componentType === 'series' && this.streamNames.includes(params.seriesName)) {
        if (this.options.onStreamClick) this.options.onStreamClick(params.seriesName);
      }
    });
    this.resizeObserver = new ResizeObserver(() => {
      this.chart.resize();
      // Which event labels fit depends on the plot's width.
      if (this.baseOptionSet) this.render(true);
    });
    this.resizeObserver.observe(container);
    // The axes, legend and zoom are set with the first data (one draw instead of two).
    this.baseOptionSet = false;
  }

  TimeSeriesView.prototype.baseOption = function baseOption() {
    return {
      useUTC: true,
      // Live updates replace data in place: no entry animation, so nothing flickers or moves.
      animation: false,
      color: Marketsim.SERIES_COLORS,
      grid: { left: 58, right: 20, top: 44, bottom: 112, containLabel: false },
      legend: {
        type: this.options.wrapLegend ? 'plain' : 'scroll',
        itemWidth: 18,
        formatter: this.options.wrapLegend ? (name) => Marketsim.shortName(name) : undefined,
        top: 4,
        left: 8,
        right: 8,
        data: [],
        textStyle: { fontSize: 12 },
        tooltip: { show: true },
      },
      tooltip: {
        trigger: 'axis',
        confine: true,
        axisPointer: { type: 'line' },
        formatter: (params) => this.tooltip(params),
      },
      xAxis: {
        type: 'time',
        name: 'Virtual time (UTC)',
        nameLocation: 'middle',
        nameGap: 38,
        axisLabel: {
          hideOverlap: true,
          lineHeight: 14,
          // Every label carries its date: a week of hours is unreadable by time of day alone.
          formatter: (value) => format.day(value) + '\n' + format.clock(value),
        },
        splitLine: { show: false },
      },
      yAxis: this.options.normalized === false ? {
        type: 'value',
        name: '% of the stream’s own mean',
        nameLocation: 'middle',
        nameGap: 40,
        splitLine: { lineStyle: { color: '#eef0f3' } },
      } : {
        type: 'value',
        min: 0,
        max: 100,
        interval: 10,
        name: 'Normalized (50 = expected, 10 per σ)',
        nameLocation: 'middle',
        nameGap: 36,
        axisLabel: { formatter: (value) => String(value) },
        splitLine: { lineStyle: { color: '#eef0f3' } },
      },
      dataZoom: [
        { type: 'inside', xAxisIndex: 0, filterMode: 'none' },
        {
          type: 'slider',
          xAxisIndex: 0,
          filterMode: 'none',
          height: 22,
          bottom: 8,
          labelFormatter: (value) => format.dateTime(value),
        },
      ],
      series: [],
    };
  };

  /** Reads the slider after the user zoomed or panned. */
  TimeSeriesView.prototype.readZoom = function readZoom() {
    const zoom = this.chart.getOption().dataZoom[0];
    const startMs = zoom.startValue;
    const endMs = zoom.endValue;
    if (typeof startMs !== 'number' || typeof endMs !== 'number') return;
    const newest = this.store.newestTimeMs;
    this.window = {
      startMs: startMs,
      endMs: endMs,
      // At the right edge (within one bucket), the view follows new data.
      followLive: endMs >= newest - 30 * 60 * 1000,
    };
  };

  /** Shows `[startMs, endMs]`; with `followLive`, slides with new data. */
  TimeSeriesView.prototype.setWindow = function setWindow(startMs, endMs, followLive) {
    this.window = { startMs: startMs, endMs: endMs, followLive: !!followLive };
    this.render(true);
  };

  /** Shows the last `spanMs` up to the newest data, following it. */
  TimeSeriesView.prototype.showLast = function showLast(spanMs) {
    const newest = this.store.newestTimeMs;
    this.setWindow(newest - spanMs, newest, true);
  };

  TimeSeriesView.prototype.setStreams = function setStreams(names) {
    this.streamNames = names.slice();
    this.render(true);
  };

  /** Marks one event (a thicker, highlighted line) and brings it into view. */
  TimeSeriesView.prototype.markEvent = function markEvent(eventId) {
    this.markedEventId = eventId;
    const event = this.store.eventsById.get(eventId);
    if (event && this.window.startMs !== null &&
        (event.timeMs < this.window.startMs || event.timeMs > this.window.endMs)) {
      const width = this.window.endMs - this.window.startMs;
      const startMs = Math.max(this.store.oldestLoadedMs, event.timeMs - width / 2);
      this.window = { startMs: startMs, endMs: startMs + width, followLive: false };
    }
    this.render(true);
  };

  TimeSeriesView.prototype.tooltip = function tooltip(params) {
    if (!params.length) return '';
    const timeMs = params[0].axisValue;
    const rows = [];
    for (const param of params) {
      const points = this.store.pointsByStream.get(param.seriesName);
      if (!points) continue;
      const point = points[param.dataIndex];
      if (!point) continue;
      const stream = this.store.streamByName.get(param.seriesName);
      const flag = point.flag || '–';
      rows.push(
        '<tr><td>' + param.marker + escapeHtml(param.seriesName) + '</td>' +
        '<td class="num">' + format.number(point.value) + ' ' + escapeHtml(stream ? stream.unit : '') + '</td>' +
        '<td class="num">' + format.number(point.expected) + '</td>' +
        '<td class="num">' + format.sigma(point.z) + '</td>' +
        '<td style="color:' + (Marketsim.FLAG_COLORS[flag] || '#6b7480') + '">' + flag + '</td></tr>',
      );
    }
    return (
      '<div class="timeseries-tooltip"><strong>' + format.dateTime(timeMs) + '</strong> (bucket start)' +
      '<table><tr><th>stream</th><th>value</th><th>expected</th><th>z</th><th>flag</th></tr>' +
      rows.join('') + '</table></div>'
    );
  };

  /** Redraws when the store changed since the last draw (or when `force`). */
  TimeSeriesView.prototype.render = function render(force) {
    if (!force && this.drawnVersion === this.store.version) return;
    this.drawnVersion = this.store.version;
    const store = this.store;
    const lineSeries = [];
    const flagged = [];
    let pointCount = 0;
    let newestCharted = -Infinity;
    const context = new Set(this.options.contextStreams || []);
    let colourIndex = 0;
    for (const name of this.streamNames) {
      const points = store.pointsByStream.get(name) || [];
      const grey = context.has(name);
      const colour = grey ? CONTEXT_GREY : Marketsim.SERIES_COLORS[colourIndex++ % Marketsim.SERIES_COLORS.length];
      const data = new Array(points.length);
      for (let index = 0; index < points.length; index++) {
        const point = points[index];
        data[index] = [point.timeMs, point.normalized];
        if (!grey && (point.flag === 'warning' || point.flag === 'critical')) {
          flagged.push({ value: [point.timeMs, point.normalized], itemStyle: { color: Marketsim.FLAG_COLORS[point.flag] } });
        }
      }
      pointCount += points.length;
      if (points.length) newestCharted = Math.max(newestCharted, points[points.length - 1].timeMs);
      lineSeries.push({
        id: 'stream:' + name,
        name: name,
        type: 'line',
        data: data,
        showSymbol: false,
        symbolSize: 4,
        connectNulls: false,
        itemStyle: { color: colour },
        lineStyle: { width: grey ? 1 : 1.6, color: colour },
        emphasis: { focus: 'series' },
        z: grey ? 2 : 3,
      });
    }
    // The window first (it slides when following live), then which labels fit in it.
    const zoom = this.zoomOption(newestCharted);
    const labelled = this.labelledEvents();
    const eventLines = store.eventsInOrder().map((event) => {
      const marked = event.id === this.markedEventId;
      const showLabel = marked || labelled.has(event.id);
      const style = (this.options.eventStyle && this.options.eventStyle(event)) || { color: '#8a93a0', type: 'dashed' };
      return {
        xAxis: event.timeMs,
        eventId: event.id,
        name: event.title,
        lineStyle: { color: marked ? '#111' : style.color, width: marked ? 2.5 : 1, type: marked ? 'solid' : style.type },
        label: {
          show: showLabel,
          position: 'insideEndTop',
          // Titles only: emoji icons render as boxes where no emoji font is installed.
          formatter: truncate(event.title, EVENT_LABEL_CHARS),
          color: marked ? '#111' : style.color === '#8a93a0' ? '#555d69' : style.color,
          fontSize: 10,
          fontWeight: marked ? 'bold' : 'normal',
        },
        emphasis: { label: { show: true } },
      };
    });
    const scenarioAreas = Array.from(store.scenariosById.values()).map((window) => [
      {
        xAxis: window.startMs,
        name: window.name,
        label: { show: true, position: 'insideTop', color: '#5b3f8c', fontSize: 11, formatter: window.name },
      },
      { xAxis: Math.max(window.untilMs, window.startMs) },
    ]);
    const settlingAreas = Array.from(store.scenariosById.values())
      .filter((window) => window.settledMs > window.untilMs)
      .map((window) => [{ xAxis: window.untilMs }, { xAxis: window.settledMs }]);
    const helperSeries = [
      {
        id: 'baseline',
        name: 'baseline',
        type: 'line',
        data: [],
        silent: true,
        markArea: {
          silent: true,
          itemStyle: { color: 'rgba(60, 140, 90, 0.09)' },
          label: { show: false },
          data: this.options.normalized === false ? [] : [[{ yAxis: BAND_LOW }, { yAxis: BAND_HIGH }]],
        },
        markLine: {
          silent: true,
          symbol: 'none',
          data: this.options.normalized === false ? [] : [
            { yAxis: 50, lineStyle: { color: '#3c8c5a', type: 'solid', width: 1 }, label: { formatter: 'expected', position: 'insideStartTop', color: '#3c8c5a', fontSize: 10 } },
            { yAxis: LINE_HIGH, lineStyle: { color: '#c62828', type: 'dotted', width: 1 }, label: { formatter: '+3.5σ', position: 'insideStartTop', color: '#c62828', fontSize: 10 } },
            { yAxis: LINE_LOW, lineStyle: { color: '#c62828', type: 'dotted', width: 1 }, label: { formatter: '−3.5σ', position: 'insideStartBottom', color: '#c62828', fontSize: 10 } },
          ],
        },
        z: 1,
      },
      {
        id: 'scenarios',
        name: 'scenarios',
        type: 'line',
        data: [],
        silent: true,
        markArea: { silent: true, itemStyle: { color: 'rgba(123, 63, 176, 0.10)' }, data: scenarioAreas },
        z: 1,
      },
      {
        id: 'settling',
        name: 'settling',
        type: 'line',
        data: [],
        silent: true,
        markArea: { silent: true, itemStyle: { color: 'rgba(123, 63, 176, 0.04)' }, data: settlingAreas },
        z: 1,
      },
      {
        id: 'events',
        name: 'events',
        type: 'line',
        data: [],
        markLine: { symbol: 'none', animation: false, data: eventLines, emphasis: { lineStyle: { width: 2.5 } } },
        z: 2,
      },
      {
        id: 'flagged',
        name: 'flagged bucket',
        type: 'scatter',
        data: flagged,
        symbolSize: 6,
        silent: true,
        z: 4,
      },
    ];
    const option = {
      legend: { data: this.streamNames },
      series: lineSeries.concat(helperSeries),
    };
    if (this.options.wrapLegend) {
      // Rows estimated from the width (names shortened to their part after the domain).
      const perRow = Math.max(1, Math.floor((this.container.clientWidth - 40) / 190));
      option.grid = { top: 14 + Math.ceil(this.streamNames.length / perRow) * 22 };
    }
    if (zoom) option.dataZoom = zoom;
    if (!this.baseOptionSet) {
      this.baseOptionSet = true;
      const base = this.baseOption();
      this.chart.setOption(Object.assign(base, option, {
        legend: Object.assign(base.legend, option.legend),
        grid: Object.assign(base.grid, option.grid || {}),
      }));
    } else {
      this.chart.setOption(option, { replaceMerge: ['series'], lazyUpdate: false });
    }
    this.container.dataset.points = String(pointCount);
    this.container.dataset.streams = this.streamNames.join(',');
    if (Number.isFinite(newestCharted)) this.container.dataset.lastUpdate = new Date(newestCharted).toISOString();
  };

  /**
   * The events whose label fits: in time order within the visible window, each at least a
   * label's height apart on screen from the previous labelled one (labels run along the lines),
   * the marked event always. The others keep their line and show their title on hover.
   */
  TimeSeriesView.prototype.labelledEvents = function labelledEvents() {
    const labelled = new Set();
    const startMs = this.window.startMs;
    const endMs = this.window.endMs;
    const plotWidthPx = Math.max(this.container.clientWidth - 80, 100);
    if (startMs === null || endMs <= startMs) return labelled;
    const msPerPixel = (endMs - startMs) / plotWidthPx;
    const minimumGapMs = 16 * msPerPixel;
    let previousMs = -Infinity;
    for (const event of this.store.eventsInOrder()) {
      if (event.timeMs < startMs || event.timeMs > endMs) continue;
      if (event.timeMs - previousMs < minimumGapMs) continue;
      labelled.add(event.id);
      previousMs = event.timeMs;
    }
    return labelled;
  };

  /** The dataZoom option that keeps the user's window (or slides it, when following). */
  TimeSeriesView.prototype.zoomOption = function zoomOption(newestCharted) {
    const newest = Number.isFinite(this.store.newestTimeMs) ? this.store.newestTimeMs : newestCharted;
    if (!Number.isFinite(newest) || this.window.startMs === null) return null;
    if (this.window.followLive) {
      const width = this.window.endMs - this.window.startMs;
      this.window.endMs = newest;
      this.window.startMs = newest - width;
    }
    const range = { startValue: this.window.startMs, endValue: this.window.endMs };
    return [Object.assign({}, range), Object.assign({}, range)];
  };

  function escapeHtml(text) {
    return String(text).replace(/[&<>"]/g, (character) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[character]);
  }

  Marketsim.TimeSeriesView = TimeSeriesView;
  Marketsim.escapeHtml = escapeHtml;
})(typeof window !== 'undefined' ? window : globalThis);
