// marketsim diff report: overlays A and B for the streams that differ most.
(function () {
  'use strict';
  var diff = JSON.parse(document.getElementById('report-data').textContent);
  var container = document.getElementById('overlay-charts');
  var charts = [];
  var series = diff.series;
  if (series && series.streams.length) {
    var times = series.timestamps.map(function (t) { return Date.parse(t); });
    var rank = {};
    diff.streams.forEach(function (s) {
      rank[s.name] = (s.status === 'different' ? 1e9 : 0) + s.bucketsDiffering;
    });
    var chosen = series.streams.slice().sort(function (x, y) {
      return (rank[y.name] || 0) - (rank[x.name] || 0) || (x.name < y.name ? -1 : 1);
    }).slice(0, 12);
    chosen.forEach(function (stream) {
      var el = document.createElement('div');
      el.className = 'chart';
      el.setAttribute('data-chart', 'overlay-' + stream.name);
      container.appendChild(el);
      var chart = echarts.init(el, null, { renderer: 'canvas' });
      charts.push(chart);
      var points = function (values) { return times.map(function (t, i) { return [t, values[i]]; }); };
      chart.setOption({
        animation: false,
        title: { text: stream.name, textStyle: { fontSize: 13 } },
        tooltip: { trigger: 'axis' },
        legend: { top: 0, right: 10, data: ['A', 'B'] },
        grid: { left: 60, right: 20, top: 35, bottom: 55 },
        xAxis: { type: 'time' },
        yAxis: { type: 'value' },
        dataZoom: [{ type: 'inside' }, { type: 'slider' }],
        series: [
          { name: 'A', type: 'line', showSymbol: false, data: points(stream.a) },
          { name: 'B', type: 'line', showSymbol: false, lineStyle: { type: 'dashed' }, data: points(stream.b) }
        ]
      });
    });
  } else {
    container.textContent = 'No aligned series (the runs have different buckets).';
  }
  window.addEventListener('resize', function () { charts.forEach(function (c) { c.resize(); }); });
  window.marketsimReportReady = true;
}());
