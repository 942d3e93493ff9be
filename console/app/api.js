// The one way the console talks to the server: `/api/v1` only (the public API, as the OpenAPI
// document describes it), with the HttpOnly session cookie the browser keeps (no token in
// page-readable storage). Unsafe calls always carry a JSON body and its content type, which the
// server requires of cookie-authenticated writes (with the browser's Sec-Fetch-Site) against
// cross-site forgery. A 401 anywhere means the session ended: every page then goes to login.

/** An answer other than 2xx, with the API's `{error, details}`. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`);
    this.status = status;
    this.details = body?.details ?? null;
  }

  /** Field → message of a 422, or an empty object. */
  get fields() {
    return (this.details && this.details.fields) || {};
  }
}

const sessionEnded = new Set();

/** Calls `fn(error)` when a request finds the session expired or revoked. */
export function onSessionEnded(fn) {
  sessionEnded.add(fn);
}

/** A call to `/api/v1/<path>`; resolves to the JSON answer (null for 204). */
export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (method !== 'GET' && method !== 'HEAD') {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body ?? {});
  }
  let res;
  try {
    res = await fetch(`/api/v1/${path}`, init);
  } catch {
    throw new ApiError(0, { error: 'Servern svarar inte. Kontrollera nätet och försök igen.' });
  }
  const answer = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    const error = new ApiError(res.status, answer);
    if (res.status === 401 && !path.startsWith('auth/login')) {
      for (const fn of sessionEnded) fn(error);
    }
    throw error;
  }
  return answer;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);

/** The base map the server is configured with (`none` when it cannot be read). */
let config;
export async function consoleConfig() {
  if (!config) {
    config = fetch('/console/config.json', { credentials: 'same-origin' })
      .then((r) => (r.ok ? r.json() : {}))
      .catch(() => ({}))
      .then((c) => ({ base_map: { kind: 'none' }, ...c }));
  }
  return config;
}
