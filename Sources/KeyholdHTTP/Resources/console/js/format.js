// Dates, counts and small text helpers.

import { h } from './dom.js';

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** "12 Mar 2026, 14:05" in the browser's time zone; '' for a missing value. */
export function formatDate(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : dateTime.format(date);
}

/** "3 minutes ago", "in 6 days". */
export function relative(iso, now = Date.now()) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const seconds = Math.round((date.getTime() - now) / 1000);
  const units = [['year', 31536000], ['month', 2592000], ['week', 604800], ['day', 86400], ['hour', 3600], ['minute', 60]];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return relativeFormat.format(Math.round(seconds / size), unit);
  }
  return relativeFormat.format(seconds, 'second');
}

/** A `<time>` element: the local date, the exact instant on hover. */
export function timeEl(iso, { rel = false } = {}) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: iso }, rel ? relative(iso) : formatDate(iso));
}

/** Whether an RFC 3339 instant is in the past. */
export function isPast(iso) {
  return Boolean(iso) && new Date(iso).getTime() <= Date.now();
}

/** The value of an `<input type="datetime-local">` as an RFC 3339 UTC instant, or null when empty. */
export function localInputToIso(value) {
  if (!value) return null;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new Error('That date and time is not valid.');
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** An RFC 3339 instant as the value of an `<input type="datetime-local">` (local time), or ''. */
export function isoToLocalInput(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** `n` days from now as a datetime-local value. */
export function daysFromNowInput(days) {
  return isoToLocalInput(new Date(Date.now() + days * 86400000).toISOString());
}

/** "1 read", "3 reads". */
export function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

/** The first 8 characters of an id, for compact display (the full id in a title). */
export function shortId(id) {
  return id ? String(id).slice(0, 8) : '';
}

/** Pretty JSON for display (as text). */
export function prettyJson(value) {
  return JSON.stringify(value, null, 2);
}

/** Lines of a textarea, trimmed, without empty ones. */
export function lines(text) {
  return String(text || '').split('\n').map((line) => line.trim()).filter(Boolean);
}
