// The only module that talks to the server.
//
// The console never sees an access token: the server keeps it in an HttpOnly, SameSite=Strict cookie and hands the
// script a CSRF token instead, which lives in this module's memory only (never in storage, never in a URL). Every
// /v1 call is a same-origin fetch carrying `X-CSRF-Token`. A 401 renews the session once through
// `POST /console/session/refresh`; a 403 whose problem type names CSRF fetches a fresh token once. Errors are the
// server's RFC 7807 problems, thrown as ApiError with the `detail` as the message.

const JSON_TYPE = /^application\/(?:[a-z.+-]*\+)?json/i;

export class ApiError extends Error {
  constructor(status, problem = {}) {
    const detail = problem.detail || problem.title || (status ? `The server answered ${status}.` : 'Keyhold could not be reached.');
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.type = problem.type || 'about:blank';
    this.title = problem.title || '';
    this.detail = detail;
    this.problem = problem;
  }
}

let csrfToken = null;
let currentUser = null;
let refreshing = null;
const endListeners = new Set();

/** The signed-in person (`id`, `email`, `org_id`, `role`, `display_name`), or null. */
export function user() {
  return currentUser;
}

/** Whether the signed-in person is an owner or admin of their org. */
export function isAdmin() {
  return currentUser !== null && (currentUser.role === 'owner' || currentUser.role === 'admin');
}

/** `fn(reason)` runs when the session ends without the user asking (expired, revoked). */
export function onSessionEnd(fn) {
  endListeners.add(fn);
  return () => endListeners.delete(fn);
}

function adopt(body) {
  if (!body || typeof body.csrf_token !== 'string' || !body.user) return null;
  csrfToken = body.csrf_token;
  currentUser = body.user;
  return { user: body.user, expiresAt: body.expires_at };
}

function forget() {
  csrfToken = null;
  currentUser = null;
}

function endSession(reason) {
  const wasSignedIn = currentUser !== null;
  forget();
  if (wasSignedIn) for (const fn of endListeners) fn(reason);
}

// ---------------------------------------------------------------------------------------------------------------
// Transport

/** Encodes one path segment (an id, a key). */
export function enc(segment) {
  return encodeURIComponent(String(segment));
}

/** Encodes a secret path, keeping its `/` separators. */
export function encPath(path) {
  return String(path).split('/').map(enc).join('/');
}

