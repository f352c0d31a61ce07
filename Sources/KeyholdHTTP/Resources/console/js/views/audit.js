// The audit log: the chain's verification status, filters (action, actor, resource, time), and pages of events,
// newest first. Filters live in the route (`#/audit?action=secret.read&offset=50`): they are not secret.

import { h, mount, code } from '../dom.js';
import { api, isAdmin } from '../api.js';
import { navigate } from '../router.js';
import { timeEl, isoToLocalInput, localInputToIso, prettyJson, shortId } from '../format.js';
import {
  pageHeader, loadingState, emptyState, alertBox, dataTable, button, badge, field, select, textValue, section, busy,
} from '../ui.js';
import { directory } from '../directory.js';

const ACTIONS = [
  'secret.read', 'secret.write', 'secret.delete', 'secret.rotate', 'secret.list', 'secret.versions', 'secret.version_disable',
  'vault.create', 'vault.delete', 'vault.rotate_key', 'vault.access',
  'policy.create', 'policy.update', 'policy.delete',
  'agent.register', 'agent.update', 'agent.deactivate', 'agent.delete', 'agent.rotate_key', 'agent.rotate_identity_keys',
  'share.create', 'share.access', 'share.accept', 'share.decline', 'share.revoke',
  'approval.request', 'approval.decide', 'approval.cancel', 'approval.revoke', 'approval.lease_use', 'approval.expire',
  'auth.success', 'auth.failure', 'auth.refresh', 'auth.token_revoke', 'auth.mfa_challenge', 'auth.mfa_verify',
  'member.invite', 'member.join', 'member.role_update', 'member.remove',
  'api_key.create', 'api_key.revoke', 'mfa.setup', 'mfa.enable', 'mfa.disable',
  'env_var.create', 'env_var.update', 'env_var.delete', 'env_var.read', 'env_var.list', 'env_var.resolve',
  'environment.create', 'environment.delete', 'ip_rule.create', 'ip_rule.delete', 'ip_rule.refused',
  'user.signup', 'user.update', 'user.password_change', 'user.delete',
  'webhook.create', 'webhook.update', 'webhook.delete', 'webhook.test',
];
const PAGE_SIZES = ['25', '50', '100', '200'];
const MAX_OFFSET = 10000;

function filtersFrom(query) {
  return {
    action: query.get('action') || '',
    actor_id: query.get('actor_id') || '',
    resource_id: query.get('resource_id') || '',
    from: query.get('from') || '',
    to: query.get('to') || '',
    limit: PAGE_SIZES.includes(query.get('limit')) ? query.get('limit') : '50',
    offset: Math.min(MAX_OFFSET, Math.max(0, Number.parseInt(query.get('offset') || '0', 10) || 0)),
  };
}

function hashWith(filters) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) {
    if (value === '' || value === null || value === undefined) continue;
    if (key === 'offset' && Number(value) === 0) continue;
    if (key === 'limit' && value === '50') continue;
    params.set(key, String(value));
  }
  const text = params.toString();
  return `#/audit${text ? `?${text}` : ''}`;
}

export async function page(ctx) {
  const filters = filtersFrom(ctx.query);
  const verifySlot = h('div', {});
  const listSlot = h('div', {}, loadingState('Loading events…'));
  const dir = await directory({ signal: ctx.signal });
  mount(ctx.main,
    pageHeader({
      title: 'Audit log',
      subtitle: isAdmin()
        ? 'Every sign-in, read and change in your organization, in one tamper-evident chain. Events never hold values, passwords or keys.'
        : 'The events you caused. Owners and admins see the whole organization’s log.',
    }),
    isAdmin() ? section('Chain verification', { intro: 'Each event is sealed with a keyed hash over the previous one, so a changed, removed or inserted event breaks the chain.' }, verifySlot) : null,
    section('Events', {}, filterForm(filters, dir), listSlot));
  if (isAdmin()) verify(verifySlot, ctx.signal);
  await drawEvents(listSlot, filters, dir, ctx.signal);
}

async function verify(slot, signal) {
  mount(slot, loadingState('Verifying the chain…'));
  const again = button('Verify again', (event) => busy(event.currentTarget, () => verify(slot, signal)), { small: true });
  try {
    const result = await api('GET', '/v1/audit/verify', { query: { limit: MAX_OFFSET }, signal });
    const partial = result.events_checked >= MAX_OFFSET;
    if (result.chain_valid) {
      mount(slot, h('div', { class: 'verify verify-ok', role: 'status' },
        h('p', { class: 'verify-title' }, badge('verified', 'good'), ` The chain is intact: ${result.events_verified} event${result.events_verified === 1 ? '' : 's'} verified${partial ? ' (the first 10,000)' : ''}.`),
        h('p', { class: 'muted small' }, `Scheme: ${result.scheme.algorithm}, ${result.scheme.chain_structure}.`), again));
    } else {
      mount(slot, h('div', { class: 'verify verify-bad', role: 'alert' },
        h('p', { class: 'verify-title' }, badge('broken', 'bad'), ` The chain does not verify after ${result.events_verified} event${result.events_verified === 1 ? '' : 's'}.`),
        h('p', {}, result.reason || 'No reason given.'),
        result.broken_at_event_id ? h('p', {}, 'First event that fails: ', code(result.broken_at_event_id)) : null,
        again));
    }
  } catch (error) {
    if (error.name === 'AbortError') return;
    mount(slot, alertBox(error), again);
  }
}

