// Policies of a vault: list, create, edit, delete, with the path-glob rules explained and a tester that shows
// which policies match a path.

import { h, mount, code } from '../dom.js';
import { api, enc } from '../api.js';
import { timeEl, isoToLocalInput, localInputToIso, lines, isPast } from '../format.js';
import {
  emptyState, dataTable, button, badge, formDialog, confirmDialog, field, textarea, select, checkbox, checkGroup,
  radioGroup, checkedValues, textValue, intValue, toast, section,
} from '../ui.js';
import { vaultFrame } from './vaults.js';
import { directory, principalLabel } from '../directory.js';

const PERMISSIONS = [
  ['read', 'Read'],
  ['write', 'Write (also delete and rotate)'],
  ['delete', 'Delete'],
  ['rotate', 'Rotate'],
];
const DAYS = [['mon', 'Mon'], ['tue', 'Tue'], ['wed', 'Wed'], ['thu', 'Thu'], ['fri', 'Fri'], ['sat', 'Sat'], ['sun', 'Sun']];

/**
 * Whether `pattern` matches `path`, as the server decides: segments split on `/`; `*` is exactly one segment,
 * `**` any number (zero included), anything else matches itself (case-sensitive).
 */
export function globMatches(pattern, path) {
  const p = pattern.split('/');
  const s = path.split('/').filter((segment, index, all) => segment !== '' || all.length === 1);
  let next = new Array(s.length + 1).fill(false);
  next[s.length] = true;
  for (let i = p.length - 1; i >= 0; i -= 1) {
    const current = new Array(s.length + 1).fill(false);
    for (let j = s.length; j >= 0; j -= 1) {
      if (p[i] === '**') current[j] = next[j] || (j < s.length && current[j + 1]);
      else if (p[i] === '*') current[j] = j < s.length && next[j + 1];
      else current[j] = j < s.length && s[j] === p[i] && next[j + 1];
    }
    next = current;
  }
  return next[0];
}

function globHelp() {
  return h('div', { class: 'help-box' },
    h('h3', {}, 'How patterns match'),
    h('ul', {},
      h('li', {}, code('*'), ' matches exactly one segment of a path: ', code('db/*'), ' matches ', code('db/password'), ' but not ', code('db/prod/password'), '.'),
      h('li', {}, code('**'), ' matches any number of segments, none included: ', code('db/**'), ' matches ', code('db'), ', ', code('db/password'), ' and ', code('db/prod/password'), '; ', code('**'), ' alone matches every path.'),
      h('li', {}, 'Any other segment matches itself exactly (letters are case-sensitive): ', code('api-keys/stripe'), ' matches only that path.')),
    h('h3', {}, 'How policies combine'),
    h('ul', {},
      h('li', {}, 'A deny that matches always wins, even over the vault’s owners.'),
      h('li', {}, 'Otherwise an allow grants its permissions; ', h('strong', {}, 'write'), ' also grants delete and rotate.'),
      h('li', {}, 'The vault’s creator and the organization’s owners and admins need no policy; everyone else, agents included, is denied unless a policy allows.'),
      h('li', {}, 'An agent’s own scopes and vault binding still cap what a policy grants it.')));
}

function conditionsSummary(conditions) {
  if (!conditions || Object.keys(conditions).length === 0) return h('span', { class: 'muted' }, 'None');
  const items = [];
  if (conditions.require_approval) {
    const uses = conditions.approval_max_uses || 1;
    const ttl = conditions.approval_ttl_seconds || 900;
    items.push(h('li', {}, badge('needs approval', 'warn'), ` ${uses} read${uses > 1 ? 's' : ''} within ${Math.round(ttl / 60)} min per approval`));
  }
  if (conditions.ip_allowlist) items.push(h('li', {}, 'From ', conditions.ip_allowlist.join(', ')));
  if (conditions.time_window) {
    const w = conditions.time_window;
    items.push(h('li', {}, `${w.days ? `${w.days.join(', ')} ` : 'Daily '}${w.after || '00:00'}–${w.before || '24:00'} ${w.timezone || 'UTC'}`));
  }
  return h('ul', { class: 'plain' }, items);
}

