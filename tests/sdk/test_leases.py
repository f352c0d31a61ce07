"""Capability leases and the credential-injecting proxy (issue 23): ``POST /v1/vaults/{id}/leases`` and
``POST /v1/proxy``, against a real HTTPS receiver on 127.0.0.1 whose certificate a CA made by this test signs (the
server trusts it through ``KEYHOLD_OUTBOUND_CA_FILE``; private destinations need ``KEYHOLD_WEBHOOK_ALLOW_PRIVATE``,
so these tests run a server of their own on the session's backend and keystore).

The receiver records what arrives. The credential must arrive only on requests every caveat allows; refused requests
must not reach it at all; what it echoes must come back redacted; uses are exact under 32 concurrent callers; each
use is an audit event; the value appears in no response, audit event or log line."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import httpx
import mcp.client.stdio
import pytest

from conftest import KeyholdServer, make_tls_files, private_server
from support import PASSWORD, assert_problem

# ---------------------------------------------------------------------------
# The receiver
# ---------------------------------------------------------------------------


@dataclass
class Arrival:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTPS server on 127.0.0.1 that records each request and echoes it: the JSON body holds the method, path,
    headers and body it got, the ``X-Echo-Authorization`` header the Authorization it got; ``/gzip/…`` answers
    gzip-encoded, ``/big/…`` with a body of 17 MiB."""

    port: int
    ca: Path
    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    tls = make_tls_files(tmp_path_factory.mktemp("lease-receiver"), "receiver")
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            rec = state["r"]
            with rec.lock:
                rec.arrivals.append(Arrival(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            echo = json.dumps({
                "method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                "body": body.decode("utf-8", "replace"),
            }).encode()
            auth = self.headers.get("Authorization", "")
            if self.path.startswith("/v1/charges/big"):
                payload = b"x" * (17 << 20)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            encoded = self.path.startswith("/v1/charges/gzip")
            payload = gzip.compress(echo) if encoded else echo
            self.send_response(201 if self.command == "POST" else 200)
            self.send_header("Content-Type", "application/json")
            if encoded:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("X-Echo-Authorization", auth)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = do_PUT = handle_any

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls["cert"]), str(tls["key"]))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    state["r"] = Receiver(port=httpd.server_address[1], ca=tls["ca"])
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["r"]
    finally:
        httpd.shutdown()


@pytest.fixture(scope="module")
def proxy_server(server: KeyholdServer, receiver: Receiver, tmp_path_factory) -> Iterator[KeyholdServer]:
    env = {"KEYHOLD_WEBHOOK_ALLOW_PRIVATE": "true", "KEYHOLD_OUTBOUND_CA_FILE": str(receiver.ca)}
    with private_server(server, tmp_path_factory.mktemp("keyhold-leases"), env) as srv:
        yield srv


# ---------------------------------------------------------------------------
# Accounts
# ---------------------------------------------------------------------------


@dataclass
class World:
    srv: KeyholdServer
    owner: httpx.Client
    owner_token: str
    agent: httpx.Client
    agent_id: str
    agent_key: str
    vault: str
    value: str


def _client(srv: KeyholdServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=srv.url, timeout=60.0, headers={"Authorization": f"Bearer {token}"})


def make_world(srv: KeyholdServer, leak_watch, value: str | None = None) -> World:
    email = f"l-{uuid.uuid4().hex}@example.com"
    assert httpx.post(f"{srv.url}/v1/auth/signup", json={"email": email, "password": PASSWORD}).status_code == 200
    login = httpx.post(f"{srv.url}/v1/auth/token", json={"email": email, "password": PASSWORD})
    owner_token = leak_watch.track(login.json())["access_token"]
    owner = _client(srv, owner_token)
    vault = owner.post("/v1/vaults", json={"name": "payments"}).json()["id"]
    # A value with characters that encode differently in each form (space, slash, plus, quote).
    value = value or f"sk_live {uuid.uuid4().hex}/+\"x"
    leak_watch.values.add(value)
    assert owner.put(f"/v1/vaults/{vault}/secrets/stripe/key", json={"value": value, "type": "api_key"}).status_code in (200, 201)
    created = owner.post("/v1/agents", json={"name": "payer"})
    assert created.status_code == 201, created.text
    body = leak_watch.track(created.json())
    exchange = httpx.post(f"{srv.url}/v1/auth/agent-token", json={"api_key": body["api_key"]})
    assert exchange.status_code == 200, exchange.text
    agent = _client(srv, leak_watch.track(exchange.json())["access_token"])
    return World(srv, owner, owner_token, agent, body["agent"]["id"], body["api_key"], vault, value)


