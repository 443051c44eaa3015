// End-to-end test of the TaskMaster dashboard in a real browser.
//
//   node test/e2e/dashboard.test.mjs TASKMASTERD_PATH BUILD_DIR
//
// Starts its own standalone taskmasterd (free ports, temporary data
// directory), drives Debian's chromium through playwright-core, and stops
// only the daemons it started. Prints "N passed, M failed" last and exits
// non-zero when anything failed. Every wait is bounded.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [daemonPath, buildDir] = process.argv.slice(2);
if (!daemonPath || !buildDir) {
  console.error('usage: dashboard.test.mjs TASKMASTERD_PATH BUILD_DIR');
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TOTAL_BUDGET_MS = 170_000; // the whole run, start to finish
const started = Date.now();

// ------------------------------------------------------------------ helpers

const log = (...a) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

/** Polls fn until it returns a truthy value; throws after timeoutMs. */
async function waitFor(what, fn, timeoutMs = 10_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    await sleep(everyMs);
  }
}

const results = [];
let diagnose = async () => {};   // set once the page exists: screenshot + dashboard state
async function check(name, fn) {
  const t0 = Date.now();
  log(`RUN  ${name}`);
  try {
    await fn();
    results.push({ name, ok: true });
    log(`PASS ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push({ name, ok: false, error: e });
    log(`FAIL ${name} (${Date.now() - t0} ms)\n       ${(e && e.stack) || e}`);
    try { await diagnose(results.length); } catch (d) { log(`  (no diagnostics: ${d.message})`); }
  }
}

// ------------------------------------------------------------------ the daemon

const daemons = new Set();

/** Starts a standalone daemon (a master with `--role=master` in extraArgs)
 *  and waits (bounded) for its URL on stdout. */
function startDaemon({ dataDir, httpPort = 0, clusterPort = 0, extraArgs = [] }) {
  const args = [`--data-dir=${dataDir}`, `--http-port=${httpPort}`, `--cluster-port=${clusterPort}`, ...extraArgs];
  const proc = spawn(daemonPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const d = track(proc);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stopDaemon(d);
      reject(new Error(`taskmasterd printed no URL within 20 s\nstdout: ${d.stdout}\nstderr: ${d.stderr}`));
    }, 20_000);
    proc.stdout.on('data', (b) => {
      d.stdout += b;
      const m = /API and dashboard: (http:\/\/[^\s/]+:(\d+))\//.exec(d.stdout);
      const c = /--master=([^\s)]+)/.exec(d.stdout);
      if (m && c && !d.url) {
        d.url = m[1];
        d.port = Number(m[2]);
        d.clusterAddr = c[1];
        clearTimeout(timer);
        resolve(d);
      }
    });
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
    d.exit.then((code) => {
      clearTimeout(timer);
      if (!d.url) reject(new Error(`taskmasterd exited (${code}) before it was ready\nstderr: ${d.stderr}`));
    });
  });
}

/** Starts a worker process for the master at clusterAddr (HOST:PORT). */
function startWorker(clusterAddr, workerId) {
  const proc = spawn(daemonPath, ['--role=worker', `--master=${clusterAddr}`, `--worker-id=${workerId}`, '--slots=1',
                                  '--reconnect-backoff-max=500ms'], { stdio: ['ignore', 'ignore', 'pipe'] });
  return track(proc);
}

/** Keeps a process we started in `daemons` (stopped by PID at the end). */
function track(proc) {
  const d = { proc, pid: proc.pid, url: null, port: null, exited: false, code: null, stderr: '', stdout: '' };
  daemons.add(d);
  d.exit = new Promise((resolve) => proc.on('exit', (code, signal) => {
    d.exited = true;
    d.code = code ?? signal;
    daemons.delete(d);
    resolve(d.code);
  }));
  proc.stderr.on('data', (b) => { d.stderr = (d.stderr + b).slice(-20_000); });
  return d;
}

/** SIGTERM, then SIGKILL after graceMs. Only ever the process we started, by PID. */
async function stopDaemon(d, graceMs = 15_000) {
  if (!d || d.exited) return d && d.code;
  try { process.kill(d.pid, 'SIGTERM'); } catch (_) { /* already gone */ }
  const timeout = sleep(graceMs).then(() => 'timeout');
  if ((await Promise.race([d.exit, timeout])) === 'timeout') {
    log(`taskmasterd ${d.pid} did not stop within ${graceMs} ms: SIGKILL`);
    try { process.kill(d.pid, 'SIGKILL'); } catch (_) { /* gone */ }
    await Promise.race([d.exit, sleep(5_000)]);
  }
  return d.code;
}

function killAllDaemonsNow() {
  for (const d of daemons) {
    try { process.kill(d.pid, 'SIGKILL'); } catch (_) { /* gone */ }
  }
}

/** One request on its own connection (Connection: close): an idle keep-alive
 *  connection of ours must not hold up the daemon when it is told to stop. */
function api(base, method, p, body) {
  const payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(base + p, {
      method,
      agent: false,
      headers: payload ? { 'Content-Type': 'application/json', 'Content-Length': payload.length } : {},
      timeout: 15_000,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let data = null;
        try { data = JSON.parse(text); } catch (_) { /* not JSON */ }
        resolve({ status: res.statusCode, data, text });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${p}: no answer within 15 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}

// ------------------------------------------------------------------ the run

let browser = null;
let daemon = null;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-e2e-'));
const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-e2e-chromium-'));
const cleanupDirs = [profileDir, dataDir];

const watchdog = setTimeout(() => {
  log(`the test exceeded its ${TOTAL_BUDGET_MS / 1000} s budget: stopping`);
  killAllDaemonsNow();
  console.log(`${results.filter((r) => r.ok).length} passed, ${results.filter((r) => !r.ok).length + 1} failed`);
  process.exit(1);
}, TOTAL_BUDGET_MS);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { killAllDaemonsNow(); process.exit(130); });
}
process.on('exit', killAllDaemonsNow);

async function main() {
  for (const f of fs.readdirSync(buildDir)) if (/^e2e-failure-\d+\.png$/.test(f)) fs.rmSync(path.join(buildDir, f));
  daemon = await startDaemon({ dataDir });
  const base = daemon.url;
  log(`taskmasterd ${daemon.pid} at ${base} (data ${dataDir})`);

  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
    viewport: { width: 1480, height: 940 },
    deviceScaleFactor: 1,
    timeout: 30_000,
  });
  browser = context;
  context.setDefaultTimeout(10_000);
  const page = context.pages()[0] || await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => { pageErrors.push(e); log(`page error: ${e.message}`); });
  let loads = 0;
  page.on('load', () => { loads++; });

  diagnose = async (n) => {
    const file = path.join(buildDir, `e2e-failure-${n}.png`);
    await page.screenshot({ path: file, fullPage: true, timeout: 5_000 });
    const state = await page.evaluate(() => ({
      dashboard: window.taskmasterDashboard && window.taskmasterDashboard.debug(),
      connection: document.querySelector('#connection-status').textContent,
      rows: document.querySelectorAll('[data-testid=task-row]').length,
      table: Object.assign({}, document.querySelector('#tasks-table').dataset),
    }));
    log(`  diagnostics: ${file} ${JSON.stringify(state)}`);
  };
  const status = page.locator('#connection-status');
  const row = (id) => page.locator(`[data-testid=task-row][data-task-id="${id}"]`);
  const rowStatus = (id) => row(id).locator('[data-testid=task-status]');
  const waitRowStatus = (id, s, timeout = 15_000) =>
    waitFor(`task ${id} to show ${s}`, async () => (await rowStatus(id).getAttribute('data-status', { timeout: 1000 })) === s, timeout);
  const markerIntact = async () => (await page.evaluate(() => window.__e2eMarker)) === 'still-here';
  const newestId = async () => {
    const r = await api(base, 'GET', '/tasks?limit=1');
    return r.data.tasks.length ? r.data.tasks[0].id : 0;
  };

  async function submitThroughForm(command, name) {
    await page.fill('#submit-command', command);
    await page.fill('#submit-name', name || '');
    const before = await newestId();
    await page.click('#submit-button');
    // The form tells us the id; the API agrees.
    const text = await waitFor('the submit confirmation', async () => {
      const ok = page.locator('#submit-ok');
      return (await ok.isVisible()) && (await ok.textContent());
    }, 10_000);
    const id = Number(/#(\d+)/.exec(text)[1]);
    assert(id > before, `the new task id ${id} is not above ${before}`);
    return id;
  }

  let helloId = 0;

  await check('1. the dashboard connects and lists one UP worker', async () => {
    await page.goto(base + '/', { waitUntil: 'load', timeout: 15_000 });
    await page.evaluate(() => { window.__e2eMarker = 'still-here'; });
    await waitFor('the connection indicator to say connected', async () =>
      (await status.getAttribute('data-state')) === 'connected' && /^\s*connected/i.test(await status.textContent()), 10_000);
    const workers = page.locator('#workers-table [data-testid=worker-row]');
    await waitFor('a worker row', async () => (await workers.count()) >= 1, 10_000);
    assert((await workers.count()) === 1, `expected one worker row, saw ${await workers.count()}`);
    const state = (await workers.first().locator('[data-testid=worker-state]').textContent()).trim();
    assert(state === 'UP', `the worker is ${state}, not UP`);
  });

  await check('2. a task submitted through the form appears and reaches SUCCEEDED without a reload', async () => {
    helloId = await submitThroughForm('echo hello-from-e2e; sleep 0.5', 'hello e2e');
    await waitFor(`row for task ${helloId}`, () => row(helloId).count(), 5_000);
    // The row sits at the top of the (live, unfiltered) first page.
    const firstId = await page.locator('[data-testid=task-row]').first().getAttribute('data-task-id');
    assert(Number(firstId) === helloId, `the newest row is ${firstId}, not ${helloId}`);
    await waitRowStatus(helloId, 'SUCCEEDED', 15_000);
    assert((await rowStatus(helloId).textContent()).includes('SUCCEEDED'), 'the status cell does not read SUCCEEDED');
    assert(await markerIntact(), 'the page was reloaded (window marker lost)');
    assert(loads === 1, `the page loaded ${loads} times`);
    const t = await api(base, 'GET', `/tasks/${helloId}`);
    assert(t.data.status === 'SUCCEEDED', `the API says ${t.data.status}`);
  });

  await check('untrusted task text is shown literally, never as HTML', async () => {
    // A realistic mix for the screenshot, and hostile text on the way.
    const specs = [
      { command: 'make -C services/api test', name: 'api unit tests', priority: 'HIGH' },
      { command: 'exit 3', name: 'flaky integration suite', priority: 'MEDIUM' },
      { command: 'sleep 5', name: 'slow export', priority: 'LOW', timeout_seconds: 1 },
      { command: 'echo "<b>bold?</b>"', name: '<img src=x onerror="window.__xss=1">', priority: 'CRITICAL' },
      { command: 'pg_dump analytics > /dev/null', name: 'nightly backup', priority: 'CRITICAL', delay_seconds: 600 },
      { command: 'echo rotating logs; sleep 0.2', name: 'log rotation', priority: 'LOW' },
    ];
    const r = await api(base, 'POST', '/tasks', specs);
    assert(r.status === 201, `POST /tasks answered ${r.status}: ${r.text}`);
    const ids = r.data.map((t) => t.id);
    const delayed = ids[4];
    const c = await api(base, 'POST', `/tasks/${delayed}/cancel`);
    assert(c.status === 200, `cancel answered ${c.status}`);
    const hostile = ids[3];
    await waitFor('the hostile row', () => row(hostile).count(), 5_000);
    const text = await row(hostile).textContent();
    assert(text.includes('<img src=x onerror="window.__xss=1">'), `the name is not shown literally: ${text}`);
    assert((await row(hostile).locator('img').count()) === 0, 'an <img> element was created from task data');
    assert((await page.evaluate(() => window.__xss)) === undefined, 'task data ran as script');
    // Let the quick ones end, so the screenshot shows every status.
    await waitRowStatus(ids[2], 'TIMED_OUT', 15_000);
    await waitRowStatus(ids[1], 'FAILED', 10_000);
    await waitRowStatus(ids[5], 'SUCCEEDED', 10_000);
    await sleep(700); // let bar transitions and status pops settle
    await page.screenshot({ path: path.join(buildDir, 'dashboard.png'), fullPage: true });
  });

  await check('3. the detail view shows the output of the task', async () => {
    await row(helloId).locator('td').nth(1).click();
    const panel = page.locator('#task-detail');
    await panel.waitFor({ state: 'visible', timeout: 5_000 });
    assert(Number(await panel.getAttribute('data-task-id')) === helloId, 'the panel shows another task');
    await waitFor('stdout in the detail view', async () =>
      (await panel.locator('[data-testid=detail-stdout]').textContent()).includes('hello-from-e2e'), 5_000);
    assert((await panel.locator('[data-testid=detail-status]').textContent()).includes('SUCCEEDED'), 'the detail status is not SUCCEEDED');
    assert((await panel.locator('[data-testid=detail-command]').textContent()) === 'echo hello-from-e2e; sleep 0.5', 'the command differs');
    await sleep(400); // the drawer slides in
    await page.screenshot({ path: path.join(buildDir, 'dashboard-detail.png') });
    await page.keyboard.press('Escape');
    await panel.waitFor({ state: 'hidden', timeout: 5_000 });
  });

  await check('4. an empty command shows the API error inline and creates nothing', async () => {
    const before = await newestId();
    await page.fill('#submit-command', '');
    await page.fill('#submit-name', 'nothing');
    await page.click('#submit-button');
    const err = page.locator('#submit-error');
    await err.waitFor({ state: 'visible', timeout: 5_000 });
    const text = await err.textContent();
    assert(/command/i.test(text), `the error does not mention the command: "${text}"`);
    await sleep(500);
    assert((await newestId()) === before, 'a task was created');
    await page.fill('#submit-name', '');
  });

  await check('5. a running task is cancelled from its row', async () => {
    const id = await submitThroughForm('sleep 60', 'sleeper (row cancel)');
    await waitRowStatus(id, 'RUNNING', 15_000);
    const button = row(id).locator('[data-testid=task-cancel]');
    await button.click();            // arms the button ("Confirm?")
    await button.click();            // confirms
    await waitRowStatus(id, 'CANCELLED', 10_000);
    const t = await api(base, 'GET', `/tasks/${id}`);
    assert(t.data.status === 'CANCELLED', `the API says ${t.data.status}`);
    assert(await markerIntact(), 'the page was reloaded');
  });

  await check('5b. a running task is cancelled from the detail view', async () => {
    const id = await submitThroughForm('sleep 60', 'sleeper (detail cancel)');
    await waitRowStatus(id, 'RUNNING', 15_000);
    await row(id).locator('td').nth(1).click();
    const panel = page.locator('#task-detail');
    await waitFor('the detail view of the sleeper', async () => Number(await panel.getAttribute('data-task-id')) === id, 5_000);
    const button = page.locator('#detail-cancel');
    await button.waitFor({ state: 'visible', timeout: 5_000 });
    await button.click();
    await button.click();
    await waitFor('CANCELLED in the detail view', async () =>
      (await panel.locator('[data-testid=detail-status]').getAttribute('data-status')) === 'CANCELLED', 10_000);
    await waitRowStatus(id, 'CANCELLED', 5_000);
    await page.keyboard.press('Escape');
    await panel.waitFor({ state: 'hidden', timeout: 5_000 });
  });

  await check('6. with 10,000 tasks the table shows one page and filters and paging answer within 2 s', async () => {
    const rows = page.locator('#tasks-table [data-testid=task-row]');
    const prios = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'];
    let maxRows = 0;
    const t0 = Date.now();
    for (let b = 0; b < 10; b++) {
      const batch = Array.from({ length: 1000 }, (_, i) => ({ command: 'true', name: `bulk ${b * 1000 + i}`, priority: prios[i % 4] }));
      const r = await api(base, 'POST', '/tasks', batch);
      assert(r.status === 201, `batch ${b} answered ${r.status}: ${r.text.slice(0, 200)}`);
      maxRows = Math.max(maxRows, await rows.count());
    }
    log(`  10,000 tasks submitted in ${Date.now() - t0} ms`);
    const newest = await newestId();
    // The newest task reaches the top of the live first page (checked inside
    // the page: the stream is still pouring in).
    await page.waitForFunction((id) => {
      const first = document.querySelector('#tasks-table [data-testid=task-row]');
      return first && Number(first.dataset.taskId) === id;
    }, newest, { polling: 100, timeout: 20_000 });
    for (let i = 0; i < 5; i++) { maxRows = Math.max(maxRows, await rows.count()); await sleep(100); }
    assert(maxRows <= 50, `the table rendered ${maxRows} rows`);
    const lag = await page.evaluate(() => new Promise((r) => { const t = performance.now(); setTimeout(() => r(performance.now() - t), 0); }));
    log(`  event-loop lag ${lag.toFixed(1)} ms, rows ${maxRows}`);

    // Each step is timed inside the page, from the click (or change) event to
    // the moment the table shows the settled answer, so that the browser
    // automation's own round trips do not count.
    const timed = async (what, action, want) => {
      // From the click (or change) event, captured before the dashboard sees
      // it, to the first DOM mutation after which the table shows the settled
      // answer (a MutationObserver checks after every change).
      await page.evaluate((w) => {
        window.__e2eClickAt = null;
        window.__e2eDoneAt = null;
        const table = document.querySelector('#tasks-table');
        const settled = () => {
          const t = table;
          if (t.dataset.loading !== 'false' || t.dataset.status !== w.status || t.dataset.priority !== w.priority
              || t.dataset.page !== String(w.page)) return false;
          const rows = Array.from(t.querySelectorAll('[data-testid=task-row]'));
          if (rows.length === 0 || rows.length > 50 || (w.full && rows.length !== 50)) return false;
          return rows.every((r) => (!w.status || r.dataset.status === w.status)
            && (!w.priority || r.querySelector('.prio').textContent === w.priority)
            && (!w.below || Number(r.dataset.taskId) < window.__e2eLastId));
        };
        const observer = new MutationObserver(() => {
          if (window.__e2eClickAt === null || window.__e2eDoneAt !== null) return;
          if (settled()) { window.__e2eDoneAt = performance.now(); observer.disconnect(); }
        });
        observer.observe(table, { attributes: true, childList: true, subtree: true, characterData: true });
        const mark = () => {
          if (window.__e2eClickAt !== null) return;
          window.__e2eClickAt = performance.now();
          // The last row as the click lands: the next page starts below it.
          const last = Array.from(table.querySelectorAll('[data-testid=task-row]')).at(-1);
          window.__e2eLastId = last ? Number(last.dataset.taskId) : Infinity;
        };
        document.addEventListener('click', mark, { capture: true, once: true });
        document.addEventListener('change', mark, { capture: true, once: true });
      }, want);
      const wall = Date.now();
      await action();
      const handle = await page.waitForFunction(() => window.__e2eDoneAt !== null && window.__e2eDoneAt - window.__e2eClickAt,
        null, { polling: 50, timeout: 5_000 });
      const took = Math.round(await handle.jsonValue());
      const fetchInfo = await page.evaluate(() => {
        const t = window.taskmasterDashboard.debug().lastLoad;
        const at = (x) => Math.round(x - window.__e2eClickAt);
        return t ? `asked at +${at(t.asked)}, answered at +${at(t.answered)}, rendered at +${at(t.rendered)} ms` : 'no request';
      });
      log(`  ${what}: ${took} ms in the page (${Date.now() - wall} ms with the automation; ${fetchInfo})`);
      assert(took <= 2_000, `${what} took ${took} ms`);
      return took;
    };

    await timed('the SUCCEEDED filter', () => page.click('[data-testid=status-filter][data-status=SUCCEEDED]'),
      { status: 'SUCCEEDED', priority: '', page: 1 });
    await timed('the next page', () => page.click('#page-next'),
      { status: 'SUCCEEDED', priority: '', page: 2, below: 'at-click' });
    // HIGH tasks run only after the 2,500 CRITICAL ones: on a loaded machine
    // none may have succeeded yet, and an empty answer is no table to time.
    // Wait for one first, outside the timing.
    await waitFor('a SUCCEEDED HIGH task', async () => {
      const r = await api(base, 'GET', '/tasks?status=SUCCEEDED&priority=HIGH&limit=1');
      return r.status === 200 && JSON.parse(r.text).tasks.length > 0;
    }, 60_000);
    await timed('the HIGH priority filter', () => page.selectOption('#filter-priority', 'HIGH'),
      { status: 'SUCCEEDED', priority: 'HIGH', page: 1 });
    await timed('the priority filter off', () => page.selectOption('#filter-priority', ''),
      { status: 'SUCCEEDED', priority: '', page: 1 });
    await timed('the All filter', () => page.click('[data-testid=status-filter][data-status=""]'),
      { status: '', priority: '', page: 1, full: true });
    await timed('page 2 of everything', () => page.click('#page-next'),
      { status: '', priority: '', page: 2, full: true, below: 'at-click' });
    await timed('back to the newest', () => page.click('#page-first'),
      { status: '', priority: '', page: 1, full: true });
    const mem = await page.evaluate(() => window.taskmasterDashboard && window.taskmasterDashboard.debug());
    log(`  dashboard state: ${JSON.stringify(mem)}`);
    assert(mem && mem.storeSize <= 1600, `the in-memory task map holds ${mem && mem.storeSize} tasks`);
    assert(await markerIntact(), 'the page was reloaded');
  });

  await check('7. the dashboard notices the daemon going away and reconnects to a new one by itself', async () => {
    const port = daemon.port;
    const old = daemon;
    const t1 = Date.now();
    // The browser's idle keep-alive connections can keep a stopping daemon
    // around for its 30 s keep-alive timeout: allow for that, then SIGKILL.
    const stopping = stopDaemon(old, 45_000);
    await waitFor('the indicator to say disconnected', async () =>
      (await status.getAttribute('data-state')) === 'disconnected' && /disconnected/i.test(await status.textContent()), 30_000);
    log(`  the indicator said disconnected ${Date.now() - t1} ms after SIGTERM`);
    assert(await page.locator('#connection-banner').isVisible(), 'no disconnection banner');
    const code = await stopping;
    log(`  old daemon exited with ${code} ${Date.now() - t1} ms after SIGTERM`);
    // A new daemon on the same port and data directory.
    const t0 = Date.now();
    daemon = await waitFor('a new daemon on port ' + port, async () => {
      try { return await startDaemon({ dataDir, httpPort: port }); } catch (e) { log(`  restart failed: ${e.message.split('\n')[0]}`); return null; }
    }, 20_000, 500);
    log(`  new daemon ${daemon.pid} at ${daemon.url}`);
    await waitFor('the indicator to say connected again', async () =>
      (await status.getAttribute('data-state')) === 'connected', 15_000);
    log(`  reconnected ${Date.now() - t0} ms after the restart began`);
    assert(!(await page.locator('#connection-banner').isVisible()), 'the banner is still shown');
    assert(await markerIntact(), 'the page was reloaded');
    assert(loads === 1, `the page loaded ${loads} times`);
    await waitFor('an UP worker again', async () =>
      (await page.locator('#workers-table [data-testid=worker-row][data-state=UP]').count()) === 1, 10_000);
    // The restored tasks are there: the hello task is still SUCCEEDED.
    const t = await api(daemon.url, 'GET', `/tasks/${helloId}`);
    assert(t.data.status === 'SUCCEEDED', `after the restart the API says ${t.data.status}`);
  });

  await check('8. with an API token the dashboard asks for it once and then works', async () => {
    const token = 'e2e-token-' + Math.random().toString(36).slice(2) + '-0123456789';
    const secureDir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-e2e-token-'));
    const secured = await startDaemon({ dataDir: secureDir, extraArgs: [`--api-token=${token}`] });
    const p2 = await context.newPage();
    p2.on('pageerror', (e) => { pageErrors.push(e); log(`page error (token page): ${e.message}`); });
    try {
      const r = await api(secured.url, 'GET', '/stats');
      assert(r.status === 401, `GET /stats without the token answered ${r.status}`);
      await p2.goto(secured.url + '/', { waitUntil: 'load', timeout: 15_000 });
      const dialog = p2.locator('#auth-dialog');
      await dialog.waitFor({ state: 'visible', timeout: 10_000 });
      // A wrong token: refused, asked again.
      await p2.fill('#auth-token', 'not-the-token-at-all');
      await p2.click('#auth-submit');
      await waitFor('the dialog to ask again', async () =>
        (await dialog.isVisible()) && /not accepted/i.test(await p2.locator('#auth-text').textContent()), 10_000);
      await p2.fill('#auth-token', token);
      await p2.click('#auth-submit');
      await dialog.waitFor({ state: 'hidden', timeout: 5_000 });
      await waitFor('connected with the token', async () =>
        (await p2.locator('#connection-status').getAttribute('data-state')) === 'connected', 15_000);
      await waitFor('the worker row', async () =>
        (await p2.locator('#workers-table [data-testid=worker-row][data-state=UP]').count()) === 1, 10_000);
      assert((await p2.evaluate(() => sessionStorage.getItem('taskmaster.token'))) === token, 'the token is not in sessionStorage');
      // REST calls carry it too: a submit works.
      await p2.fill('#submit-command', 'echo token-ok');
      await p2.click('#submit-button');
      await p2.locator('#submit-ok').waitFor({ state: 'visible', timeout: 10_000 });
      const id = Number(/#(\d+)/.exec(await p2.locator('#submit-ok').textContent())[1]);
      await waitFor(`task ${id} SUCCEEDED on the secured daemon`, async () =>
        (await p2.locator(`[data-testid=task-row][data-task-id="${id}"]`).getAttribute('data-status', { timeout: 1000 })) === 'SUCCEEDED', 15_000);
      assert(!(await dialog.isVisible()), 'the dialog came back');
    } finally {
      await p2.close().catch(() => {});
      // The daemon is stopped with the others once the browser is closed (an
      // idle keep-alive connection of the browser would hold it up for 30 s).
      cleanupDirs.push(secureDir);
    }
  });

  await check('9. after a master crash the dashboard says which workers the tasks it left wait for, and when that ends', async () => {
    const crashDir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-e2e-crash-'));
    cleanupDirs.push(crashDir);
    // The wait lasts the master's heartbeat timeout plus its reconnect
    // backoff: long enough to look at, as the worker stays frozen.
    const masterArgs = ['--role=master', '--heartbeat-interval=250ms', '--heartbeat-timeout=10s', '--reconnect-backoff-max=10s'];
    let master = await startDaemon({ dataDir: crashDir, extraArgs: masterArgs });
    const worker = startWorker(master.clusterAddr, 'e2e-frozen');
    const p3 = await context.newPage();
    p3.on('pageerror', (e) => { pageErrors.push(e); log(`page error (crash page): ${e.message}`); });
    try {
      await waitFor('the worker to register', async () =>
        ((await api(master.url, 'GET', '/stats')).data || {}).workers_up === 1, 15_000);
      const r = await api(master.url, 'POST', '/tasks', { command: 'sleep 30', name: 'left-running' });
      assert(r.status === 201, `POST /tasks answered ${r.status}`);
      const id = r.data.id;
      await waitFor(`task ${id} RUNNING`, async () =>
        (await api(master.url, 'GET', `/tasks/${id}`)).data.status === 'RUNNING', 10_000);
      // The worker freezes, the master dies and comes back on the same ports.
      process.kill(worker.pid, 'SIGSTOP');
      process.kill(master.pid, 'SIGKILL');
      await master.exit;
      const [host, clusterPort] = [master.url, Number(master.clusterAddr.split(':').pop())];
      master = await startDaemon({ dataDir: crashDir, httpPort: master.port, clusterPort, extraArgs: masterArgs });
      assert(master.url === host, `the master came back at ${master.url}`);
      await p3.goto(master.url + '/', { waitUntil: 'load', timeout: 15_000 });
      const box = p3.locator('[data-testid=restart-wait]');
      await box.waitFor({ state: 'visible', timeout: 10_000 });
      const text = await box.textContent();
      log(`  notice: ${text.trim()}`);
      assert(/master restarted/i.test(text) && /wait until worker e2e-frozen is back, or .* at the latest/.test(text),
        `the notice says "${text}"`);
      // The worker thaws, registers again with its task, and the notice goes
      // then, long before the wait's own end (20 s after the restart).
      process.kill(worker.pid, 'SIGCONT');
      const thawed = Date.now();
      await box.waitFor({ state: 'hidden', timeout: 8_000 });
      log(`  the notice went ${Date.now() - thawed} ms after SIGCONT`);
      const w = (await api(master.url, 'GET', '/workers')).data.workers.find((x) => x.id === 'e2e-frozen');
      assert(w && w.state === 'UP' && w.running.some((r) => r.task_id === id),
        `after the wait the worker is ${JSON.stringify(w)}`);
      const t = await api(master.url, 'GET', `/tasks/${id}`);
      assert(t.data.status === 'RUNNING' && t.data.attempts.length === 1 && !t.data.reason,
        `after the wait task ${id} is ${t.data.status} with ${t.data.attempts.length} attempts (${t.data.reason})`);
      await api(master.url, 'POST', `/tasks/${id}/cancel`);
    } finally {
      await p3.close().catch(() => {});
      try { process.kill(worker.pid, 'SIGCONT'); } catch (_) { /* gone */ }
      // Both are stopped with the others once the browser is closed.
    }
  });

  await check('no uncaught errors in the page', async () => {
    assert(pageErrors.length === 0, `page errors: ${pageErrors.map((e) => e.message).join('; ')}`);
  });
}

let fatal = null;
try {
  await main();
} catch (e) {
  fatal = e;
  log(`fatal: ${(e && e.stack) || e}`);
} finally {
  if (browser) await Promise.race([browser.close().catch(() => {}), sleep(10_000)]);
  for (const d of Array.from(daemons)) {
    const code = await stopDaemon(d, 15_000);
    if (fatal || results.some((r) => !r.ok)) log(`taskmasterd ${d.pid} stderr tail:\n${d.stderr.slice(-3000)}`);
    log(`stopped taskmasterd ${d.pid} (${code})`);
  }
  clearTimeout(watchdog);
  for (const dir of cleanupDirs) fs.rmSync(dir, { recursive: true, force: true });
}

const passed = results.filter((r) => r.ok).length;
const failed = results.filter((r) => !r.ok).length + (fatal ? 1 : 0);
for (const r of results) if (!r.ok) console.log(`failed: ${r.name}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
