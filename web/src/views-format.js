// Shared view helpers (formatting, colours, DOM building) of the live dashboard and the reports.
//
// Why plain classic scripts on one namespace (`window.Marketsim`) and no framework or modules:
// the same files are served to the live pages (/assets/…) and inlined into single-file offline
// HTML reports, and an inlined `<script type="module">` cannot import its siblings without a
// bundler. Classic scripts run in order, need no build step and no npm package beyond ECharts,
// and each view stays a small constructor over a DOM element.
(function attachFormatHelpers(global) {
  'use strict';
  const Marketsim = global.Marketsim || (global.Marketsim = {});

  const MS_PER_HOUR = 3600 * 1000;
  const MS_PER_DAY = 24 * MS_PER_HOUR;
  /** The normalized scale: 50 is the expectation and each σ is 10 points (stats::score). */
  const POINTS_PER_SIGMA = 10;
  const EXPECTED_NORMALIZED = 50;

  const wholeNumber = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const oneDecimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
  const threeDecimals = new Intl.NumberFormat('en-US', { maximumFractionDigits: 3 });
  const weekdays = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

  function twoDigits(number) {
    return number < 10 ? '0' + number : String(number);
  }

  /** Thousands separators; fewer decimals the larger the number (counts are whole). */
  function formatNumber(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return '–';
    const magnitude = Math.abs(value);
    if (magnitude >= 100) return wholeNumber.format(value);
    if (magnitude >= 1) return oneDecimal.format(value);
    return threeDecimals.format(value);
  }

  /** `+2.3σ` / `−1.0σ` (a real minus sign, so columns of numbers line up). */
  function formatSigma(z) {
    if (z === null || z === undefined || Number.isNaN(z)) return '–';
    // Rounded first, so −0.04 reads ±0.0σ rather than −0.0σ.
    const rounded = Math.round(z * 10) / 10;
    const sign = rounded > 0 ? '+' : rounded < 0 ? '−' : '±';
    return sign + Math.abs(rounded).toFixed(1) + 'σ';
  }

  /** Times are virtual UTC times: `Mon 1 Dec 14:00`, never wrapped (callers use nowrap). */
  function formatDateTime(timeMs) {
    const date = new Date(timeMs);
    return (
      weekdays[date.getUTCDay()] + ' ' + date.getUTCDate() + ' ' + months[date.getUTCMonth()] + ' ' +
      twoDigits(date.getUTCHours()) + ':' + twoDigits(date.getUTCMinutes())
    );
  }

  /** `1 Dec` — the date part of an axis label. */
  function formatDay(timeMs) {
    const date = new Date(timeMs);
    return date.getUTCDate() + ' ' + months[date.getUTCMonth()];
  }

  function formatClock(timeMs) {
    const date = new Date(timeMs);
    return twoDigits(date.getUTCHours()) + ':' + twoDigits(date.getUTCMinutes());
  }

  /** A duration in words for "3 h ago"-style captions. */
  function formatSpan(ms) {
    const magnitude = Math.abs(ms);
    if (magnitude < MS_PER_HOUR) return Math.round(magnitude / 60000) + ' min';
    if (magnitude < 2 * MS_PER_DAY) return oneDecimal.format(magnitude / MS_PER_HOUR) + ' h';
    return oneDecimal.format(magnitude / MS_PER_DAY) + ' days';
  }

  /** The domain of a stream name: its first part (`customer` of `customer.tutor.search`). */
  function domainOf(streamName) {
    const dot = streamName.indexOf('.');
    return dot < 0 ? streamName : streamName.slice(0, dot);
  }

  /** The name without its domain, for labels inside a domain's group. */
  function shortName(streamName) {
    const dot = streamName.indexOf('.');
    return dot < 0 ? streamName : streamName.slice(dot + 1);
  }

  /** z from a normalized value, exact unless the scale clamped it at 0 or 100. */
  function zOfNormalized(normalized) {
    return (normalized - EXPECTED_NORMALIZED) / POINTS_PER_SIGMA;
  }

  // Diverging colour scale for deviation: below expectation blue, above orange-red, both
  // saturating at 4σ; within ±1σ stays near neutral grey so what deviates stands out.
  const NEUTRAL = [236, 239, 243];
  const BELOW = [37, 99, 185];
  const ABOVE = [205, 55, 30];
  const SATURATION_SIGMA = 4;
  const NEUTRAL_SIGMA = 0.5;

  function mix(from, to, share) {
    const channel = (index) => Math.round(from[index] + (to[index] - from[index]) * share);
    return 'rgb(' + channel(0) + ',' + channel(1) + ',' + channel(2) + ')';
  }

  function deviationColor(z) {
    if (z === null || z === undefined || Number.isNaN(z)) return 'rgb(246,247,249)';
    // Nothing within ±0.5σ (noise), then linear to full colour at 4σ: 1σ is a faint tint,
    // 2σ clearly coloured, 3σ strong, so what deviates stands out from the noise.
    const share = Math.min(Math.max(Math.abs(z) - NEUTRAL_SIGMA, 0) / (SATURATION_SIGMA - NEUTRAL_SIGMA), 1);
    return mix(NEUTRAL, z < 0 ? BELOW : ABOVE, share);
  }

  /** Dark text on light cells, light text on saturated ones. */
  function textColorOn(z) {
    return z !== null && z !== undefined && Math.abs(z) >= 3.4 ? '#fff' : '#1d2430';
  }

  const FLAG_COLORS = { normal: '#6b7480', warning: '#c98a00', critical: '#c62828' };

  /** Line colours for charted streams: distinct, colour-blind-friendlier than the defaults. */
  const SERIES_COLORS = [
    '#1f77b4', '#d95f02', '#2ca02c', '#7b3fb0', '#e7298a', '#17becf', '#8c564b', '#bcbd22',
    '#4c4c9d', '#a6761d', '#1b9e77', '#666666',
  ];

  /** `element('div', {class: 'x', dataset: {id: 1}, onclick: f}, [child, 'text'])`. */
  function element(tag, properties, children) {
    const node = document.createElement(tag);
    if (properties) {
      for (const key of Object.keys(properties)) {
        const value = properties[key];
        if (value === undefined || value === null || value === false) continue;
        if (key === 'class') node.className = value;
        else if (key === 'dataset') Object.assign(node.dataset, value);
        else if (key === 'text') node.textContent = value;
        else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? '' : String(value));
      }
    }
    for (const child of children || []) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** Index of the first item whose `timeMs` is ≥ `timeMs` in a list sorted by it. */
  function lowerBound(items, timeMs) {
    let low = 0;
    let high = items.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (items[middle].timeMs < timeMs) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  Marketsim.MS_PER_HOUR = MS_PER_HOUR;
  Marketsim.MS_PER_DAY = MS_PER_DAY;
  Marketsim.POINTS_PER_SIGMA = POINTS_PER_SIGMA;
  Marketsim.EXPECTED_NORMALIZED = EXPECTED_NORMALIZED;
  Marketsim.FLAG_COLORS = FLAG_COLORS;
  Marketsim.SERIES_COLORS = SERIES_COLORS;
  Marketsim.format = {
    number: formatNumber,
    sigma: formatSigma,
    dateTime: formatDateTime,
    day: formatDay,
    clock: formatClock,
    span: formatSpan,
  };
  Marketsim.domainOf = domainOf;
  Marketsim.shortName = shortName;
  Marketsim.zOfNormalized = zOfNormalized;
  Marketsim.deviationColor = deviationColor;
  Marketsim.textColorOn = textColorOn;
  Marketsim.element = element;
  Marketsim.lowerBound = lowerBound;
})(typeof window !== 'undefined' ? window : globalThis);
