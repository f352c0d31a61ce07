// Building the DOM node by node: every string from the API goes in as text, never parsed as markup.

let nextId = 0;

/** A fresh id for label/for and aria-describedby pairs. */
export function uid(prefix = 'kh') {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/**
 * h('button', {class: 'btn', onclick: fn, disabled: true}, 'Save')
 *
 * Attributes: `class`, `text` (textContent), `dataset` (object), `on<event>` (a listener), `true` adds an
 * empty attribute, `false`/`null`/`undefined` leave it out, anything else is set as a string. Children may be
 * nodes, strings, numbers, arrays of those, or null (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'value' && 'value' in el) el.value = String(value);
    else if (key === 'checked' || key === 'selected') el[key] = Boolean(value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Appends nodes, strings and (nested) arrays of them. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces all children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** `<code>` with text. */
export function code(text) {
  return h('code', {}, text);
}

/** An in-app link to a hash route. */
export function link(href, text, attrs = {}) {
  return h('a', { href, ...attrs }, text);
}

/** Visually hidden text for screen readers. */
export function srOnly(text) {
  return h('span', { class: 'sr-only' }, text);
}
