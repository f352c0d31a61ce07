"""Personal API keys (1ck_): create, list, delete, Bearer use and exchange (contract §1.1, §2.1)."""

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
    USER_KEY_RE,
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

KEY_FIELDS = ("id", "name", "key_prefix", "prefix", "scopes", "is_active", "created_at")


@pytest.fixture
def api_key(user, leak_watch) -> dict[str, Any]:
    """A fresh unscoped key of the session user: the 201 body."""
    data = assert_sdk_ok(user.client.api_keys.create(f"key-{uuid.uuid4().hex[:8]}"), 201)
    return leak_watch.track(data)


def _exchange(anon: httpx.Client, leak_watch, key: str) -> httpx.Response:
    resp = anon.post("/v1/auth/api-key-token", json={"api_key": key})
    if resp.status_code == 200:
        leak_watch.track(resp.json())
    return resp


# --- create --------------------------------------------------------------------------------------


def test_create_returns_201_key_and_secret(api_key: dict) -> None:
    assert set(api_key) >= {"key", "api_key"}, api_key
    assert USER_KEY_RE.fullmatch(api_key["api_key"]), api_key["api_key"][:8]


def test_created_key_has_fields(api_key: dict) -> None:
    key = api_key["key"]
    for name in KEY_FIELDS:
        assert name in key, (name, key)
    assert is_uuid(key["id"])
    assert key["name"].startswith("key-")
    assert key["is_active"] is True
    assert key.get("scopes") in ([], None)
    assert key.get("expires_at") is None
    assert abs((parse_ts(key["created_at"]) - now_utc()).total_seconds()) < 300


def test_prefix_is_a_short_prefix_of_the_key(api_key: dict) -> None:
    key, secret = api_key["key"], api_key["api_key"]
    assert key["key_prefix"] == key["prefix"]
    assert key["key_prefix"].startswith("1ck_")
    assert secret.startswith(key["key_prefix"])
    assert len(secret) - len(key["key_prefix"]) >= 32


def test_key_record_does_not_contain_the_secret(api_key: dict) -> None:
    assert api_key["api_key"] not in json.dumps(api_key["key"])
    assert api_key["api_key"][12:] not in json.dumps(api_key["key"])


def test_create_with_scopes_and_expiry(user, leak_watch) -> None:
    expires = rfc3339(now_utc() + dt.timedelta(days=30))
    data = leak_watch.track(
        assert_sdk_ok(user.client.api_keys.create("ci", scopes=["ci/**"], expires_at=expires), 201)
    )
    assert data["key"]["name"] == "ci"
    assert data["key"]["scopes"] == ["ci/**"]
    assert parse_ts(data["key"]["expires_at"]) == parse_ts(expires)


def test_every_key_is_distinct(user, leak_watch) -> None:
    secrets = {leak_watch.track(user.client.api_keys.create("same-name").data)["api_key"] for _ in range(3)}
    assert len(secrets) == 3


INVALID_BODIES: dict[str, Any] = {
    "missing_name": {"scopes": ["a/**"]},
    "empty_name": {"name": ""},
    "name_not_string": {"name": 1},
    "scopes_not_list": {"name": "k", "scopes": "a/**"},
    "scopes_empty_string": {"name": "k", "scopes": [""]},
    "expires_in_past": {"name": "k", "expires_at": "2001-01-01T00:00:00Z"},
    "expires_garbage": {"name": "k", "expires_at": "later"},
}


@pytest.mark.parametrize("case", list(INVALID_BODIES), ids=list(INVALID_BODIES))
def test_invalid_create_is_400_problem(user, case: str) -> None:
    resp = user.http.post("/v1/auth/api-keys", json=INVALID_BODIES[case])
    assert_problem(resp, 400)
    assert "1ck_" not in resp.text


def test_create_without_token_is_401(anon) -> None:
    assert_problem(anon.post("/v1/auth/api-keys", json={"name": "k"}), 401)


# --- list ----------------------------------------------------------------------------------------


