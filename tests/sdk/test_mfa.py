"""TOTP MFA for password logins (contract §1.1, §2.6): enrolment, the login challenge, replay, recovery codes,
disabling, and what MFA leaves alone (API keys, agents, refresh tokens)."""

from __future__ import annotations

import time
from typing import Any, Callable

import httpx
import oneclaw
import pyotp
import pytest

from support import PASSWORD, assert_problem, assert_sdk_error, assert_sdk_ok, bearer


def _code_after(totp: pyotp.TOTP, steps: int = 1) -> str:
    """A code of a later step than any used so far (a step is accepted once; ±1 step is allowed)."""
    return totp.at(time.time() + 30 * steps)


def _login(base_url: str, user: Any) -> tuple[Any, dict[str, Any]]:
    client = oneclaw.create_client(base_url=base_url)
    resp = client.auth.login(user.email, user.password)
    return client, assert_sdk_ok(resp, 200)


def _challenge(anon: httpx.Client, user: Any, leak_watch) -> str:
    resp = anon.post("/v1/auth/token", json={"email": user.email, "password": user.password})
    assert resp.status_code == 200, resp.text
    body = leak_watch.track(resp.json())
    assert body["mfa_required"] is True and body["access_token"] == "" and "refresh_token" not in body, body
    assert body["expires_in"] == 300 and body["token_type"] == "Bearer"
    return body["mfa_token"]


def test_setup_then_verify_setup_enables_mfa(signup_user, leak_watch) -> None:
    user = signup_user()
    assert assert_sdk_ok(user.client.auth.mfa_status(), 200) == {"enabled": False}
    assert assert_sdk_ok(user.client.auth.me(), 200)["totp_enabled"] is False
    first = assert_sdk_ok(user.client.auth.mfa_setup(), 200)
    # Starting again replaces the pending secret; neither is asked for until a code confirms one.
    setup = assert_sdk_ok(user.client.auth.mfa_setup(), 200)
    leak_watch.values.update({first["secret"], setup["secret"]})
    assert setup["secret"] != first["secret"]
    assert assert_sdk_ok(user.client.auth.mfa_status(), 200) == {"enabled": False}
    assert_sdk_error(user.client.auth.mfa_verify_setup(pyotp.TOTP(first["secret"]).now()), 400)
    assert_sdk_error(user.client.auth.mfa_verify_setup("000000"), 400)
    codes = assert_sdk_ok(user.client.auth.mfa_verify_setup(pyotp.TOTP(setup["secret"]).now()), 200)["recovery_codes"]
    leak_watch.values.update(codes)
    assert len(codes) == 8 and len(set(codes)) == 8
    assert assert_sdk_ok(user.client.auth.mfa_status(), 200) == {"enabled": True}
    assert assert_sdk_ok(user.client.auth.me(), 200)["totp_enabled"] is True
    # The session that enabled it goes on; a second setup is refused while MFA is on.
    assert_sdk_error(user.client.auth.mfa_setup(), 409)
    assert_problem(user.http.post("/v1/auth/mfa/verify-setup", json={"code": "123456"}), 400)


def test_login_needs_a_code_then_gives_the_usual_session(base_url, anon, mfa_user, leak_watch) -> None:
    user, totp, _ = mfa_user()
    client, body = _login(base_url, user)
    try:
        assert body["mfa_required"] is True and body["mfa_token"].startswith("mfa_")
        leak_watch.track(body)
        assert client._http.get_token() in (None, ""), "the SDK keeps no token from a challenge"
        session = assert_sdk_ok(client.auth.mfa_verify(body["mfa_token"], _code_after(totp)), 200)
        leak_watch.track(session)
        assert session["token_type"] == "Bearer" and session["expires_in"] == 900
        assert session["refresh_token"].startswith("rt_")
        me = assert_sdk_ok(client.auth.me(), 200)
        assert me["id"] == user.user_id and me["totp_enabled"] is True
        # The refresh token of that session works as any other.
        refreshed = anon.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        leak_watch.track(refreshed.json())
    finally:
        client.close()


