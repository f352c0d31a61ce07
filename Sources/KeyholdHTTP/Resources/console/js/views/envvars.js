// Environment variables: a vault's variables per environment (values behind Reveal: each reveal is an audited
// read), its environments, the resolved view of one environment; and the organization's shared variables (owners
// and admins), linked to vaults.

import { h, mount, code } from '../dom.js';
import { api, enc, isAdmin } from '../api.js';
import { navigate, hashFor } from '../router.js';
import { timeEl, shortId } from '../format.js';
import {
  pageHeader, loadingState, emptyState, alertBox, dataTable, button, badge, formDialog, confirmDialog, field, textarea,
  select, checkbox, checkGroup, checkedValues, textValue, toast, revealer, section,
} from '../ui.js';
import { vaultFrame } from './vaults.js';
import { directory } from '../directory.js';

const BUILT_IN = ['production', 'preview', 'development'];

function envBadges(environments) {
  return h('span', { class: 'badges' }, environments.map((slug) => badge(slug, 'neutral')));
}

function varQuery(variable) {
  return { environment: variable.environments[0], git_branch: variable.git_branch || undefined };
}

function keyField(value) {
  return field('Key', { name: 'key', required: true, class: 'mono', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'characters', maxlength: '256', value: value || '' },
    'Upper-case letters, digits and _, e.g. DATABASE_URL.');
}

// ---------------------------------------------------------------------------------------------------------------
// A vault's variables

export async function vaultPage(ctx) {
  const { vaultId } = ctx.params;
  const state = { environments: [] };
  const add = button('New variable', () => createVar(vaultId, state.environments, () => ctx.refresh()), { kind: 'primary' });
  const { vault, body } = await vaultFrame(ctx, 'env', { actions: [add] });
  mount(body, loadingState('Loading variables…'));
  const filter = ctx.query.get('environment') || '';
  const [{ environments }, { env_vars: vars }] = await Promise.all([
    api('GET', `/v1/vaults/${enc(vaultId)}/environments`, { signal: ctx.signal }),
    api('GET', `/v1/vaults/${enc(vaultId)}/env-vars`, { query: { environment: filter || undefined }, signal: ctx.signal }),
  ]);
  state.environments = environments;
  // Lists carry the values of variables that are not sensitive: the console drops them and reads a value only
  // when asked (an audited read), like a secret's.
  for (const variable of vars) delete variable.value;
  vars.sort((a, b) => a.key.localeCompare(b.key) || (a.git_branch || '').localeCompare(b.git_branch || ''));

  const filterSelect = select('Environment', { id: 'env-filter', value: filter }, [['', 'All environments'], ...environments.map((e) => [e.slug, e.slug])]);
  filterSelect.querySelector('select').addEventListener('change', (event) => {
    const slug = event.target.value;
    navigate(`${hashFor('vaults', vaultId, 'env')}${slug ? `?environment=${encodeURIComponent(slug)}` : ''}`);
  });
  filterSelect.classList.add('field-inline');

  const table = vars.length === 0 ? emptyState(filter
    ? { title: `No variables in ${filter}`, body: 'Choose another environment, or add a variable for this one.' }
    : {
      title: 'No environment variables yet',
      body: `Variables hold configuration for apps and agents, per environment. Add one, or let an agent resolve ${vault.name}’s variables with its key.`,
      action: button('Add a variable', () => createVar(vaultId, environments, () => ctx.refresh()), { kind: 'primary' }),
    }) : dataTable({
    caption: `Environment variables of ${vault.name}`,
    columns: [
      { label: 'Key', render: (v) => h('div', {}, code(v.key), v.comment ? h('div', { class: 'muted small' }, v.comment) : null) },
      { label: 'Environments', render: (v) => h('div', {}, envBadges(v.environments), v.git_branch ? h('div', { class: 'small' }, 'branch ', code(v.git_branch)) : null) },
      { label: 'Sensitive', render: (v) => (v.sensitive ? badge('sensitive', 'warn') : h('span', { class: 'muted' }, 'no')) },
      { label: 'Version', render: (v) => `v${v.version}` },
      { label: 'Updated', render: (v) => timeEl(v.updated_at) },
      { label: 'Value', class: 'value-cell', render: (v) => revealer({
        label: `Value of ${v.key}`,
        load: () => api('GET', `/v1/vaults/${enc(vaultId)}/env-vars/${enc(v.key)}`, { query: varQuery(v) }),
      }) },
      { label: 'Actions', class: 'actions', render: (v) => h('div', { class: 'row-actions' },
        button('Edit', () => editVar(vaultId, v, environments, () => ctx.refresh()), { small: true, 'aria-label': `Edit ${v.key}` }),
        button('Delete', () => deleteVar(vaultId, v, () => ctx.refresh()), { small: true, kind: 'danger-ghost', 'aria-label': `Delete ${v.key}` })) },
    ],
    rows: vars,
  });

  mount(body,
    section('Variables', {}, h('div', { class: 'toolbar' }, filterSelect), table),
    section('Resolve an environment', {
      intro: 'What an app or agent gets for one environment: the organization’s shared variables linked to this vault, then the vault’s own, then (in preview) a branch’s overrides. Resolving is an audited read.',
    }, resolver(vaultId, environments)),
    section('Environments', {
      intro: 'production, preview and development are built in. Add your own, optionally starting as a copy of another.',
      actions: [button('New environment', () => createEnvironment(vaultId, environments, () => ctx.refresh()), { small: true })],
    }, dataTable({
      caption: 'Environments',
      columns: [
        { label: 'Slug', render: (e) => code(e.slug) },
        { label: 'Description', render: (e) => e.description || h('span', { class: 'muted' }, '—') },
        { label: 'Kind', render: (e) => (e.is_builtin ? badge('built in', 'neutral') : e.copied_from ? h('span', {}, 'copy of ', code(e.copied_from)) : 'custom') },
        { label: 'Actions', class: 'actions', render: (e) => (e.is_builtin ? null : button('Delete', () => deleteEnvironment(vaultId, e, () => ctx.refresh()), { small: true, kind: 'danger-ghost', 'aria-label': `Delete environment ${e.slug}` })) },
      ],
      rows: environments,
    })));
}