export async function page(ctx) {
  const { vaultId } = ctx.params;
  const add = button('New policy', async () => editPolicy(vaultId, null, await directory(), () => ctx.refresh()), { kind: 'primary' });
  const { vault, body } = await vaultFrame(ctx, 'policies', { actions: [add] });
  const dir = await directory({ signal: ctx.signal });
  const { policies } = await api('GET', `/v1/vaults/${enc(vaultId)}/policies`, { signal: ctx.signal });
  policies.sort((a, b) => (b.priority - a.priority) || a.secret_path_pattern.localeCompare(b.secret_path_pattern));

  const tester = h('input', { id: 'policy-test-path', type: 'text', class: 'mono', placeholder: 'e.g. db/password', autocomplete: 'off', spellcheck: 'false' });
  const testerResult = h('p', { class: 'muted', 'aria-live': 'polite' });
  const table = policies.length === 0 ? emptyState({
    title: 'No policies on this vault',
    body: `Only ${vault.name}’s creator and your organization’s owners and admins can use it. Add a policy to let an agent or a member read or write some of its paths.`,
    action: button('Add a policy', () => editPolicy(vaultId, null, dir, () => ctx.refresh()), { kind: 'primary' }),
  }) : dataTable({
    caption: `Policies of ${vault.name}`,
    rowClass: (p) => (p.expires_at && isPast(p.expires_at) ? 'row-muted' : null),
    columns: [
      { label: 'Pattern', render: (p) => h('span', {}, code(p.secret_path_pattern), h('span', { class: 'match-flag', dataset: { pattern: p.secret_path_pattern } })) },
      { label: 'Who', render: (p) => principalLabel(dir, p.principal_type, p.principal_id) },
      { label: 'Permissions', render: (p) => h('span', { class: 'badges' }, p.permissions.map((perm) => badge(perm, 'neutral'))) },
      { label: 'Effect', render: (p) => badge(p.effect, p.effect === 'deny' ? 'bad' : 'good') },
      { label: 'Priority', render: (p) => String(p.priority) },
      { label: 'Conditions', render: (p) => conditionsSummary(p.conditions) },
      { label: 'Expires', render: (p) => (p.expires_at ? timeEl(p.expires_at) : 'Never') },
      { label: 'Actions', class: 'actions', render: (p) => h('div', { class: 'row-actions' },
        button('Edit', () => editPolicy(vaultId, p, dir, () => ctx.refresh()), { small: true, 'aria-label': `Edit policy ${p.secret_path_pattern}` }),
        button('Delete', () => deletePolicy(vaultId, p, () => ctx.refresh()), { small: true, kind: 'danger-ghost', 'aria-label': `Delete policy ${p.secret_path_pattern}` })) },
    ],
    rows: policies,
  });

  tester.addEventListener('input', () => {
    const path = tester.value.trim();
    let count = 0;
    for (const flag of body.querySelectorAll('.match-flag')) {
      const hit = path !== '' && globMatches(flag.dataset.pattern, path);
      if (hit) count += 1;
      flag.replaceChildren(hit ? badge('matches', 'accent') : '');
    }
    testerResult.textContent = path ? `${count} of ${policies.length} ${policies.length === 1 ? 'policy matches' : 'policies match'} ${path}.` : '';
  });

  mount(body,
    section('Policies', {}, policies.length ? h('div', { class: 'toolbar' },
      h('div', { class: 'field field-inline' }, h('label', { for: 'policy-test-path' }, 'Test a path'), tester), testerResult) : null, table),
    h('details', { class: 'disclosure help', open: policies.length === 0 }, h('summary', {}, 'How patterns and policies work'), globHelp()));
}

