// Sign in (with the MFA step when the account uses it) and sign up.

import { h, mount } from '../dom.js';
import * as api from '../api.js';
import { alertBox, field, busy, textValue } from '../ui.js';

const PASSWORD_RULES = 'At least 12 characters with an upper-case letter, a lower-case letter, a digit and a special '
  + 'character; no character three times in a row and no run such as abc or 123.';

function authCard(title, intro, ...content) {
  return h('main', { class: 'auth-page', id: 'main' },
    h('div', { class: 'auth-card' },
      h('div', { class: 'auth-brand' }, h('img', { src: '/console/img/favicon.svg', alt: '', width: '32', height: '32' }), h('span', {}, 'Keyhold')),
      h('h1', { tabindex: '-1' }, title),
      intro ? h('p', { class: 'auth-intro' }, intro) : null,
      content));
}

function formWith(submitLabel, controls, onSubmit) {
  const errorSlot = h('div', { class: 'form-error-slot' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, submitLabel);
  const form = h('form', { class: 'form' }, errorSlot, controls, submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    errorSlot.replaceChildren();
    try {
      await busy(submit, () => onSubmit(new FormData(form), form));
    } catch (error) {
      const box = alertBox(error);
      box.setAttribute('tabindex', '-1');
      errorSlot.append(box);
      box.focus();
    }
  });
  return form;
}

/** The sign-in page; `onSignedIn()` runs once a session is open. `notice` is shown above the form. */
export function renderSignIn(root, { onSignedIn, notice }) {
  document.title = 'Sign in · Keyhold';
  const form = formWith('Sign in', [
    field('Email', { name: 'email', type: 'email', required: true, autocomplete: 'username', autofocus: true }),
    field('Password', { name: 'password', type: 'password', required: true, autocomplete: 'current-password' }),
  ], async (data) => {
    const result = await api.signIn(textValue(data, 'email'), String(data.get('password') || ''));
    if (result.mfaToken) renderMfa(root, { mfaToken: result.mfaToken, onSignedIn });
    else onSignedIn();
  });
  mount(root, authCard('Sign in', 'Sign in to manage your vaults, agents and shares.',
    notice ? alertBox(notice, 'info') : null,
    form,
    h('p', { class: 'auth-switch' }, 'No account yet? ', h('a', { href: '#/signup' }, 'Create an account'))));
  focusFirst(root);
}

function renderMfa(root, { mfaToken, onSignedIn }) {
  document.title = 'Verification code · Keyhold';
  const form = formWith('Verify', [
    field('Code', {
      name: 'code', required: true, autocomplete: 'one-time-code', autofocus: true, spellcheck: 'false',
      autocapitalize: 'off', maxlength: '64',
    }, 'The 6-digit code from your authenticator app, or one of your recovery codes.'),
  ], async (data) => {
    await api.verifyMfa(mfaToken, textValue(data, 'code').replace(/\s+/g, ''));
    onSignedIn();
  });
  mount(root, authCard('Two-step verification', 'This account uses an authenticator app. Enter a current code to finish signing in.',
    form,
    h('p', { class: 'auth-switch' }, h('a', { href: '#/signin', onclick: (event) => {
      event.preventDefault();
      renderSignIn(root, { onSignedIn });
    } }, 'Start again'))));
  focusFirst(root);
}

/** The sign-up page: creates the account, then signs in with the same credentials. */
export function renderSignUp(root, { onSignedIn }) {
  document.title = 'Create an account · Keyhold';
  const invite = h('details', { class: 'disclosure' },
    h('summary', {}, 'I have an invitation code'),
    field('Invitation code', { name: 'invite_token', autocomplete: 'off', spellcheck: 'false' },
      'From the person who invited you; use the email address they invited. Without a code, a new organization is created for you.'));
  const form = formWith('Create account', [
    field('Email', { name: 'email', type: 'email', required: true, autocomplete: 'username', autofocus: true }),
    field('Name', { name: 'display_name', autocomplete: 'name', maxlength: '255' }),
    field('Password', { name: 'password', type: 'password', required: true, autocomplete: 'new-password', minlength: '12' }, PASSWORD_RULES),
    field('Repeat the password', { name: 'password2', type: 'password', required: true, autocomplete: 'new-password' }),
    invite,
  ], async (data) => {
    const email = textValue(data, 'email');
    const password = String(data.get('password') || '');
    if (password !== String(data.get('password2') || '')) throw new Error('The two passwords differ.');
    await api.signUp({ email, password, displayName: textValue(data, 'display_name'), inviteToken: textValue(data, 'invite_token') });
    try {
      const result = await api.signIn(email, password);
      if (result.mfaToken) renderMfa(root, { mfaToken: result.mfaToken, onSignedIn });
      else onSignedIn();
    } catch (error) {
      if (error instanceof api.ApiError && error.status === 401) {
        // Sign-up answers alike for a new and a taken address; a taken one keeps its own password.
        throw new Error('The account could not be signed in. If this address already had an account, sign in with its password.');
      }
      throw error;
    }
  });
  mount(root, authCard('Create an account', 'Keyhold keeps secrets for people and their agents. Your account starts a new organization that you own.',
    form,
    h('p', { class: 'auth-switch' }, 'Already have an account? ', h('a', { href: '#/signin' }, 'Sign in'))));
  focusFirst(root);
}

function focusFirst(root) {
  const input = root.querySelector('[autofocus]');
  if (input) input.focus();
}
