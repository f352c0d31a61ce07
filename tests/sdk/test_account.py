"""Account self-service: PATCH /v1/auth/me (display name, password change) and DELETE /v1/auth/me."""

from __future__ import annotations

import oneclaw

from support import PASSWORD, assert_problem, bearer

NEW_PASSWORD = "Another-Horse-7-Staple!"


def test_display_name_is_changed_and_cleared(signup_user) -> None:
    user = signup_user()
    resp = user.http.patch("/v1/auth/me", json={"display_name": "Ada L.", "marketing_emails": True})
    assert resp.status_code == 200, resp.text
    assert resp.json()["display_name"] == "Ada L." and resp.json()["totp_enabled"] is False
    assert user.http.get("/v1/auth/me").json()["display_name"] == "Ada L."
    resp = user.http.patch("/v1/auth/me", json={"display_name": None})
    assert resp.status_code == 200 and "display_name" not in resp.json(), resp.text
    assert_problem(user.http.patch("/v1/auth/me", json={"display_name": "x" * 256}), 400)


def test_a_password_change_needs_the_current_one_and_ends_other_sessions(base_url, anon, signup_user, leak_watch) -> None:
    user = signup_user()
    leak_watch.passwords.add(NEW_PASSWORD)
    other = anon.post("/v1/auth/token", json={"email": user.email, "password": PASSWORD})
    assert other.status_code == 200, other.text
    other_refresh = leak_watch.track(other.json())["refresh_token"]
    assert_problem(user.http.patch("/v1/auth/me", json={"new_password": NEW_PASSWORD}), 400)
    assert_problem(
        user.http.patch("/v1/auth/me", json={"current_password": "Wrong-Horse-9-Battery?", "new_password": NEW_PASSWORD}), 400)
    assert_problem(user.http.patch("/v1/auth/me", json={"current_password": PASSWORD, "new_password": "short"}), 400)
    resp = user.http.patch("/v1/auth/me", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert resp.status_code == 200, resp.text
    # The other session's refresh token is gone; the caller's own session goes on.
    assert_problem(anon.post("/v1/auth/refresh", json={"refresh_token": other_refresh}), 401)
    assert user.http.get("/v1/auth/me").status_code == 200
    assert_problem(anon.post("/v1/auth/token", json={"email": user.email, "password": PASSWORD}), 401)
    ok = anon.post("/v1/auth/token", json={"email": user.email, "password": NEW_PASSWORD})
    assert ok.status_code == 200, ok.text
    leak_watch.track(ok.json())


def test_deleting_the_account_needs_the_password_and_ends_every_credential(anon, user, join_org, leak_watch) -> None:
    member = join_org(user, role="member")
    key = anon.post("/v1/auth/api-keys", headers=bearer(member.token), json={"name": "ci"})
    assert key.status_code == 201, key.text
    api_key = leak_watch.track(key.json())["api_key"]
    confirm = {"confirmation": "DELETE MY ACCOUNT"}
    assert_problem(member.http.request("DELETE", "/v1/auth/me", json=confirm), 400)
    assert_problem(
        member.http.request("DELETE", "/v1/auth/me", json=confirm, headers={"X-Auth-Confirm": "Wrong-Horse-9-Battery?"}), 400)
    assert_problem(member.http.request("DELETE", "/v1/auth/me", json={}, headers={"X-Auth-Confirm": member.password}), 400)
    resp = member.http.request("DELETE", "/v1/auth/me", json=confirm, headers={"X-Auth-Confirm": member.password})
    assert resp.status_code == 204, resp.text
    assert_problem(anon.get("/v1/auth/me", headers=bearer(member.token)), 401)
    assert_problem(anon.get("/v1/vaults", headers=bearer(api_key)), 401)
    if member.refresh_token:
        assert_problem(anon.post("/v1/auth/refresh", json={"refresh_token": member.refresh_token}), 401)
    assert_problem(anon.post("/v1/auth/token", json={"email": member.email, "password": member.password}), 401)


def test_the_last_owner_cannot_delete_their_account(signup_user) -> None:
    owner = signup_user()
    resp = owner.http.request(
        "DELETE", "/v1/auth/me", json={"confirmation": "DELETE MY ACCOUNT"}, headers={"X-Auth-Confirm": owner.password})
    assert_problem(resp, 409)
    assert owner.http.get("/v1/auth/me").status_code == 200
