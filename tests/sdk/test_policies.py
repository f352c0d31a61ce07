"""Vault policies: CRUD, validation, glob semantics and the evaluation order (contract §1.4, §2.4)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Callable
from zoneinfo import ZoneInfo

import httpx
import pytest

from support import (
    assert_problem,
    assert_sdk_error,
    assert_sdk_ok,
    is_uuid,
    now_utc,
    parse_ts,
    rfc3339,
)

POLICY_FIELDS = (
    "id",
    "vault_id",
    "secret_path_pattern",
    "principal_type",
    "principal_id",
    "permissions",
    "effect",
    "priority",
    "created_by",
    "created_by_type",
    "created_at",
)


def _policies_url(vault: str, policy_id: str | None = None) -> str:
    base = f"/v1/vaults/{vault}/policies"
    return f"{base}/{policy_id}" if policy_id else base


@pytest.fixture
def grant(user, vault: str) -> Callable[..., dict]:
    """Factory: the vault's owner creates a policy (raw HTTP, every field available); returns the 201 body."""

    def make(
        principal_id: str,
        pattern: str,
        permissions: list[str] | tuple[str, ...] = ("read",),
        *,
        principal_type: str = "agent",
        vault_id: str | None = None,
        by=None,
        **extra: Any,
    ) -> dict:
        body = {
            "secret_path_pattern": pattern,
            "principal_type": principal_type,
            "principal_id": principal_id,
            "permissions": list(permissions),
            **extra,
        }
        resp = (by or user).http.post(_policies_url(vault_id or vault), json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()

    return make


@pytest.fixture
def agent(user, make_agent):
    return make_agent(user)


@pytest.fixture
def reader(agent, agent_sdk):
    """An SDK client running as ``agent`` (key-only, as an agent would)."""
    return agent_sdk(agent.key)


@pytest.fixture
def put(user, vault: str, canary) -> Callable[..., str]:
    """Factory: the owner stores a canary at ``path`` (in ``vault`` unless given); returns the value."""

    def make(path: str, vault_id: str | None = None) -> str:
        value = canary("POLICY-")
        assert_sdk_ok(user.client.secrets.set(vault_id or vault, path, value), 201)
        return value

    return make


# --- create --------------------------------------------------------------------------------------


def test_sdk_create_policy_returns_201_with_fields(user, vault: str, agent) -> None:
    data = assert_sdk_ok(
        user.client.policies.create(
            vault, principal_type="agent", principal_id=agent.id, secret_path_pattern="prod/**"
        ),
        201,
    )
    for name in POLICY_FIELDS:
        assert name in data, (name, data)
    assert is_uuid(data["id"])
    assert data["vault_id"] == vault
    assert data["secret_path_pattern"] == "prod/**"
    assert data["principal_type"] == "agent"
    assert data["principal_id"] == agent.id
    assert data["permissions"] == ["read"]  # the SDK's default
    assert data["effect"] == "allow"
    assert data["priority"] == 0
    assert data.get("conditions") is None
    assert data.get("expires_at") is None
    assert uuid.UUID(data["created_by"]) == uuid.UUID(user.user_id)
    assert data["created_by_type"] == "user"
    assert abs((parse_ts(data["created_at"]) - now_utc()).total_seconds()) < 300


def test_create_policy_with_every_field(grant, agent) -> None:
    expires = rfc3339(now_utc() + dt.timedelta(days=7))
    conditions = {
        "ip_allowlist": ["127.0.0.0/8", "10.0.0.0/8"],
        "time_window": {"after": "00:00", "before": "23:59", "timezone": "UTC", "days": ["mon", "tue"]},
    }
    data = grant(
        agent.id,
        "api-keys/*",
        ["read", "write", "delete", "rotate"],
        conditions=conditions,
        expires_at=expires,
        effect="deny",
        priority=42,
    )
    assert data["secret_path_pattern"] == "api-keys/*"
    assert sorted(data["permissions"]) == ["delete", "read", "rotate", "write"]
    assert data["conditions"] == conditions
    assert parse_ts(data["expires_at"]) == parse_ts(expires)
    assert data["effect"] == "deny"
    assert data["priority"] == 42


def test_create_policy_for_a_user_of_the_org(grant, team) -> None:
    data = grant(team["member"].user_id, "shared/**", principal_type="user", vault_id=team["vault"], by=team["owner"])
    assert data["principal_type"] == "user"
    assert data["principal_id"] == team["member"].user_id


@pytest.mark.parametrize("priority", [0, 1000000])
def test_priority_bounds_are_accepted(grant, agent, priority: int) -> None:
    assert grant(agent.id, "a/**", priority=priority)["priority"] == priority


def test_list_policies(user, vault: str, grant, agent) -> None:
    first = grant(agent.id, "prod/**")
    second = grant(agent.id, "dev/**", ["write"])
    data = assert_sdk_ok(user.client.policies.list(vault), 200)
    listed = {p["id"]: p for p in data["policies"]}
    assert set(listed) == {first["id"], second["id"]}
    assert listed[second["id"]]["permissions"] == ["write"]
    assert listed[first["id"]] == first


def test_list_policies_of_new_vault_is_empty(user, vault: str) -> None:
    assert assert_sdk_ok(user.client.policies.list(vault), 200)["policies"] == []


def test_policies_are_per_vault(user, vault: str, grant, agent) -> None:
    grant(agent.id, "prod/**")
    other = assert_sdk_ok(user.client.vaults.create("other"), 201)["id"]
    assert assert_sdk_ok(user.client.policies.list(other), 200)["policies"] == []


# --- validation ----------------------------------------------------------------------------------

INVALID_FIELDS: dict[str, dict[str, Any]] = {
    "pattern_dotdot": {"secret_path_pattern": "a/../b"},
    "pattern_dot": {"secret_path_pattern": "a/./b"},
    "pattern_double_slash": {"secret_path_pattern": "a//b"},
    "pattern_empty": {"secret_path_pattern": ""},
    "pattern_leading_slash": {"secret_path_pattern": "/a"},
    "pattern_trailing_slash": {"secret_path_pattern": "a/"},
    "pattern_space": {"secret_path_pattern": "a b"},
    "pattern_not_string": {"secret_path_pattern": 5},
    "permissions_empty": {"permissions": []},
    "permissions_unknown": {"permissions": ["admin"]},
    "permissions_one_unknown": {"permissions": ["read", "execute"]},
    "permissions_not_list": {"permissions": "read"},
    "principal_type_group": {"principal_type": "group"},
    "principal_id_not_uuid": {"principal_id": "bob"},
    "principal_id_unknown": {"principal_id": "00000000-0000-4000-8000-000000000000"},
    "principal_user_is_agent": {"principal_type": "user"},
    "cidr_prefix_too_long": {"conditions": {"ip_allowlist": ["10.0.0.0/33"]}},
    "cidr_garbage": {"conditions": {"ip_allowlist": ["not-an-ip"]}},
    "cidr_bad_octet": {"conditions": {"ip_allowlist": ["300.1.2.3/8"]}},
    "ip_allowlist_not_list": {"conditions": {"ip_allowlist": "10.0.0.0/8"}},
    "ip_allowlist_empty": {"conditions": {"ip_allowlist": []}},
    "time_bad_hour": {"conditions": {"time_window": {"after": "25:00", "before": "26:00"}}},
    "time_bad_format": {"conditions": {"time_window": {"after": "8am", "before": "20:00"}}},
    "time_missing_before": {"conditions": {"time_window": {"after": "08:00"}}},
    "time_empty_window": {"conditions": {"time_window": {"after": "08:00", "before": "08:00"}}},
    "time_bad_timezone": {
        "conditions": {"time_window": {"after": "08:00", "before": "20:00", "timezone": "Mars/Base"}}
    },
    "time_bad_day": {"conditions": {"time_window": {"after": "08:00", "before": "20:00", "days": ["funday"]}}},
    "time_not_object": {"conditions": {"time_window": "08:00-20:00"}},
    "condition_unknown": {"conditions": {"geo": ["NL"]}},
    "condition_typo": {"conditions": {"ip_allow_list": ["127.0.0.0/8"]}},
    "conditions_not_object": {"conditions": ["ip_allowlist"]},
    "effect_unknown": {"effect": "maybe"},
    "priority_negative": {"priority": -1},
    "priority_too_large": {"priority": 1000001},
    "expires_at_garbage": {"expires_at": "next week"},
}
REQUIRED = ("secret_path_pattern", "principal_type", "principal_id", "permissions")


def _valid_body(agent_id: str) -> dict[str, Any]:
    return {
        "secret_path_pattern": "prod/**",
        "principal_type": "agent",
        "principal_id": agent_id,
        "permissions": ["read"],
    }


@pytest.mark.parametrize("case", list(INVALID_FIELDS), ids=list(INVALID_FIELDS))
def test_invalid_policy_is_400_and_creates_nothing(user, vault: str, agent, case: str) -> None:
    body = {**_valid_body(agent.id), **INVALID_FIELDS[case]}
    assert_problem(user.http.post(_policies_url(vault), json=body), 400)
    assert assert_sdk_ok(user.client.policies.list(vault), 200)["policies"] == []


@pytest.mark.parametrize("missing", REQUIRED)
def test_policy_missing_required_field_is_400(user, vault: str, agent, missing: str) -> None:
    body = _valid_body(agent.id)
    del body[missing]
    assert_problem(user.http.post(_policies_url(vault), json=body), 400)


def test_policy_malformed_json_is_400(user, vault: str) -> None:
    resp = user.http.post(
        _policies_url(vault), content=b'{"secret_path_pattern": ', headers={"Content-Type": "application/json"}
    )
    assert_problem(resp, 400)


def test_policy_for_another_orgs_user_is_400(user, vault: str, other_user) -> None:
    body = {**_valid_body(other_user.user_id), "principal_type": "user"}
    assert_problem(user.http.post(_policies_url(vault), json=body), 400)


def test_policy_for_another_orgs_agent_is_400(user, vault: str, other_user, make_agent) -> None:
    theirs = make_agent(other_user)
    assert_problem(user.http.post(_policies_url(vault), json=_valid_body(theirs.id)), 400)


def test_sdk_empty_permissions_default_to_read(user, vault: str, agent) -> None:
    # The SDK turns an empty list into its default ["read"]; the raw API refuses [] (above).
    data = assert_sdk_ok(
        user.client.policies.create(
            vault, principal_type="agent", principal_id=agent.id, secret_path_pattern="x/**", permissions=[]
        ),
        201,
    )
    assert data["permissions"] == ["read"]


def test_sdk_unknown_permission_is_400(user, vault: str, agent) -> None:
    resp = user.client.policies.create(
        vault, principal_type="agent", principal_id=agent.id, secret_path_pattern="x/**", permissions=["sudo"]
    )
    assert_sdk_error(resp, 400)


def test_policy_on_missing_vault_is_404(user, agent) -> None:
    assert_problem(user.http.post(_policies_url(str(uuid.uuid4())), json=_valid_body(agent.id)), 404)
    assert_problem(user.http.get(_policies_url(str(uuid.uuid4()))), 404)


@pytest.mark.parametrize(
    "method,suffix",
    [("POST", ""), ("GET", ""), ("PUT", "/{pid}"), ("DELETE", "/{pid}")],
    ids=["create", "list", "update", "delete"],
)
def test_other_orgs_vault_policies_are_404(user, other_user, make_agent, method: str, suffix: str) -> None:
    theirs = assert_sdk_ok(other_user.client.vaults.create("foreign"), 201)["id"]
    their_agent = make_agent(other_user)
    policy = other_user.http.post(_policies_url(theirs), json=_valid_body(their_agent.id))
    assert policy.status_code == 201, policy.text
    url = _policies_url(theirs) + suffix.format(pid=policy.json()["id"])
    body = {"POST": _valid_body(their_agent.id), "PUT": {"permissions": ["write"]}}.get(method)
    assert_problem(user.http.request(method, url, json=body), 404)
    listed = assert_sdk_ok(other_user.client.policies.list(theirs), 200)["policies"]
    assert [p["permissions"] for p in listed] == [["read"]]


# --- update / delete -----------------------------------------------------------------------------


def test_sdk_update_permissions(user, vault: str, grant, agent) -> None:
    created = grant(agent.id, "prod/**")
    data = assert_sdk_ok(user.client.policies.update(vault, created["id"], permissions=["read", "write"]), 200)
    assert data["id"] == created["id"]
    assert sorted(data["permissions"]) == ["read", "write"]
    assert data["secret_path_pattern"] == "prod/**"
    assert data["principal_id"] == agent.id
    assert data["created_at"] == created["created_at"]
    listed = assert_sdk_ok(user.client.policies.list(vault), 200)["policies"]
    assert sorted(listed[0]["permissions"]) == ["read", "write"]


def test_update_effect_priority_conditions_expiry(user, vault: str, grant, agent) -> None:
    created = grant(agent.id, "prod/**")
    expires = rfc3339(now_utc() + dt.timedelta(days=2))
    conditions = {"ip_allowlist": ["127.0.0.1/32"]}
    resp = user.http.put(
        _policies_url(vault, created["id"]),
        json={"effect": "deny", "priority": 9, "conditions": conditions, "expires_at": expires},
    )
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["effect"] == "deny"
    assert data["priority"] == 9
    assert data["conditions"] == conditions
    assert parse_ts(data["expires_at"]) == parse_ts(expires)
    assert data["permissions"] == ["read"]


def test_update_with_null_clears_expiry_and_conditions(user, vault: str, grant, agent) -> None:
    created = grant(
        agent.id,
        "prod/**",
        conditions={"ip_allowlist": ["127.0.0.0/8"]},
        expires_at=rfc3339(now_utc() + dt.timedelta(days=1)),
    )
    resp = user.http.put(_policies_url(vault, created["id"]), json={"expires_at": None, "conditions": None})
    assert resp.status_code == 200, resp.text
    assert resp.json().get("expires_at") is None
    assert resp.json().get("conditions") is None


def test_empty_update_changes_nothing(user, vault: str, grant, agent) -> None:
    created = grant(agent.id, "prod/**", ["read", "write"], priority=3)
    resp = user.http.put(_policies_url(vault, created["id"]), json={})
    assert resp.status_code == 200, resp.text
    assert resp.json() == created


@pytest.mark.parametrize(
    "fixed",
    [
        {"secret_path_pattern": "**"},
        {"principal_type": "user"},
        {"principal_id": "00000000-0000-4000-8000-000000000000"},
        {"secret_path_pattern": "prod/**", "permissions": ["write"]},
    ],
    ids=["pattern", "principal_type", "principal_id", "pattern_unchanged_with_other_field"],
)
def test_update_of_fixed_fields_is_400(user, vault: str, grant, agent, fixed: dict) -> None:
    created = grant(agent.id, "prod/**")
    assert_problem(user.http.put(_policies_url(vault, created["id"]), json=fixed), 400)
    listed = assert_sdk_ok(user.client.policies.list(vault), 200)["policies"]
    assert listed == [created]


@pytest.mark.parametrize(
    "body",
    [
        {"permissions": []},
        {"permissions": ["fly"]},
        {"effect": "perhaps"},
        {"priority": -5},
        {"conditions": {"ip_allowlist": ["1.2.3.4/99"]}},
        {"conditions": {"nope": True}},
        {"expires_at": "garbage"},
    ],
    ids=["empty_permissions", "unknown_permission", "effect", "priority", "cidr", "unknown_condition", "expires_at"],
)
def test_invalid_update_is_400_and_changes_nothing(user, vault: str, grant, agent, body: dict) -> None:
    created = grant(agent.id, "prod/**")
    assert_problem(user.http.put(_policies_url(vault, created["id"]), json=body), 400)
    assert assert_sdk_ok(user.client.policies.list(vault), 200)["policies"] == [created]


def test_update_unknown_policy_is_404(user, vault: str) -> None:
    assert_sdk_error(user.client.policies.update(vault, str(uuid.uuid4()), permissions=["read"]), 404)


def test_policy_is_only_reachable_through_its_vault(user, vault: str, grant, agent) -> None:
    created = grant(agent.id, "prod/**")
    other = assert_sdk_ok(user.client.vaults.create("other"), 201)["id"]
    assert_problem(user.http.put(_policies_url(other, created["id"]), json={"permissions": ["write"]}), 404)
    assert_problem(user.http.delete(_policies_url(other, created["id"])), 404)
    assert assert_sdk_ok(user.client.policies.list(vault), 200)["policies"] == [created]


def test_delete_policy_returns_204(user, vault: str, grant, agent) -> None:
    created = grant(agent.id, "prod/**")
    resp = user.http.delete(_policies_url(vault, created["id"]))
    assert resp.status_code == 204
    assert resp.content == b""
    assert assert_sdk_ok(user.client.policies.list(vault), 200)["policies"] == []


def test_sdk_delete_policy_twice_is_404(user, vault: str, grant, agent) -> None:
    created = grant(agent.id, "prod/**")
    assert user.client.policies.delete(vault, created["id"]).meta.status == 204
    assert_sdk_error(user.client.policies.delete(vault, created["id"]), 404)
    assert_sdk_error(user.client.policies.update(vault, created["id"], permissions=["write"]), 404)


def test_deleting_the_vault_ends_access(user, vault: str, grant, agent, reader, put) -> None:
    put("prod/db")
    grant(agent.id, "prod/**")
    assert reader.secrets.get(vault, "prod/db").meta.status == 200
    assert user.client.vaults.delete(vault).meta.status == 204
    assert_sdk_error(reader.secrets.get(vault, "prod/db"), 404)


# --- who may manage policies -------------------------------------------------------------------


@pytest.fixture(scope="module")
def team(signup_user, join_org) -> dict:
    """An org with an owner, an admin and two members; the owner's vault; a vault of the first member."""
    owner = signup_user()
    admin = join_org(owner, "admin")
    member = join_org(owner, "member")
    member2 = join_org(owner, "member")
    vault = assert_sdk_ok(owner.client.vaults.create("team-vault"), 201)["id"]
    members_vault = assert_sdk_ok(member.client.vaults.create("members-vault"), 201)["id"]
    # The first member may read shared/** in the owner's vault (so can see it); member2 has nothing.
    policy = owner.http.post(
        _policies_url(vault),
        json={
            "secret_path_pattern": "shared/**",
            "principal_type": "user",
            "principal_id": member.user_id,
            "permissions": ["read"],
        },
    )
    assert policy.status_code == 201, policy.text
    return {
        "owner": owner,
        "admin": admin,
        "member": member,
        "member2": member2,
        "vault": vault,
        "members_vault": members_vault,
        "member_policy": policy.json(),
    }


def _manage_ops(vault: str, policy_id: str, principal_id: str) -> dict[str, Callable[[httpx.Client], httpx.Response]]:
    body = {
        "secret_path_pattern": "**",
        "principal_type": "user",
        "principal_id": principal_id,
        "permissions": ["read", "write"],
    }
    return {
        "create": lambda h: h.post(_policies_url(vault), json=body),
        "list": lambda h: h.get(_policies_url(vault)),
        "update": lambda h: h.put(_policies_url(vault, policy_id), json={"permissions": ["read", "write"]}),
        "delete": lambda h: h.delete(_policies_url(vault, policy_id)),
    }


MANAGE_OPS = ["create", "list", "update", "delete"]


@pytest.mark.parametrize("op", MANAGE_OPS)
def test_member_who_sees_the_vault_gets_403(team, op: str) -> None:
    member = team["member"]
    ops = _manage_ops(team["vault"], team["member_policy"]["id"], member.user_id)
    assert_problem(ops[op](member.http), 403)
    listed = assert_sdk_ok(team["owner"].client.policies.list(team["vault"]), 200)["policies"]
    assert team["member_policy"] in listed
    assert all(p["principal_id"] != member.user_id or p["permissions"] == ["read"] for p in listed)


@pytest.mark.parametrize("op", MANAGE_OPS)
def test_member_who_cannot_see_the_vault_gets_404(team, op: str) -> None:
    member2 = team["member2"]
    ops = _manage_ops(team["vault"], team["member_policy"]["id"], member2.user_id)
    assert_problem(ops[op](member2.http), 404)
    listed = assert_sdk_ok(team["owner"].client.policies.list(team["vault"]), 200)["policies"]
    assert team["member_policy"] in listed


def test_admin_manages_policies_on_owners_vault(team, make_agent) -> None:
    admin = team["admin"]
    helper = make_agent(team["owner"])
    created = admin.http.post(_policies_url(team["vault"]), json=_valid_body(helper.id))
    assert created.status_code == 201, created.text
    assert created.json()["created_by"] == admin.user_id
    assert any(p["id"] == created.json()["id"] for p in admin.client.policies.list(team["vault"]).data["policies"])
    assert_sdk_ok(admin.client.policies.update(team["vault"], created.json()["id"], permissions=["write"]), 200)
    assert admin.client.policies.delete(team["vault"], created.json()["id"]).meta.status == 204


@pytest.mark.parametrize("manager", ["member", "owner", "admin"])
def test_members_vault_is_managed_by_its_creator_and_org_admins(team, make_agent, manager: str) -> None:
    helper = make_agent(team["member"])
    caller = team[manager]
    created = caller.http.post(_policies_url(team["members_vault"]), json=_valid_body(helper.id))
    assert created.status_code == 201, created.text
    assert caller.client.policies.delete(team["members_vault"], created.json()["id"]).meta.status == 204


def test_agent_with_read_policy_cannot_manage_policies(team, make_agent, agent_sdk) -> None:
    owner = team["owner"]
    bot = make_agent(owner)
    created = owner.http.post(_policies_url(team["vault"]), json=_valid_body(bot.id))
    assert created.status_code == 201, created.text
    client = agent_sdk(bot.key)
    assert_sdk_ok(client.vaults.get(team["vault"]), 200)
    assert_sdk_error(client.policies.list(team["vault"]), 403)
    assert_sdk_error(
        client.policies.create(team["vault"], principal_type="agent", principal_id=bot.id, secret_path_pattern="**"),
        403,
    )
    assert_sdk_error(client.policies.update(team["vault"], created.json()["id"], permissions=["write"]), 403)
    assert_sdk_error(client.policies.delete(team["vault"], created.json()["id"]), 403)
    listed = assert_sdk_ok(owner.client.policies.list(team["vault"]), 200)["policies"]
    assert [p["permissions"] for p in listed if p["id"] == created.json()["id"]] == [["read"]]


def test_agent_manages_policies_on_a_vault_it_created(user, make_agent, agent_sdk, canary) -> None:
    creator = make_agent(user)
    client = agent_sdk(creator.key)
    vault = assert_sdk_ok(client.vaults.create("agent-owned"), 201)["id"]
    value = canary()
    assert_sdk_ok(client.secrets.set(vault, "own/secret", value), 201)
    assert client.secrets.get(vault, "own/secret").data["value"] == value
    peer = make_agent(user)
    data = assert_sdk_ok(
        client.policies.create(vault, principal_type="agent", principal_id=peer.id, secret_path_pattern="own/**"),
        201,
    )
    assert data["created_by"] == creator.id
    assert data["created_by_type"] == "agent"
    peer_client = agent_sdk(peer.key)
    assert peer_client.secrets.get(vault, "own/secret").data["value"] == value


# --- glob semantics --------------------------------------------------------------------------------

GLOB_CASES = [
    ("api-keys/*", "api-keys/openai", True),
    ("api-keys/*", "api-keys/openai/prod", False),
    ("api-keys/*", "api-keys", False),
    ("prod/**", "prod", True),
    ("prod/**", "prod/db", True),
    ("prod/**", "prod/a/b/c", True),
    ("prod/**", "production/db", False),
    ("prod/**", "dev/prod/db", False),
    ("**/password", "password", True),
    ("**/password", "db/password", True),
    ("**/password", "a/b/c/password", True),
    ("**/password", "password/old", False),
    ("a/*/c", "a/b/c", True),
    ("a/*/c", "a/b/b/c", False),
    ("a/*/c", "a/c", False),
    ("a/**/c", "a/c", True),
    ("a/**/c", "a/x/y/c", True),
    ("a/**/c", "a/x/y/d", False),
    ("**", "any/depth/at/all", True),
    ("*", "top", True),
    ("*", "top/level", False),
    ("*/*", "two/levels", True),
    ("*/*", "three/levels/deep", False),
    ("prod/db", "prod/db", True),
    ("prod/db", "prod/db2", False),
    ("prod/db", "prod/db/replica", False),
    ("prod/db", "prod", False),
    ("Prod/**", "prod/db", False),
]


@pytest.mark.parametrize(
    "pattern,path,allowed", GLOB_CASES, ids=[f"{p}|{s}|{'allow' if a else 'deny'}" for p, s, a in GLOB_CASES]
)
def test_glob_semantics(vault: str, grant, agent, reader, put, pattern: str, path: str, allowed: bool) -> None:
    value = put(path)
    grant(agent.id, pattern)
    resp = reader.secrets.get(vault, path)
    if allowed:
        assert assert_sdk_ok(resp, 200)["value"] == value
    else:
        assert_sdk_error(resp, 403)


def test_list_shows_only_readable_paths(vault: str, grant, agent, reader, put) -> None:
    for path in ("prod/db", "prod/api/key", "prod", "production/db", "dev/db", "top"):
        put(path)
    grant(agent.id, "prod/**")
    grant(agent.id, "dev/**", ["write"])
    data = assert_sdk_ok(reader.secrets.list(vault), 200)
    assert sorted(s["path"] for s in data["secrets"]) == ["prod", "prod/api/key", "prod/db"]
    for entry in data["secrets"]:
        assert "value" not in entry


def test_list_with_prefix_is_still_filtered(vault: str, grant, agent, reader, put) -> None:
    for path in ("prod/db", "production/db"):
        put(path)
    grant(agent.id, "prod/**")
    data = assert_sdk_ok(reader.secrets.list(vault, prefix="prod"), 200)
    assert [s["path"] for s in data["secrets"]] == ["prod/db"]


# --- permissions ------------------------------------------------------------------------------------


def _attempts(client, vault: str, path: str, canary) -> dict[str, int]:
    """Status of each operation on ``path`` (which exists) for ``client``."""
    return {
        "read": client.secrets.get(vault, path).meta.status,
        "versions": client.secrets.list_versions(vault, path).meta.status,
        "version": client.secrets.get_version(vault, path, 1).meta.status,
        "write": client.secrets.set(vault, path, canary()).meta.status,
        "rotate": client.secrets.rotate_generate(vault, path).meta.status,
        "delete": client.secrets.delete(vault, path).meta.status,
    }


PERMISSION_CASES = {
    "read": (["read"], {"read": 200, "versions": 200, "version": 200, "write": 403, "rotate": 403, "delete": 403}),
    "write": (["write"], {"read": 403, "versions": 403, "version": 403, "write": 201, "rotate": 201, "delete": 204}),
    "delete": (["delete"], {"read": 403, "versions": 403, "version": 403, "write": 403, "rotate": 403, "delete": 204}),
    "rotate": (["rotate"], {"read": 403, "versions": 403, "version": 403, "write": 403, "rotate": 201, "delete": 403}),
    "read_write": (
        ["read", "write"],
        {"read": 200, "versions": 200, "version": 200, "write": 201, "rotate": 201, "delete": 204},
    ),
}


@pytest.mark.parametrize("case", list(PERMISSION_CASES), ids=list(PERMISSION_CASES))
def test_permissions(vault: str, grant, agent, reader, put, canary, case: str) -> None:
    permissions, expected = PERMISSION_CASES[case]
    put("perm/target")
    grant(agent.id, "perm/**", permissions)
    assert _attempts(reader, vault, "perm/target", canary) == expected


def test_write_lets_an_agent_create_new_paths(vault: str, grant, agent, reader, user, canary) -> None:
    grant(agent.id, "drop/**", ["write"])
    value = canary()
    assert_sdk_ok(reader.secrets.set(vault, "drop/box", value), 201)
    assert user.client.secrets.get(vault, "drop/box").data["value"] == value


def test_write_outside_the_pattern_is_403(vault: str, grant, agent, reader, user, canary) -> None:
    grant(agent.id, "drop/**", ["write"])
    assert_sdk_error(reader.secrets.set(vault, "elsewhere/box", canary()), 403)
    assert_sdk_error(user.client.secrets.get(vault, "elsewhere/box"), 404)


def test_permissions_union_across_policies(vault: str, grant, agent, reader, put, canary) -> None:
    value = put("multi/x")
    grant(agent.id, "multi/**", ["read"])
    grant(agent.id, "multi/*", ["write"])
    assert reader.secrets.get(vault, "multi/x").data["value"] == value
    assert_sdk_ok(reader.secrets.set(vault, "multi/x", canary()), 201)


def test_update_permissions_applies_on_next_request(user, vault: str, grant, agent, reader, put) -> None:
    put("live/x")
    created = grant(agent.id, "live/**", ["read"])
    assert reader.secrets.get(vault, "live/x").meta.status == 200
    assert_sdk_ok(user.client.policies.update(vault, created["id"], permissions=["write"]), 200)
    assert_sdk_error(reader.secrets.get(vault, "live/x"), 403)


# --- deny ------------------------------------------------------------------------------------------


def test_deny_wins_over_allow(vault: str, grant, agent, reader, put) -> None:
    put("prod/db")
    open_value = put("prod/cache")
    grant(agent.id, "prod/**", ["read"])
    grant(agent.id, "prod/db", ["read"], effect="deny")
    assert_sdk_error(reader.secrets.get(vault, "prod/db"), 403)
    assert reader.secrets.get(vault, "prod/cache").data["value"] == open_value
    listed = [s["path"] for s in assert_sdk_ok(reader.secrets.list(vault), 200)["secrets"]]
    assert listed == ["prod/cache"]


def test_deny_wins_whatever_the_priority(vault: str, grant, agent, reader, put) -> None:
    put("prio/x")
    grant(agent.id, "prio/**", ["read"], priority=1000000)
    grant(agent.id, "prio/**", ["read"], effect="deny", priority=0)
    assert_sdk_error(reader.secrets.get(vault, "prio/x"), 403)


def test_deny_of_one_permission_keeps_the_others(vault: str, grant, agent, reader, put, canary) -> None:
    value = put("half/x")
    grant(agent.id, "half/**", ["read", "write"])
    grant(agent.id, "half/**", ["write"], effect="deny")
    assert reader.secrets.get(vault, "half/x").data["value"] == value
    assert_sdk_error(reader.secrets.set(vault, "half/x", canary()), 403)
    # write implies delete and rotate, for a deny as well.
    assert_sdk_error(reader.secrets.delete(vault, "half/x"), 403)
    assert_sdk_error(reader.secrets.rotate_generate(vault, "half/x"), 403)


def test_deny_wins_over_the_owner(user, vault: str, grant, put) -> None:
    put("locked/x")
    open_value = put("open/x")
    grant(user.user_id, "locked/**", ["read"], principal_type="user", effect="deny")
    assert_problem(user.http.get(f"/v1/vaults/{vault}/secrets/locked/x"), 403)
    assert user.client.secrets.get(vault, "open/x").data["value"] == open_value
    listed = [s["path"] for s in assert_sdk_ok(user.client.secrets.list(vault), 200)["secrets"]]
    assert listed == ["open/x"]


def test_deny_only_policy_grants_nothing(vault: str, grant, agent, reader, put) -> None:
    value = put("x/y")
    grant(agent.id, "**", ["read"], effect="deny")
    resp = reader.secrets.get(vault, "x/y")
    assert_sdk_error(resp, (403, 404))
    assert value not in repr(resp)
    assert_sdk_error(reader.secrets.list(vault), (403, 404))


# --- expiry and conditions -------------------------------------------------------------------------


def test_expired_policy_does_not_apply(vault: str, grant, agent, reader, put) -> None:
    put("old/x")
    grant(agent.id, "old/**", expires_at=rfc3339(now_utc() - dt.timedelta(minutes=1)))
    assert_sdk_error(reader.secrets.get(vault, "old/x"), 404)
    assert vault not in {v["id"] for v in assert_sdk_ok(reader.vaults.list(), 200)["vaults"]}


def test_future_expiry_applies(vault: str, grant, agent, reader, put) -> None:
    value = put("new/x")
    grant(agent.id, "new/**", expires_at=rfc3339(now_utc() + dt.timedelta(hours=1)))
    assert reader.secrets.get(vault, "new/x").data["value"] == value


def test_expiring_a_policy_cuts_access_at_once(user, vault: str, grant, agent, reader, put) -> None:
    put("soon/x")
    created = grant(agent.id, "soon/**")
    assert reader.secrets.get(vault, "soon/x").meta.status == 200
    past = rfc3339(now_utc() - dt.timedelta(seconds=1))
    assert user.http.put(_policies_url(vault, created["id"]), json={"expires_at": past}).status_code == 200
    assert_sdk_error(reader.secrets.get(vault, "soon/x"), 404)


def test_expired_deny_no_longer_denies(vault: str, grant, agent, reader, put) -> None:
    value = put("was/denied")
    grant(agent.id, "was/**")
    grant(agent.id, "was/**", effect="deny", expires_at=rfc3339(now_utc() - dt.timedelta(minutes=1)))
    assert reader.secrets.get(vault, "was/denied").data["value"] == value


@pytest.fixture
def baseline(grant, agent, put) -> None:
    """An unconditional grant elsewhere in the vault, so that the agent always sees the vault."""
    put("open/x")
    grant(agent.id, "open/**")


CONDITION_CASES = {
    "loopback_allowed": ({"ip_allowlist": ["127.0.0.0/8"]}, True),
    "exact_ip_allowed": ({"ip_allowlist": ["127.0.0.1/32"]}, True),
    "one_of_several": ({"ip_allowlist": ["10.0.0.0/8", "127.0.0.0/8"]}, True),
    "other_network": ({"ip_allowlist": ["10.0.0.0/8"]}, False),
    "other_networks": ({"ip_allowlist": ["192.168.0.0/16", "172.16.0.0/12"]}, False),
}


@pytest.mark.parametrize("case", list(CONDITION_CASES), ids=list(CONDITION_CASES))
def test_ip_allowlist(vault: str, grant, agent, reader, put, baseline, case: str) -> None:
    conditions, applies = CONDITION_CASES[case]
    value = put("cond/x")
    grant(agent.id, "cond/**", conditions=conditions)
    resp = reader.secrets.get(vault, "cond/x")
    if applies:
        assert assert_sdk_ok(resp, 200)["value"] == value
    else:
        assert_sdk_error(resp, 403)


def test_unmet_condition_is_the_only_grant_hides_vault(vault: str, grant, agent, reader, put) -> None:
    put("cond/x")
    grant(agent.id, "cond/**", conditions={"ip_allowlist": ["10.0.0.0/8"]})
    assert_sdk_error(reader.vaults.get(vault), 404)
    assert_sdk_error(reader.secrets.get(vault, "cond/x"), 404)


def test_unmet_condition_on_deny_does_not_deny(vault: str, grant, agent, reader, put) -> None:
    value = put("cond/x")
    grant(agent.id, "cond/**")
    grant(agent.id, "cond/**", effect="deny", conditions={"ip_allowlist": ["10.0.0.0/8"]})
    assert reader.secrets.get(vault, "cond/x").data["value"] == value


def test_met_condition_on_deny_denies(vault: str, grant, agent, reader, put) -> None:
    put("cond/x")
    grant(agent.id, "cond/**")
    grant(agent.id, "cond/**", effect="deny", conditions={"ip_allowlist": ["127.0.0.0/8"]})
    assert_sdk_error(reader.secrets.get(vault, "cond/x"), 403)


def _hhmm(minutes: int) -> str:
    minutes %= 24 * 60
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _mid_day_zone() -> tuple[str, dt.datetime]:
    """A time zone where local time is between 03:00 and 21:00 now (so +-2 h windows never wrap)."""
    for zone in ("UTC", "Asia/Tokyo"):
        local = dt.datetime.now(ZoneInfo(zone))
        if 3 <= local.hour < 21:
            return zone, local
    raise AssertionError("UTC and Asia/Tokyo cannot both be near midnight")


def _window(include_now: bool, **extra: Any) -> dict:
    zone, local = _mid_day_zone()
    minute = local.hour * 60 + local.minute
    after, before = (minute - 60, minute + 60) if include_now else (minute + 60, minute + 120)
    return {"time_window": {"after": _hhmm(after), "before": _hhmm(before), "timezone": zone, **extra}}


def test_time_window_containing_now_applies(vault: str, grant, agent, reader, put, baseline) -> None:
    value = put("tw/x")
    grant(agent.id, "tw/**", conditions=_window(True))
    assert reader.secrets.get(vault, "tw/x").data["value"] == value


def test_time_window_not_containing_now_does_not_apply(vault: str, grant, agent, reader, put, baseline) -> None:
    put("tw/x")
    grant(agent.id, "tw/**", conditions=_window(False))
    assert_sdk_error(reader.secrets.get(vault, "tw/x"), 403)


def test_time_window_spanning_midnight_excluding_now(vault: str, grant, agent, reader, put, baseline) -> None:
    # after > before spans midnight: [now+60min, now-60min) around the clock, which excludes now.
    zone, local = _mid_day_zone()
    minute = local.hour * 60 + local.minute
    window = {"after": _hhmm(minute + 60), "before": _hhmm(minute - 60), "timezone": zone}
    put("tw/x")
    grant(agent.id, "tw/**", conditions={"time_window": window})
    assert_sdk_error(reader.secrets.get(vault, "tw/x"), 403)


def test_time_window_honours_timezone(vault: str, grant, agent, reader, put, baseline) -> None:
    # A window around the current hour in Tokyo (UTC+9, no DST) does not contain the current hour in UTC.
    tokyo = dt.datetime.now(ZoneInfo("Asia/Tokyo"))
    minute = tokyo.hour * 60 + tokyo.minute
    window = {"after": _hhmm(minute - 60), "before": _hhmm(minute + 60)}
    put("tz/tokyo")
    put("tz/utc")
    grant(agent.id, "tz/tokyo", conditions={"time_window": {**window, "timezone": "Asia/Tokyo"}})
    grant(agent.id, "tz/utc", conditions={"time_window": {**window, "timezone": "UTC"}})
    assert reader.secrets.get(vault, "tz/tokyo").meta.status == 200
    assert_sdk_error(reader.secrets.get(vault, "tz/utc"), 403)


DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def test_time_window_on_today_applies(vault: str, grant, agent, reader, put, baseline) -> None:
    _, local = _mid_day_zone()
    value = put("day/x")
    grant(agent.id, "day/**", conditions=_window(True, days=[DAY_NAMES[local.weekday()]]))
    assert reader.secrets.get(vault, "day/x").data["value"] == value


def test_time_window_on_other_days_does_not_apply(vault: str, grant, agent, reader, put, baseline) -> None:
    _, local = _mid_day_zone()
    others = [d for i, d in enumerate(DAY_NAMES) if i != local.weekday()]
    put("day/x")
    grant(agent.id, "day/**", conditions=_window(True, days=others))
    assert_sdk_error(reader.secrets.get(vault, "day/x"), 403)


def test_all_conditions_must_hold(vault: str, grant, agent, reader, put, baseline) -> None:
    put("both/x")
    grant(agent.id, "both/**", conditions={"ip_allowlist": ["127.0.0.0/8"], **_window(False)})
    assert_sdk_error(reader.secrets.get(vault, "both/x"), 403)


# --- evaluation order ------------------------------------------------------------------------------


def test_agent_without_policy_sees_nothing(anon, vault: str, agent, reader, put) -> None:
    put("any/x")
    random_vault = str(uuid.uuid4())
    h = _auth(reader)
    for path_suffix in ("", "/secrets", "/secrets/any/x"):
        seen = assert_problem(anon.get(f"/v1/vaults/{vault}{path_suffix}", headers=h), 404)
        missing = assert_problem(anon.get(f"/v1/vaults/{random_vault}{path_suffix}", headers=h), 404)
        assert seen["detail"].replace(vault, "<id>") == missing["detail"].replace(random_vault, "<id>")
        assert seen["title"] == missing["title"]
    assert vault not in {v["id"] for v in assert_sdk_ok(reader.vaults.list(), 200)["vaults"]}


def _auth(client) -> dict[str, str]:
    return {"Authorization": f"Bearer {client._http.get_token()}"}


def test_vault_list_shows_only_visible_vaults(user, grant, agent, reader) -> None:
    visible = assert_sdk_ok(user.client.vaults.create("visible"), 201)["id"]
    hidden = assert_sdk_ok(user.client.vaults.create("hidden"), 201)["id"]
    grant(agent.id, "x/**", vault_id=visible)
    listed = {v["id"] for v in assert_sdk_ok(reader.vaults.list(), 200)["vaults"]}
    assert visible in listed
    assert hidden not in listed
    assert_sdk_ok(reader.vaults.get(visible), 200)
    assert_sdk_error(reader.vaults.get(hidden), 404)


def test_agent_cannot_delete_a_vault_it_may_read(user, vault: str, grant, agent, reader) -> None:
    grant(agent.id, "**", ["read", "write"])
    assert_sdk_error(reader.vaults.delete(vault), 403)
    assert_sdk_ok(user.client.vaults.get(vault), 200)


def test_missing_and_existing_forbidden_paths_look_alike(anon, vault: str, grant, agent, reader, put) -> None:
    put("prod/db")
    put("secret/exists")
    grant(agent.id, "prod/**")
    h = _auth(reader)
    existing = anon.get(f"/v1/vaults/{vault}/secrets/secret/exists", headers=h)
    missing = anon.get(f"/v1/vaults/{vault}/secrets/secret/never-written", headers=h)
    a = assert_problem(existing, 403)
    b = assert_problem(missing, 403)
    for name in ("type", "title", "detail"):
        assert a[name] == b[name], (name, a, b)
    # Within the grant, a missing path is an honest 404.
    assert_problem(anon.get(f"/v1/vaults/{vault}/secrets/prod/never-written", headers=h), 404)


def test_forbidden_writes_look_alike_for_existing_and_new_paths(vault: str, grant, agent, reader, put, canary) -> None:
    put("ro/exists")
    grant(agent.id, "ro/**")
    existing = reader.secrets.set(vault, "ro/exists", canary())
    new = reader.secrets.set(vault, "ro/new", canary())
    assert existing.meta.status == new.meta.status == 403
    assert existing.error.detail == new.error.detail


def test_vault_binding_hides_other_vaults(user, vault: str, make_agent, agent_sdk, grant, put) -> None:
    other = assert_sdk_ok(user.client.vaults.create("outside-binding"), 201)["id"]
    value = put("x/in")
    put("x/out", other)
    bound = make_agent(user, vault_ids=[vault])
    grant(bound.id, "x/**")
    grant(bound.id, "x/**", vault_id=other)
    client = agent_sdk(bound.key)
    assert client.secrets.get(vault, "x/in").data["value"] == value
    assert_sdk_error(client.secrets.get(other, "x/out"), 404)
    assert_sdk_error(client.vaults.get(other), 404)
    assert_sdk_error(client.secrets.list(other), 404)
    listed = {v["id"] for v in assert_sdk_ok(client.vaults.list(), 200)["vaults"]}
    assert vault in listed
    assert other not in listed


def test_binding_404_looks_like_a_missing_vault(
    anon, user, vault: str, make_agent, agent_sdk, grant, put
) -> None:
    other = assert_sdk_ok(user.client.vaults.create("outside-binding"), 201)["id"]
    put("x/out", other)
    bound = make_agent(user, vault_ids=[vault])
    grant(bound.id, "x/**", vault_id=other)
    client = agent_sdk(bound.key)
    random_id = str(uuid.uuid4())
    h = _auth(client)
    a = assert_problem(anon.get(f"/v1/vaults/{other}/secrets/x/out", headers=h), 404)
    b = assert_problem(anon.get(f"/v1/vaults/{random_id}/secrets/x/out", headers=h), 404)
    assert a["detail"].replace(other, "<id>") == b["detail"].replace(random_id, "<id>")


def test_binding_change_applies_on_next_request(user, vault: str, make_agent, agent_sdk, grant, put) -> None:
    other = assert_sdk_ok(user.client.vaults.create("rebind"), 201)["id"]
    put("x/y", other)
    bound = make_agent(user)
    grant(bound.id, "x/**", vault_id=other)
    client = agent_sdk(bound.key)
    assert client.secrets.get(other, "x/y").meta.status == 200
    assert_sdk_ok(user.client.agents.update(bound.id, vault_ids=[vault]), 200)
    assert_sdk_error(client.secrets.get(other, "x/y"), 404)


SCOPE_CASES = {
    "glob_scope_inside": (["prod/**"], "prod/db", 200),
    "glob_scope_outside": (["prod/**"], "dev/db", 403),
    "star_scope": (["*"], "dev/db", 200),
    "two_scopes": (["prod/**", "dev/*"], "dev/db", 200),
    "non_glob_scope": (["vaults:read"], "prod/db", 403),
    "non_glob_scope_other_path": (["secrets:read"], "dev/db", 403),
}


@pytest.mark.parametrize("case", list(SCOPE_CASES), ids=list(SCOPE_CASES))
def test_scopes_cap_policies(user, vault: str, make_agent, agent_sdk, grant, put, case: str) -> None:
    scopes, path, expected = SCOPE_CASES[case]
    value = put(path)
    scoped = make_agent(user, scopes=scopes)
    grant(scoped.id, "**")
    client = agent_sdk(scoped.key)
    resp = client.secrets.get(vault, path)
    assert resp.meta.status == expected, resp.error
    if expected == 200:
        assert resp.data["value"] == value


def test_scopes_do_not_grant_without_policy(user, vault: str, make_agent, agent_sdk, put) -> None:
    put("prod/db")
    scoped = make_agent(user, scopes=["*"])
    assert_sdk_error(agent_sdk(scoped.key).secrets.get(vault, "prod/db"), 404)


def test_scope_change_applies_on_next_request(user, vault: str, make_agent, agent_sdk, grant, put) -> None:
    put("prod/db")
    scoped = make_agent(user, scopes=["prod/**"])
    grant(scoped.id, "**")
    client = agent_sdk(scoped.key)
    assert client.secrets.get(vault, "prod/db").meta.status == 200
    assert_sdk_ok(user.client.agents.update(scoped.id, scopes=["dev/**"]), 200)
    assert_sdk_error(client.secrets.get(vault, "prod/db"), 403)


def test_scoped_list_shows_only_paths_within_scope(user, vault: str, make_agent, agent_sdk, grant, put) -> None:
    for path in ("prod/db", "dev/db"):
        put(path)
    scoped = make_agent(user, scopes=["prod/**"])
    grant(scoped.id, "**")
    data = assert_sdk_ok(agent_sdk(scoped.key).secrets.list(vault), 200)
    assert [s["path"] for s in data["secrets"]] == ["prod/db"]


# --- users: owner bypass and user policies ---------------------------------------------------------


def test_owner_reads_everything_without_policies(user, vault: str, put) -> None:
    value = put("owner/anything/deep")
    assert user.client.secrets.get(vault, "owner/anything/deep").data["value"] == value


def test_admin_reads_members_vault(team, canary) -> None:
    value = canary()
    assert_sdk_ok(team["member"].client.secrets.set(team["members_vault"], "m/x", value), 201)
    assert team["admin"].client.secrets.get(team["members_vault"], "m/x").data["value"] == value
    assert team["owner"].client.secrets.get(team["members_vault"], "m/x").data["value"] == value


def test_member_cannot_see_another_members_vault(team) -> None:
    member2 = team["member2"]
    assert_sdk_error(member2.client.vaults.get(team["members_vault"]), 404)
    listed = {v["id"] for v in assert_sdk_ok(member2.client.vaults.list(), 200)["vaults"]}
    assert team["members_vault"] not in listed
    assert team["vault"] not in listed


def test_user_policy_grants_a_member(team, canary) -> None:
    owner, member = team["owner"], team["member"]
    shared, private = canary(), canary()
    assert_sdk_ok(owner.client.secrets.set(team["vault"], "shared/db", shared), 201)
    assert_sdk_ok(owner.client.secrets.set(team["vault"], "private/db", private), 201)
    assert member.client.secrets.get(team["vault"], "shared/db").data["value"] == shared
    resp = member.http.get(f"/v1/vaults/{team['vault']}/secrets/private/db")
    assert_problem(resp, 403)
    assert private not in resp.text
    assert team["vault"] in {v["id"] for v in member.client.vaults.list().data["vaults"]}
    listed = [s["path"] for s in member.client.secrets.list(team["vault"]).data["secrets"]]
    assert "private/db" not in listed
    assert "shared/db" in listed
    assert_sdk_error(member.client.secrets.set(team["vault"], "shared/db", "overwrite"), 403)
    assert_sdk_error(member.client.vaults.delete(team["vault"]), 403)


def test_user_policies_do_not_apply_to_agents(team, make_agent, agent_sdk, canary) -> None:
    owner = team["owner"]
    bot = make_agent(owner)
    assert_sdk_ok(owner.client.secrets.set(team["vault"], "shared/bot", canary()), 201)
    # The member's user policy on shared/** gives the agent nothing.
    assert_sdk_error(agent_sdk(bot.key).secrets.get(team["vault"], "shared/bot"), 404)


def test_policy_response_never_contains_secret_values(user, vault: str, grant, agent, put) -> None:
    value = put("prod/db")
    grant(agent.id, "prod/**")
    resp = user.http.get(_policies_url(vault))
    assert resp.status_code == 200
    assert value not in resp.text
    assert json.loads(resp.text)["policies"][0]["secret_path_pattern"] == "prod/**"
