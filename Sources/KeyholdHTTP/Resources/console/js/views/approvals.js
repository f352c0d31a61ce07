// Approvals: requests from agents (a gated read, an agent's enrolment, a policy change, an agent's own action)
// that a person approves or rejects. Risk tier 2 and 3 decisions need X-Auth-Confirm (the decider's password, or
// an authenticator code when they use MFA). Approving an enrolment returns the new agent's key, shown once.

import { h, mount, code } from '../dom.js';
import { api, enc, user, ApiError } from '../api.js';
import { hashFor } from '../router.js';
import { timeEl, relative, prettyJson, shortId, isPast } from '../format.js';
import {
  pageHeader, loadingState, emptyState, alertBox, button, badge, formDialog, field, textarea, textValue, toast, showOnce,
  details,
} from '../ui.js';
import { directory, forgetDirectory } from '../directory.js';

const STATUSES = [['pending', 'Pending'], ['approved', 'Approved'], ['rejected', 'Rejected'], ['expired', 'Expired'], ['cancelled', 'Cancelled'], ['', 'All']];
const PAGE = 20;
const STATUS_KIND = { pending: 'warn', approved: 'good', rejected: 'bad', expired: 'neutral', cancelled: 'neutral' };

function changed() {
  window.dispatchEvent(new Event('keyhold:approvals-changed'));
}

/** Whether the signed-in person confirms with an authenticator code (MFA on) rather than a password. */
async function usesMfa() {
  try {
    return Boolean((await api('GET', '/v1/auth/me')).totp_enabled);
  } catch {
    return false;
  }
}

function title(dir, a) {
  const vault = a.vault_id ? dir.name('vault', a.vault_id) || shortId(a.vault_id) : null;
  switch (a.action) {
    case 'secret_read': return h('span', {}, 'Read ', code(a.target_id), vault ? ` in ${vault}` : '');
    case 'agent_enroll': return h('span', {}, 'Register the agent ', h('strong', {}, String((a.summary && a.summary.name) || (a.payload && a.payload.name) || a.target_id || 'unnamed')));
    case 'policy_change': return h('span', {}, 'Change the policies of ', vault || a.target_id);
    default: return h('span', {}, code(a.action), ' on ', `${a.target_type} `, code(a.target_id));
  }
}

function requester(dir, a) {
  if (a.agent_id) return h('span', { title: a.agent_id }, dir.name('agent', a.agent_id) || `agent ${shortId(a.agent_id)}`, h('span', { class: 'muted' }, ' · agent'));
  if (a.action === 'agent_enroll') return h('span', {}, 'An unregistered agent');
  return h('span', { class: 'muted' }, 'a person');
}

function summaryList(summary) {
  if (!summary || typeof summary !== 'object' || Object.keys(summary).length === 0) return null;
  return h('dl', { class: 'meta compact' }, Object.entries(summary).map(([key, value]) => h('div', { class: 'meta-row' },
    h('dt', {}, key.replace(/_/g, ' ')),
    h('dd', {}, typeof value === 'string' ? value : h('code', { class: 'wrap' }, JSON.stringify(value))))));
}

function tierBadge(tier) {
  return badge(`risk tier ${tier}`, tier >= 3 ? 'bad' : tier === 2 ? 'warn' : 'neutral');
}