function conditionFields(conditions = {}) {
  const tw = conditions.time_window || {};
  return h('details', { class: 'disclosure', open: Object.keys(conditions).length > 0 },
    h('summary', {}, 'Conditions'),
    h('p', { class: 'hint' }, 'All conditions must hold for the policy to apply.'),
    checkbox('Each read needs a person’s approval', { name: 'require_approval', checked: Boolean(conditions.require_approval) },
      'Only for an allow that grants read alone. A read answers “approval required” and waits in Approvals; an approval allows the reads below.'),
    h('div', { class: 'field-row' },
      field('Reads per approval', { name: 'approval_max_uses', type: 'number', min: '1', max: '1000', step: '1', value: conditions.approval_max_uses ?? '', placeholder: '1' }),
      field('Approval lasts (seconds)', { name: 'approval_ttl_seconds', type: 'number', min: '60', max: '604800', step: '1', value: conditions.approval_ttl_seconds ?? '', placeholder: '900' })),
    textarea('Allowed addresses', { name: 'ip_allowlist', rows: 2, class: 'mono', spellcheck: 'false', value: (conditions.ip_allowlist || []).join('\n') },
      'One IP address or network per line (e.g. 10.0.0.0/8). Leave empty for any address.'),
    h('fieldset', { class: 'field' }, h('legend', {}, 'Time window'),
      h('p', { class: 'hint' }, 'Leave the times empty for any time. A window whose end is before its start spans midnight.'),
      h('div', { class: 'field-row' },
        field('From', { name: 'tw_after', type: 'time', value: tw.after || '' }),
        field('Until', { name: 'tw_before', type: 'time', value: tw.before || '' }),
        field('Time zone', { name: 'tw_timezone', value: tw.timezone || 'UTC', autocomplete: 'off', spellcheck: 'false' })),
      checkGroup('On these days', 'tw_days', DAYS, tw.days || [], 'None checked: every day.')));
}

function conditionsFrom(data, form) {
  const conditions = {};
  if (data.get('require_approval')) {
    conditions.require_approval = true;
    const uses = intValue(data, 'approval_max_uses', 'Reads per approval');
    const ttl = intValue(data, 'approval_ttl_seconds', 'Approval lasts');
    if (uses !== null) conditions.approval_max_uses = uses;
    if (ttl !== null) conditions.approval_ttl_seconds = ttl;
  }
  const ips = lines(data.get('ip_allowlist'));
  if (ips.length) conditions.ip_allowlist = ips;
  const after = textValue(data, 'tw_after');
  const before = textValue(data, 'tw_before');
  if (after || before) {
    if (!after || !before) throw new Error('A time window needs both a start and an end time.');
    const timeWindow = { after, before, timezone: textValue(data, 'tw_timezone') || 'UTC' };
    const days = checkedValues(form, 'tw_days');
    if (days.length) timeWindow.days = days;
    conditions.time_window = timeWindow;
  }
  return Object.keys(conditions).length ? conditions : null;
}

