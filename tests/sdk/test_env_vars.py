"""Environment variables (contract §1.5): a vault's variables per environment through the SDK's ``env_vars``
resource, custom environments and ``copy_from``, the org's shared variables and their links, ``resolve`` with its
precedence (shared < vault < branch override), access for agents by policy, audit events that name keys and never
values, and the refusals (400/403/404/409) that change nothing stored.

Every test works in an org of its own (``signup_user``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable

import pytest

from conftest import Agent, User
from support import assert_problem, assert_sdk_error, assert_sdk_ok, is_uuid, parse_ts, run_together

BUILTINS = ["development", "preview", "production"]


@pytest.fixture
def owner(signup_user: Callable[[], User]) -> User:
    return signup_user()


@pytest.fixture
def vault_id(owner: User) -> str:
    return assert_sdk_ok(owner.client.vaults.create(f"env-{uuid.uuid4().hex[:8]}"), 201)["id"]


def events(user: User, action: str) -> list[dict[str, Any]]:
    resp = user.http.get("/v1/audit/events", params={"action": action, "limit": 1000})
    assert resp.status_code == 200, resp.text
    return resp.json()["events"]


def listed(user: User, vault_id: str, **query: str) -> dict[str, dict[str, Any]]:
    """The vault's variables by ``KEY@environments[@branch]``."""
    body = assert_sdk_ok(user.client.env_vars.list(vault_id, **query), 200)
    return {
        "@".join([v["key"], ",".join(v["environments"])] + ([v["git_branch"]] if v["git_branch"] else [])): v
        for v in body["env_vars"]
    }


# ---------------------------------------------------------------------------
# A vault's variables
# ---------------------------------------------------------------------------


def test_a_variable_is_created_read_changed_and_deleted_through_the_sdk(
    owner: User, vault_id: str, canary: Callable[[str], str]
) -> None:
    first, second = canary("ENV-"), canary("ENV-")
    created = assert_sdk_ok(owner.client.env_vars.create(vault_id, "DATABASE_URL", first, comment="primary"), 201)
    assert is_uuid(created["id"]) and created["key"] == "DATABASE_URL"
    assert created["environments"] == BUILTINS, "the default is every built-in environment"
    assert created["value"] == first and created["version"] == 1 and created["sensitive"] is False
    assert created["git_branch"] is None and created["comment"] == "primary"
    assert created["created_by"] == owner.user_id
    parse_ts(created["created_at"]), parse_ts(created["updated_at"])

    got = assert_sdk_ok(owner.client.env_vars.get(vault_id, "DATABASE_URL"), 200)
    assert got["value"] == first and got["id"] == created["id"]

    changed = assert_sdk_ok(owner.client.env_vars.update(vault_id, "DATABASE_URL", value=second), 200)
    assert changed["value"] == second and changed["version"] == 2
    assert assert_sdk_ok(owner.client.env_vars.get(vault_id, "DATABASE_URL"), 200)["value"] == second

    moved = assert_sdk_ok(owner.client.env_vars.update(vault_id, "DATABASE_URL", environments=["production"]), 200)
    assert moved["environments"] == ["production"] and moved["version"] == 3 and moved["value"] == second

    assert_sdk_ok(owner.client.env_vars.delete(vault_id, "DATABASE_URL"), 204)
    assert_sdk_error(owner.client.env_vars.get(vault_id, "DATABASE_URL"), 404)
    assert listed(owner, vault_id) == {}


def test_a_sensitive_value_is_never_in_a_list_but_is_in_a_get(
    owner: User, vault_id: str, canary: Callable[[str], str]
) -> None:
    hidden, shown = canary("ENV-"), canary("ENV-")
    assert_sdk_ok(owner.client.env_vars.create(vault_id, "API_TOKEN", hidden, sensitive=True), 201)
    assert_sdk_ok(owner.client.env_vars.create(vault_id, "LOG_LEVEL", shown), 201)
    resp = owner.http.get(f"/v1/vaults/{vault_id}/env-vars")
    assert resp.status_code == 200 and hidden not in resp.text
    by_key = {v["key"]: v for v in resp.json()["env_vars"]}
    assert by_key["API_TOKEN"]["value"] is None and by_key["API_TOKEN"]["sensitive"] is True
    assert by_key["LOG_LEVEL"]["value"] == shown
    assert assert_sdk_ok(owner.client.env_vars.get(vault_id, "API_TOKEN"), 200)["value"] == hidden