function card(dir, a, { onChange }) {
  const me = user();
  const pending = a.status === 'pending' && !isPast(a.expires_at);
  const leaseOpen = a.status === 'approved' && a.uses_left > 0 && !(a.lease_expires_at && isPast(a.lease_expires_at));
  const actions = [];
  if (pending) {
    actions.push(
      button('Approve', () => decide(dir, a, 'approve', onChange), { kind: 'primary', 'aria-label': `Approve request ${shortId(a.id)}` }),
      button('Reject', () => decide(dir, a, 'reject', onChange), { kind: 'danger-ghost', 'aria-label': `Reject request ${shortId(a.id)}` }));
  } else if (leaseOpen) {
    actions.push(button('End lease now', () => endLease(a, onChange), { kind: 'danger-ghost' }));
  }
  return h('article', { class: ['approval', `approval-${a.status}`], 'aria-labelledby': `approval-${a.id}` },
    h('header', { class: 'approval-head' },
      h('h2', { id: `approval-${a.id}`, class: 'approval-title' }, h('a', { href: hashFor('approvals', a.id) }, title(dir, a))),
      h('div', { class: 'badges' }, badge(a.status, STATUS_KIND[a.status] || 'neutral'), tierBadge(a.risk_tier))),
    a.reason ? h('blockquote', { class: 'approval-reason' }, h('p', {}, a.reason), h('footer', { class: 'muted small' }, 'Reason given by the requester')) : null,
    details([
      ['Requested by', requester(dir, a)],
      ['Requested', h('span', {}, timeEl(a.created_at), ` (${relative(a.created_at)})`)],
      pending ? ['Decide before', timeEl(a.expires_at)] : null,
      a.user_id ? ['Addressed to', a.user_id === me.id ? 'You' : dir.name('user', a.user_id) || shortId(a.user_id)] : ['Addressed to', 'Owners and admins'],
      a.decided_by ? ['Decided by', a.decided_by === me.id ? 'You' : dir.name('user', a.decided_by) || shortId(a.decided_by)] : null,
      a.decided_at ? ['Decided', timeEl(a.decided_at)] : null,
      a.decision_reason ? ['Decision note', a.decision_reason] : null,
      a.status === 'approved' && a.action === 'secret_read' ? ['Lease', `${a.uses_left} of ${a.max_uses} read${a.max_uses === 1 ? '' : 's'} left`] : null,
      a.lease_expires_at ? ['Lease ends', timeEl(a.lease_expires_at)] : null,
    ].filter(Boolean)),
    summaryList(a.summary) ? h('div', { class: 'approval-summary' }, h('h3', {}, 'Summary'), summaryList(a.summary)) : null,
    a.payload && Object.keys(a.payload).length ? h('details', { class: 'disclosure' }, h('summary', {}, 'Payload'), h('pre', { class: 'json' }, prettyJson(a.payload))) : null,
    actions.length ? h('div', { class: 'approval-actions' }, actions) : null);
}

async function decide(dir, a, decision, onChange) {
  const needsConfirm = a.risk_tier >= 2;
  const mfa = needsConfirm ? await usesMfa() : false;
  const approve = decision === 'approve';
  const result = await formDialog({
    title: approve ? 'Approve this request?' : 'Reject this request?',
    intro: h('div', {},
      h('p', {}, title(dir, a), ' — requested by ', requester(dir, a), '.'),
      approve && a.action === 'secret_read' ? h('p', {}, `The agent may then read this path ${a.max_uses === 1 ? 'once' : `${a.max_uses} times`} before the approval runs out.`) : null,
      approve && a.action === 'agent_enroll' ? h('p', {}, 'Approving registers the agent and shows its key once.') : null,
      approve && a.action === 'policy_change' ? h('p', {}, 'Approving creates the policy in the payload, as you.') : null),
    submitLabel: approve ? 'Approve' : 'Reject',
    danger: !approve,
    fields: () => [
      needsConfirm ? field(mfa ? 'Authenticator code' : 'Your password', {
        name: 'confirm', type: mfa ? 'text' : 'password', required: true, autocomplete: mfa ? 'one-time-code' : 'current-password', spellcheck: 'false',
      }, `A risk tier ${a.risk_tier} request needs you to confirm it is you${mfa ? ': a current code from your authenticator app' : ''}.`) : null,
      textarea('Note', { name: 'reason', rows: 2, maxlength: '1024' }, 'Kept with the decision.'),
    ],
    onSubmit: async (data) => {
      const headers = {};
      if (needsConfirm) {
        const confirm = String(data.get('confirm') || '');
        if (/[^\x20-\x7e]/.test(confirm)) throw new Error('This password has characters that cannot be sent for confirmation; use an authenticator code, or change the password under Account.');
        headers['X-Auth-Confirm'] = confirm;
      }
      try {
        return await api('POST', `/v1/approvals/${enc(a.id)}/decide`, { body: { decision, reason: textValue(data, 'reason') || undefined }, headers });
      } catch (error) {
        if (needsConfirm && error instanceof ApiError && error.status === 403) {
          throw new Error(`${error.detail}: check ${mfa ? 'the code (each code works once)' : 'your password'} and try again.`);
        }
        throw error;
      }
    },
  });
  if (!result) return;
  changed();
  if (result.api_key) {
    forgetDirectory();
    await showOnce({
      title: 'Agent registered',
      intro: `${(result.agent && result.agent.name) || 'The agent'} is registered. Give it this key; it reads nothing but its own identity keys until a policy allows more.`,
      label: 'Agent key',
      what: 'Agent key',
      value: result.api_key,
    });
  } else {
    toast(approve ? 'Request approved.' : 'Request rejected.');
  }
  onChange();
}

