// Shared components: page headers, states (loading, empty, error), form fields, dialogs, toasts, tables, badges,
// the copy button, one-time secrets and the reveal widget that hides a value again after 30 seconds.

import { h, uid, append, mount } from './dom.js';
import { ApiError } from './api.js';

export const REVEAL_SECONDS = 30;

// ---------------------------------------------------------------------------------------------------------------
// Messages

/** The words to show for an error: the problem's `detail` for API errors. */
export function errorMessage(error) {
  if (error instanceof ApiError) return error.detail;
  if (error && error.message) return error.message;
  return 'Something went wrong.';
}

/** A short-lived notice in the polite live region. */
export function toast(message, kind = 'success') {
  const region = document.getElementById('toasts');
  if (!region) return;
  const item = h('div', { class: ['toast', `toast-${kind}`] }, message);
  region.append(item);
  window.setTimeout(() => item.remove(), kind === 'error' ? 8000 : 4000);
}

/** An inline alert; `kind` is error, info, warn or success. Errors are announced (role=alert). */
export function alertBox(message, kind = 'error', ...extra) {
  const text = typeof message === 'string' ? message : errorMessage(message);
  return h('div', { class: ['alert', `alert-${kind}`], role: kind === 'error' ? 'alert' : 'status' }, h('p', {}, text), extra);
}

/** "Loading …" with a spinner (announced once). */
export function loadingState(text = 'Loading…') {
  return h('p', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

/** An empty state that says what to do next. */
export function emptyState({ title, body, action }) {
  return h('div', { class: 'empty' }, h('h2', { class: 'empty-title' }, title), body ? h('p', {}, body) : null, action ? h('div', { class: 'empty-action' }, action) : null);
}

/** A page's title block: breadcrumbs, h1, subtitle and action buttons. */
export function pageHeader({ title, subtitle, actions = [], crumbs = [] }) {
  const heading = h('h1', { tabindex: '-1' }, title);
  return h('header', { class: 'page-header' },
    h('div', { class: 'page-title' },
      crumbs.length ? h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
        h('ol', {}, crumbs.map(([label, href]) => h('li', {}, href ? h('a', { href }, label) : h('span', { 'aria-current': 'page' }, label))))) : null,
      heading,
      subtitle ? h('p', { class: 'subtitle' }, subtitle) : null),
    actions.length ? h('div', { class: 'page-actions' }, actions) : null);
}

/** A section with an h2 and optional actions. */
export function section(title, { actions = [], intro, id } = {}, ...content) {
  const headingId = id || uid('section');
  return h('section', { class: 'panel', 'aria-labelledby': headingId },
    h('div', { class: 'panel-head' }, h('h2', { id: headingId }, title), actions.length ? h('div', { class: 'panel-actions' }, actions) : null),
    intro ? h('p', { class: 'panel-intro' }, intro) : null,
    content);
}

// ---------------------------------------------------------------------------------------------------------------
// Buttons, badges, lists

/** A button; `kind` is primary, danger, danger-ghost (a quiet destructive action), ghost or default. */
export function button(label, onclick, { kind = 'default', small = false, type = 'button', ...attrs } = {}) {
  return h('button', { type, class: ['btn', kind !== 'default' && `btn-${kind}`, small && 'btn-small'], onclick, ...attrs }, label);
}

/** Runs `work` with `btn` disabled and marked busy. */
export async function busy(btn, work) {
  const wasDisabled = btn.disabled;
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    btn.disabled = wasDisabled;
    btn.removeAttribute('aria-busy');
  }
}

/** A small label; `kind` is neutral, good, warn, bad or accent. */
export function badge(text, kind = 'neutral') {
  return h('span', { class: ['badge', `badge-${kind}`] }, text);
}

/** A definition list from `[term, description]` pairs (null descriptions are skipped). */
export function details(pairs) {
  return h('dl', { class: 'meta' }, pairs.filter(([, value]) => value !== null && value !== undefined)
    .map(([term, value]) => h('div', { class: 'meta-row' }, h('dt', {}, term), h('dd', {}, value))));
}

/**
 * A table: `columns` are `{label, render(row) -> node|string, class?}`. On narrow screens each row becomes a card
 * whose cells are labelled (the CSS reads `data-label`).
 */
export function dataTable({ columns, rows, caption, rowClass }) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'data' },
      caption ? h('caption', { class: 'sr-only' }, caption) : null,
      h('thead', {}, h('tr', {}, columns.map((col) => h('th', { scope: 'col', class: col.class }, col.label)))),
      h('tbody', {}, rows.map((row) => h('tr', { class: rowClass ? rowClass(row) : null },
        columns.map((col) => h('td', { class: col.class, 'data-label': col.label }, col.render(row))))))));
}

