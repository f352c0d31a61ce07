// Names for ids: the org's members, the caller's agents and vaults, loaded once per session (and again after a
// change that adds one) so that tables can say "ada@example.com" rather than a UUID.

import { api } from './api.js';
import { h } from './dom.js';
import { shortId } from './format.js';

let pending = null;

/** Drops the cached lists (after creating or removing a member, an agent or a vault, and on sign-out). */
export function forgetDirectory() {
  pending = null;
}

async function quietly(path, key, signal) {
  try {
    return (await api('GET', path, { signal }))[key] || [];
  } catch (error) {
    if (error && error.name === 'AbortError') throw error;
    return [];
  }
}

/** `{members, agents, vaults, name(type, id)}`; lists the caller may not read are empty. */
export function directory({ signal } = {}) {
  if (!pending) {
    pending = Promise.all([
      quietly('/v1/org/members', 'members'),
      quietly('/v1/agents', 'agents'),
      quietly('/v1/vaults', 'vaults'),
    ]).then(([members, agents, vaults]) => build(members, agents, vaults)).catch((error) => {
      pending = null;
      throw error;
    });
  }
  if (!signal) return pending;
  return Promise.race([pending, new Promise((_, reject) => {
    signal.addEventListener('abort', () => reject(new DOMException('Aborted', 'AbortError')), { once: true });
  })]);
}

function build(members, agents, vaults) {
  const byId = new Map();
  for (const member of members) byId.set(`user:${member.user_id}`, member.display_name ? `${member.display_name} (${member.email})` : member.email);
  for (const agent of agents) byId.set(`agent:${agent.id}`, agent.name);
  for (const vault of vaults) byId.set(`vault:${vault.id}`, vault.name);
  return {
    members,
    agents,
    vaults,
    /** A readable name for a user, agent or vault id, or null when unknown. */
    name(type, id) {
      return byId.get(`${type}:${id}`) || null;
    },
  };
}

/** A principal as text with the full id on hover: "deploy-bot (agent)". */
export function principalLabel(dir, type, id) {
  const name = dir.name(type, id);
  const kind = type === 'agent' ? 'agent' : type === 'user' ? 'person' : type;
  return h('span', { class: 'principal', title: id || '' },
    name || (id ? shortId(id) : 'unknown'),
    h('span', { class: 'muted' }, ` · ${kind}`));
}
