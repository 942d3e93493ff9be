// What every browser test shares: the server under test (from the environment the Rust
// harness in tests/tests/console.rs sets), a kommun seeded through the public API, a chromium
// that may reach only loopback, and the checks every test ends with — no CSP violation, no
// console error, and an axe-core scan without serious violations.

import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

function need(name) {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run the browser tests through \`cargo test -p trygg-blackbox --test console\``);
  return value;
}

export const URL_BASE = need('TRYGG_URL');
const [ADMIN_EMAIL, ADMIN_PASSWORD] = need('TRYGG_ADMIN').split(/:(.*)/s);
const JWT_SECRET = need('TRYGG_JWT_SECRET');
const CHROMIUM = need('TRYGG_CHROMIUM');
export const RESULTS = need('TRYGG_RESULTS');
mkdirSync(RESULTS, { recursive: true });

export const PASSWORD = 'ett långt lösenord för test';
/** Home of the seeded brukare (Skövde), and a point about 200 m north of it. */
export const HOME = { lat: 58.39, lon: 13.845 };
export const AWAY = { lat: 58.3918, lon: 13.845 };

/** A call to the API as an app would make it (bearer token); throws unless 2xx. */
export async function call(method, path, { token, body, bearer = token } = {}) {
  const res = await fetch(`${URL_BASE}/api/v1/${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const answer = text ? JSON.parse(text) : null;
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
  return answer;
}

export async function login(email, password = PASSWORD) {
  return (await call('POST', 'auth/login', { body: { email, password } })).token;
}

/**
 * Two walks away from home and back, as seconds after the start and places. A jump home ↔ away
 * (200 m) takes 5 s, under the exit policy's 50 m/s plausibility limit; the exit is confirmed
 * by the second fix away (`confirm_fixes` 2), the return by the second fix home.
 */
const WALKS = [
  [[0, HOME], [5, AWAY], [6, AWAY], [11, HOME], [12, HOME]],
  [[17, AWAY], [18, AWAY], [23, HOME], [24, HOME]],
];

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/**
 * A kommun of its own for one test file: a caseworker and a staff member in a team, a brukare
 * with consent, a responder order, a native watch bound to her with a first fix at home, and a
 * zone "Hemma". With `walks`, the watch also reports two walks away from home and back (so a
 * zone around home would have raised two exits): a brukare's fixes count only from the binding
 * on, which the API makes now, so the walks are reported after waiting out their 25 seconds.
 * A second brukare has a zone but no consent: it must be shown inactive.
 */
export async function seedKommun(label, { walks = false } = {}) {
  const tag = randomBytes(4).toString('hex');
  const admin = await login(ADMIN_EMAIL, ADMIN_PASSWORD);
  const tenant = await call('POST', 'tenants', { token: admin, body: { name: `${label} kommun ${tag}` } });
  const user = (role, name) => call('POST', 'users', {
    token: admin,
    body: { email: `${role}.${tag}@kommun.test`, name, role, password: PASSWORD, tenant: tenant.id },
  });
  const caseworker = await user('caseworker', 'Hanna Handläggare');
  const staff = await user('staff', 'Sven Personal');
  const cw = await login(caseworker.email);
  const team = await call('POST', 'teams', { token: cw, body: { name: 'Hemtjänst Norr' } });
  await call('PUT', `teams/${team.id}/members`, { token: cw, body: { members: [staff.id] } });
  const wearer = await call('POST', 'wearers', {
    token: cw,
    body: {
      name: 'Dagny Andersson', note: 'Portkod 4711. Går gärna till ICA Kvantum.',
      contact_name: 'Lars Andersson', contact_phone: '070-123 45 67', team: team.id,
    },
  });
  await call('POST', `wearers/${wearer.id}/consents`, {
    token: cw, body: { covers: ['positioning', 'passive_alarms'], given_by: 'wearer', document_ref: 'Dnr 2026/117' },
  });
  await call('PUT', `wearers/${wearer.id}/responders`, {
    token: cw, body: { steps: [{ team: team.id, escalate_after_secs: 120 }] },
  });
  const device = await call('POST', 'devices', {
    token: cw, body: { id: `klocka-${tag}`, protocol: 'native', wearer: wearer.id },
  });
  const bound = Date.now();
  const fix = (seconds, { lat, lon }) => ({
    time: new Date(bound + 1000 + seconds * 1000).toISOString(), lat, lon, accuracy_m: 10, source: 'gps',
  });
  const history = walks ? WALKS.map((w) => w.map(([seconds, place]) => fix(seconds, place))) : [[fix(0, HOME)]];
  const last = history.flat().at(-1).time;
  await sleep(Math.max(0, new Date(last).getTime() + 1000 - Date.now()));
  await call('POST', 'ingest/positions', { bearer: device.token, body: { device: device.id, fixes: history.flat() } });
  // The zone comes after the fixes: the engine never saw them inside a zone, so no alarm now.
  const hemma = await call('POST', `wearers/${wearer.id}/zones`, {
    token: cw,
    body: { name: 'Hemma', kind: 'stay_inside', radius_m: 150, geometry: { type: 'Point', coordinates: [HOME.lon, HOME.lat] } },
  });
  const other = await call('POST', 'wearers', { token: cw, body: { name: 'Bertil Svensson', team: team.id } });
  await call('POST', `wearers/${other.id}/zones`, {
    token: cw,
    body: { name: 'Trädgården', kind: 'stay_inside', radius_m: 80, geometry: { type: 'Point', coordinates: [13.85, 58.392] } },
  });
  return {
    tenant, caseworker, staff, team, wearer, other, device, hemma, walks: history, cwToken: cw,
  };
}

/** A signed session token like the server's, for the expired-session test. */
export function forgedToken(claims) {
  const enc = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const unsigned = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(claims)}`;
  return `${unsigned}.${createHmac('sha256', JWT_SECRET).update(unsigned).digest('base64url')}`;
}

/**
 * A browser page on the console that may reach the server only: every request to anything but
 * the server's own loopback origin is aborted and recorded. CSP violations (a listener added
 * before any page script) and console errors are collected for [`assertClean`].
 */
export async function openBrowser({ viewport = { width: 1280, height: 900 }, webgl = true } = {}) {
  const args = ['--no-sandbox', '--lang=sv-SE'];
  if (!webgl) args.push('--disable-webgl', '--disable-3d-apis');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args });
  const context = await browser.newContext({ viewport, locale: 'sv-SE', timezoneId: 'Europe/Stockholm' });
  const outside = [];
  const origin = new URL(URL_BASE).origin;
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.origin === origin || url.protocol === 'data:' || url.protocol === 'blob:') return route.continue();
    outside.push(url.href);
    return route.abort('blockedbyclient');
  });
  // Reported the moment they happen, from a listener in place before any page script runs.
  const csp = [];
  await context.exposeBinding('__reportCspViolation', (_source, text) => csp.push(text));
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__reportCspViolation(`${e.violatedDirective}: ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`);
    });
  });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()} at ${msg.location().url}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  return {
    browser, context, page, outside, problems, csp,
    async close() {
      await browser.close();
    },
  };
}