async function endLease(a, onChange) {
  const result = await formDialog({
    title: 'End this approval now?',
    intro: 'The reads it still allows are withdrawn; the next read asks for approval again.',
    submitLabel: 'End lease',
    danger: true,
    fields: () => [textarea('Note', { name: 'reason', rows: 2, maxlength: '1024' })],
    onSubmit: (data) => api('POST', `/v1/approvals/${enc(a.id)}/cancel`, { body: { reason: textValue(data, 'reason') || undefined } }),
  });
  if (result) {
    changed();
    toast('Lease ended.');
    onChange();
  }
}

export async function list(ctx) {
  const status = STATUSES.some(([value]) => value === (ctx.query.get('status') ?? 'pending')) ? (ctx.query.get('status') ?? 'pending') : 'pending';
  const offset = Math.max(0, Number.parseInt(ctx.query.get('offset') || '0', 10) || 0);
  const hrefFor = (s, o = 0) => {
    const params = new URLSearchParams();
    params.set('status', s);
    if (o) params.set('offset', String(o));
    return `#/approvals?${params}`;
  };
  const body = h('div', {}, loadingState('Loading requests…'));
  mount(ctx.main,
    pageHeader({ title: 'Approvals', subtitle: 'Agents ask before reading a gated secret, registering themselves or changing policies. You decide.' }),
    h('nav', { class: 'tabs', 'aria-label': 'Request status' }, STATUSES.map(([value, label]) => h('a', {
      href: hrefFor(value), class: value === status ? 'active' : null, 'aria-current': value === status ? 'page' : null,
    }, label))),
    body);
  const [{ approvals }, dir] = await Promise.all([
    api('GET', '/v1/approvals', { query: { status: status || undefined, limit: PAGE + 1, offset }, signal: ctx.signal }),
    directory({ signal: ctx.signal }),
  ]);
  const more = approvals.length > PAGE;
  const shown = approvals.slice(0, PAGE);
  if (shown.length === 0) {
    mount(body, emptyState(status === 'pending'
      ? { title: 'Nothing waits for you', body: 'When an agent’s read needs approval (a policy with “needs approval”), or an agent asks to be registered, the request appears here.' }
      : { title: `No ${status || ''} requests`.replace('  ', ' '), body: 'Requests appear here once they reach this state.' }));
    return;
  }
  mount(body,
    h('div', { class: 'approval-list' }, shown.map((a) => card(dir, a, { onChange: () => ctx.refresh() }))),
    offset > 0 || more ? h('nav', { class: 'pager', 'aria-label': 'Request pages' },
      h('p', { class: 'muted' }, `Requests ${offset + 1}–${offset + shown.length}`),
      h('div', { class: 'pager-buttons' },
        offset > 0 ? h('a', { class: 'btn', href: hrefFor(status, Math.max(0, offset - PAGE)) }, 'Newer') : null,
        more ? h('a', { class: 'btn', href: hrefFor(status, offset + PAGE) }, 'Older') : null)) : null);
}

export async function detail(ctx) {
  const { approvalId } = ctx.params;
  mount(ctx.main, loadingState('Loading the request…'));
  let approval;
  try {
    approval = await api('GET', `/v1/approvals/${enc(approvalId)}`, { signal: ctx.signal });
  } catch (error) {
    if (error.status === 404) {
      mount(ctx.main, pageHeader({ title: 'Request not found', crumbs: [['Approvals', '#/approvals']] }),
        alertBox(`${error.message} It may belong to someone else.`, 'info'));
      return;
    }
    throw error;
  }
  const dir = await directory({ signal: ctx.signal });
  mount(ctx.main,
    pageHeader({ title: 'Approval request', crumbs: [['Approvals', '#/approvals'], [shortId(approval.id), null]] }),
    ctx.query.get('decided') === 'true' ? alertBox(`This request was decided from its link: it is now ${approval.status}.`, 'info') : null,
    card(dir, approval, { onChange: () => ctx.refresh() }),
    h('p', {}, h('a', { href: '#/approvals' }, 'All pending requests')));
}
