// Account: profile (display name), password, two-step verification (TOTP) and personal API keys.

import { h, mount, code } from '../dom.js';
import { api, enc } from '../api.js';
import { timeEl, localInputToIso, lines } from '../format.js';
import {
  pageHeader, loadingState, emptyState, alertBox, dataTable, button, badge, formDialog, confirmDialog, field, textarea,
  textValue, toast, showOnce, details, section, copyButton, openDialog,
} from '../ui.js';

export async function page(ctx) {
  const body = h('div', {}, loadingState('Loading your account…'));
  mount(ctx.main, pageHeader({ title: 'Account', subtitle: 'Your profile, sign-in protection and personal API keys.' }), body);
  const [me, { keys }] = await Promise.all([
    api('GET', '/v1/auth/me', { signal: ctx.signal }),
    api('GET', '/v1/auth/api-keys', { signal: ctx.signal }),
  ]);
  const reload = () => ctx.refresh();
  mount(body,
    h('div', { class: 'grid-2' },
      section('Profile', { actions: [button('Edit name', () => editName(me, reload), { small: true })] }, details([
        ['Email', me.email],
        ['Name', me.display_name || h('span', { class: 'muted' }, 'Not set')],
        ['Role', badge(me.role, me.role === 'owner' ? 'accent' : 'neutral')],
        ['Organization', code(me.org_id)],
        ['Member since', timeEl(me.created_at)],
      ])),
      section('Sign-in protection', {}, details([
        ['Password', button('Change password', () => changePassword(), { small: true })],
        ['Two-step verification', me.totp_enabled
          ? h('span', {}, badge('on', 'good'), ' ', button('Turn off', () => disableMfa(reload), { small: true, kind: 'danger-ghost' }))
          : h('span', {}, badge('off', 'warn'), ' ', button('Turn on', () => enableMfa(reload), { small: true, kind: 'primary' }))],
      ]), me.totp_enabled ? null : h('p', { class: 'hint' }, 'With two-step verification on, signing in and approving risky requests ask for a code from an authenticator app.'))),
    section('Personal API keys', {
      intro: 'A 1ck_ key lets a script act as you through the API. Scopes cap it to some paths; a scoped key cannot manage anything.',
      actions: [button('New API key', () => createKey(reload), { small: true, kind: 'primary' })],
    }, keys.length === 0 ? emptyState({ title: 'No API keys', body: 'Create one for a script or the command line (keyhold login --api-key).' }) : dataTable({
      caption: 'Your API keys',
      rowClass: (k) => (k.is_active ? null : 'row-muted'),
      columns: [
        { label: 'Name', render: (k) => h('span', { class: 'strong' }, k.name) },
        { label: 'Key', render: (k) => h('code', {}, `${k.key_prefix}…`) },
        { label: 'Scopes', render: (k) => (k.scopes === null || k.scopes === undefined ? h('span', { class: 'muted' }, 'No cap') : h('span', { class: 'badges' }, k.scopes.map((s) => h('code', {}, s)))) },
        { label: 'Status', render: (k) => (k.is_active ? badge('active', 'good') : badge('deleted', 'bad')) },
        { label: 'Expires', render: (k) => (k.expires_at ? timeEl(k.expires_at) : 'Never') },
        { label: 'Created', render: (k) => timeEl(k.created_at) },
        { label: 'Actions', class: 'actions', render: (k) => (k.is_active ? button('Delete', () => deleteKey(k, reload), { small: true, kind: 'danger-ghost', 'aria-label': `Delete API key ${k.name}` }) : null) },
      ],
      rows: keys,
    })));
}

async function editName(me, done) {
  const saved = await formDialog({
    title: 'Your name',
    submitLabel: 'Save',
    fields: () => [field('Name', { name: 'display_name', value: me.display_name || '', maxlength: '255', autocomplete: 'name' }, 'Shown to the other members. Leave empty to show your email instead.')],
    onSubmit: (data) => api('PATCH', '/v1/auth/me', { body: { display_name: textValue(data, 'display_name') || null } }),
  });
  if (saved) {
    toast('Name saved.');
    done();
  }
}

async function changePassword() {
  const saved = await formDialog({
    title: 'Change password',
    intro: 'Your other sessions are signed out within 15 minutes.',
    submitLabel: 'Change password',
    fields: () => [
      field('Current password', { name: 'current_password', type: 'password', required: true, autocomplete: 'current-password' }),
      field('New password', { name: 'new_password', type: 'password', required: true, autocomplete: 'new-password', minlength: '12' },
        'At least 12 characters with upper- and lower-case letters, a digit and a special character; no character three times in a row, no run such as abc or 123.'),
      field('Repeat the new password', { name: 'new_password2', type: 'password', required: true, autocomplete: 'new-password' }),
    ],
    onSubmit: (data) => {
      if (data.get('new_password') !== data.get('new_password2')) throw new Error('The two new passwords differ.');
      return api('PATCH', '/v1/auth/me', { body: { current_password: String(data.get('current_password')), new_password: String(data.get('new_password')) } });
    },
  });
  if (saved) toast('Password changed.');
}

