// Shares: creating one from a secret (a link is shown once), the outbound and inbound lists (revoke, accept,
// decline, open), and the org-wide list for owners and admins.

import { h, mount } from '../dom.js';
import { api, enc, user, isAdmin } from '../api.js';
import { hashFor } from '../router.js';
import { timeEl, daysFromNowInput, localInputToIso, lines, isoToLocalInput } from '../format.js';
import {
  pageHeader, loadingState, emptyState, alertBox, dataTable, button, badge, formDialog, confirmDialog, field, textarea,
  select, radioGroup, textValue, intValue, toast, revealer, showOnce, section,
} from '../ui.js';
import { directory } from '../directory.js';

const RECIPIENTS = [
  ['anyone_with_link', 'Anyone with the link'],
  ['user', 'A member of your organization'],
  ['agent', 'An agent'],
  ['external_email', 'Someone by email address'],
];

// ---------------------------------------------------------------------------------------------------------------
// Creating a share (from a secret's page)

/** The share dialog for `secret` (a version's metadata: `id`, `path`, `version`) of `vault`. */
export async function shareSecretDialog(secret, vault) {
  const dir = await directory();
  const me = user();
  const members = dir.members.filter((m) => m.user_id !== me.id);
  const agents = dir.agents.filter((a) => a.is_active);
  let chosenEmail = '';
  const share = await formDialog({
    title: `Share ${secret.path}`,
    intro: `A share lends your read access to this one secret of ${vault.name}. It stops working when it expires, is used up or revoked, or when you can no longer read the secret.`,
    submitLabel: 'Create share',
    wide: true,
    fields: () => {
      const recipient = radioGroup('Share with', 'recipient_type', RECIPIENTS, 'anyone_with_link');
      const memberField = select('Member', { name: 'recipient_user' },
        members.length ? members.map((m) => [m.user_id, m.display_name ? `${m.display_name} (${m.email})` : m.email]) : [['', 'No other members yet']]);
      const agentField = select('Agent', { name: 'recipient_agent' },
        agents.length ? agents.map((a) => [a.id, a.name]) : [['', 'No active agents']]);
      const emailField = field('Email address', { name: 'email', type: 'email', autocomplete: 'off', noOptional: true },
        'You will get a claim code to send them; they accept the share with it after signing in with this address.');
      const choices = { user: memberField, agent: agentField, external_email: emailField };
      const sync = () => {
        const chosen = recipient.querySelector('input:checked').value;
        for (const [type, wrapper] of Object.entries(choices)) {
          const active = type === chosen;
          wrapper.hidden = !active;
          for (const control of wrapper.querySelectorAll('input, select')) {
            control.disabled = !active;
            control.required = active;
          }
        }
      };
      recipient.addEventListener('change', sync);
      sync();
      const inAYear = isoToLocalInput(new Date(Date.now() + 365 * 86400000).toISOString());
      return [
        recipient, memberField, agentField, emailField,
        field('Expires at', { name: 'expires_at', type: 'datetime-local', required: true, value: daysFromNowInput(7), max: inAYear }, 'At most a year ahead.'),
        field('Maximum opens', { name: 'max_access_count', type: 'number', min: '1', step: '1' }, 'Leave empty for no limit until it expires.'),
        select('Version', { name: 'version' }, [
          ['pinned', `Version ${secret.version}: the share keeps serving it`],
          ['latest', 'The latest version at each open'],
        ]),
        field('Passphrase', { name: 'passphrase', type: 'password', autocomplete: 'new-password' }, 'Needed to open the share; tell it to the recipient another way than the link.'),
        textarea('Allowed addresses', { name: 'ip_allowlist', rows: 2, class: 'mono', spellcheck: 'false' }, 'One IP address or network per line (e.g. 203.0.113.0/24). Leave empty to allow any address.'),
      ];
    },
    onSubmit: (data) => {
      const type = textValue(data, 'recipient_type');
      const body = {
        recipient_type: type,
        expires_at: localInputToIso(textValue(data, 'expires_at')),
        max_access_count: intValue(data, 'max_access_count', 'Maximum opens'),
        passphrase: String(data.get('passphrase') || '') || null,
        ip_allowlist: lines(data.get('ip_allowlist')).length ? lines(data.get('ip_allowlist')) : null,
        version: textValue(data, 'version') === 'latest' ? 'latest' : secret.version,
      };
      if (!body.expires_at) throw new Error('Choose when the share expires.');
      if (type === 'user') body.recipient_id = textValue(data, 'recipient_user');
      if (type === 'agent') body.recipient_id = textValue(data, 'recipient_agent');
      if ((type === 'user' || type === 'agent') && !body.recipient_id) throw new Error(`Choose ${type === 'user' ? 'a member' : 'an agent'} to share with.`);
      if (type === 'external_email') {
        body.email = textValue(data, 'email');
        chosenEmail = body.email;
      }
      return api('POST', `/v1/secrets/${enc(secret.id)}/share`, { body });
    },
  });
  if (!share) return;
  if (share.recipient_type === 'anyone_with_link') {
    await showOnce({
      title: 'Share link created',
      intro: `Anyone who has this link can open ${share.secret_path} until ${new Date(share.expires_at).toLocaleString()}${share.has_passphrase ? ', with the passphrase' : ''}. Each open is counted and audited.`,
      label: 'Share link',
      what: 'Share link',
      value: share.share_url,
    });
  } else if (share.recipient_type === 'external_email' && share.claim_token) {
    await showOnce({
      title: 'Share created',
      intro: `Send this claim code to ${chosenEmail || share.recipient_email}. They sign in with that address, open Shares and accept the share with the code.`,
      label: 'Claim code',
      what: 'Claim code',
      value: share.claim_token,
    });
  } else {
    const name = dir.name(share.recipient_type, share.recipient_id) || 'the recipient';
    toast(`Shared ${share.secret_path} with ${name}. They accept it under Shares.`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The Shares page

function recipientLabel(dir, share) {
  switch (share.recipient_type) {
    case 'anyone_with_link': return 'Anyone with the link';
    case 'user': return dir.name('user', share.recipient_id) || 'A member';
    case 'agent': return `${dir.name('agent', share.recipient_id) || 'An agent'} (agent)`;
    case 'external_email': return share.recipient_email || 'By email';
    case 'creator': return 'The agent’s creator';
    default: return share.recipient_type;
  }
}

function statusBadge(share) {
  if (share.is_expired) return badge('expired', 'bad');
  if (share.max_access_count && share.access_count >= share.max_access_count) return badge('used up', 'bad');
  if (share.status === 'declined') return badge('declined', 'bad');
  if (share.recipient_type === 'anyone_with_link') return badge('active', 'good');
  return share.status === 'accepted' ? badge('accepted', 'good') : badge('waiting for acceptance', 'warn');
}

function reads(share) {
  return share.max_access_count ? `${share.access_count} of ${share.max_access_count}` : String(share.access_count);
}

function secretCell(share) {
  return h('div', {},
    h('a', { href: hashFor('vaults', share.vault_id, 'secret', share.secret_path), class: 'mono' }, share.secret_path),
    h('div', { class: 'muted small' }, share.follows_latest ? 'latest version' : `version ${share.version}`));
}

function protection(share) {
  const parts = [];
  if (share.has_passphrase) parts.push(badge('passphrase', 'neutral'));
  if (share.ip_allowlist && share.ip_allowlist.length) parts.push(badge(`${share.ip_allowlist.length} address rule${share.ip_allowlist.length > 1 ? 's' : ''}`, 'neutral'));
  return parts.length ? h('span', { class: 'badges' }, parts) : h('span', { class: 'muted' }, '—');
}

async function revoke(share, done) {
  const ok = await confirmDialog({
    title: 'Revoke this share?',
    message: `The share of ${share.secret_path} with ${share.recipient_type === 'anyone_with_link' ? 'anyone who has the link' : 'its recipient'} stops working at once.`,
    confirmLabel: 'Revoke share',
    danger: true,
  });
  if (!ok) return;
  try {
    await api('DELETE', `/v1/shares/${enc(share.reference || share.id)}`);
    toast('Share revoked.');
    done();
  } catch (error) {
    toast(error.message, 'error');
  }
}

export async function page(ctx) {
  mount(ctx.main, pageHeader({
    title: 'Shares',
    subtitle: 'Secrets you shared and secrets shared with you. To share a secret, open it and choose Share.',
  }));
  const dir = await directory({ signal: ctx.signal });
  const outbound = h('div', {}, loadingState('Loading your shares…'));
  const inbound = h('div', {}, loadingState('Loading shares for you…'));
  ctx.main.append(
    section('Shared by you', {}, outbound),
    section('Shared with you', { intro: 'Accept a share to open it; opening it is counted and written to its owner’s audit log.' }, inbound));
  const org = isAdmin() ? h('div', {}, loadingState('Loading the organization’s shares…')) : null;
  if (org) ctx.main.append(section('All shares in the organization', { intro: 'Owners and admins see and may revoke every share; other people’s links are named by reference, not by link.' }, org));

  const jobs = [
    api('GET', '/v1/shares/outbound', { signal: ctx.signal }).then(({ shares }) => drawOutbound(outbound, shares, dir, ctx)),
    api('GET', '/v1/shares/inbound', { signal: ctx.signal }).then(({ shares }) => drawInbound(inbound, shares, dir, ctx)),
  ];
  if (org) jobs.push(api('GET', '/v1/org/shares', { signal: ctx.signal }).then(({ shares }) => drawOrg(org, shares, dir, ctx)));
  const outcomes = await Promise.allSettled(jobs);
  const slots = [outbound, inbound, org];
  outcomes.forEach((outcome, index) => {
    if (outcome.status === 'rejected') {
      if (outcome.reason && outcome.reason.name === 'AbortError') return;
      mount(slots[index], alertBox(outcome.reason));
    }
  });
}

function drawOutbound(slot, shares, dir, ctx) {
  if (shares.length === 0) {
    mount(slot, emptyState({
      title: 'You have not shared anything',
      body: 'Open a secret and choose Share to create a link, or to share it with a member or an agent.',
      action: h('a', { href: '#/vaults', class: 'btn' }, 'Go to your vaults'),
    }));
    return;
  }
  mount(slot, dataTable({
    caption: 'Shares you created',
    columns: [
      { label: 'Secret', render: secretCell },
      { label: 'With', render: (s) => recipientLabel(dir, s) },
      { label: 'Status', render: statusBadge },
      { label: 'Opens', render: reads },
      { label: 'Expires', render: (s) => timeEl(s.expires_at) },
      { label: 'Protection', render: protection },
      { label: 'Created', render: (s) => timeEl(s.created_at) },
      { label: 'Actions', class: 'actions', render: (s) => button('Revoke', () => revoke(s, () => ctx.refresh()), { small: true, kind: 'danger-ghost', 'aria-label': `Revoke share of ${s.secret_path}` }) },
    ],
    rows: shares,
  }));
}

function drawInbound(slot, shares, dir, ctx) {
  if (shares.length === 0) {
    mount(slot, emptyState({
      title: 'Nothing has been shared with you',
      body: 'When someone shares a secret with you, it appears here for you to accept and open. Someone who sent you a claim code shared it by email: it appears here too.',
    }));
    return;
  }
  mount(slot, dataTable({
    caption: 'Shares addressed to you',
    columns: [
      { label: 'Secret', render: (s) => h('div', {}, h('span', { class: 'mono' }, s.secret_path), h('div', { class: 'muted small' }, s.follows_latest ? 'latest version' : `version ${s.version}`)) },
      { label: 'Status', render: statusBadge },
      { label: 'Opens', render: reads },
      { label: 'Expires', render: (s) => timeEl(s.expires_at) },
      { label: 'Value', class: 'value-cell', render: (s) => (s.status === 'accepted' && !s.is_expired ? revealer({
        label: `Shared value of ${s.secret_path}`,
        revealLabel: 'Open',
        load: () => openInbound(s),
      }) : h('span', { class: 'muted' }, s.status === 'pending' ? 'Accept it first' : '—')) },
      { label: 'Actions', class: 'actions', render: (s) => (s.status === 'pending' && !s.is_expired ? h('div', { class: 'row-actions' },
        button('Accept', () => answer(s, 'accept', () => ctx.refresh()), { small: true, kind: 'primary', 'aria-label': `Accept share of ${s.secret_path}` }),
        button('Decline', () => answer(s, 'decline', () => ctx.refresh()), { small: true, kind: 'danger-ghost', 'aria-label': `Decline share of ${s.secret_path}` })) : null) },
    ],
    rows: shares,
  }));
}

/** Opens a share addressed to the caller (audited), asking for its passphrase first when it has one. */
async function openInbound(share) {
  const headers = {};
  if (share.has_passphrase) {
    const passphrase = await formDialog({
      title: 'Passphrase',
      intro: `The share of ${share.secret_path} is protected by a passphrase. Its sender told it to you.`,
      submitLabel: 'Open',
      fields: () => [field('Passphrase', { name: 'passphrase', type: 'password', required: true, autocomplete: 'off' })],
      onSubmit: (data) => String(data.get('passphrase') || ''),
    });
    if (!passphrase) {
      const cancelled = new Error('cancelled');
      cancelled.name = 'AbortError';
      throw cancelled;
    }
    headers['X-Share-Passphrase'] = passphrase;
  }
  return api('GET', `/v1/share/${enc(share.id)}`, { headers });
}

async function answer(share, verb, done) {
  const needsCode = share.recipient_type === 'external_email';
  const result = await formDialog({
    title: verb === 'accept' ? `Accept the share of ${share.secret_path}?` : `Decline the share of ${share.secret_path}?`,
    intro: verb === 'accept'
      ? 'Once accepted you can open it here until it expires.'
      : 'Declining ends the share: opening it afterwards answers “gone”.',
    submitLabel: verb === 'accept' ? 'Accept' : 'Decline',
    danger: verb === 'decline',
    fields: () => (needsCode ? [field('Claim code', { name: 'claim_token', required: true, autocomplete: 'off', spellcheck: 'false', class: 'mono' }, 'The code the sender gave you with this share.')] : []),
    onSubmit: (data) => api('POST', `/v1/shares/${enc(share.id)}/${verb}`, { body: needsCode ? { claim_token: textValue(data, 'claim_token') } : {} }),
  });
  if (result) {
    toast(verb === 'accept' ? 'Share accepted.' : 'Share declined.');
    done();
  }
}

function drawOrg(slot, shares, dir, ctx) {
  if (shares.length === 0) {
    mount(slot, emptyState({ title: 'No shares in the organization', body: 'Shares anyone in the organization creates appear here.' }));
    return;
  }
  mount(slot, dataTable({
    caption: 'Every share of the organization',
    columns: [
      { label: 'Secret', render: secretCell },
      { label: 'With', render: (s) => recipientLabel(dir, s) },
      { label: 'Status', render: statusBadge },
      { label: 'Opens', render: reads },
      { label: 'Expires', render: (s) => timeEl(s.expires_at) },
      { label: 'Reference', render: (s) => h('span', { class: 'mono small' }, s.reference) },
      { label: 'Actions', class: 'actions', render: (s) => button('Revoke', () => revoke(s, () => ctx.refresh()), { small: true, kind: 'danger-ghost', 'aria-label': `Revoke share of ${s.secret_path}` }) },
    ],
    rows: shares,
  }));
}
