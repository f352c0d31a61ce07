"""Regression tests for the outside security review (issue 14)

One or more tests per finding F1..F12 of the review, each checking the behaviour the fix gives (the contract is
written down finding by finding in the issue and the fix's notes). Every test builds what it needs (users, orgs,
vaults, agents) afresh, so that the counts it checks are exact and no order between tests matters. Requests that
count against a per-address limit (failed sign-ups, failed logins) go out from loopback addresses of this module's
own (127.14.x.y), so the rest of the suite, which talks from 127.0.0.1, is never throttled by them. F10 and F11
run a server of their own (the system audit chain's rows are counted there, and its log is read once it stopped).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator
from urllib.parse import quote

import httpx
import pytest

from conftest import KeyholdServer, _free_port
from support import (
    PASSWORD,
    assert_problem,
    assert_sdk_ok,
    b64url_decode,
    bearer,
    now_utc,
    random_like,
    raw_request,
    rfc3339,
)

#: The org id of the system audit chain (failed authentications that name no org).
SYSTEM_ORG = "00000000-0000-0000-0000-000000000000"
OTHER_PASSWORD = "Other-Horse-7-Battery?"
#: How long to wait for the server to flush aggregated failures (it should take one interval, i.e. about 1 s).
FLUSH_TIMEOUT_S = 60.0


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

_SOURCES = itertools.count(1)


def _fresh_source() -> str:
    """A loopback address no other test uses (the server throttles failures per client address)."""
    n = next(_SOURCES)
    return f"127.14.{n // 250}.{n % 250 + 1}"


def _client_from(base_url: str, source: str, token: str | None = None) -> httpx.Client:
    headers = bearer(token) if token else {}
    return httpx.Client(base_url=base_url, timeout=30.0, headers=headers,
                        transport=httpx.HTTPTransport(local_address=source))


def _in(**delta: float) -> str:
    return rfc3339(now_utc() + dt.timedelta(**delta))


def _link(http: httpx.Client, secret_id: str, **extra: Any) -> dict[str, Any]:
    """A link share (one hour) created by whoever ``http`` authenticates; the 201 body."""
    resp = http.post(f"/v1/secrets/{secret_id}/share",
                     json={"recipient_type": "anyone_with_link", "expires_at": _in(hours=1), **extra})
    assert resp.status_code == 201, resp.text
    return resp.json()


def _grant(owner, vault: str, principal_type: str, principal_id: str, pattern: str,
           permissions: tuple[str, ...] = ("read",)) -> dict[str, Any]:
    resp = owner.http.post(f"/v1/vaults/{vault}/policies", json={
        "secret_path_pattern": pattern, "principal_type": principal_type, "principal_id": principal_id,
        "permissions": list(permissions)})
    assert resp.status_code == 201, resp.text
    return resp.json()


def _agent_token(base_url: str, key: str, leak_watch) -> str:
    resp = httpx.post(f"{base_url}/v1/auth/agent-token", json={"api_key": key}, timeout=30)
    assert resp.status_code == 200, resp.text
    return leak_watch.track(resp.json())["access_token"]


def _key_token(base_url: str, key: str, leak_watch) -> str:
    resp = httpx.post(f"{base_url}/v1/auth/api-key-token", json={"api_key": key}, timeout=30)
    assert resp.status_code == 200, resp.text
    return leak_watch.track(resp.json())["access_token"]


def _as(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=30.0, headers=bearer(token))


def _events(owner, action: str) -> list[dict[str, Any]]:
    """Every event of ``action`` in the owner's org (newest first)."""
    resp = owner.http.get("/v1/audit/events", params={"action": action, "limit": 1000})
    assert resp.status_code == 200, resp.text
    events = resp.json()["events"]
    assert len(events) < 1000
    return events


