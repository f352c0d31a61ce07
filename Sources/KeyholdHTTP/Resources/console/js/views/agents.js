// Agents: list, register (the ocv_ key shown once), an agent's page (vault binding and scopes, settings, key
// rotation, identity keys, deactivate / reactivate / remove) and the policies that grant it access.

import { h, mount, code } from '../dom.js';
import { api, enc } from '../api.js';
import { hashFor, navigate } from '../router.js';
import { timeEl, isoToLocalInput, localInputToIso, lines, shortId, isPast } from '../format.js';
import {
  pageHeader, loadingState, emptyState, alertBox, dataTable, button, badge, formDialog, confirmDialog, field, textarea,
  checkbox, checkGroup, textValue, intValue, toast, showOnce, details, section, copyButton,
} from '../ui.js';
import { directory, forgetDirectory } from '../directory.js';
import { AGENT_KEYS_VAULT } from './vaults.js';

function statusBadge(agent) {
  if (!agent.is_active) return badge('inactive', 'bad');
  if (agent.expires_at && isPast(agent.expires_at)) return badge('expired', 'bad');
  return badge('active', 'good');
}

function vaultsText(dir, agent) {
  if (!agent.vault_ids || agent.vault_ids.length === 0) return h('span', { class: 'muted' }, 'All vaults');
  return agent.vault_ids.map((id) => dir.name('vault', id) || shortId(id)).join(', ');
}

function scopesText(agent) {
  if (agent.scopes === null || agent.scopes === undefined) return h('span', { class: 'muted' }, 'No cap');
  if (agent.scopes.length === 0) return h('span', {}, 'None (reads nothing)');
  return h('span', { class: 'badges' }, agent.scopes.map((scope) => h('code', {}, scope)));
}

export async function list(ctx) {
  const add = button('New agent', () => createAgent(), { kind: 'primary' });
  const body = h('div', {}, loadingState('Loading agents…'));
  mount(ctx.main, pageHeader({
    title: 'Agents',
    subtitle: 'Programs that read secrets with their own ocv_ key: CI jobs, services, AI agents. An agent reads nothing until a policy allows it.',
    actions: [add],
  }), body);
  const [{ agents }, dir] = await Promise.all([api('GET', '/v1/agents', { signal: ctx.signal }), directory({ signal: ctx.signal })]);
  if (agents.length === 0) {
    mount(body, emptyState({
      title: 'No agents yet',
      body: 'Register an agent to give a program its own key. Then add a policy on a vault to let it read the paths it needs.',
      action: button('Register an agent', () => createAgent(), { kind: 'primary' }),
    }));
    return;
  }
  agents.sort((a, b) => Number(b.is_active) - Number(a.is_active) || a.name.localeCompare(b.name));
  mount(body, dataTable({
    caption: 'Agents',
    rowClass: (a) => (a.is_active ? null : 'row-muted'),
    columns: [
      { label: 'Name', render: (a) => h('div', {}, h('a', { href: hashFor('agents', a.id), class: 'strong' }, a.name), a.description ? h('div', { class: 'muted small' }, a.description) : null) },
      { label: 'Status', render: statusBadge },
      { label: 'Key', render: (a) => h('code', { title: 'The first characters of its key' }, `${a.key_prefix}…`) },
      { label: 'Vaults', render: (a) => vaultsText(dir, a) },
      { label: 'Scopes', render: scopesText },
      { label: 'Environment', render: (a) => a.environment || h('span', { class: 'muted' }, '—') },
      { label: 'Created', render: (a) => timeEl(a.created_at) },
    ],
    rows: agents,
  }));
}

