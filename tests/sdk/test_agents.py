"""Agents and the ocv_ key exchange: /v1/agents, /v1/auth/agent-token (contract §1.1, §1.6, §2.1)."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

import httpx
import oneclaw
import pytest

from support import (
    OCV_KEY_RE,
    assert_problem,
    assert_sdk_error,
    assert_sdk_ok,
    bearer,
    decode_jwt,
    is_uuid,
    now_utc,
    parse_ts,
    random_like,
    rfc3339,
)

#: Always present in an AgentResponse.
AGENT_FIELDS = (
    "id",
    "org_id",
    "name",
    "auth_method",
    "vault_ids",
    "is_active",
    "created_by",
    "created_at",
    "key_prefix",
)
#: Always present, null when unset (contract §1.6; issue 17).
AGENT_ENV_FIELDS = ("environment", "environment_locked", "env_auto_resolve", "api_key_expires_at")
#: Nullable in the spec (S#AgentResponse): either null or absent when unset.
AGENT_OPTIONAL_FIELDS = ("description", "scopes", "token_ttl_seconds", "expires_at") + AGENT_ENV_FIELDS
ALL_AGENT_FIELDS = AGENT_FIELDS + AGENT_OPTIONAL_FIELDS


def _exchange(anon: httpx.Client, leak_watch, api_key: str, agent_id: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"api_key": api_key}
    if agent_id is not None:
        body["agent_id"] = agent_id
    resp = anon.post("/v1/auth/agent-token", json=body)
    if resp.status_code == 200:
        leak_watch.track(resp.json())
    return resp


def _agent_token(anon: httpx.Client, leak_watch, api_key: str) -> str:
    resp = _exchange(anon, leak_watch, api_key)
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


@pytest.fixture
def agent(user, make_agent):
    return make_agent(user, description="CI deployer")


# --- create --------------------------------------------------------------------------------


def test_create_agent_returns_201_agent_and_key(user, leak_watch) -> None:
    resp = user.client.agents.create("deploy-bot", description="deploys things")
    data = assert_sdk_ok(resp, 201)
    leak_watch.track(data)
    assert set(data) >= {"agent", "api_key"}, data
    assert OCV_KEY_RE.fullmatch(data["api_key"]), data["api_key"][:8]


def test_created_agent_has_all_fields(user, agent) -> None:
    record = agent.record
    for name in AGENT_FIELDS:
        assert name in record, (name, record)
    assert is_uuid(record["id"])
    assert record["org_id"] == user.client.auth.me().data["org_id"]
    assert record["name"].startswith("agent-")
    assert record["description"] == "CI deployer"
    assert record["auth_method"] == "api_key"
    assert record["vault_ids"] == []
    assert record["is_active"] is True
    assert record.get("token_ttl_seconds") is None
    assert record.get("expires_at") is None
    assert record.get("scopes") in (None, [])
    assert uuid.UUID(record["created_by"]) == uuid.UUID(user.user_id)
    assert abs((parse_ts(record["created_at"]) - now_utc()).total_seconds()) < 300


def test_key_prefix_is_a_short_prefix_of_the_key(agent) -> None:
    prefix = agent.record["key_prefix"]
    assert prefix.startswith("ocv_")
    assert agent.key.startswith(prefix)
    # The prefix is for lookup only: most of the key stays secret.
    assert len(agent.key) - len(prefix) >= 32, prefix


def test_agent_record_does_not_contain_the_key(agent) -> None:
    assert agent.key not in json.dumps(agent.record)
    assert agent.key[12:] not in json.dumps(agent.record)


def test_create_with_every_optional_field(user, make_agent, vault: str, leak_watch) -> None:
    expires = rfc3339(now_utc() + dt.timedelta(days=30))
    created = make_agent(
        user,
        "full-agent",
        description="all the fields",
        scopes=["prod/**", "shared/*"],
        vault_ids=[vault],
        token_ttl_seconds=600,
    )
    record = created.record
    assert record["name"] == "full-agent"
    assert record["description"] == "all the fields"
    assert record["scopes"] == ["prod/**", "shared/*"]
    assert record["vault_ids"] == [vault]
    assert record["token_ttl_seconds"] == 600
    raw = user.http.post("/v1/agents", json={"name": "expiring", "expires_at": expires})
    assert raw.status_code == 201, raw.text
    body = leak_watch.track(raw.json())
    assert OCV_KEY_RE.fullmatch(body["api_key"])
    assert parse_ts(body["agent"]["expires_at"]) == parse_ts(expires)


def test_create_with_only_a_name(user, leak_watch) -> None:
    resp = user.http.post("/v1/agents", json={"name": "minimal"})
    assert resp.status_code == 201, resp.text
    body = leak_watch.track(resp.json())
    assert body["agent"]["name"] == "minimal"
    assert body["agent"]["auth_method"] == "api_key"
    assert body["agent"]["is_active"] is True


@pytest.mark.parametrize("ttl", [60, 86400])
def test_token_ttl_bounds_are_accepted(user, make_agent, ttl: int) -> None:
    assert make_agent(user, token_ttl_seconds=ttl).record["token_ttl_seconds"] == ttl


def test_every_agent_gets_a_distinct_key(user, make_agent) -> None:
    keys = {make_agent(user).key for _ in range(3)}
    assert len(keys) == 3


INVALID_CREATE_BODIES: dict[str, Any] = {
    "missing_name": {"description": "no name"},
    "empty_name": {"name": ""},
    "blank_name": {"name": "   "},
    "name_not_string": {"name": 5},
    "ttl_too_small": {"name": "a", "token_ttl_seconds": 59},
    "ttl_too_large": {"name": "a", "token_ttl_seconds": 86401},
    "ttl_zero": {"name": "a", "token_ttl_seconds": 0},
    "ttl_string": {"name": "a", "token_ttl_seconds": "600"},
    "auth_method_mtls": {"name": "a", "auth_method": "mtls"},
    "auth_method_oidc": {"name": "a", "auth_method": "oidc_client_credentials"},
    "vault_ids_not_uuid": {"name": "a", "vault_ids": ["not-a-uuid"]},
    "vault_ids_unknown": {"name": "a", "vault_ids": ["00000000-0000-4000-8000-000000000000"]},
    "vault_ids_not_list": {"name": "a", "vault_ids": "00000000-0000-4000-8000-000000000000"},
    "scopes_not_list": {"name": "a", "scopes": "prod/**"},
    "scopes_empty_string": {"name": "a", "scopes": [""]},
    "expires_at_garbage": {"name": "a", "expires_at": "tomorrow"},
    "body_is_array": [{"name": "a"}],
}


@pytest.mark.parametrize("case", list(INVALID_CREATE_BODIES), ids=list(INVALID_CREATE_BODIES))
def test_invalid_create_body_is_400_problem(user, case: str) -> None:
    resp = user.http.post("/v1/agents", json=INVALID_CREATE_BODIES[case])
    assert_problem(resp, 400)
    assert "ocv_" not in resp.text


def test_create_bound_to_another_orgs_vault_is_400(user, other_user) -> None:
    theirs = assert_sdk_ok(other_user.client.vaults.create("not-yours"), 201)["id"]
    assert_problem(user.http.post("/v1/agents", json={"name": "a", "vault_ids": [theirs]}), 400)


def test_invalid_create_registers_nothing(user) -> None:
    name = f"never-{uuid.uuid4().hex[:8]}"
    user.http.post("/v1/agents", json={"name": name, "token_ttl_seconds": 5})
    agents = assert_sdk_ok(user.client.agents.list(), 200)["agents"]
    assert name not in {a["name"] for a in agents}


def test_create_without_token_is_401(anon: httpx.Client) -> None:
    assert_problem(anon.post("/v1/agents", json={"name": "a"}), 401)


# --- list / get ----------------------------------------------------------------------------


def test_list_contains_agent_without_keys(user, agent) -> None:
    resp = user.http.get("/v1/agents")
    assert resp.status_code == 200, resp.text
    agents = resp.json()["agents"]
    assert agent.id in {a["id"] for a in agents}
    assert agent.key not in resp.text
    assert agent.key[12:] not in resp.text
    for entry in agents:
        assert "api_key" not in entry, entry


def test_sdk_list_agents(user, agent) -> None:
    data = assert_sdk_ok(user.client.agents.list(), 200)
    mine = [a for a in data["agents"] if a["id"] == agent.id]
    assert len(mine) == 1
    assert mine[0]["name"] == agent.record["name"]


def test_list_hides_other_orgs_agents(user, other_user, make_agent) -> None:
    theirs = make_agent(other_user)
    data = assert_sdk_ok(user.client.agents.list(), 200)
    assert theirs.id not in {a["id"] for a in data["agents"]}


def test_get_agent_returns_record(user, agent) -> None:
    data = assert_sdk_ok(user.client.agents.get(agent.id), 200)
    for name in AGENT_FIELDS:
        assert data[name] == agent.record[name], name
    for name in AGENT_OPTIONAL_FIELDS:
        assert data.get(name) == agent.record.get(name), name
    assert "api_key" not in data


def test_get_unknown_agent_is_404_problem(user) -> None:
    assert_problem(user.http.get(f"/v1/agents/{uuid.uuid4()}"), 404)


def test_get_malformed_agent_id_is_400_or_404_problem(user) -> None:
    assert_problem(user.http.get("/v1/agents/not-a-uuid"), (400, 404))


AGENT_OPERATIONS = {
    "get": lambda h, a: h.get(f"/v1/agents/{a}"),
    "patch": lambda h, a: h.patch(f"/v1/agents/{a}", json={"name": "hijacked"}),
    "delete": lambda h, a: h.delete(f"/v1/agents/{a}"),
    "purge": lambda h, a: h.delete(f"/v1/agents/{a}", params={"purge": "true"}),
    "rotate_key": lambda h, a: h.post(f"/v1/agents/{a}/rotate-key"),
}


@pytest.mark.parametrize("op", list(AGENT_OPERATIONS), ids=list(AGENT_OPERATIONS))
def test_other_orgs_agent_is_indistinguishable_from_missing(user, other_user, make_agent, op: str) -> None:
    theirs = make_agent(other_user)
    random_id = str(uuid.uuid4())
    a = assert_problem(AGENT_OPERATIONS[op](user.http, theirs.id), 404)
    b = assert_problem(AGENT_OPERATIONS[op](user.http, random_id), 404)
    assert a["detail"].replace(theirs.id, "<id>") == b["detail"].replace(random_id, "<id>")
    assert a["title"] == b["title"]
    assert "ocv_" not in json.dumps(a)
    # ... and nothing happened to it.
    still = assert_sdk_ok(other_user.client.agents.get(theirs.id), 200)
    assert still["name"] == theirs.record["name"]
    assert still["key_prefix"] == theirs.record["key_prefix"]


# --- update --------------------------------------------------------------------------------


def test_sdk_update_changes_fields(user, agent, vault: str) -> None:
    data = assert_sdk_ok(
        user.client.agents.update(
            agent.id,
            name="renamed",
            description="new description",
            scopes=["api-keys/*"],
            vault_ids=[vault],
            token_ttl_seconds=300,
        ),
        200,
    )
    assert data["id"] == agent.id
    assert data["name"] == "renamed"
    assert data["description"] == "new description"
    assert data["scopes"] == ["api-keys/*"]
    assert data["vault_ids"] == [vault]
    assert data["token_ttl_seconds"] == 300
    again = assert_sdk_ok(user.client.agents.get(agent.id), 200)
    for name in ("name", "description", "scopes", "vault_ids", "token_ttl_seconds"):
        assert again[name] == data[name], name


def test_update_keeps_fields_it_does_not_name(user, make_agent, vault: str) -> None:
    created = make_agent(user, description="keep me", scopes=["a/**"], vault_ids=[vault], token_ttl_seconds=120)
    data = assert_sdk_ok(user.client.agents.update(created.id, name="only-the-name"), 200)
    assert data["description"] == "keep me"
    assert data["scopes"] == ["a/**"]
    assert data["vault_ids"] == [vault]
    assert data["token_ttl_seconds"] == 120
    assert data["is_active"] is True
    assert data["key_prefix"] == created.record["key_prefix"]


def test_update_null_clears_ttl_and_expiry(user, agent) -> None:
    expires = rfc3339(now_utc() + dt.timedelta(days=1))
    resp = user.http.patch(f"/v1/agents/{agent.id}", json={"token_ttl_seconds": 900, "expires_at": expires})
    assert resp.status_code == 200, resp.text
    assert resp.json()["token_ttl_seconds"] == 900
    assert parse_ts(resp.json()["expires_at"]) == parse_ts(expires)
    cleared = user.http.patch(f"/v1/agents/{agent.id}", json={"token_ttl_seconds": None, "expires_at": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json().get("token_ttl_seconds") is None
    assert cleared.json().get("expires_at") is None
    assert user.client.agents.get(agent.id).data.get("token_ttl_seconds") is None


def test_cleared_ttl_falls_back_to_default_lifetime(user, make_agent, anon, leak_watch) -> None:
    created = make_agent(user, token_ttl_seconds=120)
    assert _exchange(anon, leak_watch, created.key).json()["expires_in"] == 120
    assert user.http.patch(f"/v1/agents/{created.id}", json={"token_ttl_seconds": None}).status_code == 200
    assert _exchange(anon, leak_watch, created.key).json()["expires_in"] == 3600


def test_update_vault_ids_to_empty_unbinds(user, make_agent, vault: str) -> None:
    created = make_agent(user, vault_ids=[vault])
    resp = user.http.patch(f"/v1/agents/{created.id}", json={"vault_ids": []})
    assert resp.status_code == 200, resp.text
    assert resp.json()["vault_ids"] == []


def test_update_is_active_false_deactivates(user, agent) -> None:
    data = assert_sdk_ok(user.client.agents.update(agent.id, is_active=False), 200)
    assert data["is_active"] is False
    assert user.client.agents.get(agent.id).data["is_active"] is False


INVALID_UPDATE_BODIES: dict[str, Any] = {
    "empty_name": {"name": ""},
    "ttl_too_small": {"token_ttl_seconds": 59},
    "ttl_too_large": {"token_ttl_seconds": 86401},
    "vault_ids_not_uuid": {"vault_ids": ["nope"]},
    "vault_ids_unknown": {"vault_ids": [str(uuid.UUID(int=7))]},
    "is_active_string": {"is_active": "no"},
    "scopes_not_list": {"scopes": "a/**"},
    "expires_at_garbage": {"expires_at": "soon"},
}


@pytest.mark.parametrize("case", list(INVALID_UPDATE_BODIES), ids=list(INVALID_UPDATE_BODIES))
def test_invalid_update_is_400_and_changes_nothing(user, agent, case: str) -> None:
    assert_problem(user.http.patch(f"/v1/agents/{agent.id}", json=INVALID_UPDATE_BODIES[case]), 400)
    after = assert_sdk_ok(user.client.agents.get(agent.id), 200)
    for name in ALL_AGENT_FIELDS:
        assert after.get(name) == agent.record.get(name), name


def test_update_unknown_agent_is_404(user) -> None:
    assert_sdk_error(user.client.agents.update(str(uuid.uuid4()), name="x"), 404)


# --- delete --------------------------------------------------------------------------------


def test_delete_deactivates_and_the_agent_stays_listed(user, agent) -> None:
    """DELETE deactivates, as 1Claw's docs say: listed as inactive, its key refused at once (issue 19)."""
    resp = user.http.delete(f"/v1/agents/{agent.id}")
    assert resp.status_code == 204
    assert resp.content == b""
    record = assert_sdk_ok(user.client.agents.get(agent.id), 200)
    assert record["is_active"] is False
    listed = {a["id"]: a for a in assert_sdk_ok(user.client.agents.list(), 200)["agents"]}
    assert listed[agent.id]["is_active"] is False


