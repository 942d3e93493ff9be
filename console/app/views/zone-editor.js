// The zone editor: a trygghetszon is a polygon or a circle (stored as a Point + `radius_m`),
// with a name, a kind and a weekly schedule, saved only by an explicit Save.
//
// The form is the zone: drawing on the map (terra-draw, real pointer events) fills the vertex
// table or the centre + radius fields, and every edit of the form redraws the preview. So the
// keyboard is a full alternative (WCAG 2.1.1), and the same form is what remains when the
// browser has no WebGL. Before saving, "Provkör" asks the server how the zone would have behaved
// over the brukare's last 7 days of fixes (the real exit policy and schedule): the exits it would
// have raised, listed with their times and drawn on the map.

import { ApiError, get, post, put } from '../api.js';
import { field, h, replace, showFieldError, uid } from '../dom.js';
import { clock, DAYS, dateTime, swedish, ZONE_KINDS } from '../format.js';
import { createMap, distanceM, fitTo, geojsonLayer, noMapBanner, positionsOf, zoneShape } from '../map.js';
import { scheduleText } from './wearers.js';

const TERRA_DRAW = '/vendor/terra-draw-1.35.0/terra-draw.module.js';
const ADAPTER = '/vendor/terra-draw-maplibre-gl-adapter-1.4.1/terra-draw-maplibre-gl-adapter.module.js';

const EVENT_TEXT = {
  exit: 'Lämnade zonen (larm)',
  enter: 'Gick in i zonen (larm)',
  return: 'Tillbaka i zonen',
};

/** A decimal number typed with a comma or a point; NaN when it is none. */
const parseNumber = (text) => (String(text).trim() === '' ? NaN : Number(String(text).trim().replace(',', '.')));
/** Six decimals of a degree: about 0.1 m, more than any watch can tell. */
const round6 = (n) => Math.round(n * 1e6) / 1e6;

