// Staff pages: the open alarms of my teams (triage order: critical first, newest first),
// refreshed every few seconds, and one alarm with what is needed to go out — the responder
// note, the position with its accuracy circle, age and source, the trail, a stale warning — the
// buttons Kvittera / På plats / Avsluta, and the live position over the alarm's SSE stream
// (`alarms/{id}/live`, authenticated by the session cookie).

import { get, post } from '../api.js';
import { field, h, replace } from '../dom.js';
import {
  ago, ALARM_KINDS, ALARM_STATES, clock, coord, CRITICAL_KINDS, dateTime, OUTCOMES, secondsSince, SOURCES,
} from '../format.js';
import {
  circlePolygon, createMap, fitTo, geojsonLayer, noMapBanner, positionsOf, zoneShape,
} from '../map.js';

/** How often the list asks for open alarms. */
const LIST_REFRESH_MS = 4000;
/** A newest fix older than this is flagged: watches report every 1–10 minutes when moving. */
const STALE_AFTER_SECS = 10 * 60;

export async function alarmsPage(main, _params, ctx) {
  document.title = 'Larm – trygg';
  const list = h('ul', { class: 'alarms', 'data-testid': 'alarm-list' });
  const summary = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
  main.append(h('h1', {}, 'Öppna larm'), summary, list);
  let known = null;
  let timer = null;

  const refresh = async () => {
    let alarms;
    try {
      alarms = await get('alarms?state=open&order=triage');
    } catch (error) {
      if (error.status !== 401) summary.textContent = 'Kunde inte hämta larmen; försöker igen …';
      return;
    }
    if (!ctx.isCurrent()) return;
    const fresh = known ? alarms.filter((a) => !known.has(a.id)) : [];
    known = new Set(alarms.map((a) => a.id));
    const critical = alarms.filter((a) => CRITICAL_KINDS.has(a.kind)).length;
    summary.textContent = alarms.length
      ? `${alarms.length} öppna larm, varav ${critical} kritiska${fresh.length ? ` – ${fresh.length} nytt` : ''}. Uppdaterat ${clock(new Date())}.`
      : `Inga öppna larm. Uppdaterat ${clock(new Date())}.`;
    replace(list, alarms.map((a) => alarmItem(a, fresh.some((f) => f.id === a.id))));
  };
  await refresh();
  timer = setInterval(refresh, LIST_REFRESH_MS);
  return () => clearInterval(timer);
}

function alarmItem(a, isNew) {
  const critical = CRITICAL_KINDS.has(a.kind);
  return h('li', { class: `alarm ${critical ? 'critical' : 'technical'}${isNew ? ' new' : ''}`, 'data-testid': 'alarm' },
    h('a', { href: `#/larm/${a.id}` },
      h('strong', {}, ALARM_KINDS[a.kind] || a.kind),
      ' – ', a.wearer ? a.wearer.name : `okänd brukare (klocka ${a.device_id || '?'})`),
    h('span', { class: 'meta' },
      h('span', { class: `state ${a.state}` }, ALARM_STATES[a.state] || a.state),
      ` · ${clock(a.raised_at)} (${ago(secondsSince(a.raised_at))})`,
      a.acknowledged ? ` · kvitterat av ${a.acknowledged.name}` : '',
      a.on_site_overdue ? h('span', { class: 'tag warn' }, 'ingen på plats i tid') : null));
}

