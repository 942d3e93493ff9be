// Swedish words and times for everything the API says in codes: one table per code list, so
// every page names a kind, state or source the same way (the glossary of DESIGN.md), and one
// place formats times (24-hour clock, Intl, the tenant's local time of the browser).

const clockFormat = new Intl.DateTimeFormat('sv-SE', { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
const clockSecondsFormat = new Intl.DateTimeFormat('sv-SE', {
  hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
});
const dateTimeFormat = new Intl.DateTimeFormat('sv-SE', {
  weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
});
const dateFormat = new Intl.DateTimeFormat('sv-SE', { day: 'numeric', month: 'long', year: 'numeric' });

/** "14:05". */
export const clock = (iso) => clockFormat.format(new Date(iso));
/** "14:05:09". */
export const clockSeconds = (iso) => clockSecondsFormat.format(new Date(iso));
/** "tis 1 dec. 14:05". */
export const dateTime = (iso) => dateTimeFormat.format(new Date(iso));
/** "1 december 2026". */
export const date = (iso) => dateFormat.format(new Date(iso));

/**
 * How long ago, as staff say it: "nu", "för 4 min sedan", "för 2 tim sedan", "för 3 dagar
 * sedan". Written out rather than `Intl.RelativeTimeFormat`, whose short Swedish form differs
 * between ICU versions ("sen" or "sedan").
 */
export function ago(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 45) return 'nu';
  if (s < 3600) return `för ${Math.max(1, Math.round(s / 60))} min sedan`;
  if (s < 48 * 3600) return `för ${Math.round(s / 3600)} tim sedan`;
  return `för ${Math.round(s / 86400)} dagar sedan`;
}

/** Seconds between an ISO time and now. */
export const secondsSince = (iso) => (Date.now() - new Date(iso).getTime()) / 1000;

export const ALARM_KINDS = {
  sos: 'Nödlarm',
  fall: 'Fallarm',
  zone_exit: 'Lämnat trygghetszon',
  zone_enter: 'Gått in i förbjuden zon',
  watch_removed: 'Klockan avtagen',
  low_battery: 'Lågt batteri',
  device_offline: 'Klockan hörs inte',
  test: 'Provlarm',
};

/** Kinds that send someone out; the rest are technical alerts. */
export const CRITICAL_KINDS = new Set(['sos', 'fall', 'zone_exit', 'zone_enter', 'watch_removed']);

export const ALARM_STATES = {
  raised: 'Nytt',
  notified: 'Aviserat',
  acknowledged: 'Kvitterat',
  on_site: 'På plats',
  closed: 'Avslutat',
};

export const OUTCOMES = {
  assisted: 'Brukaren fick hjälp',
  false_alarm: 'Falsklarm',
  test: 'Provlarm',
  not_found: 'Brukaren hittades inte',
  other: 'Annat',
};

export const SOURCES = {
  gps: 'GPS',
  wifi: 'Wi-Fi',
  cell: 'Mobilnät (basstation)',
  unknown: 'okänd källa',
};

export const ZONE_KINDS = {
  stay_inside: 'Stanna inom (larm när brukaren lämnar zonen)',
  keep_out: 'Håll dig borta (larm när brukaren går in i zonen)',
};

export const ROLES = {
  caseworker: 'Handläggare',
  staff: 'Personal',
  tenant_admin: 'Administratör (kommun)',
  admin: 'Administratör',
};

export const CONSENT_COVERS = { positioning: 'positionering', passive_alarms: 'passiva larm' };
export const CONSENT_GIVEN_BY = {
  wearer: 'brukaren själv',
  legal_representative: 'legal företrädare',
  decision: 'beslut',
};

export const DAYS = [
  ['mon', 'mån'], ['tue', 'tis'], ['wed', 'ons'], ['thu', 'tor'], ['fri', 'fre'], ['sat', 'lör'], ['sun', 'sön'],
];

/** The API's reasons and field messages are English; these are the ones a caseworker meets. */
const MESSAGES = [
  [/^no consent in force covers passive alarms$/, 'inget samtycke i kraft omfattar passiva larm'],
  [/^the wearer is deactivated$/, 'brukaren är avslutad (inaktiverad)'],
  [/^must not be empty$/, 'får inte vara tomt'],
  [/^must be (\S+) to (\S+) characters$/, 'ska vara $1–$2 tecken'],
  [/^must be between (\S+) and (\S+)$/, 'ska vara mellan $1 och $2'],
  [/^must be stay_inside or keep_out$/, 'välj stanna inom eller håll dig borta'],
  [/^required for a Point geometry \(a circle\)$/, 'en cirkel behöver en radie'],
  [/^required$/, 'måste anges'],
  [/^the zone lies \(partly\) outside Sweden.*$/, 'zonen ligger (delvis) utanför Sverige – kontrollera att latitud och longitud inte är omkastade'],
  [/^the schedule has no windows.*$/, 'schemat har inga tider: zonen är aldrig aktiv'],
];

/** A Swedish rendering of an API message where one is known; otherwise the message itself. */
export function swedish(message) {
  for (const [pattern, text] of MESSAGES) {
    if (pattern.test(message)) return message.replace(pattern, text);
  }
  return message;
}

/** "57,70123" – coordinates with a Swedish decimal comma, for reading, never for inputs. */
export const coord = (n) => n.toLocaleString('sv-SE', { minimumFractionDigits: 5, maximumFractionDigits: 5 });
