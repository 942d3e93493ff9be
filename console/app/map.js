// The map of every page: MapLibre GL JS with the configured base map, and what the pages draw
// on it (zones, positions with their accuracy, trails, dry-run exits) as plain GeoJSON layers.
//
// The base map is configuration (`GET /console/config.json`): `none` (default) is a background
// and a coarse bundled outline of Sweden, so nothing is fetched from a third party — a tile
// request for a search area tells a tile server where a person is being looked for. Without
// WebGL there is no map: the caller gets `null`, a Swedish banner says so, and every page keeps
// a keyboard/form way of doing the same thing.

import * as maplibregl from '/vendor/maplibre-gl-6.20.0/maplibre-gl.mjs';
import { consoleConfig } from './api.js';
import { h } from './dom.js';

export { maplibregl };

/** Whether this browser can give MapLibre a WebGL context at all. */
export function webglAvailable() {
  try {
    const canvas = document.createElement('canvas');
    return Boolean(canvas.getContext('webgl2') || canvas.getContext('webgl'));
  } catch {
    return false;
  }
}

/** The Swedish banner shown where a map should be and cannot be. */
export function noMapBanner(what) {
  return h('div', { class: 'notice warn', role: 'alert', 'data-testid': 'webgl-banner' },
    h('strong', {}, 'Kartan kan inte visas. '),
    'Webbläsaren ger ingen WebGL (den saknas eller är avstängd). ', what);
}

function style(baseMap) {
  const outline = new URL('/sweden.geojson', window.location.href).href;
  const layers = [{ id: 'bakgrund', type: 'background', paint: { 'background-color': '#dfe9ee' } }];
  const sources = {};
  const attribution = baseMap.attribution || '';
  if (baseMap.kind === 'xyz' || baseMap.kind === 'wms') {
    sources.bas = { type: 'raster', tiles: [baseMap.url], tileSize: 256, attribution };
    layers.push({ id: 'bas', type: 'raster', source: 'bas' });
  } else {
    sources.sverige = { type: 'geojson', data: outline, attribution: 'Konturen är grov och ritad för hand' };
    layers.push(
      { id: 'sverige-yta', type: 'fill', source: 'sverige', paint: { 'fill-color': '#f6f4ee' } },
      { id: 'sverige-kant', type: 'line', source: 'sverige', paint: { 'line-color': '#8a9a8f', 'line-width': 1 } },
    );
  }
  return { version: 8, sources, layers };
}

/**
 * A map in `container`, resolved once its style is loaded; `null` when WebGL is missing or the
 * context fails (the caller shows [`noMapBanner`] and its form).
 */
export async function createMap(container, { center = [15.0, 62.0], zoom = 4 } = {}) {
  if (!webglAvailable()) return null;
  const { base_map: baseMap } = await consoleConfig();
  let map;
  try {
    const options = {
      container, center, zoom, attributionControl: { compact: true }, maxPitch: 0,
      style: baseMap.kind === 'style' ? baseMap.url : style(baseMap),
    };
    map = new maplibregl.Map(options);
  } catch {
    return null;
  }
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
  map.dragRotate.disable();
  map.touchZoomRotate.disableRotation();
  return new Promise((resolve) => {
    map.once('load', () => resolve(map));
    map.once('error', (e) => {
      if (!map.loaded() && /webgl/i.test(String(e?.error?.message))) resolve(null);
    });
  });
}

const EMPTY = { type: 'FeatureCollection', features: [] };

/**
 * Adds (once) a GeoJSON source with the given layers and returns a setter for its data.
 * `layers` are MapLibre layer specs without `source`.
 */
export function geojsonLayer(map, id, layers) {
  if (!map.getSource(id)) {
    map.addSource(id, { type: 'geojson', data: EMPTY });
    for (const layer of layers) map.addLayer({ ...layer, source: id });
  }
  return (data) => map.getSource(id).setData(data ?? EMPTY);
}

const METRES_PER_DEGREE = 111_320;

/** A polygon approximating a circle of `radiusM` metres around `[lon, lat]` (small radii). */
export function circlePolygon([lon, lat], radiusM, steps = 64) {
  const dLat = radiusM / METRES_PER_DEGREE;
  const dLon = radiusM / (METRES_PER_DEGREE * Math.cos((lat * Math.PI) / 180));
  const ring = [];
  for (let i = 0; i < steps; i += 1) {
    const a = (2 * Math.PI * i) / steps;
    ring.push([lon + dLon * Math.cos(a), lat + dLat * Math.sin(a)]);
  }
  ring.push(ring[0]);
  return { type: 'Polygon', coordinates: [ring] };
}

/** Metres between two `[lon, lat]` points (haversine). */
export function distanceM([lon1, lat1], [lon2, lat2]) {
  const r = 6_371_008.8;
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * r * Math.asin(Math.sqrt(a));
}

/** Fits the map to `[lon, lat]` points (one point: zooms in around it). */
export function fitTo(map, points, maxZoom = 16) {
  if (!points.length) return;
  const bounds = new maplibregl.LngLatBounds(points[0], points[0]);
  for (const p of points) bounds.extend(p);
  map.fitBounds(bounds, { padding: 48, maxZoom, duration: 0 });
}

/** The zone's own shape as GeoJSON for drawing (a stored circle is a Point + `radius_m`). */
export function zoneShape(geometry, radiusM) {
  return geometry.type === 'Point' ? circlePolygon(geometry.coordinates, radiusM) : geometry;
}

/** All `[lon, lat]` positions of a geometry. */
export function positionsOf(geometry) {
  if (geometry.type === 'Point') return [geometry.coordinates];
  if (geometry.type === 'Polygon') return geometry.coordinates.flat();
  if (geometry.type === 'MultiPolygon') return geometry.coordinates.flat(2);
  return [];
}