@pytest.fixture
def world(proxy_server: KeyholdServer, leak_watch) -> World:
    return make_world(proxy_server, leak_watch)


def lease(w: World, receiver: Receiver, leak_watch, **fields: Any) -> dict[str, Any]:
    body = {
        "path": "stripe/key", "principal_type": "agent", "principal_id": w.agent_id, "host": "127.0.0.1",
        "port": receiver.port, "methods": ["GET", "POST"], "path_prefix": "/v1/charges",
        "injection": {"type": "header", "name": "Authorization", "template": "Bearer {{value}}"}, "max_uses": 3,
        **fields,
    }
    resp = w.owner.post(f"/v1/vaults/{w.vault}/leases", json=body)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["token"].startswith("khl_")
    leak_watch.credentials.add(created["token"])
    return created


def proxy(client: httpx.Client, token: str, method: str, url: str, **fields: Any) -> httpx.Response:
    return client.post("/v1/proxy", json={"lease": token, "method": method, "url": url, **fields})


# ---------------------------------------------------------------------------
# Tokens attenuated by the holder, as a client library would (macaroon-style HMAC chain)
# ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def attenuate(token: str, caveat: str) -> str:
    parts = token[len("khl_"):].split(".")
    signature = hmac.new(_unb64(parts[-1]), caveat.encode(), hashlib.sha256).digest()
    return "khl_" + ".".join(parts[:-1] + [_b64(caveat.encode()), _b64(signature)])


def forms(value: str) -> list[str]:
    raw = value.encode()
    return [value, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("="), raw.hex(),
            urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)]


def assert_clean(resp: httpx.Response, value: str) -> None:
    """No form of the value in the response's bytes, headers, or in any string of its JSON body once decoded."""
    text = resp.text + json.dumps(dict(resp.headers))
    try:
        text += "\n".join(_strings(resp.json()))
    except ValueError:
        pass
    for form in forms(value):
        assert form not in text, f"a form of the value came back: {form!r}"


def _strings(body: Any) -> list[str]:
    if isinstance(body, str):
        return [body]
    if isinstance(body, dict):
        return [s for k, v in body.items() for s in _strings(k) + _strings(v)]
    if isinstance(body, list):
        return [s for item in body for s in _strings(item)]
    return []


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_the_holder_calls_the_api_with_the_credential_it_never_sees(world: World, receiver: Receiver, leak_watch) -> None:
    created = lease(world, receiver, leak_watch)
    assert created["uses"] == 0 and created["status"] == "active" and created["max_uses"] == 3
    before = receiver.count()
    resp = proxy(world.agent, created["token"], "POST", receiver.url("/v1/charges?amount=5"),
                 headers={"Content-Type": "application/json", "X-Request": "one"}, body='{"amount": 5}')
    assert resp.status_code == 201, resp.text
    assert resp.headers["keyhold-proxy"] == "upstream"
    # The upstream got the credential where the lease puts it, and the caller's own headers and body.
    arrival = receiver.arrivals[before]
    assert arrival.headers["authorization"] == f"Bearer {world.value}"
    assert arrival.method == "POST" and arrival.path == "/v1/charges?amount=5" and arrival.body == b'{"amount": 5}'
    assert arrival.headers["x-request"] == "one" and arrival.headers["accept-encoding"] == "identity"
    # What it echoed (body and header) comes back without the value in any form.
    assert_clean(resp, world.value)
    echoed = resp.json()
    assert echoed["headers"]["Authorization"] == "Bearer [REDACTED]"
    assert resp.headers["x-echo-authorization"] == "Bearer [REDACTED]"
    # The agent never had read access: reading the secret itself is refused.
    assert_problem(world.agent.get(f"/v1/vaults/{world.vault}/secrets/stripe/key"), (403, 404))
    listed = world.owner.get(f"/v1/vaults/{world.vault}/leases").json()["leases"]
    assert [(l["id"], l["uses"]) for l in listed] == [(created["id"], 1)] and "token" not in listed[0]