def test_a_wrong_code_is_401_and_the_challenge_is_no_bearer(base_url, anon, mfa_user, leak_watch) -> None:
    user, totp, _ = mfa_user()
    token = _challenge(anon, user, leak_watch)
    wrong = f"{(int(totp.now()) + 1) % 1_000_000:06d}"
    assert_problem(anon.post("/v1/auth/mfa/verify", json={"mfa_token": token, "code": wrong}), 401)
    assert_problem(anon.post("/v1/auth/mfa/verify", json={"mfa_token": token, "code": "abcde-fghij"}), 401)
    # The challenge opens nothing else: not as a bearer, not at the token endpoints.
    for path in ("/v1/auth/me", "/v1/vaults", "/v1/auth/mfa/status"):
        assert_problem(anon.get(path, headers=bearer(token)), 401)
    assert_problem(anon.post("/v1/auth/refresh", json={"refresh_token": token}), 401)
    assert_problem(anon.post("/v1/auth/api-key-token", json={"api_key": token}), 401)
    # A forged or altered challenge is refused.
    altered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert_problem(anon.post("/v1/auth/mfa/verify", json={"mfa_token": altered, "code": _code_after(totp)}), 401)
    assert_problem(anon.post("/v1/auth/mfa/verify", json={"mfa_token": "mfa_x", "code": _code_after(totp)}), 401)
    assert_problem(anon.post("/v1/auth/mfa/verify", json={"mfa_token": user.token, "code": _code_after(totp)}), 401)
    assert_problem(anon.post("/v1/auth/mfa/verify", json={"code": _code_after(totp)}), 400)
    # The right code still works on the same challenge.
    ok = anon.post("/v1/auth/mfa/verify", json={"mfa_token": token, "code": _code_after(totp)})
    assert ok.status_code == 200, ok.text
    leak_watch.track(ok.json())


def test_a_code_is_accepted_once_and_a_challenge_opens_one_session(anon, mfa_user, leak_watch) -> None:
    user, totp, codes = mfa_user()
    code = _code_after(totp)
    first = _challenge(anon, user, leak_watch)
    ok = anon.post("/v1/auth/mfa/verify", json={"mfa_token": first, "code": code})
    assert ok.status_code == 200, ok.text
    leak_watch.track(ok.json())
    # The same code again, with a fresh challenge: replay refused.
    second = _challenge(anon, user, leak_watch)
    body = assert_problem(anon.post("/v1/auth/mfa/verify", json={"mfa_token": second, "code": code}), 401)
    assert code not in body["detail"]
    # The used challenge opens no second session, even with a valid recovery code.
    assert_problem(anon.post("/v1/auth/mfa/verify", json={"mfa_token": first, "code": codes[0]}), 401)
    # The code that enabled MFA cannot log in either (its step was used by verify-setup).
    assert_problem(anon.post("/v1/auth/mfa/verify", json={"mfa_token": second, "code": totp.now()}), 401)


def test_a_recovery_code_works_once(anon, mfa_user, leak_watch) -> None:
    user, _, codes = mfa_user()
    token = _challenge(anon, user, leak_watch)
    # Upper case and without the dash are the same code.
    ok = anon.post("/v1/auth/mfa/verify", json={"mfa_token": token, "code": codes[3].upper().replace("-", "")})
    assert ok.status_code == 200, ok.text
    leak_watch.track(ok.json())
    again = _challenge(anon, user, leak_watch)
    assert_problem(anon.post("/v1/auth/mfa/verify", json={"mfa_token": again, "code": codes[3]}), 401)
    ok = anon.post("/v1/auth/mfa/verify", json={"mfa_token": again, "code": codes[4]})
    assert ok.status_code == 200, ok.text
    leak_watch.track(ok.json())