function filterForm(filters, dir) {
  const actors = [['', 'Anyone']];
  for (const member of dir.members) actors.push([member.user_id, `${member.email} (person)`]);
  for (const agent of dir.agents) actors.push([agent.id, `${agent.name} (agent)`]);
  if (filters.actor_id && !actors.some(([id]) => id === filters.actor_id)) actors.push([filters.actor_id, filters.actor_id]);
  const datalist = h('datalist', { id: 'audit-actions' }, ACTIONS.map((action) => h('option', { value: action })));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter events' },
    field('Action', { noOptional: true, name: 'action', list: 'audit-actions', value: filters.action, autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. secret.read' }),
    datalist,
    select('Actor', { name: 'actor_id', value: filters.actor_id }, actors),
    field('Resource', { noOptional: true, name: 'resource_id', value: filters.resource_id, autocomplete: 'off', spellcheck: 'false', placeholder: 'a path or an id' }),
    field('From', { noOptional: true, name: 'from', type: 'datetime-local', value: isoToLocalInput(filters.from) }),
    field('To', { noOptional: true, name: 'to', type: 'datetime-local', value: isoToLocalInput(filters.to) }),
    select('Per page', { name: 'limit', value: filters.limit }, PAGE_SIZES),
    h('div', { class: 'filter-actions' },
      h('button', { type: 'submit', class: 'btn btn-primary' }, 'Apply filters'),
      h('a', { href: '#/audit', class: 'btn' }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      navigate(hashWith({
        action: textValue(data, 'action'),
        actor_id: textValue(data, 'actor_id'),
        resource_id: textValue(data, 'resource_id'),
        from: localInputToIso(textValue(data, 'from')) || '',
        to: localInputToIso(textValue(data, 'to')) || '',
        limit: textValue(data, 'limit'),
        offset: 0,
      }));
    } catch (error) {
      form.append(alertBox(error));
    }
  });
  return form;
}

function actorCell(dir, event) {
  if (!event.actor_id) return h('span', { class: 'muted' }, event.actor_type);
  const name = dir.name(event.actor_type, event.actor_id);
  return h('span', { title: event.actor_id }, name || shortId(event.actor_id), h('span', { class: 'muted' }, ` · ${event.actor_type === 'user' ? 'person' : event.actor_type}`));
}

function resourceCell(dir, event) {
  const id = event.resource_id;
  const name = id ? dir.name(event.resource_type, id) : null;
  return h('span', {}, h('span', { class: 'muted' }, `${event.resource_type} `), id ? h('span', { class: 'mono', title: id }, name || id) : null,
    event.details && event.details.path && event.details.path !== id ? h('span', { class: 'mono' }, ` ${event.details.path}`) : null);
}

function outcomeCell(event) {
  const outcome = event.details && event.details.outcome;
  if (!outcome) return h('span', { class: 'muted' }, '—');
  const kind = outcome === 'allowed' || outcome === 'success' ? 'good' : outcome === 'denied' || outcome === 'failure' ? 'bad' : 'neutral';
  return h('span', {}, badge(outcome, kind), event.details.reason ? h('span', { class: 'muted small' }, ` ${event.details.reason}`) : null);
}

function detailsCell(event) {
  return h('details', { class: 'event-details' },
    h('summary', {}, `#${event.sequence}`),
    h('pre', { class: 'json' }, prettyJson({
      id: event.id, details: event.details, ip_address: event.ip_address, prev_event_id: event.prev_event_id, integrity_hash: event.integrity_hash,
    })));
}

async function drawEvents(slot, filters, dir, signal) {
  const query = { ...filters, limit: Number(filters.limit) };
  let body;
  try {
    body = await api('GET', '/v1/audit/events', { query, signal });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    mount(slot, alertBox(error));
    return;
  }
  const events = body.events || [];
  const filtered = Boolean(filters.action || filters.actor_id || filters.resource_id || filters.from || filters.to);
  if (events.length === 0) {
    mount(slot, emptyState(filters.offset > 0
      ? { title: 'No older events', body: 'You reached the end of the log for these filters.', action: h('a', { class: 'btn', href: hashWith({ ...filters, offset: 0 }) }, 'Back to the newest') }
      : filtered
        ? { title: 'No events match these filters', body: 'Clear the filters or widen the time range. Actions are exact names such as secret.read.', action: h('a', { class: 'btn', href: '#/audit' }, 'Clear filters') }
        : { title: 'No events yet', body: 'Sign-ins, reads and changes appear here as they happen.' }));
    return;
  }
  const limit = Number(filters.limit);
  const first = filters.offset + 1;
  const last = filters.offset + events.length;
  const newer = filters.offset > 0 ? h('a', { class: 'btn', href: hashWith({ ...filters, offset: Math.max(0, filters.offset - limit) }) }, 'Newer') : null;
  const older = events.length === limit && filters.offset + limit <= MAX_OFFSET
    ? h('a', { class: 'btn', href: hashWith({ ...filters, offset: filters.offset + limit }) }, 'Older') : null;
  mount(slot,
    dataTable({
      caption: 'Audit events, newest first',
      columns: [
        { label: 'Time', render: (e) => timeEl(e.created_at) },
        { label: 'Action', render: (e) => code(e.action) },
        { label: 'Actor', render: (e) => actorCell(dir, e) },
        { label: 'Resource', render: (e) => resourceCell(dir, e) },
        { label: 'Outcome', render: outcomeCell },
        { label: 'Address', render: (e) => (e.ip_address ? h('span', { class: 'mono small' }, e.ip_address) : h('span', { class: 'muted' }, '—')) },
        { label: 'Details', render: detailsCell },
      ],
      rows: events,
    }),
    h('nav', { class: 'pager', 'aria-label': 'Event pages' },
      h('p', { class: 'muted' }, `Events ${first}–${last}`),
      h('div', { class: 'pager-buttons' }, newer, older)));
}
