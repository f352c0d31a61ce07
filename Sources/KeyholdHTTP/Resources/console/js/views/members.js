// Members of the organization: the list, role changes and removal (owners and admins), and invitations (the
// invitation code is shown once: Keyhold sends no mail).

import { h, mount } from '../dom.js';
import { api, enc, user, isAdmin } from '../api.js';
import { timeEl } from '../format.js';
import {
  pageHeader, loadingState, emptyState, dataTable, button, badge, formDialog, confirmDialog, field, select, textValue, toast,
  showOnce, section,
} from '../ui.js';
import { forgetDirectory } from '../directory.js';

const ROLES = [['member', 'Member'], ['admin', 'Admin'], ['owner', 'Owner']];
const ROLE_HELP = 'Owners and admins manage members, agents, every vault and the audit log; members use the vaults they create or are granted. Only owners make owners.';

export async function page(ctx) {
  const me = user();
  const invite = isAdmin() ? button('Invite someone', () => inviteMember(), { kind: 'primary' }) : null;
  const body = h('div', {}, loadingState('Loading members…'));
  mount(ctx.main, pageHeader({ title: 'Members', subtitle: ROLE_HELP, actions: invite ? [invite] : [] }), body);
  const { members } = await api('GET', '/v1/org/members', { signal: ctx.signal });
  members.sort((a, b) => a.email.localeCompare(b.email));
  const manage = isAdmin();
  const table = dataTable({
    caption: 'Members of your organization',
    columns: [
      { label: 'Member', render: (m) => h('div', {}, h('span', { class: 'strong' }, m.display_name || m.email), m.display_name ? h('div', { class: 'muted small' }, m.email) : null,
        m.user_id === me.id ? h('span', { class: 'muted small' }, ' (you)') : null) },
      { label: 'Role', render: (m) => (manage && m.user_id !== me.id && (me.role === 'owner' || m.role !== 'owner') ? roleSelect(m, me, () => ctx.refresh()) : badge(m.role, m.role === 'owner' ? 'accent' : 'neutral')) },
      { label: 'Joined', render: (m) => timeEl(m.joined_at) },
      { label: 'Actions', class: 'actions', render: (m) => (manage && m.user_id !== me.id && (me.role === 'owner' || m.role !== 'owner')
        ? button('Remove', () => removeMember(m, () => ctx.refresh()), { small: true, kind: 'danger-ghost', 'aria-label': `Remove ${m.email}` }) : null) },
    ],
    rows: members,
  });
  mount(body, table,
    members.length === 1 && manage ? emptyState({
      title: 'You are the only member',
      body: 'Invite the people who should share these vaults. They sign up with the invitation code you hand them.',
      action: button('Invite someone', () => inviteMember(), { kind: 'primary' }),
    }) : null,
    manage ? section('Invitations', {
      intro: 'An invitation is a code valid for seven days, shown once when you create it. The invited person opens this console, chooses Create an account, and enters the code with the same email address.',
    }, button('Create an invitation', () => inviteMember())) : null);
}

function roleSelect(member, me, done) {
  const id = `role-${member.user_id}`;
  const options = ROLES.filter(([role]) => role !== 'owner' || me.role === 'owner');
  const control = h('select', { id, class: 'inline-select' }, options.map(([value, label]) => h('option', { value }, label)));
  control.value = member.role;
  control.addEventListener('change', async () => {
    const role = control.value;
    control.disabled = true;
    try {
      await api('PATCH', `/v1/org/members/${enc(member.user_id)}`, { body: { role } });
      toast(`${member.email} is now ${role === 'admin' ? 'an admin' : `a ${role}`}.`);
      done();
    } catch (error) {
      control.value = member.role;
      toast(error.message, 'error');
    } finally {
      control.disabled = false;
    }
  });
  return h('span', {}, h('label', { for: id, class: 'sr-only' }, `Role of ${member.email}`), control);
}

async function removeMember(member, done) {
  const ok = await confirmDialog({
    title: `Remove ${member.email}?`,
    message: 'They lose access to the organization at once: their sessions and API keys stop working. Their audit events stay.',
    confirmLabel: 'Remove member',
    danger: true,
  });
  if (!ok) return;
  try {
    await api('DELETE', `/v1/org/members/${enc(member.user_id)}`);
    forgetDirectory();
    toast(`${member.email} removed.`);
    done();
  } catch (error) {
    toast(error.message, 'error');
  }
}

async function inviteMember() {
  const me = user();
  const invitation = await formDialog({
    title: 'Invite someone',
    submitLabel: 'Create invitation',
    fields: () => [
      field('Email address', { name: 'email', type: 'email', required: true, autocomplete: 'off' }),
      select('Role', { name: 'role', value: 'member' }, ROLES.filter(([role]) => role !== 'owner' || me.role === 'owner'), ROLE_HELP),
    ],
    onSubmit: (data) => api('POST', '/v1/org/invite', { body: { email: textValue(data, 'email'), role: textValue(data, 'role') } }),
  });
  if (!invitation) return;
  await showOnce({
    title: 'Invitation created',
    intro: `Hand this code to ${invitation.email} (${invitation.role}). They choose Create an account on this console, use that email address, and enter the code under “I have an invitation code”. It expires on ${new Date(invitation.expires_at).toLocaleString()}.`,
    label: 'Invitation code',
    what: 'Invitation code',
    value: invitation.invite_token,
  });
}
