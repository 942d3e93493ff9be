// The Swedish words and times every page uses: 24-hour clock, "för 4 min sedan", and the API's
// English messages in Swedish where the console knows them.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ago, clock, swedish } from '../app/format.js';

test('ages read as staff say them', () => {
  assert.equal(ago(10), 'nu');
  assert.equal(ago(50), 'för 1 min sedan');
  assert.equal(ago(4 * 60), 'för 4 min sedan');
  assert.equal(ago(3 * 3600), 'för 3 tim sedan');
  assert.equal(ago(3 * 86400), 'för 3 dagar sedan');
});

test('clock times are 24-hour', () => {
  const late = new Date(2026, 0, 5, 22, 7).toISOString();
  assert.equal(clock(late), '22:07');
});

test("the API's messages are shown in Swedish where known, as they are otherwise", () => {
  assert.equal(swedish('must be between 1 and 50000'), 'ska vara mellan 1 och 50000');
  assert.equal(swedish('no consent in force covers passive alarms'), 'inget samtycke i kraft omfattar passiva larm');
  assert.equal(swedish('something new'), 'something new');
});
