// The flow view: the streams as a graph of the model's real flows (its edge table, served by
// /api/catalog/flows), laid out left to right in layers from the sources, each node coloured by
// its latest deviation so a cascade is seen travelling downstream; a node click charts it.
(function attachFlowView(global) {
  'use strict';
  const Marketsim = global.Marketsim || (global.Marketsim = {});

  const SVG = 'http://www.w3.org/2000/svg';
  // Compact two-line nodes (name, then σ): the model's longest chain is about a dozen steps,
  // which must fit a desktop's width at a readable size.
  const NODE_WIDTH = 128;
  const NODE_HEIGHT = 36;
  const COLUMN_GAP = 24;
  const ROW_GAP = 10;
  /** Below this share of its natural size the graph scrolls instead of shrinking. */
  const SMALLEST_SCALE = 0.85;
  const DOMAIN_STRIPES = ['#1f77b4', '#2ca02c', '#d95f02', '#7b3fb0', '#17becf', '#e7298a', '#8c564b', '#666666'];
  const MARGIN = 12;

  function svgElement(tag, attributes) {
    const node = document.createElementNS(SVG, tag);
    for (const key of Object.keys(attributes || {})) node.setAttribute(key, attributes[key]);
    return node;
  }

  /**
   * Layers by longest path from the sources, ignoring edges that close a cycle (found by a
   * depth-first search in edge-table order, so the layout is the same on every load).
   */
  function layersOf(names, edges) {
    const outgoing = new Map(names.map((name) => [name, []]));
    for (const edge of edges) outgoing.get(edge.from).push(edge.to);
    const state = new Map();
    const forward = [];
    function visit(name) {
      state.set(name, 'open');
      for (const next of outgoing.get(name)) {
        if (state.get(next) === 'open') continue; // a back edge: drawn, but not layered by
        forward.push([name, next]);
        if (!state.has(next)) visit(next);
      }
      state.set(name, 'done');
    }
    const incoming = new Set(edges.map((edge) => edge.to));
    for (const name of names) if (!incoming.has(name) && !state.has(name)) visit(name);
    for (const name of names) if (!state.has(name)) visit(name);
    const layer = new Map(names.map((name) => [name, 0]));
    // Longest path by relaxation; the forward edges form a DAG, so |names| rounds suffice.
    for (let round = 0; round < names.length; round++) {
      let changed = false;
      for (const [from, to] of forward) {
        if (layer.get(to) < layer.get(from) + 1) {
          layer.set(to, layer.get(from) + 1);
          changed = true;
        }
      }
      if (!changed) break;
    }
    return layer;
  }

  /** `flows`: `{streams, edges}` from the catalog endpoint. `options.onSelect(name)`. */
  function FlowView(container, store, flows, options) {
    this.container = container;
    this.store = store;
    this.options = options || {};
    this.nodesByStream = new Map();
    this.build(flows);
  }

  FlowView.prototype.build = function build(flows) {
    const edges = flows.edges.filter((edge) => this.store.streamByName.has(edge.from) && this.store.streamByName.has(edge.to));
    const names = [];
    for (const stream of this.store.streams) {
      if (edges.some((edge) => edge.from === stream.name || edge.to === stream.name)) names.push(stream.name);
    }
    const layer = layersOf(names, edges);
    const columns = [];
    for (const name of names) {
      const column = layer.get(name);
      (columns[column] = columns[column] || []).push(name);
    }
    // Order each column by the mean row of its predecessors (one sweep), so lines cross less.
    const row = new Map();
    columns.forEach((column, columnIndex) => {
      if (columnIndex > 0) {
        const key = (name) => {
          const rows = edges.filter((edge) => edge.to === name && row.has(edge.from)).map((edge) => row.get(edge.from));
          return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Infinity;
        };
        const keys = new Map(column.map((name) => [name, key(name)]));
        column.sort((a, b) => keys.get(a) - keys.get(b));
      }
      column.forEach((name, index) => row.set(name, index));
    });
    const tallest = Math.max(...columns.map((column) => column.length));
    const width = MARGIN * 2 + columns.length * NODE_WIDTH + (columns.length - 1) * COLUMN_GAP;
    const height = MARGIN * 2 + tallest * NODE_HEIGHT + (tallest - 1) * ROW_GAP;
    const position = new Map();
    columns.forEach((column, columnIndex) => {
      const columnHeight = column.length * NODE_HEIGHT + (column.length - 1) * ROW_GAP;
      const top = MARGIN + (height - 2 * MARGIN - columnHeight) / 2;
      column.forEach((name, index) => {
        position.set(name, { x: MARGIN + columnIndex * (NODE_WIDTH + COLUMN_GAP), y: top + index * (NODE_HEIGHT + ROW_GAP) });
      });
    });
    const svg = svgElement('svg', {
      viewBox: '0 0 ' + width + ' ' + height,
      role: 'group',
      'aria-label': 'Flows between streams: ' + names.length + ' streams, ' + edges.length + ' flows',
      class: 'flow-graph',
      preserveAspectRatio: 'xMidYMin meet',
      style: 'min-width:' + Math.round(width * SMALLEST_SCALE) + 'px;max-width:' + Math.round(width * 1.3) + 'px',
    });
    const domains = [];
    for (const stream of this.store.streams) if (!domains.includes(stream.domain)) domains.push(stream.domain);
    const definitions = svgElement('defs');
    const marker = svgElement('marker', { id: 'flow-arrow', viewBox: '0 0 8 8', refX: '8', refY: '4', markerWidth: '7', markerHeight: '7', orient: 'auto' });
    marker.append(svgElement('path', { d: 'M0,0 L8,4 L0,8 z', fill: '#9aa3ae' }));
    definitions.append(marker);
    svg.append(definitions);
    const edgeLayer = svgElement('g', { class: 'flow-edges' });
    for (const edge of edges) {
      const from = position.get(edge.from);
      const to = position.get(edge.to);
      const startX = from.x + NODE_WIDTH;
      const startY = from.y + NODE_HEIGHT / 2;
      let path;
      if (to.x > from.x) {
        const endX = to.x;
        const endY = to.y + NODE_HEIGHT / 2;
        const bend = (endX - startX) / 2;
        path = 'M' + startX + ',' + startY + ' C' + (startX + bend) + ',' + startY + ' ' + (endX - bend) + ',' + endY + ' ' + endX + ',' + endY;
      } else {
        // A flow back to an earlier (or the same) column loops above the nodes.
        const endX = to.x + NODE_WIDTH / 2;
        const endY = to.y;
        path = 'M' + (from.x + NODE_WIDTH / 2) + ',' + from.y + ' C' + (from.x + NODE_WIDTH / 2) + ',' + (Math.min(from.y, to.y) - 40) + ' ' + endX + ',' + (Math.min(from.y, to.y) - 40) + ' ' + endX + ',' + endY;
      }
      const line = svgElement('path', { d: path, class: 'flow-edge', 'marker-end': 'url(#flow-arrow)' });
      const title = svgElement('title');
      title.textContent = edge.from + ' → ' + edge.to + ': ' + edge.description;
      line.append(title);
      edgeLayer.append(line);
    }
    svg.append(edgeLayer);
    const nodeLayer = svgElement('g', { class: 'flow-nodes' });
    for (const name of names) {
      const at = position.get(name);
      const node = svgElement('g', {
        class: 'flow-node',
        transform: 'translate(' + at.x + ',' + at.y + ')',
        tabindex: '0',
        role: 'button',
        'data-stream': name,
        'aria-pressed': 'false',
      });
      const box = svgElement('rect', { width: NODE_WIDTH, height: NODE_HEIGHT, rx: '5', ry: '5' });
      const domain = this.store.streamByName.get(name).domain;
      // The domain is the stripe's colour (named in the caption); the label is the rest.
      const stripe = svgElement('rect', { width: '4', height: String(NODE_HEIGHT - 8), x: '3', y: '4', rx: '2', fill: DOMAIN_STRIPES[domains.indexOf(domain) % DOMAIN_STRIPES.length] });
      const label = svgElement('text', { x: '11', y: '15', class: 'flow-name' });
      label.textContent = Marketsim.shortName(name);
      const value = svgElement('text', { x: '11', y: '29', class: 'flow-z' });
      const title = svgElement('title');
      title.textContent = name;
      node.append(title, box, stripe, label, value);
      const select = () => {
        if (this.options.onSelect) this.options.onSelect(name);
      };
      node.addEventListener('click', select);
      node.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          select();
        }
      });
      nodeLayer.append(node);
      this.nodesByStream.set(name, { node: node, box: box, label: label, value: value, title: title, zText: null });
    }
    svg.append(nodeLayer);
    const outside = this.store.streams.length - names.length;
    const usedDomains = domains.filter((domain) => names.some((name) => this.store.streamByName.get(name).domain === domain));
    const caption = Marketsim.element('p', { class: 'flow-caption' }, [
      names.length + ' streams linked by ' + edges.length + ' flows of the model (left: sources; arrows: who feeds whom; colour: deviation as in the heatmap). Stripe = domain: ',
      ...usedDomains.map((domain) => Marketsim.element('span', { class: 'domain-key' }, [
        Marketsim.element('span', { class: 'domain-swatch', style: 'background:' + DOMAIN_STRIPES[domains.indexOf(domain) % DOMAIN_STRIPES.length] }),
        domain,
      ])),
      outside > 0 ? ' · ' + outside + ' streams sit outside the flow table (see the heatmap).' : '',
    ]);
    this.container.replaceChildren(Marketsim.element('div', { class: 'flow-scroll' }, [svg]), caption);
    this.update();
  };

  FlowView.prototype.update = function update() {
    for (const [name, parts] of this.nodesByStream) {
      const latest = this.store.latestByStream.get(name);
      const z = latest && latest.z !== null ? latest.z : null;
      const status = (latest && latest.flag) || 'normal';
      const zText = Marketsim.format.sigma(z) + status;
      if (parts.zText !== zText) {
        parts.zText = zText;
        parts.box.setAttribute('fill', Marketsim.deviationColor(z));
        parts.node.setAttribute('data-status', status);
        const textColor = Marketsim.textColorOn(z);
        parts.label.setAttribute('fill', textColor);
        parts.value.setAttribute('fill', textColor);
        parts.value.textContent = Marketsim.format.sigma(z);
        parts.title.textContent = name + ': ' + Marketsim.format.sigma(z) + ' (' + status + ') — click to chart';
      }
      const pressed = this.options.isCharted && this.options.isCharted(name) ? 'true' : 'false';
      if (parts.node.getAttribute('aria-pressed') !== pressed) parts.node.setAttribute('aria-pressed', pressed);
    }
  };

  Marketsim.FlowView = FlowView;
})(typeof window !== 'undefined' ? window : globalThis);
