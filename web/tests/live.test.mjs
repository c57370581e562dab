// Browser tests of the live pages, /admin and /dashboard, against a real `marketsim serve` at
// 600× in Debian's Chromium: the admin page drives the simulation; the dashboard loads history,
// updates over the WebSocket, shows a scenario's anomalies and recommendation, resolves it for
// every open page, survives a server restart, and keeps its memory bounded.
//
// Run by `cargo xtask e2e`, which starts the server and passes:
//   MARKETSIM_SERVE_URL   the server's base URL (http://127.0.0.1:PORT)
//   MARKETSIM_SERVE_PID   its process id (the restart test kills it)
//   MARKETSIM_BIN         the marketsim binary, and MARKETSIM_SERVE_ARGS its flags separated by
//                         tabs (the restart test starts a new server with them on the same port)
// Optional:
//   MARKETSIM_E2E_SOAK_SECONDS  how long the memory test watches the dashboard (default 60; the
//                               issue's full measurement is 600, ten minutes at 600×)
//   MARKETSIM_WEB_DIR           serve /admin, /dashboard and /assets/* from this folder (e.g.
//                               web/src) instead of the binary's embedded copies: iterate on the
//                               pages without rebuilding the binary
// By hand, against a server you started:
//   MARKETSIM_SERVE_URL=http://127.0.0.1:8080 node --test web/tests/live.test.mjs
//
// The pages' DOM contracts (documented at the top of web/src/admin.html and dashboard.html)
// are what is checked; screenshots of both pages at 1,920 and 768 px go to target/e2e/.
// Timings (time to interactive, heap series) are printed, not asserted, but for one bound:
// the dashboard's heap must not triple while it runs, since unbounded growth is the bug.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './chromium.mjs';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const outputDir = path.resolve(projectRoot, process.env.MARKETSIM_E2E_OUT || 'target/e2e');
const initialServeUrl = process.env.MARKETSIM_SERVE_URL?.replace(/\/$/, '');
const initialServePid = Number(process.env.MARKETSIM_SERVE_PID || 0);
const marketsimBinary = process.env.MARKETSIM_BIN;
const serveFlags = (process.env.MARKETSIM_SERVE_ARGS || '').split('\t').filter(Boolean);
/** The server's admin token, when its flags set one: changes need it, and the pages ask for it. */
const adminToken = serveFlags.includes('--admin-token') ? serveFlags[serveFlags.indexOf('--admin-token') + 1] : null;
const soakSeconds = Number(process.env.MARKETSIM_E2E_SOAK_SECONDS || 60);
const localWebDir = process.env.MARKETSIM_WEB_DIR
  ? path.resolve(projectRoot, process.env.MARKETSIM_WEB_DIR)
  : null;

const skipWithoutServer = initialServeUrl
  ? false
  : 'MARKETSIM_SERVE_URL is not set (cargo xtask e2e starts a server and sets it)';

/**
 * Whether /dashboard is still the placeholder that stood in for it while it was being built
 * (issue 12): then the dashboard tests are skipped, saying so, rather than failing. Only that
 * exact placeholder counts; any other page is tested.
 */
async function dashboardIsPlaceholder() {
  if (!initialServeUrl) return false;
  const localPage = localWebDir && path.join(localWebDir, 'dashboard.html');
  const html = localPage && fs.existsSync(localPage)
    ? fs.readFileSync(localPage, 'utf8')
    : await fetch(`${initialServeUrl}/dashboard`).then((response) => response.text()).catch(() => '');
  return html.includes('Being built (issue 12)');
}
const skipWithoutDashboard = skipWithoutServer ||
  ((await dashboardIsPlaceholder()) ? '/dashboard is still the placeholder page' : false);
const skipWithoutRestart = skipWithoutDashboard ||
  (initialServePid && marketsimBinary ? false : 'MARKETSIM_SERVE_PID or MARKETSIM_BIN is not set');

const expectedStreamCount = 50;
const pageReadyTimeoutMs = 30_000;
const interactiveTargetMs = 1000;
const desktopViewport = { width: 1920, height: 1080 };
const tabletViewport = { width: 768, height: 1024 };
/** The heap may grow while caches fill; tripling means it grows without bound. */
const heapGrowthFactorMax = 3;

/** The server the tests talk to; the restart test replaces it with one it started itself. */
const server = { url: initialServeUrl, pid: initialServePid, child: null };

let browser;