function settingsFields(dir, agent = null) {
  const vaults = dir.vaults.filter((v) => v.name !== AGENT_KEYS_VAULT || (agent && agent.vault_ids.includes(v.id)));
  return [
    checkGroup('Vaults it may use', 'vault_ids', vaults.map((v) => [v.id, v.name]), agent ? agent.vault_ids : [],
      'None checked: every vault of the organization (policies still decide what it reads).'),
    textarea('Scopes', { name: 'scopes', rows: 3, class: 'mono', spellcheck: 'false', value: agent && agent.scopes ? agent.scopes.join('\n') : '' },
      'Path globs that cap what it may touch, one per line (e.g. services/payments/**). Empty: no cap.'),
    h('details', { class: 'disclosure' },
      h('summary', {}, 'Token lifetime, expiry and environment'),
      h('div', { class: 'field-row' },
        field('Token lifetime (seconds)', { name: 'token_ttl_seconds', type: 'number', min: '60', step: '1', value: agent?.token_ttl_seconds ?? '', placeholder: '3600' }),
        field('Environment', { name: 'environment', autocomplete: 'off', spellcheck: 'false', value: agent?.environment || '' }, 'e.g. production: the environment it resolves variables for.')),
      checkbox('Only its own environment', { name: 'environment_locked', checked: Boolean(agent?.environment_locked) }),
      checkbox('Resolve its own environment when none is named', { name: 'env_auto_resolve', checked: agent ? agent.env_auto_resolve : true }),
      field('Agent expires at', { name: 'expires_at', type: 'datetime-local', value: isoToLocalInput(agent?.expires_at) }),
      field('Key expires at', { name: 'api_key_expires_at', type: 'datetime-local', value: isoToLocalInput(agent?.api_key_expires_at) }, 'After this the ocv_ key no longer gets tokens. Rotating the key keeps this date.'),
      checkbox('Intents mode: refuse its reads of private keys and SSH keys', { name: 'intents_api_enabled', checked: Boolean(agent?.intents_api_enabled) })),
  ];
}

function settingsBody(data, form, { creating }) {
  const scopes = lines(data.get('scopes'));
  const body = {
    vault_ids: [...form.querySelectorAll('input[name="vault_ids"]:checked')].map((input) => input.value),
    scopes: scopes.length ? scopes : null,
    token_ttl_seconds: intValue(data, 'token_ttl_seconds', 'Token lifetime'),
    environment: textValue(data, 'environment') || null,
    environment_locked: Boolean(data.get('environment_locked')),
    env_auto_resolve: Boolean(data.get('env_auto_resolve')),
    expires_at: localInputToIso(textValue(data, 'expires_at')),
    api_key_expires_at: localInputToIso(textValue(data, 'api_key_expires_at')),
    intents_api_enabled: Boolean(data.get('intents_api_enabled')),
  };
  if (creating) {
    for (const key of Object.keys(body)) if (body[key] === null) delete body[key];
  }
  return body;
}

function keyAfterNote(agent) {
  return h('div', { class: 'alert alert-info' },
    h('p', {}, 'The agent exchanges this key for short-lived tokens (', code('POST /v1/auth/agent-token'), ') or passes it to the SDK, CLI or MCP server. ',
      'It reads nothing until a policy allows it: ', h('a', { href: hashFor('agents', agent.id) }, 'open the agent'), ' to see and add its policies.'));
}

/** Registers an agent and shows its key once. */
export async function createAgent() {
  const dir = await directory();
  const created = await formDialog({
    title: 'Register an agent',
    submitLabel: 'Register agent',
    wide: true,
    fields: () => [
      field('Name', { name: 'name', required: true, maxlength: '255', autocomplete: 'off' }, 'For example deploy-bot or billing-service.'),
      textarea('Description', { name: 'description', rows: 2, maxlength: '4096' }),
      ...settingsFields(dir),
    ],
    onSubmit: (data, form) => api('POST', '/v1/agents', {
      body: { name: textValue(data, 'name'), description: textValue(data, 'description') || null, ...settingsBody(data, form, { creating: true }) },
    }),
  });
  if (!created) return;
  forgetDirectory();
  await showOnce({
    title: `Agent ${created.agent.name} registered`,
    intro: 'This is the agent’s key. Store it where the agent runs (a secret store of your CI, an environment variable).',
    label: 'Agent key',
    what: 'Agent key',
    value: created.api_key,
    after: keyAfterNote(created.agent),
  });
  navigate(hashFor('agents', created.agent.id));
}