async function enableMfa(done) {
  let setup;
  try {
    setup = await api('POST', '/v1/auth/mfa/setup');
  } catch (error) {
    toast(error.message, 'error');
    return;
  }
  const grouped = setup.secret.replace(/(.{4})/g, '$1 ').trim();
  const verified = await formDialog({
    title: 'Turn on two-step verification',
    wide: true,
    intro: h('div', {},
      h('p', {}, 'In your authenticator app, add an account with this key (time-based, 6 digits, 30 seconds), then enter the code it shows.'),
      details([
        ['Key', h('div', { class: 'key-line' }, h('code', { class: 'wrap' }, grouped), copyButton(() => setup.secret, { what: 'Key' }))],
        ['Setup link', h('div', { class: 'key-line' }, h('code', { class: 'wrap small' }, setup.otpauth_uri), copyButton(() => setup.otpauth_uri, { what: 'Setup link' }))],
      ])),
    submitLabel: 'Turn on',
    fields: () => [field('Code from the app', { name: 'code', required: true, autocomplete: 'one-time-code', inputmode: 'numeric', maxlength: '6', spellcheck: 'false' })],
    onSubmit: (data) => api('POST', '/v1/auth/mfa/verify-setup', { body: { code: textValue(data, 'code').replace(/\s+/g, '') } }),
  });
  setup = null;
  if (!verified) return;
  await openDialog({
    title: 'Recovery codes',
    content: (close) => {
      const text = verified.recovery_codes.join('\n');
      return h('div', {},
        alertBox('Two-step verification is on. Keep these single-use recovery codes somewhere safe: each signs you in once without the app. They are shown only now.', 'warn'),
        h('pre', { class: 'secret-value codes' }, text),
        h('div', { class: 'form-actions' }, copyButton(() => text, { what: 'Recovery codes', label: 'Copy codes', small: false }), button('Done', () => close(true), { kind: 'primary' })));
    },
  });
  done();
}

async function disableMfa(done) {
  const off = await formDialog({
    title: 'Turn off two-step verification',
    intro: 'Enter a current code from your authenticator app, or a recovery code. A password alone is not enough.',
    submitLabel: 'Turn off',
    danger: true,
    fields: () => [field('Code', { name: 'code', required: true, autocomplete: 'one-time-code', spellcheck: 'false' })],
    onSubmit: (data) => api('DELETE', '/v1/auth/mfa', { body: { code: textValue(data, 'code').replace(/\s+/g, '') } }),
  });
  if (off) {
    toast('Two-step verification is off.');
    done();
  }
}

async function createKey(done) {
  const created = await formDialog({
    title: 'New API key',
    submitLabel: 'Create key',
    fields: () => [
      field('Name', { name: 'name', required: true, maxlength: '255', autocomplete: 'off' }, 'What uses it, e.g. laptop-cli.'),
      textarea('Scopes', { name: 'scopes', rows: 2, class: 'mono', spellcheck: 'false' }, 'Path globs, one per line, to cap the key (e.g. ci/**). Empty: acts fully as you.'),
      field('Expires at', { name: 'expires_at', type: 'datetime-local' }),
    ],
    onSubmit: (data) => {
      const scopes = lines(data.get('scopes'));
      return api('POST', '/v1/auth/api-keys', {
        body: { name: textValue(data, 'name'), scopes: scopes.length ? scopes : null, expires_at: localInputToIso(textValue(data, 'expires_at')) },
      });
    },
  });
  if (!created) return;
  await showOnce({ title: 'API key created', label: 'API key', what: 'API key', value: created.api_key, intro: `The key ${created.key.name}. Use it as a Bearer token or exchange it at /v1/auth/api-key-token.` });
  done();
}

async function deleteKey(key, done) {
  const ok = await confirmDialog({
    title: `Delete the key ${key.name}?`,
    message: 'It stops working at once, with every token exchanged from it.',
    confirmLabel: 'Delete key',
    danger: true,
  });
  if (!ok) return;
  try {
    await api('DELETE', `/v1/auth/api-keys/${enc(key.id)}`);
    toast('API key deleted.');
    done();
  } catch (error) {
    toast(error.message, 'error');
  }
}