before(async () => {
  if (skipWithoutServer) return;
  fs.mkdirSync(outputDir, { recursive: true });
  browser = await launchChromium([
    // performance.memory reports real (unbucketed) sizes only with this flag.
    '--enable-precise-memory-info',
    // A page the test fulfils from MARKETSIM_WEB_DIR has no server address, so Chromium
    // would block its WebSocket to 127.0.0.1 as a local-network request; pages the server
    // itself sends are tested with the checks on.
    ...(localWebDir ? ['--disable-features=LocalNetworkAccessChecks'] : []),
  ]);
});

after(async () => {
  await browser?.close();
  if (server.child) await stopProcess(server.child.pid, server.child);
});

// ---------------------------------------------------------------------------------------------
// Helpers: the API, pages, waiting
// ---------------------------------------------------------------------------------------------

/** Calls the server's API from Node and returns the JSON answer; a refusal fails the test. */
async function api(method, route, body) {
  const headers = body === undefined ? {} : { 'content-type': 'application/json' };
  if (adminToken && method !== 'GET') headers.authorization = `Bearer ${adminToken}`;
  const response = await fetch(`${server.url}${route}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${route} answered ${response.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Scenario instances (`mod_…`) in the live state, leaving out event effects (`evt_…`). */
async function activeScenarioInstances() {
  const state = await api('GET', '/api/simulation/state');
  return state.scenarios.filter((item) => item.id.startsWith('mod_'));
}

const contentTypes = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
};

/** With MARKETSIM_WEB_DIR, pages and their own assets come from that folder (see the top). */
async function serveLocalWebFiles(context) {
  if (!localWebDir) return;
  await context.route(
    (url) => url.pathname === '/admin' || url.pathname === '/dashboard' || url.pathname.startsWith('/assets/'),
    async (route) => {
      const { pathname } = new URL(route.request().url());
      const name = pathname.startsWith('/assets/') ? pathname.slice('/assets/'.length) : `${pathname.slice(1)}.html`;
      const file = path.join(localWebDir, name);
      if (!fs.existsSync(file)) return route.continue();
      return route.fulfill({
        status: 200,
        contentType: contentTypes[path.extname(file)] || 'application/octet-stream',
        body: fs.readFileSync(file),
      });
    },
  );
}

/**
 * Opens a page of the server in a fresh browser context (a separate user: no shared storage)
 * and records console errors and uncaught exceptions. `expectedConsoleErrors` are patterns of
 * errors a test provokes on purpose (Chromium logs every 4xx answer of a fetch as one).
 */
async function openPage(route, { viewport = desktopViewport, expectedConsoleErrors = [], baseUrl = null, readToken = null } = {}) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, acceptDownloads: true });
  await serveLocalWebFiles(context);
  const page = await context.newPage();
  const problems = { consoleErrors: [], pageErrors: [], tokenPrompts: 0, readTokenPrompts: 0, otherDialogs: [] };
  // With an admin token, a page asks for it (window.prompt) on its first refused change; with a
  // read token, on its first refused read. The operator here answers with the server's token.
  page.on('dialog', async (dialog) => {
    if (dialog.type() === 'prompt' && /read token/.test(dialog.message()) && readToken) {
      problems.readTokenPrompts += 1;
      await dialog.accept(readToken);
    } else if (dialog.type() === 'prompt' && /admin token/.test(dialog.message()) && adminToken) {
      problems.tokenPrompts += 1;
      await dialog.accept(adminToken);
    } else {
      problems.otherDialogs.push(dialog.message());
      await dialog.dismiss();
    }
  });
  // That first refusal is a 401, which Chromium logs as an error.
  const expected = adminToken || readToken ? [...expectedConsoleErrors, /status of 401/] : expectedConsoleErrors;
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    if (expected.some((pattern) => pattern.test(text))) return;
    problems.consoleErrors.push(`${text} (${message.location().url})`);
  });
  page.on('pageerror', (error) => problems.pageErrors.push(String(error.stack || error)));
  // Notes, on the page's own clock, when the body is first marked ready: the fallback for the
  // time to interactive when the page sets no performance mark.
  await page.addInitScript(() => {
    const noteReady = () => {
      if (window.__marketsimReadyAtMs === undefined && document.body?.dataset.ready === 'true') {
        window.__marketsimReadyAtMs = performance.now();
      }
    };
    new MutationObserver(noteReady).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-ready'] });
  });
  await page.goto(`${baseUrl || server.url}${route}`, { waitUntil: 'load' });
  return { context, page, problems };
}

/**
 * Runs `body`; when it fails, keeps a screenshot (`failure-LABEL.png`) and adds the page's
 * status line and console errors to the error, which is what one needs to see why.
 */
async function explainFailure(page, label, problems, body) {
  try {
    return await body();
  } catch (error) {
    const file = path.join(outputDir, `failure-${label}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    const status = await page.textContent('#status').catch(() => null);
    error.message += `\n  ${label}: screenshot ${path.relative(projectRoot, file)}` +
      (status ? `; #status: ${status}` : '') +
      (problems.consoleErrors.length ? `; console errors: ${problems.consoleErrors.join(' | ')}` : '');
    throw error;
  }
}