// ---------------------------------------------------------------------------------------------------------------
// Form fields (every control has a <label>)

function describe(control, hint) {
  if (!hint) return null;
  const hintId = uid('hint');
  control.setAttribute('aria-describedby', hintId);
  return h('p', { class: 'hint', id: hintId }, hint);
}

/** A labelled input. `attrs` go to the input (`name`, `type`, `required`, `value`, `autocomplete`, …);
 * `noOptional: true` leaves out the "(optional)" mark of a field that is not required. */
export function field(label, attrs = {}, hint) {
  const { noOptional, ...rest } = attrs;
  const id = rest.id || uid('f');
  const input = h('input', { type: 'text', ...rest, id });
  return h('div', { class: 'field' }, h('label', { for: id }, label, optionalMark(rest.required || noOptional)), input, describe(input, hint));
}

function optionalMark(required) {
  return required ? null : h('span', { class: 'optional' }, ' (optional)');
}

/** A labelled textarea. */
export function textarea(label, attrs = {}, hint) {
  const { noOptional, value, ...rest } = attrs;
  const id = rest.id || uid('f');
  const control = h('textarea', { rows: 4, ...rest, id });
  if (value !== undefined && value !== null) control.value = value;
  return h('div', { class: 'field' }, h('label', { for: id }, label, optionalMark(rest.required || noOptional)), control, describe(control, hint));
}

/** A labelled select; `options` are `[value, label]` pairs or strings. */
export function select(label, attrs = {}, options = [], hint) {
  const id = attrs.id || uid('f');
  const { value, ...rest } = attrs;
  const control = h('select', { ...rest, id }, options.map((option) => {
    const [optionValue, optionLabel] = Array.isArray(option) ? option : [option, option];
    return h('option', { value: optionValue }, optionLabel);
  }));
  if (value !== undefined && value !== null) control.value = value;
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, describe(control, hint));
}

/** A labelled checkbox. */
export function checkbox(label, attrs = {}, hint) {
  const id = attrs.id || uid('f');
  const input = h('input', { type: 'checkbox', ...attrs, id });
  return h('div', { class: 'field field-check' }, input, h('label', { for: id }, label), describe(input, hint));
}

/** A fieldset of checkboxes sharing `name`; `options` are `[value, label]`; `checked` is a list of values. */
export function checkGroup(legend, name, options, checked = [], hint) {
  const hintNode = hint ? h('p', { class: 'hint' }, hint) : null;
  return h('fieldset', { class: 'field checks' }, h('legend', {}, legend), hintNode,
    h('div', { class: 'check-list' }, options.map(([value, label]) => {
      const id = uid('c');
      return h('div', { class: 'field-check' },
        h('input', { type: 'checkbox', id, name, value, checked: checked.includes(value) }),
        h('label', { for: id }, label));
    })));
}

/** A fieldset of radio buttons sharing `name`. */
export function radioGroup(legend, name, options, checkedValue, hint) {
  const hintNode = hint ? h('p', { class: 'hint' }, hint) : null;
  return h('fieldset', { class: 'field checks' }, h('legend', {}, legend), hintNode,
    h('div', { class: 'check-list' }, options.map(([value, label]) => {
      const id = uid('r');
      return h('div', { class: 'field-check' },
        h('input', { type: 'radio', id, name, value, checked: value === checkedValue }),
        h('label', { for: id }, label));
    })));
}