def test_sdk_delete_twice_is_204_and_changes_nothing(user, agent) -> None:
    assert user.client.agents.delete(agent.id).meta.status == 204
    before = [e for e in user.http.get("/v1/audit/events", params={"resource_id": agent.id}).json()["events"]]
    assert user.client.agents.delete(agent.id).meta.status == 204
    after = [e for e in user.http.get("/v1/audit/events", params={"resource_id": agent.id}).json()["events"]]
    assert [e["action"] for e in before].count("agent.deactivate") == 1
    assert [e["action"] for e in after].count("agent.deactivate") == 1
    assert assert_sdk_ok(user.client.agents.get(agent.id), 200)["is_active"] is False


def test_deleted_agent_key_cannot_be_exchanged(user, agent, anon, leak_watch) -> None:
    assert user.client.agents.delete(agent.id).meta.status == 204
    assert_problem(_exchange(anon, leak_watch, agent.key), 401)


def test_deleted_agent_token_stops_at_once_and_reactivation_revives_nothing(
    user, agent, anon, leak_watch
) -> None:
    token = _agent_token(anon, leak_watch, agent.key)
    assert anon.get("/v1/agents/me", headers=bearer(token)).status_code == 200
    assert user.client.agents.delete(agent.id).meta.status == 204
    assert_problem(anon.get("/v1/agents/me", headers=bearer(token)), 401)
    # Reactivated: the key works again, the token issued before the deactivation does not.
    assert assert_sdk_ok(user.client.agents.update(agent.id, is_active=True), 200)["is_active"] is True
    assert_problem(anon.get("/v1/agents/me", headers=bearer(token)), 401)
    assert anon.get("/v1/agents/me", headers=bearer(_agent_token(anon, leak_watch, agent.key))).status_code == 200