def test_a_request_outside_any_condition_is_refused_and_never_sent(world: World, receiver: Receiver, leak_watch) -> None:
    token = lease(world, receiver, leak_watch, max_uses=50)["token"]
    before = receiver.count()
    cases = [
        ("DELETE", receiver.url("/v1/charges/ch_1"), 403),
        ("GET", receiver.url("/v1/refunds"), 403),
        ("GET", receiver.url("/v1/chargesX"), 403),
        ("GET", f"https://localhost:{receiver.port}/v1/charges", 403),
        ("GET", f"https://127.0.0.1:{receiver.port + 1 if receiver.port < 65535 else 1}/v1/charges", 403),
        ("GET", f"http://127.0.0.1:{receiver.port}/v1/charges", 403),
        ("GET", receiver.url("/v1/charges/../refunds"), 400),
        ("GET", receiver.url("/v1/charges/%2e%2e/refunds"), 400),
        ("GET", receiver.url("/v1/charges/%2F..%2Frefunds"), 400),
        ("GET", f"https://user:pw@127.0.0.1:{receiver.port}/v1/charges", 400),
        ("get", receiver.url("/v1/charges"), 400),
    ]
    for method, url, status in cases:
        assert_problem(proxy(world.agent, token, method, url), status)
    # The caller may not set the injected header, nor framing headers.
    for name in ("Authorization", "authorization", "Host", "Content-Length", "Transfer-Encoding"):
        assert_problem(proxy(world.agent, token, "GET", receiver.url("/v1/charges"), headers={name: "x"}), 400)
    # Only the holder may use it: the owner who made it holds no use, and another agent neither.
    assert_problem(proxy(world.owner, token, "GET", receiver.url("/v1/charges")), 404)
    other = make_world(world.srv, leak_watch)
    assert_problem(proxy(other.agent, token, "GET", receiver.url("/v1/charges")), 404)
    assert receiver.count() == before, "a refused request reached the upstream"
    stored = world.owner.get(f"/v1/vaults/{world.vault}/leases").json()["leases"][0]
    assert stored["uses"] == 0
    denied = world.owner.get("/v1/audit/events", params={"action": "lease.use"}).json()["events"]
    # Each 403 above and the owner's attempt (the 400s are refused before the lease is looked at).
    assert len(denied) == 7 and all(e["details"].get("outcome") == "denied" for e in denied)


def test_paths_and_headers_an_upstream_could_read_otherwise_are_refused_before_a_use(
    world: World, receiver: Receiver, leak_watch
) -> None:
    """From an outside review: each of these reached the upstream with the credential, or spent a use for nothing."""
    token = lease(world, receiver, leak_watch, max_uses=50,
                  injection={"type": "header", "name": "X-Api-Key", "template": "{{value}}"})["token"]
    query_token = lease(world, receiver, leak_watch, injection={"type": "query", "name": "api_key"})["token"]
    before = receiver.count()
    for path in ["/v1/charges/%ff", "/v1/charges/%c0%ae%c0%ae/admin", "/v1/charges/..;/admin",
                 "/v1/charges/.;x/admin", "/v1/charges/%252e%252e/admin", "/v1/charges/..%20/admin",
                 "/v1/charges/%0d%0aX:1"]:
        assert_problem(proxy(world.agent, token, "GET", receiver.url(path)), 400)
    for headers in [{"Range": "bytes=0-7"}, {"X-HTTP-Method-Override": "DELETE"}, {"X-Original-URL": "/admin"},
                    {"X_Api_Key": "mine"}, {"x-api-key": "mine"}, {"X-A": "a\r\nX-Api-Key: mine"},
                    {"X-A": "a\x0bb"}]:
        assert_problem(proxy(world.agent, token, "GET", receiver.url("/v1/charges"), headers=headers), 400)
    assert_problem(proxy(world.agent, query_token, "GET", receiver.url("/v1/charges?api%5Fkey=mine")), 400)
    assert receiver.count() == before
    assert {l["uses"] for l in world.owner.get(f"/v1/vaults/{world.vault}/leases").json()["leases"]} == {0}