function resolver(vaultId, environments) {
  const envSelect = select('Environment', { id: 'resolve-env', value: 'production' }, environments.map((e) => e.slug));
  const branch = field('Git branch', { id: 'resolve-branch', autocomplete: 'off', spellcheck: 'false' }, 'Only for preview: applies that branch’s overrides.');
  return h('div', { class: 'resolver' },
    h('div', { class: 'field-row' }, envSelect, branch),
    revealer({
      label: 'Resolved variables',
      revealLabel: 'Resolve',
      load: () => api('GET', `/v1/vaults/${enc(vaultId)}/env-vars/resolve`, {
        query: { environment: envSelect.querySelector('select').value, git_branch: branch.querySelector('input').value.trim() || undefined },
      }),
      render: (resolved) => {
        const keys = Object.keys(resolved.vars || {}).sort();
        if (keys.length === 0) return h('p', {}, `No variables apply to ${resolved.environment}.`);
        return h('table', { class: 'data compact' },
          h('caption', { class: 'sr-only' }, `Variables of ${resolved.environment}`),
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Key'), h('th', { scope: 'col' }, 'Value'), h('th', { scope: 'col' }, 'From'))),
          h('tbody', {}, keys.map((key) => h('tr', {},
            h('td', { 'data-label': 'Key' }, code(key)),
            h('td', { 'data-label': 'Value', class: 'mono wrap' }, String(resolved.vars[key])),
            h('td', { 'data-label': 'From' }, String((resolved.sources || {})[key] || ''))))));
      },
    }));
}