function buildUrl(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue;
    params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function send(method, url, { body, headers = {}, signal, credentials = 'same-origin' } = {}) {
  const init = {
    method,
    headers: { Accept: 'application/json', ...headers },
    credentials,
    cache: 'no-store',
    signal,
  };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  try {
    return await fetch(url, init);
  } catch (error) {
    if (error && error.name === 'AbortError') throw error;
    throw new ApiError(0, { title: 'Network error', detail: 'Keyhold could not be reached. Check the connection and try again.' });
  }
}

async function parse(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  if (JSON_TYPE.test(response.headers.get('Content-Type') || '')) {
    try {
      return JSON.parse(text);
    } catch {
      throw new ApiError(response.status, { title: 'Bad response', detail: 'The server sent a response the console cannot read.' });
    }
  }
  return text;
}

async function failure(response) {
  let problem = null;
  try {
    problem = await parse(response);
  } catch {
    problem = null;
  }
  if (!problem || typeof problem !== 'object') problem = { title: response.statusText, status: response.status };
  return new ApiError(response.status, problem);
}

function isCsrfProblem(error) {
  return error instanceof ApiError && error.status === 403 && /csrf/i.test(error.type || '');
}

function csrfHeaders(headers = {}) {
  return csrfToken ? { ...headers, 'X-CSRF-Token': csrfToken } : { ...headers };
}

// ---------------------------------------------------------------------------------------------------------------
// Console session (/console/session)

/**
 * On page load: the session of the cookie, renewed through the refresh cookie when the access cookie has expired.
 * Resolves to the session, or null when nobody is signed in (an expected state, not an error). A 401 means "no
 * valid access cookie" (then the refresh cookie is tried); a 204 means the server found no session at all, refresh
 * cookie included, and is taken as signed out without asking again.
 */
export async function restoreSession() {
  const response = await send('GET', '/console/session');
  if (response.status === 204) return null;
  if (response.ok) {
    const restored = adopt(await parse(response));
    if (restored) return restored;
  } else if (response.status !== 401) {
    throw await failure(response);
  }
  return refreshSession();
}

/**
 * Renews the session with the refresh cookie (one request at a time); null when it cannot be renewed (the caller
 * then ends the session: see endSession).
 */
export function refreshSession() {
  if (!refreshing) {
    refreshing = (async () => {
      const response = await send('POST', '/console/session/refresh', { headers: csrfHeaders() });
      if (response.ok) return adopt(await parse(response));
      if (response.status === 401 || response.status === 403) return null;
      throw await failure(response);
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

async function reloadCsrf() {
  const response = await send('GET', '/console/session');
  if (response.ok && adopt(await parse(response))) return true;
  return (await refreshSession()) !== null;
}

/**
 * Password sign-in. Resolves to `{session}` or, for an account with MFA, `{mfaToken}` (then call verifyMfa).
 */
export async function signIn(email, password) {
  const response = await send('POST', '/console/session', { body: { email, password }, credentials: 'same-origin' });
  if (!response.ok) throw await failure(response);
  const body = await parse(response);
  if (body && body.mfa_required) return { mfaToken: body.mfa_token };
  const session = adopt(body);
  if (!session) throw new ApiError(response.status, { title: 'Bad response', detail: 'The server did not open a session.' });
  return { session };
}

/** Second step of an MFA sign-in: a TOTP code or a recovery code. */
export async function verifyMfa(mfaToken, code) {
  const response = await send('POST', '/console/session/mfa', { body: { mfa_token: mfaToken, code } });
  if (!response.ok) throw await failure(response);
  const session = adopt(await parse(response));
  if (!session) throw new ApiError(response.status, { title: 'Bad response', detail: 'The server did not open a session.' });
  return session;
}

/**
 * Creates an account (`POST /v1/auth/signup`, public). The answer is the same for a new and a taken address, so
 * this resolves without saying which; sign in afterwards. An invited sign-up's answer carries tokens: they are
 * dropped here unread (the console signs in through its own session instead).
 */
export async function signUp({ email, password, displayName, inviteToken }) {
  const body = { email, password };
  if (displayName) body.display_name = displayName;
  if (inviteToken) body.invite_token = inviteToken;
  const response = await send('POST', '/v1/auth/signup', { body, credentials: 'omit' });
  if (!response.ok) throw await failure(response);
  await response.body?.cancel?.();
}

/** Ends the session on the server (cookies cleared) and forgets it here. */
export async function signOut() {
  try {
    let response = await send('DELETE', '/console/session', { headers: csrfHeaders() });
    if (response.status === 403) {
      const error = await failure(response);
      if (isCsrfProblem(error) && (await reloadCsrf())) {
        response = await send('DELETE', '/console/session', { headers: csrfHeaders() });
      }
    }
    if (!response.ok && response.status !== 401) throw await failure(response);
  } finally {
    forget();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The API

/**
 * One call of the Keyhold API as the signed-in person.
 *
 * api('GET', '/v1/vaults'), api('PUT', `/v1/vaults/${enc(id)}/secrets/${encPath(p)}`, {body: {...}}),
 * options: `body` (JSON), `query` (object; empty values left out), `headers`, `signal` (AbortSignal).
 */
export async function api(method, path, options = {}) {
  const { body, query, headers, signal } = options;
  const url = buildUrl(path, query);
  let response = await send(method, url, { body, signal, headers: csrfHeaders(headers) });
  if (response.status === 401) {
    if (await refreshSession()) {
      response = await send(method, url, { body, signal, headers: csrfHeaders(headers) });
    }
    if (response.status === 401) {
      const error = await failure(response);
      endSession('Your session has ended. Sign in again to continue.');
      throw error;
    }
  } else if (response.status === 403) {
    const error = await failure(response);
    if (!isCsrfProblem(error)) throw error;
    if (!(await reloadCsrf())) {
      endSession('Your session has ended. Sign in again to continue.');
      throw error;
    }
    response = await send(method, url, { body, signal, headers: csrfHeaders(headers) });
  }
  if (!response.ok) throw await failure(response);
  return parse(response);
}

/** Every page of a cursor-paginated list (`next_cursor`), concatenating `key`. */
export async function listAll(path, key, { query = {}, signal, maxPages = 50 } = {}) {
  const items = [];
  let cursor;
  for (let page = 0; page < maxPages; page += 1) {
    const body = await api('GET', path, { query: { ...query, cursor }, signal });
    items.push(...(body[key] || []));
    if (!body.next_cursor) return { items, complete: true };
    cursor = body.next_cursor;
  }
  return { items, complete: false, cursor };
}

/**
 * Opens a share link as its visitor: no cookie, no CSRF token (a link share needs no credentials, and a signed-in
 * visitor's session must not be lent to it). The passphrase goes in `X-Share-Passphrase` (a GET has no body).
 */
export async function openShareLink(url, passphrase) {
  const headers = {};
  if (passphrase) headers['X-Share-Passphrase'] = passphrase;
  const response = await send('GET', url, { headers, credentials: 'omit' });
  if (!response.ok) throw await failure(response);
  return parse(response);
}