def test_a_value_that_cannot_go_in_a_header_spends_nothing_and_is_never_quoted(
    proxy_server: KeyholdServer, receiver: Receiver, leak_watch
) -> None:
    value = f"sk_live_{uuid.uuid4().hex}\x0b"
    w = make_world(proxy_server, leak_watch, value=value)
    token = lease(w, receiver, leak_watch)["token"]
    before = receiver.count()
    refused = proxy(w.agent, token, "GET", receiver.url("/v1/charges"))
    assert_problem(refused, 409)
    assert value.strip()[:16] not in refused.text and value.strip()[8:24] not in refused.text
    assert receiver.count() == before
    assert w.owner.get(f"/v1/vaults/{w.vault}/leases").json()["leases"][0]["uses"] == 0
    # The query injection percent-encodes it: that lease works.
    query = lease(w, receiver, leak_watch, injection={"type": "query", "name": "key"})["token"]
    assert proxy(w.agent, query, "GET", receiver.url("/v1/charges")).status_code == 200


def test_a_scoped_key_uses_no_lease_outside_its_scopes(world: World, receiver: Receiver, leak_watch) -> None:
    """A lease held by a person is usable with their unscoped token, not with an API key scoped to other paths."""
    me = world.owner.get("/v1/auth/me").json()
    token = lease(world, receiver, leak_watch, principal_type="user", principal_id=me["id"])["token"]
    created = world.owner.post("/v1/auth/api-keys", json={"name": "ci", "scopes": ["other/**"]})
    assert created.status_code == 201, created.text
    key = leak_watch.track(created.json())["api_key"]
    scoped = _client(world.srv, key)
    before = receiver.count()
    assert_problem(proxy(scoped, token, "GET", receiver.url("/v1/charges")), 403)
    assert receiver.count() == before
    assert proxy(world.owner, token, "GET", receiver.url("/v1/charges")).status_code == 200


def test_an_exhausted_expired_or_revoked_lease_is_gone(world: World, receiver: Receiver, leak_watch) -> None:
    token = lease(world, receiver, leak_watch, max_uses=2)["token"]
    for _ in range(2):
        assert proxy(world.agent, token, "GET", receiver.url("/v1/charges")).status_code == 200
    assert_problem(proxy(world.agent, token, "GET", receiver.url("/v1/charges")), 410)

    short = lease(world, receiver, leak_watch, ttl_seconds=1)["token"]
    time.sleep(1.2)
    assert_problem(proxy(world.agent, short, "GET", receiver.url("/v1/charges")), 410)

    revoked = lease(world, receiver, leak_watch)
    assert world.owner.delete(f"/v1/vaults/{world.vault}/leases/{revoked['id']}").status_code == 204
    before = receiver.count()
    assert_problem(proxy(world.agent, revoked["token"], "GET", receiver.url("/v1/charges")), 410)
    assert receiver.count() == before
    statuses = {l["id"]: l["status"] for l in world.owner.get(f"/v1/vaults/{world.vault}/leases").json()["leases"]}
    assert statuses[revoked["id"]] == "revoked"
    assert sorted(statuses.values()) == ["exhausted", "expired", "revoked"]


def test_a_holder_narrows_a_token_without_the_server_and_can_never_widen_it(
    world: World, receiver: Receiver, leak_watch
) -> None:
    token = lease(world, receiver, leak_watch, max_uses=10)["token"]
    narrow = attenuate(attenuate(token, "methods=GET"), "uses<=1")
    before = receiver.count()
    assert_problem(proxy(world.agent, narrow, "POST", receiver.url("/v1/charges")), 403)
    assert proxy(world.agent, narrow, "GET", receiver.url("/v1/charges")).status_code == 200
    assert_problem(proxy(world.agent, narrow, "GET", receiver.url("/v1/charges")), 410)
    # A token attenuated further from the narrow one shares its spent counter.
    assert_problem(proxy(world.agent, attenuate(narrow, "path_prefix=/v1/charges/x"), "GET",
                         receiver.url("/v1/charges/x")), 410)
    # The original token still has its own uses, and a different path prefix narrows it too.
    assert proxy(world.agent, attenuate(token, "path_prefix=/v1/charges/ch_1"), "GET",
                 receiver.url("/v1/charges/ch_1/capture")).status_code == 200
    assert_problem(proxy(world.agent, attenuate(token, "path_prefix=/v1/charges/ch_1"), "GET",
                         receiver.url("/v1/charges/ch_2")), 403)
    # Dropping a caveat, editing one, or a caveat the server does not know: refused.
    parts = narrow.split(".")
    dropped = ".".join(parts[:-2] + parts[-1:])
    assert_problem(proxy(world.agent, dropped, "POST", receiver.url("/v1/charges")), 403)
    edited = ".".join(parts[:-2] + [_b64(b"uses<=9"), parts[-1]])
    assert_problem(proxy(world.agent, edited, "GET", receiver.url("/v1/charges")), 403)
    assert_problem(proxy(world.agent, attenuate(token, "admin=true"), "GET", receiver.url("/v1/charges")), 403)
    # A caveat naming more than the lease allows grants nothing more.
    assert_problem(proxy(world.agent, attenuate(token, "methods=DELETE,GET"), "DELETE", receiver.url("/v1/charges")), 403)
    # A token of another lease's id with this one's signature chain does not verify either.
    other = lease(world, receiver, leak_watch)["token"]
    spliced = other.split(".")[0] + "." + ".".join(token.split(".")[1:])
    assert_problem(proxy(world.agent, spliced, "GET", receiver.url("/v1/charges")), 403)
    assert receiver.count() == before + 2