def test_disabling_needs_a_code(base_url, anon, mfa_user, leak_watch) -> None:
    user, totp, codes = mfa_user()
    assert_sdk_error(user.client.auth.mfa_disable(), 400)
    assert_sdk_error(user.client.auth.mfa_disable(password=PASSWORD), 400)
    assert_sdk_error(user.client.auth.mfa_disable(code="000000"), 400)
    assert_problem(user.http.request("DELETE", "/v1/auth/mfa", json={"code": "zzzzz-zzzzz"}), 400)
    assert assert_sdk_ok(user.client.auth.mfa_status(), 200) == {"enabled": True}
    resp = user.client.auth.mfa_disable(code=codes[0])
    assert resp.meta.status == 204, resp.error
    assert assert_sdk_ok(user.client.auth.mfa_status(), 200) == {"enabled": False}
    assert_sdk_error(user.client.auth.mfa_disable(code=_code_after(totp)), 400)
    client, body = _login(base_url, user)
    try:
        leak_watch.track(body)
        assert body["access_token"] and "mfa_required" not in body
    finally:
        client.close()
    # Enrolling again is possible, with a new secret.
    setup = assert_sdk_ok(user.client.auth.mfa_setup(), 200)
    leak_watch.values.add(setup["secret"])
    assert setup["secret"] != totp.secret


def test_a_totp_code_disables_mfa(mfa_user) -> None:
    user, totp, _ = mfa_user()
    resp = user.client.auth.mfa_disable(code=_code_after(totp))
    assert resp.meta.status == 204, resp.error
    assert assert_sdk_ok(user.client.auth.me(), 200)["totp_enabled"] is False


def test_api_keys_and_agents_are_not_asked_for_a_code(base_url, anon, mfa_user, make_agent, agent_sdk, leak_watch) -> None:
    user, _, _ = mfa_user()
    created = user.http.post("/v1/auth/api-keys", json={"name": "ci"})
    assert created.status_code == 201, created.text
    key = leak_watch.track(created.json())["api_key"]
    # A 1ck_ key works directly and through the exchange, with no challenge.
    assert anon.get("/v1/vaults", headers=bearer(key)).status_code == 200
    exchanged = anon.post("/v1/auth/api-key-token", json={"api_key": key})
    assert exchanged.status_code == 200, exchanged.text
    body = leak_watch.track(exchanged.json())
    assert body["access_token"] and "mfa_required" not in body
    # An agent of the user's org logs in with its key as before.
    agent = make_agent(user)
    client = agent_sdk(agent.key, agent_id=agent.id)
    assert client.agents.me().meta.status == 200
    # An agent is not a person: it has no MFA to manage.
    token = client._http.get_token()
    assert_problem(anon.get("/v1/auth/mfa/status", headers=bearer(token)), 403)
    assert_problem(anon.post("/v1/auth/mfa/setup", headers=bearer(token)), 403)


def test_mfa_events_are_audited_without_codes(anon, mfa_user, leak_watch) -> None:
    user, totp, codes = mfa_user()
    token = _challenge(anon, user, leak_watch)
    assert_problem(anon.post("/v1/auth/mfa/verify", json={"mfa_token": token, "code": "999999"}), 401)
    code = _code_after(totp)
    ok = anon.post("/v1/auth/mfa/verify", json={"mfa_token": token, "code": code})
    assert ok.status_code == 200, ok.text
    leak_watch.track(ok.json())
    events = user.http.get("/v1/audit/events", params={"limit": 100})
    assert events.status_code == 200, events.text
    listed = events.json()["events"]
    actions = [e["action"] for e in listed]
    for action in ("mfa.setup", "mfa.enable", "auth.mfa_challenge", "auth.mfa_verify", "auth.failure"):
        assert action in actions, actions
    text = str(listed)
    for secret in [totp.secret, code, *codes]:
        assert secret not in text


def test_wrong_codes_are_throttled(anon, mfa_user, leak_watch) -> None:
    user, totp, _ = mfa_user()
    token = _challenge(anon, user, leak_watch)
    statuses = []
    for n in range(8):
        resp = anon.post("/v1/auth/mfa/verify", json={"mfa_token": token, "code": f"{n:06d}"})
        statuses.append(resp.status_code)
    assert statuses[:5] == [401] * 5, statuses
    assert 429 in statuses, statuses