def test_one_key_holds_a_value_per_environment(owner: User, vault_id: str, canary: Callable[[str], str]) -> None:
    prod, dev = canary("PROD-"), canary("DEV-")
    env = owner.client.env_vars
    assert_sdk_ok(env.create(vault_id, "API_URL", prod, environments=["production"]), 201)
    assert_sdk_ok(env.create(vault_id, "API_URL", dev, environments=["development", "preview"]), 201)
    assert env.get(vault_id, "API_URL", environment="production").data["value"] == prod
    assert env.get(vault_id, "API_URL", environment="preview").data["value"] == dev
    # Without an environment the key is ambiguous: 409 names the environments, and nothing is returned.
    body = assert_problem(owner.http.get(f"/v1/vaults/{vault_id}/env-vars/API_URL"), 409)
    assert "environment" in body["detail"] and prod not in json.dumps(body)
    # An overlapping value is refused and changes nothing.
    before = listed(owner, vault_id)
    assert_sdk_error(env.create(vault_id, "API_URL", canary("X-"), environments=["production"]), 409)
    assert_sdk_error(env.update(vault_id, "API_URL", environment="preview", environments=["production", "preview"]), 409)
    assert listed(owner, vault_id) == before
    # Filtering the list by environment.
    assert set(listed(owner, vault_id, environment="production")) == {"API_URL@production"}
    # A change to one environment's value leaves the other's.
    assert_sdk_ok(env.update(vault_id, "API_URL", environment="development", value="dev-2"), 200)
    assert env.get(vault_id, "API_URL", environment="production").data["value"] == prod
    assert_sdk_ok(env.delete(vault_id, "API_URL", environment="production"), 204)
    assert set(listed(owner, vault_id)) == {"API_URL@development,preview"}


@pytest.mark.parametrize(
    "body",
    [
        {"key": "lower_case", "value": "v"},
        {"key": "", "value": "v"},
        {"key": "A" * 257, "value": "v"},
        {"key": "HAS-DASH", "value": "v"},
        {"key": "OK", "value": "v", "environments": []},
        {"key": "OK", "value": "v", "environments": ["Production"]},
        {"key": "OK", "value": "v", "environments": ["x"]},
        {"key": "OK", "value": "v", "environments": ["production", "production"]},
        {"key": "OK", "value": "v", "environments": ["staging"]},
        {"key": "OK", "value": "v", "git_branch": "feature/x", "environments": ["production"]},
        {"key": "OK", "value": "v", "git_branch": "../etc"},
        {"key": "OK", "value": "v", "comment": "c" * 1025},
        {"key": "OK"},
        {"key": "OK", "value": 5},
    ],
)
def test_bad_variables_are_refused_with_400_and_nothing_stored(owner: User, vault_id: str, body: dict[str, Any]) -> None:
    assert_problem(owner.http.post(f"/v1/vaults/{vault_id}/env-vars", json=body), 400)
    assert listed(owner, vault_id) == {}


def test_a_branch_override_belongs_to_preview(owner: User, vault_id: str) -> None:
    created = assert_sdk_ok(owner.client.env_vars.create(vault_id, "FLAG", "branch", git_branch="feature/login"), 201)
    assert created["environments"] == ["preview"] and created["git_branch"] == "feature/login"
    got = owner.client.env_vars.get(vault_id, "FLAG", environment="preview", git_branch="feature/login")
    assert assert_sdk_ok(got, 200)["value"] == "branch"
    # Without the branch, the key has no environment-wide value.
    assert_sdk_error(owner.client.env_vars.get(vault_id, "FLAG"), 404)