def test_the_value_is_redacted_in_every_encoding_the_upstream_echoes(
    proxy_server: KeyholdServer, receiver: Receiver, leak_watch
) -> None:
    w = make_world(proxy_server, leak_watch)
    # Query injection: the value travels percent-encoded in the URL and comes back in the echoed path.
    token = lease(w, receiver, leak_watch, injection={"type": "query", "name": "key"})["token"]
    resp = proxy(w.agent, token, "GET", receiver.url("/v1/charges?limit=1"))
    assert resp.status_code == 200, resp.text
    assert receiver.arrivals[-1].path == "/v1/charges?limit=1&key=" + urllib.parse.quote(w.value, safe="-._~")
    assert_clean(resp, w.value)
    assert "key=[REDACTED]" in resp.json()["path"]
    # Basic authentication: the upstream echoes the header, base64 of user:value.
    token = lease(w, receiver, leak_watch, injection={"type": "basic", "username": "api"})["token"]
    resp = proxy(w.agent, token, "GET", receiver.url("/v1/charges"))
    credential = base64.b64encode(f"api:{w.value}".encode()).decode()
    assert receiver.arrivals[-1].headers["authorization"] == "Basic " + credential
    assert credential not in resp.text and resp.headers["x-echo-authorization"] == "Basic [REDACTED]"
    assert_clean(resp, w.value)
    # The caller sends the value's encodings itself (guessing): they come back redacted too.
    token = lease(w, receiver, leak_watch)["token"]
    resp = proxy(w.agent, token, "POST", receiver.url("/v1/charges"), body=" ".join(forms(w.value)))
    assert resp.status_code == 201
    assert_clean(resp, w.value)
    # An encoded body could hide the value: refused with 502 (the use is spent and recorded).
    resp = proxy(w.agent, token, "GET", receiver.url("/v1/charges/gzip"))
    assert_problem(resp, 502)
    assert_clean(resp, w.value)
    # A body over the cap is refused before it is streamed.
    assert_problem(proxy(w.agent, token, "GET", receiver.url("/v1/charges/big")), 502)


