// The admin page's behaviour (/admin): it reads the scenario and event libraries once, polls
// the live state every second, and turns the operator's clicks into REST calls
// (POST /api/simulation/{scenario,stop,reset,control,events}). Every refusal the server sends
// (a JSON body with a `message`) and every network failure is shown in #status; nothing fails
// silently. A plain browser script (no framework, no bundler): the page is a handful of forms,
// and the server embeds this file as it is.
'use strict';

/** How often the live state is fetched. One second keeps the phase badges current without load. */
const STATE_POLL_INTERVAL_MS = 1000;
/** Scenario ids start `mod_`, event effects `evt_` (session ids, assigned in order). */
const SCENARIO_INSTANCE_PREFIX = 'mod_';

const utcDateTimeFormat = new Intl.DateTimeFormat('en-GB', {
  timeZone: 'UTC',
  weekday: 'short',
  day: 'numeric',
  month: 'short',
  year: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
});

/** Elements looked up once; the page's markup is static apart from the lists below. */
const elements = {
  status: document.getElementById('status'),
  virtualNow: document.getElementById('virtual-now'),
  currentSpeed: document.getElementById('current-speed'),
  engineState: document.getElementById('engine-state'),
  scenarioCards: document.getElementById('scenario-cards'),
  activeScenarios: document.getElementById('active-scenarios'),
  activeEmpty: document.getElementById('active-empty'),
  activeEffects: document.getElementById('active-effects'),
  effectsEmpty: document.getElementById('effects-empty'),
  speedButtons: Array.from(document.querySelectorAll('button[data-speed]')),
  speedForm: document.getElementById('speed-form'),
  pauseButton: document.getElementById('pause'),
  resumeButton: document.getElementById('resume'),
  resetButton: document.getElementById('reset'),
  resetDialog: document.getElementById('reset-dialog'),
  injectForm: document.getElementById('inject-form'),
  injectEventSelect: document.getElementById('inject-event-id'),
  injectEventDescription: document.getElementById('inject-event-description'),
  streamNames: document.getElementById('stream-names'),
};

/** The latest state from the server, or null before the first answer. */
let latestState = null;
/** Library events by id, for the description under the select. */
const libraryEventsById = new Map();
/** Library scenario names by id, for the active list and messages. */
const scenarioNamesById = new Map();
/** Whether the last state poll failed, so the failure is announced once and its end too. */
let stateUnreachable = false;

// ---------------------------------------------------------------------------------------------
// Talking to the server
// ---------------------------------------------------------------------------------------------

/** A refusal or failure of an API call, with the sentence to show the operator. */
class ApiFailure extends Error {}

/**
 * Calls the API and returns the parsed JSON answer. A 4xx/5xx answer becomes an ApiFailure
 * carrying the server's own message (and the valid ids or the field, when it names them); a
 * network error becomes one saying the server cannot be reached.
 */
async function callApi(method, path, body) {
  let response;
  try {
    const init = {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    };
    // Requests carry the server's token when it has one (asked for on the first 401): changes
    // need the admin token, and reads the read token when the server has one.
    response = await window.marketsimToken.fetchWithToken(path, init);
  } catch (networkError) {
    throw new ApiFailure(`cannot reach the server (${networkError.message})`);
  }
  const text = await response.text();
  let answer = null;
  try {
    answer = text ? JSON.parse(text) : null;
  } catch {
    answer = null;
  }
  if (!response.ok) {
    throw new ApiFailure(describeRefusal(response.status, answer, text));
  }
  return answer;
}

/** The sentence for an error body `{error, message, field?, valid?}`. */
function describeRefusal(statusCode, answer, rawText) {
  if (!answer || typeof answer.message !== 'string') {
    return `the server answered ${statusCode}: ${rawText.slice(0, 200) || '(no body)'}`;
  }
  let sentence = `${answer.message} (${statusCode} ${answer.error || 'error'})`;
  if (answer.field) sentence += `; field: ${answer.field}`;
  return sentence;
}

/** Shows a message in the status line; errors stay until the next message replaces them. */
function showStatus(kind, message) {
  elements.status.dataset.kind = kind;
  elements.status.textContent = message;
}

/**
 * Runs one operator action: disables its control while the request is in flight, reports
 * success or the server's refusal in #status, and refreshes the state at once so the lists do
 * not wait for the next poll.
 */