def test_deactivated_agent_history_stays_attributable(user, agent, anon, leak_watch) -> None:
    _agent_token(anon, leak_watch, agent.key)  # auth.success by the agent
    assert user.client.agents.delete(agent.id).meta.status == 204
    events = user.http.get("/v1/audit/events", params={"actor_id": agent.id}).json()["events"]
    assert any(e["action"] == "auth.success" for e in events), events
    # The actor is still an agent of the org.
    assert assert_sdk_ok(user.client.agents.get(agent.id), 200)["id"] == agent.id
    deactivated = user.http.get("/v1/audit/events", params={"resource_id": agent.id, "action": "agent.deactivate"})
    assert [e["actor_id"] for e in deactivated.json()["events"]] == [user.user_id]


def test_purge_removes_the_agent(user, agent, anon, leak_watch) -> None:
    resp = user.http.delete(f"/v1/agents/{agent.id}", params={"purge": "true"})
    assert resp.status_code == 204
    assert_problem(user.http.get(f"/v1/agents/{agent.id}"), 404)
    agents = assert_sdk_ok(user.client.agents.list(), 200)["agents"]
    assert agent.id not in {a["id"] for a in agents}
    assert_problem(_exchange(anon, leak_watch, agent.key), 401)
    assert_problem(user.http.delete(f"/v1/agents/{agent.id}", params={"purge": "true"}), 404)
    assert_sdk_error(user.client.agents.delete(agent.id), 404)
    purged = user.http.get("/v1/audit/events", params={"resource_id": agent.id, "action": "agent.delete"})
    assert len(purged.json()["events"]) == 1


