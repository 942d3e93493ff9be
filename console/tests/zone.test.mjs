// The caseworker's side: the brukare page, a polygon drawn with real pointer events and
// dry-run against the brukare's stored fixes before it is saved, a circle made with the
// keyboard alone in a browser without WebGL, and API validation errors shown at the field.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  assertAccessible, AWAY, call, logIn, inBrowser, screenshot, seedKommun, URL_BASE,
} from './harness.mjs';

const kommun = await seedKommun('Zoner', { walks: true });
const { wearer, other } = kommun;
const hhmm = new Intl.DateTimeFormat('sv-SE', { hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZone: 'Europe/Stockholm' });

test('the brukare page shows watches, consent, zones (inactive without consent, and why), team and responders', async () => {
  await inBrowser({}, async ({ page }) => {
    await logIn(page, kommun.caseworker.email);
    await page.getByRole('link', { name: 'Dagny Andersson' }).click();
    await page.getByRole('heading', { name: 'Dagny Andersson' }).waitFor();
    for (const text of ['Portkod 4711', 'Dnr 2026/117', 'i kraft', kommun.device.id, 'Hemma', 'Team Hemtjänst Norr']) {
      await page.getByText(text).first().waitFor();
    }
    assert.match(await page.getByTestId('zone').first().textContent(), /Hemma.*cirkel, radie 150 m.*aktiv/);
    await page.locator('.maplibregl-canvas').waitFor();
    await screenshot(page, 'brukare');
    await assertAccessible(page, 'brukare page');

    await page.goto(`${URL_BASE}/#/brukare/${other.id}`);
    await page.getByRole('heading', { name: 'Bertil Svensson' }).waitFor();
    assert.equal(await page.getByTestId('zone-inactive').textContent(), 'inaktiv: inget samtycke i kraft omfattar passiva larm');
    await page.getByText('Inga samtycken registrerade.').waitFor();
  });
});

test('a polygon drawn with the pointer is dry-run against last week, saved, and stored with the same vertices', async () => {
  await inBrowser({}, async ({ page }) => {
    await logIn(page, kommun.caseworker.email);
    await page.getByRole('heading', { name: 'Brukare' }).waitFor();
    await page.goto(`${URL_BASE}/#/brukare/${wearer.id}/zoner/ny`);
    await page.locator('.maplibregl-canvas').waitFor();
    await page.getByTestId('draw-polygon').click();
    // The map is fitted to the zone "Hemma" (150 m around home): a square of ±120 px (about
    // ±70 m) around its middle holds home and leaves the walks' far point (200 m north) outside.
    const box = await page.locator('.maplibregl-canvas').boundingBox();
    const cx = box.x + box.width / 2;
    const cy = box.y + box.height / 2;
    const corners = [[-120, -120], [120, -120], [120, 120], [-120, 120], [-120, -120]];
    for (const [dx, dy] of corners) {
      await page.mouse.move(cx + dx, cy + dy, { steps: 4 });
      await page.mouse.down();
      await page.mouse.up();
      await page.waitForTimeout(150);
    }
    const rows = page.getByTestId('vertex-table').locator('tbody tr');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=vertex-table] tbody tr').length === 4
      && document.querySelector('[data-testid=vertex-table] tbody input').value !== '');
    const vertices = [];
    for (let i = 0; i < 4; i += 1) {
      const [lat, lon] = await rows.nth(i).locator('input').evaluateAll((inputs) => inputs.map((x) => Number(x.value)));
      vertices.push([lon, lat]);
    }
    assert.ok(vertices[0][1] > vertices[2][1], 'the first corner is north of the third (drawn top-left to bottom-right)');
    assert.ok(vertices.every(([, lat]) => lat < AWAY.lat), 'the far point is outside the drawn square');

    await page.getByLabel('Namn').fill('Kvarteret');
    await page.getByTestId('dry-run').click();
    await page.getByTestId('dry-run-summary').waitFor();
    assert.match(await page.getByTestId('dry-run-summary').textContent(), /Zonen hade gett 2 larm\./);
    const items = await page.getByTestId('dry-run-events').locator('li').allTextContents();
    const exits = items.filter((t) => t.includes('Lämnade zonen'));
    assert.equal(exits.length, 2, `two exits: ${items}`);
    assert.equal(items.filter((t) => t.includes('Tillbaka i zonen')).length, 2, `two returns: ${items}`);
    // Each exit is confirmed while its walk is away from home.
    kommun.walks.forEach((walk, i) => {
      const away = walk.filter((f) => f.lat === AWAY.lat).map((f) => hhmm.format(new Date(f.time)));
      assert.ok(away.some((t) => exits[i].includes(t)), `exit ${i + 1} "${exits[i]}" during ${away}`);
    });
    await screenshot(page, 'zonredigering-provkorning');
    await assertAccessible(page, 'zone editor');

    await page.getByRole('button', { name: 'Spara zonen' }).click();
    await page.getByText('Zonen ”Kvarteret” är sparad').waitFor();
    const zones = await call('GET', `wearers/${wearer.id}/zones`, { token: kommun.cwToken });
    const saved = zones.features.find((z) => z.properties.name === 'Kvarteret');
    assert.ok(saved, 'the zone is stored');
    assert.equal(saved.properties.kind, 'stay_inside');
    assert.deepEqual(saved.geometry, { type: 'Polygon', coordinates: [[...vertices, vertices[0]]] });
  });
});

test('without WebGL a circle is made with the keyboard alone, and a bad radius is shown at its field', async () => {
  await inBrowser({ webgl: false, allowConsole: [/status of 422 .* at .*\/zones$/] }, async ({ page }) => {
    await logIn(page, kommun.caseworker.email);
    await page.getByRole('heading', { name: 'Brukare' }).waitFor();
    await page.goto(`${URL_BASE}/#/brukare/${wearer.id}/zoner/ny`);
    await page.getByTestId('webgl-banner').waitFor();
    assert.match(await page.getByTestId('webgl-banner').textContent(), /Kartan kan inte visas/);

    const kb = page.keyboard;
    await page.getByLabel('Namn').focus();
    await kb.type('Parken');
    await kb.press('Tab'); // kind: "stay inside" is chosen
    await kb.press('Tab'); // shape: polygon …
    await kb.press('ArrowDown'); // … becomes circle
    await kb.press('Tab');
    await kb.type('58,3905');
    await kb.press('Tab');
    await kb.type('13,8462');
    await kb.press('Tab');
    await kb.type('0');
    await kb.press('Enter');
    const radius = page.getByLabel('Radie i meter');
    await page.getByText('ska vara mellan 1 och').waitFor();
    assert.equal(await radius.getAttribute('aria-invalid'), 'true', 'the API error is at the radius field');
    assert.equal(await page.evaluate(() => document.activeElement.name), 'radius_m', 'focus goes to the field to fix');
    await kb.press('Backspace');
    await kb.type('120');
    await screenshot(page, 'zon-tangentbord-utan-webgl');
    await assertAccessible(page, 'zone editor without WebGL');
    await kb.press('Enter');
    await page.getByText('Zonen ”Parken” är sparad').waitFor();

    const zones = await call('GET', `wearers/${wearer.id}/zones`, { token: kommun.cwToken });
    const saved = zones.features.find((z) => z.properties.name === 'Parken');
    assert.deepEqual(saved.geometry, { type: 'Point', coordinates: [13.8462, 58.3905] });
    assert.equal(saved.properties.radius_m, 120);
  });
});
