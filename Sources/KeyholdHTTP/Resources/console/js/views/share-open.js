// The page a share link opens (`/v1/share/<id>` in a browser): nothing is read until the visitor chooses Open,
// because each open is counted (a share may allow only a few) and audited. The link is fetched again as JSON,
// without cookies, with the passphrase in `X-Share-Passphrase` when there is one. The value hides again after 30
// seconds, like every revealed value in the console.

import { h, mount } from '../dom.js';
import { openShareLink } from '../api.js';
import { field, details, revealer } from '../ui.js';
import { timeEl } from '../format.js';

export function renderShareOpen(root, { url }) {
  document.title = 'Shared secret · Keyhold';
  const passphrase = field('Passphrase', { name: 'passphrase', type: 'password', autocomplete: 'off' },
    'Only if the sender protected the share with one; they told it to you separately.');
  const input = passphrase.querySelector('input');
  const about = h('div', { class: 'share-about' });
  const widget = revealer({
    label: 'Shared value',
    revealLabel: 'Open the secret',
    note: 'Opening again after it hides counts as another open.',
    load: async () => {
      const shared = await openShareLink(url, input.value);
      input.value = '';
      return shared;
    },
    onLoaded: (shared) => {
      mount(about, details([
        ['Secret', h('span', { class: 'mono' }, shared.path)],
        ['Version', `v${shared.version}`],
        ['Opens', shared.max_access_count ? `${shared.access_count} of ${shared.max_access_count}` : String(shared.access_count)],
        ['Link expires', timeEl(shared.expires_at)],
      ]));
    },
  });

  mount(root, h('main', { class: 'auth-page', id: 'main' },
    h('div', { class: 'auth-card share-card' },
      h('div', { class: 'auth-brand' }, h('img', { src: '/console/img/favicon.svg', alt: '', width: '32', height: '32' }), h('span', {}, 'Keyhold')),
      h('h1', {}, 'A secret was shared with you'),
      h('p', { class: 'auth-intro' }, 'Opening it shows the value for 30 seconds. Each open is counted and written to the sender’s audit log; a share may allow only a few opens.'),
      passphrase,
      about,
      widget,
      h('p', { class: 'auth-switch muted' }, 'Keep the link private: whoever has it can open the secret. A share addressed to you by name opens under Shares once you sign in.'))));
}
