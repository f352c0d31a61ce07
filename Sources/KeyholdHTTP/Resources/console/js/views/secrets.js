// Secrets of a vault: the tree of paths with search, and a secret's page (value behind Reveal, versions, metadata,
// expiry, reads; new version, rotate, disable a version, share, delete).

import { h, mount, code } from '../dom.js';
import { api, enc, encPath } from '../api.js';
import { hashFor, navigate } from '../router.js';
import { timeEl, isPast, isoToLocalInput, localInputToIso, plural, prettyJson, relative } from '../format.js';
import {
  loadingState, emptyState, alertBox, dataTable, button, badge, formDialog, confirmDialog, field, textarea, select,
  textValue, intValue, jsonObjectValue, toast, revealer, details, section, busy,
} from '../ui.js';
import { vaultFrame } from './vaults.js';
import { shareSecretDialog } from './shares.js';
import { directory } from '../directory.js';

export const SECRET_TYPES = [
  ['generic', 'Generic'], ['password', 'Password'], ['api_key', 'API key'], ['private_key', 'Private key'],
  ['certificate', 'Certificate'], ['ssh_key', 'SSH key'], ['note', 'Note'], ['file', 'File'], ['env', 'Environment variable'],
  ['env_bundle', 'Environment bundle (.env)'],
];
const TYPE_LABEL = new Map(SECRET_TYPES);
const PAGE_SIZE = 500;
const EXPAND_ALL_UP_TO = 60;

const secretHash = (vaultId, path) => hashFor('vaults', vaultId, 'secret', path);
const secretUrl = (vaultId, path) => `/v1/vaults/${enc(vaultId)}/secrets/${encPath(path)}`;

// ---------------------------------------------------------------------------------------------------------------
// The tree

export async function list(ctx) {
  const { vaultId } = ctx.params;
  const add = button('New secret', () => createSecret(vaultId), { kind: 'primary' });
  const { body } = await vaultFrame(ctx, 'secrets', { actions: [add] });
  const search = h('input', { type: 'search', id: 'secret-search', placeholder: 'Filter by path', autocomplete: 'off', spellcheck: 'false' });
  const summary = h('p', { class: 'muted toolbar-note', 'aria-live': 'polite' });
  const treeSlot = h('div', { class: 'tree-slot' }, loadingState('Loading secrets…'));
  const more = h('div', { class: 'load-more' });
  mount(body,
    h('div', { class: 'toolbar' },
      h('div', { class: 'field field-inline' }, h('label', { for: 'secret-search' }, 'Search paths'), search),
      summary),
    treeSlot, more);

  const secrets = [];
  let cursor = null;

  function draw() {
    const query = search.value.trim().toLowerCase();
    if (secrets.length === 0) {
      summary.textContent = '';
      mount(treeSlot, emptyState({
        title: 'This vault has no secrets yet',
        body: 'Add a secret with New secret. Paths such as db/password or api-keys/stripe group secrets into folders, and policies grant access by path.',
        action: button('Add a secret', () => createSecret(vaultId), { kind: 'primary' }),
      }));
      return;
    }
    const shown = query ? secrets.filter((s) => s.path.toLowerCase().includes(query)) : secrets;
    summary.textContent = query
      ? `${plural(shown.length, 'secret')} of ${secrets.length} match “${search.value.trim()}”.`
      : `${plural(secrets.length, 'secret')}${cursor ? ' loaded' : ''}.`;
    if (shown.length === 0) {
      mount(treeSlot, emptyState({ title: 'No match', body: `No secret path contains “${search.value.trim()}”. Try part of a folder or a name.` }));
      return;
    }
    // Small vaults show every folder open; large ones open the top level only (a search opens what matches).
    mount(treeSlot, renderTree(buildTree(shown), vaultId, Boolean(query) || shown.length <= EXPAND_ALL_UP_TO));
  }

  async function loadPage() {
    const page = await api('GET', `/v1/vaults/${enc(vaultId)}/secrets`, { query: { limit: PAGE_SIZE, cursor }, signal: ctx.signal });
    secrets.push(...page.secrets);
    cursor = page.next_cursor || null;
    draw();
    mount(more, cursor ? button('Load more secrets', (event) => busy(event.currentTarget, loadPage).catch((error) => {
      more.append(alertBox(error));
    })) : null);
  }

  search.addEventListener('input', draw);
  await loadPage();
}