def _only(events: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    """The one event whose fields equal ``match`` (``details__x`` matches ``details["x"]``)."""
    def fits(event: dict[str, Any]) -> bool:
        for key, want in match.items():
            got = event["details"].get(key[9:]) if key.startswith("details__") else event.get(key)
            if got != want:
                return False
        return True

    hits = [e for e in events if fits(e)]
    summary = [(e["action"], e.get("actor_id"), e.get("resource_id"), e["details"]) for e in events]
    assert len(hits) == 1, f"expected one event with {match}, found {len(hits)} in {summary}"
    return hits[0]


def _signup(base_url: str, email: str, password: str = PASSWORD, *, source: str | None = None,
            **extra: Any) -> httpx.Response:
    with _client_from(base_url, source or _fresh_source()) as client:
        return client.post("/v1/auth/signup", json={"email": email, "password": password, **extra})


def _login(base_url: str, email: str, password: str, *, source: str | None = None) -> httpx.Response:
    with _client_from(base_url, source or _fresh_source()) as client:
        return client.post("/v1/auth/token", json={"email": email, "password": password})


def _retry_after(resp: httpx.Response) -> int:
    text = resp.headers.get("retry-after")
    assert text is not None and text.isdigit() and int(text) >= 1, f"429 needs integer Retry-After: {resp.headers!r}"
    return int(text)


# ===========================================================================
# F1: the list cursor reveals nothing, and a page fills up with readable items
# ===========================================================================


def _cursor_reveals_nothing(cursor: str, names: list[str]) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", cursor), f"next_cursor is not base64url: {cursor!r}"
    decoded = b64url_decode(cursor.rstrip("="))
    for name in names:
        assert name not in cursor, (name, cursor)
        assert name.encode() not in decoded, f"next_cursor decodes to a path: {name!r} in {decoded!r}"


def test_list_cursor_of_a_restricted_caller_reveals_no_hidden_path(signup_user, make_agent, canary, base_url,
                                                                   leak_watch) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f1-cursor"), 201)["id"]
    tag = uuid.uuid4().hex[:12]
    readable = ["a/public", "c/public", "f/public"]
    hidden = [f"b/hidden-{tag}", f"d/hidden-{tag}", f"e/hidden-{tag}", f"g/hidden-{tag}"]
    for path in sorted(readable + hidden):
        assert_sdk_ok(owner.client.secrets.set(vault, path, canary("F1-")), 201)
    agent = make_agent(owner)
    _grant(owner, vault, "agent", agent.id, "*/public")
    token = _agent_token(base_url, agent.key, leak_watch)

    pages: list[list[str]] = []
    cursors: list[str | None] = []
    cursor = None
    for _ in range(len(readable + hidden) + 2):
        target = f"/v1/vaults/{vault}/secrets?limit=1" + (f"&cursor={quote(cursor, safe='')}" if cursor else "")
        resp = raw_request(base_url, "GET", target, token=token)
        assert resp.status_code == 200, resp.text
        assert tag not in resp.text, f"a hidden name shows in the answer: {resp.text[:300]}"
        body = resp.json()
        pages.append([s["path"] for s in body["secrets"]])
        # No more pages: ``next_cursor`` null, or left out (as the server has always done).
        cursor = body.get("next_cursor")
        cursors.append(cursor)
        if cursor is None:
            break
        _cursor_reveals_nothing(cursor, readable + hidden + [tag, "hidden", "public"])
    assert cursors[-1] is None, f"the walk did not end: {pages}"
    assert [p for page in pages for p in page] == readable, pages
    # Every page that has a successor is full; only the last may come up short.
    assert all(len(page) == 1 for page in pages[:-1]), pages
    assert len(pages[-1]) <= 1, pages


def test_list_cursor_is_bound_to_its_vault_and_caller(signup_user, make_agent, canary, base_url,
                                                      leak_watch) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f1-bound"), 201)["id"]
    other_vault = assert_sdk_ok(owner.client.vaults.create("f1-other"), 201)["id"]
    for target in (vault, other_vault):
        for path in ("k/1", "k/2", "k/3"):
            assert_sdk_ok(owner.client.secrets.set(target, path, canary("F1-")), 201)
    agent = make_agent(owner)
    _grant(owner, vault, "agent", agent.id, "**")
    agent_token = _agent_token(base_url, agent.key, leak_watch)

    first = owner.http.get(f"/v1/vaults/{vault}/secrets", params={"limit": 1})
    assert first.status_code == 200, first.text
    assert [s["path"] for s in first.json()["secrets"]] == ["k/1"]
    cursor = first.json()["next_cursor"]
    assert isinstance(cursor, str) and cursor
    # The control: the owner goes on in the same vault.
    second = owner.http.get(f"/v1/vaults/{vault}/secrets", params={"limit": 1, "cursor": cursor})
    assert second.status_code == 200, second.text
    assert [s["path"] for s in second.json()["secrets"]] == ["k/2"]

    # Another vault of the same caller.
    assert_problem(owner.http.get(f"/v1/vaults/{other_vault}/secrets", params={"limit": 1, "cursor": cursor}), 400)
    # Another caller (who may read the whole vault) in the same vault, both ways round.
    with _as(base_url, agent_token) as bot:
        assert_problem(bot.get(f"/v1/vaults/{vault}/secrets", params={"limit": 1, "cursor": cursor}), 400)
        theirs = bot.get(f"/v1/vaults/{vault}/secrets", params={"limit": 1})
        assert theirs.status_code == 200, theirs.text
        assert [s["path"] for s in theirs.json()["secrets"]] == ["k/1"]
        their_cursor = theirs.json()["next_cursor"]
    assert_problem(owner.http.get(f"/v1/vaults/{vault}/secrets", params={"limit": 1, "cursor": their_cursor}), 400)
    # Altered: one character in the middle changed.
    middle = len(cursor) // 2
    altered = cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1:]
    assert_problem(owner.http.get(f"/v1/vaults/{vault}/secrets", params={"limit": 1, "cursor": altered}), 400)


# ===========================================================================
# F2: an external_email share is claimed with a one-time claim token
# ===========================================================================


@pytest.fixture
def email_share(signup_user, canary, leak_watch) -> SimpleNamespace:
    """A secret of a fresh owner shared with an email nobody has signed up with yet."""
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f2"), 201)["id"]
    value = canary("F2-")
    secret = assert_sdk_ok(owner.client.secrets.set(vault, "ext/x", value), 201)
    email = f"ext-{uuid.uuid4().hex}@example.com"
    resp = owner.http.post(f"/v1/secrets/{secret['id']}/share", json={
        "recipient_type": "external_email", "email": email, "expires_at": _in(hours=1)})
    assert resp.status_code == 201, resp.text
    return SimpleNamespace(owner=owner, value=value, email=email, share=leak_watch.track(resp.json()))


def _recipient(base_url: str, email: str, leak_watch) -> SimpleNamespace:
    """Sign ``email`` up (open sign-up) and log in; returns its client and user id."""
    assert _signup(base_url, email).status_code == 200
    login = _login(base_url, email, PASSWORD)
    assert login.status_code == 200, login.text
    token = leak_watch.track(login.json())["access_token"]
    http = _as(base_url, token)
    me = http.get("/v1/auth/me")
    assert me.status_code == 200, me.text
    return SimpleNamespace(http=http, user_id=me.json()["id"], email=email)


def test_external_email_share_hands_out_its_claim_token_only_once(email_share) -> None:
    claim_token = email_share.share["claim_token"]
    assert isinstance(claim_token, str) and claim_token.startswith("shc_") and len(claim_token) > 20, claim_token
    outbound = email_share.owner.http.get("/v1/shares/outbound")
    assert outbound.status_code == 200, outbound.text
    listed = [s for s in outbound.json()["shares"] if s["id"] == email_share.share["id"]]
    assert len(listed) == 1
    assert "claim_token" not in listed[0]
    assert claim_token not in outbound.text
    assert claim_token[4:] not in outbound.text