export async function zoneEditorPage(main, [wearerId, zoneId], ctx) {
  const [wearer, zones] = await Promise.all([get(`wearers/${wearerId}`), get(`wearers/${wearerId}/zones`)]);
  const existing = zoneId ? zones.features.find((z) => z.id === zoneId) : null;
  if (zoneId && !existing) throw new ApiError(404, { error: 'zone not found' });
  document.title = `${existing ? 'Ändra' : 'Ny'} trygghetszon – trygg`;

  // --- the form ---
  const name = h('input', { type: 'text', name: 'name', maxlength: 100, required: true, value: existing?.properties.name ?? '' });
  const nameField = field('Namn', name, 't.ex. Hemma, Trädgården, Natt');

  const kindName = uid('kind');
  const kindError = h('p', { class: 'field-error', id: uid('kind-error'), hidden: true });
  const kindInputs = Object.entries(ZONE_KINDS).map(([value, label]) => {
    const input = h('input', { type: 'radio', name: kindName, value, checked: (existing?.properties.kind ?? 'stay_inside') === value });
    return h('label', { class: 'choice' }, input, ` ${label}`);
  });
  const kindSet = h('fieldset', {}, h('legend', {}, 'Typ av zon'), kindInputs, kindError);
  const kindValue = () => kindSet.querySelector('input:checked')?.value;

  const shapeName = uid('shape');
  const isCircle = existing?.geometry.type === 'Point';
  const shapePolygon = h('input', { type: 'radio', name: shapeName, value: 'polygon', checked: !isCircle });
  const shapeCircle = h('input', { type: 'radio', name: shapeName, value: 'circle', checked: isCircle });
  const shapeSet = h('fieldset', {}, h('legend', {}, 'Form'),
    h('label', { class: 'choice' }, shapePolygon, ' Polygon (hörn för hörn)'),
    h('label', { class: 'choice' }, shapeCircle, ' Cirkel (centrum och radie)'));
  const shape = () => (shapeCircle.checked ? 'circle' : 'polygon');

  const centreLat = h('input', { type: 'text', inputmode: 'decimal', name: 'centre_lat', autocomplete: 'off' });
  const centreLon = h('input', { type: 'text', inputmode: 'decimal', name: 'centre_lon', autocomplete: 'off' });
  const radius = h('input', { type: 'text', inputmode: 'numeric', name: 'radius_m', autocomplete: 'off' });
  const latField = field('Centrum, latitud', centreLat, 'grader, t.ex. 57,7089');
  const lonField = field('Centrum, longitud', centreLon, 'grader, t.ex. 11,9746');
  const radiusField = field('Radie i meter', radius);
  const circleSet = h('fieldset', { 'data-testid': 'circle-form' }, h('legend', {}, 'Cirkel'), latField, lonField, radiusField);
  if (isCircle) {
    centreLon.value = String(existing.geometry.coordinates[0]);
    centreLat.value = String(existing.geometry.coordinates[1]);
    radius.value = String(existing.properties.radius_m);
  }

  const vertexBody = h('tbody', {});
  const vertexTable = h('table', { class: 'vertices', 'data-testid': 'vertex-table' },
    h('caption', {}, 'Polygonens hörn i ordning (latitud, longitud i grader)'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Hörn'), h('th', { scope: 'col' }, 'Latitud'),
      h('th', { scope: 'col' }, 'Longitud'), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Ta bort')))),
    vertexBody);
  const addVertex = h('button', { type: 'button', onclick: () => { vertexRow(); vertexBody.lastChild.querySelector('input').focus(); } }, 'Lägg till hörn');
  const polygonSet = h('fieldset', { 'data-testid': 'polygon-form' }, h('legend', {}, 'Polygon'), vertexTable, addVertex);
  const geometryError = h('p', { class: 'field-error', id: uid('geometry-error'), hidden: true, 'data-testid': 'geometry-error' });

  function vertexRow(lat = '', lon = '') {
    const n = vertexBody.children.length + 1;
    const latIn = h('input', { type: 'text', inputmode: 'decimal', 'aria-label': `Hörn ${n}, latitud`, value: lat });
    const lonIn = h('input', { type: 'text', inputmode: 'decimal', 'aria-label': `Hörn ${n}, longitud`, value: lon });
    const row = h('tr', {}, h('th', { scope: 'row' }, String(n)), h('td', {}, latIn), h('td', {}, lonIn),
      h('td', {}, h('button', {
        type: 'button', class: 'link', 'aria-label': `Ta bort hörn ${n}`,
        onclick: () => { row.remove(); renumber(); formChanged(); },
      }, 'Ta bort')));
    vertexBody.append(row);
  }
  function renumber() {
    [...vertexBody.children].forEach((row, i) => {
      row.querySelector('th').textContent = String(i + 1);
      const [latIn, lonIn] = row.querySelectorAll('input');
      latIn.setAttribute('aria-label', `Hörn ${i + 1}, latitud`);
      lonIn.setAttribute('aria-label', `Hörn ${i + 1}, longitud`);
      row.querySelector('button').setAttribute('aria-label', `Ta bort hörn ${i + 1}`);
    });
  }
  function setVertices(ring) {
    vertexBody.replaceChildren();
    for (const [lon, lat] of ring) vertexRow(String(round6(lat)), String(round6(lon)));
  }
  if (existing && !isCircle && existing.geometry.type === 'Polygon') setVertices(existing.geometry.coordinates[0].slice(0, -1));
  else for (let i = 0; i < 3; i += 1) vertexRow();

  // The schedule: always, or one weekly window (e.g. nights 22–07).
  const schedName = uid('sched');
  const existingWindow = existing?.properties.schedule?.windows?.[0];
  const always = h('input', { type: 'radio', name: schedName, value: 'always', checked: !existingWindow });
  const timed = h('input', { type: 'radio', name: schedName, value: 'timed', checked: Boolean(existingWindow) });
  const dayBoxes = DAYS.map(([code, label]) => {
    const on = existingWindow ? existingWindow.days.some((d) => String(d).slice(0, 3).toLowerCase() === code) : true;
    return h('label', { class: 'day' }, h('input', { type: 'checkbox', value: code, checked: on }), ` ${label}`);
  });
  const from = h('input', { type: 'text', name: 'from', inputmode: 'numeric', pattern: '[0-2][0-9]:[0-5][0-9]', value: existingWindow?.from ?? '22:00' });
  const to = h('input', { type: 'text', name: 'to', inputmode: 'numeric', pattern: '[0-2][0-9]:[0-5][0-9]', value: existingWindow?.to ?? '07:00' });
  const scheduleError = h('p', { class: 'field-error', id: uid('schedule-error'), hidden: true });
  const nights = h('button', { type: 'button', onclick: () => {
    timed.checked = true;
    for (const box of dayBoxes) box.querySelector('input').checked = true;
    from.value = '22:00';
    to.value = '07:00';
    timesChanged();
  } }, 'Nätter 22–07');
  const timesBox = h('div', { class: 'times' },
    h('fieldset', { class: 'days' }, h('legend', {}, 'Dagar'), dayBoxes),
    field('Från (tt:mm, 24 h)', from), field('Till (tt:mm)', to), nights);
  const scheduleSet = h('fieldset', {}, h('legend', {}, 'Schema'),
    h('label', { class: 'choice' }, always, ' Alltid aktiv'),
    h('label', { class: 'choice' }, timed, ' Bara vissa tider varje vecka'),
    timesBox, scheduleError);
  const timesChanged = () => { timesBox.hidden = !timed.checked; };
  always.addEventListener('change', timesChanged);
  timed.addEventListener('change', timesChanged);
  timesChanged();

  const formError = h('p', { class: 'form-error', role: 'alert', 'data-testid': 'form-error' });
  const dryRunButton = h('button', { type: 'button', 'data-testid': 'dry-run' }, 'Provkör mot de senaste 7 dagarna');
  const saveButton = h('button', { type: 'submit', class: 'primary' }, 'Spara zonen');
  const dryRunResult = h('section', { 'aria-live': 'polite', 'data-testid': 'dry-run-result', class: 'dry-run' });
  const form = h('form', { class: 'zone-form', novalidate: true, 'aria-label': 'Zonens uppgifter' },
    nameField, kindSet, shapeSet, circleSet, polygonSet, geometryError, scheduleSet, formError,
    h('div', { class: 'buttons' }, dryRunButton, saveButton), dryRunResult);

  // --- the map ---
  const mapBox = h('div', { class: 'map', role: 'application', 'aria-label': 'Karta för att rita zonen med mus eller finger' });
  // Enabled once the drawing library has loaded.
  const drawPolygon = h('button', { type: 'button', 'data-testid': 'draw-polygon', disabled: true }, 'Rita polygon');
  const drawCircle = h('button', { type: 'button', 'data-testid': 'draw-circle', disabled: true }, 'Rita cirkel');
  const drawHint = h('p', { class: 'hint', 'aria-live': 'polite' });
  const mapPart = h('div', { class: 'map-part' },
    h('div', { class: 'toolbar' }, drawPolygon, drawCircle), drawHint, mapBox);

  replace(main,
    h('p', { class: 'crumbs' }, h('a', { href: `#/brukare/${wearerId}` }, `← ${wearer.name}`)),
    h('h1', {}, existing ? `Ändra trygghetszon ”${existing.properties.name}”` : `Ny trygghetszon för ${wearer.name}`),
    wearer.zones_alarming ? null : h('p', { class: 'notice warn' },
      `Zonen sparas men larmar inte förrän samtycke finns: ${swedish(wearer.zones_not_alarming_reason || '')}.`),
    h('div', { class: 'editor' }, mapPart, form));

  const showShape = () => {
    circleSet.hidden = shape() !== 'circle';
    polygonSet.hidden = shape() !== 'polygon';
  };
  shapePolygon.addEventListener('change', () => { showShape(); formChanged(); });
  shapeCircle.addEventListener('change', () => { showShape(); formChanged(); });
  showShape();

  /**
   * The zone as the API takes it; throws when it is incomplete, showing why at the fields
   * unless `quiet` (the live preview while someone is still typing).
   */
  function zoneBody({ quiet = false } = {}) {
    if (!quiet) clearErrors();
    const errors = [];
    let geometry;
    let radiusM = null;
    if (shape() === 'circle') {
      const lat = parseNumber(centreLat.value);
      const lon = parseNumber(centreLon.value);
      radiusM = parseNumber(radius.value);
      if (Number.isNaN(lat)) errors.push(() => latField.showError('Ange latitud som ett tal.'));
      if (Number.isNaN(lon)) errors.push(() => lonField.showError('Ange longitud som ett tal.'));
      if (Number.isNaN(radiusM)) errors.push(() => radiusField.showError('Ange radien i meter.'));
      geometry = { type: 'Point', coordinates: [lon, lat] };
    } else {
      const ring = [...vertexBody.children].map((row) => {
        const [latIn, lonIn] = row.querySelectorAll('input');
        return [parseNumber(lonIn.value), parseNumber(latIn.value)];
      }).filter(([lon, lat]) => !(Number.isNaN(lon) && Number.isNaN(lat)));
      if (ring.some(([lon, lat]) => Number.isNaN(lon) || Number.isNaN(lat))) {
        errors.push(() => showGeometryError('Varje hörn behöver både latitud och longitud som tal.'));
      } else if (ring.length < 3) {
        errors.push(() => showGeometryError('En polygon behöver minst tre hörn. Rita på kartan eller fyll i tabellen.'));
      }
      geometry = { type: 'Polygon', coordinates: [[...ring, ring[0]]] };
    }
    let schedule = null;
    if (timed.checked) {
      const days = dayBoxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
      schedule = { windows: [{ days, from: from.value.trim(), to: to.value.trim() }] };
    }
    if (errors.length) {
      if (!quiet) errors.forEach((show) => show());
      throw new Error('incomplete');
    }
    return { name: name.value, kind: kindValue(), geometry, radius_m: radiusM, schedule };
  }

  function showGeometryError(message) {
    const target = shape() === 'circle' ? centreLat : vertexBody.querySelector('input') || addVertex;
    showFieldError(target, geometryError, message);
  }

  function clearErrors() {
    for (const f of [nameField, latField, lonField, radiusField]) f.showError(null);
    showFieldError(kindSet, kindError, null);
    showFieldError(vertexBody.querySelector('input') || addVertex, geometryError, null);
    showFieldError(scheduleSet, scheduleError, null);
    formError.textContent = '';
  }

  /** Puts each 422 field message at its field. */
  function showApiErrors(error) {
    const fields = error.fields;
    const shown = [];
    for (const [key, message] of Object.entries(fields)) {
      const text = swedish(message);
      if (key === 'name') nameField.showError(text);
      else if (key === 'kind') showFieldError(kindSet, kindError, text);
      else if (key === 'radius_m') radiusField.showError(text);
      else if (key.startsWith('geometry')) showGeometryError(text);
      else if (key.startsWith('schedule')) showFieldError(scheduleSet, scheduleError, text);
      else continue;
      shown.push(key);
    }
    formError.textContent = shown.length
      ? 'Rätta de markerade fälten.'
      : `Det gick inte: ${error.message}`;
    form.querySelector('[aria-invalid="true"]')?.focus();
  }

  // --- preview, drawing and dry-run on the map ---
  let map = null;
  let draw = null;
  let setPreview = () => {};
  let setDryRun = () => {};
  let showAll = () => {};

  function formChanged() {
    let body;
    try {
      body = zoneBody({ quiet: true });
    } catch {
      setPreview(null);
      return;
    }
    setPreview({ type: 'Feature', properties: {}, geometry: zoneShape(body.geometry, body.radius_m) });
  }
  form.addEventListener('input', (event) => {
    if (event.target === name || event.target.closest('.times')) return;
    formChanged();
  });

  dryRunButton.addEventListener('click', async () => {
    let body;
    try {
      body = zoneBody();
    } catch {
      return;
    }
    dryRunButton.disabled = true;
    replace(dryRunResult, h('p', { class: 'muted' }, 'Provkör …'));
    try {
      const result = await post(`wearers/${wearerId}/zones/dry-run`, body);
      showDryRun(result, body);
    } catch (error) {
      replace(dryRunResult);
      if (error instanceof ApiError && error.status === 422) showApiErrors(error);
      else if (error.status !== 401) formError.textContent = `Provkörningen gick inte: ${error.message}`;
    } finally {
      dryRunButton.disabled = false;
    }
  });

  function showDryRun(result, body) {
    const alarms = result.events.filter((e) => e.event !== 'return');
    replace(dryRunResult,
      h('h2', {}, 'Provkörning'),
      h('p', { 'data-testid': 'dry-run-summary' },
        `${dateTime(result.from)} – ${dateTime(result.to)}: ${result.fixes_considered} positioner. `,
        h('strong', {}, alarms.length === 0 ? 'Zonen hade inte gett något larm.'
          : `Zonen hade gett ${alarms.length} ${alarms.length === 1 ? 'larm' : 'larm'}.`)),
      result.events.length ? h('ol', { class: 'events', 'data-testid': 'dry-run-events' }, result.events.map((e) => h('li', { class: e.event },
        h('time', { datetime: e.time }, dateTime(e.time)), ` ${EVENT_TEXT[e.event] || e.event}`))) : null,
      alarms.length >= 5 ? h('p', { class: 'notice warn' }, 'Många larm: är zonen ritad för snävt, eller schemat för brett?') : null);
    setDryRun({
      type: 'FeatureCollection',
      features: result.events.map((e) => ({
        type: 'Feature', properties: { event: e.event, label: clock(e.time) }, geometry: { type: 'Point', coordinates: [e.lon, e.lat] },
      })),
    });
    showAll([...positionsOf(zoneShape(body.geometry, body.radius_m)), ...result.events.map((e) => [e.lon, e.lat])]);
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    let body;
    try {
      body = zoneBody();
    } catch {
      form.querySelector('[aria-invalid="true"]')?.focus();
      return;
    }
    saveButton.disabled = true;
    try {
      const saved = existing
        ? await put(`wearers/${wearerId}/zones/${existing.id}`, body)
        : await post(`wearers/${wearerId}/zones`, body);
      const warnings = (saved.warnings || []).map(swedish);
      ctx.navigate(`#/brukare/${wearerId}`, `Zonen ”${saved.properties.name}” är sparad (${scheduleText(saved.properties.schedule)}).${warnings.length ? ` Obs: ${warnings.join('; ')}.` : ''}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 422) showApiErrors(error);
      else if (error.status !== 401) formError.textContent = `Det gick inte att spara: ${error.message}`;
    } finally {
      saveButton.disabled = false;
    }
  });

  const others = zones.features.filter((z) => z.id !== zoneId);
  const around = (existing ? [existing] : others).flatMap((z) => positionsOf(zoneShape(z.geometry, z.properties.radius_m)));
  map = await createMap(mapBox);
  if (!ctx.isCurrent()) {
    if (map) map.remove();
    return null;
  }
  if (!map) {
    mapPart.replaceWith(noMapBanner('Ange zonen med formuläret: centrum och radie för en cirkel, eller hörnen i tabellen för en polygon.'));
    return null;
  }
  geojsonLayer(map, 'andra-zoner', [
    { id: 'andra-zoner', type: 'line', paint: { 'line-color': '#777', 'line-width': 1, 'line-dasharray': [3, 2] } },
  ])({ type: 'FeatureCollection', features: others.map((z) => ({ type: 'Feature', properties: {}, geometry: zoneShape(z.geometry, z.properties.radius_m) })) });
  const preview = geojsonLayer(map, 'zon', [
    { id: 'zon-yta', type: 'fill', paint: { 'fill-color': '#1c7c54', 'fill-opacity': 0.2 } },
    { id: 'zon-kant', type: 'line', paint: { 'line-color': '#1c7c54', 'line-width': 2 } },
  ]);
  setPreview = (feature) => preview(feature ? { type: 'FeatureCollection', features: [feature] } : null);
  const dryRunLayer = geojsonLayer(map, 'provkorning', [{
    id: 'provkorning', type: 'circle',
    paint: {
      'circle-radius': 6,
      'circle-color': ['match', ['get', 'event'], 'return', '#1c7c54', '#c0392b'],
      'circle-stroke-color': '#fff', 'circle-stroke-width': 2,
    },
  }]);
  setDryRun = (data) => dryRunLayer(data);
  showAll = (points) => fitTo(map, points, 17);
  if (around.length) fitTo(map, around, 17);
  formChanged();

  const [{ TerraDraw, TerraDrawPolygonMode, TerraDrawCircleMode }, { TerraDrawMapLibreGLAdapter }] =
    await Promise.all([import(TERRA_DRAW), import(ADAPTER)]);
  draw = new TerraDraw({
    adapter: new TerraDrawMapLibreGLAdapter({ map }),
    modes: [new TerraDrawPolygonMode(), new TerraDrawCircleMode()],
  });
  draw.start();
  const startDrawing = (mode) => {
    draw.clear();
    draw.setMode(mode);
    (mode === 'polygon' ? shapePolygon : shapeCircle).checked = true;
    showShape();
    drawHint.textContent = mode === 'polygon'
      ? 'Klicka ut hörnen på kartan; klicka på första hörnet igen för att stänga polygonen.'
      : 'Klicka i mitten, dra ut till radien och klicka igen.';
  };
  drawPolygon.addEventListener('click', () => startDrawing('polygon'));
  drawCircle.addEventListener('click', () => startDrawing('circle'));
  drawPolygon.disabled = false;
  drawCircle.disabled = false;
  draw.on('finish', (id) => {
    const feature = draw.getSnapshot().find((f) => f.id === id);
    if (!feature) return;
    const ring = feature.geometry.coordinates[0].slice(0, -1);
    if (feature.properties.mode === 'circle') {
      const centre = [ring.reduce((s, p) => s + p[0], 0) / ring.length, ring.reduce((s, p) => s + p[1], 0) / ring.length];
      const radiusM = feature.properties.radiusKilometers
        ? feature.properties.radiusKilometers * 1000
        : distanceM(centre, ring[0]);
      centreLat.value = String(round6(centre[1]));
      centreLon.value = String(round6(centre[0]));
      radius.value = String(Math.max(1, Math.round(radiusM)));
    } else {
      setVertices(ring);
    }
    draw.clear();
    draw.setMode('static');
    drawHint.textContent = 'Klart. Justera i formuläret vid behov, provkör och spara.';
    formChanged();
  });
  return () => {
    draw.stop();
    map.remove();
  };
}