async function runAction(control, description, action) {
  if (control) control.disabled = true;
  showStatus('busy', `${description}…`);
  try {
    const successMessage = await action();
    showStatus('ok', successMessage);
  } catch (failure) {
    const reason = failure instanceof ApiFailure ? failure.message : String(failure);
    showStatus('error', `${description} failed: ${reason}`);
  } finally {
    if (control) control.disabled = false;
    refreshState();
  }
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

function formatInstant(isoText) {
  const date = new Date(isoText);
  if (Number.isNaN(date.getTime())) return isoText;
  return `${utcDateTimeFormat.format(date)} UTC`;
}

function formatSpeed(speed) {
  return `${Number(speed).toLocaleString('en-US', { maximumFractionDigits: 2 })}×`;
}

/** `document.createElement` with attributes, text and children in one call. */
function createElement(tag, properties = {}, children = []) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(properties)) {
    if (name === 'text') element.textContent = value;
    else if (name === 'className') element.className = value;
    else if (name.startsWith('data-') || name.startsWith('aria-') || name === 'type' || name === 'title') {
      element.setAttribute(name, value);
    } else element[name] = value;
  }
  for (const child of children) element.append(child);
  return element;
}

// ---------------------------------------------------------------------------------------------
// Scenario library
// ---------------------------------------------------------------------------------------------

/** Splits a scenario's `touches` into the streams it moves and the levers (`lever:demand`). */
function splitTouches(touches) {
  const streams = [];
  const levers = [];
  for (const name of touches) {
    if (name.startsWith('lever:')) levers.push(name.slice('lever:'.length).replaceAll('_', ' '));
    else streams.push(name);
  }
  return { streams, levers };
}

/** A stream name that may wrap after its dots (`platform.deploy.<wbr>completed`), never mid-word. */
function breakableStreamName(name) {
  const parts = [];
  name.split('.').forEach((segment, index, segments) => {
    parts.push(index < segments.length - 1 ? `${segment}.` : segment);
    if (index < segments.length - 1) parts.push(document.createElement('wbr'));
  });
  return parts;
}

function renderScenarioCard(scenario) {
  const { streams, levers } = splitTouches(scenario.touches || []);
  const affected = createElement('dl', { className: 'scenario-facts' }, [
    createElement('dt', { text: 'Duration' }),
    createElement('dd', { text: scenario.duration }),
    createElement('dt', { text: 'Streams' }),
    createElement('dd', {}, streams.length
      ? streams.map((name) => createElement('code', { className: 'chip' }, breakableStreamName(name)))
      : [createElement('span', { className: 'muted', text: 'none directly' })]),
    createElement('dt', { text: 'Levers' }),
    createElement('dd', {}, levers.length
      ? levers.map((name) => createElement('span', { className: 'chip lever', text: name }))
      : [createElement('span', { className: 'muted', text: 'none' })]),
  ]);
  const headingId = `scenario-${scenario.id}-name`;
  const activateButton = createElement('button', {
    type: 'button',
    className: 'activate primary',
    text: 'Activate',
    'aria-describedby': headingId,
  });
  activateButton.addEventListener('click', () => activateScenario(scenario, activateButton));
  return createElement('article', {
    className: 'scenario-card',
    'data-scenario-id': scenario.id,
    'aria-labelledby': headingId,
  }, [
    createElement('h3', { id: headingId, text: scenario.name }),
    createElement('code', { className: 'scenario-id', text: scenario.id }),
    createElement('p', { className: 'scenario-description', text: scenario.description }),
    affected,
    activateButton,
  ]);
}

async function loadScenarioLibrary() {
  const answer = await callApi('GET', '/api/simulation/scenarios');
  const cards = [];
  const sourceStreams = new Set();
  for (const scenario of answer.scenarios) {
    scenarioNamesById.set(scenario.id, scenario.name);
    cards.push(renderScenarioCard(scenario));
    for (const stream of splitTouches(scenario.touches || []).streams) sourceStreams.add(stream);
  }
  // The streams the library's scenarios change directly are the ones a custom effect may
  // name; the others are emitted by the flows and move only through a lever.
  document.getElementById('effect-stream-options').replaceChildren(...[...sourceStreams].sort().map((stream) =>
    createElement('option', { value: `stream:${stream}`, text: stream })));
  elements.scenarioCards.replaceChildren(...cards);
  elements.scenarioCards.setAttribute('aria-busy', 'false');
  return answer.scenarios;
}

function activateScenario(scenario, button) {
  runAction(button, `Activating ${scenario.id}`, async () => {
    const answer = await callApi('POST', '/api/simulation/scenario', { scenarioId: scenario.id });
    const activated = answer.scenario;
    return `${scenario.name} is ${activated.status} (${activated.id || 'no instance'}) from ` +
      `${formatInstant(activated.startTime)} for ${activated.duration}.`;
  });
}