def test_purge_of_a_deactivated_agent_removes_it(user, agent) -> None:
    assert user.client.agents.delete(agent.id).meta.status == 204
    assert user.http.delete(f"/v1/agents/{agent.id}", params={"purge": "true"}).status_code == 204
    assert_problem(user.http.get(f"/v1/agents/{agent.id}"), 404)


@pytest.mark.parametrize("value", ["yes", "1", "TRUE", ""])
def test_purge_must_be_true_or_false(user, agent, value: str) -> None:
    assert_problem(user.http.delete(f"/v1/agents/{agent.id}", params={"purge": value}), 400)
    assert assert_sdk_ok(user.client.agents.get(agent.id), 200)["is_active"] is True


def test_purge_false_deactivates(user, agent) -> None:
    assert user.http.delete(f"/v1/agents/{agent.id}", params={"purge": "false"}).status_code == 204
    assert assert_sdk_ok(user.client.agents.get(agent.id), 200)["is_active"] is False


# --- rotate-key ----------------------------------------------------------------------------


def test_rotate_key_returns_agent_and_new_key(user, agent, leak_watch) -> None:
    data = assert_sdk_ok(user.client.agents.rotate_key(agent.id), 200)
    leak_watch.track(data)
    assert OCV_KEY_RE.fullmatch(data["api_key"])
    assert data["api_key"] != agent.key
    assert data["agent"]["id"] == agent.id
    assert data["agent"]["name"] == agent.record["name"]
    assert data["api_key"].startswith(data["agent"]["key_prefix"])
    assert data["agent"]["key_prefix"] != agent.record["key_prefix"]


def test_rotated_key_replaces_old_key(user, agent, anon, leak_watch) -> None:
    new_key = leak_watch.track(assert_sdk_ok(user.client.agents.rotate_key(agent.id), 200))["api_key"]
    assert_problem(_exchange(anon, leak_watch, agent.key), 401)
    fresh = _exchange(anon, leak_watch, new_key)
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["agent_id"] == agent.id


def test_rotate_key_of_unknown_agent_is_404(user) -> None:
    assert_problem(user.http.post(f"/v1/agents/{uuid.uuid4()}/rotate-key"), 404)


# --- token exchange ------------------------------------------------------------------------


def test_exchange_key_only_returns_token(agent, anon, leak_watch) -> None:
    resp = _exchange(anon, leak_watch, agent.key)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["agent_id"] == agent.id
    assert body["vault_ids"] == []
    assert len(body["access_token"].split(".")) == 3
    assert agent.key not in resp.text


def test_exchange_with_matching_agent_id(agent, anon, leak_watch) -> None:
    resp = _exchange(anon, leak_watch, agent.key, agent.id)
    assert resp.status_code == 200, resp.text
    assert resp.json()["agent_id"] == agent.id


def test_exchange_reports_vault_binding(user, make_agent, vault: str, anon, leak_watch) -> None:
    bound = make_agent(user, vault_ids=[vault])
    assert _exchange(anon, leak_watch, bound.key).json()["vault_ids"] == [vault]


