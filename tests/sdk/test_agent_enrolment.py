"""Agents' self-enrolment (issue 19): ``POST /v1/agents/enroll`` needs no credential and addresses an
``agent_enroll`` approval request to the member with that email; only that member approves it (with
``X-Auth-Confirm``), which registers the agent and shows its key to them once. The answer never tells whether the
email is a member's, and requests are throttled per email and per client address. Through the real ``oneclaw``
SDK (``agents.enroll``, ``approvals.*``); raw HTTP for ``X-Auth-Confirm``, headers and malformed bodies."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from support import assert_problem, assert_sdk_error, assert_sdk_ok, is_uuid, run_together
from test_agent_identity_keys import check_ecdh_public_key, check_ssh_public_key, ecdh_path, keys_vault, ssh_path

RESPONSE_FIELDS = {"status", "expires_at", "message"}


def enrol(sdk_anon: Any, name: str, email: str, description: str = "") -> Any:
    """Enrols with an email no earlier request used (each test's member is its own), so a 429 can only be the
    per-client-address limit (5 at once, then 1 a second): it is waited out."""
    for _ in range(30):
        resp = sdk_anon.agents.enroll(name, human_email=email, description=description)
        if resp.meta.status != 429:
            return resp
        time.sleep(1)
    raise AssertionError("enrolment stayed throttled for 30 seconds")


def pending_enrolment(member: Any, name: str) -> dict[str, Any]:
    """The pending request an enrolment left for ``member``. The server records it after answering (so the answer
    takes as long whoever the email belongs to): it is waited for, at most 30 seconds."""
    deadline = time.monotonic() + 30
    while True:
        pending = assert_sdk_ok(member.client.approvals.list(status="pending"), 200)["approvals"]
        found = [a for a in pending if a["action"] == "agent_enroll" and a["summary"].get("name") == name]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(found) == 1, pending
    return found[0]


def decide(member: Any, approval_id: str, decision: str, confirm: str | None) -> httpx.Response:
    headers = {"X-Auth-Confirm": confirm} if confirm is not None else {}
    return member.http.post(f"/v1/approvals/{approval_id}/decide", json={"decision": decision}, headers=headers)


@pytest.fixture(scope="module")
def org(signup_user, join_org):
    owner = signup_user()
    return {"owner": owner, "admin": join_org(owner, "admin")}


@pytest.fixture
def member(org, join_org):
    """A member of the org of its own (an email takes one enrolment in 10 minutes)."""
    return join_org(org["owner"], "member")


def test_an_approved_enrolment_registers_the_agent_and_shows_its_key_once(
    org, member, sdk_anon, agent_sdk, leak_watch
) -> None:
    name = f"enrolled-{uuid.uuid4().hex[:8]}"
    resp = enrol(sdk_anon, name, member.email, "nightly report bot")
    body = assert_sdk_ok(resp, 202)
    assert body.keys() == RESPONSE_FIELDS and body["status"] == "pending"

    request = pending_enrolment(member, name)
    assert request["risk_tier"] == 2 and request["user_id"] == member.user_id
    assert request["target_type"] == "agent" and request["target_id"] == request["agent_id"]
    assert request["summary"]["description"] == "nightly report bot"
    agent_id = request["agent_id"]
    assert is_uuid(agent_id)
    # Not registered yet.
    assert_sdk_error(member.client.agents.get(agent_id), 404)

    # A tier 2 decision needs X-Auth-Confirm: without it, or with a wrong password, nothing is registered.
    assert_problem(decide(member, request["id"], "approve", None), 403)
    assert_problem(decide(member, request["id"], "approve", "not-the-password"), 403)
    assert_sdk_error(member.client.agents.get(agent_id), 404)

    approved = decide(member, request["id"], "approve", member.password)
    assert approved.status_code == 200, approved.text
    decided = leak_watch.track(approved.json())
    assert decided["status"] == "approved" and decided["decided_by"] == member.user_id
    key = decided["api_key"]
    assert key.startswith("ocv_")
    agent = decided["agent"]
    assert agent["id"] == agent_id and agent["name"] == name and agent["description"] == "nightly report bot"
    assert agent["is_active"] is True
    check_ssh_public_key(agent["ssh_public_key"])
    check_ecdh_public_key(agent["ecdh_public_key"])
    registered = assert_sdk_ok(member.client.agents.get(agent_id), 200)
    assert registered["created_by"] == member.user_id

    # The key is shown that once: neither the request nor a second decision carries it.
    again = assert_sdk_ok(member.client.approvals.get(request["id"]), 200)
    assert again["status"] == "approved" and "api_key" not in again and key not in str(again)
    assert_problem(decide(member, request["id"], "approve", member.password), 409)

    # The agent works, reads its own identity keys and nothing else.
    bot = agent_sdk(key)
    me = assert_sdk_ok(bot.agents.me(), 200)
    assert me["id"] == agent_id and me["ssh_public_key"] == agent["ssh_public_key"]
    vault_id = keys_vault(org["owner"].client)
    assert assert_sdk_ok(bot.secrets.get(vault_id, ssh_path(agent_id)), 200)["type"] == "ssh_key"
    assert assert_sdk_ok(bot.secrets.get(vault_id, ecdh_path(agent_id)), 200)["type"] == "private_key"
    other = assert_sdk_ok(org["owner"].client.vaults.create(f"v-{uuid.uuid4().hex[:8]}"), 201)["id"]
    assert_sdk_ok(org["owner"].client.secrets.set(other, "db/password", "s3cret-value"), 201)
    assert_sdk_error(bot.secrets.get(other, "db/password"), (403, 404))

    # The audit log says who approved and that the agent came from the enrolment, never its key.
    events = org["owner"].http.get("/v1/audit/events", params={"resource_id": agent_id}).json()["events"]
    registers = [e for e in events if e["action"] == "agent.register"]
    assert len(registers) == 1 and registers[0]["actor_id"] == member.user_id
    assert registers[0]["details"]["approval_id"] == request["id"] and registers[0]["details"]["via"] == "enrolment"
    assert key not in str(events)


def test_only_the_named_member_approves_and_owners_may_reject(org, member, sdk_anon) -> None:
    admin, owner = org["admin"], org["owner"]
    name = f"enrolled-{uuid.uuid4().hex[:8]}"
    assert_sdk_ok(enrol(sdk_anon, name, member.email), 202)
    request = pending_enrolment(member, name)
    # The org's admins and owners see it, but approving is the named member's.
    assert pending_enrolment(admin, name)["id"] == request["id"]
    body = assert_problem(decide(admin, request["id"], "approve", admin.password), 403)
    assert "member it names" in body["detail"]
    assert_problem(decide(owner, request["id"], "approve", owner.password), 403)
    assert_sdk_error(member.client.agents.get(request["agent_id"]), 404)
    # An admin may reject it; then the member cannot approve it.
    rejected = decide(admin, request["id"], "reject", admin.password)
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert "api_key" not in rejected.json()
    assert_problem(decide(member, request["id"], "approve", member.password), 409)
    assert_sdk_error(owner.client.agents.get(request["agent_id"]), 404)


def test_the_member_may_reject_and_nothing_is_registered(org, member, sdk_anon) -> None:
    name = f"enrolled-{uuid.uuid4().hex[:8]}"
    assert_sdk_ok(enrol(sdk_anon, name, member.email), 202)
    request = pending_enrolment(member, name)
    rejected = decide(member, request["id"], "reject", member.password)
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    names = {a["name"] for a in assert_sdk_ok(org["owner"].client.agents.list(), 200)["agents"]}
    assert name not in names


def test_the_answer_does_not_tell_whether_the_email_is_a_members(member, sdk_anon) -> None:
    known = assert_sdk_ok(enrol(sdk_anon, "probe", member.email), 202)
    unknown_email = f"nobody-{uuid.uuid4().hex}@example.com"
    unknown = assert_sdk_ok(enrol(sdk_anon, "probe", unknown_email), 202)
    assert known.keys() == unknown.keys() == RESPONSE_FIELDS
    assert known["status"] == unknown["status"] == "pending"
    assert known["message"].replace(member.email, "X") == unknown["message"].replace(unknown_email, "X")


def test_one_enrolment_per_email_in_ten_minutes(member, sdk_anon, base_url: str) -> None:
    def refused_for_the_email(address: str, field: str = "human_email") -> None:
        # The per-client-address limit (a wait of about a second) is checked first and waited out; the email's
        # limit then answers with a wait of about 10 minutes.
        for _ in range(30):
            resp = httpx.post(f"{base_url}/v1/agents/enroll", json={"name": "again", field: address}, timeout=30)
            assert_problem(resp, 429)
            if int(resp.headers["Retry-After"]) > 60:
                return
            time.sleep(1)
        raise AssertionError("no refusal for the email in 30 seconds")

    email = f"nobody-{uuid.uuid4().hex}@example.com"
    assert_sdk_ok(enrol(sdk_anon, "first", email), 202)
    # Also for the same address in other letter case, and for a member's address as for anyone's.
    refused_for_the_email(email)
    refused_for_the_email(email.upper())
    assert_sdk_ok(enrol(sdk_anon, f"enrolled-{uuid.uuid4().hex[:8]}", member.email), 202)
    refused_for_the_email(member.email, "email")


def test_one_client_address_is_throttled(base_url: str) -> None:
    # 5 at once, then 1 a second: 20 requests sent back to back meet the limit unless they took over 15 seconds
    # (earlier enrolments from this address may have met it already).
    statuses = []
    for _ in range(20):
        resp = httpx.post(
            f"{base_url}/v1/agents/enroll",
            json={"name": "burst", "human_email": f"nobody-{uuid.uuid4().hex}@example.com"}, timeout=30)
        statuses.append(resp.status_code)
        if resp.status_code == 429:
            assert_problem(resp, 429)
            assert int(resp.headers["Retry-After"]) >= 1
    assert 429 in statuses and set(statuses) <= {202, 429}, statuses


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"human_email": "a@example.com"}, "name"),
        ({"name": "", "human_email": "a@example.com"}, "name"),
        ({"name": "x" * 256, "human_email": "a@example.com"}, "name"),
        ({"name": "e\u0301" * 200, "human_email": "a@example.com"}, "name"),  # 200 characters, 600 bytes
        ({"name": "bot\u202e", "human_email": "a@example.com"}, "name"),
        ({"name": "bot"}, "human_email"),
        ({"name": "bot", "human_email": "not-an-address"}, "human_email"),
        ({"name": "bot", "human_email": "a@example.com", "description": "d" * 4097}, "description"),
        ({"name": "bot", "human_email": "a@example.com", "public_key": "ssh-ed25519 AAAAC3Nza"}, "public_key"),
        ({"name": 7, "human_email": "a@example.com"}, "name"),
    ],
)
def test_bad_enrolments_are_refused_naming_the_field(base_url: str, body: dict[str, Any], named: str) -> None:
    resp = httpx.post(f"{base_url}/v1/agents/enroll", json=body, timeout=30)
    problem = assert_problem(resp, 400)
    assert named in problem["detail"], problem


def test_approving_one_enrolment_at_once_makes_one_agent(org, member, sdk_anon) -> None:
    name = f"enrolled-{uuid.uuid4().hex[:8]}"
    assert_sdk_ok(enrol(sdk_anon, name, member.email), 202)
    request = pending_enrolment(member, name)
    answers = run_together(4, lambda _: decide(member, request["id"], "approve", member.password))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 409, 409, 409], [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            assert_problem(answer, 409)
    # One agent, whose identity keys were written once.
    agent_id = request["agent_id"]
    vault_id = keys_vault(org["owner"].client)
    for path in (ssh_path(agent_id), ecdh_path(agent_id)):
        versions = org["owner"].http.get(f"/v1/vaults/{vault_id}/secret-versions/{path}").json()["versions"]
        assert [v["version"] for v in versions] == [1], versions