export async function detail(ctx) {
  const { agentId } = ctx.params;
  mount(ctx.main, loadingState('Loading the agent…'));
  let agent;
  try {
    agent = await api('GET', `/v1/agents/${enc(agentId)}`, { signal: ctx.signal });
  } catch (error) {
    if (error.status === 404) {
      mount(ctx.main, pageHeader({ title: 'Agent not found', crumbs: [['Agents', '#/agents']] }), alertBox(error.message, 'info'),
        h('p', {}, h('a', { href: '#/agents' }, 'Back to agents')));
      return;
    }
    throw error;
  }
  const dir = await directory({ signal: ctx.signal });
  ctx.setTitle(agent.name);
  const reload = () => ctx.refresh();
  const actions = [
    button('Edit access', () => editAgent(agent, dir, reload), { kind: 'primary' }),
    button('Rotate key', () => rotateKey(agent)),
    agent.is_active
      ? button('Deactivate', () => deactivate(agent, reload), { kind: 'danger-ghost' })
      : button('Reactivate', () => reactivate(agent, reload)),
    button('Remove', () => purge(agent), { kind: 'danger-ghost' }),
  ];
  const policiesSlot = h('div', {}, loadingState('Looking for policies naming this agent…'));
  mount(ctx.main,
    pageHeader({ title: agent.name, subtitle: agent.description || null, crumbs: [['Agents', '#/agents'], [agent.name, null]], actions }),
    agent.is_active ? null : alertBox('This agent is inactive: its key and tokens do not work. Reactivate it to bring the key back (old tokens stay invalid).', 'warn'),
    h('div', { class: 'grid-2' },
      section('Access', { intro: 'The binding and scopes cap what it may touch; policies on each vault decide what it may do there.' }, details([
        ['Status', statusBadge(agent)],
        ['Vaults', vaultsText(dir, agent)],
        ['Scopes', scopesText(agent)],
        ['Environment', agent.environment ? h('span', {}, code(agent.environment), agent.environment_locked ? ' (locked)' : '') : h('span', { class: 'muted' }, 'None')],
        ['Intents mode', agent.intents_api_enabled ? 'On: reads of private and SSH keys are refused' : 'Off'],
      ])),
      section('Key and tokens', {}, details([
        ['Key', h('code', {}, `${agent.key_prefix}…`)],
        ['Key expires', agent.api_key_expires_at ? timeEl(agent.api_key_expires_at) : 'Never'],
        ['Token lifetime', `${agent.token_ttl_seconds || 3600} seconds`],
        ['Agent expires', agent.expires_at ? timeEl(agent.expires_at) : 'Never'],
        ['Created', timeEl(agent.created_at)],
        ['Registered by', dir.name('user', agent.created_by) || shortId(agent.created_by)],
        ['Agent id', h('span', { class: 'id-copy' }, code(agent.id), copyButton(() => agent.id, { what: 'Agent id' }))],
      ]))),
    section('Policies', { intro: 'Policies on the vaults you manage that name this agent.' }, policiesSlot),
    section('Identity keys', {
      intro: `Its Ed25519 and P-256 public keys. The private halves are secrets of the ${AGENT_KEYS_VAULT} vault that only the agent (and your organization’s owners and admins) can read.`,
      actions: [button('Rotate identity keys', () => rotateIdentity(agent, reload), { small: true })],
    }, details([
      ['SSH public key', agent.ssh_public_key ? h('div', { class: 'key-line' }, h('code', { class: 'wrap' }, agent.ssh_public_key), copyButton(() => agent.ssh_public_key, { what: 'SSH public key' })) : h('span', { class: 'muted' }, 'None yet: rotate identity keys to make them')],
      ['ECDH public key', agent.ecdh_public_key ? h('div', { class: 'key-line' }, h('code', { class: 'wrap' }, agent.ecdh_public_key), copyButton(() => agent.ecdh_public_key, { what: 'ECDH public key' })) : null],
      ['Made', agent.identity_keys_created_at ? timeEl(agent.identity_keys_created_at) : null],
      ['Earlier keys', agent.identity_key_history && agent.identity_key_history.length ? String(agent.identity_key_history.length) : null],
    ])));

  const found = await agentPolicies(dir, agent, ctx.signal);
  if (found.length === 0) {
    mount(policiesSlot, emptyState({
      title: 'No policy names this agent',
      body: 'It can read nothing yet. Open a vault’s Policies and add one for this agent.',
      action: dir.vaults.length ? h('a', { class: 'btn', href: hashFor('vaults', (agent.vault_ids[0] || dir.vaults[0].id), 'policies') }, 'Add a policy') : null,
    }));
  } else {
    mount(policiesSlot, dataTable({
      caption: 'Policies naming this agent',
      columns: [
        { label: 'Vault', render: (p) => h('a', { href: hashFor('vaults', p.vault_id, 'policies') }, dir.name('vault', p.vault_id) || shortId(p.vault_id)) },
        { label: 'Pattern', render: (p) => code(p.secret_path_pattern) },
        { label: 'Permissions', render: (p) => p.permissions.join(', ') },
        { label: 'Effect', render: (p) => badge(p.effect, p.effect === 'deny' ? 'bad' : 'good') },
        { label: 'Needs approval', render: (p) => (p.conditions && p.conditions.require_approval ? 'Yes' : 'No') },
      ],
      rows: found,
    }));
  }
}

