// Keyhold console: boot, the signed-in shell (top bar, navigation), and the route table.

import { h, mount } from './dom.js';
import * as api from './api.js';
import * as router from './router.js';
import { alertBox, button, hideAllRevealed, loadingState, toast } from './ui.js';
import { renderSignIn, renderSignUp } from './views/auth.js';
import { renderShareOpen } from './views/share-open.js';
import * as vaults from './views/vaults.js';
import * as secrets from './views/secrets.js';
import * as policies from './views/policies.js';
import * as agents from './views/agents.js';
import * as shares from './views/shares.js';
import * as audit from './views/audit.js';
import * as members from './views/members.js';
import * as approvals from './views/approvals.js';
import * as envvars from './views/envvars.js';
import * as account from './views/account.js';
import { forgetDirectory } from './directory.js';

const root = document.getElementById('app');

const NAV = [
  { section: 'vaults', label: 'Vaults', href: '#/vaults' },
  { section: 'agents', label: 'Agents', href: '#/agents' },
  { section: 'shares', label: 'Shares', href: '#/shares' },
  { section: 'approvals', label: 'Approvals', href: '#/approvals' },
  { section: 'audit', label: 'Audit log', href: '#/audit' },
  { section: 'members', label: 'Members', href: '#/members' },
  { section: 'env', label: 'Shared variables', href: '#/env', admin: true },
  { section: 'account', label: 'Account', href: '#/account' },
];

router.route('/vaults', vaults.list, { section: 'vaults', title: 'Vaults' });
router.route('/vaults/:vaultId', (ctx) => router.navigate(router.hashFor('vaults', ctx.params.vaultId, 'secrets'), { replace: true }), { section: 'vaults' });
router.route('/vaults/:vaultId/secrets', secrets.list, { section: 'vaults', title: 'Secrets' });
router.route('/vaults/:vaultId/secret/*path', secrets.detail, { section: 'vaults', title: 'Secret' });
router.route('/vaults/:vaultId/policies', policies.page, { section: 'vaults', title: 'Policies' });
router.route('/vaults/:vaultId/env', envvars.vaultPage, { section: 'vaults', title: 'Environment variables' });
router.route('/agents', agents.list, { section: 'agents', title: 'Agents' });
router.route('/agents/:agentId', agents.detail, { section: 'agents', title: 'Agent' });
router.route('/shares', shares.page, { section: 'shares', title: 'Shares' });
router.route('/approvals', approvals.list, { section: 'approvals', title: 'Approvals' });
router.route('/approvals/:approvalId', approvals.detail, { section: 'approvals', title: 'Approval request' });
router.route('/audit', audit.page, { section: 'audit', title: 'Audit log' });
router.route('/members', members.page, { section: 'members', title: 'Members' });
router.route('/env', envvars.orgPage, { section: 'env', title: 'Shared variables' });
router.route('/account', account.page, { section: 'account', title: 'Account' });

let mode = 'boot';
let wanted = null;
let current = null;
let shell = null;
let firstRender = true;

// ---------------------------------------------------------------------------------------------------------------
// Signed out

function showAuth(notice) {
  mode = 'auth';
  router.stop();
  leaveRoute();
  forgetDirectory();
  shell = null;
  const { path, query } = router.location();
  if (!['/', '/signin', '/signup'].includes(path)) {
    const search = query.toString();
    wanted = `#${path}${search ? `?${search}` : ''}`;
    window.history.replaceState(null, '', '#/signin');
  }
  renderAuth(notice);
}

function renderAuth(notice) {
  const { path } = router.location();
  if (path === '/signup') renderSignUp(root, { onSignedIn });
  else renderSignIn(root, { onSignedIn, notice });
}

function onSignedIn() {
  const target = wanted || '#/vaults';
  wanted = null;
  window.history.replaceState(null, '', target);
  showApp();
}

window.addEventListener('hashchange', () => {
  if (mode === 'auth') renderAuth();
});

api.onSessionEnd((reason) => {
  if (mode === 'app') showAuth(reason);
});

// ---------------------------------------------------------------------------------------------------------------
// Signed in: the shell

function renderShell() {
  const me = api.user();
  const main = h('main', { id: 'main', class: 'main', tabindex: '-1' });
  const navList = h('ul', {}, NAV.filter((item) => !item.admin || api.isAdmin()).map((item) => h('li', {},
    h('a', { href: item.href, dataset: { section: item.section } }, item.label,
      item.section === 'approvals' ? h('span', { class: 'count', hidden: true }) : null))));
  const nav = h('nav', { id: 'nav', class: 'nav', 'aria-label': 'Main' }, navList);
  const toggle = h('button', { type: 'button', class: 'menu-toggle btn btn-ghost', 'aria-expanded': 'false', 'aria-controls': 'nav' },
    h('span', { class: 'menu-icon', 'aria-hidden': 'true' }), 'Menu');
  const frame = h('div', { class: 'shell' },
    h('a', { class: 'skip-link', href: '#main', onclick: (event) => {
      event.preventDefault();
      main.focus();
    } }, 'Skip to content'),
    h('header', { class: 'topbar' },
      toggle,
      h('a', { class: 'brand', href: '#/vaults' }, h('img', { src: '/console/img/favicon.svg', alt: '', width: '24', height: '24' }), 'Keyhold'),
      h('div', { class: 'topbar-user' },
        h('span', { class: 'user-name', title: me.email }, me.display_name || me.email),
        h('span', { class: 'badge badge-neutral user-role' }, me.role),
        button('Sign out', async (event) => {
          event.currentTarget.disabled = true;
          try {
            await api.signOut();
          } catch (error) {
            toast(`Signed out here; the server said: ${error.message}`, 'error');
          }
          window.history.replaceState(null, '', '#/signin');
          showAuth('You have signed out.');
        }, { small: true, class: 'btn btn-small sign-out' }))),
    h('div', { class: 'layout' }, nav, main));
  toggle.addEventListener('click', () => setNavOpen(toggle.getAttribute('aria-expanded') !== 'true'));
  nav.addEventListener('click', (event) => {
    if (event.target.closest('a')) setNavOpen(false);
  });
  function setNavOpen(open) {
    frame.classList.toggle('nav-open', open);
    toggle.setAttribute('aria-expanded', String(open));
  }
  mount(root, frame);
  shell = { frame, main, nav, toggle, setNavOpen };
  refreshPendingCount();
}

