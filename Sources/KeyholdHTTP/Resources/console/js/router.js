// Hash routing: `#/vaults`, `#/vaults/<id>/secrets`, `#/vaults/<id>/secret/<path…>`, `#/audit?action=…`.
// Patterns name segments with `:name` and may end with `*name` (the rest of the path, slashes included).

const routes = [];
let listener = null;

/** Registers `view` for `pattern`; `meta` is passed along with the match (e.g. the nav section). */
export function route(pattern, view, meta = {}) {
  const parts = pattern.split('/').filter(Boolean);
  routes.push({ pattern, parts, view, meta });
}

/** The current hash as `{path, query}` (`path` always starts with `/`). */
export function location() {
  const raw = window.location.hash.replace(/^#/, '') || '/';
  const [path, search = ''] = raw.split('?');
  return { path: path.startsWith('/') ? path : `/${path}`, query: new URLSearchParams(search) };
}

function decode(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** The route matching `path`, with its params, or null. */
export function match(path) {
  const segments = path.split('/').filter(Boolean);
  for (const candidate of routes) {
    const params = {};
    let ok = true;
    for (let i = 0; i < candidate.parts.length; i += 1) {
      const part = candidate.parts[i];
      if (part.startsWith('*')) {
        const rest = segments.slice(i);
        if (rest.length === 0) ok = false;
        else params[part.slice(1)] = rest.map(decode).join('/');
        i = candidate.parts.length;
        break;
      }
      if (i >= segments.length) {
        ok = false;
        break;
      }
      if (part.startsWith(':')) params[part.slice(1)] = decode(segments[i]);
      else if (part !== segments[i]) {
        ok = false;
        break;
      }
    }
    const last = candidate.parts[candidate.parts.length - 1] || '';
    if (ok && !last.startsWith('*') && segments.length !== candidate.parts.length) ok = false;
    if (ok) return { ...candidate, params };
  }
  return null;
}

/** Builds a hash from segments, encoding each (a secret path keeps its slashes). */
export function hashFor(...segments) {
  return `#/${segments.map((s) => String(s).split('/').map(encodeURIComponent).join('/')).join('/')}`;
}

/** Goes to `hash` (`#/…`); with `replace` the current history entry is replaced. */
export function navigate(hash, { replace = false } = {}) {
  if (replace) {
    window.history.replaceState(null, '', hash);
    if (listener) listener();
  } else if (window.location.hash === hash) {
    if (listener) listener();
  } else {
    window.location.hash = hash;
  }
}

/** Calls `onChange()` now and on every hash change. */
export function start(onChange) {
  listener = onChange;
  window.addEventListener('hashchange', onChange);
  onChange();
}

/** Stops listening (on sign-out). */
export function stop() {
  if (listener) window.removeEventListener('hashchange', listener);
  listener = null;
}