def test_concurrent_creates_of_one_key_and_environment_store_exactly_one(owner: User, vault_id: str) -> None:
    def create(i: int) -> int:
        return owner.http.post(
            f"/v1/vaults/{vault_id}/env-vars", json={"key": "RACE", "value": f"v{i}", "environments": ["production"]}
        ).status_code

    statuses = run_together(8, create)
    assert sorted(statuses) == [201] + [409] * 7
    assert len(listed(owner, vault_id)) == 1


# ---------------------------------------------------------------------------
# Environments
# ---------------------------------------------------------------------------


def test_environments_are_the_builtins_plus_custom_ones_with_copy_from(
    owner: User, vault_id: str, canary: Callable[[str], str]
) -> None:
    env = owner.client.env_vars
    builtins = assert_sdk_ok(env.list_environments(vault_id), 200)["environments"]
    assert sorted(e["slug"] for e in builtins) == BUILTINS
    assert all(e["is_builtin"] and is_uuid(e["id"]) and not e["is_detached"] for e in builtins)
    assert assert_sdk_ok(env.list_environments(vault_id), 200)["environments"] == builtins, "built-in ids are stable"

    value = canary("STAGE-")
    assert_sdk_ok(env.create(vault_id, "REGION", value, environments=["production"]), 201)
    assert_sdk_ok(env.create(vault_id, "ONLY_DEV", "d", environments=["development"]), 201)
    staging = assert_sdk_ok(env.create_environment(vault_id, "staging", description="pre-prod", copy_from="production"), 201)
    assert staging["slug"] == "staging" and staging["is_builtin"] is False and staging["copied_from"] == "production"
    assert staging["is_detached"] is True and staging["description"] == "pre-prod"
    assert set(listed(owner, vault_id)) == {"REGION@production", "REGION@staging", "ONLY_DEV@development"}
    assert env.get(vault_id, "REGION", environment="staging").data["value"] == value
    # The copy is its own: changing it leaves production's value.
    assert_sdk_ok(env.update(vault_id, "REGION", environment="staging", value="eu-2"), 200)
    assert env.get(vault_id, "REGION", environment="production").data["value"] == value

    slugs = [e["slug"] for e in assert_sdk_ok(env.list_environments(vault_id), 200)["environments"]]
    assert sorted(slugs) == sorted(BUILTINS + ["staging"])
    assert_sdk_error(env.create_environment(vault_id, "staging"), 409)
    assert_sdk_error(env.create_environment(vault_id, "production"), 409)
    assert_sdk_error(env.create_environment(vault_id, "qa", copy_from="nowhere"), 400)
    for slug in ["x", "UPPER", "a" * 31, "with_underscore"]:
        assert_problem(owner.http.post(f"/v1/vaults/{vault_id}/environments", json={"slug": slug}), 400)

    # A variable may name the custom environment; deleting the environment takes it out of every variable.
    assert_sdk_ok(env.create(vault_id, "SHARED", "s", environments=["staging", "production"]), 201)
    assert_sdk_ok(env.delete_environment(vault_id, "staging"), 204)
    assert set(listed(owner, vault_id)) == {"REGION@production", "ONLY_DEV@development", "SHARED@production"}
    assert_sdk_error(env.delete_environment(vault_id, "staging"), 404)
    assert_sdk_error(env.delete_environment(vault_id, "production"), 409)
    assert_sdk_error(env.create(vault_id, "LATE", "l", environments=["staging"]), 400)


# ---------------------------------------------------------------------------
# Shared variables and resolve
# ---------------------------------------------------------------------------


