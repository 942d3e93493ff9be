#!/usr/bin/env bash
# Vendors the console's browser libraries into console/vendor/<name>-<version>/.
#
# Why vendored: the binary embeds and serves them itself, so the console works offline, with a
# strict CSP ('self' only), and without Node at `cargo build` time. This script is the only
# place they come from: `npm ci` from the pinned package.json/package-lock.json next to it, in a
# temporary directory, then a copy of the distribution files the browser loads, their licences,
# and console/vendor/SHA256SUMS, which console/tests/vendor.test.mjs checks on every test run.
#
# Usage: console/scripts/vendor.sh   (needs node + npm; run after changing vendor/package.json
# with `npm install --package-lock-only --ignore-scripts` there, then commit console/vendor/).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(cd "$here/../vendor" 2>/dev/null && pwd || { mkdir -p "$here/../vendor" && cd "$here/../vendor" && pwd; })"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/vendor/package.json" "$here/vendor/package-lock.json" "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
modules="$work/node_modules"

version() { node -p "require('$modules/$1/package.json').version"; }

maplibre="maplibre-gl-$(version maplibre-gl)"
terra="terra-draw-$(version terra-draw)"
adapter="terra-draw-maplibre-gl-adapter-$(version terra-draw-maplibre-gl-adapter)"

rm -rf "${out:?}"/*
mkdir -p "$out/$maplibre" "$out/$terra" "$out/$adapter"

# MapLibre GL JS 6 is ES modules only; it starts maplibre-gl-worker.mjs, found next to itself,
# as a same-origin module worker (no blob: URL, so the CSP keeps worker-src 'self').
cp "$modules/maplibre-gl/dist/"{maplibre-gl.mjs,maplibre-gl-worker.mjs,maplibre-gl.css} "$out/$maplibre/"
cp "$modules/maplibre-gl/LICENSE.txt" "$out/$maplibre/LICENSE.txt"

cp "$modules/terra-draw/dist/terra-draw.module.js" "$out/$terra/"
# The adapter imports the bare name "terra-draw", which a browser resolves only through an
# import map, and an import map is an inline script the CSP forbids: point it at the file.
sed 's#from"terra-draw"#from"../'"$terra"'/terra-draw.module.js"#' \
    "$modules/terra-draw-maplibre-gl-adapter/dist/terra-draw-maplibre-gl-adapter.module.js" \
    > "$out/$adapter/terra-draw-maplibre-gl-adapter.module.js"
grep -q 'from"../'"$terra"'/terra-draw.module.js"' "$out/$adapter/terra-draw-maplibre-gl-adapter.module.js" \
    || { echo "vendor.sh: the adapter no longer imports \"terra-draw\" as expected; check its dist file" >&2; exit 1; }

# terra-draw's packages ship no licence file; their package.json says MIT, by James Milner.
for dir in "$terra" "$adapter"; do
    name="${dir%-*}"
    license="$(node -p "require('$modules/$name/package.json').license")"
    [ "$license" = "MIT" ] || { echo "vendor.sh: $name is now $license, not MIT; review its licence" >&2; exit 1; }
    cat > "$out/$dir/LICENSE.txt" <<LICENSE
$name $(version "$name") — MIT License (from its package.json; the npm package ships no
licence file). Source: https://github.com/JamesLMilner/terra-draw

MIT License

Copyright (c) 2021 James Milner

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
LICENSE
done

# Paths relative to console/vendor, sorted, so the file is stable across machines.
(cd "$out" && find . -type f ! -name SHA256SUMS | sed 's#^\./##' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
echo "vendored into $out:"
cat "$out/SHA256SUMS"
