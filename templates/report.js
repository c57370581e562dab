// marketsim run report: draws the charts from the JSON data block. Plain script, no modules,
// so the file works when opened from disk.
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var times = data.timestamps;
  var DAY = 86400000;
  var charts = [];

  function init(el) {
    var chart = echarts.init(el, null, { renderer: 'canvas' });
    charts.push(chart);
    return chart;
  }

  // Where the zoom opens: the last seven days of the run (all of it when shorter).
  function zoomStart() {
    if (times.length < 2) { return 0; }
    var span = times[times.length - 1] - times[0];
    return span <= 7 * DAY ? 0 : Math.max(0, 100 - (7 * DAY / span) * 100);
  }

  // A stream's plotted values: the normalized score, or (not analyzed) % of its own mean.
  function plotted(stream) {
    if (data.meta.analyzed) { return stream.normalized; }
    var sum = 0, n = 0;
    stream.values.forEach(function (v) { if (v !== null) { sum += v; n += 1; } });
    var mean = n ? sum / n : 0;
    return stream.values.map(function (v) {
      return v === null || mean === 0 ? null : Math.round(1000 * v / mean) / 10;
    });
  }

  var ms = function (text) { return Date.parse(text); };
  var windowAreas = data.windows.filter(function (w) { return !w.redHerring; }).map(function (w) {
    return [{ xAxis: ms(w.start), name: w.name, itemStyle: { color: 'rgba(237, 137, 54, 0.13)' } },
            { xAxis: ms(w.settledAt) }];
  });
  var eventLines = data.events.map(function (e) {
    return {
      xAxis: ms(e.timestamp),
      name: e.id,
      label: { show: false },
      lineStyle: e.redHerring ? { color: '#999', type: 'dashed', width: 1 }
                              : { color: '#6b46c1', type: 'solid', width: 1 },
      emphasis: { label: { show: true, formatter: e.id + ' ' + e.title } }
    };
  });

  // Per-domain charts.
  document.querySelectorAll('.chart[data-domain]').forEach(function (el) {
    var domain = el.getAttribute('data-domain');
    var streams = data.streams.filter(function (s) { return s.domain === domain; });
    var series = streams.map(function (s, index) {
      var values = plotted(s);
      var item = {
        name: s.name, type: 'line', showSymbol: false, sampling: 'lttb', lineStyle: { width: 1.2 },
        data: times.map(function (t, i) { return [t, values[i] === undefined ? null : values[i]]; })
      };
      if (index === 0) {
        item.markArea = {
          silent: true,
          data: (data.meta.analyzed ? [[{ yAxis: 30, itemStyle: { color: 'rgba(160, 174, 192, 0.18)' } }, { yAxis: 70 }]] : [])
            .concat(windowAreas)
        };
        item.markLine = { symbol: 'none', silent: false, data: eventLines };
      }
      return item;
    });
    init(el).setOption({
      animation: false,
      tooltip: { trigger: 'axis' },
      legend: { type: 'scroll', top: 0, left: 60, right: 20 },
      grid: { left: 50, right: 20, top: 40, bottom: 60 },
      xAxis: { type: 'time' },
      yAxis: data.meta.analyzed ? { type: 'value', min: 0, max: 100 } : { type: 'value' },
      dataZoom: [{ type: 'inside', start: zoomStart(), end: 100 }, { type: 'slider', start: zoomStart(), end: 100 }],
      series: series
    });
  });

  // Scenario lifecycle: one row per scenario, active then settling.
  var lifecycleEl = document.querySelector('.chart[data-chart="lifecycle"]');
  if (lifecycleEl) {
    var windows = data.windows;
    var bars = [];
    windows.forEach(function (w, row) {
      bars.push({ value: [row, ms(w.start), ms(w.activeUntil)], itemStyle: { color: '#dd6b20' }, name: w.name + ' (active)' });
      bars.push({ value: [row, ms(w.activeUntil), ms(w.settledAt)], itemStyle: { color: '#fbd38d' }, name: w.name + ' (settling)' });
    });
    init(lifecycleEl).setOption({
      animation: false,
      tooltip: { formatter: function (p) { return p.name + '<br>' + new Date(p.value[1]).toISOString() + ' → ' + new Date(p.value[2]).toISOString(); } },
      grid: { left: 170, right: 20, top: 10, bottom: 30 },
      xAxis: { type: 'time', min: times[0], max: times[times.length - 1] + data.meta.bucketMs },
      yAxis: { type: 'category', data: windows.map(function (w) { return w.id + ' ' + w.ref; }), inverse: true },
      series: [{
        type: 'custom',
        renderItem: function (params, api) {
          var start = api.coord([api.value(1), api.value(0)]);
          var end = api.coord([api.value(2), api.value(0)]);
          var height = api.size([0, 1])[1] * 0.6;
          return { type: 'rect', shape: { x: start[0], y: start[1] - height / 2, width: Math.max(2, end[0] - start[0]), height: height }, style: api.style() };
        },
        encode: { x: [1, 2], y: 0 },
        data: bars
      }]
    });
  }

  // Heatmap: streams (grouped by domain) × time, coloured by deviation from expected. Long runs
  // are drawn at most MAX_COLUMNS columns wide; a column keeps its most extreme bucket, so a
  // short anomaly stays visible.
  var MAX_COLUMNS = 240;
  var heatmapEl = document.querySelector('.chart[data-chart="heatmap"]');
  if (heatmapEl) {
    var names = data.streams.map(function (s) { return s.name; });
    var perColumn = Math.max(1, Math.ceil(times.length / MAX_COLUMNS));
    var columns = Math.ceil(times.length / perColumn);
    var labels = [];
    for (var c = 0; c < columns; c++) {
      labels.push(new Date(times[c * perColumn]).toISOString().slice(0, 13).replace('T', ' '));
    }
    var cells = [];
    data.streams.forEach(function (s, row) {
      var values = plotted(s);
      for (var column = 0; column < columns; column++) {
        var extreme = null;
        for (var i = column * perColumn; i < Math.min(times.length, (column + 1) * perColumn); i++) {
          var v = values[i];
          if (v === null || v === undefined) { continue; }
          var deviation = data.meta.analyzed ? v - 50 : Math.max(-50, Math.min(50, (v - 100) / 2));
          if (extreme === null || Math.abs(deviation) > Math.abs(extreme)) { extreme = deviation; }
        }
        if (extreme !== null) { cells.push([column, row, Math.round(extreme * 10) / 10]); }
      }
    });
    init(heatmapEl).setOption({
      animation: false,
      tooltip: { formatter: function (p) { return names[p.value[1]] + '<br>' + labels[p.value[0]] + (perColumn > 1 ? ' (+' + perColumn + ' buckets)' : '') + '<br>deviation ' + p.value[2]; } },
      grid: { left: 230, right: 30, top: 10, bottom: 90 },
      xAxis: { type: 'category', data: labels },
      yAxis: { type: 'category', data: names, inverse: true, axisLabel: { fontSize: 10, interval: 0 } },
      visualMap: { min: -50, max: 50, calculable: true, orient: 'horizontal', left: 'center', bottom: 0,
                   inRange: { color: ['#2b6cb0', '#bee3f8', '#ffffff', '#fed7d7', '#c53030'] } },
      dataZoom: [{ type: 'inside', xAxisIndex: 0 }, { type: 'slider', xAxisIndex: 0, bottom: 40 }],
      series: [{ type: 'heatmap', data: cells, progressive: 0 }]
    });
  }

  window.addEventListener('resize', function () { charts.forEach(function (c) { c.resize(); }); });
  window.marketsimReportReady = true;
}());