def test_resolve_layers_shared_then_vault_then_branch_override(
    owner: User, vault_id: str, canary: Callable[[str], str]
) -> None:
    shared_value, vault_value, branch_value = canary("SHARED-"), canary("VAULT-"), canary("BRANCH-")
    shared = owner.http.post("/v1/org/env-vars", json={"key": "REGION", "value": shared_value})
    assert shared.status_code == 201, shared.text
    shared_id = shared.json()["id"]
    other = owner.http.post("/v1/org/env-vars", json={"key": "TZ", "value": "UTC", "environments": ["production"]})
    assert other.status_code == 201, other.text
    # Not linked yet: the vault does not see them.
    assert assert_sdk_ok(owner.client.env_vars.resolve(vault_id, "production"), 200)["vars"] == {}
    for ident in (shared_id, other.json()["id"]):
        link = owner.http.post(f"/v1/org/env-vars/{ident}/link", json={"vault_id": vault_id})
        assert link.status_code == 201, link.text

    resolved = assert_sdk_ok(owner.client.env_vars.resolve(vault_id, "preview"), 200)
    assert resolved["vars"] == {"REGION": shared_value} and resolved["sources"] == {"REGION": "shared"}
    assert resolved["environment"] == "preview" and resolved["git_branch"] is None
    parse_ts(resolved["resolved_at"])

    assert_sdk_ok(owner.client.env_vars.create(vault_id, "REGION", vault_value), 201)
    assert_sdk_ok(owner.client.env_vars.create(vault_id, "REGION", branch_value, git_branch="feature/a"), 201)
    prod = assert_sdk_ok(owner.client.env_vars.resolve(vault_id, "production"), 200)
    assert prod["vars"] == {"REGION": vault_value, "TZ": "UTC"}
    assert prod["sources"] == {"REGION": "vault", "TZ": "shared"}
    branch = assert_sdk_ok(owner.client.env_vars.resolve(vault_id, "preview", git_branch="feature/a"), 200)
    assert branch["vars"] == {"REGION": branch_value} and branch["sources"] == {"REGION": "branch_override"}
    assert branch["git_branch"] == "feature/a"
    other_branch = assert_sdk_ok(owner.client.env_vars.resolve(vault_id, "preview", git_branch="main"), 200)
    assert other_branch["vars"] == {"REGION": vault_value}

    # Every resolve is an audit event naming the keys, never a value.
    found = events(owner, "env_var.resolve")
    assert sorted(sorted(e["details"]["keys"]) for e in found) == [[], ["REGION"], ["REGION"], ["REGION"], ["REGION", "TZ"]]
    text = json.dumps(found)
    assert all(v not in text for v in (shared_value, vault_value, branch_value))

    # Unlinking takes the shared variable out of the vault again.
    assert owner.http.delete(f"/v1/org/env-vars/{shared_id}/links/{vault_id}").status_code == 204
    assert owner.http.delete(f"/v1/org/env-vars/{shared_id}/links/{vault_id}").status_code == 404
    assert assert_sdk_ok(owner.client.env_vars.resolve(vault_id, "preview"), 200)["vars"] == {"REGION": vault_value}


def test_resolve_needs_a_known_environment(owner: User, vault_id: str) -> None:
    resp = owner.http.get(f"/v1/vaults/{vault_id}/env-vars/resolve")
    assert "environment" in assert_problem(resp, 400)["detail"]
    assert_problem(owner.http.get(f"/v1/vaults/{vault_id}/env-vars/resolve", params={"environment": "staging"}), 400)
    assert_problem(owner.http.get(f"/v1/vaults/{vault_id}/env-vars/resolve", params={"environment": "BAD"}), 400)