def test_exchange_expires_in_follows_token_ttl(user, make_agent, anon, leak_watch) -> None:
    created = make_agent(user, token_ttl_seconds=300)
    body = _exchange(anon, leak_watch, created.key).json()
    assert body["expires_in"] == 300
    _, payload, _, _ = decode_jwt(body["access_token"])
    assert abs((payload["exp"] - payload["iat"]) - 300) < 1.0


def test_agent_token_claims(user, make_agent, vault: str, anon, leak_watch) -> None:
    created = make_agent(user, scopes=["prod/**"], vault_ids=[vault])
    token = _agent_token(anon, leak_watch, created.key)
    header, payload, _, _ = decode_jwt(token)
    assert header["alg"] == "EdDSA"
    assert payload["sub"] == f"agent:{created.id}"
    assert uuid.UUID(str(payload["org"])) == uuid.UUID(created.record["org_id"])
    assert payload["scopes"] == ["prod/**"]
    assert payload["vault_ids"] == [vault]
    assert "kv" in payload
    for claim in ("iat", "exp", "jti"):
        assert claim in payload, payload
    assert abs(payload["iat"] - time.time()) < 300


def test_agent_tokens_have_distinct_jti(agent, anon, leak_watch) -> None:
    first = decode_jwt(_agent_token(anon, leak_watch, agent.key))[1]
    second = decode_jwt(_agent_token(anon, leak_watch, agent.key))[1]
    assert first["jti"] != second["jti"]


def test_exchange_with_another_agents_id_is_401(user, agent, make_agent, anon, leak_watch) -> None:
    other = make_agent(user)
    assert_problem(_exchange(anon, leak_watch, agent.key, other.id), 401)


def test_exchange_with_random_agent_id_is_401(agent, anon, leak_watch) -> None:
    assert_problem(_exchange(anon, leak_watch, agent.key, str(uuid.uuid4())), 401)


def test_exchange_with_malformed_agent_id_is_401(agent, anon, leak_watch) -> None:
    assert_problem(_exchange(anon, leak_watch, agent.key, "not-a-uuid"), 401)


@pytest.mark.parametrize(
    "make_key",
    [
        lambda key: random_like(key),
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),
        lambda key: key + "x",
        lambda key: key[:-1],
        lambda key: "ocv_",
        lambda key: "garbage",
        lambda key: "1ck_" + key[4:],
    ],
    ids=["unknown", "last_char_changed", "too_long", "too_short", "prefix_only", "garbage", "wrong_prefix"],
)
def test_exchange_with_wrong_key_is_401(agent, anon, leak_watch, make_key) -> None:
    resp = _exchange(anon, leak_watch, make_key(agent.key))
    assert_problem(resp, 401)
    assert "access_token" not in resp.json()


def test_exchange_failures_are_indistinguishable(agent, anon, leak_watch) -> None:
    unknown = assert_problem(_exchange(anon, leak_watch, random_like(agent.key)), 401)
    wrong_id = assert_problem(_exchange(anon, leak_watch, agent.key, str(uuid.uuid4())), 401)
    for name in ("type", "title", "detail"):
        assert unknown[name] == wrong_id[name], (name, unknown, wrong_id)


def test_exchange_deactivated_agent_is_401(user, agent, anon, leak_watch) -> None:
    assert_sdk_ok(user.client.agents.update(agent.id, is_active=False), 200)
    assert_problem(_exchange(anon, leak_watch, agent.key), 401)


def test_exchange_reactivated_agent_works_again(user, agent, anon, leak_watch) -> None:
    assert_sdk_ok(user.client.agents.update(agent.id, is_active=False), 200)
    assert_sdk_ok(user.client.agents.update(agent.id, is_active=True), 200)
    assert _exchange(anon, leak_watch, agent.key).status_code == 200


def test_exchange_expired_agent_is_401(user, agent, anon, leak_watch) -> None:
    past = rfc3339(now_utc() - dt.timedelta(minutes=5))
    assert user.http.patch(f"/v1/agents/{agent.id}", json={"expires_at": past}).status_code == 200
    assert_problem(_exchange(anon, leak_watch, agent.key), 401)


def test_exchange_missing_api_key_is_400(anon) -> None:
    assert_problem(anon.post("/v1/auth/agent-token", json={"agent_id": str(uuid.uuid4())}), 400)


def test_exchange_malformed_json_is_400(anon) -> None:
    resp = anon.post(
        "/v1/auth/agent-token", content=b'{"api_key": ', headers={"Content-Type": "application/json"}
    )
    assert_problem(resp, 400)


def test_agent_token_authenticates_requests(agent, anon, leak_watch) -> None:
    token = _agent_token(anon, leak_watch, agent.key)
    resp = anon.get("/v1/agents/me", headers=bearer(token))
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == agent.id


def test_raw_ocv_key_is_not_a_bearer_token(agent, anon) -> None:
    assert_problem(anon.get("/v1/agents/me", headers=bearer(agent.key)), 401)


# --- through the SDK -----------------------------------------------------------------------


def test_sdk_key_only_client_resolves_agent_id(base_url: str, agent, leak_watch) -> None:
    client = oneclaw.create_client(base_url=base_url, api_key=agent.key)
    try:
        assert client.resolved_agent_id is None
        me = assert_sdk_ok(client.agents.me(), 200)
        leak_watch.tokens.add(client._http.get_token())
        assert client.resolved_agent_id == agent.id
        assert me["id"] == agent.id
    finally:
        client.close()


