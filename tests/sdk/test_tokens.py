"""Token lifecycle: refresh tokens, refresh rotation and reuse detection, revocation (contract §1.1, §2.1)."""

from __future__ import annotations

import uuid

import httpx
import oneclaw
import pytest

from support import (
    PASSWORD,
    REFRESH_TOKEN_RE,
    assert_problem,
    assert_sdk_error,
    assert_sdk_ok,
    bearer,
    decode_jwt,
    random_like,
)


@pytest.fixture
def session(anon: httpx.Client, user, leak_watch) -> dict:
    """A fresh password login of the session user: the raw 200 body."""
    resp = anon.post("/v1/auth/token", json={"email": user.email, "password": user.password})
    assert resp.status_code == 200, resp.text
    return leak_watch.track(resp.json())


def _refresh(anon: httpx.Client, leak_watch, refresh_token: str) -> httpx.Response:
    resp = anon.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
    if resp.status_code == 200:
        leak_watch.track(resp.json())
    return resp


def _me(anon: httpx.Client, token: str) -> httpx.Response:
    return anon.get("/v1/auth/me", headers=bearer(token))


# --- refresh tokens are handed out ----------------------------------------------------------------


def test_login_returns_refresh_token(session: dict) -> None:
    assert REFRESH_TOKEN_RE.fullmatch(session["refresh_token"]), session["refresh_token"][:6]
    assert len(session["refresh_token"]) >= 3 + 43
    assert session["refresh_token"] != session["access_token"]


def test_logins_get_distinct_refresh_tokens(anon, user, session: dict, leak_watch) -> None:
    again = anon.post("/v1/auth/token", json={"email": user.email, "password": user.password})
    assert again.status_code == 200
    assert leak_watch.track(again.json())["refresh_token"] != session["refresh_token"]


