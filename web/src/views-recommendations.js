// The recommendations panel: open cards first in priority order (critical, warning, normal;
// newest first within one), resolved cards greyed at the bottom; each card shows confidence,
// cause, impact, actions (expected impact, time to effect), affected streams (click: chart
// them) and related events (click: mark them); "Take action" on an open card.
(function attachRecommendationsView(global) {
  'use strict';
  const Marketsim = global.Marketsim || (global.Marketsim = {});
  const element = Marketsim.element;
  const format = Marketsim.format;

  const PRIORITY_RANK = { critical: 0, warning: 1, normal: 2 };

  /**
   * `options.onStreams(names)`, `options.onEvent(id)`, `options.onTakeAction(id, actionId)`
   * (returns a promise; the card waits for it), `options.readOnly` (reports: no buttons).
   */
  function RecommendationsView(container, options) {
    this.container = container;
    this.options = options || {};
    this.byId = new Map();
    this.chosenAction = new Map();
    this.pending = new Set();
    this.errors = new Map();
  }

  RecommendationsView.prototype.setAll = function setAll(recommendations) {
    this.byId = new Map(recommendations.map((recommendation) => [recommendation.id, recommendation]));
    this.render();
  };

  RecommendationsView.prototype.upsert = function upsert(recommendation) {
    this.byId.set(recommendation.id, recommendation);
    this.render();
  };

  function isResolved(recommendation) {
    return recommendation.status === 'resolved';
  }

  RecommendationsView.prototype.ordered = function ordered() {
    return Array.from(this.byId.values()).sort((a, b) => {
      if (isResolved(a) !== isResolved(b)) return isResolved(a) ? 1 : -1;
      if (isResolved(a)) return Date.parse(b.resolvedAt || b.timestamp) - Date.parse(a.resolvedAt || a.timestamp);
      const byPriority = (PRIORITY_RANK[a.priority] ?? 3) - (PRIORITY_RANK[b.priority] ?? 3);
      if (byPriority) return byPriority;
      return Date.parse(b.lastSeen || b.timestamp) - Date.parse(a.lastSeen || a.timestamp);
    });
  };

  RecommendationsView.prototype.render = function render() {
    // Keep keyboard focus on the same control across a re-render.
    const focused = document.activeElement;
    const focusKey = focused && this.container.contains(focused) ? focused.dataset.focusKey : null;
    const cards = this.ordered().map((recommendation) => this.card(recommendation));
    const open = cards.filter((card) => card.dataset.status === 'open').length;
    const summary = element('p', {
      class: 'recommendations-summary',
      text: this.byId.size === 0
        ? 'No recommendations yet: they appear when a stream is flagged.'
        : open + ' open · ' + (this.byId.size - open) + ' resolved',
    });
    this.container.replaceChildren(summary, ...cards);
    if (focusKey) {
      const again = this.container.querySelector('[data-focus-key="' + CSS.escape(focusKey) + '"]');
      if (again) again.focus();
    }
  };

  RecommendationsView.prototype.card = function card(recommendation) {
    const resolved = isResolved(recommendation);
    const id = recommendation.id;
    const actions = recommendation.actions || [];
    const chosen = this.chosenAction.get(id) || (actions[0] && actions[0].id);
    const actionItems = actions.map((action) => {
      const inputId = 'action-' + id + '-' + action.id;
      return element('li', { class: 'action' }, [
        resolved
          ? null
          : element('input', {
            type: 'radio',
            name: 'action-' + id,
            id: inputId,
            value: action.id,
            checked: action.id === chosen,
            dataset: { focusKey: inputId },
            onchange: () => this.chosenAction.set(id, action.id),
          }),
        element('label', { for: resolved ? null : inputId }, [
          element('strong', { text: action.label }),
          action.description ? element('span', { class: 'action-description', text: ' — ' + action.description }) : null,
        ]),
        element('div', { class: 'action-meta' }, [
          element('span', { text: 'Expected: ' + (action.expectedImpact || '–') }),
          element('span', { class: 'nowrap', text: 'Takes effect: ' + (action.timeToEffect || '–') }),
        ]),
      ]);
    });
    const resolution = recommendation.resolution;
    const takenLabel = resolution && resolution.actionId
      ? (actions.find((action) => action.id === resolution.actionId) || {}).label
      : null;
    const footer = resolved
      ? element('p', {
        class: 'resolution',
        text: 'Resolved ' + (recommendation.resolvedAt ? format.dateTime(Date.parse(recommendation.resolvedAt)) : '') +
          (takenLabel ? ' — action taken: ' + takenLabel : resolution && resolution.note ? ' — ' + resolution.note : ''),
      })
      : this.options.readOnly
        ? null
        : element('div', { class: 'take-action-row' }, [
          element('button', {
            type: 'button',
            class: 'take-action',
            disabled: this.pending.has(id),
            dataset: { focusKey: 'take-' + id },
            onclick: () => this.takeAction(id),
          }, [this.pending.has(id) ? 'Taking action…' : 'Take action']),
          this.errors.has(id) ? element('span', { class: 'error', role: 'alert', text: this.errors.get(id) }) : null,
        ]);
    const streams = recommendation.affectedStreams || [];
    const events = recommendation.relatedEvents || [];
    const body = [
      element('p', { class: 'description', text: recommendation.description }),
      element('dl', {}, [
        element('dt', { text: 'Cause' }), element('dd', { text: recommendation.cause || '–' }),
        element('dt', { text: 'Impact' }), element('dd', { text: recommendation.impact || '–' }),
      ]),
      streams.length
        ? element('div', { class: 'chips' }, [
          element('button', {
            type: 'button',
            class: 'chip chart-all',
            title: 'Chart the affected streams',
            onclick: () => this.options.onStreams && this.options.onStreams(streams),
          }, ['Chart all']),
          ...streams.map((name) => element('button', {
            type: 'button',
            class: 'chip stream-chip',
            title: 'Chart ' + name,
            onclick: () => this.options.onStreams && this.options.onStreams([name]),
          }, [name])),
        ])
        : null,
      events.length
        ? element('div', { class: 'chips' }, [
          element('span', { class: 'chips-caption', text: 'Related events: ' }),
          ...events.map((eventId) => element('button', {
            type: 'button',
            class: 'chip event-chip',
            title: 'Mark on the chart',
            onclick: () => this.options.onEvent && this.options.onEvent(eventId),
          }, [this.options.eventTitle ? this.options.eventTitle(eventId) : eventId])),
        ])
        : null,
      actions.length ? element('ol', { class: 'actions' }, actionItems) : null,
    ];
    return element('article', {
      class: 'recommendation severity-' + recommendation.priority + (resolved ? ' resolved' : ''),
      dataset: { id: id, status: resolved ? 'resolved' : 'open', severity: recommendation.priority },
      'aria-label': recommendation.priority + ': ' + recommendation.title,
    }, [
      element('header', {}, [
        element('span', { class: 'badge priority-' + recommendation.priority, text: recommendation.priority }),
        element('h3', { text: recommendation.title }),
        element('span', { class: 'confidence', title: 'Confidence', text: recommendation.confidence + '% confidence' }),
      ]),
      element('p', { class: 'rec-time nowrap', text: 'Since ' + format.dateTime(Date.parse(recommendation.timestamp)) +
        (recommendation.lastSeen && recommendation.lastSeen !== recommendation.timestamp ? ' · last seen ' + format.dateTime(Date.parse(recommendation.lastSeen)) : '') }),
      // A resolved card folds its details away: the open ones are what needs reading.
      resolved ? element('details', {}, [element('summary', { text: 'Details' })].concat(body)) : body,
      footer,
    ].flat());
  };

  RecommendationsView.prototype.takeAction = function takeAction(id) {
    const recommendation = this.byId.get(id);
    if (!recommendation || !this.options.onTakeAction) return;
    const actionId = this.chosenAction.get(id) || (recommendation.actions[0] && recommendation.actions[0].id);
    if (!actionId) return;
    this.pending.add(id);
    this.errors.delete(id);
    this.render();
    Promise.resolve(this.options.onTakeAction(id, actionId))
      .then((resolvedRecommendation) => {
        this.pending.delete(id);
        if (resolvedRecommendation) this.byId.set(id, resolvedRecommendation);
        this.render();
      })
      .catch((error) => {
        this.pending.delete(id);
        this.errors.set(id, String(error && error.message ? error.message : error));
        this.render();
      });
  };

  Marketsim.RecommendationsView = RecommendationsView;
})(typeof window !== 'undefined' ? window : globalThis);