function varFields(environments, variable = null) {
  const slugs = environments.map((e) => [e.slug, e.slug]);
  return [
    variable ? h('p', {}, 'Key: ', code(variable.key), variable.git_branch ? h('span', {}, ' on branch ', code(variable.git_branch)) : null) : keyField(),
    textarea(variable ? 'New value' : 'Value', { name: 'value', rows: 3, class: 'mono', autocomplete: 'off', spellcheck: 'false', required: !variable, noOptional: !variable },
      variable ? 'Leave empty to keep the current value. At most 64 KiB.' : 'At most 64 KiB.'),
    checkGroup('Environments', 'environments', slugs, variable ? variable.environments : BUILT_IN.filter((slug) => slugs.some(([s]) => s === slug)),
      'One key can hold a different value per environment; one environment has one value of a key.'),
    variable ? null : field('Git branch', { name: 'git_branch', autocomplete: 'off', spellcheck: 'false' }, 'A branch override applies only in preview: check preview alone.'),
    checkbox('Sensitive: never show the value in lists', { name: 'sensitive', checked: Boolean(variable && variable.sensitive) }),
    field('Comment', { name: 'comment', value: variable ? variable.comment || '' : '', maxlength: '1024' }),
  ];
}

async function createVar(vaultId, environments, done) {
  const created = await formDialog({
    title: 'New variable',
    submitLabel: 'Add variable',
    wide: true,
    fields: () => varFields(environments),
    onSubmit: (data, form) => {
      const body = {
        key: textValue(data, 'key'),
        value: String(data.get('value') || ''),
        environments: checkedValues(form, 'environments'),
        sensitive: Boolean(data.get('sensitive')),
      };
      if (body.environments.length === 0) throw new Error('Choose at least one environment.');
      const branch = textValue(data, 'git_branch');
      if (branch) body.git_branch = branch;
      const comment = textValue(data, 'comment');
      if (comment) body.comment = comment;
      return api('POST', `/v1/vaults/${enc(vaultId)}/env-vars`, { body });
    },
  });
  if (created) {
    toast(`${created.key} added.`);
    done();
  }
}

async function editVar(vaultId, variable, environments, done) {
  const saved = await formDialog({
    title: `Edit ${variable.key}`,
    intro: 'Every change is a new version.',
    submitLabel: 'Save',
    wide: true,
    fields: () => varFields(environments, variable),
    onSubmit: (data, form) => {
      const body = {
        environments: checkedValues(form, 'environments'),
        sensitive: Boolean(data.get('sensitive')),
        comment: textValue(data, 'comment'),
      };
      if (body.environments.length === 0) throw new Error('Choose at least one environment.');
      const value = String(data.get('value') || '');
      if (value) body.value = value;
      return api('PATCH', `/v1/vaults/${enc(vaultId)}/env-vars/${enc(variable.key)}`, { query: varQuery(variable), body });
    },
  });
  if (saved) {
    toast(`${variable.key} saved (version ${saved.version}).`);
    done();
  }
}

async function deleteVar(vaultId, variable, done) {
  const ok = await confirmDialog({
    title: `Delete ${variable.key}?`,
    message: `Its value for ${variable.environments.join(', ')}${variable.git_branch ? ` on branch ${variable.git_branch}` : ''} is deleted. Apps and agents no longer get it.`,
    confirmLabel: 'Delete variable',
    danger: true,
  });
  if (!ok) return;
  try {
    await api('DELETE', `/v1/vaults/${enc(vaultId)}/env-vars/${enc(variable.key)}`, { query: varQuery(variable) });
    toast(`${variable.key} deleted.`);
    done();
  } catch (error) {
    toast(error.message, 'error');
  }
}

async function createEnvironment(vaultId, environments, done) {
  const created = await formDialog({
    title: 'New environment',
    submitLabel: 'Add environment',
    fields: () => [
      field('Slug', { name: 'slug', required: true, class: 'mono', autocomplete: 'off', spellcheck: 'false', maxlength: '30' }, 'Lower-case letters, digits and -, 2 to 30 characters, e.g. staging.'),
      field('Description', { name: 'description', maxlength: '1024' }),
      select('Start as a copy of', { name: 'copy_from' }, [['', 'Nothing: start empty'], ...environments.map((e) => [e.slug, e.slug])], 'Copies that environment’s variables (not its branch overrides).'),
    ],
    onSubmit: (data) => {
      const body = { slug: textValue(data, 'slug') };
      if (textValue(data, 'description')) body.description = textValue(data, 'description');
      if (textValue(data, 'copy_from')) body.copy_from = textValue(data, 'copy_from');
      return api('POST', `/v1/vaults/${enc(vaultId)}/environments`, { body });
    },
  });
  if (created) {
    toast(`Environment ${created.slug} added.`);
    done();
  }
}

