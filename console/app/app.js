// The console's entry point: who is logged in (the session cookie, asked of `auth/me`), the
// header and menu for their role, and hash routes to the pages. Hash routes keep the server's
// side simple (one `index.html`, no fallback routes) and make every page a link staff can share.

import { get, post, onSessionEnded } from './api.js';
import { h, replace } from './dom.js';
import { ROLES } from './format.js';
import { loginPage } from './views/login.js';
import { wearersPage, wearerPage } from './views/wearers.js';
import { zoneEditorPage } from './views/zone-editor.js';
import { alarmsPage, alarmPage } from './views/alarms.js';

const EDITORS = ['caseworker', 'tenant_admin'];
const ALARM_READERS = ['staff', 'tenant_admin', 'caseworker'];

const routes = [
  { path: /^\/brukare$/, page: wearersPage, roles: EDITORS },
  { path: /^\/brukare\/([^/]+)$/, page: wearerPage, roles: [...EDITORS, 'staff'] },
  { path: /^\/brukare\/([^/]+)\/zoner\/ny$/, page: zoneEditorPage, roles: EDITORS },
  { path: /^\/brukare\/([^/]+)\/zoner\/([^/]+)$/, page: zoneEditorPage, roles: EDITORS },
  { path: /^\/larm$/, page: alarmsPage, roles: ALARM_READERS },
  { path: /^\/larm\/([^/]+)$/, page: alarmPage, roles: ALARM_READERS },
];

const main = document.getElementById('main');
const banner = document.getElementById('banner');
let session = null;
let leavePage = null;
let rendering = 0;
/** A message for the page the next navigation shows ("Zonen är sparad"). */
let nextMessage = null;

/** Shows a message over the page until the next navigation (or `null` to clear it). */
function flash(message, kind = 'info') {
  banner.hidden = !message;
  banner.className = `banner ${kind}`;
  banner.textContent = message || '';
}

function home() {
  return session?.role === 'staff' ? '#/larm' : '#/brukare';
}

function header() {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!session) {
    replace(nav);
    replace(who);
    return;
  }
  const links = [];
  if (EDITORS.includes(session.role)) links.push(h('a', { href: '#/brukare' }, 'Brukare'));
  if (ALARM_READERS.includes(session.role)) links.push(h('a', { href: '#/larm' }, 'Larm'));
  replace(nav, links);
  replace(who,
    h('span', { 'data-testid': 'who' }, `${session.name || ''} · ${ROLES[session.role] || session.role}`),
    h('button', { type: 'button', class: 'link', onclick: logout }, 'Logga ut'));
}

async function logout() {
  try {
    await post('auth/logout');
  } catch {
    // The session may already be gone; either way this browser shows the login page.
  }
  session = null;
  header();
  showLogin('Du är utloggad.');
}

function showLogin(message, returnTo) {
  if (leavePage) leavePage();
  leavePage = null;
  flash(null);
  replace(main);
  loginPage(main, {
    message,
    onLoggedIn: (me) => {
      session = me;
      header();
      const target = returnTo && returnTo !== '#/' ? returnTo : home();
      if (window.location.hash === target) render();
      else window.location.hash = target;
    },
  });
  document.title = 'Logga in – trygg';
}

onSessionEnded(() => {
  if (!session) return;
  session = null;
  header();
  showLogin('Din session har gått ut. Logga in igen.', window.location.hash);
});

async function render() {
  const ticket = ++rendering;
  if (leavePage) leavePage();
  leavePage = null;
  flash(nextMessage, 'ok');
  nextMessage = null;
  if (!session) {
    showLogin(null, window.location.hash);
    return;
  }
  const path = window.location.hash.replace(/^#/, '') || '/';
  if (path === '/' || path === '') {
    window.location.hash = home();
    return;
  }
  const route = routes.find((r) => r.path.test(path));
  replace(main);
  if (!route) {
    main.append(h('h1', {}, 'Sidan finns inte'), h('p', {}, h('a', { href: home() }, 'Till startsidan')));
    return;
  }
  if (!route.roles.includes(session.role)) {
    main.append(h('h1', {}, 'Ingen behörighet'), h('p', {}, 'Din roll kan inte öppna den här sidan.'));
    return;
  }
  const params = path.match(route.path).slice(1).map(decodeURIComponent);
  const ctx = {
    session,
    flash,
    navigate: (hash, message) => {
      nextMessage = message || null;
      window.location.hash = hash;
    },
    isCurrent: () => ticket === rendering,
  };
  try {
    const leave = await route.page(main, params, ctx);
    if (ticket === rendering) leavePage = leave || null;
    else if (leave) leave();
  } catch (error) {
    if (error?.status === 401) return; // onSessionEnded shows the login page
    if (ticket !== rendering) return;
    replace(main, h('h1', {}, 'Något gick fel'),
      h('p', { role: 'alert' }, error?.status === 404 ? 'Det du söker finns inte (eller är inte ditt att se).' : String(error?.message || error)));
  }
  if (ticket === rendering) main.focus({ preventScroll: true });
}

async function start() {
  try {
    session = await get('auth/me');
  } catch {
    session = null;
  }
  header();
  window.addEventListener('hashchange', render);
  render();
}

start();