// ---------------------------------------------------------------------------------------------
// Live state: clock, pace, scenarios and effects in effect
// ---------------------------------------------------------------------------------------------

/**
 * Brings a list in line with `items` without rebuilding what is already there, so a focused
 * Stop button keeps keyboard focus across polls. Each item is keyed by its session id.
 */
function reconcileList(listElement, items, createItem, updateItem) {
  const existing = new Map();
  for (const child of listElement.children) existing.set(child.dataset.instanceId, child);
  const wanted = [];
  for (const item of items) {
    let element = existing.get(item.id);
    if (!element) element = createItem(item);
    updateItem(element, item);
    wanted.push(element);
    existing.delete(item.id);
  }
  for (const stale of existing.values()) stale.remove();
  wanted.forEach((element, index) => {
    if (listElement.children[index] !== element) listElement.insertBefore(element, listElement.children[index] || null);
  });
}

function createActiveScenario(instance) {
  const stopButton = createElement('button', { type: 'button', className: 'stop', text: 'Stop' });
  stopButton.addEventListener('click', () => {
    const scenarioId = stopButton.closest('.active-scenario').dataset.scenarioId;
    runAction(stopButton, `Stopping ${scenarioId}`, async () => {
      const answer = await callApi('POST', '/api/simulation/stop', { scenarioId });
      return `${answer.stopped.join(', ')} is settling back to the baseline.`;
    });
  });
  return createElement('li', { className: 'active-scenario', 'data-instance-id': instance.id }, [
    createElement('div', { className: 'active-heading' }, [
      createElement('strong', { className: 'active-name' }),
      createElement('span', { className: 'phase' }),
    ]),
    createElement('p', { className: 'active-window' }),
    stopButton,
  ]);
}

/** Phase names as the operator reads them; the raw phase stays in data-phase. */
const PHASE_LABELS = {
  pending: 'pending',
  active: 'active',
  settling: 'settling',
  settled: 'settled',
};

function updateActiveScenario(element, instance) {
  element.dataset.scenarioId = instance.type;
  element.dataset.phase = instance.status;
  element.querySelector('.active-name').textContent =
    `${scenarioNamesById.get(instance.type) || instance.name || instance.type} · ${instance.id}`;
  const phase = element.querySelector('.phase');
  phase.textContent = PHASE_LABELS[instance.status] || instance.status;
  phase.dataset.phase = instance.status;
  element.querySelector('.active-window').textContent = instance.status === 'settling'
    ? `Settling until ${formatInstant(instance.settledAt)}`
    : `Since ${formatInstant(instance.startTime)}; active until ${formatInstant(instance.activeUntil)}, settled by ${formatInstant(instance.settledAt)}`;
  const stopButton = element.querySelector('button.stop');
  // Only an active scenario can be stopped; a settling one is already on its way out, and the
  // server would refuse (409). The button stays, disabled, so the layout does not jump.
  const stoppable = instance.status === 'active' || instance.status === 'pending';
  stopButton.disabled = !stoppable;
  stopButton.title = stoppable ? 'Start settling back to the baseline' : 'Already settling';
  stopButton.setAttribute('aria-label', `Stop ${instance.type}`);
}

function createActiveEffect(effect) {
  return createElement('li', { className: 'active-effect', 'data-instance-id': effect.id }, [
    createElement('span', { className: 'effect-name' }),
    createElement('span', { className: 'phase' }),
  ]);
}

function updateActiveEffect(element, effect) {
  element.dataset.eventId = effect.type;
  element.dataset.phase = effect.status;
  element.querySelector('.effect-name').textContent = `${effect.name} · ${effect.id}`;
  const phase = element.querySelector('.phase');
  phase.textContent = effect.status;
  phase.dataset.phase = effect.status;
  element.title = `${formatInstant(effect.startTime)} → settled by ${formatInstant(effect.settledAt)}`;
}

