"""Approvals (contract §1.12): a read under a policy with ``require_approval`` is refused with ``approval_required``
and a pending request; a person approves it, which mints a lease of ``approval_max_uses`` reads, exact under
concurrency; reject and cancel leave nothing usable; agents' own requests, risk tiers and ``X-Auth-Confirm``; an
approved policy change creates its policy. Through the real ``oneclaw`` SDK (``approvals.*`` and its
``ApprovalRequiredError``); raw HTTP only for headers and malformed requests."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from oneclaw.errors import ApprovalRequiredError

from support import assert_problem, assert_sdk_error, assert_sdk_ok, bearer, is_uuid, run_together

APPROVAL_FIELDS = {
    "id", "org_id", "user_id", "agent_id", "action", "target_type", "target_id", "risk_tier", "status", "summary",
    "created_at", "expires_at",
}


@pytest.fixture
def gated(user, vault: str, make_agent, agent_sdk, canary):
    """A secret, an agent and an allow policy on ``db/*`` that requires approval (2 uses)."""

    def make(max_uses: int = 2, path: str = "db/password") -> dict[str, Any]:
        value = canary()
        assert_sdk_ok(user.client.secrets.set(vault, path, value), 201)
        agent = make_agent(user)
        assert_sdk_ok(
            user.client.policies.create(
                vault, principal_type="agent", principal_id=agent.id, secret_path_pattern="db/*",
                permissions=["read"], conditions={"require_approval": True, "approval_max_uses": max_uses},
            ),
            201,
        )
        return {"agent": agent, "sdk": agent_sdk(agent.key), "value": value, "path": path}

    return make


def refused(client: Any, vault: str, path: str) -> str:
    """The read is refused with the SDK's ApprovalRequiredError; returns the request id it names."""
    resp = client.secrets.get(vault, path)
    assert resp.meta.status == 403 and resp.error.type == "approval_required", (resp.meta.status, resp.error)
    with pytest.raises(ApprovalRequiredError) as caught:
        client._http.request_or_throw("GET", f"/v1/vaults/{vault}/secrets/{path}")
    assert is_uuid(caught.value.approval_request_id)
    return caught.value.approval_request_id


def test_read_needs_approval_then_reads_exactly_the_allowed_uses(user, vault: str, gated, base_url: str) -> None:
    g = gated(max_uses=2)
    agent = g["sdk"]
    request_id = refused(agent, vault, g["path"])
    # A second attempt names the same pending request, not a new one.
    assert refused(agent, vault, g["path"]) == request_id
    raw = httpx.get(f"{base_url}/v1/vaults/{vault}/secrets/{g['path']}", headers=bearer(agent._http.get_token()))
    body = assert_problem(raw, 403)
    assert body["type"] == "approval_required" and body["approval_request_id"] == request_id
    assert g["value"] not in raw.text

    polled = assert_sdk_ok(agent.approvals.get(request_id), 200)
    assert APPROVAL_FIELDS <= polled.keys()
    assert polled["status"] == "pending" and polled["action"] == "secret_read"
    assert polled["target_type"] == "secret" and polled["target_id"] == g["path"]
    assert polled["agent_id"] == g["agent"].id and polled["user_id"] == user.user_id
    assert polled["risk_tier"] == 1 and polled["vault_id"] == vault

    pending = assert_sdk_ok(user.client.approvals.list(status="pending"), 200)["approvals"]
    assert request_id in [a["id"] for a in pending]

    decided = assert_sdk_ok(user.client.approvals.decide(request_id, "approve"), 200)
    assert decided["status"] == "approved" and decided["decided_by"] == user.user_id
    assert decided["uses_left"] == 2 and decided["lease_expires_at"]

    for _ in range(2):
        assert assert_sdk_ok(agent.secrets.get(vault, g["path"]), 200)["value"] == g["value"]
    # The lease is spent: the next read asks again, with a new request.
    again = refused(agent, vault, g["path"])
    assert again != request_id
    assert assert_sdk_ok(agent.approvals.get(request_id), 200)["uses_left"] == 0
    # Deciding a request that is no longer pending is a conflict.
    assert_sdk_error(user.client.approvals.decide(request_id, "approve"), 409)


def test_lease_uses_are_exact_under_concurrency(user, vault: str, gated, base_url: str) -> None:
    g = gated(max_uses=3)
    request_id = refused(g["sdk"], vault, g["path"])
    assert_sdk_ok(user.client.approvals.decide(request_id, "approve"), 200)
    token = g["sdk"]._http.get_token()
    url = f"{base_url}/v1/vaults/{vault}/secrets/{g['path']}"
    with httpx.Client(timeout=60.0, headers=bearer(token)) as client:
        statuses = run_together(12, lambda _: client.get(url).status_code)
    assert sorted(statuses) == [200] * 3 + [403] * 9, statuses


def test_reject_and_cancel_leave_nothing_usable(user, vault: str, gated) -> None:
    g = gated()
    agent = g["sdk"]
    first = refused(agent, vault, g["path"])
    rejected = assert_sdk_ok(user.client.approvals.decide(first, "reject"), 200)
    assert rejected["status"] == "rejected" and rejected["uses_left"] == 0
    second = refused(agent, vault, g["path"])
    assert second != first
    cancelled = assert_sdk_ok(agent.approvals.cancel(second, reason="not needed"), 200)
    assert cancelled["status"] == "cancelled"
    # First answer wins: cancelling again returns the request unchanged; deciding it is a conflict.
    assert assert_sdk_ok(agent.approvals.cancel(second), 200)["status"] == "cancelled"
    assert_sdk_error(user.client.approvals.decide(second, "approve"), 409)
    assert refused(agent, vault, g["path"]) not in (first, second)
    assert [a["status"] for a in assert_sdk_ok(user.client.approvals.list(status="rejected"), 200)["approvals"]
            if a["id"] == first] == ["rejected"]


def test_only_people_of_the_org_decide(user, other_user, vault: str, gated, join_org) -> None:
    g = gated()
    request_id = refused(g["sdk"], vault, g["path"])
    # The agent cannot decide its own request; a member it is not addressed to does not see it; another org neither.
    assert_sdk_error(g["sdk"].approvals.decide(request_id, "approve"), 403)
    member = join_org(user, "member")
    assert_sdk_error(member.client.approvals.get(request_id), 404)
    assert_sdk_error(member.client.approvals.decide(request_id, "approve"), 404)
    assert request_id not in [a["id"] for a in assert_sdk_ok(member.client.approvals.list(), 200)["approvals"]]
    assert_sdk_error(other_user.client.approvals.get(request_id), 404)
    assert_sdk_error(other_user.client.approvals.decide(request_id, "approve"), 404)
    # Agents do not list requests.
    assert_sdk_error(g["sdk"].approvals.list(), 403)
    assert assert_sdk_ok(g["sdk"].approvals.get(request_id), 200)["status"] == "pending"


def test_policy_conditions_are_validated(user, vault: str, make_agent) -> None:
    agent = make_agent(user)

    def create(permissions: list[str], conditions: dict[str, Any]) -> Any:
        return user.http.post(
            f"/v1/vaults/{vault}/policies",
            json={"secret_path_pattern": "db/*", "principal_type": "agent", "principal_id": agent.id,
                  "permissions": permissions, "conditions": conditions},
        )

    for permissions, conditions in [
        (["read", "write"], {"require_approval": True}),
        (["write"], {"require_approval": True}),
        (["read"], {"approval_max_uses": 2}),
        (["read"], {"require_approval": "yes"}),
        (["read"], {"require_approval": True, "approval_max_uses": 0}),
        (["read"], {"require_approval": True, "approval_ttl_seconds": 10}),
        (["read"], {"require_approval": True, "approval_ttl_seconds": 1.5}),
        (["read"], {"require_approval": True, "ip_allowlist": ["10.0.0.0/8"]}),
    ]:
        assert_problem(create(permissions, conditions), 400)
    assert [p for p in assert_sdk_ok(user.client.policies.list(vault), 200)["policies"]] == []
    ok = create(["read"], {"require_approval": True, "approval_ttl_seconds": 60, "approval_max_uses": 5})
    assert ok.status_code == 201, ok.text
    assert ok.json()["conditions"]["approval_max_uses"] == 5


def test_listing_and_versions_show_gated_paths_without_values(user, vault: str, gated) -> None:
    g = gated()
    listed = assert_sdk_ok(g["sdk"].secrets.list(vault), 200)
    assert [s["path"] for s in listed["secrets"]] == [g["path"]]
    assert g["value"] not in str(listed)


def test_agent_request_and_policy_change_need_confirmation(user, vault: str, make_agent, agent_sdk, base_url, canary) -> None:
    agent = make_agent(user)
    client = agent_sdk(agent.key)
    value = canary()
    assert_sdk_ok(user.client.secrets.set(vault, "app/token", value), 201)
    assert_sdk_error(client.secrets.get(vault, "app/token"), 404)  # no policy: the vault is not even visible

    # A plain request: 202 with Location, tier as declared (at least the server's own).
    plain = httpx.post(
        f"{base_url}/v1/approvals/request", headers=bearer(client._http.get_token()),
        json={"action": "deploy", "target_type": "service", "target_id": "billing", "summary": "ship it", "risk_tier": 2},
    )
    assert plain.status_code == 202, plain.text
    assert plain.headers["location"] == f"/v1/approvals/{plain.json()['id']}"
    assert plain.json()["risk_tier"] == 2 and plain.json()["summary"] == {"text": "ship it"}
    # People decide; they do not request.
    assert_sdk_error(user.client.approvals.request(action="deploy", target_type="s", target_id="x", summary="s"), 403)

    change = client.approvals.request(
        action="policy_change", target_type="vault", target_id=vault, summary="read app/*", reason="needs the token",
    )
    assert_sdk_error(change, 400)  # a policy change carries its policy
    payload = {"vault_id": vault, "secret_path_pattern": "app/*", "principal_type": "agent", "principal_id": agent.id,
               "permissions": ["read"]}
    resp = httpx.post(
        f"{base_url}/v1/approvals/request", headers=bearer(client._http.get_token()),
        json={"action": "policy_change", "target_type": "vault", "target_id": vault, "summary": {"why": "token"},
              "payload": payload, "risk_tier": 1},
    )
    assert resp.status_code == 202, resp.text
    change_id = resp.json()["id"]
    assert resp.json()["risk_tier"] == 3  # the server's own tier for a policy change wins over the declared one
    # What the person approves is the server's account of the payload, not the agent's words.
    summary = resp.json()["summary"]
    assert (summary["change"], summary["secret_path_pattern"], summary["permissions"]) == ("create policy", "app/*", ["read"])
    assert "why" not in summary and (resp.json()["target_type"], resp.json()["target_id"]) == ("policy", vault)

    decide = f"/v1/approvals/{change_id}/decide"
    assert_problem(user.http.post(decide, json={"decision": "approve"}), 403)
    assert_problem(user.http.post(decide, json={"decision": "approve"}, headers={"X-Auth-Confirm": "wrong-password"}), 403)
    assert_problem(user.http.post(decide, json={"decision": "maybe"}, headers={"X-Auth-Confirm": user.password}), 400)
    assert client.secrets.get(vault, "app/token").meta.status == 404  # nothing applied yet
    approved = user.http.post(decide, json={"decision": "approve"}, headers={"X-Auth-Confirm": user.password})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert assert_sdk_ok(client.secrets.get(vault, "app/token"), 200)["value"] == value
    policies = assert_sdk_ok(user.client.policies.list(vault), 200)["policies"]
    assert [(p["secret_path_pattern"], p["principal_id"]) for p in policies] == [("app/*", agent.id)]


def test_malformed_requests_are_400(user, make_agent, agent_sdk, base_url) -> None:
    client = agent_sdk(make_agent(user).key)
    headers = bearer(client._http.get_token())
    for body in [
        {},
        {"action": "deploy", "target_type": "s", "target_id": "x", "summary": "s", "risk_tier": 9},
        {"action": "Deploy Now", "target_type": "s", "target_id": "x", "summary": "s"},
        {"action": "secret_read", "target_type": "secret", "target_id": "x", "summary": "s"},
        {"action": "deploy", "target_type": "", "target_id": "x", "summary": "s"},
        {"action": "deploy", "target_type": "s", "target_id": "x", "summary": 5},
        {"action": "policy_change", "target_type": "vault", "target_id": "x", "summary": "s",
         "payload": {"vault_id": str(uuid.uuid4()), "secret_path_pattern": "a/*", "principal_type": "agent",
                     "principal_id": str(uuid.uuid4()), "permissions": ["read"]}},
    ]:
        assert_problem(httpx.post(f"{base_url}/v1/approvals/request", headers=headers, json=body), 400)
    assert_problem(user.http.get("/v1/approvals", params={"status": "bogus"}), 400)
    assert_problem(user.http.get("/v1/approvals", params={"limit": "0"}), 400)
    assert_problem(user.http.get(f"/v1/approvals/{uuid.uuid4()}"), 404)
    assert_problem(user.http.get("/v1/approvals/not-a-uuid"), 404)
    assert_problem(httpx.get(f"{base_url}/v1/approvals/quick-decide", params={"token": "qd_x", "decision": "approved"}), 404)
    assert_problem(httpx.get(f"{base_url}/v1/approvals/quick-decide", params={"token": "qd_x", "decision": "later"}), 400)


def test_audit_records_the_request_decision_and_lease_use(user, vault: str, gated) -> None:
    g = gated(max_uses=1)
    request_id = refused(g["sdk"], vault, g["path"])
    assert_sdk_ok(user.client.approvals.decide(request_id, "approve"), 200)
    assert_sdk_ok(g["sdk"].secrets.get(vault, g["path"]), 200)
    events = assert_sdk_ok(user.client.audit.list(resource_id=request_id), 200)["events"]
    actions = sorted(e["action"] for e in events)
    assert actions == ["approval.decide", "approval.lease_use", "approval.request"], actions
    assert g["value"] not in str(events)


def test_a_decider_with_mfa_confirms_tier_3_with_a_fresh_totp_code(mfa_user, make_agent, agent_sdk, base_url) -> None:
    user, totp, recovery = mfa_user()
    vault = assert_sdk_ok(user.client.vaults.create(f"mfa-{uuid.uuid4().hex[:8]}"), 201)["id"]
    agent = make_agent(user)
    headers = bearer(agent_sdk(agent.key)._http.get_token())

    def policy_change(pattern: str) -> str:
        payload = {"vault_id": vault, "secret_path_pattern": pattern, "principal_type": "agent", "principal_id": agent.id,
                   "permissions": ["read"]}
        resp = httpx.post(
            f"{base_url}/v1/approvals/request", headers=headers,
            json={"action": "policy_change", "target_type": "vault", "target_id": vault, "summary": {}, "payload": payload},
        )
        assert resp.status_code == 202 and resp.json()["risk_tier"] == 3, resp.text
        return resp.json()["id"]

    first, second = policy_change("a/*"), policy_change("b/*")
    decide = lambda id, confirm: user.http.post(  # noqa: E731
        f"/v1/approvals/{id}/decide", json={"decision": "approve"}, headers={"X-Auth-Confirm": confirm})
    # With MFA on, tier 3 takes a TOTP code only: not the password, not a recovery code, not a wrong code.
    for confirm in (user.password, recovery[0], "000000" if totp.now() != "000000" else "111111"):
        assert_problem(decide(first, confirm), 403)
    code = totp.at(time.time() + 30)
    assert decide(first, code).status_code == 200
    # The step is spent: the same code does not confirm a second decision, which stays pending.
    assert_problem(decide(second, code), 403)
    assert assert_sdk_ok(user.client.approvals.get(second), 200)["status"] == "pending"
    patterns = [p["secret_path_pattern"] for p in assert_sdk_ok(user.client.policies.list(vault), 200)["policies"]]
    assert patterns == ["a/*"]


def test_a_gated_agent_cannot_lift_its_own_gate(user, make_agent, agent_sdk, canary) -> None:
    agent = make_agent(user)
    client = agent_sdk(agent.key)
    vault = assert_sdk_ok(client.vaults.create(f"agent-made-{uuid.uuid4().hex[:8]}"), 201)["id"]
    value = canary()
    assert_sdk_ok(client.secrets.set(vault, "db/password", value), 201)
    gate = assert_sdk_ok(
        user.client.policies.create(
            vault, principal_type="agent", principal_id=agent.id, secret_path_pattern="**", permissions=["read"],
            conditions={"require_approval": True}),
        201)
    refused(client, vault, "db/password")
    # The agent owns the vault, yet may neither remove nor loosen the policy that gates it.
    assert_sdk_error(client.policies.delete(vault, gate["id"]), 403)
    assert_sdk_error(client.policies.update(vault, gate["id"], conditions=None, permissions=["read"]), 403)
    loosen = client._http.request("PUT", f"/v1/vaults/{vault}/policies/{gate['id']}", body={"conditions": {"require_approval": True, "approval_max_uses": 1000}})
    assert loosen.meta.status == 403, loosen
    refused(client, vault, "db/password")
    # The request is addressed to no person (the vault's creator is an agent): the org's owners decide it.
    request_id = refused(client, vault, "db/password")
    assert assert_sdk_ok(client.approvals.get(request_id), 200).get("user_id") is None
    # A person who manages the vault may remove it.
    assert_sdk_ok(user.client.policies.delete(vault, gate["id"]), 204)
    assert assert_sdk_ok(client.secrets.get(vault, "db/password"), 200)["value"] == value


def test_a_person_may_end_an_approved_lease_early(user, vault: str, gated) -> None:
    g = gated(max_uses=5)
    request_id = refused(g["sdk"], vault, g["path"])
    assert_sdk_ok(user.client.approvals.decide(request_id, "approve"), 200)
    assert_sdk_ok(g["sdk"].secrets.get(vault, g["path"]), 200)
    # The requester cancelling an approved request changes nothing (the first answer wins) ...
    assert assert_sdk_ok(g["sdk"].approvals.cancel(request_id), 200)["uses_left"] == 4
    # ... but a person who may decide it ends the lease.
    ended = assert_sdk_ok(user.client.approvals.cancel(request_id, reason="approved by mistake"), 200)
    assert (ended["status"], ended["uses_left"]) == ("cancelled", 0)
    assert refused(g["sdk"], vault, g["path"]) != request_id
    events = assert_sdk_ok(user.client.audit.list(resource_id=request_id, action="approval.revoke"), 200)["events"]
    assert len(events) == 1


def test_a_gated_secret_is_leased_only_under_an_approval(user, vault: str, gated, base_url: str, leak_watch) -> None:
    """Creating a capability lease is a read of the secret: under a policy that requires approval, it asks for one,
    and the approved request's use mints the lease (issue 23)."""
    g = gated(max_uses=1)
    headers = bearer(g["sdk"]._http.get_token())
    body = {"path": g["path"], "host": "api.example.com", "methods": ["GET"],
            "injection": {"type": "header", "name": "Authorization", "template": "Bearer {{value}}"}}
    first = httpx.post(f"{base_url}/v1/vaults/{vault}/leases", json=body, headers=headers)
    problem = assert_problem(first, 403)
    assert problem["type"] == "approval_required" and is_uuid(problem["approval_request_id"])
    assert_sdk_ok(user.client.approvals.decide(problem["approval_request_id"], "approve"), 200)
    created = httpx.post(f"{base_url}/v1/vaults/{vault}/leases", json=body, headers=headers)
    assert created.status_code == 201, created.text
    leak_watch.credentials.add(created.json()["token"])
    assert created.json()["principal_id"] == g["agent"].id
    # The approval's one use went to the lease: another lease needs another approval.
    again = assert_problem(httpx.post(f"{base_url}/v1/vaults/{vault}/leases", json=body, headers=headers), 403)
    assert again["type"] == "approval_required" and again["approval_request_id"] != problem["approval_request_id"]
    assert g["value"] not in first.text + created.text
