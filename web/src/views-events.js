// The external-events timeline: newest first, filters by type and expected impact, a click
// marks the event on the chart, the source link where the event has one, and the streams that
// moved in the hours after it (from the data, not from the event's own claim).
(function attachEventsView(global) {
  'use strict';
  const Marketsim = global.Marketsim || (global.Marketsim = {});
  const element = Marketsim.element;
  const format = Marketsim.format;

  const MOVED_WINDOW_MS = 6 * 3600 * 1000;
  const MOVED_MIN_SIGMA = 1;
  const MOVED_LIMIT = 3;
  const IMPACTS = ['high', 'medium', 'low'];

  /** `options.onMark(id)`, `options.onStream(name)`, `options.markedId()`. */
  function EventsView(container, store, options) {
    this.container = container;
    this.store = store;
    this.options = options || {};
    this.typeFilter = 'all';
    this.impactFilter = 'all';
    this.knownTypes = [];
    this.typeSelect = element('select', {
      'aria-label': 'Event type',
      onchange: (event) => {
        this.typeFilter = event.target.value;
        this.render();
      },
    });
    const impactSelect = element(
      'select',
      {
        'aria-label': 'Expected impact',
        onchange: (event) => {
          this.impactFilter = event.target.value;
          this.render();
        },
      },
      [element('option', { value: 'all', text: 'any impact' })].concat(
        IMPACTS.map((impact) => element('option', { value: impact, text: impact + ' impact' })),
      ),
    );
    this.list = element('ol', { class: 'events-list', 'aria-live': 'polite' });
    this.count = element('span', { class: 'events-count' });
    container.replaceChildren(
      element('div', { class: 'events-filters' }, [
        element('label', {}, ['Type ', this.typeSelect]),
        element('label', {}, ['Impact ', impactSelect]),
        this.count,
      ]),
      this.list,
    );
    this.render();
  }

  EventsView.prototype.refreshTypes = function refreshTypes(events) {
    const types = Array.from(new Set(events.map((event) => event.type).filter(Boolean))).sort();
    if (types.join() === this.knownTypes.join()) return;
    this.knownTypes = types;
    this.typeSelect.replaceChildren(
      element('option', { value: 'all', text: 'all types' }),
      ...types.map((type) => element('option', { value: type, text: type, selected: type === this.typeFilter })),
    );
  };

  EventsView.prototype.render = function render() {
    const events = this.store.eventsInOrder().reverse();
    this.refreshTypes(events);
    const shown = events.filter((event) => {
      const magnitude = event.expectedImpact && event.expectedImpact.magnitude;
      return (this.typeFilter === 'all' || event.type === this.typeFilter) &&
        (this.impactFilter === 'all' || magnitude === this.impactFilter);
    });
    this.count.textContent = shown.length + ' of ' + events.length + ' events';
    const markedId = this.options.markedId ? this.options.markedId() : null;
    const items = shown.map((event) => this.item(event, event.id === markedId));
    if (items.length === 0) items.push(element('li', { class: 'empty', text: 'No events match the filters.' }));
    this.list.replaceChildren(...items);
  };

  EventsView.prototype.item = function item(event, marked) {
    const impact = event.expectedImpact || {};
    const moved = this.store.movedAfter(event.timeMs, MOVED_WINDOW_MS, MOVED_MIN_SIGMA, MOVED_LIMIT);
    const streamsMoved = moved.length
      ? element('div', { class: 'moved' }, [
        element('span', { class: 'moved-caption', text: 'Moved in the 6 h after: ' }),
        ...moved.map((entry) =>
          element('button', {
            type: 'button',
            class: 'chip stream-chip',
            title: 'Chart ' + entry.name,
            onclick: (clickEvent) => {
              clickEvent.stopPropagation();
              if (this.options.onStream) this.options.onStream(entry.name);
            },
          }, [entry.name + ' ' + format.sigma(entry.shiftSigma)]),
        ),
      ])
      : element('div', { class: 'moved quiet', text: event.timeMs + MOVED_WINDOW_MS > this.store.newestTimeMs ? 'Too recent to tell what moved.' : 'No stream moved by 1σ or more in the 6 h after.' });
    return element('li', { class: 'event' + (marked ? ' marked' : ''), dataset: { id: event.id, type: event.type || '' } }, [
      element('button', {
        type: 'button',
        class: 'event-mark',
        'aria-pressed': marked ? 'true' : 'false',
        title: 'Mark on the chart',
        onclick: () => {
          if (this.options.onMark) this.options.onMark(event.id);
        },
      }, [
        element('time', { datetime: event.timestamp, class: 'nowrap', text: format.dateTime(event.timeMs) }),
        element('span', { class: 'event-title' }, [(event.icon ? event.icon + ' ' : '') + event.title]),
      ]),
      element('div', { class: 'event-meta' }, [
        element('span', { class: 'badge', text: event.type || 'event' }),
        impact.magnitude ? element('span', { class: 'badge impact-' + impact.magnitude, text: impact.magnitude + ' impact' }) : null,
        impact.direction ? element('span', { class: 'badge', text: impact.direction }) : null,
        event.externalLink
          ? element('a', { href: event.externalLink, target: '_blank', rel: 'noopener noreferrer', text: 'source ↗' })
          : null,
      ]),
      event.description ? element('p', { class: 'event-description', text: event.description }) : null,
      streamsMoved,
    ]);
  };

  Marketsim.EventsView = EventsView;
})(typeof window !== 'undefined' ? window : globalThis);
