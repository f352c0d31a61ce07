// Vaults: the list, creating one, deleting one (typed confirmation), and the frame of a vault's pages (header and
// tabs: Secrets, Policies, Environment variables).

import { h, mount, code } from '../dom.js';
import { api, enc } from '../api.js';
import { hashFor, navigate } from '../router.js';
import { timeEl } from '../format.js';
import {
  pageHeader, loadingState, emptyState, alertBox, dataTable, button, badge, formDialog, confirmDialog, field,
  textarea, textValue, toast,
} from '../ui.js';
import { forgetDirectory } from '../directory.js';

/** The org vault that holds agents' identity private keys (made with the first agent). */
export const AGENT_KEYS_VAULT = '__agent-keys';

export async function list(ctx) {
  const create = button('New vault', () => createVault(), { kind: 'primary' });
  const body = h('div', {}, loadingState('Loading vaults…'));
  mount(ctx.main, pageHeader({
    title: 'Vaults',
    subtitle: 'A vault holds secrets under one encryption key; policies on it decide who reads what.',
    actions: [create],
  }), body);
  const { vaults } = await api('GET', '/v1/vaults', { signal: ctx.signal });
  if (vaults.length === 0) {
    mount(body, emptyState({
      title: 'No vaults yet',
      body: 'Create a vault to start storing secrets. You can then add secrets, grant agents access with policies, and share single secrets.',
      action: button('Create your first vault', () => createVault(), { kind: 'primary' }),
    }));
    return;
  }
  vaults.sort((a, b) => a.name.localeCompare(b.name));
  mount(body, dataTable({
    caption: 'Vaults',
    columns: [
      { label: 'Name', render: (v) => h('div', {}, h('a', { href: hashFor('vaults', v.id, 'secrets'), class: 'strong' }, v.name),
        v.name === AGENT_KEYS_VAULT ? badge('agent identity keys', 'neutral') : null) },
      { label: 'Description', render: (v) => v.description || h('span', { class: 'muted' }, '—') },
      { label: 'Encryption', render: (v) => (v.cmek_enabled ? badge('customer-managed key', 'accent') : 'Keyhold-managed') },
      { label: 'Created', render: (v) => timeEl(v.created_at) },
      { label: 'Actions', class: 'actions', render: (v) => h('div', { class: 'row-actions' },
        h('a', { href: hashFor('vaults', v.id, 'policies'), class: 'btn btn-small' }, 'Policies'),
        button('Delete', () => deleteVault(v, () => ctx.refresh()), { small: true, kind: 'danger-ghost', 'aria-label': `Delete vault ${v.name}` })) },
    ],
    rows: vaults,
  }));
}

/** The "New vault" dialog; opens the new vault's secrets. */
export async function createVault() {
  const vault = await formDialog({
    title: 'New vault',
    submitLabel: 'Create vault',
    fields: () => [
      field('Name', { name: 'name', required: true, maxlength: '255', autocomplete: 'off' }, 'For example production, staging or team-payments.'),
      textarea('Description', { name: 'description', rows: 2, maxlength: '4096' }),
    ],
    onSubmit: (data) => api('POST', '/v1/vaults', {
      body: { name: textValue(data, 'name'), description: textValue(data, 'description') || null },
    }),
  });
  if (vault) {
    forgetDirectory();
    toast(`Vault ${vault.name} created.`);
    navigate(hashFor('vaults', vault.id, 'secrets'));
  }
}

/** Deletes a vault after its name is typed; `done()` runs afterwards. */
export async function deleteVault(vault, done) {
  const ok = await confirmDialog({
    title: `Delete vault ${vault.name}?`,
    message: h('div', {},
      h('p', {}, 'This deletes the vault with every secret and version in it, its policies and its key. Agents and shares that use it stop working. It cannot be undone.'),
      h('p', {}, 'Type the vault’s name to confirm: ', code(vault.name))),
    typed: vault.name,
    typedLabel: 'Vault name',
    confirmLabel: 'Delete vault',
    danger: true,
  });
  if (!ok) return;
  try {
    await api('DELETE', `/v1/vaults/${enc(vault.id)}`);
    forgetDirectory();
    toast(`Vault ${vault.name} deleted.`);
    done();
  } catch (error) {
    toast(error.message, 'error');
  }
}

const TABS = [
  ['secrets', 'Secrets'],
  ['policies', 'Policies'],
  ['env', 'Environment variables'],
];

/**
 * The header and tabs of a vault's pages. Resolves to `{vault, body}`: `body` is where the tab's content goes.
 * `crumb` adds a last breadcrumb (a secret's path); `actions` go to the header.
 */
export async function vaultFrame(ctx, active, { title, crumb, actions = [] } = {}) {
  const { vaultId } = ctx.params;
  const body = h('div', { class: 'vault-body' }, loadingState('Loading the vault…'));
  mount(ctx.main, body);
  let vault;
  try {
    vault = await api('GET', `/v1/vaults/${enc(vaultId)}`, { signal: ctx.signal });
  } catch (error) {
    if (error.status === 404) {
      mount(ctx.main, pageHeader({ title: 'Vault not found', crumbs: [['Vaults', '#/vaults']] }),
        alertBox(`${error.message} It may have been deleted, or it belongs to another organization.`, 'info'),
        h('p', {}, h('a', { href: '#/vaults' }, 'Back to your vaults')));
      const stop = new Error('not found');
      stop.name = 'AbortError';
      throw stop;
    }
    throw error;
  }
  ctx.setTitle(`${title || TABS.find(([key]) => key === active)?.[1] || 'Vault'} · ${vault.name}`);
  const crumbs = [['Vaults', '#/vaults'], [vault.name, crumb ? hashFor('vaults', vault.id, 'secrets') : null]];
  if (crumb) crumbs.push([crumb, null]);
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'Vault sections' },
    TABS.map(([key, label]) => h('a', { href: hashFor('vaults', vault.id, key), 'aria-current': key === active && !crumb ? 'page' : null, class: key === active ? 'active' : null }, label)));
  const deleteButton = button('Delete vault', () => deleteVault(vault, () => navigate('#/vaults')), { kind: 'danger-ghost' });
  mount(ctx.main,
    pageHeader({
      title: title || vault.name,
      subtitle: crumb ? null : (vault.description || null),
      crumbs,
      actions: crumb ? actions : [...actions, deleteButton],
    }),
    tabs,
    body);
  mount(body);
  return { vault, body };
}