export async function alarmPage(main, [id], ctx) {
  let alarm = await get(`alarms/${id}`);
  // A zone alarm names its zone by id: its name and shape come from the brukare's zones, which
  // the staff member may read while they have the alarm (none when they may not).
  const zone = alarm.zone && alarm.wearer
    ? (await get(`wearers/${alarm.wearer.id}/zones`).catch(() => ({ features: [] }))).features.find((z) => z.id === alarm.zone)
    : null;
  document.title = `${ALARM_KINDS[alarm.kind] || 'Larm'} – trygg`;
  const staff = ctx.session.role === 'staff';
  const mayClose = staff || ctx.session.role === 'tenant_admin';
  let latest = alarm.last_position || alarm.position || null;
  const trail = (alarm.trail || []).map((p) => [p.lon, p.lat]);

  const heading = h('h1', {});
  const stateLine = h('p', { class: 'meta', 'data-testid': 'alarm-state' });
  const positionBox = h('div', { class: 'position', 'data-testid': 'position', 'aria-live': 'polite' });
  const staleBox = h('div', { 'data-testid': 'stale' });
  const actions = h('div', { class: 'actions' });
  const actionError = h('p', { class: 'form-error', role: 'alert' });
  const events = h('ol', { class: 'events' });
  const mapBox = h('div', { class: 'map', role: 'region', 'aria-label': 'Karta med brukarens position och spår' });
  const liveNote = h('p', { class: 'muted', 'data-testid': 'live' });

  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/larm' }, '← Öppna larm')),
    heading, stateLine, staleBox,
    h('section', { class: 'note', 'aria-label': 'Att veta innan du går' },
      h('h2', {}, 'Anteckning'), h('p', { 'data-testid': 'wearer-note' }, alarm.wearer_note || '–'),
      h('p', {}, 'Kontaktperson: ', [alarm.contact_name, alarm.contact_phone].filter(Boolean).join(', ') || '–')),
    h('section', { 'aria-label': 'Position' }, h('h2', {}, 'Position'), positionBox, liveNote, mapBox),
    actions, actionError,
    h('section', {}, h('h2', {}, 'Händelser'), events));

  const showAlarm = () => {
    replace(heading, ALARM_KINDS[alarm.kind] || alarm.kind, ' – ', alarm.wearer ? alarm.wearer.name : 'okänd brukare');
    replace(stateLine,
      h('span', { class: `state ${alarm.state}` }, ALARM_STATES[alarm.state] || alarm.state),
      ` · utlöst ${dateTime(alarm.raised_at)}`,
      alarm.zone ? ` · zon ${zone ? zone.properties.name : '(okänd)'}` : '',
      alarm.acknowledged ? ` · kvitterat av ${alarm.acknowledged.name} ${clock(alarm.acknowledged.at)}` : '',
      alarm.on_site ? ` · på plats ${clock(alarm.on_site.at)}` : '',
      alarm.closed ? ` · avslutat ${clock(alarm.closed.at)} (${OUTCOMES[alarm.outcome] || alarm.outcome})` : '');
    replace(actions, actionButtons());
  };

  const showPosition = () => {
    if (!latest) {
      replace(positionBox, h('p', {}, 'Ingen position känd.'));
      replace(staleBox);
      return;
    }
    const age = secondsSince(latest.time);
    replace(positionBox,
      h('p', { class: 'big' }, h('time', { datetime: latest.time }, clock(latest.time)), ` (${ago(age)})`),
      h('p', {},
        `Källa: ${SOURCES[latest.source] || SOURCES.unknown}`,
        latest.accuracy_m != null ? ` · noggrannhet ±${Math.round(latest.accuracy_m)} m` : ' · noggrannhet okänd',
        ` · ${coord(latest.lat)}, ${coord(latest.lon)}`));
    replace(staleBox, age > STALE_AFTER_SECS && alarm.state !== 'closed'
      ? h('div', { class: 'notice warn', role: 'alert' },
        h('strong', {}, 'Gammal position. '),
        `Senaste positionen är från ${clock(latest.time)} (${ago(age)}). Brukaren kan ha rört sig sedan dess.`)
      : null);
  };

  const step = async (path, body) => {
    actionError.textContent = '';
    try {
      await post(`alarms/${id}/${path}`, body);
      alarm = await get(`alarms/${id}`);
      showAlarm();
      loadEvents();
    } catch (error) {
      if (error.status === 401) return;
      actionError.textContent = error.status === 409
        ? `Det gick inte: ${error.message}. Sidan visar nu larmets läge.`
        : `Det gick inte: ${error.message}`;
      alarm = await get(`alarms/${id}`).catch(() => alarm);
      showAlarm();
    }
  };

  function actionButtons() {
    if (alarm.state === 'closed') return h('p', { class: 'notice info' }, 'Larmet är avslutat.');
    const buttons = [];
    if (staff && (alarm.state === 'raised' || alarm.state === 'notified')) {
      buttons.push(h('button', { type: 'button', class: 'primary big', onclick: () => step('acknowledge', {}) }, 'Kvittera'));
    }
    if (staff && alarm.state === 'acknowledged') {
      buttons.push(h('button', { type: 'button', class: 'primary big', onclick: () => step('on-site', {}) }, 'På plats'));
    }
    if (!mayClose) return buttons;
    const outcome = h('select', { name: 'outcome', required: true },
      h('option', { value: '' }, 'Välj utfall …'),
      Object.entries(OUTCOMES).map(([value, label]) => h('option', { value }, label)));
    const note = h('textarea', { name: 'note', rows: 3, maxlength: 2000 });
    const outcomeField = field('Utfall', outcome);
    const form = h('form', { class: 'card close', 'aria-label': 'Avsluta larmet' },
      h('h2', {}, 'Avsluta'), outcomeField, field('Anteckning', note), h('button', { type: 'submit' }, 'Avsluta'));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (!outcome.value) {
        outcomeField.showError('Välj hur larmet slutade.');
        outcome.focus();
        return;
      }
      outcomeField.showError(null);
      step('close', { outcome: outcome.value, note: note.value });
    });
    return [h('div', { class: 'buttons' }, buttons), form];
  }

  async function loadEvents() {
    const list = await get(`alarms/${id}/events`).catch(() => []);
    replace(events, list.map((e) => h('li', {},
      h('time', { datetime: e.at }, clock(e.at)), ` ${eventWord(e.kind)}`,
      e.actor ? ` – ${e.actor.name}` : '', e.detail ? h('span', { class: 'muted' }, ` (${e.detail})`) : null)));
  }

  showAlarm();
  showPosition();
  loadEvents();
  const ageTimer = setInterval(showPosition, 15000);

  // The live position: the stream sends the last known position, then each new fix.
  let source = null;
  let map = null;
  let draw = null;
  const redraw = () => {
    if (!draw) return;
    draw.trail({ type: 'FeatureCollection', features: trail.length > 1 ? [{ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: trail } }] : [] });
    const here = latest ? [latest.lon, latest.lat] : null;
    draw.accuracy(here && latest.accuracy_m ? { type: 'Feature', properties: {}, geometry: circlePolygon(here, latest.accuracy_m) } : null);
    draw.position(here ? { type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: here } } : null);
  };
  if (alarm.state !== 'closed') {
    source = new EventSource(`/api/v1/alarms/${id}/live`);
    liveNote.textContent = 'Följer positionen live …';
    source.addEventListener('position', (event) => {
      const p = JSON.parse(event.data);
      latest = p;
      const last = trail[trail.length - 1];
      if (!last || last[0] !== p.lon || last[1] !== p.lat) trail.push([p.lon, p.lat]);
      liveNote.textContent = `Live: senaste uppdatering ${clock(new Date())}.`;
      showPosition();
      redraw();
      if (map) map.easeTo({ center: [p.lon, p.lat], duration: 300 });
    });
    for (const end of ['closed', 'ended', 'shutdown']) {
      source.addEventListener(end, async () => {
        source.close();
        liveNote.textContent = end === 'shutdown' ? 'Servern startar om; ladda om sidan om en stund.' : 'Livepositionen har slutat.';
        alarm = await get(`alarms/${id}`).catch(() => alarm);
        showAlarm();
      });
    }
    source.addEventListener('error', () => {
      liveNote.textContent = 'Livepositionen är avbruten; försöker ansluta igen …';
    });
  }

  map = await createMap(mapBox, latest ? { center: [latest.lon, latest.lat], zoom: 15 } : undefined);
  const leave = () => {
    clearInterval(ageTimer);
    if (source) source.close();
    if (map) map.remove();
  };
  if (!ctx.isCurrent()) {
    leave();
    return null;
  }
  if (!map) {
    mapBox.replaceWith(noMapBanner('Positionen står i text ovan.'));
    return leave;
  }
  if (zone) {
    geojsonLayer(map, 'zon', [
      { id: 'zon-yta', type: 'fill', paint: { 'fill-color': '#1c7c54', 'fill-opacity': 0.1 } },
      { id: 'zon-kant', type: 'line', paint: { 'line-color': '#1c7c54', 'line-width': 2 } },
    ])({ type: 'Feature', properties: {}, geometry: zoneShape(zone.geometry, zone.properties.radius_m) });
  }
  draw = {
    trail: geojsonLayer(map, 'spar', [{ id: 'spar', type: 'line', paint: { 'line-color': '#345', 'line-width': 2, 'line-dasharray': [2, 1] } }]),
    accuracy: geojsonLayer(map, 'noggrannhet', [
      { id: 'noggrannhet-yta', type: 'fill', paint: { 'fill-color': '#1f6fb2', 'fill-opacity': 0.15 } },
      { id: 'noggrannhet-kant', type: 'line', paint: { 'line-color': '#1f6fb2', 'line-width': 1 } },
    ]),
    position: geojsonLayer(map, 'position', [{ id: 'position', type: 'circle', paint: { 'circle-radius': 7, 'circle-color': '#c0392b', 'circle-stroke-color': '#fff', 'circle-stroke-width': 2 } }]),
  };
  redraw();
  const inView = [...trail, ...(zone ? positionsOf(zoneShape(zone.geometry, zone.properties.radius_m)) : [])];
  if (inView.length > 1) fitTo(map, inView);
  return leave;
}

const EVENT_WORDS = {
  raised: 'larmet utlöstes',
  repeated: 'larmet upprepades',
  notified: 'personal aviserades',
  acknowledged: 'kvitterat',
  on_site: 'på plats (närvaromarkering)',
  closed: 'avslutat',
  returned: 'brukaren är tillbaka i zonen',
  escalated: 'eskalerat',
  received: 'mottaget i telefonen',
  superseded: 'ersatt av ett nytt larm',
  push_sent: 'pushnotis skickad',
  push_retry: 'pushnotisen försöks igen',
  push_failed: 'pushnotisen gick inte fram',
  escalation_exhausted: 'ingen fler i larmordningen',
  alarm_centre_notified: 'larmcentralen larmad',
};

function eventWord(kind) {
  return EVENT_WORDS[kind] || kind;
}