/** Values of the checked boxes named `name` in `form`. */
export function checkedValues(form, name) {
  return [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((input) => input.value);
}

/** A trimmed text value of a form field, or '' . */
export function textValue(data, name) {
  const value = data.get(name);
  return typeof value === 'string' ? value.trim() : '';
}

/** An integer field's value, or null when empty. */
export function intValue(data, name, label) {
  const text = textValue(data, name);
  if (!text) return null;
  const number = Number(text);
  if (!Number.isInteger(number)) throw new Error(`${label} must be a whole number.`);
  return number;
}

/** A JSON object field's value, or null when empty. */
export function jsonObjectValue(data, name, label) {
  const text = textValue(data, name);
  if (!text) return null;
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`${label} is not valid JSON.`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${label} must be a JSON object, like {"team": "payments"}.`);
  return value;
}

// ---------------------------------------------------------------------------------------------------------------
// Dialogs (native <dialog>: modal, focus kept inside, Escape closes)

/**
 * Opens a modal dialog. `content(close)` returns its body. Resolves when it closes, with the value passed to
 * `close(value)` (undefined for Escape). The dialog is removed from the DOM when closed.
 */
export function openDialog({ title, content, wide = false, onClosed }) {
  return new Promise((resolve) => {
    const headingId = uid('dlg');
    const opener = document.activeElement;
    const dialog = h('dialog', { class: ['modal', wide && 'modal-wide'], 'aria-labelledby': headingId });
    let result;
    const close = (value) => {
      result = value;
      if (dialog.open) dialog.close();
    };
    mount(dialog,
      h('div', { class: 'modal-head' },
        h('h2', { id: headingId }, title),
        h('button', { type: 'button', class: 'btn btn-ghost btn-icon', 'aria-label': 'Close', onclick: () => close(undefined) }, '×')),
      h('div', { class: 'modal-body' }, content(close)));
    dialog.addEventListener('close', () => {
      if (onClosed) onClosed();
      dialog.remove();
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
    const first = dialog.querySelector('[autofocus], .modal-body input:not([type=hidden]):not([disabled]):not([readonly]), .modal-body textarea, .modal-body select, .modal-body button');
    if (first) first.focus();
  });
}

/**
 * A dialog with a form. `fields(form)` returns the form's controls; `onSubmit(data, form)` runs on submit and may
 * throw (the error is shown in the dialog, which stays open). Resolves to onSubmit's result (true when it returns
 * nothing, e.g. a 204), or null when cancelled.
 */
export function formDialog({ title, intro, fields, submitLabel = 'Save', danger = false, wide = false, onSubmit }) {
  return openDialog({
    title,
    wide,
    content: (close) => {
      const errorSlot = h('div', { class: 'form-error-slot' });
      const submit = h('button', { type: 'submit', class: ['btn', danger ? 'btn-danger' : 'btn-primary'] }, submitLabel);
      const form = h('form', { class: 'form', novalidate: false });
      append(form, [
        intro ? (typeof intro === 'string' ? h('p', { class: 'dialog-intro' }, intro) : intro) : null,
        errorSlot,
      ]);
      append(form, [fields(form)]);
      append(form, [h('div', { class: 'form-actions' }, submit, button('Cancel', () => close(null)))]);
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        errorSlot.replaceChildren();
        try {
          const result = await busy(submit, () => onSubmit(new FormData(form), form));
          close(result === undefined || result === null ? true : result);
        } catch (error) {
          if (error && error.name === 'AbortError') return;
          const box = alertBox(error);
          errorSlot.append(box);
          box.setAttribute('tabindex', '-1');
          box.focus();
        }
      });
      return form;
    },
  }).then((value) => (value === undefined ? null : value));
}

/**
 * Asks for confirmation. With `typed`, the confirm button stays disabled until that exact text is typed (deleting
 * a vault asks for its name). Resolves to true or false.
 */
export function confirmDialog({ title, message, confirmLabel = 'Confirm', danger = false, typed, typedLabel }) {
  return openDialog({
    title,
    content: (close) => {
      const confirm = h('button', { type: 'submit', class: ['btn', danger ? 'btn-danger' : 'btn-primary'], disabled: Boolean(typed) }, confirmLabel);
      const form = h('form', { class: 'form' }, typeof message === 'string' ? h('p', {}, message) : message);
      if (typed) {
        const input = field(typedLabel || `Type “${typed}” to confirm`, { name: 'typed', required: true, autocomplete: 'off', spellcheck: 'false', noOptional: true });
        const control = input.querySelector('input');
        control.addEventListener('input', () => {
          confirm.disabled = control.value !== typed;
        });
        form.append(input);
      }
      form.append(h('div', { class: 'form-actions' }, confirm, button('Cancel', () => close(false))));
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        if (!confirm.disabled) close(true);
      });
      return form;
    },
  }).then((value) => value === true);
}

// ---------------------------------------------------------------------------------------------------------------
// Clipboard

function legacyCopy(text) {
  const area = h('textarea', { class: 'clipboard-buffer', readonly: true, 'aria-hidden': 'true', tabindex: '-1' });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  area.value = '';
  area.remove();
  return ok;
}

/** Copies `text`; resolves to whether it worked (a toast says so either way). */
export async function copyText(text, what = 'Value') {
  let ok = false;
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch {
      ok = legacyCopy(text);
    }
  } else {
    ok = legacyCopy(text);
  }
  toast(ok ? `${what} copied to the clipboard.` : 'The browser did not allow copying. Select the text and copy it.', ok ? 'success' : 'error');
  return ok;
}

/** A "Copy" button copying `getText()`; it says "Copied" for a moment. */
export function copyButton(getText, { label = 'Copy', what = 'Value', small = true } = {}) {
  const btn = button(label, async () => {
    const text = getText();
    if (!text) return;
    if (await copyText(text, what)) {
      btn.textContent = 'Copied';
      window.setTimeout(() => {
        btn.textContent = label;
      }, 2000);
    }
  }, { small });
  return btn;
}

// ---------------------------------------------------------------------------------------------------------------
// Values shown once, and revealed values

/**
 * Shows a credential the server hands out once (an agent key, a share link, an invitation): a read-only field
 * with a copy button, in a dialog that clears the field when it closes.
 */
export function showOnce({ title, intro, label, value, what, after }) {
  let input;
  return openDialog({
    title,
    onClosed: () => {
      if (input) input.value = '';
    },
    content: (close) => {
      const id = uid('once');
      input = h('input', { id, type: 'text', readonly: true, class: 'mono once-value', autocomplete: 'off', spellcheck: 'false' });
      input.value = value;
      input.addEventListener('focus', () => input.select());
      return h('div', { class: 'once' },
        intro ? h('p', {}, intro) : null,
        alertBox('Copy it now: it is shown only this once. Keyhold keeps no readable copy.', 'warn'),
        h('div', { class: 'field' }, h('label', { for: id }, label),
          h('div', { class: 'input-with-button' }, input, copyButton(() => input.value, { what: what || label, small: false }))),
        after || null,
        h('div', { class: 'form-actions' }, button('Done', () => close(true), { kind: 'primary' })));
    },
  });
}

const revealed = new Set();

/** Hides every revealed value (on navigation, sign-out, or when the page is hidden). */
export function hideAllRevealed() {
  for (const hide of [...revealed]) hide();
}

/**
 * The reveal widget. The value is not in the page until "Reveal" calls `load()` (the audited API read); then it
 * shows with Copy and Hide, and is removed from the DOM again after 30 seconds, on navigation, or on Hide.
 * `load` resolves to a string or to `{value, ...}`; `onLoaded(response)` gets the whole response (e.g. to update
 * an access count). `render(value)` may return a node to show instead of plain text (e.g. a table).
 */
export function revealer({ load, label = 'Secret value', onLoaded, revealLabel = 'Reveal', render, note } = {}) {
  let value = null;
  let timer = null;
  let remaining = 0;
  const box = h('div', { class: 'secret-value masked', tabindex: '0', role: 'region', 'aria-label': label }, '••••••••••••');
  const countdown = h('span', { class: 'reveal-timer', 'aria-live': 'off' });
  const status = h('div', { class: 'reveal-status' });
  const revealButton = button(revealLabel, () => reveal(), { small: true, kind: 'primary' });
  const hideButton = button('Hide', () => hide(), { small: true, hidden: true });
  const copy = copyButton(() => value, { what: label });
  copy.hidden = true;

  function hide() {
    value = null;
    if (timer !== null) window.clearInterval(timer);
    timer = null;
    revealed.delete(hide);
    box.replaceChildren('••••••••••••');
    box.classList.add('masked');
    countdown.textContent = '';
    revealButton.hidden = false;
    hideButton.hidden = true;
    copy.hidden = true;
  }

  function tick() {
    remaining -= 1;
    if (remaining <= 0 || !box.isConnected) hide();
    else countdown.textContent = `Hides in ${remaining} s`;
  }

  async function reveal() {
    status.replaceChildren();
    let response;
    try {
      response = await busy(revealButton, load);
    } catch (error) {
      if (error && error.name === 'AbortError') return;
      status.append(alertBox(error));
      return;
    }
    const text = typeof response === 'string' ? response : response && response.value;
    if (!render && typeof text !== 'string') {
      status.append(alertBox('The server returned no value.'));
      return;
    }
    value = render ? null : text;
    box.classList.remove('masked');
    box.replaceChildren(render ? render(response) : text);
    remaining = REVEAL_SECONDS;
    countdown.textContent = `Hides in ${remaining} s`;
    revealButton.hidden = true;
    hideButton.hidden = false;
    copy.hidden = render ? true : false;
    revealed.add(hide);
    timer = window.setInterval(tick, 1000);
    if (onLoaded) onLoaded(response);
    box.focus();
  }

  return h('div', { class: 'reveal' },
    box,
    h('div', { class: 'reveal-bar' }, revealButton, copy, hideButton, countdown),
    note ? h('p', { class: 'hint' }, note) : null,
    status);
}
