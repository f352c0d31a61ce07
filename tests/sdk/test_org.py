"""Org members, invitations and roles: /v1/org/* and sign-up with an invite (contract §1.8, §2.2)."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
import oneclaw
import pytest

from support import (
    INVITE_TOKEN_RE,
    PASSWORD,
    assert_problem,
    assert_sdk_error,
    assert_sdk_ok,
    bearer,
    now_utc,
    parse_ts,
    random_like,
)

MEMBER_FIELDS = ("id", "user_id", "email", "role", "auth_method", "created_at", "joined_at")


def _email() -> str:
    return f"inv-{uuid.uuid4().hex}@example.com"


def _invite(inviter, leak_watch, email: str, role: str | None = "member") -> httpx.Response:
    body = {"email": email} if role is None else {"email": email, "role": role}
    resp = inviter.http.post("/v1/org/invite", json=body)
    if resp.status_code == 200:
        leak_watch.track(resp.json())
    return resp


def _signup(anon: httpx.Client, leak_watch, email: str, invite_token: str | None) -> httpx.Response:
    body = {"email": email, "password": PASSWORD}
    if invite_token is not None:
        body["invite_token"] = invite_token
    resp = anon.post("/v1/auth/signup", json=body)
    if resp.status_code == 200:
        leak_watch.track(resp.json())
    return resp


@pytest.fixture(scope="module")
def owner(signup_user):
    """The owner of an org that tests add members to (and remove them from); it always keeps this one owner."""
    return signup_user()


@pytest.fixture
def fresh_owner(signup_user):
    """The single owner of a brand-new org, for tests about ownership itself."""
    return signup_user()


@pytest.fixture(scope="module")
def team(signup_user, join_org) -> dict:
    """A read-mostly org: owner, admin, member (tests here do not change these three)."""
    owner = signup_user()
    return {"owner": owner, "admin": join_org(owner, "admin"), "member": join_org(owner, "member")}


# --- members list -----------------------------------------------------------------------------------


def test_members_lists_everyone_with_fields(team) -> None:
    data = assert_sdk_ok(team["owner"].client.org.members(), 200)
    members = {m["user_id"]: m for m in data["members"]}
    assert set(members) == {team[r].user_id for r in ("owner", "admin", "member")}
    for role in ("owner", "admin", "member"):
        entry = members[team[role].user_id]
        for name in MEMBER_FIELDS:
            assert name in entry, (name, entry)
        assert entry.get("display_name") is None  # none was given; null or absent
        assert entry["id"] == entry["user_id"]
        assert entry["email"] == team[role].email
        assert entry["role"] == role
        assert entry["auth_method"] == "password"
        parse_ts(entry["created_at"])
        parse_ts(entry["joined_at"])


def test_members_list_has_no_password_material(team) -> None:
    resp = team["owner"].http.get("/v1/org/members")
    assert resp.status_code == 200
    assert PASSWORD not in resp.text
    assert "$2" not in resp.text
    for entry in resp.json()["members"]:
        assert "password" not in entry and "password_hash" not in entry


@pytest.mark.parametrize("role", ["admin", "member"])
def test_every_member_may_list_members(team, role: str) -> None:
    data = assert_sdk_ok(team[role].client.org.members(), 200)
    assert len(data["members"]) == 3


def test_members_of_other_orgs_are_not_listed(team, user) -> None:
    listed = {m["user_id"] for m in assert_sdk_ok(user.client.org.members(), 200)["members"]}
    assert user.user_id in listed
    assert not listed & {team[r].user_id for r in ("owner", "admin", "member")}


# --- invite ------------------------------------------------------------------------------------------


def test_invite_returns_token(team, leak_watch) -> None:
    email = _email()
    data = leak_watch.track(assert_sdk_ok(team["owner"].client.org.invite(email, "admin"), 200))
    assert isinstance(data["message"], str) and data["message"]
    assert data["email"] == email
    assert data["role"] == "admin"
    assert INVITE_TOKEN_RE.fullmatch(data["invite_token"])
    assert len(data["invite_token"]) >= 4 + 43
    expires = parse_ts(data["expires_at"])
    assert now_utc() + dt.timedelta(hours=1) < expires < now_utc() + dt.timedelta(days=31)


def test_invite_role_defaults_to_member(team, leak_watch) -> None:
    resp = _invite(team["owner"], leak_watch, _email(), role=None)
    assert resp.status_code == 200, resp.text
    assert resp.json()["role"] == "member"


def test_invites_are_distinct(team, leak_watch) -> None:
    email = _email()
    first = _invite(team["owner"], leak_watch, email).json()["invite_token"]
    second = _invite(team["owner"], leak_watch, email).json()["invite_token"]
    assert first != second


@pytest.mark.parametrize(
    "body",
    [
        {"role": "member"},
        {"email": "not-an-email", "role": "member"},
        {"email": "a@example.com", "role": "god"},
        {"email": "", "role": "member"},
    ],
    ids=["missing_email", "bad_email", "bad_role", "empty_email"],
)
def test_invalid_invite_is_400(team, body: dict) -> None:
    resp = team["owner"].http.post("/v1/org/invite", json=body)
    assert_problem(resp, 400)
    assert "inv_" not in resp.text


def test_member_cannot_invite(team, leak_watch) -> None:
    assert_sdk_error(team["member"].client.org.invite(_email(), "member"), 403)


def test_admin_invites_members_and_admins(team, leak_watch) -> None:
    for role in ("member", "admin"):
        data = leak_watch.track(assert_sdk_ok(team["admin"].client.org.invite(_email(), role), 200))
        assert data["role"] == role


def test_admin_cannot_invite_an_owner(team) -> None:
    assert_sdk_error(team["admin"].client.org.invite(_email(), "owner"), 403)


def test_owner_can_invite_an_owner(team, leak_watch) -> None:
    data = leak_watch.track(assert_sdk_ok(team["owner"].client.org.invite(_email(), "owner"), 200))
    assert data["role"] == "owner"


def test_invite_without_token_is_401(anon) -> None:
    assert_problem(anon.post("/v1/org/invite", json={"email": _email()}), 401)


# --- sign-up with an invite ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["member", "admin", "owner"])
def test_signup_with_invite_joins_org_with_role(owner, anon, leak_watch, role: str) -> None:
    email = _email()
    token = _invite(owner, leak_watch, email, role).json()["invite_token"]
    resp = _signup(anon, leak_watch, email, token)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["org_id"] == owner.org_id
    assert body["role"] == role
    me = anon.get("/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["org_id"] == owner.org_id
    assert me.json()["role"] == role
    listed = {m["user_id"]: m["role"] for m in owner.client.org.members().data["members"]}
    assert listed[body["user_id"]] == role


def test_invited_user_can_log_in(owner, anon, leak_watch) -> None:
    email = _email()
    token = _invite(owner, leak_watch, email).json()["invite_token"]
    assert _signup(anon, leak_watch, email, token).status_code == 200
    client = oneclaw.create_client(base_url=str(anon.base_url))
    try:
        login = assert_sdk_ok(client.auth.login(email, PASSWORD), 200)
        leak_watch.track(login)
        me = assert_sdk_ok(client.auth.me(), 200)
        assert me["org_id"] == owner.org_id
        assert me["role"] == "member"
    finally:
        client.close()


def test_invite_email_is_case_insensitive(owner, anon, leak_watch) -> None:
    email = _email()
    token = _invite(owner, leak_watch, email.upper()).json()["invite_token"]
    resp = _signup(anon, leak_watch, email, token)
    assert resp.status_code == 200, resp.text
    assert resp.json()["org_id"] == owner.org_id


def test_reused_invite_is_400(owner, anon, leak_watch) -> None:
    email = _email()
    token = _invite(owner, leak_watch, email).json()["invite_token"]
    assert _signup(anon, leak_watch, email, token).status_code == 200
    assert_problem(_signup(anon, leak_watch, _email(), token), 400)


def test_invite_for_another_email_is_400_and_creates_no_account(owner, anon, leak_watch) -> None:
    invited, intruder = _email(), _email()
    token = _invite(owner, leak_watch, invited).json()["invite_token"]
    assert_problem(_signup(anon, leak_watch, intruder, token), 400)
    assert_problem(anon.post("/v1/auth/token", json={"email": intruder, "password": PASSWORD}), 401)
    # The invite is still good for the invited email.
    resp = _signup(anon, leak_watch, invited, token)
    assert resp.status_code == 200, resp.text
    assert resp.json()["org_id"] == owner.org_id


@pytest.mark.parametrize(
    "make_token",
    [lambda t: random_like(t), lambda t: "inv_", lambda t: "garbage", lambda t: t[:-1]],
    ids=["unknown", "prefix_only", "garbage", "truncated"],
)
def test_bad_invite_token_is_400_and_creates_no_account(owner, anon, leak_watch, make_token) -> None:
    email = _email()
    token = _invite(owner, leak_watch, email).json()["invite_token"]
    assert_problem(_signup(anon, leak_watch, email, make_token(token)), 400)
    assert_problem(anon.post("/v1/auth/token", json={"email": email, "password": PASSWORD}), 401)


def test_signup_without_invite_creates_own_org(owner, anon, leak_watch) -> None:
    email = _email()
    resp = _signup(anon, leak_watch, email, None)
    assert resp.status_code == 200, resp.text
    # Open sign-up hands out no session and no ids (issue 14, F5): log in to see the new org.
    login = anon.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    me = anon.get("/v1/auth/me", headers=bearer(leak_watch.track(login.json())["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["org_id"] != owner.org_id
    assert me.json()["role"] == "owner"


def test_invited_member_sees_only_granted_vaults(owner, join_org) -> None:
    vault = assert_sdk_ok(owner.client.vaults.create("owners-only"), 201)["id"]
    member = join_org(owner, "member")
    assert vault not in {v["id"] for v in assert_sdk_ok(member.client.vaults.list(), 200)["vaults"]}
    assert_sdk_error(member.client.vaults.get(vault), 404)


def test_invited_admin_sees_owners_vaults(owner, join_org, canary) -> None:
    vault = assert_sdk_ok(owner.client.vaults.create("admins-see"), 201)["id"]
    value = canary()
    assert_sdk_ok(owner.client.secrets.set(vault, "a/b", value), 201)
    admin = join_org(owner, "admin")
    assert admin.client.secrets.get(vault, "a/b").data["value"] == value


# --- role changes -----------------------------------------------------------------------------------


def test_owner_promotes_member_to_admin(owner, join_org) -> None:
    member = join_org(owner, "member")
    data = assert_sdk_ok(owner.client.org.update_member_role(member.user_id, "admin"), 200)
    assert data["user_id"] == member.user_id
    assert data["email"] == member.email
    assert data["role"] == "admin"
    # The member's current token carries the new role at once.
    assert assert_sdk_ok(member.client.auth.me(), 200)["role"] == "admin"


def test_promotion_takes_effect_on_next_request(owner, join_org, leak_watch) -> None:
    member = join_org(owner, "member")
    assert_sdk_error(member.client.org.invite(_email()), 403)
    assert_sdk_ok(owner.client.org.update_member_role(member.user_id, "admin"), 200)
    leak_watch.track(assert_sdk_ok(member.client.org.invite(_email()), 200))


def test_demotion_takes_effect_on_next_request(owner, join_org, canary) -> None:
    vault = assert_sdk_ok(owner.client.vaults.create("demotion"), 201)["id"]
    assert_sdk_ok(owner.client.secrets.set(vault, "a/b", canary()), 201)
    admin = join_org(owner, "admin")
    assert_sdk_ok(admin.client.secrets.get(vault, "a/b"), 200)
    assert_sdk_ok(owner.client.org.update_member_role(admin.user_id, "member"), 200)
    assert_sdk_error(admin.client.secrets.get(vault, "a/b"), 404)


def test_admin_changes_member_and_admin_roles(owner, join_org) -> None:
    admin = join_org(owner, "admin")
    member = join_org(owner, "member")
    assert assert_sdk_ok(admin.client.org.update_member_role(member.user_id, "admin"), 200)["role"] == "admin"
    assert assert_sdk_ok(admin.client.org.update_member_role(member.user_id, "member"), 200)["role"] == "member"


def test_admin_cannot_grant_ownership(owner, join_org) -> None:
    admin = join_org(owner, "admin")
    member = join_org(owner, "member")
    assert_sdk_error(admin.client.org.update_member_role(member.user_id, "owner"), 403)
    assert_sdk_error(admin.client.org.update_member_role(admin.user_id, "owner"), 403)
    roles = {m["user_id"]: m["role"] for m in owner.client.org.members().data["members"]}
    assert roles[member.user_id] == "member"
    assert roles[admin.user_id] == "admin"


def test_admin_cannot_take_ownership_away(owner, join_org) -> None:
    second_owner = join_org(owner, "owner")
    admin = join_org(owner, "admin")
    assert_sdk_error(admin.client.org.update_member_role(second_owner.user_id, "member"), 403)
    assert_sdk_error(admin.client.org.remove_member(second_owner.user_id), 403)
    roles = {m["user_id"]: m["role"] for m in owner.client.org.members().data["members"]}
    assert roles[second_owner.user_id] == "owner"


def test_owner_grants_ownership(fresh_owner, join_org) -> None:
    owner = fresh_owner
    admin = join_org(owner, "admin")
    assert assert_sdk_ok(owner.client.org.update_member_role(admin.user_id, "owner"), 200)["role"] == "owner"
    # With two owners, the first may step down ...
    assert assert_sdk_ok(owner.client.org.update_member_role(owner.user_id, "admin"), 200)["role"] == "admin"
    # ... and the one left may not.
    assert_problem(admin.http.patch(f"/v1/org/members/{admin.user_id}", json={"role": "member"}), 409)


def test_last_owner_cannot_step_down(fresh_owner) -> None:
    owner = fresh_owner
    resp = owner.http.patch(f"/v1/org/members/{owner.user_id}", json={"role": "admin"})
    assert_problem(resp, 409)
    assert owner.client.auth.me().data["role"] == "owner"


def test_last_owner_cannot_leave(fresh_owner, join_org) -> None:
    owner = fresh_owner
    join_org(owner, "admin")
    assert_problem(owner.http.delete(f"/v1/org/members/{owner.user_id}"), 409)
    assert owner.client.auth.me().data["role"] == "owner"


def test_member_cannot_change_roles(owner, join_org) -> None:
    member = join_org(owner, "member")
    other = join_org(owner, "member")
    assert_sdk_error(member.client.org.update_member_role(other.user_id, "admin"), 403)
    assert_sdk_error(member.client.org.update_member_role(member.user_id, "admin"), 403)
    assert member.client.auth.me().data["role"] == "member"


@pytest.mark.parametrize(
    "body", [{"role": "god"}, {"role": ""}, {}, {"role": 1}], ids=["unknown", "empty", "missing", "number"]
)
def test_invalid_role_update_is_400(team, body: dict) -> None:
    assert_problem(team["owner"].http.patch(f"/v1/org/members/{team['member'].user_id}", json=body), 400)


def test_role_update_of_unknown_user_is_404(team) -> None:
    assert_problem(team["owner"].http.patch(f"/v1/org/members/{uuid.uuid4()}", json={"role": "admin"}), 404)


def test_role_update_of_other_orgs_user_is_404(team, other_user) -> None:
    assert_problem(team["owner"].http.patch(f"/v1/org/members/{other_user.user_id}", json={"role": "member"}), 404)
    assert other_user.client.auth.me().data["role"] == "owner"


# --- removal -------------------------------------------------------------------------------------------


def test_remove_member_returns_204_and_unlists(owner, join_org) -> None:
    member = join_org(owner, "member")
    resp = owner.http.delete(f"/v1/org/members/{member.user_id}")
    assert resp.status_code == 204
    assert resp.content == b""
    listed = {m["user_id"] for m in owner.client.org.members().data["members"]}
    assert member.user_id not in listed


def test_removed_members_credentials_stop_working(owner, join_org, anon, leak_watch) -> None:
    member = join_org(owner, "member")
    api_key = leak_watch.track(assert_sdk_ok(member.client.api_keys.create("mine"), 201))["api_key"]
    assert anon.get("/v1/auth/me", headers=bearer(api_key)).status_code == 200
    assert owner.client.org.remove_member(member.user_id).meta.status == 204
    assert_problem(member.http.get("/v1/auth/me"), 401)
    assert_problem(member.http.get("/v1/vaults"), 401)
    assert_problem(anon.get("/v1/auth/me", headers=bearer(api_key)), 401)
    assert_problem(anon.post("/v1/auth/api-key-token", json={"api_key": api_key}), 401)
    assert_problem(anon.post("/v1/auth/refresh", json={"refresh_token": member.refresh_token}), 401)
    assert_problem(anon.post("/v1/auth/token", json={"email": member.email, "password": PASSWORD}), 401)


def test_remove_twice_is_404(owner, join_org) -> None:
    member = join_org(owner, "member")
    assert owner.client.org.remove_member(member.user_id).meta.status == 204
    assert_sdk_error(owner.client.org.remove_member(member.user_id), 404)


def test_admin_removes_a_member(owner, join_org) -> None:
    admin = join_org(owner, "admin")
    member = join_org(owner, "member")
    assert admin.client.org.remove_member(member.user_id).meta.status == 204
    assert_problem(member.http.get("/v1/auth/me"), 401)


def test_member_cannot_remove(owner, join_org) -> None:
    member = join_org(owner, "member")
    other = join_org(owner, "member")
    assert_sdk_error(member.client.org.remove_member(other.user_id), 403)
    assert_sdk_error(member.client.org.remove_member(owner.user_id), 403)
    assert other.client.auth.me().meta.status == 200


def test_owner_removes_another_owner(owner, join_org) -> None:
    second = join_org(owner, "owner")
    assert owner.client.org.remove_member(second.user_id).meta.status == 204
    assert_problem(second.http.get("/v1/auth/me"), 401)


def test_remove_other_orgs_user_is_404(team, other_user) -> None:
    assert_problem(team["owner"].http.delete(f"/v1/org/members/{other_user.user_id}"), 404)
    assert other_user.client.auth.me().meta.status == 200


def test_remove_unknown_user_is_404(team) -> None:
    assert_problem(team["owner"].http.delete(f"/v1/org/members/{uuid.uuid4()}"), 404)


# --- agents may not use the org routes ----------------------------------------------------------------


ORG_OPERATIONS = {
    "members": lambda h, u: h.get("/v1/org/members"),
    "invite": lambda h, u: h.post("/v1/org/invite", json={"email": _email(), "role": "member"}),
    "update_role": lambda h, u: h.patch(f"/v1/org/members/{u}", json={"role": "admin"}),
    "remove": lambda h, u: h.delete(f"/v1/org/members/{u}"),
}


@pytest.mark.parametrize("op", list(ORG_OPERATIONS), ids=list(ORG_OPERATIONS))
def test_agents_get_403_on_org_routes(team, make_agent, anon, leak_watch, op: str) -> None:
    bot = make_agent(team["owner"])
    token = leak_watch.track(anon.post("/v1/auth/agent-token", json={"api_key": bot.key}).json())["access_token"]
    with httpx.Client(base_url=str(anon.base_url), headers=bearer(token), timeout=30.0) as h:
        resp = ORG_OPERATIONS[op](h, team["member"].user_id)
    body = assert_problem(resp, 403)
    assert "inv_" not in resp.text and body["status"] == 403
    roles = {m["user_id"]: m["role"] for m in team["owner"].client.org.members().data["members"]}
    assert roles[team["member"].user_id] == "member"


def test_sdk_agent_cannot_list_members(team, make_agent, agent_sdk) -> None:
    client = agent_sdk(make_agent(team["owner"]).key)
    assert_sdk_error(client.org.members(), 403)
    assert_sdk_error(client.org.invite(_email()), 403)


@pytest.mark.parametrize("op", list(ORG_OPERATIONS), ids=list(ORG_OPERATIONS))
def test_org_routes_without_token_are_401(anon, team, op: str) -> None:
    assert_problem(ORG_OPERATIONS[op](anon, team["member"].user_id), 401)