def test_shared_variables_are_managed_by_owners_and_admins(
    owner: User, vault_id: str, join_org: Callable[..., User], canary: Callable[[str], str]
) -> None:
    hidden = canary("SHARED-")
    made = owner.http.post("/v1/org/env-vars", json={"key": "SENTRY_DSN", "value": hidden, "sensitive": True})
    assert made.status_code == 201, made.text
    ident = made.json()["id"]
    assert made.json()["linked_vaults"] == [] and made.json()["version"] == 1
    assert owner.http.post(f"/v1/org/env-vars/{ident}/link", json={"vault_id": vault_id}).status_code == 201
    assert owner.http.post(f"/v1/org/env-vars/{ident}/link", json={"vault_id": vault_id}).status_code == 201
    listing = owner.http.get("/v1/org/env-vars")
    assert listing.status_code == 200 and hidden not in listing.text
    (item,) = listing.json()["env_vars"]
    assert item["value"] is None and item["linked_vaults"] == [vault_id]

    updated = owner.http.patch("/v1/org/env-vars/SENTRY_DSN", json={"value": "new", "environments": ["production"]})
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2 and updated.json()["environments"] == ["production"]
    assert_problem(owner.http.patch("/v1/org/env-vars/NOPE", json={"value": "x"}), 404)
    assert_problem(owner.http.post("/v1/org/env-vars", json={"key": "SENTRY_DSN", "value": "dup"}), 409)
    assert_problem(owner.http.post(f"/v1/org/env-vars/{ident}/link", json={"vault_id": str(uuid.uuid4())}), 404)
    assert_problem(owner.http.post(f"/v1/org/env-vars/{ident}/link", json={"vault_id": "nope"}), 400)

    member = join_org(owner, "member")
    assert_problem(member.http.get("/v1/org/env-vars"), 403)
    assert_problem(member.http.post("/v1/org/env-vars", json={"key": "X", "value": "y"}), 403)
    assert_problem(member.http.delete(f"/v1/org/env-vars/{ident}"), 403)
    admin = join_org(owner, "admin")
    assert admin.http.get("/v1/org/env-vars").status_code == 200

    assert owner.http.delete(f"/v1/org/env-vars/{ident}").status_code == 204
    assert_problem(owner.http.delete(f"/v1/org/env-vars/{ident}"), 404)
    assert owner.http.get("/v1/org/env-vars").json()["env_vars"] == []
    outcomes = sorted(e["details"].get("outcome", "success") for e in events(owner, "org_env_var.create"))
    assert outcomes == ["denied", "success"], "the member's refused create is recorded"


# ---------------------------------------------------------------------------
# Agents
# ---------------------------------------------------------------------------


def test_an_agent_reads_the_variables_a_policy_lets_it(
    owner: User, vault_id: str, make_agent: Callable[..., Agent], agent_sdk: Callable[..., Any],
    canary: Callable[[str], str],
) -> None:
    readable, unreadable = canary("AGENT-"), canary("AGENT-")
    assert_sdk_ok(owner.client.env_vars.create(vault_id, "PUBLIC_URL", readable), 201)
    assert_sdk_ok(owner.client.env_vars.create(vault_id, "ROOT_PASSWORD", unreadable), 201)
    agent = make_agent(owner)
    bot = agent_sdk(agent.key)
    # No policy: the vault is not even visible.
    assert_sdk_error(bot.env_vars.list(vault_id), 404)
    assert_sdk_ok(
        owner.client.policies.create(
            vault_id, principal_type="agent", principal_id=agent.id, secret_path_pattern="env-vars/PUBLIC_URL",
            permissions=["read"],
        ),
        201,
    )
    keys = [v["key"] for v in assert_sdk_ok(bot.env_vars.list(vault_id), 200)["env_vars"]]
    assert keys == ["PUBLIC_URL"]
    assert assert_sdk_ok(bot.env_vars.get(vault_id, "PUBLIC_URL"), 200)["value"] == readable
    assert_sdk_error(bot.env_vars.get(vault_id, "ROOT_PASSWORD"), 403)
    resolved = assert_sdk_ok(bot.env_vars.resolve(vault_id, "production"), 200)
    assert resolved["vars"] == {"PUBLIC_URL": readable}
    # Agents read; they never change variables, whatever their policies.
    assert_sdk_ok(
        owner.client.policies.create(
            vault_id, principal_type="agent", principal_id=agent.id, secret_path_pattern="**",
            permissions=["read", "write"],
        ),
        201,
    )
    assert_sdk_error(bot.env_vars.create(vault_id, "NEW", "x"), 403)
    assert_sdk_error(bot.env_vars.update(vault_id, "PUBLIC_URL", value="x"), 403)
    assert_sdk_error(bot.env_vars.delete(vault_id, "PUBLIC_URL"), 403)
    assert_sdk_error(bot.env_vars.create_environment(vault_id, "qa"), 403)
    assert assert_sdk_ok(owner.client.env_vars.get(vault_id, "PUBLIC_URL"), 200)["version"] == 1
    refused = [e for e in events(owner, "env_var.update") + events(owner, "env_var.create")
               if e["details"].get("outcome") == "denied"]
    assert sorted(e["resource_id"] for e in refused) == ["NEW", "PUBLIC_URL"], "an agent's refused change is recorded"
    denied = [e for e in events(owner, "env_var.read") if e["details"].get("outcome") == "denied"]
    assert [e["resource_id"] for e in denied] == ["ROOT_PASSWORD"]
    # An agent with no environment tag must name one.
    resp = bot._http.request("GET", f"/v1/vaults/{vault_id}/env-vars/resolve")
    assert resp.meta.status == 400


