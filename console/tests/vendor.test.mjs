// The vendored libraries are exactly what console/scripts/vendor.sh wrote: every file listed in
// console/vendor/SHA256SUMS has that checksum, and no file is there that the list lacks. A
// hand-edited or half-updated library fails here, before a browser ever loads it.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';

const vendor = new URL('../vendor/', import.meta.url).pathname;

function files(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)]));
}

test('every vendored file matches its checksum and none is unlisted', () => {
  const listed = new Map(readFileSync(join(vendor, 'SHA256SUMS'), 'utf8').trim().split('\n').map((line) => {
    const [sum, path] = line.split(/\s+\*?/);
    return [path, sum];
  }));
  assert.ok(listed.size >= 6, 'SHA256SUMS lists the libraries');
  const present = files(vendor).map((f) => relative(vendor, f)).filter((f) => f !== 'SHA256SUMS').sort();
  assert.deepEqual(present, [...listed.keys()].sort(), 'the files on disk are the files listed');
  for (const [path, sum] of listed) {
    const actual = createHash('sha256').update(readFileSync(join(vendor, path))).digest('hex');
    assert.equal(actual, sum, `${path} differs from its checksum: re-run console/scripts/vendor.sh`);
  }
});

test('every vendored library ships its licence', () => {
  for (const dir of readdirSync(vendor, { withFileTypes: true }).filter((e) => e.isDirectory())) {
    assert.ok(readdirSync(join(vendor, dir.name)).includes('LICENSE.txt'), `${dir.name} has LICENSE.txt`);
  }
});
