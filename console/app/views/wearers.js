// The caseworker's pages about brukare: the searchable list, and one brukare with watches,
// consent records, trygghetszoner (each shown active or inactive, and why), team and
// larmordning (responder order). All read through the public API.

import { get } from '../api.js';
import { h, replace } from '../dom.js';
import {
  ago, CONSENT_COVERS, CONSENT_GIVEN_BY, date, DAYS, secondsSince, swedish, ZONE_KINDS,
} from '../format.js';
import { createMap, fitTo, geojsonLayer, noMapBanner, positionsOf, zoneShape } from '../map.js';

export async function wearersPage(main) {
  document.title = 'Brukare – trygg';
  const [wearers, teams] = await Promise.all([get('wearers'), get('teams')]);
  const teamName = new Map(teams.map((t) => [t.id, t.name]));
  const search = h('input', { type: 'search', id: 'sok', autocomplete: 'off', placeholder: 'Namn' });
  const list = h('ul', { class: 'list', 'data-testid': 'wearer-list' });
  const count = h('p', { class: 'muted', 'aria-live': 'polite' });
  const show = () => {
    const q = search.value.trim().toLocaleLowerCase('sv');
    const hits = wearers
      .filter((w) => !q || w.name.toLocaleLowerCase('sv').includes(q))
      .sort((a, b) => a.name.localeCompare(b.name, 'sv'));
    count.textContent = `${hits.length} av ${wearers.length} brukare`;
    replace(list, hits.map((w) => h('li', {},
      h('a', { href: `#/brukare/${w.id}` }, w.name),
      h('span', { class: 'muted' }, w.team ? ` · ${teamName.get(w.team) || 'team'}` : ' · inget team'),
      w.active ? null : h('span', { class: 'tag' }, 'avslutad'),
      w.zones_alarming ? null : h('span', { class: 'tag warn' }, 'zoner larmar inte'))));
  };
  search.addEventListener('input', show);
  main.append(h('h1', {}, 'Brukare'),
    h('div', { class: 'field' }, h('label', { for: 'sok' }, 'Sök brukare'), search),
    count, list);
  show();
}

export async function wearerPage(main, [id], ctx) {
  const [wearer, consents, zones, responders, devices, teams] = await Promise.all([
    get(`wearers/${id}`),
    get(`wearers/${id}/consents`),
    get(`wearers/${id}/zones`),
    get(`wearers/${id}/responders`),
    get('devices').catch(() => []),
    get('teams'),
  ]);
  document.title = `${wearer.name} – trygg`;
  const teamName = new Map(teams.map((t) => [t.id, t.name]));
  const editor = ctx.session.role !== 'staff';
  const mapBox = h('div', { class: 'map small', 'aria-label': 'Karta med brukarens trygghetszoner', role: 'region' });

  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/brukare' }, '← Alla brukare')),
    h('h1', {}, wearer.name, wearer.active ? null : h('span', { class: 'tag' }, 'avslutad')),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Anteckning till personal'), h('dd', {}, wearer.note || '–'),
      h('dt', {}, 'Kontaktperson'), h('dd', {}, [wearer.contact_name, wearer.contact_phone].filter(Boolean).join(', ') || '–'),
      h('dt', {}, 'Team'), h('dd', {}, wearer.team ? teamName.get(wearer.team) || 'okänt team' : 'inget team')),
    section('Trygghetszoner', zonesSection(wearer, zones, editor), mapBox),
    section('Samtycken', consentsSection(consents)),
    section('Klockor', devicesSection(devices.filter((d) => d.wearer === id))),
    section('Larmordning', respondersSection(responders, teamName)),
  );

  const map = await createMap(mapBox);
  if (!ctx.isCurrent()) return map ? () => map.remove() : null;
  if (!map) {
    mapBox.replaceWith(noMapBanner('Zonerna står i listan ovan.'));
    return null;
  }
  const features = zones.features.map((z) => ({
    type: 'Feature',
    properties: { name: z.properties.name, alarming: z.properties.alarming },
    geometry: zoneShape(z.geometry, z.properties.radius_m),
  }));
  geojsonLayer(map, 'zoner', [
    { id: 'zoner-yta', type: 'fill', paint: { 'fill-color': ['case', ['get', 'alarming'], '#1c7c54', '#888888'], 'fill-opacity': 0.2 } },
    { id: 'zoner-kant', type: 'line', paint: { 'line-color': ['case', ['get', 'alarming'], '#1c7c54', '#666666'], 'line-width': 2 } },
  ])({ type: 'FeatureCollection', features });
  fitTo(map, zones.features.flatMap((z) => positionsOf(zoneShape(z.geometry, z.properties.radius_m))));
  return () => map.remove();
}