def test_sdk_client_with_agent_id(agent, agent_sdk) -> None:
    client = agent_sdk(agent.key, agent_id=agent.id)
    assert client.resolved_agent_id == agent.id
    assert client.agents.me().data["id"] == agent.id


def test_sdk_agent_token_helper(base_url: str, agent, leak_watch) -> None:
    client = oneclaw.create_client(base_url=base_url)
    try:
        resp = client.auth.agent_token(agent.key, agent.id)
        data = assert_sdk_ok(resp, 200)
        leak_watch.track(data)
        assert data["agent_id"] == agent.id
        assert client._http.get_token() == data["access_token"]
        assert client.agents.me().data["id"] == agent.id
    finally:
        client.close()


# --- /v1/agents/me ---------------------------------------------------------------------------


def test_agents_me_returns_own_record(user, make_agent, agent_sdk, vault: str) -> None:
    created = make_agent(user, description="me", scopes=["x/**"], vault_ids=[vault], token_ttl_seconds=900)
    client = agent_sdk(created.key)
    data = assert_sdk_ok(client.agents.me(), 200)
    assert data["id"] == created.id
    assert data["name"] == created.record["name"]
    assert data["org_id"] == created.record["org_id"]
    assert data["scopes"] == ["x/**"]
    assert data["vault_ids"] == [vault]
    assert data["is_active"] is True
    assert data["created_by"] == created.record["created_by"]
    assert "api_key" not in data
    assert created.key not in json.dumps(data)


def test_agents_me_for_a_human_is_403(user) -> None:
    assert_problem(user.http.get("/v1/agents/me"), 403)


def test_agents_me_without_token_is_401(anon) -> None:
    assert_problem(anon.get("/v1/agents/me"), 401)


# --- agents may not manage agents ---------------------------------------------------------

AGENT_FORBIDDEN = {
    "create": lambda h, a: h.post("/v1/agents", json={"name": "child"}),
    "list": lambda h, a: h.get("/v1/agents"),
    "get_self": lambda h, a: h.get(f"/v1/agents/{a}"),
    "patch_self": lambda h, a: h.patch(f"/v1/agents/{a}", json={"scopes": ["*"]}),
    "delete_self": lambda h, a: h.delete(f"/v1/agents/{a}"),
    "rotate_self": lambda h, a: h.post(f"/v1/agents/{a}/rotate-key"),
}


@pytest.mark.parametrize("op", list(AGENT_FORBIDDEN), ids=list(AGENT_FORBIDDEN))
def test_agent_caller_gets_403(user, agent, base_url: str, anon, leak_watch, op: str) -> None:
    token = _agent_token(anon, leak_watch, agent.key)
    with httpx.Client(base_url=base_url, headers=bearer(token), timeout=30.0) as h:
        resp = AGENT_FORBIDDEN[op](h, agent.id)
    body = assert_problem(resp, 403)
    assert "ocv_" not in json.dumps(body)
    # Nothing changed.
    after = assert_sdk_ok(user.client.agents.get(agent.id), 200)
    assert after["key_prefix"] == agent.record["key_prefix"]
    assert after.get("scopes") == agent.record.get("scopes")


def test_sdk_agent_cannot_list_or_create_agents(agent, agent_sdk) -> None:
    client = agent_sdk(agent.key)
    assert_sdk_error(client.agents.list(), 403)
    assert_sdk_error(client.agents.create("grandchild"), 403)


# --- org roles: members manage the agents they created ------------------------------------


@pytest.fixture(scope="module")
def team(signup_user, join_org):
    owner = signup_user()
    return {
        "owner": owner,
        "admin": join_org(owner, "admin"),
        "member": join_org(owner, "member"),
        "member2": join_org(owner, "member"),
    }


def test_member_can_create_and_manage_own_agent(team, make_agent, leak_watch) -> None:
    member = team["member"]
    created = make_agent(member)
    assert uuid.UUID(created.record["created_by"]) == uuid.UUID(member.user_id)
    assert_sdk_ok(member.client.agents.get(created.id), 200)
    assert_sdk_ok(member.client.agents.update(created.id, name="mine"), 200)
    rotated = leak_watch.track(assert_sdk_ok(member.client.agents.rotate_key(created.id), 200))
    assert OCV_KEY_RE.fullmatch(rotated["api_key"])
    assert member.client.agents.delete(created.id).meta.status == 204


def test_member_lists_only_own_agents(team, make_agent) -> None:
    mine = make_agent(team["member"])
    owners = make_agent(team["owner"])
    peers = make_agent(team["member2"])
    listed = {a["id"] for a in assert_sdk_ok(team["member"].client.agents.list(), 200)["agents"]}
    assert mine.id in listed
    assert owners.id not in listed
    assert peers.id not in listed


@pytest.mark.parametrize("op", list(AGENT_OPERATIONS), ids=list(AGENT_OPERATIONS))
def test_member_cannot_touch_others_agents(team, make_agent, op: str) -> None:
    owners = make_agent(team["owner"])
    assert_problem(AGENT_OPERATIONS[op](team["member"].http, owners.id), (403, 404))
    after = assert_sdk_ok(team["owner"].client.agents.get(owners.id), 200)
    assert after["name"] == owners.record["name"]
    assert after["key_prefix"] == owners.record["key_prefix"]


