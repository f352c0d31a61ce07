"""Every field of 1Claw's agent, vault, policy and share requests is stored and enforced, or refused with a 400
naming it (issue 19), and `intents_api_enabled` is stored, returned, in the agent's JWT and enforced (contract §1.6,
§2.1, §2.4)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from support import assert_problem, assert_sdk_error, assert_sdk_ok, decode_jwt, now_utc, rfc3339

#: A value of a field Keyhold does not implement that asks for something: each is a 400 naming the field.
REFUSED_AGENT_FIELDS: dict[str, Any] = {
    "auth_method": "mtls",
    "auth_method_oidc": "oidc_client_credentials",
    "client_cert_fingerprint": "ab" * 32,
    "oidc_issuer": "https://issuer.example",
    "shroud_enabled": True,
    "shroud_config": {"provider": "openai"},
    "execution_intents_enabled": True,
    "execution_require_tee": True,
    "intents_require_tee": True,
    "tx_to_allowlist": ["0x0000000000000000000000000000000000000001"],
    "tx_max_value_eth": "1.5",
    "tx_daily_limit": "10",
    "tx_allowed_chains": ["ethereum"],
    "tx_max_per_day": 5,
    "federation_enabled": True,
    "message_signing_enabled": True,
    "cards_enabled": True,
    "card_require_approval": False,
    "approval_id": "00000000-0000-4000-8000-000000000000",
}

#: Absent, null or a value that asks for nothing: accepted.
INERT_AGENT_FIELDS: dict[str, Any] = {
    "auth_method": "api_key",
    "shroud_enabled": False,
    "shroud_config": None,
    "tx_to_allowlist": [],
    "tx_max_value_eth": None,
    "federation_enabled": False,
    "card_require_approval": True,
    "per_chain_guardrails": {},
    "approval_id": None,
}


def _field(case: str) -> str:
    return "auth_method" if case == "auth_method_oidc" else case


def _agent_ids(user) -> set[str]:
    return {a["id"] for a in assert_sdk_ok(user.client.agents.list(), 200)["agents"]}


# --- agents: refused and accepted fields ------------------------------------------------------


def test_sdk_create_with_its_defaults_is_accepted(user, leak_watch) -> None:
    # The SDK always sends auth_method "api_key", intents_api_enabled false and shroud_enabled false.
    data = leak_watch.track(assert_sdk_ok(user.client.agents.create(f"sdk-{uuid.uuid4().hex[:8]}"), 201))
    assert data["agent"]["intents_api_enabled"] is False
    assert data["agent"]["shroud_enabled"] is False
    assert data["agent"]["auth_method"] == "api_key"


@pytest.mark.parametrize("case", list(REFUSED_AGENT_FIELDS), ids=list(REFUSED_AGENT_FIELDS))
def test_create_with_an_unsupported_field_is_400_naming_it(user, case: str) -> None:
    before = _agent_ids(user)
    resp = user.http.post("/v1/agents", json={"name": "refused", _field(case): REFUSED_AGENT_FIELDS[case]})
    problem = assert_problem(resp, 400)
    assert f"'{_field(case)}'" in problem["detail"], problem
    assert "not supported" in problem["detail"], problem
    assert _agent_ids(user) == before


@pytest.mark.parametrize("case", list(REFUSED_AGENT_FIELDS), ids=list(REFUSED_AGENT_FIELDS))
def test_update_with_an_unsupported_field_is_400_and_changes_nothing(user, make_agent, case: str) -> None:
    agent = make_agent(user)
    resp = user.http.patch(f"/v1/agents/{agent.id}", json={"name": "renamed", _field(case): REFUSED_AGENT_FIELDS[case]})
    problem = assert_problem(resp, 400)
    assert f"'{_field(case)}'" in problem["detail"], problem
    assert assert_sdk_ok(user.client.agents.get(agent.id), 200)["name"] == agent.record["name"]


def test_sdk_create_with_shroud_is_refused(user) -> None:
    resp = user.client.agents.create("shrouded", shroud_enabled=True)
    assert_sdk_error(resp, 400)
    assert "shroud_enabled" in str(resp.error)


def test_sdk_create_with_tx_guardrails_is_refused(user) -> None:
    resp = user.client.agents.create("signer", tx_max_value_eth="0.1", tx_daily_limit_eth="1")
    assert_sdk_error(resp, 400)
    assert "tx_max_value_eth" in str(resp.error) or "tx_daily_limit_eth" in str(resp.error)


def test_inert_values_of_unsupported_fields_are_accepted(user, leak_watch) -> None:
    resp = user.http.post("/v1/agents", json={"name": "inert", **INERT_AGENT_FIELDS})
    assert resp.status_code == 201, resp.text
    leak_watch.track(resp.json())
    agent = resp.json()["agent"]
    patched = user.http.patch(f"/v1/agents/{agent['id']}", json={"description": "still inert", **INERT_AGENT_FIELDS})
    assert patched.status_code == 200, patched.text


def test_unsupported_field_refusal_does_not_echo_the_value(user) -> None:
    secretish = f"0xSECRET{uuid.uuid4().hex}"
    resp = user.http.post("/v1/agents", json={"name": "a", "tx_to_allowlist": [secretish]})
    assert_problem(resp, 400)
    assert secretish not in resp.text


# --- intents_api_enabled ----------------------------------------------------------------------


@pytest.fixture
def keyed_vault(user, vault: str) -> dict[str, Any]:
    """A vault holding a generic secret, a private key and an SSH key."""
    ids = {}
    for path, kind in (("app/token", "generic"), ("keys/signer", "private_key"), ("keys/deploy", "ssh_key")):
        ids[path] = assert_sdk_ok(user.client.secrets.set(vault, path, f"value-of-{path}", type=kind), 201)["id"]
    return {"vault": vault, "ids": ids}


def _grant_read(user, vault: str, agent_id: str) -> None:
    assert_sdk_ok(
        user.client.policies.create(
            vault, principal_type="agent", principal_id=agent_id, secret_path_pattern="**", permissions=["read"]
        ),
        201,
    )


def test_intents_flag_is_stored_and_returned_everywhere(user, make_agent, agent_sdk) -> None:
    agent = make_agent(user, intents_api_enabled=True)
    assert agent.record["intents_api_enabled"] is True
    assert assert_sdk_ok(user.client.agents.get(agent.id), 200)["intents_api_enabled"] is True
    listed = {a["id"]: a for a in assert_sdk_ok(user.client.agents.list(), 200)["agents"]}
    assert listed[agent.id]["intents_api_enabled"] is True
    me = assert_sdk_ok(agent_sdk(agent.key).agents.me(), 200)
    assert me["intents_api_enabled"] is True
    updated = assert_sdk_ok(user.client.agents.update(agent.id, intents_api_enabled=False), 200)
    assert updated["intents_api_enabled"] is False
    assert assert_sdk_ok(user.client.agents.get(agent.id), 200)["intents_api_enabled"] is False


def test_intents_flag_is_a_jwt_claim(user, make_agent, anon, leak_watch) -> None:
    def claim(key: str) -> Any:
        resp = anon.post("/v1/auth/agent-token", json={"api_key": key})
        assert resp.status_code == 200, resp.text
        leak_watch.track(resp.json())
        return decode_jwt(resp.json()["access_token"])[1]

    on = make_agent(user, intents_api_enabled=True)
    off = make_agent(user)
    assert claim(on.key)["intents_api_enabled"] is True
    assert claim(off.key)["intents_api_enabled"] is False
    assert_sdk_ok(user.client.agents.update(on.id, intents_api_enabled=False), 200)
    assert claim(on.key)["intents_api_enabled"] is False


def test_intents_agent_cannot_read_private_or_ssh_keys(user, make_agent, agent_sdk, keyed_vault) -> None:
    vault = keyed_vault["vault"]
    agent = make_agent(user, intents_api_enabled=True)
    _grant_read(user, vault, agent.id)
    bot = agent_sdk(agent.key)
    assert assert_sdk_ok(bot.secrets.get(vault, "app/token"), 200)["value"] == "value-of-app/token"
    for path in ("keys/signer", "keys/deploy"):
        assert_sdk_error(bot.secrets.get(vault, path), 403)
        assert_sdk_error(bot.secrets.get_version(vault, path, 1), 403)
    # Metadata stays visible: the list shows the paths.
    listed = {s["path"] for s in assert_sdk_ok(bot.secrets.list(vault), 200)["secrets"]}
    assert {"app/token", "keys/signer", "keys/deploy"} <= listed
    # The refusal is audited as a denial with its reason, and no access was counted.
    events = user.http.get("/v1/audit/events", params={"actor_id": agent.id, "action": "secret.read"}).json()["events"]
    denied = [e for e in events if e["resource_id"] == "keys/signer"]
    assert denied and all(e["details"].get("outcome") == "denied" for e in denied), denied
    assert all(e["details"].get("reason") == "intents_api_enabled" for e in denied), denied
    assert assert_sdk_ok(user.client.secrets.get(vault, "keys/signer"), 200)["value"] == "value-of-keys/signer"


def test_turning_intents_off_lets_the_same_token_read(user, make_agent, agent_sdk, keyed_vault) -> None:
    vault = keyed_vault["vault"]
    agent = make_agent(user, intents_api_enabled=True)
    _grant_read(user, vault, agent.id)
    bot = agent_sdk(agent.key)
    assert_sdk_error(bot.secrets.get(vault, "keys/signer"), 403)
    # The stored row decides on every request, as scopes and vault binding do.
    assert_sdk_ok(user.client.agents.update(agent.id, intents_api_enabled=False), 200)
    assert assert_sdk_ok(bot.secrets.get(vault, "keys/signer"), 200)["value"] == "value-of-keys/signer"
    assert_sdk_ok(user.client.agents.update(agent.id, intents_api_enabled=True), 200)
    assert_sdk_error(bot.secrets.get(vault, "keys/deploy"), 403)


def test_intents_refusal_spends_no_access_count(user, make_agent, agent_sdk, vault: str) -> None:
    assert_sdk_ok(user.client.secrets.set(vault, "once/key", "one-read", type="private_key", max_access_count=1), 201)
    agent = make_agent(user, intents_api_enabled=True)
    _grant_read(user, vault, agent.id)
    bot = agent_sdk(agent.key)
    for _ in range(3):
        assert_sdk_error(bot.secrets.get(vault, "once/key"), 403)
    assert assert_sdk_ok(user.client.secrets.get(vault, "once/key"), 200)["value"] == "one-read"
    assert_sdk_error(user.client.secrets.get(vault, "once/key"), 410)


def test_intents_agent_cannot_open_a_share_of_a_private_key(user, make_agent, agent_sdk, keyed_vault) -> None:
    agent = make_agent(user, intents_api_enabled=True)
    bot = agent_sdk(agent.key)
    expires = rfc3339(now_utc() + dt.timedelta(hours=1))
    share = assert_sdk_ok(
        user.client.sharing.create(
            keyed_vault["ids"]["keys/signer"], recipient_type="agent", recipient_id=agent.id, expires_at=expires
        ),
        201,
    )
    assert bot.sharing.accept(share["id"]).meta.status == 204
    assert_sdk_error(bot.sharing.access(share["id"]), 403)
    token_share = assert_sdk_ok(
        user.client.sharing.create(
            keyed_vault["ids"]["app/token"], recipient_type="agent", recipient_id=agent.id, expires_at=expires
        ),
        201,
    )
    assert bot.sharing.accept(token_share["id"]).meta.status == 204
    assert assert_sdk_ok(bot.sharing.access(token_share["id"]), 200)["value"] == "value-of-app/token"


def test_a_link_share_made_by_an_intents_agent_does_not_open_a_private_key(
    user, make_agent, agent_sdk, keyed_vault, anon
) -> None:
    vault = keyed_vault["vault"]
    agent = make_agent(user)
    _grant_read(user, vault, agent.id)
    bot = agent_sdk(agent.key)
    expires = rfc3339(now_utc() + dt.timedelta(hours=1))
    link = assert_sdk_ok(
        bot.sharing.create(keyed_vault["ids"]["keys/signer"], recipient_type="anyone_with_link", expires_at=expires),
        201,
    )
    assert anon.get(f"/v1/share/{link['id']}").status_code == 200
    # The share lends its creator's access: once the creator is in intents mode, it does not open.
    assert_sdk_ok(user.client.agents.update(agent.id, intents_api_enabled=True), 200)
    assert_problem(anon.get(f"/v1/share/{link['id']}"), 403)


# --- vaults, policies, shares ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body,field",
    [
        ({"mpc_custody": "2-of-2"}, "mpc_custody"),
        ({"mpc_custody": "2-of-3"}, "mpc_custody"),
        ({"mpc_threshold": 2}, "mpc_threshold"),
        ({"mpc_providers": ["a"]}, "mpc_providers"),
    ],
)
def test_vault_with_mpc_custody_is_400(user, body: dict[str, Any], field: str) -> None:
    name = f"mpc-{uuid.uuid4().hex[:8]}"
    problem = assert_problem(user.http.post("/v1/vaults", json={"name": name, **body}), 400)
    assert f"'{field}'" in problem["detail"]
    assert name not in {v["name"] for v in assert_sdk_ok(user.client.vaults.list(), 200)["vaults"]}


def test_vault_with_null_mpc_custody_is_created(user) -> None:
    resp = user.http.post("/v1/vaults", json={"name": f"plain-{uuid.uuid4().hex[:8]}", "mpc_custody": None})
    assert resp.status_code == 201, resp.text


def _policy(agent_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "secret_path_pattern": "**",
        "principal_type": "agent",
        "principal_id": agent_id,
        "permissions": ["read"],
        **extra,
    }


@pytest.mark.parametrize(
    "extra,field",
    [
        ({"tx_conditions": {"max_value": "1"}}, "tx_conditions"),
        ({"consensus_trigger": {"quorum": 2}}, "consensus_trigger"),
        ({"attribute_conditions": {"team": "ops"}}, "attribute_conditions"),
        ({"approval_id": "00000000-0000-4000-8000-000000000000"}, "approval_id"),
        ({"policy_schema_version": 1}, "policy_schema_version"),
    ],
)
def test_policy_with_an_unsupported_field_is_400(user, make_agent, vault: str, extra: dict, field: str) -> None:
    agent = make_agent(user)
    problem = assert_problem(user.http.post(f"/v1/vaults/{vault}/policies", json=_policy(agent.id, **extra)), 400)
    assert f"'{field}'" in problem["detail"]
    assert assert_sdk_ok(user.client.policies.list(vault), 200)["policies"] == []
    created = user.http.post(f"/v1/vaults/{vault}/policies", json=_policy(agent.id))
    assert created.status_code == 201, created.text
    updated = user.http.put(f"/v1/vaults/{vault}/policies/{created.json()['id']}", json={"permissions": ["read"], **extra})
    assert f"'{field}'" in assert_problem(updated, 400)["detail"]


def test_policy_with_inert_unsupported_fields_is_created(user, make_agent, vault: str) -> None:
    agent = make_agent(user)
    body = _policy(
        agent.id, attribute_conditions={}, consensus_trigger=None, tx_conditions=None, approval_id=None,
        policy_schema_version=2,
    )
    resp = user.http.post(f"/v1/vaults/{vault}/policies", json=body)
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize("permissions", [["write"], ["read", "write"], ["delete"]])
def test_share_with_permissions_beyond_read_is_400(user, vault: str, permissions: list[str]) -> None:
    secret = assert_sdk_ok(user.client.secrets.set(vault, "shared/x", "v"), 201)
    expires = rfc3339(now_utc() + dt.timedelta(hours=1))
    resp = user.http.post(
        f"/v1/secrets/{secret['id']}/share",
        json={"recipient_type": "anyone_with_link", "expires_at": expires, "permissions": permissions},
    )
    assert "'permissions'" in assert_problem(resp, 400)["detail"]
    outbound = assert_sdk_ok(user.client.sharing.list_outbound(), 200)["shares"]
    assert "shared/x" not in {s["secret_path"] for s in outbound}


def test_share_with_read_permission_is_created(user, vault: str) -> None:
    secret = assert_sdk_ok(user.client.secrets.set(vault, "shared/y", "v"), 201)
    expires = rfc3339(now_utc() + dt.timedelta(hours=1))
    resp = user.client.sharing.create(
        secret["id"], recipient_type="anyone_with_link", expires_at=expires, permissions=["read"]
    )
    assert_sdk_ok(resp, 201)