def test_external_email_share_is_accepted_only_with_its_claim_token(email_share, signup_user, base_url,
                                                                   leak_watch) -> None:
    share_id, claim_token = email_share.share["id"], email_share.share["claim_token"]
    accept, decline = f"/v1/shares/{share_id}/accept", f"/v1/shares/{share_id}/decline"
    # Someone else holding the claim token: the email must match too.
    stranger = signup_user()
    assert_problem(stranger.http.post(accept, json={"claim_token": claim_token}), 404)

    recipient = _recipient(base_url, email_share.email, leak_watch)
    try:
        inbound = recipient.http.get("/v1/shares/inbound")
        assert inbound.status_code == 200 and claim_token not in inbound.text, inbound.text
        opened = recipient.http.get(f"/v1/share/{share_id}")
        assert_problem(opened, 403)
        assert email_share.value not in opened.text
        # The address alone is not enough.
        assert_problem(recipient.http.post(accept), 403)
        assert_problem(recipient.http.post(accept, json={"claim_token": random_like(claim_token)}), 403)
        assert_problem(recipient.http.post(decline), 403)
        assert_problem(recipient.http.post(decline, json={"claim_token": random_like(claim_token)}), 403)
        assert_problem(recipient.http.get(f"/v1/share/{share_id}"), 403)
        # The claim binds the share to this user.
        claimed = recipient.http.post(accept, json={"claim_token": claim_token})
        assert claimed.status_code == 204, claimed.text
        listed = {s["id"]: s for s in email_share.owner.http.get("/v1/shares/outbound").json()["shares"]}
        assert listed[share_id]["recipient_id"] == recipient.user_id
        assert listed[share_id]["status"] == "accepted"
        value = recipient.http.get(f"/v1/share/{share_id}")
        assert value.status_code == 200, value.text
        assert value.json()["value"] == email_share.value
        # The token is spent.
        assert_problem(recipient.http.post(accept, json={"claim_token": claim_token}), 409)
    finally:
        recipient.http.close()


def test_external_email_share_is_declined_only_with_its_claim_token(email_share, base_url, leak_watch) -> None:
    share_id, claim_token = email_share.share["id"], email_share.share["claim_token"]
    recipient = _recipient(base_url, email_share.email, leak_watch)
    try:
        assert_problem(recipient.http.post(f"/v1/shares/{share_id}/decline"), 403)
        listed = {s["id"]: s for s in email_share.owner.http.get("/v1/shares/outbound").json()["shares"]}
        assert listed[share_id]["status"] == "pending"
        declined = recipient.http.post(f"/v1/shares/{share_id}/decline", json={"claim_token": claim_token})
        assert declined.status_code == 204, declined.text
        listed = {s["id"]: s for s in email_share.owner.http.get("/v1/shares/outbound").json()["shares"]}
        assert listed[share_id]["status"] == "declined"
    finally:
        recipient.http.close()


# ===========================================================================
# F3: share links stop working with the sharer's access; admins see and revoke them; versions are pinned
# ===========================================================================


@pytest.fixture
def org(signup_user, join_org, make_agent, canary, base_url, leak_watch) -> SimpleNamespace:
    """A fresh org: owner, admin, a plain member and an agent, the last two with read on ``app/**`` only."""
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f3"), 201)["id"]
    value = canary("F3-")
    secret = assert_sdk_ok(owner.client.secrets.set(vault, "app/db", value), 201)
    admin = join_org(owner, "admin")
    member = join_org(owner, "member")
    member_policy = _grant(owner, vault, "user", member.user_id, "app/**")
    agent = make_agent(owner)
    agent_policy = _grant(owner, vault, "agent", agent.id, "app/**")
    bot = _as(base_url, _agent_token(base_url, agent.key, leak_watch))
    try:
        yield SimpleNamespace(owner=owner, admin=admin, member=member, agent=agent, bot=bot, vault=vault,
                              secret=secret, value=value, member_policy=member_policy, agent_policy=agent_policy)
    finally:
        bot.close()