function setActiveSection(section) {
  if (!shell) return;
  for (const a of shell.nav.querySelectorAll('a')) {
    if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** The number of pending approval requests, next to "Approvals". */
async function refreshPendingCount() {
  if (!shell) return;
  const badge = shell.nav.querySelector('a[data-section="approvals"] .count');
  if (!badge) return;
  try {
    const body = await api.api('GET', '/v1/approvals', { query: { status: 'pending', limit: 100 } });
    const count = (body.approvals || []).length;
    badge.textContent = count >= 100 ? '99+' : String(count);
    badge.hidden = count === 0;
    badge.setAttribute('aria-label', `${count} pending`);
  } catch {
    badge.hidden = true;
  }
}

window.addEventListener('keyhold:approvals-changed', refreshPendingCount);

// Escape closes the phone navigation menu and returns focus to its button.
document.addEventListener('keydown', (event) => {
  if (event.key !== 'Escape' || !shell || !shell.frame.classList.contains('nav-open')) return;
  shell.setNavOpen(false);
  shell.toggle.focus();
});

function showApp() {
  mode = 'app';
  firstRender = true;
  renderShell();
  router.start(onRoute);
}

function leaveRoute() {
  hideAllRevealed();
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  if (!current) return;
  current.controller.abort();
  for (const fn of current.cleanups) {
    try {
      fn();
    } catch {
      // a cleanup must not stop the others
    }
  }
  current = null;
}

async function onRoute() {
  if (mode !== 'app' || !shell) return;
  const { path, query } = router.location();
  if (path === '/' || path === '/signin' || path === '/signup') {
    router.navigate('#/vaults', { replace: true });
    return;
  }
  const found = router.match(path);
  if (!found) {
    leaveRoute();
    mount(shell.main, alertBox('There is no such page in the console.', 'info'), h('p', {}, h('a', { href: '#/vaults' }, 'Go to your vaults')));
    return;
  }
  leaveRoute();
  const controller = new AbortController();
  const cleanups = [];
  const state = { controller, cleanups };
  current = state;
  setActiveSection(found.meta.section);
  shell.setNavOpen(false);
  document.title = `${found.meta.title || 'Console'} · Keyhold`;
  mount(shell.main);
  const ctx = {
    params: found.params,
    query,
    main: shell.main,
    signal: controller.signal,
    onLeave: (fn) => cleanups.push(fn),
    setTitle: (title) => {
      document.title = `${title} · Keyhold`;
    },
    refresh: () => onRoute(),
    isCurrent: () => current === state,
  };
  const focusHeading = !firstRender;
  firstRender = false;
  try {
    await found.view(ctx);
    if (focusHeading && current === state) {
      const heading = shell.main.querySelector('h1');
      if (heading) heading.focus({ preventScroll: false });
    }
  } catch (error) {
    if (error && error.name === 'AbortError') return;
    if (current !== state) return;
    mount(shell.main, alertBox(error), h('p', {}, button('Try again', () => onRoute())));
  }
}

// Values revealed on a page must not outlive it: hide them when the tab is left or the page is unloaded.
window.addEventListener('pagehide', hideAllRevealed);

// ---------------------------------------------------------------------------------------------------------------
// Boot

async function boot() {
  const pathname = window.location.pathname;
  const share = pathname.match(/^\/v1\/share\/([^/]+)$/);
  if (share) {
    mode = 'share';
    renderShareOpen(root, { url: pathname });
    return;
  }
  const approval = pathname.match(/^\/approvals\/([^/]+)$/);
  if (approval) {
    const decided = new URLSearchParams(window.location.search).get('decided') === 'true';
    window.history.replaceState(null, '', `/${router.hashFor('approvals', decodeURIComponent(approval[1]))}${decided ? '?decided=true' : ''}`);
  } else if (pathname !== '/') {
    window.history.replaceState(null, '', `/${window.location.hash}`);
  }
  mount(root, loadingState('Loading Keyhold…'));
  let session;
  try {
    session = await api.restoreSession();
  } catch (error) {
    mount(root, h('main', { class: 'auth-page', id: 'main' }, h('div', { class: 'auth-card' },
      h('h1', {}, 'Keyhold is not answering'),
      alertBox(error),
      button('Try again', () => boot(), { kind: 'primary' }))));
    return;
  }
  if (session) showApp();
  else showAuth();
}

boot();