/**
 * Runs `body({ page, context })` in a fresh browser (options of [`openBrowser`]), closes it, and
 * ends with [`assertClean`] (`allowConsole`: console errors this test expects).
 */
export async function inBrowser({ allowConsole, ...options }, body) {
  const b = await openBrowser(options);
  try {
    await body(b);
  } finally {
    await b.close();
  }
  await assertClean(b, { allowConsole });
}

/** The browser logs a 401 it fetched; `auth/me` answers one whenever nobody is logged in. */
const NOT_LOGGED_IN = /status of 401 \(Unauthorized\) at .*\/api\/v1\/auth\/me$/;

/** Every test ends here: no CSP violation, no console error, nothing fetched from outside. */
async function assertClean(b, { allowConsole = [] } = {}) {
  assert.deepEqual(b.csp, [], 'CSP violations');
  const problems = b.problems.filter((p) => ![NOT_LOGGED_IN, ...allowConsole].some((re) => re.test(p)));
  assert.deepEqual(problems, [], 'console errors');
  assert.deepEqual(b.outside, [], 'requests to anything but the server');
}

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/**
 * An axe-core scan of the page as it is; fails on serious or critical violations. axe is
 * evaluated through the DevTools protocol, not added as a script: the page's CSP stays as strict
 * as in production.
 */
export async function assertAccessible(page, what) {
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  const serious = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(serious, [], `${what}: serious accessibility violations`);
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(RESULTS, `${name}.png`), fullPage: true });
}

/** Logs in through the login page. */
export async function logIn(page, email, password = PASSWORD) {
  await page.goto(`${URL_BASE}/`);
  await page.getByLabel('E-postadress').fill(email);
  await page.getByLabel('Lösenord').fill(password);
  await page.getByRole('button', { name: 'Logga in' }).click();
}