def _opens(anon: httpx.Client, share_id: str, value: str) -> None:
    resp = anon.get(f"/v1/share/{share_id}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["value"] == value


def _gone(anon: httpx.Client, share_id: str, value: str) -> None:
    resp = anon.get(f"/v1/share/{share_id}")
    assert_problem(resp, 404)
    assert value not in resp.text


def test_share_of_a_deactivated_agent_stops_working(org, anon) -> None:
    link = _link(org.bot, org.secret["id"])
    _opens(anon, link["id"], org.value)
    patched = org.owner.http.patch(f"/v1/agents/{org.agent.id}", json={"is_active": False})
    assert patched.status_code == 200, patched.text
    _gone(anon, link["id"], org.value)


def test_share_of_a_member_who_can_no_longer_read_stops_working(org, anon) -> None:
    # An admin reads every vault of the org by its role; demoted to member (no policy), it reads nothing there.
    by_admin = _link(org.admin.http, org.secret["id"])
    _opens(anon, by_admin["id"], org.value)
    demoted = org.owner.http.patch(f"/v1/org/members/{org.admin.user_id}", json={"role": "member"})
    assert demoted.status_code == 200, demoted.text
    _gone(anon, by_admin["id"], org.value)
    # Removed from the org: a member who read through a policy.
    by_member = _link(org.member.http, org.secret["id"])
    _opens(anon, by_member["id"], org.value)
    assert org.owner.http.delete(f"/v1/org/members/{org.member.user_id}").status_code == 204
    _gone(anon, by_member["id"], org.value)


@pytest.mark.parametrize("sharer", ["member", "agent"])
def test_share_stops_working_when_the_policy_that_allowed_it_is_deleted(org, anon, sharer: str) -> None:
    http, policy = (org.member.http, org.member_policy) if sharer == "member" else (org.bot, org.agent_policy)
    link = _link(http, org.secret["id"])
    _opens(anon, link["id"], org.value)
    assert org.owner.http.delete(f"/v1/vaults/{org.vault}/policies/{policy['id']}").status_code == 204
    _gone(anon, link["id"], org.value)


def test_owners_and_admins_list_every_share_of_the_org(org, signup_user, canary) -> None:
    mine = _link(org.owner.http, org.secret["id"])
    members = _link(org.member.http, org.secret["id"])
    agents = _link(org.bot, org.secret["id"])
    outsider = signup_user()
    foreign_vault = assert_sdk_ok(outsider.client.vaults.create("f3-foreign"), 201)["id"]
    foreign_secret = assert_sdk_ok(outsider.client.secrets.set(foreign_vault, "x", canary("F3-")), 201)
    foreign = _link(outsider.http, foreign_secret["id"])
    for who in (org.owner, org.admin):
        resp = who.http.get("/v1/org/shares")
        assert resp.status_code == 200, resp.text
        listed = {s["reference"]: s for s in resp.json()["shares"]}
        assert {mine["reference"], members["reference"], agents["reference"]} <= set(listed), (who.role, listed)
        assert foreign["reference"] not in listed
        assert org.value not in resp.text
        # Someone else's link is listed by its reference only: its id would open it.
        for other in (members, agents) + ((mine,) if who is org.admin else ()):
            assert listed[other["reference"]]["id"] is None and listed[other["reference"]]["share_url"] is None
            assert other["id"] not in resp.text
        if who is org.owner:
            assert listed[mine["reference"]]["id"] == mine["id"]
    assert_problem(org.member.http.get("/v1/org/shares"), 403)


def test_an_admin_revokes_someone_elses_link_by_its_reference(org, anon) -> None:
    link = _link(org.member.http, org.secret["id"])
    _opens(anon, link["id"], org.value)
    assert_problem(anon.get(f"/v1/share/{link['reference']}"), 404)  # a reference opens nothing
    resp = org.admin.http.delete(f"/v1/share/{link['reference']}")
    assert resp.status_code == 204, resp.text
    _gone(anon, link["id"], org.value)


def test_owners_and_admins_revoke_any_share_of_the_org(org, anon) -> None:
    members = _link(org.member.http, org.secret["id"])["id"]
    agents = _link(org.bot, org.secret["id"])["id"]
    owners = _link(org.owner.http, org.secret["id"])["id"]
    # A plain member may not revoke someone else's share.
    assert_problem(org.member.http.delete(f"/v1/share/{owners}"), 404)
    _opens(anon, owners, org.value)
    resp = org.owner.http.delete(f"/v1/share/{members}")
    assert resp.status_code == 204, resp.text
    _gone(anon, members, org.value)
    resp = org.admin.http.delete(f"/v1/share/{agents}")
    assert resp.status_code == 204, resp.text
    _gone(anon, agents, org.value)
    _opens(anon, owners, org.value)


def test_share_serves_the_version_it_was_created_for(signup_user, canary, anon) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f3-pin"), 201)["id"]
    first = canary("F3-V1-")
    secret = assert_sdk_ok(owner.client.secrets.set(vault, "pin/x", first), 201)
    link = _link(owner.http, secret["id"])
    assert link["version"] == 1
    assert {s["id"]: s for s in owner.http.get("/v1/shares/outbound").json()["shares"]}[link["id"]]["version"] == 1
    assert assert_sdk_ok(owner.client.secrets.set(vault, "pin/x", canary("F3-V2-")), 201)["version"] == 2
    assert_sdk_ok(owner.client.secrets.rotate_generate(vault, "pin/x"), 201)
    resp = anon.get(f"/v1/share/{link['id']}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["value"] == first
    assert resp.json()["version"] == 1


def test_share_pinned_to_an_earlier_version_serves_that_version(signup_user, canary, anon) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f3-pin-n"), 201)["id"]
    values = [canary(f"F3-V{n}-") for n in (1, 2, 3)]
    secret = None
    for value in values:
        secret = assert_sdk_ok(owner.client.secrets.set(vault, "pin/n", value), 201)
    link = _link(owner.http, secret["id"], version=2)
    assert link["version"] == 2
    resp = anon.get(f"/v1/share/{link['id']}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["value"] == values[1]
    assert resp.json()["version"] == 2


def test_share_for_latest_follows_new_versions(signup_user, canary, anon) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f3-latest"), 201)["id"]
    secret = assert_sdk_ok(owner.client.secrets.set(vault, "latest/x", canary("F3-V1-")), 201)
    link = _link(owner.http, secret["id"], version="latest")
    assert link["version"] is None
    assert link["follows_latest"] is True
    newer = canary("F3-V2-")
    assert_sdk_ok(owner.client.secrets.set(vault, "latest/x", newer), 201)
    resp = anon.get(f"/v1/share/{link['id']}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["value"] == newer
    assert resp.json()["version"] == 2


# ===========================================================================
# F4: deleting a secret revokes its links; a secret written at the path again is a new secret
# ===========================================================================


def test_deleted_secrets_links_stay_dead_when_the_path_is_written_again(signup_user, canary, anon) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f4"), 201)["id"]
    old_value = canary("F4-OLD-")
    old = assert_sdk_ok(owner.client.secrets.set(vault, "reborn/x", old_value), 201)
    link = _link(owner.http, old["id"])
    _opens(anon, link["id"], old_value)
    assert owner.client.secrets.delete(vault, "reborn/x").meta.status == 204
    _gone(anon, link["id"], old_value)

    new_value = canary("F4-NEW-")
    put = assert_sdk_ok(owner.client.secrets.set(vault, "reborn/x", new_value), 201)
    assert put["id"] != old["id"]
    assert put["version"] == 1
    got = assert_sdk_ok(owner.client.secrets.get(vault, "reborn/x"), 200)
    assert got["id"] == put["id"]
    resp = anon.get(f"/v1/share/{link['id']}")
    assert_problem(resp, 404)
    assert new_value not in resp.text and old_value not in resp.text


# ===========================================================================
# F5: sign-up answers the same for new and taken emails, hands out no session, and is throttled per address
# ===========================================================================


def test_open_signup_answers_a_taken_email_exactly_like_a_new_one(base_url, leak_watch) -> None:
    leak_watch.passwords.update([PASSWORD, OTHER_PASSWORD])
    typed = f"  Review-{uuid.uuid4().hex}@Example.COM "
    normalized = typed.strip().lower()
    source = _fresh_source()
    new = _signup(base_url, typed, source=source)
    assert new.status_code == 200, new.text
    body = new.json()
    assert set(body) == {"message", "email"}, body
    assert body["email"] == normalized
    assert isinstance(body["message"], str) and body["message"]

    # Byte for byte, every time: a body whose key order varies from one answer to the next differs too (ten
    # answers in a row rarely come out alike by chance).
    for _ in range(10):
        taken = _signup(base_url, typed, OTHER_PASSWORD, source=source)
        assert taken.status_code == 200, taken.text
        assert taken.headers.get("content-type") == new.headers.get("content-type")
        assert taken.json() == body
        assert taken.content == new.content, f"same fields, different bytes: {taken.content!r} != {new.content!r}"

    # The account is the first one, untouched: its password logs in, the second one does not.
    login = _login(base_url, normalized, PASSWORD, source=source)
    assert login.status_code == 200, login.text
    leak_watch.track(login.json())
    assert_problem(_login(base_url, normalized, OTHER_PASSWORD, source=source), 401)


def test_failed_signups_are_throttled_per_address(base_url, leak_watch) -> None:
    leak_watch.passwords.update([PASSWORD, OTHER_PASSWORD])
    existing = f"taken-{uuid.uuid4().hex}@example.com"
    assert _signup(base_url, existing).status_code == 200
    attacker = _fresh_source()
    with _client_from(base_url, attacker) as client:
        for i in range(50):
            # A taken email counts like a new one (not at all), so the throttle cannot tell them apart.
            taken = client.post("/v1/auth/signup", json={"email": existing, "password": OTHER_PASSWORD})
            assert taken.status_code == 200, (i, taken.status_code, taken.text)
            bogus = client.post("/v1/auth/signup", json={
                "email": f"bogus-{uuid.uuid4().hex}@example.com", "password": PASSWORD,
                "invite_token": random_like("inv_x")})
            assert_problem(bogus, 400)
        # 50 failed (invite) sign-ups from this address: any further sign-up from it waits, even a valid one.
        fresh = f"late-{uuid.uuid4().hex}@example.com"
        refused = client.post("/v1/auth/signup", json={"email": fresh, "password": PASSWORD})
        assert_problem(refused, 429)
        _retry_after(refused)
    assert_problem(_login(base_url, fresh, PASSWORD), 401)
    # Another address is not affected.
    elsewhere = _signup(base_url, fresh)
    assert elsewhere.status_code == 200, elsewhere.text
    login = _login(base_url, fresh, PASSWORD)
    assert login.status_code == 200, login.text
    leak_watch.track(login.json())


# ===========================================================================
# F6: an empty scope list matches nothing
# ===========================================================================


def test_api_key_with_empty_scopes_reads_lists_and_manages_nothing(signup_user, canary, base_url, leak_watch) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f6-key"), 201)["id"]
    value = canary("F6-")
    assert_sdk_ok(owner.client.secrets.set(vault, "any/path", value), 201)
    empty = leak_watch.track(assert_sdk_ok(owner.client.api_keys.create("empty", scopes=[]), 201))
    unscoped = leak_watch.track(assert_sdk_ok(owner.client.api_keys.create("unscoped"), 201))
    vaults_before = assert_sdk_ok(owner.client.vaults.list(), 200)["vaults"]
    agents_before = assert_sdk_ok(owner.client.agents.list(), 200)["agents"]

    for credential in (empty["api_key"], _key_token(base_url, empty["api_key"], leak_watch)):
        with _as(base_url, credential) as http:
            read = http.get(f"/v1/vaults/{vault}/secrets/any/path")
            assert_problem(read, 403)
            assert value not in read.text
            listing = http.get(f"/v1/vaults/{vault}/secrets")
            assert listing.status_code == 200, listing.text
            assert listing.json()["secrets"] == []
            assert_problem(http.post("/v1/auth/api-keys", json={"name": "wider"}), 403)
            assert_problem(http.post("/v1/vaults", json={"name": "f6-new"}), 403)
            assert_problem(http.post("/v1/agents", json={"name": "f6-proxy"}), 403)
    assert assert_sdk_ok(owner.client.vaults.list(), 200)["vaults"] == vaults_before
    assert assert_sdk_ok(owner.client.agents.list(), 200)["agents"] == agents_before
    assert {k["name"] for k in assert_sdk_ok(owner.client.api_keys.list(), 200)["keys"]} == {"empty", "unscoped"}
    # The listing tells "no scopes" (null) from "empty scopes" ([]).
    listed = {k["id"]: k for k in assert_sdk_ok(owner.client.api_keys.list(), 200)["keys"]}
    assert listed[empty["key"]["id"]]["scopes"] == []
    assert "scopes" in listed[unscoped["key"]["id"]] and listed[unscoped["key"]["id"]]["scopes"] is None


def test_agent_with_empty_scopes_reads_and_lists_nothing(signup_user, make_agent, canary, base_url,
                                                        leak_watch) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f6-agent"), 201)["id"]
    value = canary("F6-")
    assert_sdk_ok(owner.client.secrets.set(vault, "any/path", value), 201)
    empty = make_agent(owner, scopes=[])
    unscoped = make_agent(owner)
    for agent in (empty, unscoped):
        _grant(owner, vault, "agent", agent.id, "**")

    # The control: the same policy without the empty scope list reads.
    with _as(base_url, _agent_token(base_url, unscoped.key, leak_watch)) as http:
        assert http.get(f"/v1/vaults/{vault}/secrets/any/path").json()["value"] == value
    with _as(base_url, _agent_token(base_url, empty.key, leak_watch)) as http:
        read = http.get(f"/v1/vaults/{vault}/secrets/any/path")
        assert_problem(read, 403)
        assert value not in read.text
        listing = http.get(f"/v1/vaults/{vault}/secrets")
        assert listing.status_code == 200, listing.text
        assert listing.json()["secrets"] == []
        # (An agent may still create a vault of its own, whatever its scopes: they keep capping every path in it.)
        assert_problem(http.post("/v1/auth/api-keys", json={"name": "f6-agent-key"}), 403)
        assert_problem(http.post("/v1/agents", json={"name": "f6-agent-child"}), 403)
    # GET tells "no scopes" (null) from "empty scopes" ([]).
    assert assert_sdk_ok(owner.client.agents.get(empty.id), 200)["scopes"] == []
    record = assert_sdk_ok(owner.client.agents.get(unscoped.id), 200)
    assert "scopes" in record and record["scopes"] is None


# ===========================================================================
# F7: a scoped 1ck_ key manages no vaults and answers or opens no share outside its scopes
# ===========================================================================


def test_scoped_api_key_cannot_create_or_delete_vaults(signup_user, base_url, leak_watch) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f7-keep"), 201)["id"]
    key = leak_watch.track(assert_sdk_ok(owner.client.api_keys.create("scoped", scopes=["allowed/**"]), 201))
    vaults_before = assert_sdk_ok(owner.client.vaults.list(), 200)["vaults"]
    for credential in (key["api_key"], _key_token(base_url, key["api_key"], leak_watch)):
        with _as(base_url, credential) as http:
            assert_problem(http.post("/v1/vaults", json={"name": "f7-new"}), 403)
            assert_problem(http.delete(f"/v1/vaults/{vault}"), 403)
    assert assert_sdk_ok(owner.client.vaults.list(), 200)["vaults"] == vaults_before
    assert vault in {v["id"] for v in vaults_before}


def test_scoped_api_key_cannot_answer_or_open_shares_outside_its_scopes(signup_user, canary, base_url,
                                                                       leak_watch) -> None:
    sharer = signup_user()
    recipient = signup_user()
    vault = assert_sdk_ok(sharer.client.vaults.create("f7-shares"), 201)["id"]
    outside_value, inside_value = canary("F7-OUT-"), canary("F7-IN-")
    outside = assert_sdk_ok(sharer.client.secrets.set(vault, "other/x", outside_value), 201)
    inside = assert_sdk_ok(sharer.client.secrets.set(vault, "allowed/y", inside_value), 201)

    def to_recipient(secret_id: str) -> str:
        resp = sharer.http.post(f"/v1/secrets/{secret_id}/share", json={
            "recipient_type": "user", "recipient_id": recipient.user_id, "expires_at": _in(hours=1)})
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    key = leak_watch.track(assert_sdk_ok(recipient.client.api_keys.create("scoped", scopes=["allowed/**"]), 201))
    credentials = (key["api_key"], _key_token(base_url, key["api_key"], leak_watch))
    to_accept, to_decline = to_recipient(outside["id"]), to_recipient(outside["id"])
    for credential in credentials:
        with _as(base_url, credential) as http:
            assert_problem(http.post(f"/v1/shares/{to_accept}/accept"), 403)
            assert_problem(http.post(f"/v1/shares/{to_decline}/decline"), 403)
    inbound = {s["id"]: s["status"] for s in recipient.http.get("/v1/shares/inbound").json()["shares"]}
    assert inbound[to_accept] == inbound[to_decline] == "pending"

    # Accepted with the full session, the share still does not open for the scoped key.
    assert recipient.http.post(f"/v1/shares/{to_accept}/accept").status_code == 204
    for credential in credentials:
        with _as(base_url, credential) as http:
            refused = http.get(f"/v1/share/{to_accept}")
            assert_problem(refused, 403)
            assert outside_value not in refused.text
    assert recipient.http.get(f"/v1/share/{to_accept}").json()["value"] == outside_value

    # The control: a share inside the key's scopes is answered and opened with it.
    granted = to_recipient(inside["id"])
    with _as(base_url, key["api_key"]) as http:
        assert http.post(f"/v1/shares/{granted}/accept").status_code == 204
        opened = http.get(f"/v1/share/{granted}")
        assert opened.status_code == 200, opened.text
        assert opened.json()["value"] == inside_value


# ===========================================================================
# F8: logout ends the whole refresh family
# ===========================================================================


def _session(anon: httpx.Client, user, leak_watch) -> dict[str, Any]:
    resp = anon.post("/v1/auth/token", json={"email": user.email, "password": user.password})
    assert resp.status_code == 200, resp.text
    return leak_watch.track(resp.json())


def test_logout_refuses_the_logins_refresh_token(signup_user, anon, leak_watch) -> None:
    session = _session(anon, signup_user(), leak_watch)
    assert anon.delete("/v1/auth/token", headers=bearer(session["access_token"])).status_code == 204
    resp = anon.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert_problem(resp, 401)
    assert "access_token" not in resp.text


def test_logout_refuses_later_refresh_tokens_of_the_family(signup_user, anon, leak_watch) -> None:
    session = _session(anon, signup_user(), leak_watch)
    refreshed = anon.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    later = leak_watch.track(refreshed.json())["refresh_token"]
    assert anon.delete("/v1/auth/token", headers=bearer(session["access_token"])).status_code == 204
    resp = anon.post("/v1/auth/refresh", json={"refresh_token": later})
    assert_problem(resp, 401)
    assert "access_token" not in resp.text


# ===========================================================================
# F9: every attempt to read or change is one audit event
# ===========================================================================


def test_listing_secrets_is_one_audit_event_each(signup_user, canary) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f9-list"), 201)["id"]
    assert_sdk_ok(owner.client.secrets.set(vault, "app/x", canary("F9-")), 201)
    assert owner.http.get(f"/v1/vaults/{vault}/secrets", params={"prefix": "app/"}).status_code == 200
    assert owner.http.get(f"/v1/vaults/{vault}/secrets").status_code == 200
    events = _events(owner, "secret.list")
    assert len(events) == 2, events
    for event in events:
        assert event["actor_id"] == owner.user_id
        assert event["resource_type"] == "vault"
        assert event["resource_id"] == vault
    _only(events, details__prefix="app/")
    _only(events, details__prefix=None)


def test_reading_the_version_list_is_one_audit_event(signup_user, canary) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f9-versions"), 201)["id"]
    assert_sdk_ok(owner.client.secrets.set(vault, "app/x", canary("F9-")), 201)
    assert owner.http.get(f"/v1/vaults/{vault}/secret-versions/app/x").status_code == 200
    event = _only(_events(owner, "secret.versions"), actor_id=owner.user_id)
    assert event["resource_type"] == "secret"
    assert event["resource_id"] == "app/x"


def test_read_and_delete_of_a_missing_path_are_audited_as_not_found(signup_user) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f9-missing"), 201)["id"]
    assert_problem(owner.http.get(f"/v1/vaults/{vault}/secrets/never/read"), 404)
    assert_problem(owner.http.delete(f"/v1/vaults/{vault}/secrets/never/deleted"), 404)
    read = _only(_events(owner, "secret.read"), resource_id="never/read")
    assert read["details"]["outcome"] == "not_found"
    assert read["actor_id"] == owner.user_id
    deleted = _only(_events(owner, "secret.delete"), resource_id="never/deleted")
    assert deleted["details"]["outcome"] == "not_found"
    assert deleted["actor_id"] == owner.user_id


def test_refused_vault_key_rotation_is_audited(signup_user, join_org, canary) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f9-rotate"), 201)["id"]
    assert_sdk_ok(owner.client.secrets.set(vault, "app/x", canary("F9-")), 201)
    member = join_org(owner, "member")
    _grant(owner, vault, "user", member.user_id, "**")
    assert member.http.get(f"/v1/vaults/{vault}/secrets/app/x").status_code == 200
    assert_problem(member.http.post(f"/v1/vaults/{vault}/rotate-key"), 403)
    event = _only(_events(owner, "vault.rotate_key"), actor_id=member.user_id)
    assert event["details"]["outcome"] == "denied"


def test_refused_member_management_is_audited(signup_user, join_org) -> None:
    owner = signup_user()
    member = join_org(owner, "member")
    other = join_org(owner, "member")
    assert_problem(member.http.post("/v1/org/invite", json={"email": f"no-{uuid.uuid4().hex}@example.com",
                                                           "role": "member"}), 403)
    assert_problem(member.http.patch(f"/v1/org/members/{other.user_id}", json={"role": "admin"}), 403)
    assert_problem(member.http.delete(f"/v1/org/members/{other.user_id}"), 403)
    for action in ("member.invite", "member.role_update", "member.remove"):
        event = _only(_events(owner, action), actor_id=member.user_id)
        assert event["details"]["outcome"] == "denied", event
    roles = {m["user_id"]: m["role"] for m in owner.client.org.members().data["members"]}
    assert roles[other.user_id] == "member"


# ===========================================================================
# F10: failed authentications that name no org are aggregated, not written one row per request
# ===========================================================================


@pytest.fixture
def own_server(server: KeyholdServer, tmp_path: Path) -> Iterator[Callable[..., KeyholdServer]]:
    """Factory: a Keyhold server of this test's own (SQLite, software keystore) with extra environment."""
    started: list[KeyholdServer] = []

    def start(**env: str) -> KeyholdServer:
        base = tmp_path / f"own-{len(started)}"
        base.mkdir()
        srv = KeyholdServer(server.binary, base / "data", base.with_suffix(".log"), _free_port())
        srv.env = dict(env)
        started.append(srv)
        srv.start()
        return srv

    yield start
    for srv in started:
        srv.stop()


def _system_rows(srv: KeyholdServer) -> list[dict[str, Any]]:
    rows = srv.rows(f"SELECT id, action, details, ip_address FROM audit_events WHERE org_id = '{SYSTEM_ORG}'")
    for row in rows:
        row["details"] = json.loads(row["details"])
    return rows


def _failure_counts(rows: list[dict[str, Any]]) -> tuple[int, set[str]]:
    """(sum of counts, methods) of aggregated auth.failure rows; every row must carry the aggregate's details."""
    total, methods = 0, set()
    for row in rows:
        assert row["action"] == "auth.failure", row
        details = row["details"]
        assert isinstance(details.get("count"), int) and details["count"] >= 1, f"not an aggregate: {row}"
        assert isinstance(details.get("method"), str) and details["method"], row
        assert details.get("first_at") and details.get("last_at"), row
        total += details["count"]
        methods.add(details["method"])
    return total, methods


def _wait_for_failures(srv: KeyholdServer, before: set[str], expected: int) -> list[dict[str, Any]]:
    """Poll the system chain until the new aggregated rows count ``expected`` failures; return those rows."""
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    while True:
        rows = [r for r in _system_rows(srv) if r["id"] not in before]
        total, _ = _failure_counts(rows)
        if total >= expected or time.monotonic() > deadline:
            assert total == expected, f"{total} failures written, {expected} sent: {rows}"
            return rows
        time.sleep(0.2)


def test_bad_bearer_flood_is_written_as_a_few_aggregated_rows(own_server) -> None:
    srv = own_server(KEYHOLD_AUTH_FAILURE_INTERVAL="1")
    before = {r["id"] for r in _system_rows(srv)}
    started = time.monotonic()
    with httpx.Client(base_url=srv.url, timeout=30.0) as client:
        for i in range(200):
            resp = client.get("/v1/auth/me", headers=bearer(f"not-a-token-{i}"))
            assert resp.status_code == 401, resp.text
    flood_seconds = time.monotonic() - started
    rows = _wait_for_failures(srv, before, 200)
    _, methods = _failure_counts(rows)
    assert len(methods) == 1, methods
    # One row per address and method per interval (1 s): the flood's duration bounds the number of rows.
    assert len(rows) <= flood_seconds + 3, (len(rows), flood_seconds)
    assert len(rows) < 200
    # Nothing is written twice.
    time.sleep(2.5)
    assert _failure_counts([r for r in _system_rows(srv) if r["id"] not in before])[0] == 200


def test_pending_auth_failures_are_written_at_shutdown(own_server) -> None:
    srv = own_server(KEYHOLD_AUTH_FAILURE_INTERVAL="3600")
    before = {r["id"] for r in _system_rows(srv)}
    with httpx.Client(base_url=srv.url, timeout=30.0) as client:
        for i in range(7):
            assert client.get("/v1/auth/me", headers=bearer(f"not-a-token-{i}")).status_code == 401
    assert [r for r in _system_rows(srv) if r["id"] not in before] == [], "failures were written at request time"
    srv.stop()  # SIGTERM: a clean shutdown
    rows = [r for r in _system_rows(srv) if r["id"] not in before]
    assert len(rows) == 1, rows
    assert _failure_counts(rows)[0] == 7


def test_every_kind_of_orgless_auth_failure_is_aggregated(own_server, leak_watch) -> None:
    srv = own_server(KEYHOLD_AUTH_FAILURE_INTERVAL="1")
    leak_watch.passwords.add(OTHER_PASSWORD)
    kinds: dict[str, Callable[[httpx.Client], httpx.Response]] = {
        "bad bearer": lambda c: c.get("/v1/auth/me", headers=bearer("not-a-token")),
        "bad 1ck_ exchange": lambda c: c.post("/v1/auth/api-key-token", json={"api_key": random_like("1ck_x")}),
        "bad refresh token": lambda c: c.post("/v1/auth/refresh", json={"refresh_token": random_like("rt_x")}),
        "unknown email": lambda c: c.post("/v1/auth/token", json={
            "email": f"nobody-{uuid.uuid4().hex}@example.com", "password": OTHER_PASSWORD}),
        "unknown agent key": lambda c: c.post("/v1/auth/agent-token", json={"api_key": random_like("ocv_x")}),
    }
    with httpx.Client(base_url=srv.url, timeout=30.0) as client:
        for kind, send in kinds.items():
            before = {r["id"] for r in _system_rows(srv)}
            # 8 of each: 40 in all stay under the per-address limit of 50 failed logins and exchanges.
            for _ in range(8):
                assert_problem(send(client), 401)
            rows = _wait_for_failures(srv, before, 8)
            assert len(rows) < 8, (kind, rows)
            assert len(_failure_counts(rows)[1]) == 1, (kind, rows)


# ===========================================================================
# F11: share-link ids stay out of the request log
# ===========================================================================


def test_share_link_ids_are_redacted_in_the_request_log(own_server, leak_watch) -> None:
    srv = own_server()
    email = f"log-{uuid.uuid4().hex}@example.com"
    assert httpx.post(f"{srv.url}/v1/auth/signup", json={"email": email, "password": PASSWORD}).status_code == 200
    login = httpx.post(f"{srv.url}/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    owner = SimpleNamespace(http=_as(srv.url, leak_watch.track(login.json())["access_token"]))
    try:
        vault = owner.http.post("/v1/vaults", json={"name": "f11"}).json()["id"]
        value = f"F11-{uuid.uuid4().hex}"
        leak_watch.values.add(value)
        secret = owner.http.put(f"/v1/vaults/{vault}/secrets/log/x", json={"value": value})
        assert secret.status_code == 201, secret.text
        link = _link(owner.http, secret.json()["id"])["id"]
        for _ in range(2):
            assert httpx.get(f"{srv.url}/v1/share/{link}").status_code == 200
        assert owner.http.delete(f"/v1/share/{link}").status_code == 204
        unknown = str(uuid.uuid4())
        assert httpx.get(f"{srv.url}/v1/share/{unknown}").status_code == 404
    finally:
        owner.http.close()
    srv.stop()  # flush
    log = srv.log_path.read_text(errors="replace")
    for ident in (link, unknown):
        assert ident not in log and ident.upper() not in log and ident.replace("-", "") not in log, ident
    assert log.count("/v1/share/<redacted>") >= 4, log[-3000:]


# ===========================================================================
# F12: an empty path segment is refused everywhere
# ===========================================================================


@pytest.fixture
def plain(signup_user, canary) -> SimpleNamespace:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("f12"), 201)["id"]
    value, decoy = canary("F12-"), canary("F12-DECOY-")
    assert_sdk_ok(owner.client.secrets.set(vault, "a/b", value), 201)
    # What a parser that drops the empty segment reads for /v1/vaults/V//secrets/a/b.
    assert_sdk_ok(owner.client.secrets.set(vault, "secrets/a/b", decoy), 201)
    return SimpleNamespace(owner=owner, vault=vault, value=value, decoy=decoy)


def _state(plain: SimpleNamespace) -> list[tuple[str, int, int]]:
    listing = plain.owner.http.get(f"/v1/vaults/{plain.vault}/secrets")
    assert listing.status_code == 200, listing.text
    return [(s["path"], s["version"], s["access_count"]) for s in listing.json()["secrets"]]


def test_empty_path_segment_reads_nothing(plain, base_url) -> None:
    before = _state(plain)
    v = plain.vault
    for target in (
        f"/v1/vaults/{v}//secrets/a/b",
        f"/v1//vaults/{v}/secrets/a/b",
        f"//v1/vaults/{v}/secrets/a/b",
        f"/v1/vaults/{v}/secrets//a/b",
        f"/v1/vaults/{v}/secrets/a//b",
        f"/v1/vaults/{v}//secret-versions/a/b",
        f"/v1/vaults/{v}//secret-version/a/b/1",
    ):
        resp = raw_request(base_url, "GET", target, token=plain.owner.token)
        assert_problem(resp, 400)
        assert plain.value not in resp.text and plain.decoy not in resp.text, target
    assert _state(plain) == before


def test_empty_path_segment_stores_and_deletes_nothing(plain, base_url, leak_watch) -> None:
    before = _state(plain)
    v = plain.vault
    probe = f"F12-PROBE-{uuid.uuid4().hex}"
    leak_watch.values.add(probe)
    for method, target, body in (
        ("PUT", f"/v1/vaults/{v}//secrets/a/b", {"value": probe}),
        ("PUT", f"/v1/vaults/{v}//secrets/new/path", {"value": probe}),
        ("PUT", f"/v1//vaults/{v}/secrets/new/other", {"value": probe}),
        ("DELETE", f"/v1/vaults/{v}//secrets/a/b", None),
        ("POST", f"/v1/vaults/{v}//secret-rotate/a/b", {}),
    ):
        resp = raw_request(base_url, method, target, token=plain.owner.token, json_body=body)
        assert_problem(resp, 400)
    assert _state(plain) == before
    assert assert_sdk_ok(plain.owner.client.secrets.get(plain.vault, "a/b"), 200)["value"] == plain.value
    assert assert_sdk_ok(plain.owner.client.secrets.get(plain.vault, "secrets/a/b"), 200)["value"] == plain.decoy