def test_list_contains_key_without_secret(user, api_key: dict) -> None:
    resp = user.http.get("/v1/auth/api-keys")
    assert resp.status_code == 200, resp.text
    keys = resp.json()["keys"]
    listed = [k for k in keys if k["id"] == api_key["key"]["id"]]
    assert len(listed) == 1
    assert listed[0]["name"] == api_key["key"]["name"]
    assert listed[0]["key_prefix"] == api_key["key"]["key_prefix"]
    assert listed[0]["is_active"] is True
    assert api_key["api_key"] not in resp.text
    assert api_key["api_key"][12:] not in resp.text
    for entry in keys:
        assert "api_key" not in entry


def test_sdk_list_keys(user, api_key: dict) -> None:
    data = assert_sdk_ok(user.client.api_keys.list(), 200)
    assert api_key["key"]["id"] in {k["id"] for k in data["keys"]}


def test_list_shows_only_own_keys(user, other_user, api_key: dict) -> None:
    theirs = assert_sdk_ok(other_user.client.api_keys.list(), 200)["keys"]
    assert api_key["key"]["id"] not in {k["id"] for k in theirs}


# --- use -----------------------------------------------------------------------------------------


def test_key_works_as_bearer_token(user, anon, api_key: dict) -> None:
    resp = anon.get("/v1/auth/me", headers=bearer(api_key["api_key"]))
    assert resp.status_code == 200, resp.text
    assert resp.json()["email"] == user.email
    assert uuid.UUID(resp.json()["id"]) == uuid.UUID(user.user_id)


def test_key_as_bearer_reads_and_writes_secrets(user, anon, api_key: dict, vault: str, canary) -> None:
    value = canary()
    h = bearer(api_key["api_key"])
    put = anon.put(f"/v1/vaults/{vault}/secrets/via/key", json={"value": value}, headers=h)
    assert put.status_code == 201, put.text
    got = anon.get(f"/v1/vaults/{vault}/secrets/via/key", headers=h)
    assert got.status_code == 200, got.text
    assert got.json()["value"] == value
    assert vault in {v["id"] for v in anon.get("/v1/vaults", headers=h).json()["vaults"]}