async function deleteEnvironment(vaultId, environment, done) {
  const ok = await confirmDialog({
    title: `Delete environment ${environment.slug}?`,
    message: 'Variables lose this environment; a variable left with none is deleted.',
    typed: environment.slug,
    typedLabel: 'Type the slug to confirm',
    confirmLabel: 'Delete environment',
    danger: true,
  });
  if (!ok) return;
  try {
    await api('DELETE', `/v1/vaults/${enc(vaultId)}/environments/${enc(environment.slug)}`);
    toast(`Environment ${environment.slug} deleted.`);
    done();
  } catch (error) {
    toast(error.message, 'error');
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The organization's shared variables

export async function orgPage(ctx) {
  const add = button('New shared variable', () => createShared(() => ctx.refresh()), { kind: 'primary' });
  const body = h('div', {}, loadingState('Loading shared variables…'));
  mount(ctx.main, pageHeader({
    title: 'Shared variables',
    subtitle: 'Variables kept once for the whole organization and linked to the vaults that use them; a vault’s own variable of the same key wins.',
    actions: isAdmin() ? [add] : [],
  }), body);
  if (!isAdmin()) {
    mount(body, alertBox('Only owners and admins manage shared variables. Ask one of them to link the ones you need to your vault.', 'info'));
    return;
  }
  const [{ env_vars: vars }, dir] = await Promise.all([api('GET', '/v1/org/env-vars', { signal: ctx.signal }), directory({ signal: ctx.signal })]);
  for (const variable of vars) delete variable.value;
  vars.sort((a, b) => a.key.localeCompare(b.key));
  if (vars.length === 0) {
    mount(body, emptyState({
      title: 'No shared variables yet',
      body: 'Create one for settings many vaults use (a log endpoint, a region), then link it to those vaults.',
      action: button('Create a shared variable', () => createShared(() => ctx.refresh()), { kind: 'primary' }),
    }));
    return;
  }
  mount(body, dataTable({
    caption: 'Shared variables',
    columns: [
      { label: 'Key', render: (v) => h('div', {}, code(v.key), v.comment ? h('div', { class: 'muted small' }, v.comment) : null) },
      { label: 'Environments', render: (v) => envBadges(v.environments) },
      { label: 'Linked vaults', render: (v) => (v.linked_vaults.length ? h('ul', { class: 'plain' }, v.linked_vaults.map((vaultId) => h('li', {},
        h('a', { href: hashFor('vaults', vaultId, 'env') }, dir.name('vault', vaultId) || shortId(vaultId)), ' ',
        button('Unlink', () => unlink(v, vaultId, dir, () => ctx.refresh()), { small: true, kind: 'ghost', 'aria-label': `Unlink ${v.key} from ${dir.name('vault', vaultId) || vaultId}` })))) : h('span', { class: 'muted' }, 'None')) },
      { label: 'Version', render: (v) => `v${v.version}` },
      { label: 'Value', class: 'value-cell', render: (v) => (v.sensitive ? h('span', {}, badge('sensitive', 'warn'), h('span', { class: 'muted small' }, ' never shown again')) : revealer({
        label: `Value of ${v.key}`,
        load: async () => {
          const fresh = (await api('GET', '/v1/org/env-vars')).env_vars.find((item) => item.id === v.id);
          if (!fresh) throw new Error('This variable no longer exists.');
          return { value: fresh.value ?? '' };
        },
      })) },
      { label: 'Actions', class: 'actions', render: (v) => h('div', { class: 'row-actions' },
        button('Link', () => link(v, dir, () => ctx.refresh()), { small: true, 'aria-label': `Link ${v.key} to a vault` }),
        button('Edit', () => editShared(v, () => ctx.refresh()), { small: true, 'aria-label': `Edit ${v.key}` }),
        button('Delete', () => deleteShared(v, () => ctx.refresh()), { small: true, kind: 'danger-ghost', 'aria-label': `Delete ${v.key}` })) },
    ],
    rows: vars,
  }));
}

function sharedFields(variable = null) {
  return [
    variable ? h('p', {}, 'Key: ', code(variable.key)) : keyField(),
    textarea(variable ? 'New value' : 'Value', { name: 'value', rows: 3, class: 'mono', autocomplete: 'off', spellcheck: 'false', required: !variable, noOptional: !variable },
      variable ? 'Leave empty to keep the current value.' : null),
    checkGroup('Environments', 'environments', BUILT_IN.map((slug) => [slug, slug]), variable ? variable.environments : BUILT_IN),
    checkbox('Sensitive: never show the value again', { name: 'sensitive', checked: Boolean(variable && variable.sensitive) }),
    field('Comment', { name: 'comment', value: variable ? variable.comment || '' : '', maxlength: '1024' }),
  ];
}

async function createShared(done) {
  const created = await formDialog({
    title: 'New shared variable',
    submitLabel: 'Create',
    wide: true,
    fields: () => sharedFields(),
    onSubmit: (data, form) => {
      const body = { key: textValue(data, 'key'), value: String(data.get('value') || ''), environments: checkedValues(form, 'environments'), sensitive: Boolean(data.get('sensitive')) };
      if (body.environments.length === 0) throw new Error('Choose at least one environment.');
      if (textValue(data, 'comment')) body.comment = textValue(data, 'comment');
      return api('POST', '/v1/org/env-vars', { body });
    },
  });
  if (created) {
    toast(`${created.key} created. Link it to the vaults that need it.`);
    done();
  }
}

async function editShared(variable, done) {
  const saved = await formDialog({
    title: `Edit ${variable.key}`,
    submitLabel: 'Save',
    wide: true,
    fields: () => sharedFields(variable),
    onSubmit: (data, form) => {
      const body = { environments: checkedValues(form, 'environments'), sensitive: Boolean(data.get('sensitive')), comment: textValue(data, 'comment') };
      if (body.environments.length === 0) throw new Error('Choose at least one environment.');
      const value = String(data.get('value') || '');
      if (value) body.value = value;
      return api('PATCH', `/v1/org/env-vars/${enc(variable.key)}`, { body });
    },
  });
  if (saved) {
    toast(`${variable.key} saved.`);
    done();
  }
}

async function deleteShared(variable, done) {
  const ok = await confirmDialog({
    title: `Delete ${variable.key}?`,
    message: `It is removed from the ${variable.linked_vaults.length} vault${variable.linked_vaults.length === 1 ? '' : 's'} it is linked to.`,
    confirmLabel: 'Delete shared variable',
    danger: true,
  });
  if (!ok) return;
  try {
    await api('DELETE', `/v1/org/env-vars/${enc(variable.id)}`);
    toast(`${variable.key} deleted.`);
    done();
  } catch (error) {
    toast(error.message, 'error');
  }
}

async function link(variable, dir, done) {
  const candidates = dir.vaults.filter((v) => !variable.linked_vaults.includes(v.id));
  if (candidates.length === 0) {
    toast('It is linked to every vault already.', 'info');
    return;
  }
  const linked = await formDialog({
    title: `Link ${variable.key} to a vault`,
    submitLabel: 'Link',
    fields: () => [select('Vault', { name: 'vault_id' }, candidates.map((v) => [v.id, v.name]))],
    onSubmit: (data) => api('POST', `/v1/org/env-vars/${enc(variable.id)}/link`, { body: { vault_id: textValue(data, 'vault_id') } }),
  });
  if (linked) {
    toast(`${variable.key} linked.`);
    done();
  }
}

async function unlink(variable, vaultId, dir, done) {
  const ok = await confirmDialog({
    title: `Unlink ${variable.key}?`,
    message: `${dir.name('vault', vaultId) || 'The vault'} no longer gets this variable when resolving.`,
    confirmLabel: 'Unlink',
    danger: true,
  });
  if (!ok) return;
  try {
    await api('DELETE', `/v1/org/env-vars/${enc(variable.id)}/links/${enc(vaultId)}`);
    toast(`${variable.key} unlinked.`);
    done();
  } catch (error) {
    toast(error.message, 'error');
  }
}