def test_a_member_without_a_policy_cannot_see_the_vaults_variables(
    owner: User, vault_id: str, join_org: Callable[..., User]
) -> None:
    assert_sdk_ok(owner.client.env_vars.create(vault_id, "KEY_ONE", "v"), 201)
    member = join_org(owner, "member")
    assert_sdk_error(member.client.env_vars.list(vault_id), 404)
    assert_sdk_error(member.client.env_vars.resolve(vault_id, "production"), 404)
    assert_sdk_error(member.client.env_vars.create(vault_id, "KEY_TWO", "v"), 404)


def test_variables_survive_a_vault_key_rotation(owner: User, vault_id: str, canary: Callable[[str], str]) -> None:
    value = canary("ROT-")
    assert_sdk_ok(owner.client.env_vars.create(vault_id, "ROTATED", value), 201)
    assert owner.http.post(f"/v1/vaults/{vault_id}/rotate-key").status_code == 200
    assert assert_sdk_ok(owner.client.env_vars.get(vault_id, "ROTATED"), 200)["value"] == value
    assert_sdk_ok(owner.client.env_vars.update(vault_id, "ROTATED", comment="after rotation"), 200)
    assert assert_sdk_ok(owner.client.env_vars.get(vault_id, "ROTATED"), 200)["value"] == value


def test_an_agent_resolves_the_environment_it_is_tagged_with(
    owner: User, vault_id: str, agent_sdk: Callable[..., Any], canary: Callable[[str], str], leak_watch: Any
) -> None:
    dev, prod = canary("DEV-"), canary("PROD-")
    assert_sdk_ok(owner.client.env_vars.create(vault_id, "DB_URL", dev, environments=["development"]), 201)
    assert_sdk_ok(owner.client.env_vars.create(vault_id, "DB_URL", prod, environments=["production"]), 201)

    def agent(**fields: Any) -> Any:
        resp = owner.http.post("/v1/agents", json={"name": f"env-{uuid.uuid4().hex[:8]}", **fields})
        assert resp.status_code == 201, resp.text
        body = leak_watch.track(resp.json())
        assert_sdk_ok(
            owner.client.policies.create(
                vault_id, principal_type="agent", principal_id=body["agent"]["id"], secret_path_pattern="env-vars/*",
                permissions=["read"],
            ),
            201,
        )
        return agent_sdk(body["api_key"])

    def resolve(bot: Any, environment: str | None = None) -> Any:
        query = {"environment": environment} if environment else None
        return bot._http.request("GET", f"/v1/vaults/{vault_id}/env-vars/resolve", query=query)

    tagged = agent(environment="development")
    resolved = assert_sdk_ok(resolve(tagged), 200)
    assert resolved["environment"] == "development" and resolved["vars"] == {"DB_URL": dev}
    assert assert_sdk_ok(resolve(tagged, "production"), 200)["vars"] == {"DB_URL": prod}, "not locked: may name another"

    assert_sdk_error(resolve(agent(environment="development", env_auto_resolve=False)), 400)

    locked = agent(environment="development", environment_locked=True)
    assert assert_sdk_ok(resolve(locked), 200)["vars"] == {"DB_URL": dev}
    assert assert_sdk_ok(resolve(locked, "development"), 200)["vars"] == {"DB_URL": dev}
    assert_sdk_error(resolve(locked, "production"), 403)
    # A locked agent sees its own environment through list and get too, and no other.
    listing = assert_sdk_ok(locked.env_vars.list(vault_id), 200)["env_vars"]
    assert [(v["environments"], v["value"]) for v in listing] == [(["development"], dev)]
    assert assert_sdk_ok(locked.env_vars.get(vault_id, "DB_URL"), 200)["value"] == dev
    assert_sdk_error(locked.env_vars.get(vault_id, "DB_URL", environment="production"), 403)
    assert_sdk_error(locked.env_vars.list(vault_id, environment="production"), 403)
    # Locked to no environment resolves none (fail closed).
    untagged_locked = agent(environment_locked=True)
    assert_sdk_error(resolve(untagged_locked, "development"), 403)
    assert_sdk_error(resolve(untagged_locked), 403)
    denied = [e for e in events(owner, "env_var.resolve") if e["details"].get("outcome") == "denied"]
    assert len(denied) == 3 and all(prod not in json.dumps(e) for e in denied)
    assert [e["details"]["environment"] for e in events(owner, "env_var.read") if e["details"].get("outcome")] == [
        "production"
    ]