def test_exchange_returns_user_token(user, anon, leak_watch, api_key: dict) -> None:
    resp = _exchange(anon, leak_watch, api_key["api_key"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    _, payload, _, _ = decode_jwt(body["access_token"])
    assert payload["sub"] == f"user:{user.user_id}"
    assert abs((payload["exp"] - payload["iat"]) - body["expires_in"]) < 1.0
    me = anon.get("/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.json()["email"] == user.email
    assert api_key["api_key"] not in resp.text


def test_sdk_client_from_user_key(base_url: str, user, api_key: dict, leak_watch, vault: str, canary) -> None:
    client = oneclaw.create_client(base_url=base_url, api_key=api_key["api_key"])
    try:
        token = client._http.get_token()
        assert token is not None, "create_client(api_key='1ck_...') did not exchange the key"
        leak_watch.tokens.add(token)
        assert decode_jwt(token)[1]["sub"] == f"user:{user.user_id}"
        assert assert_sdk_ok(client.auth.me(), 200)["email"] == user.email
        value = canary()
        assert_sdk_ok(client.secrets.set(vault, "sdk/user-key", value), 201)
        assert client.secrets.get(vault, "sdk/user-key").data["value"] == value
    finally:
        client.close()


def test_sdk_api_key_token_helper(base_url: str, user, api_key: dict, leak_watch) -> None:
    client = oneclaw.create_client(base_url=base_url)
    try:
        data = leak_watch.track(assert_sdk_ok(client.auth.api_key_token(api_key["api_key"]), 200))
        assert client._http.get_token() == data["access_token"]
        assert client.auth.me().data["email"] == user.email
    finally:
        client.close()


@pytest.mark.parametrize(
    "make_key",
    [
        lambda key: random_like(key),
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),
        lambda key: key + "x",
        lambda key: "ocv_" + key[4:],
        lambda key: "1ck_",
        lambda key: "garbage",
    ],
    ids=["unknown", "last_char_changed", "too_long", "agent_prefix", "prefix_only", "garbage"],
)
def test_wrong_key_is_401_for_bearer_and_exchange(anon, leak_watch, api_key: dict, make_key) -> None:
    wrong = make_key(api_key["api_key"])
    assert_problem(anon.get("/v1/auth/me", headers=bearer(wrong)), 401)
    assert_problem(_exchange(anon, leak_watch, wrong), 401)


def test_exchange_missing_api_key_is_400(anon) -> None:
    assert_problem(anon.post("/v1/auth/api-key-token", json={}), 400)


def test_agent_cannot_manage_api_keys(user, make_agent, agent_sdk) -> None:
    client = agent_sdk(make_agent(user).key)
    assert_sdk_error(client.api_keys.create("agent-key"), 403)
    assert_sdk_error(client.api_keys.list(), 403)


# --- scopes --------------------------------------------------------------------------------------


@pytest.fixture
def scoped_key(user, leak_watch) -> str:
    data = assert_sdk_ok(user.client.api_keys.create("scoped", scopes=["team/**"]), 201)
    return leak_watch.track(data)["api_key"]


def test_scoped_key_is_capped_even_for_the_owner(user, anon, scoped_key: str, vault: str, canary) -> None:
    inside, outside = canary(), canary()
    assert_sdk_ok(user.client.secrets.set(vault, "team/db", inside), 201)
    assert_sdk_ok(user.client.secrets.set(vault, "other/db", outside), 201)
    h = bearer(scoped_key)
    got = anon.get(f"/v1/vaults/{vault}/secrets/team/db", headers=h)
    assert got.status_code == 200 and got.json()["value"] == inside
    denied = anon.get(f"/v1/vaults/{vault}/secrets/other/db", headers=h)
    assert_problem(denied, 403)
    assert outside not in denied.text
    listed = anon.get(f"/v1/vaults/{vault}/secrets", headers=h).json()["secrets"]
    assert [s["path"] for s in listed] == ["team/db"]


def test_exchanged_token_of_scoped_key_keeps_the_scopes(
    user, anon, leak_watch, scoped_key: str, vault: str, canary
) -> None:
    assert_sdk_ok(user.client.secrets.set(vault, "other/db", canary()), 201)
    token = _exchange(anon, leak_watch, scoped_key).json()["access_token"]
    assert decode_jwt(token)[1]["scopes"] == ["team/**"]
    assert_problem(anon.get(f"/v1/vaults/{vault}/secrets/other/db", headers=bearer(token)), 403)


# --- delete --------------------------------------------------------------------------------------


def test_delete_returns_204(user, api_key: dict) -> None:
    resp = user.http.delete(f"/v1/auth/api-keys/{api_key['key']['id']}")
    assert resp.status_code == 204
    assert resp.content == b""


def test_deleted_key_is_refused_as_bearer_and_exchange(user, anon, leak_watch, api_key: dict) -> None:
    secret = api_key["api_key"]
    assert anon.get("/v1/auth/me", headers=bearer(secret)).status_code == 200
    assert user.client.api_keys.delete(api_key["key"]["id"]).meta.status == 204
    assert_problem(anon.get("/v1/auth/me", headers=bearer(secret)), 401)
    assert_problem(_exchange(anon, leak_watch, secret), 401)


def test_deleted_key_is_inactive_or_unlisted(user, api_key: dict) -> None:
    assert user.client.api_keys.delete(api_key["key"]["id"]).meta.status == 204
    keys = assert_sdk_ok(user.client.api_keys.list(), 200)["keys"]
    listed = [k for k in keys if k["id"] == api_key["key"]["id"]]
    assert listed == [] or listed[0]["is_active"] is False, listed


def test_delete_twice_is_404(user, api_key: dict) -> None:
    assert user.client.api_keys.delete(api_key["key"]["id"]).meta.status == 204
    assert_sdk_error(user.client.api_keys.delete(api_key["key"]["id"]), 404)


def test_delete_unknown_key_is_404_problem(user) -> None:
    assert_problem(user.http.delete(f"/v1/auth/api-keys/{uuid.uuid4()}"), 404)


def test_cannot_delete_another_users_key(user, other_user, anon, api_key: dict) -> None:
    assert_problem(other_user.http.delete(f"/v1/auth/api-keys/{api_key['key']['id']}"), 404)
    assert anon.get("/v1/auth/me", headers=bearer(api_key["api_key"])).status_code == 200


def test_deleting_one_key_keeps_the_others(user, anon, leak_watch, api_key: dict) -> None:
    second = leak_watch.track(assert_sdk_ok(user.client.api_keys.create("second"), 201))
    assert user.client.api_keys.delete(api_key["key"]["id"]).meta.status == 204
    assert anon.get("/v1/auth/me", headers=bearer(second["api_key"])).status_code == 200


# --- expiry --------------------------------------------------------------------------------------


def test_expired_key_is_refused(user, anon, leak_watch) -> None:
    # Whole seconds on the wire: aim 2 s ahead, so that 1-2 s of life remain.
    expires = (now_utc() + dt.timedelta(seconds=2)).replace(microsecond=0)
    data = leak_watch.track(assert_sdk_ok(user.client.api_keys.create("short", expires_at=rfc3339(expires)), 201))
    secret = data["api_key"]
    assert anon.get("/v1/auth/me", headers=bearer(secret)).status_code == 200
    time.sleep(max((expires - now_utc()).total_seconds(), 0) + 0.5)
    assert_problem(anon.get("/v1/auth/me", headers=bearer(secret)), 401)
    assert_problem(_exchange(anon, leak_watch, secret), 401)


# --- scopes cannot be shed -----------------------------------------------------------------------------


def test_refreshing_a_scoped_token_keeps_the_scopes(
    user, anon, leak_watch, scoped_key: str, vault: str, canary
) -> None:
    # Key -> token -> bearer refresh (gives a refresh token) -> refresh: every step stays capped to team/**.
    assert_sdk_ok(user.client.secrets.set(vault, "other/db", canary()), 201)
    token = _exchange(anon, leak_watch, scoped_key).json()["access_token"]
    bearer_refresh = anon.post("/v1/auth/refresh", headers=bearer(token))
    assert bearer_refresh.status_code == 200, bearer_refresh.text
    body = leak_watch.track(bearer_refresh.json())
    assert_problem(anon.get(f"/v1/vaults/{vault}/secrets/other/db", headers=bearer(body["access_token"])), 403)
    again = anon.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert again.status_code == 200, again.text
    refreshed = leak_watch.track(again.json())["access_token"]
    assert decode_jwt(refreshed)[1].get("scopes") == ["team/**"]
    assert_problem(anon.get(f"/v1/vaults/{vault}/secrets/other/db", headers=bearer(refreshed)), 403)


def test_scoped_key_cannot_mint_a_wider_key(user, anon, leak_watch, scoped_key: str, vault: str, canary) -> None:
    outside = canary()
    assert_sdk_ok(user.client.secrets.set(vault, "other/db", outside), 201)
    resp = anon.post("/v1/auth/api-keys", json={"name": "escalate"}, headers=bearer(scoped_key))
    if resp.status_code == 403:
        assert_problem(resp, 403)
        return
    assert resp.status_code == 201, resp.text
    minted = leak_watch.track(resp.json())["api_key"]
    read = anon.get(f"/v1/vaults/{vault}/secrets/other/db", headers=bearer(minted))
    assert read.status_code == 403, f"a key minted by a team/** key read other/db: {read.status_code}"
    assert outside not in read.text


def test_scoped_key_cannot_escape_through_an_agent(
    user, anon, leak_watch, scoped_key: str, vault: str, canary
) -> None:
    outside = canary()
    assert_sdk_ok(user.client.secrets.set(vault, "other/db", outside), 201)
    h = bearer(scoped_key)
    created = anon.post("/v1/agents", json={"name": "proxy"}, headers=h)
    if created.status_code == 403:
        return
    assert created.status_code == 201, created.text
    agent = leak_watch.track(created.json())
    policy = anon.post(
        f"/v1/vaults/{vault}/policies",
        json={
            "secret_path_pattern": "**",
            "principal_type": "agent",
            "principal_id": agent["agent"]["id"],
            "permissions": ["read"],
        },
        headers=h,
    )
    if policy.status_code in (403, 404):
        return
    assert policy.status_code == 201, policy.text
    token = leak_watch.track(anon.post("/v1/auth/agent-token", json={"api_key": agent["api_key"]}).json())
    read = anon.get(f"/v1/vaults/{vault}/secrets/other/db", headers=bearer(token["access_token"]))
    assert read.status_code in (403, 404), f"an agent set up by a team/** key read other/db: {read.status_code}"
    assert outside not in read.text