def test_invite_signup_returns_access_and_refresh_token(anon, leak_watch, signup_user) -> None:
    # Only sign-up with an invite hands out a session; open sign-up hands out none (issue 14, F5).
    inviter = signup_user()
    email = f"m-{uuid.uuid4().hex}@example.com"
    invite = leak_watch.track(assert_sdk_ok(inviter.client.org.invite(email, "member"), 200))
    resp = anon.post("/v1/auth/signup",
                     json={"email": email, "password": PASSWORD, "invite_token": invite["invite_token"]})
    assert resp.status_code == 200, resp.text
    body = leak_watch.track(resp.json())
    assert body["email"] == email
    assert body["org_id"] == inviter.org_id
    assert body["role"] == "member"
    assert REFRESH_TOKEN_RE.fullmatch(body["refresh_token"])
    me = _me(anon, body["access_token"])
    assert me.status_code == 200, me.text
    assert uuid.UUID(me.json()["id"]) == uuid.UUID(body["user_id"])
    refreshed = _refresh(anon, leak_watch, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text


# --- refresh with a refresh token ---------------------------------------------------------------


def test_refresh_returns_new_tokens(anon, leak_watch, user, session: dict) -> None:
    resp = _refresh(anon, leak_watch, session["refresh_token"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["access_token"] != session["access_token"]
    assert REFRESH_TOKEN_RE.fullmatch(body["refresh_token"])
    assert body["refresh_token"] != session["refresh_token"]
    _, payload, _, _ = decode_jwt(body["access_token"])
    assert payload["sub"] == f"user:{user.user_id}"
    assert payload["jti"] != decode_jwt(session["access_token"])[1]["jti"]
    me = _me(anon, body["access_token"])
    assert me.status_code == 200 and me.json()["email"] == user.email


def test_refresh_chain_keeps_working(anon, leak_watch, session: dict) -> None:
    token = session["refresh_token"]
    for _ in range(3):
        resp = _refresh(anon, leak_watch, token)
        assert resp.status_code == 200, resp.text
        token = resp.json()["refresh_token"]


def test_refresh_does_not_need_or_use_a_bearer(anon, leak_watch, session: dict, other_user) -> None:
    # A refresh token alone is the credential; a Bearer of someone else does not change whose token comes back.
    resp = anon.post(
        "/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}, headers=bearer(other_user.token)
    )
    assert resp.status_code == 200, resp.text
    leak_watch.track(resp.json())
    assert decode_jwt(resp.json()["access_token"])[1]["sub"] == decode_jwt(session["access_token"])[1]["sub"]


def test_spent_refresh_token_is_refused(anon, leak_watch, session: dict) -> None:
    assert _refresh(anon, leak_watch, session["refresh_token"]).status_code == 200
    resp = _refresh(anon, leak_watch, session["refresh_token"])
    assert_problem(resp, 401)
    assert "access_token" not in resp.json()


def test_reuse_kills_the_newer_refresh_token(anon, leak_watch, session: dict) -> None:
    first = _refresh(anon, leak_watch, session["refresh_token"])
    newer = first.json()["refresh_token"]
    assert_problem(_refresh(anon, leak_watch, session["refresh_token"]), 401)
    assert_problem(_refresh(anon, leak_watch, newer), 401)


def test_reuse_kills_the_whole_family(anon, leak_watch, session: dict) -> None:
    a = session["refresh_token"]
    b = _refresh(anon, leak_watch, a).json()["refresh_token"]
    c = _refresh(anon, leak_watch, b).json()["refresh_token"]
    assert_problem(_refresh(anon, leak_watch, a), 401)
    assert_problem(_refresh(anon, leak_watch, c), 401)


def test_reuse_does_not_touch_other_families(anon, leak_watch, user, session: dict) -> None:
    other = anon.post("/v1/auth/token", json={"email": user.email, "password": user.password})
    other_rt = leak_watch.track(other.json())["refresh_token"]
    assert _refresh(anon, leak_watch, session["refresh_token"]).status_code == 200
    assert_problem(_refresh(anon, leak_watch, session["refresh_token"]), 401)
    assert _refresh(anon, leak_watch, other_rt).status_code == 200


@pytest.mark.parametrize(
    "make_token",
    [
        lambda rt: random_like(rt),
        lambda rt: rt[:-1] + ("A" if rt[-1] != "A" else "B"),
        lambda rt: rt + "x",
        lambda rt: "rt_",
        lambda rt: "garbage",
        lambda rt: "",
    ],
    ids=["unknown", "last_char_changed", "too_long", "prefix_only", "garbage", "empty"],
)
def test_wrong_refresh_token_is_401(anon, leak_watch, session: dict, make_token) -> None:
    assert_problem(_refresh(anon, leak_watch, make_token(session["refresh_token"])), 401)
    # ... and the real one is unharmed.
    assert _refresh(anon, leak_watch, session["refresh_token"]).status_code == 200


def test_access_token_is_not_a_refresh_token(anon, leak_watch, session: dict) -> None:
    assert_problem(_refresh(anon, leak_watch, session["access_token"]), 401)


def test_refresh_token_is_not_an_access_token(anon, session: dict) -> None:
    assert_problem(_me(anon, session["refresh_token"]), 401)


def test_refresh_of_removed_member_is_401(anon, leak_watch, signup_user, join_org) -> None:
    owner = signup_user()
    member = join_org(owner, "member")
    assert owner.client.org.remove_member(member.user_id).meta.status == 204
    assert_problem(_refresh(anon, leak_watch, member.refresh_token), 401)


# --- refresh with the Bearer token (the SDK's way: no body) ------------------------------------------


def test_sdk_refresh_returns_new_token_and_kills_old(base_url: str, anon, leak_watch, session: dict) -> None:
    old = session["access_token"]
    client = oneclaw.create_client(base_url=base_url, token=old)
    try:
        data = leak_watch.track(assert_sdk_ok(client.auth.refresh(), 200))
        new = data["access_token"]
        assert new != old
        assert client._http.get_token() == new
        assert_sdk_ok(client.auth.me(), 200)
        assert_problem(_me(anon, old), 401)
        assert _me(anon, new).status_code == 200
    finally:
        client.close()


def test_bearer_refresh_keeps_other_tokens(anon, leak_watch, user, session: dict) -> None:
    resp = anon.post("/v1/auth/refresh", headers=bearer(session["access_token"]))
    assert resp.status_code == 200, resp.text
    leak_watch.track(resp.json())
    assert _me(anon, user.token).status_code == 200


def test_bearer_refresh_with_empty_json_body(anon, leak_watch, session: dict) -> None:
    resp = anon.post("/v1/auth/refresh", json={}, headers=bearer(session["access_token"]))
    assert resp.status_code == 200, resp.text
    leak_watch.track(resp.json())
    assert_problem(_me(anon, session["access_token"]), 401)


def test_bearer_refresh_twice_with_old_token_is_401(anon, leak_watch, session: dict) -> None:
    first = anon.post("/v1/auth/refresh", headers=bearer(session["access_token"]))
    assert first.status_code == 200
    leak_watch.track(first.json())
    assert_problem(anon.post("/v1/auth/refresh", headers=bearer(session["access_token"])), 401)


def test_refresh_without_body_or_bearer_is_401(anon) -> None:
    assert_problem(anon.post("/v1/auth/refresh"), 401)


def test_refresh_with_invalid_bearer_is_401(anon) -> None:
    assert_problem(anon.post("/v1/auth/refresh", headers=bearer("not-a-token")), 401)


def test_agent_bearer_refresh(user, make_agent, anon, leak_watch) -> None:
    bot = make_agent(user, token_ttl_seconds=600)
    exchange = anon.post("/v1/auth/agent-token", json={"api_key": bot.key})
    old = leak_watch.track(exchange.json())["access_token"]
    resp = anon.post("/v1/auth/refresh", headers=bearer(old))
    assert resp.status_code == 200, resp.text
    body = leak_watch.track(resp.json())
    assert body["expires_in"] == 600
    assert decode_jwt(body["access_token"])[1]["sub"] == f"agent:{bot.id}"
    assert anon.get("/v1/agents/me", headers=bearer(body["access_token"])).status_code == 200
    assert_problem(anon.get("/v1/agents/me", headers=bearer(old)), 401)


# --- DELETE /v1/auth/token ---------------------------------------------------------------------------


def test_revoke_returns_204(anon, session: dict) -> None:
    resp = anon.delete("/v1/auth/token", headers=bearer(session["access_token"]))
    assert resp.status_code == 204
    assert resp.content == b""


def test_revoked_token_is_refused_on_next_request(anon, session: dict) -> None:
    token = session["access_token"]
    assert _me(anon, token).status_code == 200
    assert anon.delete("/v1/auth/token", headers=bearer(token)).status_code == 204
    assert_problem(_me(anon, token), 401)
    assert_problem(anon.get("/v1/vaults", headers=bearer(token)), 401)


def test_sdk_revoke_token(base_url: str, anon, session: dict, vault: str) -> None:
    client = oneclaw.create_client(base_url=base_url, token=session["access_token"])
    try:
        assert_sdk_ok(client.vaults.get(vault), 200)
        resp = client.auth.revoke_token()
        assert resp.meta.status == 204, resp.error
        assert_sdk_error(client.vaults.get(vault), 401)
        assert_sdk_error(client.auth.me(), 401)
    finally:
        client.close()


def test_revoke_keeps_other_tokens_of_the_user(anon, user, session: dict) -> None:
    assert anon.delete("/v1/auth/token", headers=bearer(session["access_token"])).status_code == 204
    assert _me(anon, user.token).status_code == 200


def test_revoke_twice_is_401(anon, session: dict) -> None:
    assert anon.delete("/v1/auth/token", headers=bearer(session["access_token"])).status_code == 204
    assert_problem(anon.delete("/v1/auth/token", headers=bearer(session["access_token"])), 401)


def test_revoke_without_token_is_401(anon) -> None:
    assert_problem(anon.delete("/v1/auth/token"), 401)


def test_revoked_token_cannot_bearer_refresh(anon, session: dict) -> None:
    assert anon.delete("/v1/auth/token", headers=bearer(session["access_token"])).status_code == 204
    assert_problem(anon.post("/v1/auth/refresh", headers=bearer(session["access_token"])), 401)


def test_revoke_survives_restart(server, anon, session: dict) -> None:
    token = session["access_token"]
    assert anon.delete("/v1/auth/token", headers=bearer(token)).status_code == 204
    server.restart()
    assert_problem(httpx.get(f"{server.url}/v1/auth/me", headers=bearer(token)), 401)


def test_revoke_agent_token(user, make_agent, anon, leak_watch) -> None:
    bot = make_agent(user)
    first = leak_watch.track(anon.post("/v1/auth/agent-token", json={"api_key": bot.key}).json())["access_token"]
    second = leak_watch.track(anon.post("/v1/auth/agent-token", json={"api_key": bot.key}).json())["access_token"]
    assert anon.delete("/v1/auth/token", headers=bearer(first)).status_code == 204
    assert_problem(anon.get("/v1/agents/me", headers=bearer(first)), 401)
    assert anon.get("/v1/agents/me", headers=bearer(second)).status_code == 200
