// The staff side on a phone-sized screen: a new alarm appears in the list by itself, the alarm
// page shows the responder note and how old, how accurate and from which source the position
// is, follows a live position from the watch, and the alarm is acknowledged,
// marked on site and closed with an outcome.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  assertAccessible, call, HOME, login, logIn, inBrowser, screenshot, seedKommun,
} from './harness.mjs';

const kommun = await seedKommun('Larm');

test('staff see a new alarm appear, follow the live position, acknowledge, go on site and close it', async () => {
  await inBrowser({ viewport: { width: 390, height: 844 } }, async ({ page }) => {
    await logIn(page, kommun.staff.email);
    await page.getByRole('heading', { name: 'Öppna larm' }).waitFor();
    await page.getByText('Inga öppna larm.').waitFor();

    const device = kommun.device;
    await call('POST', 'ingest/alarms', {
      bearer: device.token, body: { device: device.id, kind: 'sos', time: new Date().toISOString() },
    });
    const item = page.getByTestId('alarm').filter({ hasText: 'Nödlarm – Dagny Andersson' });
    await item.waitFor({ timeout: 15_000 });
    assert.match(await item.textContent(), /Nytt|Aviserat/);
    await screenshot(page, 'larmlista');
    await assertAccessible(page, 'alarm list');

    await item.getByRole('link').click();
    await page.getByRole('heading', { name: 'Nödlarm – Dagny Andersson' }).waitFor();
    assert.equal(await page.getByTestId('wearer-note').textContent(), 'Portkod 4711. Går gärna till ICA Kvantum.');
    // The watch's fix from when it was bound, with its age, source and accuracy.
    const position = page.getByTestId('position');
    await page.getByText('Källa: GPS · noggrannhet ±10 m').waitFor();
    assert.match(await position.textContent(), /\d\d:\d\d \((nu|för \d min sedan)\)/);
    await page.locator('.maplibregl-canvas').waitFor();

    // A new fix from the watch arrives over the alarm's live stream.
    const now = new Date();
    await call('POST', 'ingest/positions', {
      bearer: device.token,
      body: { device: device.id, fixes: [{ time: now.toISOString(), lat: HOME.lat + 0.0003, lon: HOME.lon, accuracy_m: 35, source: 'wifi' }] },
    });
    await page.getByText('Källa: Wi-Fi · noggrannhet ±35 m').waitFor({ timeout: 15_000 });
    const clock = new Intl.DateTimeFormat('sv-SE', { hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZone: 'Europe/Stockholm' });
    assert.match(await position.textContent(), new RegExp(`${clock.format(now)} \\(nu\\)`));
    assert.match(await page.getByTestId('live').textContent(), /^Live: senaste uppdatering/);
    await screenshot(page, 'larm');
    await assertAccessible(page, 'alarm page');

    await page.getByRole('button', { name: 'Kvittera' }).click();
    await page.getByTestId('alarm-state').getByText('Kvitterat', { exact: true }).waitFor();
    await page.getByRole('button', { name: 'På plats' }).click();
    await page.getByTestId('alarm-state').getByText('På plats', { exact: true }).waitFor();
    await page.getByLabel('Utfall').selectOption('assisted');
    await page.getByLabel('Anteckning').fill('Satt på bänken utanför ICA, följde henne hem.');
    await page.getByRole('button', { name: 'Avsluta', exact: true }).click();
    await page.getByText('Larmet är avslutat.').waitFor();

    const token = await login(kommun.staff.email);
    const [closed] = await call('GET', 'alarms?state=closed', { token });
    assert.equal(closed.state, 'closed');
    assert.equal(closed.outcome, 'assisted');
    assert.equal(closed.note, 'Satt på bänken utanför ICA, följde henne hem.');
    assert.equal(closed.acknowledged.name, 'Sven Personal');
  });
});