function section(title, ...content) {
  return h('section', { 'aria-labelledby': `rubrik-${title}` }, h('h2', { id: `rubrik-${title}` }, title), content);
}

/** "mån–fre 22:00–07:00" for each window, or "alltid". */
export function scheduleText(schedule) {
  if (!schedule || !Array.isArray(schedule.windows)) return 'alltid aktiv';
  if (!schedule.windows.length) return 'aldrig aktiv (schemat har inga tider)';
  const dayName = new Map(DAYS);
  return schedule.windows.map((w) => {
    const days = (w.days || []).map((d) => dayName.get(String(d).slice(0, 3).toLowerCase()) || d);
    return `${days.length === 7 ? 'alla dagar' : days.join(', ')} ${w.from}–${w.to}`;
  }).join('; ');
}

function zonesSection(wearer, zones, editor) {
  const items = zones.features.map((z) => {
    const p = z.properties;
    const shape = z.geometry.type === 'Point' ? `cirkel, radie ${Math.round(p.radius_m)} m` : 'polygon';
    return h('li', { 'data-testid': 'zone' },
      editor ? h('a', { href: `#/brukare/${wearer.id}/zoner/${z.id}` }, p.name) : h('strong', {}, p.name),
      h('span', {}, ` · ${ZONE_KINDS[p.kind] || p.kind} · ${shape} · ${scheduleText(p.schedule)}`),
      p.alarming
        ? h('span', { class: 'tag ok' }, 'aktiv')
        : h('span', { class: 'tag warn', 'data-testid': 'zone-inactive' },
          `inaktiv: ${swedish(p.not_alarming_reason || 'okänt skäl')}`));
  });
  return [
    wearer.zones_alarming ? null : h('p', { class: 'notice warn', 'data-testid': 'zones-not-alarming' },
      'Zonerna larmar inte nu: ', swedish(wearer.zones_not_alarming_reason || 'okänt skäl'),
      '. Registrera ett samtycke (eller beslut) som omfattar passiva larm.'),
    items.length ? h('ul', { class: 'list' }, items) : h('p', { class: 'muted' }, 'Inga trygghetszoner.'),
    editor ? h('p', {}, h('a', { class: 'button', href: `#/brukare/${wearer.id}/zoner/ny` }, 'Ny trygghetszon')) : null,
  ];
}

function consentState(c) {
  if (c.withdrawn_at) return `återkallat ${date(c.withdrawn_at)}`;
  if (c.in_force) return 'i kraft';
  if (new Date(c.valid_from) > new Date()) return `gäller från ${date(c.valid_from)}`;
  return 'har upphört';
}

function consentsSection(consents) {
  if (!consents.length) return h('p', { class: 'muted' }, 'Inga samtycken registrerade.');
  return h('table', {},
    h('thead', {}, h('tr', {}, ['Omfattar', 'Givet av', 'Dokument', 'Giltigt', 'Status'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, consents.map((c) => h('tr', {},
      h('td', {}, c.covers.map((x) => CONSENT_COVERS[x] || x).join(', ')),
      h('td', {}, CONSENT_GIVEN_BY[c.given_by] || c.given_by),
      h('td', {}, c.document_ref),
      h('td', {}, `${date(c.valid_from)} – ${c.valid_until ? date(c.valid_until) : 'tills vidare'}`),
      h('td', {}, h('span', { class: c.in_force ? 'tag ok' : 'tag' }, consentState(c)))))));
}

function devicesSection(devices) {
  if (!devices.length) return h('p', { class: 'muted' }, 'Ingen klocka kopplad.');
  return h('ul', { class: 'list' }, devices.map((d) => h('li', {},
    h('strong', {}, d.id), ` · ${d.protocol}`,
    d.last_heard_at ? ` · hördes senast ${ago(secondsSince(d.last_heard_at))}` : ' · aldrig hörd',
    d.last_battery_pct != null ? ` · batteri ${d.last_battery_pct} %` : '',
    d.connected ? h('span', { class: 'tag ok' }, 'ansluten') : null)));
}

function respondersSection(responders, teamName) {
  if (!responders.steps.length) {
    return h('p', { class: 'muted' }, 'Ingen larmordning: larm går till brukarens team, annars till kommunens reservteam.');
  }
  return h('ol', { class: 'list' }, responders.steps.map((s) => h('li', {},
    s.team ? `Team ${teamName.get(s.team) || 'okänt'}` : `Personal (konto …${String(s.user).slice(-6)})`,
    h('span', { class: 'muted' }, ` · vidare efter ${Math.round(s.escalate_after_secs / 60)} min utan kvittens`))));
}