function renderState(state) {
  latestState = state;
  elements.virtualNow.textContent = formatInstant(state.now);
  elements.currentSpeed.textContent = formatSpeed(state.speed);
  const engineText = state.paused ? 'paused' : state.lagMs > 1000 ? `running, ${Math.round(state.lagMs / 1000)} s behind` : 'running';
  elements.engineState.textContent = engineText;
  elements.engineState.dataset.paused = String(state.paused);
  for (const button of elements.speedButtons) {
    button.setAttribute('aria-pressed', String(Number(button.dataset.speed) === state.speed));
  }
  elements.pauseButton.setAttribute('aria-pressed', String(state.paused));
  elements.resumeButton.setAttribute('aria-pressed', String(!state.paused));

  const scenarios = state.scenarios.filter((item) => item.id.startsWith(SCENARIO_INSTANCE_PREFIX));
  const effects = state.scenarios.filter((item) => !item.id.startsWith(SCENARIO_INSTANCE_PREFIX));
  reconcileList(elements.activeScenarios, scenarios, createActiveScenario, updateActiveScenario);
  reconcileList(elements.activeEffects, effects, createActiveEffect, updateActiveEffect);
  elements.activeEmpty.hidden = scenarios.length > 0;
  elements.effectsEmpty.hidden = effects.length > 0;
  document.body.dataset.activeScenarios = String(scenarios.length);
}

/** Timer of the next poll; a refresh after an action replaces it rather than adding one. */
let nextPollTimer = 0;

async function refreshState() {
  clearTimeout(nextPollTimer);
  try {
    renderState(await callApi('GET', '/api/simulation/state'));
    if (stateUnreachable) {
      stateUnreachable = false;
      showStatus('ok', 'In contact with the server again.');
    }
  } catch (failure) {
    if (!stateUnreachable) {
      stateUnreachable = true;
      showStatus('error', `Cannot read the simulation's state: ${failure.message}. Retrying every second.`);
    }
  } finally {
    nextPollTimer = setTimeout(refreshState, STATE_POLL_INTERVAL_MS);
  }
}

// ---------------------------------------------------------------------------------------------
// Pace, reset
// ---------------------------------------------------------------------------------------------

function setSpeed(speed, control) {
  runAction(control, `Setting the speed to ${formatSpeed(speed)}`, async () => {
    const state = await callApi('POST', '/api/simulation/control', { speed });
    return `Speed is ${formatSpeed(state.speed)}${state.paused ? ' (paused)' : ''}.`;
  });
}

function setPaused(paused, control) {
  const action = paused ? 'pause' : 'resume';
  runAction(control, paused ? 'Pausing' : 'Resuming', async () => {
    const state = await callApi('POST', '/api/simulation/control', { action });
    return state.paused ? `Paused at ${formatInstant(state.now)}.` : `Running at ${formatSpeed(state.speed)}.`;
  });
}

function wirePaceControls() {
  for (const button of elements.speedButtons) {
    button.addEventListener('click', () => setSpeed(Number(button.dataset.speed), button));
  }
  elements.speedForm.addEventListener('submit', (submitEvent) => {
    submitEvent.preventDefault();
    const input = elements.speedForm.elements.speed;
    const speed = Number(input.value);
    if (!input.value || !Number.isFinite(speed)) {
      showStatus('error', 'Give the speed as a number of virtual seconds per wall second.');
      return;
    }
    setSpeed(speed, elements.speedForm.querySelector('button'));
  });
  elements.pauseButton.addEventListener('click', () => setPaused(true, elements.pauseButton));
  elements.resumeButton.addEventListener('click', () => setPaused(false, elements.resumeButton));
}