def test_an_unreachable_upstream_is_a_502_and_recorded(world: World, receiver: Receiver, leak_watch) -> None:
    """Nothing listens on the lease's port: the use is spent (the request left) and its result names the failure."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    created = lease(world, receiver, leak_watch, port=closed)
    refused = assert_problem(proxy(world.agent, created["token"], "GET", f"https://127.0.0.1:{closed}/v1/charges"), 502)
    assert "connection" in refused["detail"]
    events = world.owner.get("/v1/audit/events", params={"resource_id": created["id"], "action": "lease.result"}).json()
    assert [e["details"]["outcome"] for e in events["events"]] == ["failed"]


def test_uses_are_exact_under_32_concurrent_callers(world: World, receiver: Receiver, leak_watch) -> None:
    token = lease(world, receiver, leak_watch, max_uses=5, path_prefix="/v1/charges/race")["token"]
    before = [a for a in receiver.arrivals if a.path.startswith("/v1/charges/race")]
    assert before == []
    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(
            lambda i: proxy(world.agent, token, "GET", receiver.url(f"/v1/charges/race/{i}")).status_code, range(32)))
    assert sorted(statuses).count(200) == 5 and statuses.count(410) == 27, statuses
    with receiver.lock:
        sent = [a for a in receiver.arrivals if a.path.startswith("/v1/charges/race")]
    assert len(sent) == 5
    leased = world.owner.get(f"/v1/vaults/{world.vault}/leases").json()["leases"]
    assert [l["uses"] for l in leased if l["path_prefix"] == "/v1/charges/race"] == [5]


def test_every_use_is_an_audit_event_without_the_value(world: World, receiver: Receiver, leak_watch) -> None:
    created = lease(world, receiver, leak_watch)
    for _ in range(2):
        assert proxy(world.agent, created["token"], "GET", receiver.url("/v1/charges/audited")).status_code == 200
    events = world.owner.get("/v1/audit/events", params={"resource_id": created["id"]}).json()["events"]
    by_action: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_action.setdefault(event["action"], []).append(event)
    assert len(by_action["lease.create"]) == 1
    uses = by_action["lease.use"]
    assert len(uses) == 2 and all(e["actor_id"] == world.agent_id for e in uses)
    assert sorted(e["details"]["uses"] for e in uses) == [1, 2]
    assert all(e["details"]["url_path"] == "/v1/charges/audited" and e["details"]["method"] == "GET" for e in uses)
    results = by_action["lease.result"]
    assert len(results) == 2 and all(e["details"]["upstream_status"] == 200 for e in results)
    assert all(e["details"]["redactions"] >= 1 for e in results)
    dump = json.dumps(events)
    for form in forms(world.value):
        assert form not in dump
    assert created["token"] not in dump


def test_creating_a_lease_needs_read_on_the_secret(world: World, receiver: Receiver, leak_watch) -> None:
    # The agent may not read the secret, so it may not lease it (to itself or anyone).
    resp = world.agent.post(f"/v1/vaults/{world.vault}/leases", json={
        "path": "stripe/key", "host": "127.0.0.1", "methods": ["GET"],
        "injection": {"type": "header", "name": "Authorization", "template": "Bearer {{value}}"}})
    assert_problem(resp, (403, 404))
    bad = [
        {"host": "*.com"}, {"host": "127.0.0.1/x"}, {"methods": []}, {"methods": ["get"]},
        {"path_prefix": "/v1/../x"}, {"path_prefix": "v1"}, {"max_uses": 0}, {"ttl_seconds": 0},
        {"injection": {"type": "header", "name": "Authorization", "template": "Bearer"}},
        {"injection": {"type": "header", "name": "Host", "template": "{{value}}"}},
        {"injection": {"type": "query", "name": "a&b"}}, {"injection": {"type": "cookie", "name": "x"}},
        {"principal_type": "agent"}, {"principal_type": "agent", "principal_id": str(uuid.uuid4())},
        {"path": "missing/secret", "_status": 404},
    ]
    for case in bad:
        status = case.pop("_status", 400)
        body = {"path": "stripe/key", "host": "127.0.0.1", "methods": ["GET"],
                "injection": {"type": "header", "name": "Authorization", "template": "Bearer {{value}}"}, **case}
        assert_problem(world.owner.post(f"/v1/vaults/{world.vault}/leases", json=body), status)
    assert world.owner.get(f"/v1/vaults/{world.vault}/leases").json()["leases"] == []


def test_the_session_server_refuses_private_destinations(user, vault, leak_watch) -> None:
    """Without --webhook-allow-private, a lease to 127.0.0.1 can be made but no request goes there."""
    value = f"sk_{uuid.uuid4().hex}"
    leak_watch.values.add(value)
    assert user.http.put(f"/v1/vaults/{vault}/secrets/api/key", json={"value": value}).status_code in (200, 201)
    resp = user.http.post(f"/v1/vaults/{vault}/leases", json={
        "path": "api/key", "host": "127.0.0.1", "port": 9, "methods": ["GET"],
        "injection": {"type": "header", "name": "X-Key", "template": "{{value}}"}})
    assert resp.status_code == 201, resp.text
    token = resp.json()["token"]
    leak_watch.credentials.add(token)
    refused = assert_problem(proxy(user.http, token, "GET", "https://127.0.0.1:9/x"), 403)
    assert "loopback" in refused["detail"]
    assert_problem(proxy(user.http, token, "GET", "http://127.0.0.1:9/x"), 403)
    assert resp.json()["uses"] == 0
    assert user.http.get(f"/v1/vaults/{vault}/leases").json()["leases"][0]["uses"] == 0


@pytest.mark.parametrize("args", [(), ("--no-reveal",)], ids=["reveal", "no-reveal"])
def test_an_agent_calls_the_api_through_mcp_without_seeing_the_credential(
    world: World, receiver: Receiver, leak_watch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    from test_mcp import Mcp

    # The MCP server sees only the variables given here (stdio_client would merge this process's environment).
    monkeypatch.setattr(mcp.client.stdio, "get_default_environment", lambda: {})
    token = lease(world, receiver, leak_watch, max_uses=2)["token"]
    runner = Mcp(world.srv, tmp_path, leak_watch)
    environment = {
        "KEYHOLD_URL": world.srv.url, "KEYHOLD_VAULT": world.vault, "KEYHOLD_AGENT_ID": world.agent_id,
        "KEYHOLD_AGENT_API_KEY": world.agent_key,
    }

    async def body(session: Any) -> tuple[Any, str, str, list[str]]:
        answer = await session.json(
            "proxy_request", lease=token, method="post", url=receiver.url("/v1/charges/mcp"),
            headers={"Content-Type": "application/json"}, body='{"amount": 7}')
        refused = await session.error("proxy_request", lease=token, method="DELETE", url=receiver.url("/v1/charges"))
        # The agent cannot read the secret itself (no policy), whatever the mode.
        denied = await session.error("get_secret", path="stripe/key")
        return answer, refused, denied, session.texts

    before = receiver.count()
    answer, refused, denied, texts = runner.run(environment, body, *args)
    assert answer["status"] == 201 and answer["headers"]["x-echo-authorization"] == "Bearer [REDACTED]"
    assert json.loads(answer["body"])["body"] == '{"amount": 7}'
    assert receiver.arrivals[before].headers["authorization"] == f"Bearer {world.value}"
    assert receiver.count() == before + 1
    assert refused.startswith("Proxy request refused (403)")
    # No policy lets the agent see the vault: 404 in 1Claw's words; in value-free mode the tool refuses first.
    if args:
        assert denied.startswith("Value-free mode"), denied
    else:
        assert denied == "No secret found at path 'stripe/key'."
    for text in texts:
        for form in forms(world.value):
            assert form not in text


#: The command `keyhold run --proxy` runs: a request with the lease's placeholder and one without, through the proxy
#: its environment names, trusting the CA in SSL_CERT_FILE; it prints what it saw, and whether a token or the value
#: reached its environment.
RUN_CHILD = r"""
import json, os, sys, urllib.request
placeholder = os.environ["KEYHOLD_LEASE_PLACEHOLDERS"]
request = urllib.request.Request(sys.argv[1], method="POST", data=b'{"n": 1}',
                                 headers={"Authorization": "Bearer " + placeholder, "Content-Type": "application/json"})