async function agentPolicies(dir, agent, signal) {
  const vaults = agent.vault_ids.length ? dir.vaults.filter((v) => agent.vault_ids.includes(v.id)) : dir.vaults;
  const lists = await Promise.all(vaults.map((v) => api('GET', `/v1/vaults/${enc(v.id)}/policies`, { signal })
    .then((body) => body.policies)
    .catch((error) => {
      if (error.name === 'AbortError') throw error;
      return [];
    })));
  return lists.flat().filter((p) => p.principal_type === 'agent' && p.principal_id === agent.id);
}

async function editAgent(agent, dir, done) {
  const saved = await formDialog({
    title: `Edit ${agent.name}`,
    submitLabel: 'Save',
    wide: true,
    fields: () => [
      field('Name', { name: 'name', required: true, maxlength: '255', value: agent.name, autocomplete: 'off' }),
      textarea('Description', { name: 'description', rows: 2, value: agent.description || '' }),
      ...settingsFields(dir, agent),
    ],
    onSubmit: (data, form) => api('PATCH', `/v1/agents/${enc(agent.id)}`, {
      body: { name: textValue(data, 'name'), description: textValue(data, 'description') || null, ...settingsBody(data, form, { creating: false }) },
    }),
  });
  if (saved) {
    forgetDirectory();
    toast(`${saved.name} saved.`);
    done();
  }
}

async function rotateKey(agent) {
  const ok = await confirmDialog({
    title: `Rotate ${agent.name}’s key?`,
    message: 'A new key is issued. The current key and every token made from it stop working at once; update the agent with the new key.',
    confirmLabel: 'Rotate key',
    danger: true,
  });
  if (!ok) return;
  try {
    const rotated = await api('POST', `/v1/agents/${enc(agent.id)}/rotate-key`, { body: {} });
    await showOnce({
      title: 'New agent key',
      intro: `The new key of ${agent.name}. The old one no longer works.`,
      label: 'Agent key',
      what: 'Agent key',
      value: rotated.api_key,
    });
  } catch (error) {
    toast(error.message, 'error');
  }
}

async function deactivate(agent, done) {
  const ok = await confirmDialog({
    title: `Deactivate ${agent.name}?`,
    message: 'Its key, tokens and refresh tokens stop working at once and the shares it made no longer open. It stays listed, with its audit history; you can reactivate it later.',
    confirmLabel: 'Deactivate',
    danger: true,
  });
  if (!ok) return;
  try {
    await api('DELETE', `/v1/agents/${enc(agent.id)}`);
    toast(`${agent.name} deactivated.`);
    done();
  } catch (error) {
    toast(error.message, 'error');
  }
}

async function reactivate(agent, done) {
  try {
    await api('PATCH', `/v1/agents/${enc(agent.id)}`, { body: { is_active: true } });
    toast(`${agent.name} is active again.`);
    done();
  } catch (error) {
    toast(error.message, 'error');
  }
}

async function purge(agent) {
  const ok = await confirmDialog({
    title: `Remove ${agent.name}?`,
    message: 'This removes the agent with its policies and identity keys, and revokes its shares. Its audit events stay. It cannot be undone.',
    typed: agent.name,
    typedLabel: 'Type the agent’s name to confirm',
    confirmLabel: 'Remove agent',
    danger: true,
  });
  if (!ok) return;
  try {
    await api('DELETE', `/v1/agents/${enc(agent.id)}`, { query: { purge: 'true' } });
    forgetDirectory();
    toast(`${agent.name} removed.`);
    navigate('#/agents');
  } catch (error) {
    toast(error.message, 'error');
  }
}

async function rotateIdentity(agent, done) {
  const ok = await confirmDialog({
    title: 'Rotate identity keys?',
    message: 'New Ed25519 and P-256 keypairs replace the current ones; the old public keys are kept in its history. Its ocv_ key does not change.',
    confirmLabel: 'Rotate identity keys',
  });
  if (!ok) return;
  try {
    await api('POST', `/v1/agents/${enc(agent.id)}/rotate-identity-keys`);
    toast('Identity keys rotated.');
    done();
  } catch (error) {
    toast(error.message, 'error');
  }
}