function buildTree(secrets) {
  const root = { name: '', folders: new Map(), items: [], count: 0 };
  for (const secret of secrets) {
    const parts = secret.path.split('/');
    let node = root;
    node.count += 1;
    for (const part of parts.slice(0, -1)) {
      if (!node.folders.has(part)) node.folders.set(part, { name: part, folders: new Map(), items: [], count: 0 });
      node = node.folders.get(part);
      node.count += 1;
    }
    node.items.push(secret);
  }
  return root;
}

function renderTree(node, vaultId, expandAll, depth = 0) {
  const folders = [...node.folders.values()].sort((a, b) => a.name.localeCompare(b.name));
  const items = [...node.items].sort((a, b) => a.path.localeCompare(b.path));
  return h('ul', { class: depth === 0 ? 'tree' : 'tree-children', role: depth === 0 ? null : 'group' },
    folders.map((folder) => h('li', { class: 'tree-folder' },
      h('details', { open: expandAll || depth === 0 },
        h('summary', {}, h('span', { class: 'folder-name' }, `${folder.name}/`), h('span', { class: 'count-pill', 'aria-label': plural(folder.count, 'secret') }, String(folder.count))),
        renderTree(folder, vaultId, expandAll, depth + 1)))),
    items.map((secret) => h('li', { class: 'tree-leaf' },
      h('a', { href: secretHash(vaultId, secret.path), class: 'leaf-link', title: secret.path }, secret.path.split('/').pop()),
      h('span', { class: 'leaf-meta' },
        badge(TYPE_LABEL.get(secret.type) || secret.type, 'neutral'),
        h('span', { class: 'muted' }, `v${secret.version}`),
        expiryBadge(secret),
        secret.is_disabled ? badge('disabled', 'bad') : null))));
}

function expiryBadge(version) {
  if (!version.expires_at) return null;
  if (isPast(version.expires_at)) return badge('expired', 'bad');
  const days = (new Date(version.expires_at).getTime() - Date.now()) / 86400000;
  return days < 7 ? badge(`expires ${relative(version.expires_at)}`, 'warn') : null;
}

