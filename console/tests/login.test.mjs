// Logging in and out of the console, a wrong password, and a session that expires while the
// page is open: the page must say so in Swedish and bring the user back where they were.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  assertAccessible, assertClean, forgedToken, logIn, openBrowser, screenshot, seedKommun, URL_BASE,
} from './harness.mjs';

const kommun = await seedKommun('Inloggning');

test('a caseworker logs in, lands on the brukare list in Swedish, and logs out', async () => {
  const b = await openBrowser();
  try {
    const { page } = b;
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

    const cookies = await b.context.cookies();
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
  } finally {
    await b.close();
  }
  await assertClean(b);
});

test('a wrong password is refused with a message and no session', async () => {
  const b = await openBrowser();
  try {
    const { page } = b;
    await logIn(page, kommun.caseworker.email, 'fel lösenord helt och hållet');
    await page.getByText('Fel e-postadress eller lösenord').waitFor();
    assert.equal(await page.getByRole('heading', { name: 'Logga in' }).count(), 1, 'still on the login page');
    assert.equal((await b.context.cookies()).length, 0, 'no cookie for a wrong password');
  } finally {
    await b.close();
  }
  await assertClean(b, { allowConsole: [/status of 401 .* at .*\/api\/v1\/auth\/login$/] });
});

test('an expired session sends the user to login with a message, and back afterwards', async () => {
  const b = await openBrowser();
  try {
    const { page, context } = b;
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
  } finally {
    await b.close();
  }
  await assertClean(b, { allowConsole: [/status of 401 .* at .*\/api\/v1\//] });
});