async function editPolicy(vaultId, policy, dir, done) {
  const editing = policy !== null;
  const agents = dir.agents;
  const members = dir.members;
  const saved = await formDialog({
    title: editing ? 'Edit policy' : 'New policy',
    intro: editing ? 'Who and which paths are fixed once a policy exists; delete it and add another to change them.' : null,
    submitLabel: editing ? 'Save policy' : 'Add policy',
    wide: true,
    fields: () => {
      const nodes = [];
      if (editing) {
        nodes.push(h('div', { class: 'fixed-fields' },
          h('p', {}, h('strong', {}, 'Who: '), principalLabel(dir, policy.principal_type, policy.principal_id)),
          h('p', {}, h('strong', {}, 'Pattern: '), code(policy.secret_path_pattern))));
      } else {
        const kind = radioGroup('Applies to', 'principal_type', [['agent', 'An agent'], ['user', 'A member']], agents.length || !members.length ? 'agent' : 'user');
        const agentSelect = select('Agent', { name: 'principal_agent' }, agents.length ? agents.map((a) => [a.id, `${a.name}${a.is_active ? '' : ' (inactive)'}`]) : [['', 'No agents yet: create one under Agents']]);
        const memberSelect = select('Member', { name: 'principal_user' }, members.map((m) => [m.user_id, m.display_name ? `${m.display_name} (${m.email})` : m.email]));
        const sync = () => {
          const chosen = kind.querySelector('input:checked').value;
          agentSelect.hidden = chosen !== 'agent';
          memberSelect.hidden = chosen !== 'user';
          agentSelect.querySelector('select').disabled = chosen !== 'agent';
          memberSelect.querySelector('select').disabled = chosen !== 'user';
        };
        kind.addEventListener('change', sync);
        sync();
        const pattern = field('Path pattern', { name: 'secret_path_pattern', required: true, class: 'mono', autocomplete: 'off', spellcheck: 'false', placeholder: 'db/**' },
          '* is one path segment, ** any number of segments (none included). Example: services/payments/** ');
        const tryPath = h('input', { id: 'policy-try', type: 'text', class: 'mono', autocomplete: 'off', spellcheck: 'false', placeholder: 'db/password' });
        const verdict = h('span', { class: 'try-verdict', 'aria-live': 'polite' });
        const patternInput = pattern.querySelector('input');
        const judge = () => {
          const path = tryPath.value.trim();
          const glob = patternInput.value.trim();
          verdict.replaceChildren(!path || !glob ? '' : globMatches(glob, path) ? badge('matches', 'good') : badge('does not match', 'bad'));
        };
        tryPath.addEventListener('input', judge);
        patternInput.addEventListener('input', judge);
        nodes.push(kind, agentSelect, memberSelect, pattern,
          h('div', { class: 'field field-inline' }, h('label', { for: 'policy-try' }, 'Try a path'), tryPath, verdict));
      }
      nodes.push(
        checkGroup('Permissions', 'permissions', PERMISSIONS, editing ? policy.permissions : ['read']),
        h('div', { class: 'field-row' },
          select('Effect', { name: 'effect', value: editing ? policy.effect : 'allow' }, [['allow', 'Allow'], ['deny', 'Deny (wins over every allow)']]),
          field('Priority', { name: 'priority', type: 'number', step: '1', value: editing ? policy.priority : '' }, 'Stored for your own tooling; Keyhold decides by effect alone (a deny always wins).')),
        field('Expires at', { name: 'expires_at', type: 'datetime-local', value: editing ? isoToLocalInput(policy.expires_at) : '' }, 'Leave empty to keep it until deleted.'),
        conditionFields(editing ? policy.conditions || {} : {}));
      return nodes;
    },
    onSubmit: (data, form) => {
      const permissions = checkedValues(form, 'permissions');
      if (permissions.length === 0) throw new Error('Choose at least one permission.');
      const common = {
        permissions,
        effect: textValue(data, 'effect') || 'allow',
        priority: intValue(data, 'priority', 'Priority'),
        expires_at: localInputToIso(textValue(data, 'expires_at')),
        conditions: conditionsFrom(data, form),
      };
      if (editing) {
        if (common.priority === null) common.priority = policy.priority;
        return api('PUT', `/v1/vaults/${enc(vaultId)}/policies/${enc(policy.id)}`, { body: common });
      }
      const type = textValue(data, 'principal_type');
      const principal = textValue(data, type === 'agent' ? 'principal_agent' : 'principal_user');
      if (!principal) throw new Error(type === 'agent' ? 'Choose an agent (create one under Agents first).' : 'Choose a member.');
      const body = { ...common, principal_type: type, principal_id: principal, secret_path_pattern: textValue(data, 'secret_path_pattern') };
      if (body.priority === null) delete body.priority;
      if (body.expires_at === null) delete body.expires_at;
      return api('POST', `/v1/vaults/${enc(vaultId)}/policies`, { body });
    },
  });
  if (saved) {
    toast(editing ? 'Policy saved.' : `Policy on ${saved.secret_path_pattern} added.`);
    done();
  }
}

async function deletePolicy(vaultId, policy, done) {
  const ok = await confirmDialog({
    title: 'Delete this policy?',
    message: h('p', {}, 'The policy on ', code(policy.secret_path_pattern), ` (${policy.effect} ${policy.permissions.join(', ')}) stops applying at once.`),
    confirmLabel: 'Delete policy',
    danger: true,
  });
  if (!ok) return;
  try {
    await api('DELETE', `/v1/vaults/${enc(vaultId)}/policies/${enc(policy.id)}`);
    toast('Policy deleted.');
    done();
  } catch (error) {
    toast(error.message, 'error');
  }
}