function assertNoProblems(problems, label) {
  assert.deepEqual(problems.pageErrors, [], `${label}: uncaught exceptions in the page`);
  assert.deepEqual(problems.consoleErrors, [], `${label}: errors in the console`);
}

/** Waits for `body[data-ready="true"]`; a page that never gets there fails with its errors. */
async function waitForReady(page, label, problems) {
  try {
    await page.waitForFunction(() => document.body?.dataset.ready === 'true', null, {
      timeout: pageReadyTimeoutMs,
      polling: 25,
    });
  } catch (error) {
    const file = path.join(outputDir, `failure-${label.replaceAll(/\W+/g, '-')}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    const errors = problems ? [...problems.pageErrors, ...problems.consoleErrors] : [];
    throw new Error(
      `${label}: body[data-ready="true"] never came (${error.message.split('\n')[0]}); ` +
        `screenshot ${path.relative(projectRoot, file)}` + (errors.length ? `; page errors: ${errors.join(' | ')}` : ''),
    );
  }
}

/** A `data-last-update` value as a number: milliseconds, or an ISO instant parsed. */
function lastUpdateValue(text) {
  if (text === null || text === undefined || text === '') return Number.NaN;
  const asNumber = Number(text);
  return Number.isFinite(asNumber) ? asNumber : Date.parse(text);
}

async function timeseriesLastUpdate(page) {
  return lastUpdateValue(await page.getAttribute('#timeseries', 'data-last-update'));
}

/** Saves a full-page screenshot at the given width and checks nothing overflows sideways. */
async function screenshotAtWidth(page, name, viewport) {
  await page.setViewportSize(viewport);
  // From the top, so sticky bars sit where a reader first sees them.
  await page.evaluate(() => window.scrollTo(0, 0));
  // Layout and charts resize on the next frames.
  await page.waitForTimeout(700);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  const file = path.join(outputDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${path.relative(projectRoot, file)}`);
  assert.ok(overflow <= 1, `${name}: the page is ${overflow} px wider than the ${viewport.width} px window`);
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Sends SIGTERM and waits (bounded) until the process is gone, then SIGKILL. */
async function stopProcess(pid, child) {
  const isAlive = () => {
    if (child) return child.exitCode === null && child.signalCode === null;
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!isAlive()) return;
  process.kill(pid, 'SIGTERM');
  for (let waited = 0; waited < 10_000 && isAlive(); waited += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (isAlive()) process.kill(pid, 'SIGKILL');
}

/** Starts `marketsim serve` with the xtask's flags plus `extraFlags`; resolves with its URL. */
function startServer(extraFlags, logName = 'serve-restarted.log') {
  const logFile = path.join(outputDir, logName);
  const child = spawn(marketsimBinary, [...serveFlags, ...extraFlags], {
    cwd: projectRoot,
    stdio: ['ignore', 'pipe', fs.openSync(logFile, 'w')],
  });
  return new Promise((resolve, reject) => {
    let printed = '';
    const timer = setTimeout(() => reject(new Error(`the restarted server printed no URL in 180 s; see ${logFile}`)), 180_000);
    child.stdout.on('data', (chunk) => {
      printed += chunk;
      const match = printed.match(/http:\/\/[^\s/]+/);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[0] });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the restarted server exited with ${code}; see ${logFile}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// /admin
// ---------------------------------------------------------------------------------------------

test('admin: library, pace, inject, recording, activate, stop and reset, errors shown', {
  skip: skipWithoutServer,
  timeout: 180_000,
}, async () => {
  await api('POST', '/api/simulation/reset');
  await api('POST', '/api/simulation/control', { speed: 600, action: 'resume' });
  const library = (await api('GET', '/api/simulation/scenarios')).scenarios;
  const { context, page, problems } = await openPage('/admin', {
    // The test sends one bad custom event on purpose; Chromium logs its 400 answer.
    expectedConsoleErrors: [/status of 400/],
  });
  try {
    await explainFailure(page, 'admin', problems, () => adminScenarioWalkthrough(page, library));
    assertNoProblems(problems, 'admin');
    // Asked for once, then kept for the tab: every later change of the walkthrough carried it.
    assert.equal(problems.tokenPrompts, adminToken ? 1 : 0, 'admin token prompts');
    assert.deepEqual(problems.otherDialogs, [], 'unexpected dialogs');
  } finally {
    await context.close();
  }
});

/** The admin test's steps, on an open /admin page. */
async function adminScenarioWalkthrough(page, library) {
  {
    await waitForReady(page, 'admin');

    // The library, one card each, with what the scenario moves and an Activate button.
    const cards = await page.$$eval('.scenario-card[data-scenario-id]', (elements) =>
      elements.map((card) => ({ id: card.dataset.scenarioId, hasButton: Boolean(card.querySelector('button.activate')), text: card.textContent })));
    assert.deepEqual(cards.map((card) => card.id), library.map((scenario) => scenario.id));
    for (const [index, card] of cards.entries()) {
      assert.ok(card.hasButton, `${card.id}: no Activate button`);
      assert.ok(card.text.includes(library[index].duration), `${card.id}: the duration is not shown`);
      // Every stream and lever it moves (`lever:demand` is shown as `demand`).
      for (const touched of library[index].touches) {
        const shown = touched.replace(/^lever:/, '').replaceAll('_', ' ');
        assert.ok(card.text.includes(shown), `${card.id}: ${touched} is not shown`);
      }
    }
    assert.equal(await page.locator('a[href="/dashboard"]').count() > 0, true, 'no link to the dashboard');
    assert.equal(await page.getAttribute('#status', 'data-kind'), 'info');

    // Pace: presets, pause, resume; the server's state follows and the page marks the preset.
    await page.click('button[data-speed="3600"]');
    await page.waitForSelector('button[data-speed="3600"][aria-pressed="true"]');
    assert.equal((await api('GET', '/api/simulation/state')).speed, 3600);
    await page.click('button#pause');
    await page.waitForSelector('#engine-state[data-paused="true"]');
    assert.equal((await api('GET', '/api/simulation/state')).paused, true);
    await page.click('button#resume');
    await page.waitForSelector('#engine-state[data-paused="false"]');
    await page.click('button[data-speed="600"]');
    await page.waitForSelector('button[data-speed="600"][aria-pressed="true"]');
    const paced = await api('GET', '/api/simulation/state');
    assert.equal(paced.speed, 600);
    assert.equal(paced.paused, false);

    // Inject: a library event now, one backdated two hours (history re-simulated), a custom one.
    const form = page.locator('form#inject-form');
    await form.locator('select[name="eventId"]').selectOption('newspaper-feature');
    await form.locator('button[type="submit"]').click();
    await page.waitForFunction(() => /Injected newspaper-feature/.test(document.getElementById('status').textContent));
    assert.match(await page.textContent('#status'), /Injected newspaper-feature \(evt_\d+\)/);
    await form.locator('select[name="eventId"]').selectOption('cdn-slowdown');
    await form.locator('input[name="when"][value="backdated"]').check();
    await form.locator('button[type="submit"]').click();
    await page.waitForFunction(() => /Injected cdn-slowdown/.test(document.getElementById('status').textContent));
    assert.match(await page.textContent('#status'), /re-simulated/);
    await form.locator('input[name="when"][value="now"]').check();
    await form.locator('input[name="source"][value="custom"]').check();
    await form.locator('input[name="customTitle"]').fill('Support tool slow in one region');
    await form.locator('select[name="effectTarget"]').selectOption('lever:support_staffing');
    await form.locator('input[name="effectMultiplier"]').fill('0.6');
    await form.locator('button[type="submit"]').click();
    await page.waitForFunction(() => /Injected custom-/.test(document.getElementById('status').textContent));
    assert.equal(await page.getAttribute('#status', 'data-kind'), 'ok');

    // A refusal is shown with the server's message, never swallowed.
    await form.locator('input[name="effectDuration"]').fill('soon');
    await form.locator('button[type="submit"]').click();
    await page.waitForSelector('#status[data-kind="error"]');
    const refusal = await page.textContent('#status');
    assert.match(refusal, /failed: .*\(400 /, `the refusal is shown with its status: ${refusal}`);
    await form.locator('input[name="effectDuration"]').fill('6h');
    await form.locator('input[name="source"][value="library"]').check();

    // The recording downloads and holds the injected events.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('a#download-recording')]);
    const recordingFile = path.join(outputDir, 'admin-recording.yaml');
    await download.saveAs(recordingFile);
    const recording = fs.readFileSync(recordingFile, 'utf8');
    assert.match(recording, /newspaper-feature/);
    assert.match(recording, /cdn-slowdown/);

    // Activate: the scenario appears among those in effect with its phase.
    await page.click('.scenario-card[data-scenario-id="exam-season-surge"] button.activate');
    const activeItem = '#active-scenarios .active-scenario[data-scenario-id="exam-season-surge"]';
    await page.waitForSelector(`${activeItem}[data-phase="active"]`);
    assert.deepEqual((await activeScenarioInstances()).map((item) => [item.type, item.status]), [['exam-season-surge', 'active']]);
    // The screenshots show the page at work: a scenario and event effects in progress.
    await screenshotAtWidth(page, 'admin-1920', desktopViewport);
    await screenshotAtWidth(page, 'admin-768', tabletViewport);
    await page.setViewportSize(desktopViewport);

    // Stop: it settles.
    await page.click(`${activeItem} button.stop`);
    await page.waitForSelector(`${activeItem}[data-phase="settling"]`, { timeout: 10_000 });
    assert.equal((await activeScenarioInstances())[0]?.status, 'settling');

    // Reset asks first; Cancel changes nothing, Reset empties the list.
    await page.click('button#reset');
    await page.waitForSelector('dialog#reset-dialog[open]');
    await page.click('button#reset-cancel');
    await page.waitForSelector('dialog#reset-dialog', { state: 'hidden' });
    assert.equal((await activeScenarioInstances()).length, 1, 'Cancel reset the simulation');
    await page.click('button#reset');
    await page.click('button#reset-confirm');
    await page.waitForFunction(() => document.querySelectorAll('#active-scenarios .active-scenario').length === 0);
    assert.deepEqual(await activeScenarioInstances(), [], 'the state still lists a scenario after reset');
    assert.match(await page.textContent('#status'), /Reset at/);

    // Keyboard: the main controls are reached with Tab alone.
    const reached = new Set();
    await page.focus('body');
    for (let press = 0; press < 80; press += 1) {
      await page.keyboard.press('Tab');
      reached.add(await page.evaluate(() => {
        const element = document.activeElement;
        if (!element) return '';
        return element.id || element.dataset.speed || element.className || element.tagName;
      }));
    }
    for (const control of ['reset', 'pause', 'resume', '600', 'download-recording']) {
      assert.ok(reached.has(control), `#${control} is not reachable with Tab (reached: ${[...reached].join(', ')})`);
    }
    assert.ok([...reached].some((name) => name.includes('activate')), 'no Activate button is reachable with Tab');
  }
}

// ---------------------------------------------------------------------------------------------
// /dashboard
// ---------------------------------------------------------------------------------------------

test('dashboard: loads 7 days of history (50 heatmap cells, a chart with data), then live batches update it', {
  skip: skipWithoutDashboard,
  timeout: 180_000,
}, async () => {
  await api('POST', '/api/simulation/control', { speed: 600, action: 'resume' });
  const interactiveTimesMs = [];
  for (let load = 0; load < 3; load += 1) {
    const { context, page, problems } = await openPage('/dashboard');
    try {
      await waitForReady(page, 'dashboard', problems);
      const interactiveMs = await page.evaluate(() =>
        performance.getEntriesByName('marketsim-interactive')[0]?.startTime ?? window.__marketsimReadyAtMs);
      interactiveTimesMs.push(interactiveMs);
      if (load > 0) continue;

      // The heatmap: one cell per stream, each naming its stream, with a status and a z.
      const cells = await page.$$eval('#heatmap [data-stream]', (elements) =>
        elements.map((cell) => ({ stream: cell.dataset.stream, status: cell.dataset.status, z: cell.dataset.z })));
      assert.equal(cells.length, expectedStreamCount, 'heatmap cells');
      const state = await api('GET', '/api/simulation/state');
      const recentStart = new Date(Date.parse(state.now) - 3 * 3600_000).toISOString();
      const recent = await api('GET', `/api/simulation/history?start=${encodeURIComponent(recentStart)}`);
      assert.deepEqual(cells.map((cell) => cell.stream).sort(), Object.keys(recent.streams).sort(), 'the cells name the streams');
      for (const cell of cells) {
        assert.ok(['normal', 'warning', 'critical'].includes(cell.status), `${cell.stream}: data-status ${cell.status}`);
        assert.ok(cell.z !== undefined && cell.z !== '', `${cell.stream}: no data-z`);
      }

      // The chart has data and names its streams; the connection is live.
      const points = Number(await page.getAttribute('#timeseries', 'data-points'));
      assert.ok(points > 0, `#timeseries data-points is ${points}`);
      assert.ok((await page.getAttribute('#timeseries', 'data-streams'))?.length > 0, '#timeseries names no streams');
      await page.waitForSelector('#connection[data-state="live"]', { timeout: 15_000 });
      assert.ok(await page.locator('a[href="/admin"]').count() > 0, 'no link to the admin page');

      // A WebSocket batch moves the chart on (at 600× a batch arrives every 100 ms).
      const before = await timeseriesLastUpdate(page);
      assert.ok(Number.isFinite(before), '#timeseries data-last-update is not a time');
      await page.waitForFunction(
        (previous) => {
          const text = document.getElementById('timeseries')?.dataset.lastUpdate;
          const value = Number.isFinite(Number(text)) ? Number(text) : Date.parse(text);
          return value > previous;
        },
        before,
        { timeout: 15_000 },
      );

      await screenshotAtWidth(page, 'dashboard-1920', desktopViewport);
      await screenshotAtWidth(page, 'dashboard-768', tabletViewport);
      assertNoProblems(problems, 'dashboard');
    } finally {
      await context.close();
    }
  }
  console.log(
    `dashboard time to interactive (7 days × ${expectedStreamCount} streams): ` +
      `median ${Math.round(median(interactiveTimesMs))} ms of ${interactiveTimesMs.map(Math.round).join(', ')} ms ` +
      `(target ≤ ${interactiveTargetMs} ms)`,
  );
});

test('dashboard + admin: a scenario shows on the dashboard; take action resolves it on every open page; stop and reset', {
  skip: skipWithoutDashboard,
  timeout: 240_000,
}, async () => {
  await api('POST', '/api/simulation/reset');
  await api('POST', '/api/simulation/control', { speed: 600, action: 'resume' });
  const surge = (await api('GET', '/api/simulation/scenarios')).scenarios.find((scenario) => scenario.id === 'exam-season-surge');
  assert.ok(surge, 'exam-season-surge is not in the library');
  const touchedStreams = surge.touches.filter((name) => !name.startsWith('lever:'));
  assert.ok(touchedStreams.length > 0, 'exam-season-surge names no stream');

  const first = await openPage('/dashboard');
  const second = await openPage('/dashboard');
  const admin = await openPage('/admin');
  try {
    await Promise.all([waitForReady(first.page, 'dashboard 1', first.problems),
      waitForReady(second.page, 'dashboard 2', second.problems),
      waitForReady(admin.page, 'admin', admin.problems),
    ]);
    const cellsOf = (page) => page.$$eval('#heatmap [data-stream]', (elements) =>
      Object.fromEntries(elements.map((cell) => [cell.dataset.stream, { status: cell.dataset.status, z: Number(cell.dataset.z) }])));
    const before = await cellsOf(first.page);

    await admin.page.click('.scenario-card[data-scenario-id="exam-season-surge"] button.activate');
    await admin.page.waitForSelector('#active-scenarios .active-scenario[data-scenario-id="exam-season-surge"][data-phase="active"]');

    // The streams it moves change colour: flagged, or their z well above where it was.
    await first.page.waitForFunction(
      ({ streams, previous }) => streams.some((stream) => {
        const cell = document.querySelector(`#heatmap [data-stream="${stream}"]`);
        if (!cell) return false;
        const z = Number(cell.dataset.z);
        return (cell.dataset.status !== 'normal' && cell.dataset.status !== previous[stream]?.status) ||
          z >= (previous[stream]?.z ?? 0) + 3;
      }),
      { streams: touchedStreams, previous: before },
      { timeout: 90_000, polling: 250 },
    );
    const after = await cellsOf(first.page);
    console.log(`exam-season-surge on the heatmap: ${touchedStreams.map((stream) =>
      `${stream} ${before[stream]?.status} z=${before[stream]?.z} → ${after[stream]?.status} z=${after[stream]?.z}`).join('; ')}`);

    // A recommendation opens, on both pages.
    const openRecommendation = '#recommendations .recommendation[data-status="open"]';
    await first.page.waitForSelector(openRecommendation, { timeout: 90_000 });
    const recommendationId = await first.page.getAttribute(openRecommendation, 'data-id');
    assert.ok(await first.page.getAttribute(openRecommendation, 'data-severity'), 'the recommendation has no data-severity');
    const onBoth = `#recommendations .recommendation[data-id="${recommendationId}"]`;
    await second.page.waitForSelector(`${onBoth}[data-status="open"]`, { timeout: 15_000 });

    // Take action on the first page: resolved there and on the second page.
    await first.page.click(`${onBoth} button.take-action`);
    await first.page.waitForSelector(`${onBoth}[data-status="resolved"]`, { timeout: 15_000 });
    await second.page.waitForSelector(`${onBoth}[data-status="resolved"]`, { timeout: 15_000 });
    const resolved = (await api('GET', '/api/dashboard/recommendations')).recommendations.find((item) => item.id === recommendationId);
    assert.equal(resolved?.status, 'resolved', `the server does not hold ${recommendationId} resolved`);

    // Stop and reset from the admin page.
    const activeItem = '#active-scenarios .active-scenario[data-scenario-id="exam-season-surge"]';
    await admin.page.click(`${activeItem} button.stop`);
    await admin.page.waitForSelector(`${activeItem}[data-phase="settling"]`, { timeout: 10_000 });
    await admin.page.click('button#reset');
    await admin.page.click('button#reset-confirm');
    await admin.page.waitForFunction(() => document.querySelectorAll('#active-scenarios .active-scenario').length === 0);
    assert.deepEqual(await activeScenarioInstances(), []);

    assertNoProblems(first.problems, 'dashboard 1');
    assertNoProblems(second.problems, 'dashboard 2');
    assertNoProblems(admin.problems, 'admin');
  } finally {
    await Promise.all([first.context.close(), second.context.close(), admin.context.close()]);
  }
});

test(`dashboard: memory over ${soakSeconds} s at 600× levels off`, {
  skip: skipWithoutDashboard,
  timeout: (soakSeconds + 120) * 1000,
}, async () => {
  await api('POST', '/api/simulation/control', { speed: 600, action: 'resume' });
  const { context, page, problems } = await openPage('/dashboard');
  try {
    await waitForReady(page, 'dashboard', problems);
    const devtools = await context.newCDPSession(page);
    await devtools.send('Performance.enable');
    await devtools.send('HeapProfiler.enable');
    // The heap after a full collection: what the page keeps, not garbage awaiting collection.
    const sample = async () => {
      await devtools.send('HeapProfiler.collectGarbage');
      const { metrics } = await devtools.send('Performance.getMetrics');
      const metric = (name) => metrics.find((entry) => entry.name === name)?.value ?? Number.NaN;
      const virtualNow = (await api('GET', '/api/simulation/state')).now;
      return { heapMb: metric('JSHeapUsedSize') / 1e6, domNodes: metric('Nodes'), listeners: metric('JSEventListeners'), virtualNow };
    };
    const samples = [];
    const sampleEveryMs = Math.max(5_000, (soakSeconds * 1000) / 12);
    const started = Date.now();
    samples.push({ second: 0, ...(await sample()) });
    while (Date.now() - started < soakSeconds * 1000) {
      await page.waitForTimeout(Math.min(sampleEveryMs, soakSeconds * 1000 - (Date.now() - started)));
      samples.push({ second: Math.round((Date.now() - started) / 1000), ...(await sample()) });
    }
    console.log(`dashboard heap over ${soakSeconds} s at 600× (after a full GC each sample):`);
    for (const entry of samples) {
      console.log(`  ${String(entry.second).padStart(4)} s  virtual ${entry.virtualNow}  heap ${entry.heapMb.toFixed(1)} MB  DOM nodes ${entry.domNodes}  listeners ${entry.listeners}`);
    }
    const firstHeap = samples[0].heapMb;
    const lastHeap = samples.at(-1).heapMb;
    const middle = samples[Math.floor(samples.length / 2)].heapMb;
    const firstHalfGrowth = middle - firstHeap;
    const secondHalfGrowth = lastHeap - middle;
    const levelsOff = secondHalfGrowth <= Math.max(1, firstHalfGrowth * 0.5);
    console.log(
      `  growth: first half ${firstHalfGrowth.toFixed(1)} MB, second half ${secondHalfGrowth.toFixed(1)} MB; ` +
        (levelsOff ? 'levels off' : 'still growing (look again with MARKETSIM_E2E_SOAK_SECONDS=600)'),
    );
    assert.ok(
      lastHeap <= firstHeap * heapGrowthFactorMax,
      `the heap grew from ${firstHeap.toFixed(1)} MB to ${lastHeap.toFixed(1)} MB (more than ${heapGrowthFactorMax}×)`,
    );
    assertNoProblems(problems, 'dashboard (memory)');
  } finally {
    await context.close();
  }
});

test('dashboard: a server with a read token asks for it once, then loads its data and goes live over the WebSocket', {
  skip: skipWithoutRestart,
  timeout: 300_000,
}, async () => {
  const readToken = 'e2e-read-token';
  const guarded = await startServer(['--port', '0', '--read-token', readToken], 'serve-read-token.log');
  try {
    // Without the token the data is refused; the page itself loads.
    const refused = await fetch(`${guarded.url}/api/simulation/state`);
    assert.equal(refused.status, 401, 'a read without the read token');
    const { context, page, problems } = await openPage('/dashboard', {
      baseUrl: guarded.url,
      readToken,
      // The page's preloads of its first data go out before it has a token.
      expectedConsoleErrors: [/preload/],
    });
    try {
      await waitForReady(page, 'dashboard (read token)', problems);
      // The WebSocket carries the token as its access_token parameter: the page goes live and
      // live batches arrive.
      await page.waitForSelector('#connection[data-state="live"]', { timeout: 30_000 });
      assert.equal(await page.locator('#heatmap [data-stream]').count(), expectedStreamCount);
      // The first reads run in parallel and are refused together: one question, not four.
      assert.equal(problems.readTokenPrompts, 1, 'read token prompts');
      assert.deepEqual(problems.otherDialogs, [], 'unexpected dialogs');
      assertNoProblems(problems, 'dashboard (read token)');
    } finally {
      await context.close();
    }
  } finally {
    await stopProcess(guarded.child.pid, guarded.child);
  }
});

test('dashboard: when the server restarts on the same port it shows reconnecting, then live, with the gap filled', {
  skip: skipWithoutRestart,
  timeout: 300_000,
}, async () => {
  // Errors Chromium logs while the server is down: refused fetches and WebSocket attempts.
  const { context, page, problems } = await openPage('/dashboard', {
    expectedConsoleErrors: [/ERR_CONNECTION_REFUSED/, /WebSocket connection to .* failed/, /ERR_CONNECTION_RESET/, /ERR_EMPTY_RESPONSE/],
  });
  try {
    await waitForReady(page, 'dashboard', problems);
    await page.waitForSelector('#connection[data-state="live"]', { timeout: 15_000 });
    // Every state the indicator passes through, in order.
    await page.evaluate(() => {
      const indicator = document.getElementById('connection');
      window.__connectionStates = [indicator.dataset.state];
      new MutationObserver(() => {
        const state = indicator.dataset.state;
        if (window.__connectionStates.at(-1) !== state) window.__connectionStates.push(state);
      }).observe(indicator, { attributes: true, attributeFilter: ['data-state'] });
    });
    const stateBefore = await api('GET', '/api/simulation/state');
    const lastUpdateBefore = await timeseriesLastUpdate(page);

    const port = new URL(server.url).port;
    await stopProcess(server.pid, server.child);
    await page.waitForFunction(() => window.__connectionStates.includes('reconnecting'), null, { timeout: 30_000 });

    // The new server starts two hours (virtual) after the old one's last hour: a gap the
    // dashboard has to fill from the new server's history.
    const restartNow = new Date(Math.floor(Date.parse(stateBefore.now) / 3600_000) * 3600_000 + 2 * 3600_000);
    const restarted = await startServer(['--port', port, '--now', restartNow.toISOString()]);
    Object.assign(server, { url: restarted.url, pid: restarted.child.pid, child: restarted.child });
    assert.equal(new URL(restarted.url).port, port, 'the server came back on another port');

    await page.waitForFunction(() => {
      const states = window.__connectionStates;
      return states.lastIndexOf('live') > states.indexOf('reconnecting');
    }, null, { timeout: 60_000, polling: 100 });
    const states = await page.evaluate(() => window.__connectionStates);
    await page.waitForFunction(
      (previous) => {
        const text = document.getElementById('timeseries')?.dataset.lastUpdate;
        const value = Number.isFinite(Number(text)) ? Number(text) : Date.parse(text);
        return value > previous;
      },
      lastUpdateBefore,
      { timeout: 30_000 },
    );
    const lastUpdateAfter = await timeseriesLastUpdate(page);
    const asText = (value) => (value > 1e12 ? new Date(value).toISOString() : String(value));
    console.log(
      `restart: connection ${states.join(' → ')}; last update ${asText(lastUpdateBefore)} → ` +
        `${asText(lastUpdateAfter)} (the new server started at ${restartNow.toISOString()})`,
    );
    // The gap is filled: the chart reaches the new server's start (within a bucket, an hour),
    // not just past the old server's end. Only checkable when the attribute is a virtual time.
    if (lastUpdateAfter > 1e12) {
      assert.ok(
        lastUpdateAfter >= restartNow.getTime() - 3600_000,
        `the chart stops at ${asText(lastUpdateAfter)}, before the restarted server's ${restartNow.toISOString()}`,
      );
    }
    assert.equal(await page.locator('#heatmap [data-stream]').count(), expectedStreamCount);
    assertNoProblems(problems, 'dashboard (restart)');
  } finally {
    await context.close();
  }
});