function wireReset() {
  elements.resetButton.addEventListener('click', () => elements.resetDialog.showModal());
  elements.resetDialog.addEventListener('close', () => {
    if (elements.resetDialog.returnValue !== 'confirm') return;
    elements.resetDialog.returnValue = '';
    runAction(elements.resetButton, 'Resetting', async () => {
      const reply = await callApi('POST', '/api/simulation/reset');
      return `Reset at ${formatInstant(reply.at)}: every scenario and event effect is cancelled.`;
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Injecting external events
// ---------------------------------------------------------------------------------------------

async function loadEventLibrary() {
  const answer = await callApi('GET', '/api/simulation/event-library');
  const groups = new Map();
  const streamNames = new Set();
  for (const template of answer.events) {
    libraryEventsById.set(template.id, template);
    if (!groups.has(template.type)) groups.set(template.type, []);
    groups.get(template.type).push(template);
    for (const stream of template.expectedStreams) streamNames.add(stream);
  }
  const optionGroups = [];
  for (const [type, templates] of [...groups.entries()].sort()) {
    optionGroups.push(createElement('optgroup', { label: type },
      templates.map((template) => createElement('option', {
        value: template.id,
        text: `${template.title}${template.hasEffect ? '' : ' (no effect)'}`,
      }))));
  }
  elements.injectEventSelect.replaceChildren(...optionGroups);
  elements.streamNames.replaceChildren(...[...streamNames].sort().map((name) => createElement('option', { value: name })));
  describeSelectedEvent();
}

function describeSelectedEvent() {
  const template = libraryEventsById.get(elements.injectEventSelect.value);
  elements.injectEventDescription.textContent = template
    ? `${template.description} Severity ${template.severity}; people expect it to move ` +
      `${template.expectedStreams.join(', ') || 'nothing in particular'}.` +
      (template.hasEffect ? '' : ' It has no real effect (a red herring).')
    : '';
}

/** A fresh id for a custom event, so injecting twice does not redefine one (409). */
function freshCustomEventId() {
  return `custom-${Date.now().toString(36)}`;
}

/** The inline template of the custom fields, in the event library's shape. */
function customEventTemplate(form) {
  const field = (name) => form.elements[name].value.trim();
  const expectedStreams = field('customExpectedStreams').split(',').map((name) => name.trim()).filter(Boolean);
  const template = {
    id: field('customId'),
    type: field('customType'),
    title: field('customTitle') || field('customId'),
    description: field('customDescription') || 'Injected from the admin page.',
    severity: field('customSeverity'),
    expectedImpact: {
      streams: expectedStreams,
      direction: field('customDirection'),
      magnitude: field('customMagnitude'),
      duration: field('customExpectedDuration'),
    },
    icon: '📌',
  };
  if (field('effectMultiplier') !== '') {
    const multiplier = Number(field('effectMultiplier'));
    const target = field('effectTarget');
    template.effect = { duration: field('effectDuration'), settlement: field('effectSettlement') };
    if (target.startsWith('stream:')) {
      template.effect.streams = { [target.slice('stream:'.length)]: { multiplier } };
    } else {
      const lever = target.slice('lever:'.length);
      // Demand and supply are per subject; the form moves every subject alike.
      const perSubject = lever === 'demand' || lever === 'supply';
      template.effect.levers = { [lever]: perSubject ? { all: multiplier } : multiplier };
    }
  }
  return template;
}

/**
 * The `at` of a backdated injection: the offset before the virtual now of the latest state.
 * Virtual time moves on while the request travels, so the instant is safely in the past.
 */
function backdatedInstant(form) {
  const amount = Number(form.elements.backdateAmount.value);
  const unitMs = Number(form.elements.backdateUnit.value);
  if (!Number.isFinite(amount) || amount < 0) throw new ApiFailure('the backdating offset must be a number ≥ 0');
  if (!latestState) throw new ApiFailure('the virtual time is not known yet; try again in a second');
  const atMs = Date.parse(latestState.now) - amount * unitMs;
  return new Date(atMs).toISOString();
}

function wireInjectForm() {
  const form = elements.injectForm;
  const showSource = () => {
    const source = form.elements.source.value;
    for (const block of form.querySelectorAll('[data-source]')) block.hidden = block.dataset.source !== source;
  };
  for (const radio of form.elements.source) radio.addEventListener('change', showSource);
  elements.injectEventSelect.addEventListener('change', describeSelectedEvent);
  form.elements.customId.value = freshCustomEventId();
  form.addEventListener('submit', (submitEvent) => {
    submitEvent.preventDefault();
    const source = form.elements.source.value;
    const submitButton = form.querySelector('button[type="submit"]');
    const what = source === 'library' ? form.elements.eventId.value : form.elements.customId.value.trim();
    runAction(submitButton, `Injecting ${what || 'the event'}`, async () => {
      const request = source === 'library' ? { eventId: form.elements.eventId.value } : { event: customEventTemplate(form) };
      if (form.elements.redHerring.checked) request.redHerring = true;
      if (form.elements.when.value === 'backdated') request.at = backdatedInstant(form);
      const reply = await callApi('POST', '/api/simulation/events', request);
      if (source === 'custom') form.elements.customId.value = freshCustomEventId();
      const ids = reply.items.map((item) => item.id).join(', ') || 'no item';
      const rewritten = reply.rewrittenBuckets ? `; ${reply.rewrittenBuckets.length} past buckets re-simulated` : '';
      return `Injected ${what} (${ids}) at ${formatInstant(reply.at)}${rewritten}.`;
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------

async function start() {
  wirePaceControls();
  wireReset();
  wireInjectForm();
  const loaded = await Promise.allSettled([loadScenarioLibrary(), loadEventLibrary(), refreshState()]);
  const failures = loaded.filter((outcome) => outcome.status === 'rejected').map((outcome) => outcome.reason.message);
  if (failures.length) {
    showStatus('error', `Could not load the page's data: ${failures.join('; ')}`);
  } else if (!stateUnreachable) {
    showStatus('info', 'Ready. Activate a scenario, change the pace or inject an event; the dashboard shows the effect.');
  }
  document.body.dataset.ready = 'true';
}

start();
