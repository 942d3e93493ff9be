// Logging in and out of the console, a wrong password, and a session that expires while the
// page is open: the page must say so in Swedish and bring the user back where they were.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  assertAccessible, forgedToken, inBrowser, logIn, openBrowser, screenshot, seedKommun, URL_BASE,
} from './harness.mjs';

const kommun = await seedKommun('Inloggning');

test('a caseworker logs in, lands on the brukare list in Swedish, and logs out', async () => {
  await inBrowser({}, async ({ page, context }) => {
    await page.goto(`${URL_BASE}/`);
    await page.getByRole('heading', { name: 'Logga in' }).waitFor();
    assert.equal(await page.getAttribute('html', 'lang'), 'sv');
    await screenshot(page, 'inloggning');
    await assertAccessible(page, 'login page');
    await logIn(page, kommun.caseworker.email);
    await page.getByRole('heading', { name: 'Brukare' }).waitFor();
    assert.match(await page.getByTestId('who').textContent(), /Hanna Handläggare · Handläggare/);
    await page.getByLabel('Sök brukare').fill('dag');
    await page.getByRole('link', { name: 'Dagny Andersson' }).waitFor();
    assert.equal(await page.getByRole('link', { name: 'Bertil Svensson' }).count(), 0, 'the search filters');
    await screenshot(page, 'brukarlista');
    await assertAccessible(page, 'brukare list');

    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name.startsWith('__Host-'));
    assert.ok(session, `a __Host- session cookie: ${cookies.map((c) => c.name)}`);
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.equal(await page.evaluate(() => document.cookie), '', 'the page cannot read the session');
    assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0, 'nothing in storage');

    await page.getByRole('button', { name: 'Logga ut' }).click();
    await page.getByText('Du är utloggad.').waitFor();
    // The cookie the browser had is revoked on the server, not only forgotten by the page.
    const res = await fetch(`${URL_BASE}/api/v1/auth/me`, { headers: { cookie: `${session.name}=${session.value}` } });
    assert.equal(res.status, 401, 'logout revokes the session');
  });
});

test('a wrong password is refused with a message and no session', async () => {
  await inBrowser({ allowConsole: [/status of 401 .* at .*\/api\/v1\/auth\/login$/] }, async ({ page, context }) => {
    await logIn(page, kommun.caseworker.email, 'fel lösenord helt och hållet');
    await page.getByText('Fel e-postadress eller lösenord').waitFor();
    assert.equal(await page.getByRole('heading', { name: 'Logga in' }).count(), 1, 'still on the login page');
    assert.equal((await context.cookies()).length, 0, 'no cookie for a wrong password');
  });
});

test('an expired session sends the user to login with a message, and back afterwards', async () => {
  await inBrowser({ allowConsole: [/status of 401 .* at .*\/api\/v1\//] }, async ({ page, context }) => {
    await logIn(page, kommun.caseworker.email);
    await page.getByRole('heading', { name: 'Brukare' }).waitFor();
    const [session] = (await context.cookies()).filter((c) => c.name.startsWith('__Host-'));
    const claims = JSON.parse(Buffer.from(session.value.split('.')[1], 'base64url').toString());
    const now = Math.floor(Date.now() / 1000);
    const expired = forgedToken({ ...claims, iat: now - 7200, exp: now - 3600 });
    await context.addCookies([{ ...session, value: expired }]);

    await page.getByRole('link', { name: 'Dagny Andersson' }).click();
    await page.getByText('Din session har gått ut. Logga in igen.').waitFor();
    await page.getByLabel('E-postadress').fill(kommun.caseworker.email);
    await page.getByLabel('Lösenord').fill('ett långt lösenord för test');
    await page.getByRole('button', { name: 'Logga in' }).click();
    await page.getByRole('heading', { name: 'Dagny Andersson' }).waitFor();
  });
});

test('the CSP is enforced and a violation is seen by the tests (so "no violation" means something)', async () => {
  const b = await openBrowser();
  try {
    await b.page.goto(`${URL_BASE}/`);
    await b.page.getByRole('heading', { name: 'Logga in' }).waitFor();
    const applied = await b.page.evaluate(() => {
      const style = document.createElement('style');
      style.textContent = 'body { color: rgb(1, 2, 3); }';
      document.head.append(style);
      return getComputedStyle(document.body).color;
    });
    assert.notEqual(applied, 'rgb(1, 2, 3)', 'an inline <style> is refused');
    await new Promise((resolve) => { setTimeout(resolve, 200); });
    assert.match(b.csp.join('\n'), /style-src/, 'the refusal was reported');
  } finally {
    await b.close();
  }
});
