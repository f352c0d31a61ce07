"""Signed webhooks (contract §1.11, issue 18): registration with the real ``oneclaw`` SDK's ``webhooks.*``, and
deliveries to a real HTTP receiver that this test runs on 127.0.0.x: signatures checked here with hmac, no value in a
payload, retries after a failing receiver (same delivery id), redelivery after a Keyhold crash, ``*`` and event
filters, deactivation, other orgs, agents, the SSRF guard and the deliveries list.

Deliveries to 127.0.0.x need ``--webhook-allow-private``: those tests use a server of this module's own (the
session's backend and keystore) started with ``KEYHOLD_WEBHOOK_ALLOW_PRIVATE=true``; the session server, without
the flag, shows the guard. Every wait polls for the awaited thing with a generous deadline (a hang, not speed)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import oneclaw
import pytest

from conftest import SDK_BACKEND, KeyholdServer, _free_port, private_server
from support import PASSWORD, assert_problem, assert_sdk_error, assert_sdk_ok, is_uuid

#: How long a delivery may take to arrive before the test gives up (a hang, not a latency requirement).
DEADLINE_S = 90.0


# ---------------------------------------------------------------------------
# The receiver
# ---------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """An HTTP receiver on 127.0.0.x: records every request; answers the statuses queued in ``answers`` first,
    then 200."""

    host: str
    port: int
    requests: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()))
                    status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def of_event(self, event: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.headers.get("keyhold-event") == event]

    def wait_for(self, predicate, what: str) -> Any:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            with self.lock:
                found = predicate(list(self.requests))
            if found:
                return found
            time.sleep(0.02)
        pytest.fail(f"the receiver did not get {what} within {DEADLINE_S:.0f} s; it got {len(self.requests)} requests")


_next_host = [10]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    _next_host[0] += 1
    rec = Receiver(host=f"127.0.0.{_next_host[0] % 250 + 2}", port=_free_port())
    rec.start()
    try:
        yield rec
    finally:
        rec.stop()


def verify_signature(secret: str, received: Received) -> dict[str, Any]:
    """What a receiver does: recompute HMAC-SHA256 over "<t>.<raw body>", compare in constant time, check t."""
    parts = dict(item.split("=", 1) for item in received.headers["keyhold-signature"].split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"]), "the signature does not verify"
    assert abs(time.time() - timestamp) < 300, "the signature's timestamp is outside the 5-minute tolerance"
    assert received.headers["content-type"] == "application/json"
    payload = json.loads(received.body)
    assert payload["id"] == received.headers["keyhold-delivery"]
    assert payload["event"] == received.headers["keyhold-event"]
    return payload


# ---------------------------------------------------------------------------
# A server that allows private destinations, on the session's backend and keystore
# ---------------------------------------------------------------------------


def _psql(url: str, sql: str) -> None:
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def hooks(server: KeyholdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyholdServer]:
    with private_server(server, tmp_path_factory.mktemp("keyhold-webhooks"), {"KEYHOLD_WEBHOOK_ALLOW_PRIVATE": "true"}) as srv:
        yield srv


@dataclass
class Account:
    client: Any
    http: httpx.Client
    token: str


def sign_up(srv: KeyholdServer, leak_watch) -> Account:
    email = f"w-{uuid.uuid4().hex}@example.com"
    assert httpx.post(f"{srv.url}/v1/auth/signup", json={"email": email, "password": PASSWORD}).status_code == 200
    login = httpx.post(f"{srv.url}/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    token = leak_watch.track(login.json())["access_token"]
    return Account(
        client=oneclaw.create_client(base_url=srv.url, token=token),
        http=httpx.Client(base_url=srv.url, timeout=30.0, headers={"Authorization": f"Bearer {token}"}),
        token=token)


@pytest.fixture
def owner(hooks: KeyholdServer, leak_watch) -> Iterator[Account]:
    account = sign_up(hooks, leak_watch)
    try:
        yield account
    finally:
        account.client.close()
        account.http.close()


def create(account: Account, url: str, events: list[str], leak_watch, **kwargs: Any) -> dict[str, Any]:
    body = assert_sdk_ok(account.client.webhooks.create(url, events, **kwargs), 201)
    leak_watch.credentials.add(body["secret"])
    return body


def new_vault(account: Account) -> str:
    return assert_sdk_ok(account.client.vaults.create(f"v-{uuid.uuid4().hex[:10]}"), 201)["id"]


def deliveries(account: Account, webhook_id: str) -> list[dict[str, Any]]:
    resp = account.http.get(f"/v1/webhooks/{webhook_id}/deliveries")
    assert resp.status_code == 200, resp.text
    return resp.json()["deliveries"]


def wait_delivery(account: Account, webhook_id: str, predicate, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        for delivery in deliveries(account, webhook_id):
            if predicate(delivery):
                return delivery
        time.sleep(0.05)
    pytest.fail(f"no delivery {what} within {DEADLINE_S:.0f} s: {deliveries(account, webhook_id)!r}")


# ---------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------


def test_create_shows_the_secret_once_and_lists_without_it(owner: Account, receiver: Receiver, leak_watch) -> None:
    created = create(owner, receiver.url, ["secret.created", "secret.updated"], leak_watch)
    assert is_uuid(created["id"])
    assert created["secret"].startswith("whsec_") and len(created["secret"]) == 6 + 43
    assert created["url"] == receiver.url and created["is_active"] is True
    assert created["events"] == ["secret.created", "secret.updated"]
    listed = assert_sdk_ok(owner.client.webhooks.list(), 200)["webhooks"]
    assert [w["id"] for w in listed] == [created["id"]]
    assert "secret" not in listed[0]
    got = assert_sdk_ok(owner.client.webhooks.get(created["id"]), 200)
    assert "secret" not in got and got["events"] == created["events"]


def test_the_secret_is_sealed_at_rest(hooks: KeyholdServer, owner: Account, receiver: Receiver, leak_watch) -> None:
    created = create(owner, receiver.url, ["*"], leak_watch)
    rows = hooks.rows(f"SELECT * FROM webhooks WHERE id = '{created['id']}'")
    assert len(rows) == 1
    stored = rows[0]["secret"]
    raw = bytes.fromhex(stored[2:]) if isinstance(stored, str) else bytes(stored)
    assert created["secret"].encode() not in raw and created["secret"] not in json.dumps(rows, default=str)
    assert len(raw) >= len(created["secret"]) + 28  # nonce and tag around the ciphertext


def test_caller_secret_is_used_and_signs(owner: Account, receiver: Receiver, leak_watch) -> None:
    secret = "my-own-secret-" + uuid.uuid4().hex
    created = create(owner, receiver.url, ["*"], leak_watch, secret=secret)
    assert created["secret"] == secret
    resp = owner.http.post(f"/v1/webhooks/{created['id']}/test")
    assert resp.status_code == 202, resp.text
    delivery_id = resp.json()["delivery_id"]
    got = receiver.wait_for(lambda rs: [r for r in rs if r.headers.get("keyhold-delivery") == delivery_id], "the test event")
    payload = verify_signature(secret, got[0])
    assert payload["event"] == "webhook.test"
    assert_sdk_error(owner.client.webhooks.create(receiver.url, ["*"], secret="short"), 400)


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://127.0.0.1:9/x", "events": []},
        {"url": "http://127.0.0.1:9/x", "events": ["secret.nope"]},
        {"url": "ftp://example.com/x", "events": ["*"]},
        {"url": "http://127.0.0.1:9/" + "x" * 3000, "events": ["*"]},
        {"url": "http://127.0.0.1:9/x", "events": ["*"], "description": "d" * 501},
        {"url": "not a url", "events": ["*"]},
        {"url": 5, "events": ["*"]},
        {"events": ["*"]},
        {"url": "http://127.0.0.1:9/x", "events": "*"},
        {"url": "https://user:pw@example.com/x", "events": ["*"]},
        {"url": "http://8.8.8.8/x", "events": ["*"]},
    ],
)
def test_bad_input_is_400_problem(owner: Account, body: dict[str, Any]) -> None:
    assert_problem(owner.http.post("/v1/webhooks", json=body), 400)


def test_patch_and_delete(owner: Account, receiver: Receiver, leak_watch) -> None:
    created = create(owner, receiver.url, ["secret.deleted"], leak_watch)
    updated = assert_sdk_ok(
        owner.client.webhooks.update(created["id"], events=["policy.changed", "secret.deleted"], description="d"), 200)
    assert updated["events"] == ["policy.changed", "secret.deleted"] and updated["description"] == "d"
    assert "secret" not in updated
    assert_problem(owner.http.patch(f"/v1/webhooks/{created['id']}", json={"events": ["bogus"]}), 400)
    assert_problem(owner.http.patch(f"/v1/webhooks/{created['id']}", json={"url": "ftp://x/y"}), 400)
    resp = owner.client.webhooks.delete(created["id"])
    assert resp.meta.status == 204
    assert_sdk_error(owner.client.webhooks.get(created["id"]), 404)
    assert_sdk_error(owner.client.webhooks.delete(created["id"]), 404)


def test_another_orgs_webhook_is_404(owner: Account, hooks: KeyholdServer, receiver: Receiver, leak_watch) -> None:
    created = create(owner, receiver.url, ["*"], leak_watch)
    stranger = sign_up(hooks, leak_watch)
    try:
        assert_sdk_error(stranger.client.webhooks.get(created["id"]), 404)
        assert_sdk_error(stranger.client.webhooks.update(created["id"], is_active=False), 404)
        assert_sdk_error(stranger.client.webhooks.delete(created["id"]), 404)
        assert_problem(stranger.http.get(f"/v1/webhooks/{created['id']}/deliveries"), 404)
        assert_problem(stranger.http.post(f"/v1/webhooks/{created['id']}/test"), 404)
        assert assert_sdk_ok(stranger.client.webhooks.list(), 200)["webhooks"] == []
    finally:
        stranger.client.close()
        stranger.http.close()
    assert assert_sdk_ok(owner.client.webhooks.get(created["id"]), 200)["is_active"] is True


def test_agents_members_and_scoped_keys_are_403(user, join_org, make_agent, agent_sdk) -> None:
    agent = make_agent(user)
    client = agent_sdk(agent.key, agent_id=agent.id)
    assert_sdk_error(client.webhooks.list(), 403)
    assert_sdk_error(client.webhooks.create("https://example.com/hook", ["*"]), 403)
    member = join_org(user, "member")
    assert_sdk_error(member.client.webhooks.list(), 403)
    key = user.http.post("/v1/auth/api-keys", json={"name": "scoped", "scopes": ["**"]})
    assert key.status_code == 201, key.text
    scoped = httpx.Client(base_url=str(user.http.base_url), headers={"Authorization": f"Bearer {key.json()['api_key']}"})
    with scoped:
        assert_problem(scoped.get("/v1/webhooks"), 403)
        assert_problem(scoped.post("/v1/webhooks", json={"url": "https://example.com/h", "events": ["*"]}), 403)


def test_ssrf_guard_without_the_flag(user) -> None:
    """The session server runs without --webhook-allow-private."""
    for url in ["http://127.0.0.1:8080/hook", "https://127.0.0.1/hook", "https://10.1.2.3/hook",
                "https://[::1]/hook", "https://169.254.169.254/latest", "https://[fd00:ec2::254]/",
                "https://100.64.0.1/", "https://0.0.0.0/", "http://example.com/hook", "https://localhost/hook"]:
        assert_problem(user.http.post("/v1/webhooks", json={"url": url, "events": ["*"]}), 400)
    created = user.http.post("/v1/webhooks", json={"url": "https://example.com/hook", "events": ["*"]})
    assert created.status_code == 201, created.text
    webhook_id = created.json()["id"]
    assert_problem(user.http.patch(f"/v1/webhooks/{webhook_id}", json={"url": "https://192.168.1.1/"}), 400)
    assert user.http.delete(f"/v1/webhooks/{webhook_id}").status_code == 204


def test_a_host_resolving_to_loopback_fails_at_delivery_without_the_flag(user, vault: str) -> None:
    """`2130706433` is no IP literal by its text, so creation takes it as a host name; the resolver reads it as
    127.0.0.1, and delivery refuses the loopback address it resolved, as a failed attempt with a clear error."""
    created = user.http.post("/v1/webhooks", json={"url": "https://2130706433/hook", "events": ["secret.created"]})
    assert created.status_code == 201, created.text
    webhook_id = created.json()["id"]
    try:
        assert user.client.secrets.set(vault, f"ssrf/{uuid.uuid4().hex[:8]}", "v").meta.status in (200, 201)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            listed = user.http.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["deliveries"]
            if listed and listed[0]["attempts"] >= 1 and listed[0]["last_error"]:
                break
            assert time.monotonic() < deadline, listed
            time.sleep(0.05)
        assert listed[0]["status"] == "pending" and listed[0]["delivered_at"] is None
        assert "refused" in listed[0]["last_error"] and "loopback" in listed[0]["last_error"], listed[0]
        assert listed[0]["last_status_code"] is None
    finally:
        user.http.delete(f"/v1/webhooks/{webhook_id}")


# ---------------------------------------------------------------------------
# Deliveries
# ---------------------------------------------------------------------------


def test_a_secret_change_reaches_the_receiver_signed_without_the_value(
    owner: Account, receiver: Receiver, leak_watch
) -> None:
    hook = create(owner, receiver.url, ["secret.created", "secret.updated", "secret.deleted"], leak_watch)
    vault = new_vault(owner)
    value = "canary-" + uuid.uuid4().hex
    leak_watch.values.add(value)
    path = f"db/{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    assert owner.client.secrets.set(vault, path, value).meta.status in (200, 201)
    first = receiver.wait_for(lambda rs: [r for r in rs if r.headers.get("keyhold-event") == "secret.created"],
                              "secret.created")[0]
    latency_ms = (first.at - started) * 1000
    print(f"\nwebhook latency from the write's request to the receiver: {latency_ms:.1f} ms")
    payload = verify_signature(hook["secret"], first)
    assert payload["data"]["path"] == path and payload["data"]["vault_id"] == vault and payload["data"]["version"] == 1
    assert is_uuid(payload["org_id"]) and is_uuid(payload["id"])
    assert value.encode() not in first.body
    assert owner.client.secrets.set(vault, path, value + "-2").meta.status in (200, 201)
    leak_watch.values.add(value + "-2")
    second = receiver.wait_for(lambda rs: [r for r in rs if r.headers.get("keyhold-event") == "secret.updated"],
                               "secret.updated")[0]
    assert verify_signature(hook["secret"], second)["data"]["version"] == 2
    assert value.encode() not in second.body
    # Reads are not events; the webhook did not subscribe to policies.
    assert owner.client.secrets.get(vault, path).meta.status == 200
    assert owner.client.secrets.delete(vault, path).meta.status in (200, 204)
    receiver.wait_for(lambda rs: [r for r in rs if r.headers.get("keyhold-event") == "secret.deleted"], "secret.deleted")
    events = [r.headers["keyhold-event"] for r in receiver.requests]
    assert events == ["secret.created", "secret.updated", "secret.deleted"], events
    listed = wait_delivery(owner, hook["id"], lambda d: d["event"] == "secret.deleted" and d["status"] == "delivered",
                           "delivered")
    assert listed["attempts"] == 1 and listed["last_status_code"] == 200 and listed["delivered_at"]
    assert {d["status"] for d in deliveries(owner, hook["id"])} == {"delivered"}


def test_an_approval_request_reaches_the_receiver_with_single_use_quick_decide_links(
    owner: Account, receiver: Receiver, hooks: KeyholdServer, leak_watch
) -> None:
    hook = create(owner, receiver.url, ["approval.requested", "approval.decided"], leak_watch)
    vault = new_vault(owner)
    value = "canary-" + uuid.uuid4().hex
    leak_watch.values.add(value)
    assert owner.client.secrets.set(vault, "gated/db", value).meta.status == 201
    created = assert_sdk_ok(owner.client.agents.create(f"hooked-{uuid.uuid4().hex[:8]}"), 201)
    leak_watch.track(created)
    agent_id = created["agent"]["id"]
    assert_sdk_ok(owner.client.policies.create(
        vault, principal_type="agent", principal_id=agent_id, secret_path_pattern="gated/*", permissions=["read"],
        conditions={"require_approval": True}), 201)
    agent = oneclaw.create_client(base_url=hooks.url, api_key=created["api_key"])
    try:
        refused = agent.secrets.get(vault, "gated/db")
        assert refused.meta.status == 403 and refused.error.type == "approval_required", refused
        requested = receiver.wait_for(lambda rs: [r for r in rs if r.headers.get("keyhold-event") == "approval.requested"],
                                      "approval.requested")[0]
        data = verify_signature(hook["secret"], requested)["data"]
        assert (data["action"], data["target_id"], data["vault_id"], data["risk_tier"]) == ("secret_read", "gated/db", vault, 1)
        links = data["quick_decide"]
        approve = urlsplit(links["approve_url"])
        token = dict(part.split("=", 1) for part in approve.query.split("&"))["token"]
        leak_watch.tokens.add(token)
        assert links["reject_url"] == links["approve_url"].replace("decision=approved", "decision=rejected")
        assert value.encode() not in requested.body
        # The link decides without a session (302 to the console's page), once.
        answer = httpx.get(f"{hooks.url}{approve.path}?{approve.query}", follow_redirects=False)
        assert answer.status_code == 302, answer.text
        assert answer.headers["location"].endswith(f"/approvals/{data['resource_id']}?decided=true")
        assert_problem(httpx.get(f"{hooks.url}{approve.path}?{approve.query}"), 409)
        forged = approve.query.replace(token, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
        assert_problem(httpx.get(f"{hooks.url}{approve.path}?{forged}"), 404)
        assert assert_sdk_ok(agent.secrets.get(vault, "gated/db"), 200)["value"] == value
        decided = receiver.wait_for(lambda rs: [r for r in rs if r.headers.get("keyhold-event") == "approval.decided"],
                                    "approval.decided")[0]
        decision = verify_signature(hook["secret"], decided)["data"]
        assert (decision["status"], decision.get("via")) == ("approved", "quick_decide")
        assert "quick_decide" not in decision and token.encode() not in decided.body
    finally:
        agent.close()


@pytest.mark.skipif(SDK_BACKEND != "sqlite", reason="edits the SQLite database directly (as test_audit_tamper does)")
def test_a_broken_audit_chain_is_an_audit_verify_failed_delivery(
    owner: Account, receiver: Receiver, hooks: KeyholdServer, leak_watch
) -> None:
    hook = create(owner, receiver.url, ["audit.verify_failed"], leak_watch)
    org_id = owner.http.get("/v1/auth/me").json()["org_id"]
    new_vault(owner)
    assert assert_sdk_ok(owner.client.audit.verify(), 200)["chain_valid"] is True
    conn = sqlite3.connect(hooks.data_dir / "keyhold.sqlite", timeout=30, isolation_level=None)
    try:
        conn.execute("UPDATE audit_events SET details = '{\"edited\": true}' WHERE org_id = ? AND seq = 1", (org_id,))
    finally:
        conn.close()
    # Every verification that finds the chain broken says so, however often it is asked (the event goes to the
    # server's own chain, not onto the broken one).
    for _ in range(2):
        result = assert_sdk_ok(owner.client.audit.verify(), 200)
        assert result["chain_valid"] is False and result["broken_at_event_id"], result
    received = receiver.wait_for(lambda rs: [r for r in rs if r.headers.get("keyhold-event") == "audit.verify_failed"],
                                 "audit.verify_failed")[0]
    payload = verify_signature(hook["secret"], received)
    assert payload["org_id"] == org_id and payload["data"]["org_id"] == org_id
    assert payload["data"]["resource_id"] == result["broken_at_event_id"] and payload["data"]["reason"]


def test_retries_after_500_keep_the_delivery_id(owner: Account, receiver: Receiver, leak_watch) -> None:
    hook = create(owner, receiver.url, ["secret.created"], leak_watch)
    receiver.answers.extend([500, 503])
    vault = new_vault(owner)
    assert owner.client.secrets.set(vault, "retry/me", "v").meta.status in (200, 201)
    got = receiver.wait_for(lambda rs: rs if len(rs) >= 3 else None, "three attempts")
    assert len({r.headers["keyhold-delivery"] for r in got}) == 1
    for attempt in got:
        verify_signature(hook["secret"], attempt)
    delivered = wait_delivery(owner, hook["id"], lambda d: d["status"] == "delivered", "delivered")
    assert delivered["attempts"] == 3 and delivered["id"] == got[0].headers["keyhold-delivery"]


def test_star_and_event_filters(owner: Account, receiver: Receiver, hooks: KeyholdServer, leak_watch) -> None:
    other = Receiver(host=receiver.host, port=_free_port())
    other.start()
    try:
        everything = create(owner, receiver.url, ["*"], leak_watch)
        policies_only = create(owner, other.url, ["policy.changed"], leak_watch)
        vault = new_vault(owner)
        assert owner.client.secrets.set(vault, "star/x", "v").meta.status in (200, 201)
        agent = assert_sdk_ok(owner.client.agents.create(f"a-{uuid.uuid4().hex[:8]}"), 201)
        leak_watch.track(agent)
        assert_sdk_ok(owner.client.policies.create(
            vault, principal_type="agent", principal_id=agent["agent"]["id"], secret_path_pattern="**"), 201)
        receiver.wait_for(lambda rs: {"secret.created", "agent.created", "policy.changed"}
                          <= {r.headers["keyhold-event"] for r in rs}, "the three events")
        # Two policy changes: the agent's own policy on its identity keys (made with it, issue 19) and the one above.
        got = other.wait_for(lambda rs: rs if len(rs) >= 2 else None, "policy.changed twice")
        assert [r.headers["keyhold-event"] for r in got] == ["policy.changed", "policy.changed"]
        vaults = {verify_signature(policies_only["secret"], r)["data"]["vault_id"] for r in got}
        assert vault in vaults and len(vaults) == 2
        for received in receiver.requests:
            verify_signature(everything["secret"], received)
        assert agent["api_key"].encode() not in b"".join(r.body for r in receiver.requests)
    finally:
        other.stop()


def test_inactive_webhook_gets_nothing(owner: Account, receiver: Receiver, leak_watch) -> None:
    off = Receiver(host=receiver.host, port=_free_port())
    off.start()
    try:
        stopped = create(owner, off.url, ["secret.created"], leak_watch)
        assert assert_sdk_ok(owner.client.webhooks.update(stopped["id"], is_active=False), 200)["is_active"] is False
        witness = create(owner, receiver.url, ["secret.created"], leak_watch)
        vault = new_vault(owner)
        assert owner.client.secrets.set(vault, "off/x", "v").meta.status in (200, 201)
        # The witness got the event, so it was queued and sent; the inactive webhook got none, and none is queued.
        receiver.wait_for(lambda rs: rs, "the witness delivery")
        wait_delivery(owner, witness["id"], lambda d: d["status"] == "delivered", "delivered")
        assert off.requests == []
        assert deliveries(owner, stopped["id"]) == []
        assert_problem(owner.http.post(f"/v1/webhooks/{stopped['id']}/test"), 409)
    finally:
        off.stop()


def test_events_are_audited_without_the_secret(owner: Account, receiver: Receiver, leak_watch) -> None:
    hook = create(owner, receiver.url, ["*"], leak_watch)
    owner.client.webhooks.update(hook["id"], description="x")
    owner.http.post(f"/v1/webhooks/{hook['id']}/test")
    owner.client.webhooks.delete(hook["id"])
    events = owner.http.get("/v1/audit/events", params={"resource_id": hook["id"]}).json()["events"]
    assert {"webhook.create", "webhook.update", "webhook.test", "webhook.delete"} <= {e["action"] for e in events}
    assert hook["secret"] not in json.dumps(events)


def _sigkill(srv: KeyholdServer) -> None:
    assert srv.proc is not None and srv.proc.poll() is None
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(timeout=10)
    srv.proc = None


def test_redelivery_after_a_crash(hooks: KeyholdServer, owner: Account, leak_watch) -> None:
    port = _free_port()
    down = Receiver(host="127.0.0.9", port=port)  # nothing listens yet: every attempt fails to connect
    hook = create(owner, down.url, ["secret.created"], leak_watch)
    vault = new_vault(owner)
    assert owner.client.secrets.set(vault, "crash/x", "v").meta.status in (200, 201)
    wait_delivery(owner, hook["id"], lambda d: d["attempts"] >= 1 and d["last_error"], "attempted")
    _sigkill(hooks)
    hooks.start()
    down.start()
    try:
        got = down.wait_for(lambda rs: rs, "the delivery after the restart")
        payload = verify_signature(hook["secret"], got[0])
        assert payload["event"] == "secret.created" and payload["data"]["path"] == "crash/x"
        delivered = wait_delivery(owner, hook["id"], lambda d: d["status"] == "delivered", "delivered")
        assert delivered["attempts"] >= 2 and delivered["id"] == payload["id"]
    finally:
        down.stop()


@pytest.mark.skipif(SDK_BACKEND != "postgres", reason="two nodes share one PostgreSQL database: the PostgreSQL pass")
def test_two_nodes_send_each_delivery_once(server: KeyholdServer, tmp_path: Path, leak_watch, receiver: Receiver) -> None:
    """Two nodes on one database, both running the dispatcher: writes on either node reach the receiver, each
    delivery from one node only (claims are leased under FOR UPDATE SKIP LOCKED)."""
    cluster = os.environ["KEYHOLD_TEST_DATABASE_URL"]
    database = "kh_hooks2_" + uuid.uuid4().hex[:12]
    _psql(cluster, f"CREATE DATABASE {database}")
    parts = urlsplit(cluster)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + database, "", ""))
    master_key = os.urandom(32).hex()
    nodes = []
    try:
        for name in ("a", "b"):
            node = KeyholdServer(server.binary, tmp_path / name, tmp_path / f"{name}.log", _free_port())
            node.env = {"KEYHOLD_WEBHOOK_ALLOW_PRIVATE": "true", "KEYHOLD_MASTER_KEY": master_key}
            node.backend, node.database_url = "postgres", url
            node.options += ["--database-url", url]
            node.start()
            nodes.append(node)
        account = sign_up(nodes[0], leak_watch)
        on_b = oneclaw.create_client(base_url=nodes[1].url, token=account.token)
        try:
            hook = create(account, receiver.url, ["secret.created"], leak_watch)
            vault = new_vault(account)
            writes = 30
            for index in range(writes):
                client = account.client if index % 2 == 0 else on_b
                assert client.secrets.set(vault, f"two/{index}", "v").meta.status in (200, 201)
            got = receiver.wait_for(lambda rs: rs if len({r.headers["keyhold-delivery"] for r in rs}) >= writes else None,
                                    f"{writes} deliveries")
            ids = [r.headers["keyhold-delivery"] for r in got]
            assert len(set(ids)) == writes
            paths = set()
            for received in got:
                paths.add(verify_signature(hook["secret"], received)["data"]["path"])
            assert paths == {f"two/{index}" for index in range(writes)}
            # Wait until every row says delivered, then count: no delivery reached the receiver twice.
            deadline = time.monotonic() + DEADLINE_S
            while not all(d["status"] == "delivered" for d in deliveries(account, hook["id"])):
                assert time.monotonic() < deadline, deliveries(account, hook["id"])
                time.sleep(0.05)
            assert len(deliveries(account, hook["id"])) == writes
            with receiver.lock:
                assert len(receiver.requests) == writes, [r.headers["keyhold-delivery"] for r in receiver.requests]
            assert all(d["attempts"] == 1 for d in deliveries(account, hook["id"]))
        finally:
            on_b.close()
            account.client.close()
            account.http.close()
    finally:
        for node in nodes:
            node.stop()
        _psql(cluster, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