function statusOf(version) {
  if (version.is_disabled) return ['Disabled', 'bad'];
  if (isPast(version.expires_at)) return ['Expired', 'bad'];
  if (version.max_access_count && version.access_count >= version.max_access_count) return ['Used up', 'bad'];
  return ['Active', 'good'];
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

function valueFields({ type = 'generic', metadata, expiresAt, maxReads, rotationPolicy, valueHint } = {}) {
  return [
    select('Type', { name: 'type', value: type }, SECRET_TYPES),
    textarea('Value', { name: 'value', required: true, rows: 5, class: 'mono', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off' },
      valueHint || 'At most 256 KiB. It is encrypted before it is stored and never shown in lists.'),
    h('details', { class: 'disclosure', open: Boolean(metadata || expiresAt || maxReads || rotationPolicy) },
      h('summary', {}, 'Expiry, read limit and metadata'),
      field('Expires at', { name: 'expires_at', type: 'datetime-local', value: isoToLocalInput(expiresAt) }, 'After this moment reads answer “gone” (410). Leave empty for no expiry.'),
      field('Maximum reads', { name: 'max_access_count', type: 'number', min: '1', step: '1', value: maxReads ?? '' }, 'After this many reads of the version, reads answer “gone”. Leave empty for no limit.'),
      textarea('Metadata (JSON object)', { name: 'metadata', rows: 3, class: 'mono', spellcheck: 'false', value: metadata ? prettyJson(metadata) : '' }, 'Not secret: shown in lists, e.g. {"owner": "payments"}.'),
      textarea('Rotation policy (JSON object)', { name: 'rotation_policy', rows: 2, class: 'mono', spellcheck: 'false', value: rotationPolicy ? prettyJson(rotationPolicy) : '' }, 'Stored with the version for your tooling; Keyhold does not act on it.')),
  ];
}

function valueBody(data) {
  const body = {
    value: String(data.get('value') || ''),
    type: textValue(data, 'type') || null,
    expires_at: localInputToIso(textValue(data, 'expires_at')),
    max_access_count: intValue(data, 'max_access_count', 'Maximum reads'),
    metadata: jsonObjectValue(data, 'metadata', 'Metadata'),
    rotation_policy: jsonObjectValue(data, 'rotation_policy', 'Rotation policy'),
  };
  if (!body.value) throw new Error('Enter a value.');
  return body;
}

/** The "New secret" dialog; opens the new secret's page. */
export async function createSecret(vaultId, prefix = '') {
  const created = await formDialog({
    title: 'New secret',
    submitLabel: 'Store secret',
    wide: true,
    fields: () => [
      field('Path', { name: 'path', required: true, value: prefix, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off', maxlength: '512', class: 'mono' },
        'Letters, digits, - and _, with / between folders: e.g. db/password. The same path again writes a new version.'),
      ...valueFields(),
    ],
    onSubmit: async (data) => {
      const path = textValue(data, 'path').replace(/^\/+|\/+$/g, '');
      if (!path) throw new Error('Enter a path.');
      return api('PUT', secretUrl(vaultId, path), { body: valueBody(data) });
    },
  });
  if (created) {
    toast(`Stored ${created.path} (version ${created.version}).`);
    navigate(secretHash(vaultId, created.path));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// A secret's page

export async function detail(ctx) {
  const { vaultId, path } = ctx.params;
  const { vault, body } = await vaultFrame(ctx, 'secrets', { title: path, crumb: path });
  mount(body, loadingState('Loading the secret…'));
  let versions;
  try {
    versions = (await api('GET', `/v1/vaults/${enc(vaultId)}/secret-versions/${encPath(path)}`, { signal: ctx.signal })).versions;
  } catch (error) {
    if (error.status === 404 || error.status === 410) {
      mount(body, alertBox(error.status === 410 ? 'This secret was deleted.' : error.message, 'info'),
        h('p', {}, h('a', { href: hashFor('vaults', vaultId, 'secrets') }, `Back to ${vault.name}`)));
      return;
    }
    throw error;
  }
  versions.sort((a, b) => b.version - a.version);
  const latest = versions[0];
  if (!latest) {
    mount(body, alertBox('This secret has no versions.', 'info'));
    return;
  }
  const dir = await directory({ signal: ctx.signal });
  const first = versions[versions.length - 1];
  const reload = () => ctx.refresh();

  const actions = h('div', { class: 'page-actions inline-actions' },
    button('New version', () => editSecret(vaultId, latest, reload), { kind: 'primary' }),
    button('Rotate', () => rotateSecret(vaultId, latest, reload)),
    button('Share', () => shareSecretDialog(latest, vault)),
    button('Delete', () => deleteSecret(vaultId, path), { kind: 'danger-ghost' }));

  const latestReads = h('span', {}, readsText(latest));
  const valuePanel = section('Value', {
    intro: 'Revealing reads the latest version through the API: the read is counted and written to the audit log. The value hides again after 30 seconds.',
  }, revealer({
    label: `Value of ${path}`,
    load: () => api('GET', secretUrl(vaultId, path)),
    onLoaded: (secret) => {
      latestReads.textContent = readsText(secret);
      const cell = body.querySelector(`[data-version-reads="${secret.version}"]`);
      if (cell) cell.textContent = readsText(secret);
    },
  }));

  const [status, statusKind] = statusOf(latest);
  const detailsPanel = section('Details', {}, details([
    ['Type', TYPE_LABEL.get(latest.type) || latest.type],
    ['Latest version', h('span', {}, `v${latest.version} `, badge(status, statusKind))],
    ['Reads of this version', latestReads],
    ['Expires', latest.expires_at ? h('span', {}, timeEl(latest.expires_at), ` (${relative(latest.expires_at)})`) : 'Never'],
    ['Created', timeEl(first.updated_at || first.created_at)],
    ['Updated', timeEl(latest.updated_at)],
    ['Written by', creatorLabel(dir, latest.created_by)],
    ['Secret id', code(latest.id)],
    latest.cmek_encrypted ? ['Encryption', 'Customer-managed key (the value is ciphertext)'] : null,
    latest.metadata ? ['Metadata', h('pre', { class: 'json' }, prettyJson(latest.metadata))] : ['Metadata', h('span', { class: 'muted' }, 'None')],
    latest.rotation_policy ? ['Rotation policy', h('pre', { class: 'json' }, prettyJson(latest.rotation_policy))] : null,
  ].filter(Boolean)));

  const versionsPanel = section('Versions', {
    intro: 'Every write keeps the earlier versions. Reveal one to read it (audited), or disable it so that reads of it answer “gone”.',
  }, dataTable({
    caption: `Versions of ${path}`,
    columns: [
      { label: 'Version', render: (v) => h('span', { class: 'strong' }, `v${v.version}`, v.version === latest.version ? h('span', {}, ' ', badge('latest', 'accent')) : null) },
      { label: 'Written', render: (v) => timeEl(v.updated_at) },
      { label: 'By', render: (v) => creatorLabel(dir, v.created_by) },
      { label: 'Reads', render: (v) => h('span', { dataset: { versionReads: String(v.version) } }, readsText(v)) },
      { label: 'Expires', render: (v) => (v.expires_at ? timeEl(v.expires_at) : 'Never') },
      { label: 'Status', render: (v) => badge(...statusOf(v)) },
      { label: 'Value', class: 'value-cell', render: (v) => (v.is_disabled ? h('span', { class: 'muted' }, '—') : revealer({
        label: `Value of ${path} version ${v.version}`,
        load: () => api('GET', `/v1/vaults/${enc(vaultId)}/secret-version/${encPath(path)}/${v.version}`),
        onLoaded: (secret) => {
          for (const cell of body.querySelectorAll(`[data-version-reads="${secret.version}"]`)) cell.textContent = readsText(secret);
          if (secret.version === latest.version) latestReads.textContent = readsText(secret);
        },
      })) },
      { label: 'Actions', class: 'actions', render: (v) => (v.is_disabled ? null : button('Disable', () => disableVersion(vaultId, path, v.version, reload), {
        small: true, kind: 'danger-ghost', 'aria-label': `Disable version ${v.version}`,
      })) },
    ],
    rows: versions,
  }));

  mount(body, actions, h('div', { class: 'grid-2' }, valuePanel, detailsPanel), versionsPanel);
}

function readsText(version) {
  return version.max_access_count ? `${version.access_count} of ${version.max_access_count}` : String(version.access_count);
}

function creatorLabel(dir, id) {
  const name = dir.name('user', id) || dir.name('agent', id);
  return h('span', { title: id }, name || (id ? `${id.slice(0, 8)}…` : '—'));
}

async function editSecret(vaultId, latest, done) {
  const written = await formDialog({
    title: `New version of ${latest.path}`,
    intro: `Writes version ${latest.version + 1}. Earlier versions stay readable until disabled.`,
    submitLabel: 'Save new version',
    wide: true,
    fields: () => valueFields({
      type: latest.type,
      metadata: latest.metadata,
      expiresAt: latest.expires_at && !isPast(latest.expires_at) ? latest.expires_at : null,
      maxReads: latest.max_access_count,
      rotationPolicy: latest.rotation_policy,
      valueHint: 'The new value. At most 256 KiB.',
    }),
    onSubmit: (data) => api('PUT', secretUrl(vaultId, latest.path), { body: valueBody(data) }),
  });
  if (written) {
    toast(`Saved version ${written.version} of ${written.path}.`);
    done();
  }
}

async function rotateSecret(vaultId, latest, done) {
  const rotated = await formDialog({
    title: `Rotate ${latest.path}`,
    intro: 'Keyhold generates a random value and stores it as a new version; metadata and rotation policy carry over. Reveal it afterwards to copy it where it is used.',
    submitLabel: 'Rotate now',
    fields: () => [
      field('Length', { name: 'length', type: 'number', min: '8', max: '4096', step: '1', placeholder: 'server default' }, 'Characters of the new value.'),
      select('Characters', { name: 'charset' }, [['', 'Server default'], ['alphanumeric', 'Letters and digits'], ['hex', 'Hexadecimal'], ['base64', 'Base64'], ['ascii', 'Printable ASCII']]),
    ],
    onSubmit: (data) => api('POST', `/v1/vaults/${enc(vaultId)}/secret-rotate/${encPath(latest.path)}`, {
      body: { length: intValue(data, 'length', 'Length'), charset: textValue(data, 'charset') || null },
    }),
  });
  if (rotated) {
    toast(`Rotated: ${rotated.path} is now at version ${rotated.version}.`);
    done();
  }
}

async function disableVersion(vaultId, path, version, done) {
  const ok = await confirmDialog({
    title: `Disable version ${version}?`,
    message: `Reads of version ${version} of ${path} will answer “gone”. A disabled version cannot be enabled again; write a new version to replace it.`,
    confirmLabel: 'Disable version',
    danger: true,
  });
  if (!ok) return;
  try {
    await api('POST', `/v1/vaults/${enc(vaultId)}/secret-version-disable/${encPath(path)}/${version}`);
    toast(`Version ${version} disabled.`);
    done();
  } catch (error) {
    toast(error.message, 'error');
  }
}

async function deleteSecret(vaultId, path) {
  const ok = await confirmDialog({
    title: 'Delete this secret?',
    message: h('div', {}, h('p', {}, 'This deletes every version of ', code(path), ' and revokes its shares. Reads will answer “gone”. It cannot be undone.')),
    typed: path,
    typedLabel: 'Type the path to confirm',
    confirmLabel: 'Delete secret',
    danger: true,
  });
  if (!ok) return;
  try {
    await api('DELETE', secretUrl(vaultId, path));
    toast(`Deleted ${path}.`);
    navigate(hashFor('vaults', vaultId, 'secrets'));
  } catch (error) {
    toast(error.message, 'error');
  }
}