def test_member_gets_404_for_others_agents(team, make_agent) -> None:
    owners = make_agent(team["owner"])
    assert_problem(team["member"].http.get(f"/v1/agents/{owners.id}"), 404)


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owner_and_admin_see_and_manage_members_agents(team, make_agent, role: str, leak_watch) -> None:
    members_agent = make_agent(team["member"])
    manager = team[role]
    listed = {a["id"] for a in assert_sdk_ok(manager.client.agents.list(), 200)["agents"]}
    assert members_agent.id in listed
    assert_sdk_ok(manager.client.agents.update(members_agent.id, description=f"checked by {role}"), 200)
    leak_watch.track(assert_sdk_ok(manager.client.agents.rotate_key(members_agent.id), 200))
    assert manager.client.agents.delete(members_agent.id).meta.status == 204


# --- environment tag and api_key_expires_at (issue 17) --------------------------------------


def test_new_agent_has_no_environment_and_no_key_expiry(user, agent) -> None:
    for name in AGENT_ENV_FIELDS:
        assert name in agent.record, (name, agent.record)
    assert agent.record["environment"] is None
    assert agent.record["environment_locked"] is False
    assert agent.record["env_auto_resolve"] is True
    assert agent.record["api_key_expires_at"] is None


def test_sdk_create_with_key_expiry(user, make_agent) -> None:
    expires = rfc3339(now_utc() + dt.timedelta(days=30))
    created = make_agent(user, api_key_expires_at=expires)
    assert parse_ts(created.record["api_key_expires_at"]) == parse_ts(expires)
    assert parse_ts(assert_sdk_ok(user.client.agents.get(created.id), 200)["api_key_expires_at"]) == parse_ts(expires)


def test_create_with_environment_fields(user, leak_watch) -> None:
    expires = rfc3339(now_utc() + dt.timedelta(days=7))
    body = {
        "name": "prod-bot",
        "environment": "production",
        "environment_locked": True,
        "env_auto_resolve": False,
        "api_key_expires_at": expires,
    }
    resp = user.http.post("/v1/agents", json=body)
    assert resp.status_code == 201, resp.text
    record = leak_watch.track(resp.json())["agent"]
    assert record["environment"] == "production"
    assert record["environment_locked"] is True
    assert record["env_auto_resolve"] is False
    assert parse_ts(record["api_key_expires_at"]) == parse_ts(expires)
    listed = {a["id"]: a for a in assert_sdk_ok(user.client.agents.list(), 200)["agents"]}
    assert {name: listed[record["id"]][name] for name in AGENT_ENV_FIELDS} == {name: record[name] for name in AGENT_ENV_FIELDS}


def test_agent_sees_its_environment_in_me(user, make_agent, agent_sdk) -> None:
    created = make_agent(user)
    assert_sdk_ok(user.client.agents.update(created.id, environment="staging", environment_locked=True), 200)
    data = assert_sdk_ok(agent_sdk(created.key).agents.me(), 200)
    assert data["environment"] == "staging"
    assert data["environment_locked"] is True
    assert data["env_auto_resolve"] is True


