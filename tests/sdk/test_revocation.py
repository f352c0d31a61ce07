"""The issue's "done when", end to end through the SDK.

An ``ocv_`` agent registered through the SDK, with one policy granting read on ``prod/**`` in one vault,
reads exactly those paths and nothing else; and every way of taking access away (policy delete, key
rotation, deactivation, agent delete, token revoke, API key delete) takes effect on the very next request
of a client that is already connected.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import httpx
import oneclaw
import pytest
from oneclaw.errors import OneclawError

from support import (
    OCV_KEY_RE, assert_problem, assert_sdk_error, assert_sdk_ok, bearer, now_utc, refused_after_revoking_under_load,
    rfc3339,
)

GRANTED = ["prod", "prod/db/password", "prod/api-keys/stripe"]
NOT_GRANTED = ["production/db", "dev/db/password", "staging/prod/db", "top-level"]


@pytest.fixture
def world(user, make_agent, canary) -> SimpleNamespace:
    """Two vaults full of secrets; an agent (SDK-registered) with read on prod/** in the first one only."""
    c = user.client
    vault = assert_sdk_ok(c.vaults.create("prod-vault"), 201)["id"]
    other = assert_sdk_ok(c.vaults.create("other-vault"), 201)["id"]
    values = {}
    for path in GRANTED + NOT_GRANTED:
        values[path] = canary("DONE-WHEN-")
        assert_sdk_ok(c.secrets.set(vault, path, values[path]), 201)
    other_value = canary("DONE-WHEN-")
    assert_sdk_ok(c.secrets.set(other, "prod/db/password", other_value), 201)

    agent = make_agent(user, "prod-reader", description="reads prod")  # c.agents.create(...)
    assert OCV_KEY_RE.fullmatch(agent.key)
    policy = assert_sdk_ok(
        c.policies.create(
            vault,
            principal_type="agent",
            principal_id=agent.id,
            secret_path_pattern="prod/**",
            permissions=["read"],
        ),
        201,
    )
    return SimpleNamespace(
        user=user, vault=vault, other=other, values=values, other_value=other_value, agent=agent, policy=policy
    )


@pytest.fixture
def connected(world, agent_sdk):
    """The agent's SDK client (key only), connected and reading before the test revokes anything."""
    client = agent_sdk(world.agent.key)
    assert client.resolved_agent_id == world.agent.id
    assert client.secrets.get(world.vault, "prod/db/password").data["value"] == world.values["prod/db/password"]
    return client


# --- the grant: exactly prod/** in one vault -----------------------------------------------------------


@pytest.mark.parametrize("path", GRANTED)
def test_agent_reads_granted_paths(world, connected, path: str) -> None:
    data = assert_sdk_ok(connected.secrets.get(world.vault, path), 200)
    assert data["value"] == world.values[path]
    assert data["path"] == path


@pytest.mark.parametrize("path", NOT_GRANTED)
def test_agent_gets_403_elsewhere_in_the_vault(world, connected, path: str) -> None:
    resp = connected.secrets.get(world.vault, path)
    assert_sdk_error(resp, 403)
    assert world.values[path] not in repr(resp)


def test_agent_cannot_write_delete_or_rotate_granted_paths(world, connected, canary) -> None:
    assert_sdk_error(connected.secrets.set(world.vault, "prod/db/password", canary()), 403)
    assert_sdk_error(connected.secrets.delete(world.vault, "prod/db/password"), 403)
    assert_sdk_error(connected.secrets.rotate_generate(world.vault, "prod/db/password"), 403)
    data = assert_sdk_ok(world.user.client.secrets.get(world.vault, "prod/db/password"), 200)
    assert data["version"] == 1
    assert data["value"] == world.values["prod/db/password"]


def test_agent_gets_404_for_the_other_vault(world, connected) -> None:
    resp = connected.secrets.get(world.other, "prod/db/password")
    assert_sdk_error(resp, 404)
    assert world.other_value not in repr(resp)
    assert_sdk_error(connected.vaults.get(world.other), 404)
    assert_sdk_error(connected.secrets.list(world.other), 404)


def test_agent_lists_only_granted_paths(world, connected) -> None:
    data = assert_sdk_ok(connected.secrets.list(world.vault), 200)
    assert sorted(s["path"] for s in data["secrets"]) == sorted(GRANTED)
    for entry in data["secrets"]:
        assert "value" not in entry


def test_agent_lists_only_the_granted_vault(world, connected) -> None:
    listed = {v["id"] for v in assert_sdk_ok(connected.vaults.list(), 200)["vaults"]}
    assert world.vault in listed
    assert world.other not in listed


def test_agent_sees_the_granted_vault(world, connected) -> None:
    assert assert_sdk_ok(connected.vaults.get(world.vault), 200)["id"] == world.vault


# --- revocation on the very next request ---------------------------------------------------------------


def test_policy_delete_cuts_access(world, connected) -> None:
    assert world.user.client.policies.delete(world.vault, world.policy["id"]).meta.status == 204
    assert_sdk_error(connected.secrets.get(world.vault, "prod/db/password"), 404)
    assert_sdk_error(connected.secrets.list(world.vault), 404)
    assert world.vault not in {v["id"] for v in assert_sdk_ok(connected.vaults.list(), 200)["vaults"]}


def test_policy_downgrade_cuts_access(world, connected) -> None:
    assert_sdk_ok(world.user.client.policies.update(world.vault, world.policy["id"], permissions=["write"]), 200)
    assert_sdk_error(connected.secrets.get(world.vault, "prod/db/password"), 403)


def test_key_rotation_cuts_the_connected_client(world, connected, leak_watch) -> None:
    rotated = leak_watch.track(assert_sdk_ok(world.user.client.agents.rotate_key(world.agent.id), 200))
    # The client still holds a token minted under the old key: refused at once.
    assert_sdk_error(connected.secrets.get(world.vault, "prod/db/password"), 401)
    assert_sdk_error(connected.agents.me(), 401)
    # The new key works.
    fresh = oneclaw.create_client(base_url=connected._http.base_url, api_key=rotated["api_key"])
    try:
        data = assert_sdk_ok(fresh.secrets.get(world.vault, "prod/db/password"), 200)
        leak_watch.tokens.add(fresh._http.get_token())
        assert data["value"] == world.values["prod/db/password"]
    finally:
        fresh.close()


def test_key_rotation_refuses_the_old_key(world, connected, base_url: str) -> None:
    assert_sdk_ok(world.user.client.agents.rotate_key(world.agent.id), 200)
    stale = oneclaw.create_client(base_url=base_url, api_key=world.agent.key)
    try:
        # The SDK exchanges the key before the request and raises when the exchange is refused.
        with pytest.raises(OneclawError) as failure:
            stale.secrets.get(world.vault, "prod/db/password")
        assert failure.value.status == 401
    finally:
        stale.close()


def test_key_rotation_kills_refresh_tokens_from_the_old_key(world, connected, anon, leak_watch) -> None:
    # A token minted under the old key can be traded (bearer refresh) for a refresh token; after the
    # rotation that refresh token must not mint working tokens either.
    old_token = connected._http.get_token()
    traded = anon.post("/v1/auth/refresh", headers=bearer(old_token))
    assert traded.status_code == 200, traded.text
    body = leak_watch.track(traded.json())
    assert_sdk_ok(world.user.client.agents.rotate_key(world.agent.id), 200)
    assert_problem(anon.get("/v1/agents/me", headers=bearer(body["access_token"])), 401)
    resp = anon.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    if resp.status_code == 200:
        revived = leak_watch.track(resp.json())["access_token"]
        me = anon.get(f"/v1/vaults/{world.vault}/secrets/prod/db/password", headers=bearer(revived))
        pytest.fail(f"refresh token from before the rotation minted a new token (secret read: {me.status_code})")
    assert_problem(resp, 401)


def test_deactivation_cuts_access(world, connected, anon) -> None:
    assert_sdk_ok(world.user.client.agents.update(world.agent.id, is_active=False), 200)
    assert_sdk_error(connected.secrets.get(world.vault, "prod/db/password"), 401)
    assert_problem(anon.post("/v1/auth/agent-token", json={"api_key": world.agent.key}), 401)


def test_expiry_set_in_the_past_cuts_access(world, connected) -> None:
    past = rfc3339(now_utc() - dt.timedelta(seconds=5))
    assert world.user.http.patch(f"/v1/agents/{world.agent.id}", json={"expires_at": past}).status_code == 200
    assert_sdk_error(connected.secrets.get(world.vault, "prod/db/password"), 401)


def test_agent_delete_cuts_access(world, connected, anon) -> None:
    assert world.user.client.agents.delete(world.agent.id).meta.status == 204
    assert_sdk_error(connected.secrets.get(world.vault, "prod/db/password"), 401)
    assert_problem(anon.post("/v1/auth/agent-token", json={"api_key": world.agent.key}), 401)


def test_agent_token_revoke_cuts_access(world, connected) -> None:
    assert connected.auth.revoke_token().meta.status == 204
    assert_sdk_error(connected.secrets.get(world.vault, "prod/db/password"), 401)


def test_binding_elsewhere_cuts_access(world, connected) -> None:
    assert_sdk_ok(world.user.client.agents.update(world.agent.id, vault_ids=[world.other]), 200)
    assert_sdk_error(connected.secrets.get(world.vault, "prod/db/password"), 404)


def test_scope_narrowing_cuts_access(world, connected) -> None:
    assert_sdk_ok(world.user.client.agents.update(world.agent.id, scopes=["prod/api-keys/**"]), 200)
    assert_sdk_error(connected.secrets.get(world.vault, "prod/db/password"), 403)
    assert connected.secrets.get(world.vault, "prod/api-keys/stripe").meta.status == 200


# --- people: token revoke, API key delete, member removal ---------------------------------------------


def test_user_token_revoke_cuts_access(world, anon, leak_watch) -> None:
    login = anon.post("/v1/auth/token", json={"email": world.user.email, "password": world.user.password})
    token = leak_watch.track(login.json())["access_token"]
    client = oneclaw.create_client(base_url=str(anon.base_url), token=token)
    try:
        assert_sdk_ok(client.secrets.get(world.vault, "top-level"), 200)
        assert client.auth.revoke_token().meta.status == 204
        assert_sdk_error(client.secrets.get(world.vault, "top-level"), 401)
        # The user's other sessions are untouched.
        assert_sdk_ok(world.user.client.secrets.get(world.vault, "top-level"), 200)
    finally:
        client.close()


def test_api_key_delete_cuts_bearer_use(world, anon, leak_watch) -> None:
    created = leak_watch.track(assert_sdk_ok(world.user.client.api_keys.create("revoke-me"), 201))
    h = bearer(created["api_key"])
    assert anon.get(f"/v1/vaults/{world.vault}/secrets/top-level", headers=h).status_code == 200
    assert world.user.client.api_keys.delete(created["key"]["id"]).meta.status == 204
    assert_problem(anon.get(f"/v1/vaults/{world.vault}/secrets/top-level", headers=h), 401)


def test_api_key_delete_cuts_the_sdk_client_built_from_it(world, base_url: str, leak_watch) -> None:
    # create_client(api_key="1ck_...") exchanges the key for a token once, then sends that token:
    # deleting the key must cut this client off on its next request too.
    created = leak_watch.track(assert_sdk_ok(world.user.client.api_keys.create("sdk-revoke-me"), 201))
    client = oneclaw.create_client(base_url=base_url, api_key=created["api_key"])
    try:
        token = client._http.get_token()
        assert token, "the SDK did not exchange the 1ck_ key"
        leak_watch.tokens.add(token)
        assert_sdk_ok(client.secrets.get(world.vault, "top-level"), 200)
        assert world.user.client.api_keys.delete(created["key"]["id"]).meta.status == 204
        assert_sdk_error(client.secrets.get(world.vault, "top-level"), 401)
    finally:
        client.close()


def test_api_key_delete_cuts_refresh_tokens_derived_from_it(world, anon, leak_watch) -> None:
    created = leak_watch.track(assert_sdk_ok(world.user.client.api_keys.create("refresh-me"), 201))
    token = leak_watch.track(anon.post("/v1/auth/api-key-token", json={"api_key": created["api_key"]}).json())
    traded = anon.post("/v1/auth/refresh", headers=bearer(token["access_token"]))
    assert traded.status_code == 200, traded.text
    body = leak_watch.track(traded.json())
    assert world.user.client.api_keys.delete(created["key"]["id"]).meta.status == 204
    assert_problem(anon.get(f"/v1/vaults/{world.vault}/secrets/top-level", headers=bearer(body["access_token"])), 401)
    assert_problem(anon.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}), 401)


def test_member_removal_cuts_access(signup_user, join_org, canary) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("team"), 201)["id"]
    value = canary()
    assert_sdk_ok(owner.client.secrets.set(vault, "t/x", value), 201)
    admin = join_org(owner, "admin")
    assert admin.client.secrets.get(vault, "t/x").data["value"] == value
    assert owner.client.org.remove_member(admin.user_id).meta.status == 204
    assert_sdk_error(admin.client.secrets.get(vault, "t/x"), 401)


# --- under load: the next request after the revocation's answer, whatever is in flight ------------------------


@pytest.mark.parametrize("how", ["policy_delete", "token_revoke", "deactivate"])
def test_revocation_under_load_holds_for_every_request_sent_after_it(world, base_url: str, how: str) -> None:
    """Four clients read as fast as they can with the agent's token (the server serves what authorization reads
    from memory on SQLite); access is taken away while they do."""
    token = httpx.post(base_url + "/v1/auth/agent-token", json={"api_key": world.agent.key}).json()["access_token"]
    owner = world.user.client

    def revoke() -> int:
        if how == "policy_delete":
            assert owner.policies.delete(world.vault, world.policy["id"]).meta.status == 204
            return 404
        if how == "token_revoke":
            assert httpx.delete(base_url + "/v1/auth/token", headers=bearer(token)).status_code == 204
            return 401
        assert_sdk_ok(owner.agents.update(world.agent.id, is_active=False), 200)
        return 401

    refused_after_revoking_under_load(f"{base_url}/v1/vaults/{world.vault}/secrets/prod/db/password", token, revoke)
