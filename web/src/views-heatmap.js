// The stream heatmap: one cell per stream grouped under its domain's label, coloured by its
// latest deviation (σ legend), critical cells pulsing; filters by status and domain; a click
// (or Enter/Space: cells are buttons) toggles the stream on the chart.
(function attachHeatmapView(global) {
  'use strict';
  const Marketsim = global.Marketsim || (global.Marketsim = {});
  const element = Marketsim.element;

  const STATUSES = ['normal', 'warning', 'critical'];
  const LEGEND_SIGMAS = [-4, -3, -2, -1, 0, 1, 2, 3, 4];

  /**
   * `container`: where the heatmap goes (it gets the filters, the legend and the cells).
   * `options.onToggle(name)`: a cell was activated. `options.isCharted(name)`: for aria-pressed.
   */
  function HeatmapView(container, store, options) {
    this.container = container;
    this.store = store;
    this.options = options || {};
    this.statusFilter = new Set(STATUSES);
    this.domainFilter = 'all';
    this.cellsByStream = new Map();
    this.build();
  }

  HeatmapView.prototype.build = function build() {
    const domains = [];
    for (const stream of this.store.streams) {
      const domain = stream.domain || Marketsim.domainOf(stream.name);
      if (!domains.includes(domain)) domains.push(domain);
    }
    const filters = element('div', { class: 'heatmap-filters', role: 'group', 'aria-label': 'Heatmap filters' }, [
      element('span', { class: 'filter-caption', text: 'Status' }),
      ...STATUSES.map((status) =>
        element('label', { class: 'filter-check status-' + status }, [
          element('input', {
            type: 'checkbox',
            checked: true,
            value: status,
            onchange: (event) => {
              if (event.target.checked) this.statusFilter.add(status);
              else this.statusFilter.delete(status);
              this.applyFilters();
            },
          }),
          ' ' + status,
        ]),
      ),
      element('label', { class: 'filter-select' }, [
        'Domain ',
        element(
          'select',
          {
            onchange: (event) => {
              this.domainFilter = event.target.value;
              this.applyFilters();
            },
          },
          [element('option', { value: 'all', text: 'all domains' })].concat(
            domains.map((domain) => element('option', { value: domain, text: domain })),
          ),
        ),
      ]),
    ]);
    const legend = element('div', { class: 'heatmap-legend', 'aria-label': 'Colour scale: deviation from expected in σ' }, [
      element('span', { class: 'legend-caption', text: 'Deviation from expected' }),
      element(
        'span',
        { class: 'legend-scale' },
        LEGEND_SIGMAS.map((sigma) =>
          element('span', {
            class: 'legend-step',
            style: 'background:' + Marketsim.deviationColor(sigma) + ';color:' + Marketsim.textColorOn(sigma),
            text: (sigma > 0 ? '+' : sigma < 0 ? '−' : '') + Math.abs(sigma) + 'σ',
          }),
        ),
      ),
      element('span', { class: 'legend-note', text: 'outline: warning · pulsing: critical' }),
    ]);
    this.grid = element('div', { class: 'heatmap-grid' });
    for (const domain of domains) {
      const cells = element('div', { class: 'heatmap-cells' });
      const group = element('section', { class: 'heatmap-domain', dataset: { domain: domain } }, [
        element('h3', { class: 'domain-label', text: domain }),
        cells,
      ]);
      for (const stream of this.store.streams) {
        if ((stream.domain || Marketsim.domainOf(stream.name)) !== domain) continue;
        const value = element('span', { class: 'cell-z', text: '–' });
        const cell = element(
          'button',
          {
            type: 'button',
            class: 'cell',
            title: stream.name + ' — ' + stream.description,
            'aria-pressed': 'false',
            dataset: { stream: stream.name, status: 'normal', z: '0' },
            onclick: () => {
              if (this.options.onToggle) this.options.onToggle(stream.name);
            },
          },
          [element('span', { class: 'cell-name', text: Marketsim.shortName(stream.name) }), value],
        );
        this.cellsByStream.set(stream.name, { cell: cell, value: value, shown: null });
        cells.append(cell);
      }
      this.grid.append(group);
    }
    this.container.replaceChildren(filters, legend, this.grid);
    this.update();
  };

  /** Recolours every cell from the store's latest scores (cheap: only changed attributes). */
  HeatmapView.prototype.update = function update() {
    for (const [name, parts] of this.cellsByStream) {
      const latest = this.store.latestByStream.get(name);
      const z = latest && latest.z !== null ? latest.z : null;
      const status = (latest && latest.flag) || 'normal';
      const zText = z === null ? '' : String(Math.round(z * 100) / 100);
      const cell = parts.cell;
      if (parts.shown !== zText + status) {
        parts.shown = zText + status;
        cell.dataset.z = zText;
        cell.dataset.status = status;
        cell.style.background = Marketsim.deviationColor(z);
        cell.style.color = Marketsim.textColorOn(z);
        parts.value.textContent = Marketsim.format.sigma(z);
        cell.title = name + ': ' + Marketsim.format.sigma(z) + ', ' + status +
          (this.store.streamByName.get(name) ? ' — ' + this.store.streamByName.get(name).description : '');
      }
      const charted = this.options.isCharted ? this.options.isCharted(name) : false;
      const pressed = charted ? 'true' : 'false';
      if (cell.getAttribute('aria-pressed') !== pressed) cell.setAttribute('aria-pressed', pressed);
    }
    this.applyFilters();
  };

  HeatmapView.prototype.applyFilters = function applyFilters() {
    for (const [name, parts] of this.cellsByStream) {
      const cell = parts.cell;
      const domain = Marketsim.domainOf(name);
      const visible = this.statusFilter.has(cell.dataset.status) &&
        (this.domainFilter === 'all' || this.domainFilter === domain);
      cell.classList.toggle('filtered-out', !visible);
    }
    for (const group of this.grid.children) {
      const anyVisible = group.querySelector('.cell:not(.filtered-out)') !== null;
      group.classList.toggle('filtered-out', !anyVisible);
    }
  };

  Marketsim.HeatmapView = HeatmapView;
})(typeof window !== 'undefined' ? window : globalThis);
