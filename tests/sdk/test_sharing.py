"""Secret sharing through the SDK: ``client.sharing.*`` (contract §1.7, §2.8).

Link shares (passphrase, IP allowlist, expiry, access counts, revocation), targeted shares (user, agent,
external email, creator) with their accept/decline step, the inbound and outbound lists, and the rules on who
may share what. What issue 14 changed (pinned versions, claim tokens, suspension, org-wide revocation) is checked
in detail by test_review.py.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections import Counter
from types import SimpleNamespace
from typing import Any

import oneclaw
import pytest

from support import (
    PASSWORD,
    assert_problem,
    assert_sdk_error,
    assert_sdk_ok,
    is_uuid,
    now_utc,
    parse_ts,
    rfc3339,
    run_together,
)

SHARE_FIELDS = (
    "id",
    "share_url",
    "secret_id",
    "secret_path",
    "vault_id",
    "recipient_type",
    "expires_at",
    "access_count",
    "has_passphrase",
    "ip_allowlist",
    "status",
    "is_accepted",
    "is_expired",
    "created_at",
    "version",
)
ACCESS_FIELDS = ("id", "secret_id", "path", "type", "value", "version", "access_count", "expires_at")


def future(**delta: float) -> str:
    return rfc3339(now_utc() + dt.timedelta(**delta))


def share(client: Any, secret_id: str, status: int | tuple[int, ...] = 201, **kwargs: Any) -> Any:
    """``client.sharing.create`` with a link share expiring in an hour unless told otherwise.

    Returns the 201 body, or (for an error ``status``) the SDK response after checking the error.
    """
    kwargs.setdefault("recipient_type", "anyone_with_link")
    kwargs.setdefault("expires_at", future(hours=1))
    resp = client.sharing.create(secret_id, **kwargs)
    if status != 201:
        assert_sdk_error(resp, status)
        return resp
    return assert_sdk_ok(resp, status)


def outbound(client: Any) -> dict[str, dict]:
    return {s["id"]: s for s in assert_sdk_ok(client.sharing.list_outbound(), 200)["shares"]}


def inbound(client: Any) -> dict[str, dict]:
    return {s["id"]: s for s in assert_sdk_ok(client.sharing.list_inbound(), 200)["shares"]}


@pytest.fixture
def secret(user, vault: str, canary) -> SimpleNamespace:
    """A secret of the session user, with its PUT response and value."""
    value = canary("SHARE-")
    put = assert_sdk_ok(user.client.secrets.set(vault, "shared/api-key", value, type="api_key"), 201)
    return SimpleNamespace(id=put["id"], value=value, vault=vault, path="shared/api-key", put=put, owner=user)


@pytest.fixture
def stranger(signup_user):
    """A user of another org (fresh, so its inbound list is empty)."""
    return signup_user()


def sign_up(server, leak_watch, email: str):
    """Sign up ``email`` (own org) through the SDK and log in; returns (client, login body)."""
    bootstrap = oneclaw.create_client(base_url=server.url)
    try:
        leak_watch.track(assert_sdk_ok(bootstrap.auth.signup(email, PASSWORD), 200))
        body = leak_watch.track(assert_sdk_ok(bootstrap.auth.login(email, PASSWORD), 200))
    finally:
        bootstrap.close()
    leak_watch.passwords.add(PASSWORD)
    return oneclaw.create_client(base_url=server.url, token=body["access_token"]), body


def claim(client: Any, share_id: str, claim_token: str, answer: str = "accept") -> Any:
    """Accept (or decline) an ``external_email`` share with its claim token (the SDK sends no body)."""
    return client._http.request("POST", f"/v1/shares/{share_id}/{answer}", body={"claim_token": claim_token})


# --- create: the response ------------------------------------------------------------------------------------


def test_link_share_response_has_the_documented_fields(secret, base_url: str, passphrase) -> None:
    expires = future(days=2)
    phrase = passphrase()
    data = share(
        secret.owner.client, secret.id, expires_at=expires, max_access_count=3, passphrase=phrase,
        ip_allowlist=["127.0.0.0/8", "10.1.0.0/16"],
    )
    for name in SHARE_FIELDS:
        assert name in data, (name, data)
    assert is_uuid(data["id"])
    assert data["share_url"].endswith(f"/v1/share/{data['id']}")
    assert data["share_url"].startswith(("http://", "https://"))
    assert data["secret_id"] == secret.id
    assert data["secret_path"] == secret.path
    assert data["vault_id"] == secret.vault
    assert data["recipient_type"] == "anyone_with_link"
    assert data.get("recipient_id") is None
    assert data.get("recipient_email") is None
    assert parse_ts(data["expires_at"]) == parse_ts(expires)
    assert data["max_access_count"] == 3
    assert data["access_count"] == 0
    assert data["has_passphrase"] is True
    assert data["ip_allowlist"] == ["127.0.0.0/8", "10.1.0.0/16"]
    assert data["status"] == "accepted"
    assert data["is_accepted"] is True
    assert data["is_expired"] is False
    assert data["version"] == 1
    assert abs((parse_ts(data["created_at"]) - now_utc()).total_seconds()) < 300


def test_share_response_never_holds_the_value_or_passphrase(secret, passphrase) -> None:
    phrase = passphrase()
    resp = secret.owner.http.post(
        f"/v1/secrets/{secret.id}/share",
        json={"recipient_type": "anyone_with_link", "expires_at": future(hours=1), "passphrase": phrase},
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["content-type"].split(";")[0] == "application/json"
    assert secret.value not in resp.text
    assert phrase not in resp.text
    assert "passphrase" not in resp.json()
    assert "value" not in resp.json()
    listed = json.dumps(assert_sdk_ok(secret.owner.client.sharing.list_outbound(), 200))
    assert secret.value not in listed and phrase not in listed


def test_share_without_options_has_no_limits(secret) -> None:
    data = share(secret.owner.client, secret.id)
    assert data["has_passphrase"] is False
    assert data["ip_allowlist"] == []
    assert data.get("max_access_count") is None


def test_share_ids_are_distinct(secret) -> None:
    ids = {share(secret.owner.client, secret.id)["id"] for _ in range(3)}
    assert len(ids) == 3


# --- create: validation -----------------------------------------------------------------------------------------


def test_missing_expires_at_is_400(secret) -> None:
    resp = secret.owner.http.post(f"/v1/secrets/{secret.id}/share", json={"recipient_type": "anyone_with_link"})
    assert_problem(resp, 400)


def test_missing_recipient_type_is_400(secret) -> None:
    resp = secret.owner.http.post(f"/v1/secrets/{secret.id}/share", json={"expires_at": future(hours=1)})
    assert_problem(resp, 400)


@pytest.mark.parametrize(
    "label, expires",
    [
        ("past", lambda: future(minutes=-5)),
        ("now-ish", lambda: future(seconds=-1)),
        ("beyond a year", lambda: future(days=366)),
        ("not a date", lambda: "next tuesday"),
    ],
)
def test_bad_expires_at_is_400(secret, label: str, expires) -> None:
    resp = secret.owner.http.post(
        f"/v1/secrets/{secret.id}/share", json={"recipient_type": "anyone_with_link", "expires_at": expires()}
    )
    assert_problem(resp, 400)


def test_expiry_just_under_a_year_is_accepted(secret) -> None:
    data = share(secret.owner.client, secret.id, expires_at=future(days=364))
    assert data["is_expired"] is False


@pytest.mark.parametrize("count", [0, -1, 1_000_001])
def test_max_access_count_out_of_range_is_400(secret, count: int) -> None:
    assert_problem(
        secret.owner.http.post(
            f"/v1/secrets/{secret.id}/share",
            json={"recipient_type": "anyone_with_link", "expires_at": future(hours=1), "max_access_count": count},
        ),
        400,
    )


@pytest.mark.parametrize("count", [1, 1_000_000])
def test_max_access_count_bounds_are_accepted(secret, count: int) -> None:
    assert share(secret.owner.client, secret.id, max_access_count=count)["max_access_count"] == count


@pytest.mark.parametrize(
    "body",
    [
        {"recipient_type": "everyone"},
        {"recipient_type": ""},
        {"recipient_type": "user"},  # no recipient_id
        {"recipient_type": "user", "recipient_id": "not-a-uuid"},
        {"recipient_type": "agent"},
        {"recipient_type": "external_email"},  # no email
        {"recipient_type": "external_email", "email": "not-an-email"},
        {"recipient_type": "anyone_with_link", "ip_allowlist": ["not-a-cidr"]},
        {"recipient_type": "anyone_with_link", "ip_allowlist": ["10.0.0.0/33"]},
    ],
)
def test_invalid_share_body_is_400(secret, body: dict) -> None:
    resp = secret.owner.http.post(f"/v1/secrets/{secret.id}/share", json={"expires_at": future(hours=1), **body})
    assert_problem(resp, 400)


@pytest.mark.parametrize("recipient_type", ["user", "agent"])
def test_unknown_recipient_is_refused(secret, recipient_type: str) -> None:
    resp = secret.owner.http.post(
        f"/v1/secrets/{secret.id}/share",
        json={"recipient_type": recipient_type, "recipient_id": str(uuid.uuid4()), "expires_at": future(hours=1)},
    )
    assert_problem(resp, (400, 404))


def test_user_cannot_create_a_creator_share(secret) -> None:
    share(secret.owner.client, secret.id, status=400, recipient_type="creator")


def test_random_secret_id_is_404(user) -> None:
    share(user.client, str(uuid.uuid4()), status=404)


def test_secret_of_another_org_is_404(secret, stranger) -> None:
    resp = stranger.http.post(
        f"/v1/secrets/{secret.id}/share", json={"recipient_type": "anyone_with_link", "expires_at": future(hours=1)}
    )
    assert_problem(resp, 404)
    assert secret.value not in resp.text
    assert outbound(stranger.client) == {}


def test_share_without_token_is_401(secret, anon) -> None:
    resp = anon.post(
        f"/v1/secrets/{secret.id}/share", json={"recipient_type": "anyone_with_link", "expires_at": future(hours=1)}
    )
    assert_problem(resp, 401)


def test_deleted_secret_cannot_be_shared(secret) -> None:
    assert secret.owner.client.secrets.delete(secret.vault, secret.path).meta.status == 204
    share(secret.owner.client, secret.id, status=(404, 410))


# --- who may share -----------------------------------------------------------------------------------------------


@pytest.fixture
def team(signup_user, join_org, canary) -> SimpleNamespace:
    """An owner with two secrets in one vault, and a member granted read on ``team/a/**`` only."""
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("share-team"), 201)["id"]
    granted = assert_sdk_ok(owner.client.secrets.set(vault, "team/a/x", canary("TEAM-")), 201)
    withheld = assert_sdk_ok(owner.client.secrets.set(vault, "team/b/x", canary("TEAM-")), 201)
    member = join_org(owner, "member")
    assert_sdk_ok(
        owner.client.policies.create(
            vault, principal_type="user", principal_id=member.user_id, secret_path_pattern="team/a/**"
        ),
        201,
    )
    hidden_vault = assert_sdk_ok(owner.client.vaults.create("share-hidden"), 201)["id"]
    hidden = assert_sdk_ok(owner.client.secrets.set(hidden_vault, "h/x", canary("TEAM-")), 201)
    return SimpleNamespace(
        owner=owner, member=member, vault=vault, granted=granted, withheld=withheld, hidden=hidden
    )


def test_member_shares_a_secret_it_may_read(team) -> None:
    data = share(team.member.client, team.granted["id"])
    assert data["secret_path"] == "team/a/x"
    assert data["id"] in outbound(team.member.client)


def test_member_without_read_on_the_path_gets_403(team) -> None:
    share(team.member.client, team.withheld["id"], status=403)
    assert outbound(team.member.client) == {}


def test_member_who_cannot_see_the_vault_gets_404(team) -> None:
    share(team.member.client, team.hidden["id"], status=404)


def test_agent_shares_a_granted_secret_by_link(team, make_agent, agent_sdk, anon) -> None:
    agent = make_agent(team.owner)
    assert_sdk_ok(
        team.owner.client.policies.create(
            team.vault, principal_type="agent", principal_id=agent.id, secret_path_pattern="team/a/**"
        ),
        201,
    )
    bot = agent_sdk(agent.key)
    data = share(bot, team.granted["id"])
    assert data["id"] in outbound(bot)
    assert data["id"] not in outbound(team.owner.client)  # the agent's, not the owner's
    assert anon.get(f"/v1/share/{data['id']}").status_code == 200
    share(bot, team.withheld["id"], status=403)
    share(bot, team.hidden["id"], status=404)


def test_agent_cannot_share_with_an_email(team, make_agent, agent_sdk) -> None:
    agent = make_agent(team.owner)
    assert_sdk_ok(
        team.owner.client.policies.create(
            team.vault, principal_type="agent", principal_id=agent.id, secret_path_pattern="team/**"
        ),
        201,
    )
    bot = agent_sdk(agent.key)
    share(bot, team.granted["id"], status=403, recipient_type="external_email", email="someone@example.com")
    assert outbound(bot) == {}


# --- access: link shares ---------------------------------------------------------------------------------------


def test_link_share_opens_without_auth(secret, sdk_anon) -> None:
    link = share(secret.owner.client, secret.id)
    data = assert_sdk_ok(sdk_anon.sharing.access(link["id"]), 200)
    for name in ACCESS_FIELDS:
        assert name in data, (name, data)
    assert data["id"] == link["id"]
    assert data["secret_id"] == secret.id
    assert data["path"] == secret.path
    assert data["type"] == "api_key"
    assert data["value"] == secret.value
    assert data["version"] == 1
    assert data["access_count"] == 1
    assert data.get("max_access_count") is None
    assert parse_ts(data["expires_at"]) == parse_ts(link["expires_at"])


def test_link_share_raw_response_is_json(secret, anon) -> None:
    link = share(secret.owner.client, secret.id)
    resp = anon.get(f"/v1/share/{link['id']}")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].split(";")[0] == "application/json"
    assert resp.json()["value"] == secret.value


def test_link_share_also_opens_with_any_valid_token(secret, stranger) -> None:
    link = share(secret.owner.client, secret.id)
    assert assert_sdk_ok(stranger.client.sharing.access(link["id"]), 200)["value"] == secret.value
    assert assert_sdk_ok(secret.owner.client.sharing.access(link["id"]), 200)["access_count"] == 2


def test_link_share_for_latest_serves_the_latest_version(secret, sdk_anon, canary) -> None:
    # A share pins the version it was created for, unless the sharer asks for "latest" (issue 14, F3).
    resp = secret.owner.http.post(f"/v1/secrets/{secret.id}/share", json={
        "recipient_type": "anyone_with_link", "expires_at": future(hours=1), "version": "latest"})
    assert resp.status_code == 201, resp.text
    link = resp.json()
    assert link["follows_latest"] is True and link["version"] is None, link
    newer = canary("SHARE-")
    assert_sdk_ok(secret.owner.client.secrets.set(secret.vault, secret.path, newer, type="api_key"), 201)
    data = assert_sdk_ok(sdk_anon.sharing.access(link["id"]), 200)
    assert data["value"] == newer
    assert data["version"] == 2
    assert_sdk_ok(secret.owner.client.secrets.rotate_generate(secret.vault, secret.path), 201)
    rotated = assert_sdk_ok(sdk_anon.sharing.access(link["id"]), 200)
    assert rotated["version"] == 3
    assert rotated["value"] not in (secret.value, newer)


def test_access_counts_up(secret, sdk_anon) -> None:
    link = share(secret.owner.client, secret.id)
    counts = [assert_sdk_ok(sdk_anon.sharing.access(link["id"]), 200)["access_count"] for _ in range(3)]
    assert counts == [1, 2, 3]
    assert outbound(secret.owner.client)[link["id"]]["access_count"] == 3


def test_unknown_share_is_404(anon) -> None:
    assert_problem(anon.get(f"/v1/share/{uuid.uuid4()}"), 404)
    assert_problem(anon.get("/v1/share/not-a-uuid"), 404)


# --- passphrase ---------------------------------------------------------------------------------------------------


def test_passphrase_opens_the_share(secret, sdk_anon, passphrase) -> None:
    phrase = passphrase()
    link = share(secret.owner.client, secret.id, passphrase=phrase)
    # The SDK sends the passphrase as a JSON body on GET.
    data = assert_sdk_ok(sdk_anon.sharing.access(link["id"], passphrase=phrase), 200)
    assert data["value"] == secret.value
    assert data["access_count"] == 1


def test_missing_or_wrong_passphrase_is_403_and_not_counted(secret, sdk_anon, anon, passphrase) -> None:
    phrase = passphrase()
    link = share(secret.owner.client, secret.id, passphrase=phrase, max_access_count=1)
    assert_sdk_error(sdk_anon.sharing.access(link["id"]), 403)
    assert_sdk_error(sdk_anon.sharing.access(link["id"], passphrase=phrase + "x"), 403)
    assert_sdk_error(sdk_anon.sharing.access(link["id"], passphrase=phrase.upper()), 403)
    raw = anon.request("GET", f"/v1/share/{link['id']}", json={"passphrase": "guess"})
    assert_problem(raw, 403)
    assert secret.value not in raw.text
    assert outbound(secret.owner.client)[link["id"]]["access_count"] == 0
    # The single allowed access is still there.
    data = assert_sdk_ok(sdk_anon.sharing.access(link["id"], passphrase=phrase), 200)
    assert data["value"] == secret.value
    assert data["access_count"] == 1
    assert_sdk_error(sdk_anon.sharing.access(link["id"], passphrase=phrase), 410)


def test_passphrase_in_the_query_string_is_not_accepted(secret, anon, passphrase) -> None:
    phrase = passphrase()
    link = share(secret.owner.client, secret.id, passphrase=phrase)
    assert_problem(anon.get(f"/v1/share/{link['id']}", params={"passphrase": phrase}), 403)


# --- IP allowlist -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("allowlist", [["127.0.0.1/32"], ["127.0.0.0/8"], ["10.0.0.0/8", "127.0.0.1/32"]])
def test_allowlisted_address_opens_the_share(secret, sdk_anon, allowlist: list[str]) -> None:
    link = share(secret.owner.client, secret.id, ip_allowlist=allowlist)
    assert assert_sdk_ok(sdk_anon.sharing.access(link["id"]), 200)["value"] == secret.value


@pytest.mark.parametrize("allowlist", [["10.0.0.0/8"], ["192.168.1.7/32", "127.0.0.2/32"], ["::1/128"]])
def test_other_addresses_get_403_and_are_not_counted(secret, anon, allowlist: list[str]) -> None:
    link = share(secret.owner.client, secret.id, ip_allowlist=allowlist)
    resp = anon.get(f"/v1/share/{link['id']}")
    assert_problem(resp, 403)
    assert secret.value not in resp.text
    assert outbound(secret.owner.client)[link["id"]]["access_count"] == 0


def test_forwarded_header_does_not_bypass_the_allowlist(secret, anon) -> None:
    link = share(secret.owner.client, secret.id, ip_allowlist=["10.0.0.0/8"])
    resp = anon.get(f"/v1/share/{link['id']}", headers={"X-Forwarded-For": "10.1.2.3", "X-Real-IP": "10.1.2.3"})
    assert_problem(resp, 403)


# --- expiry, exhaustion, revocation, deletion ----------------------------------------------------------------------


def test_expired_share_is_410(secret, anon) -> None:
    expires = (now_utc() + dt.timedelta(seconds=3)).replace(microsecond=0)
    link = share(secret.owner.client, secret.id, expires_at=rfc3339(expires))
    assert anon.get(f"/v1/share/{link['id']}").status_code == 200
    time.sleep(max((expires - now_utc()).total_seconds(), 0) + 1.0)
    resp = anon.get(f"/v1/share/{link['id']}")
    assert_problem(resp, 410)
    assert secret.value not in resp.text
    listed = outbound(secret.owner.client)[link["id"]]
    assert listed["is_expired"] is True
    assert listed["access_count"] == 1


def test_exhausted_share_is_410(secret, sdk_anon, anon) -> None:
    link = share(secret.owner.client, secret.id, max_access_count=2)
    assert [assert_sdk_ok(sdk_anon.sharing.access(link["id"]), 200)["access_count"] for _ in range(2)] == [1, 2]
    for _ in range(2):
        resp = anon.get(f"/v1/share/{link['id']}")
        assert_problem(resp, 410)
        assert secret.value not in resp.text
    assert outbound(secret.owner.client)[link["id"]]["access_count"] == 2


def test_exact_access_count_under_concurrency(secret, sdk_anon) -> None:
    limit, readers = 5, 30
    link = share(secret.owner.client, secret.id, max_access_count=limit)
    responses = run_together(readers, lambda i: sdk_anon.sharing.access(link["id"]))
    statuses = Counter(r.meta.status for r in responses)
    assert statuses == Counter({200: limit, 410: readers - limit}), statuses
    ok = [r.data for r in responses if r.meta.status == 200]
    assert all(d["value"] == secret.value for d in ok)
    assert sorted(d["access_count"] for d in ok) == list(range(1, limit + 1))
    assert outbound(secret.owner.client)[link["id"]]["access_count"] == limit


def test_share_access_counts_against_the_secrets_own_limit(user, vault: str, canary, sdk_anon) -> None:
    value = canary("SHARE-")
    put = assert_sdk_ok(user.client.secrets.set(vault, "limited/one", value, max_access_count=3), 201)
    link = share(user.client, put["id"])
    assert assert_sdk_ok(user.client.secrets.get(vault, "limited/one"), 200)["access_count"] == 1
    assert assert_sdk_ok(sdk_anon.sharing.access(link["id"]), 200)["value"] == value
    assert assert_sdk_ok(sdk_anon.sharing.access(link["id"]), 200)["value"] == value
    # The secret has been read three times now (once directly, twice through the share).
    assert_sdk_error(sdk_anon.sharing.access(link["id"]), 410)
    assert_sdk_error(user.client.secrets.get(vault, "limited/one"), 410)
    assert outbound(user.client)[link["id"]]["access_count"] == 2


def test_share_access_shows_in_the_secrets_access_count(user, vault: str, canary, sdk_anon) -> None:
    put = assert_sdk_ok(user.client.secrets.set(vault, "counted/one", canary("SHARE-")), 201)
    link = share(user.client, put["id"])
    for _ in range(2):
        assert_sdk_ok(sdk_anon.sharing.access(link["id"]), 200)
    assert assert_sdk_ok(user.client.secrets.get(vault, "counted/one"), 200)["access_count"] == 3


def test_revoked_share_is_404(secret, sdk_anon, anon) -> None:
    link = share(secret.owner.client, secret.id)
    assert_sdk_ok(sdk_anon.sharing.access(link["id"]), 200)
    resp = secret.owner.client.sharing.revoke(link["id"])
    assert resp.meta.status == 204
    assert resp.data is None
    gone = anon.get(f"/v1/share/{link['id']}")
    assert_problem(gone, 404)
    assert secret.value not in gone.text
    assert link["id"] not in outbound(secret.owner.client)
    assert_sdk_error(secret.owner.client.sharing.revoke(link["id"]), 404)


def test_revoke_raw_is_204_without_body(secret) -> None:
    link = share(secret.owner.client, secret.id)
    resp = secret.owner.http.delete(f"/v1/share/{link['id']}")
    assert resp.status_code == 204
    assert resp.content == b""


def test_revoke_alias_path(secret, anon) -> None:
    """``DELETE /v1/shares/{id}`` (the CLI's path) revokes too."""
    link = share(secret.owner.client, secret.id)
    assert secret.owner.http.delete(f"/v1/shares/{link['id']}").status_code == 204
    assert_problem(anon.get(f"/v1/share/{link['id']}"), 404)


def test_only_the_creator_and_org_admins_revoke(team, stranger, join_org, anon) -> None:
    link = share(team.owner.client, team.granted["id"])
    assert_sdk_error(stranger.client.sharing.revoke(link["id"]), 404)
    assert_sdk_error(team.member.client.sharing.revoke(link["id"]), 404)
    assert_problem(team.member.http.delete(f"/v1/share/{link['id']}"), 404)
    assert_problem(anon.delete(f"/v1/share/{link['id']}"), 401)
    assert anon.get(f"/v1/share/{link['id']}").status_code == 200
    assert link["id"] in outbound(team.owner.client)
    # An admin of the org may revoke any share of it (issue 14, F3).
    admin = join_org(team.owner, "admin")
    assert admin.client.sharing.revoke(link["id"]).meta.status == 204
    assert_problem(anon.get(f"/v1/share/{link['id']}"), 404)


def test_revoke_unknown_share_is_404(user) -> None:
    assert_sdk_error(user.client.sharing.revoke(str(uuid.uuid4())), 404)


def test_deleted_secret_revokes_the_share(secret, anon) -> None:
    # Deleting a secret revokes its shares (issue 14, F4): the link is gone, not merely expired.
    link = share(secret.owner.client, secret.id)
    assert anon.get(f"/v1/share/{link['id']}").status_code == 200
    assert secret.owner.client.secrets.delete(secret.vault, secret.path).meta.status == 204
    resp = anon.get(f"/v1/share/{link['id']}")
    assert_problem(resp, 404)
    assert secret.value not in resp.text


# --- targeted shares: user ------------------------------------------------------------------------------------------


@pytest.fixture
def to_user(secret, signup_user) -> SimpleNamespace:
    recipient = signup_user()
    data = share(secret.owner.client, secret.id, recipient_type="user", recipient_id=recipient.user_id)
    return SimpleNamespace(share=data, recipient=recipient, secret=secret)


def test_user_share_starts_pending(to_user) -> None:
    data = to_user.share
    assert data["recipient_type"] == "user"
    assert data["recipient_id"] == to_user.recipient.user_id
    assert data["status"] == "pending"
    assert data["is_accepted"] is False


def test_user_share_is_in_the_recipients_inbound_list(to_user) -> None:
    listed = inbound(to_user.recipient.client)
    assert list(listed) == [to_user.share["id"]]
    item = listed[to_user.share["id"]]
    assert item["secret_path"] == to_user.secret.path
    assert item["status"] == "pending"
    assert item["is_accepted"] is False
    assert item["access_count"] == 0
    assert to_user.secret.value not in json.dumps(item)
    assert to_user.share["id"] not in inbound(to_user.secret.owner.client)
    assert outbound(to_user.recipient.client) == {}


def test_user_share_needs_a_token(to_user, anon, sdk_anon) -> None:
    assert_problem(anon.get(f"/v1/share/{to_user.share['id']}"), 401)
    assert_sdk_error(sdk_anon.sharing.access(to_user.share["id"]), 401)


def test_user_share_is_404_for_anyone_else(to_user, stranger) -> None:
    assert_sdk_error(stranger.client.sharing.access(to_user.share["id"]), 404)
    # The creator is not the recipient either.
    assert_sdk_error(to_user.secret.owner.client.sharing.access(to_user.share["id"]), 404)


def test_user_share_must_be_accepted_first(to_user) -> None:
    c = to_user.recipient.client
    resp = to_user.recipient.http.get(f"/v1/share/{to_user.share['id']}")
    assert_problem(resp, 403)
    assert to_user.secret.value not in resp.text
    accepted = c.sharing.accept(to_user.share["id"])
    assert accepted.meta.status == 204
    assert accepted.data is None
    data = assert_sdk_ok(c.sharing.access(to_user.share["id"]), 200)
    assert data["value"] == to_user.secret.value
    assert data["access_count"] == 1
    item = inbound(c)[to_user.share["id"]]
    assert item["status"] == "accepted"
    assert item["is_accepted"] is True
    assert item["access_count"] == 1
    assert outbound(to_user.secret.owner.client)[to_user.share["id"]]["status"] == "accepted"


def test_accept_raw_is_204_without_body(to_user) -> None:
    resp = to_user.recipient.http.post(f"/v1/shares/{to_user.share['id']}/accept")
    assert resp.status_code == 204
    assert resp.content == b""


def test_answering_twice_is_409(to_user) -> None:
    c = to_user.recipient.client
    assert c.sharing.accept(to_user.share["id"]).meta.status == 204
    assert_sdk_error(c.sharing.accept(to_user.share["id"]), 409)
    assert_sdk_error(c.sharing.decline(to_user.share["id"]), 409)
    assert_problem(to_user.recipient.http.post(f"/v1/shares/{to_user.share['id']}/decline"), 409)
    assert_sdk_ok(c.sharing.access(to_user.share["id"]), 200)


def test_declined_share_is_410(to_user) -> None:
    c = to_user.recipient.client
    assert c.sharing.decline(to_user.share["id"]).meta.status == 204
    resp = to_user.recipient.http.get(f"/v1/share/{to_user.share['id']}")
    assert_problem(resp, 410)
    assert to_user.secret.value not in resp.text
    assert_sdk_error(c.sharing.accept(to_user.share["id"]), 409)
    assert_sdk_error(c.sharing.decline(to_user.share["id"]), 409)
    assert outbound(to_user.secret.owner.client)[to_user.share["id"]]["status"] == "declined"


def test_only_the_recipient_answers(to_user, stranger) -> None:
    share_id = to_user.share["id"]
    for client in (stranger.client, to_user.secret.owner.client):
        assert_sdk_error(client.sharing.accept(share_id), 404)
        assert_sdk_error(client.sharing.decline(share_id), 404)
    assert inbound(to_user.recipient.client)[share_id]["status"] == "pending"


def test_answering_unknown_or_link_shares_is_404(secret, user) -> None:
    assert_sdk_error(user.client.sharing.accept(str(uuid.uuid4())), 404)
    assert_sdk_error(user.client.sharing.decline(str(uuid.uuid4())), 404)
    link = share(secret.owner.client, secret.id)
    assert_sdk_error(secret.owner.client.sharing.accept(link["id"]), 404)
    assert_sdk_error(secret.owner.client.sharing.decline(link["id"]), 404)


def test_answer_without_token_is_401(to_user, anon) -> None:
    assert_problem(anon.post(f"/v1/shares/{to_user.share['id']}/accept"), 401)
    assert_problem(anon.post(f"/v1/shares/{to_user.share['id']}/decline"), 401)


def test_revoked_share_leaves_both_lists_and_cannot_be_answered(to_user) -> None:
    assert to_user.secret.owner.client.sharing.revoke(to_user.share["id"]).meta.status == 204
    assert to_user.share["id"] not in inbound(to_user.recipient.client)
    assert to_user.share["id"] not in outbound(to_user.secret.owner.client)
    assert_sdk_error(to_user.recipient.client.sharing.accept(to_user.share["id"]), 404)
    assert_sdk_error(to_user.recipient.client.sharing.access(to_user.share["id"]), 404)


def test_targeted_share_honours_max_access_count(secret, signup_user) -> None:
    recipient = signup_user()
    data = share(
        secret.owner.client, secret.id, recipient_type="user", recipient_id=recipient.user_id, max_access_count=1
    )
    assert recipient.client.sharing.accept(data["id"]).meta.status == 204
    assert_sdk_ok(recipient.client.sharing.access(data["id"]), 200)
    assert_sdk_error(recipient.client.sharing.access(data["id"]), 410)


def test_targeted_share_with_passphrase_needs_both(secret, signup_user, passphrase) -> None:
    recipient = signup_user()
    phrase = passphrase()
    data = share(
        secret.owner.client, secret.id, recipient_type="user", recipient_id=recipient.user_id, passphrase=phrase
    )
    assert recipient.client.sharing.accept(data["id"]).meta.status == 204
    assert_sdk_error(recipient.client.sharing.access(data["id"]), 403)
    assert assert_sdk_ok(recipient.client.sharing.access(data["id"], passphrase=phrase), 200)["value"] == secret.value


# --- targeted shares: agent -------------------------------------------------------------------------------------------


def test_agent_share_goes_to_that_agent(secret, make_agent, agent_sdk, stranger) -> None:
    agent = make_agent(stranger)  # an agent of another org: sharing crosses org lines
    bot = agent_sdk(agent.key)
    other_bot = agent_sdk(make_agent(stranger).key)
    data = share(secret.owner.client, secret.id, recipient_type="agent", recipient_id=agent.id)
    assert data["recipient_id"] == agent.id
    assert data["status"] == "pending"
    assert list(inbound(bot)) == [data["id"]]
    assert inbound(other_bot) == {}
    assert_sdk_error(bot.sharing.access(data["id"]), 403)
    assert_sdk_error(other_bot.sharing.accept(data["id"]), 404)
    assert_sdk_error(other_bot.sharing.access(data["id"]), 404)
    # A user with the agent's id in mind is not the agent.
    assert_sdk_error(stranger.client.sharing.accept(data["id"]), 404)
    assert bot.sharing.accept(data["id"]).meta.status == 204
    assert assert_sdk_ok(bot.sharing.access(data["id"]), 200)["value"] == secret.value


# --- targeted shares: external email ----------------------------------------------------------------------------------


def test_external_email_share_is_claimed_with_its_claim_token(secret, server, leak_watch, stranger) -> None:
    # The address alone is not enough: the recipient also needs the claim token the sharer got (issue 14, F2).
    email = f"ext-{uuid.uuid4().hex}@example.com"
    data = share(secret.owner.client, secret.id, recipient_type="external_email", email=email)
    leak_watch.track(data)
    assert data["recipient_type"] == "external_email"
    assert data["recipient_email"] == email
    assert data["status"] == "pending"
    assert data["claim_token"].startswith("shc_")
    assert_sdk_error(stranger.client.sharing.access(data["id"]), 404)
    assert_sdk_error(claim(stranger.client, data["id"], data["claim_token"]), 404)
    client, _ = sign_up(server, leak_watch, email)
    try:
        listed = inbound(client)
        assert list(listed) == [data["id"]]
        assert listed[data["id"]]["recipient_email"] == email
        assert_sdk_error(client.sharing.access(data["id"]), 403)
        assert_sdk_error(client.sharing.accept(data["id"]), 403)
        assert claim(client, data["id"], data["claim_token"]).meta.status == 204
        assert assert_sdk_ok(client.sharing.access(data["id"]), 200)["value"] == secret.value
    finally:
        client.close()


def test_recipient_email_field_is_accepted(secret, server, leak_watch) -> None:
    email = f"ext-{uuid.uuid4().hex}@example.com"
    resp = secret.owner.http.post(
        f"/v1/secrets/{secret.id}/share",
        json={"recipient_type": "external_email", "recipient_email": email, "expires_at": future(hours=1)},
    )
    assert resp.status_code == 201, resp.text
    assert leak_watch.track(resp.json())["recipient_email"] == email
    client, _ = sign_up(server, leak_watch, email)
    try:
        assert resp.json()["id"] in inbound(client)
    finally:
        client.close()


def test_external_email_share_to_an_existing_user(secret, stranger, leak_watch) -> None:
    data = leak_watch.track(
        share(secret.owner.client, secret.id, recipient_type="external_email", email=stranger.email))
    assert data["id"] in inbound(stranger.client)
    assert claim(stranger.client, data["id"], data["claim_token"]).meta.status == 204
    assert assert_sdk_ok(stranger.client.sharing.access(data["id"]), 200)["value"] == secret.value


# --- targeted shares: creator -----------------------------------------------------------------------------------------


def test_creator_share_goes_to_the_user_who_registered_the_agent(team, make_agent, agent_sdk, join_org) -> None:
    # The admin registers the agent; the owner grants it read. The share goes to the admin, not the owner.
    admin = join_org(team.owner, "admin")
    agent = make_agent(admin)
    assert_sdk_ok(
        team.owner.client.policies.create(
            team.vault, principal_type="agent", principal_id=agent.id, secret_path_pattern="team/a/**"
        ),
        201,
    )
    bot = agent_sdk(agent.key)
    data = share(bot, team.granted["id"], recipient_type="creator")
    assert data["recipient_type"] == "creator"
    assert data["recipient_id"] == admin.user_id
    assert data["status"] == "pending"
    assert data["id"] in inbound(admin.client)
    assert data["id"] not in inbound(team.owner.client)
    assert_sdk_error(team.owner.client.sharing.access(data["id"]), 404)
    assert_sdk_error(bot.sharing.access(data["id"]), 404)
    assert admin.client.sharing.accept(data["id"]).meta.status == 204
    opened = assert_sdk_ok(admin.client.sharing.access(data["id"]), 200)
    assert opened["path"] == "team/a/x"
    # The agent, as creator, revokes it.
    assert bot.sharing.revoke(data["id"]).meta.status == 204
    assert_sdk_error(admin.client.sharing.access(data["id"]), 404)


# --- lists -----------------------------------------------------------------------------------------------------------


def test_outbound_lists_only_the_callers_shares(secret, signup_user, canary) -> None:
    other = signup_user()
    other_vault = assert_sdk_ok(other.client.vaults.create("mine"), 201)["id"]
    other_secret = assert_sdk_ok(other.client.secrets.set(other_vault, "o/x", canary("SHARE-")), 201)
    mine = share(other.client, other_secret["id"])
    assert list(outbound(other.client)) == [mine["id"]]
    theirs = share(secret.owner.client, secret.id)
    assert theirs["id"] in outbound(secret.owner.client)
    assert mine["id"] not in outbound(secret.owner.client)
    item = outbound(other.client)[mine["id"]]
    for name in SHARE_FIELDS:
        assert name in item, (name, item)
    assert item["secret_path"] == "o/x"


def test_inbound_has_no_link_shares(secret, stranger) -> None:
    share(secret.owner.client, secret.id)
    assert inbound(stranger.client) == {}


def test_lists_need_a_token(anon) -> None:
    assert_problem(anon.get("/v1/shares/outbound"), 401)
    assert_problem(anon.get("/v1/shares/inbound"), 401)