def test_a_change_answers_with_the_value_only_to_who_may_read_it(
    owner: User, vault_id: str, join_org: Callable[..., User], canary: Callable[[str], str]
) -> None:
    hidden = canary("HIDDEN-")
    assert_sdk_ok(owner.client.env_vars.create(vault_id, "CI_TOKEN", hidden, sensitive=True), 201)
    writer = join_org(owner, "member")
    assert_sdk_ok(
        owner.client.policies.create(
            vault_id, principal_type="user", principal_id=writer.user_id, secret_path_pattern="env-vars/*",
            permissions=["write"],
        ),
        201,
    )
    assert_sdk_error(writer.client.env_vars.get(vault_id, "CI_TOKEN"), 403)
    changed = assert_sdk_ok(writer.client.env_vars.update(vault_id, "CI_TOKEN", comment="rotated monthly"), 200)
    assert changed["value"] is None and changed["version"] == 2 and changed["comment"] == "rotated monthly"
    sent = canary("SENT-")
    assert assert_sdk_ok(writer.client.env_vars.update(vault_id, "CI_TOKEN", value=sent), 200)["value"] == sent
    assert assert_sdk_ok(owner.client.env_vars.get(vault_id, "CI_TOKEN"), 200)["value"] == sent

    shared_value = canary("SHARED-")
    assert owner.http.post("/v1/org/env-vars", json={"key": "SHARED", "value": shared_value, "sensitive": True}).status_code == 201
    patched = owner.http.patch("/v1/org/env-vars/SHARED", json={"comment": "x"})
    assert patched.status_code == 200 and patched.json()["value"] is None and shared_value not in patched.text


def test_scoped_keys_and_deny_policies_hold_for_environments_and_shared_variables(
    owner: User, vault_id: str, base_url: str, canary: Callable[[str], str], leak_watch: Any
) -> None:
    import httpx

    made = owner.http.post("/v1/auth/api-keys", json={"name": "ci", "scopes": ["ci/**"]})
    assert made.status_code == 201, made.text
    key = leak_watch.track(made.json())["api_key"]
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30.0) as scoped:
        assert_problem(scoped.get("/v1/org/env-vars"), 403)
        assert_problem(scoped.post("/v1/org/env-vars", json={"key": "NODE_OPTIONS", "value": "--require evil"}), 403)
        assert_problem(scoped.post(f"/v1/vaults/{vault_id}/environments", json={"slug": "qa"}), 403)
    assert owner.http.get("/v1/org/env-vars").json()["env_vars"] == []

    # A deny policy holds for the vault's owner too: copy_from does not read around it.
    assert_sdk_ok(owner.client.env_vars.create(vault_id, "ROOT_KEY", canary("ROOT-"), environments=["production"]), 201)
    deny = owner.http.post(f"/v1/vaults/{vault_id}/policies", json={
        "principal_type": "user", "principal_id": owner.user_id, "secret_path_pattern": "env-vars/ROOT_KEY",
        "permissions": ["read"], "effect": "deny"})
    assert deny.status_code == 201, deny.text
    assert_sdk_error(owner.client.env_vars.create_environment(vault_id, "qa", copy_from="production"), 403)
    slugs = [e["slug"] for e in assert_sdk_ok(owner.client.env_vars.list_environments(vault_id), 200)["environments"]]
    assert "qa" not in slugs