def test_update_environment_fields_and_clear_with_null(user, agent) -> None:
    expires = rfc3339(now_utc() + dt.timedelta(days=1))
    data = assert_sdk_ok(
        user.client.agents.update(
            agent.id, environment="preview-2", environment_locked=True, env_auto_resolve=False, api_key_expires_at=expires
        ),
        200,
    )
    assert (data["environment"], data["environment_locked"], data["env_auto_resolve"]) == ("preview-2", True, False)
    assert parse_ts(data["api_key_expires_at"]) == parse_ts(expires)
    # Absent fields are kept.
    kept = assert_sdk_ok(user.client.agents.update(agent.id, name="renamed"), 200)
    assert {name: kept[name] for name in AGENT_ENV_FIELDS} == {name: data[name] for name in AGENT_ENV_FIELDS}
    # Explicit null clears environment and api_key_expires_at (the SDK drops None, so raw HTTP).
    cleared = user.http.patch(f"/v1/agents/{agent.id}", json={"environment": None, "api_key_expires_at": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["environment"] is None
    assert cleared.json()["api_key_expires_at"] is None
    assert cleared.json()["environment_locked"] is True
    assert cleared.json()["env_auto_resolve"] is False
    after = assert_sdk_ok(user.client.agents.get(agent.id), 200)
    assert after["environment"] is None and after["api_key_expires_at"] is None


def _past() -> str:
    return rfc3339(now_utc() - dt.timedelta(minutes=5))


INVALID_ENV_BODIES: dict[str, Any] = {
    "environment_upper_case": {"environment": "Production"},
    "environment_too_short": {"environment": "p"},
    "environment_too_long": {"environment": "a" * 31},
    "environment_underscore": {"environment": "prod_eu"},
    "environment_space": {"environment": "prod eu"},
    "environment_not_string": {"environment": 7},
    "environment_locked_string": {"environment_locked": "yes"},
    "env_auto_resolve_number": {"env_auto_resolve": 1},
    "api_key_expires_at_garbage": {"api_key_expires_at": "next week"},
    "api_key_expires_at_number": {"api_key_expires_at": 1893456000},
    "api_key_expires_at_past": {"api_key_expires_at": _past},
}


def _body(case: str) -> dict[str, Any]:
    return {k: v() if callable(v) else v for k, v in INVALID_ENV_BODIES[case].items()}


@pytest.mark.parametrize("case", list(INVALID_ENV_BODIES), ids=list(INVALID_ENV_BODIES))
def test_invalid_environment_or_key_expiry_on_create_is_400(user, case: str) -> None:
    before = {a["id"] for a in assert_sdk_ok(user.client.agents.list(), 200)["agents"]}
    resp = user.http.post("/v1/agents", json={"name": "bad-env", **_body(case)})
    assert_problem(resp, 400)
    assert "ocv_" not in resp.text
    assert {a["id"] for a in assert_sdk_ok(user.client.agents.list(), 200)["agents"]} == before


@pytest.mark.parametrize("case", list(INVALID_ENV_BODIES), ids=list(INVALID_ENV_BODIES))
def test_invalid_environment_or_key_expiry_on_update_is_400_and_changes_nothing(user, agent, case: str) -> None:
    assert_problem(user.http.patch(f"/v1/agents/{agent.id}", json=_body(case)), 400)
    after = assert_sdk_ok(user.client.agents.get(agent.id), 200)
    for name in ALL_AGENT_FIELDS:
        assert after.get(name) == agent.record.get(name), name


def test_key_expiry_caps_tokens_and_then_refuses_the_key(user, make_agent, anon, leak_watch) -> None:
    created = make_agent(user)  # default token lifetime: an hour
    before = _agent_token(anon, leak_watch, created.key)
    # The key expires a few seconds from now (whole seconds, as the wire format has them): the next two requests
    # come well before it, and the test then waits past it (no timing is asserted).
    expiry = now_utc().replace(microsecond=0) + dt.timedelta(seconds=8)
    resp = user.http.patch(f"/v1/agents/{created.id}", json={"api_key_expires_at": rfc3339(expiry)})
    assert resp.status_code == 200, resp.text
    assert parse_ts(resp.json()["api_key_expires_at"]) == expiry

    capped = _exchange(anon, leak_watch, created.key)
    assert capped.status_code == 200, capped.text
    _, claims, _, _ = decode_jwt(capped.json()["access_token"])
    assert claims["exp"] <= expiry.timestamp()
    assert capped.json()["expires_in"] == claims["exp"] - claims["iat"]
    assert anon.get("/v1/agents/me", headers=bearer(capped.json()["access_token"])).status_code == 200

    time.sleep(max(0.0, (expiry - now_utc()).total_seconds()) + 0.5)
    assert now_utc() > expiry
    # Past its expiry the key answers exactly as a wrong key does.
    expired = assert_problem(_exchange(anon, leak_watch, created.key), 401)
    wrong = assert_problem(_exchange(anon, leak_watch, random_like(created.key)), 401)
    for name in ("type", "title", "detail"):
        assert expired[name] == wrong[name], (name, expired, wrong)
    assert "access_token" not in expired
    # A token minted before the expiry was set (an hour long) ends with the key.
    assert_problem(anon.get("/v1/agents/me", headers=bearer(before)), 401)
    # The refusal is audited as a failed authentication of the agent.
    deadline = time.monotonic() + 30
    while True:
        events = user.http.get("/v1/audit/events", params={"action": "auth.failure", "limit": 1000})
        assert events.status_code == 200, events.text
        mine = [e for e in events.json()["events"] if e.get("resource_id") == created.id]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert [e["details"].get("reason") for e in mine] == ["key_expired"], mine
    assert created.key not in json.dumps(events.json())

    # Rotation keeps the expiry, so rotating an expired key alone is refused; with a new expiry (or none) it works.
    assert_problem(user.http.post(f"/v1/agents/{created.id}/rotate-key"), 400)
    rotated = user.http.post(f"/v1/agents/{created.id}/rotate-key", json={"api_key_expires_at": None})
    assert rotated.status_code == 200, rotated.text
    body = leak_watch.track(rotated.json())
    assert body["agent"]["api_key_expires_at"] is None
    assert _exchange(anon, leak_watch, body["api_key"]).status_code == 200


def test_rotation_keeps_the_key_expiry(user, make_agent, anon, leak_watch) -> None:
    expires = rfc3339(now_utc() + dt.timedelta(days=2))
    created = make_agent(user, api_key_expires_at=expires)
    data = leak_watch.track(assert_sdk_ok(user.client.agents.rotate_key(created.id), 200))
    assert parse_ts(data["agent"]["api_key_expires_at"]) == parse_ts(expires)
    token = _exchange(anon, leak_watch, data["api_key"])
    assert token.status_code == 200, token.text
    _, claims, _, _ = decode_jwt(token.json()["access_token"])
    assert claims["exp"] <= parse_ts(expires).timestamp()


def test_rotation_may_set_a_new_key_expiry(user, make_agent, leak_watch) -> None:
    created = make_agent(user, api_key_expires_at=rfc3339(now_utc() + dt.timedelta(days=2)))
    later = rfc3339(now_utc() + dt.timedelta(days=90))
    resp = user.http.post(f"/v1/agents/{created.id}/rotate-key", json={"api_key_expires_at": later})
    assert resp.status_code == 200, resp.text
    assert parse_ts(leak_watch.track(resp.json())["agent"]["api_key_expires_at"]) == parse_ts(later)
    assert parse_ts(assert_sdk_ok(user.client.agents.get(created.id), 200)["api_key_expires_at"]) == parse_ts(later)


@pytest.mark.parametrize("body", [{"api_key_expires_at": "soon"}, {"api_key_expires_at": "past"}, [1]], ids=["garbage", "past", "array"])
def test_rotation_with_a_bad_expiry_is_400_and_keeps_the_key(user, agent, anon, leak_watch, body) -> None:
    if isinstance(body, dict) and body["api_key_expires_at"] == "past":
        body = {"api_key_expires_at": _past()}
    resp = user.http.post(f"/v1/agents/{agent.id}/rotate-key", json=body)
    assert_problem(resp, 400)
    assert "ocv_" not in resp.text
    assert _exchange(anon, leak_watch, agent.key).status_code == 200
    assert assert_sdk_ok(user.client.agents.get(agent.id), 200)["key_prefix"] == agent.record["key_prefix"]