with urllib.request.urlopen(request) as answer:
    leased = {"status": answer.status, "auth": answer.headers.get("X-Echo-Authorization"), "body": answer.read().decode()}
with urllib.request.urlopen(urllib.request.Request(sys.argv[2], headers={"X-Plain": "yes"})) as answer:
    plain = {"status": answer.status, "auth": answer.headers.get("X-Echo-Authorization"), "body": answer.read().decode()}
tokens = [name for name, value in os.environ.items() if "khl_" in value]
# Without the proxy's credential (another local user who found the port): refused.
import http.client, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
bare = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=30)
bare.request("GET", sys.argv[2])
anonymous = bare.getresponse().status
print(json.dumps({"leased": leased, "plain": plain, "placeholder": placeholder, "token_variables": tokens,
                  "anonymous": anonymous, "proxy_user": proxy.username}))
"""


def test_keyhold_run_proxy_swaps_a_placeholder_for_a_lease_use(
    world: World, receiver: Receiver, leak_watch, tmp_path: Path
) -> None:
    created = lease(world, receiver, leak_watch, max_uses=1)
    # The CLI trusts the receiver's CA (for the request it forwards as it is) and, over TLS, the session's.
    trust = tmp_path / "trust.pem"
    trust.write_text("".join(Path(p).read_text() for p in {str(receiver.ca), os.environ.get("SSL_CERT_FILE") or str(receiver.ca)}))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "SSL_CERT_FILE": str(trust),
        "KEYHOLD_URL": world.srv.url, "KEYHOLD_AGENT_ID": world.agent_id, "KEYHOLD_AGENT_API_KEY": world.agent_key,
        "KEYHOLD_LEASES": created["token"],
    }
    before = receiver.count()
    proc = subprocess.run(
        [str(world.srv.binary), "run", "--proxy", "--", sys.executable, "-c", RUN_CHILD,
         receiver.url("/v1/charges/run"), receiver.url("/plain")],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["placeholder"] == f"keyhold-lease:{created['id']}" and seen["token_variables"] == []
    assert seen["anonymous"] == 407 and seen["proxy_user"] == "keyhold"
    # The leased request reached the upstream with the credential; the command saw it redacted.
    assert seen["leased"]["status"] == 201 and seen["leased"]["auth"] == "Bearer [REDACTED]"
    assert json.loads(seen["leased"]["body"])["body"] == '{"n": 1}'
    leased, plain = receiver.arrivals[before], receiver.arrivals[before + 1]
    assert leased.path == "/v1/charges/run" and leased.headers["authorization"] == f"Bearer {world.value}"
    # The other request went as it was: no credential added.
    assert plain.path == "/plain" and "authorization" not in plain.headers and plain.headers["x-plain"] == "yes"
    assert seen["plain"]["status"] == 200 and seen["plain"]["auth"] == ""
    for form in forms(world.value):
        assert form not in proc.stdout and form not in proc.stderr
    assert created["token"] not in proc.stdout and created["token"] not in proc.stderr
    assert world.owner.get(f"/v1/vaults/{world.vault}/leases").json()["leases"][0]["uses"] == 1


def test_the_lease_commands_create_narrow_list_and_revoke(world: World, receiver: Receiver, leak_watch, tmp_path: Path) -> None:
    """`keyhold lease` as a person runs it: create prints the token (once), `narrow` signs a caveat offline from stdin,
    list shows the uses, revoke ends it."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "KEYHOLD_URL": world.srv.url,
           "KEYHOLD_TOKEN": world.owner_token, "KEYHOLD_VAULT": world.vault}
    if "SSL_CERT_FILE" in os.environ:
        env["SSL_CERT_FILE"] = os.environ["SSL_CERT_FILE"]

    def keyhold(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(world.srv.binary), "lease", *args], env=env, input=stdin, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc

    created = keyhold("create", "stripe/key", "--host", "127.0.0.1", "--port", str(receiver.port), "--method", "GET",
                      "--method", "post", "--path-prefix", "/v1/charges", "--header", "Authorization: Bearer {{value}}",
                      "--max-uses", "3", "--agent", world.agent_id, "--description", "charges")
    token = created.stdout.strip()
    leak_watch.credentials.add(token)
    lease_id = created.stderr.split()[1].rstrip(":")
    assert token.startswith("khl_") and f"keyhold-lease:{lease_id}" in created.stderr
    narrow = keyhold("narrow", "--uses", "1", "--method", "GET", stdin=token + "\n").stdout.strip()
    leak_watch.credentials.add(narrow)
    assert narrow.startswith(token.rsplit(".", 1)[0] + ".") and narrow != token
    assert_problem(proxy(world.agent, narrow, "POST", receiver.url("/v1/charges")), 403)
    assert proxy(world.agent, narrow, "GET", receiver.url("/v1/charges")).status_code == 200
    assert_problem(proxy(world.agent, narrow, "GET", receiver.url("/v1/charges")), 410)
    assert proxy(world.agent, token, "POST", receiver.url("/v1/charges")).status_code == 201
    listed = keyhold("list").stdout
    assert lease_id in listed and "2/3" in listed and "active" in listed
    assert "Revoked" in keyhold("revoke", lease_id).stdout
    assert_problem(proxy(world.agent, token, "GET", receiver.url("/v1/charges")), 410)
    for output in (created.stdout + created.stderr, listed):
        for form in forms(world.value):
            assert form not in output


def test_the_value_is_in_no_log_line(proxy_server: KeyholdServer, leak_watch) -> None:
    log = proxy_server.log_path.read_text(errors="replace")
    for value in leak_watch.values:
        for form in forms(value):
            assert form not in log
    for credential in leak_watch.credentials:
        assert credential not in log
