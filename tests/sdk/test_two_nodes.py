"""Two Keyhold nodes on one PostgreSQL database, driven concurrently through the SDK.

Needs ``KEYHOLD_TEST_DATABASE_URL`` (a cluster in which this test creates its own database; ``scripts/test``
starts one). Under CI the test fails rather than skips when the variable is missing.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import oneclaw
import pytest

from conftest import DEFAULT_BIN
from support import PASSWORD, assert_sdk_ok, bearer, refused_after_revoking_under_load, run_together
from test_leases import Receiver, receiver  # noqa: F401 (the HTTPS receiver fixture, for leases across nodes)

CLUSTER_URL = os.environ.get("KEYHOLD_TEST_DATABASE_URL", "")
if os.environ.get("KEYHOLD_SDK_BACKEND", "sqlite") != "postgres":
    pytest.skip("runs in the PostgreSQL pass of the suite", allow_module_level=True)
if not CLUSTER_URL:
    if os.environ.get("CI"):
        raise RuntimeError("KEYHOLD_TEST_DATABASE_URL is required in CI for the two-node test")
    pytest.skip("KEYHOLD_TEST_DATABASE_URL is not set", allow_module_level=True)

WRITERS = 24
READERS = 30
READ_LIMIT = 7
LEASE_USES = 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _psql(url: str, sql: str) -> None:
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True, capture_output=True)


def _database_url(name: str) -> str:
    parts = urlsplit(CLUSTER_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


class Node:
    def __init__(
        self, binary: str, database_url: str, master_key: str, workdir: Path, name: str, outbound_ca: Path
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        # The load tests send more than the default per-address limit from 127.0.0.1, as conftest's server allows;
        # the lease test sends through both nodes to an HTTPS receiver on 127.0.0.1 whose CA the test made.
        env = dict(
            os.environ, KEYHOLD_BCRYPT_COST="10", KEYHOLD_MASTER_KEY=master_key, KEYHOLD_RATE_LIMIT="5000",
            KEYHOLD_WEBHOOK_ALLOW_PRIVATE="true", KEYHOLD_OUTBOUND_CA_FILE=str(outbound_ca))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir",
                 str(workdir / name), "--database-url", database_url],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not become healthy: {self.log_path.read_text()[-4000:]}")

    def client(self, token: str | None = None, api_key: str | None = None) -> oneclaw.OneclawClient:
        return oneclaw.create_client(base_url=self.url, token=token, api_key=api_key)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def nodes(leak_watch, receiver: Receiver):
    binary = os.environ.get("KEYHOLD_BIN", str(DEFAULT_BIN))
    name = "kh_two_nodes_" + uuid.uuid4().hex[:12]
    _psql(CLUSTER_URL, f"CREATE DATABASE {name}")
    master_key = secrets.token_hex(32)
    workdir = Path(tempfile.mkdtemp(prefix="keyhold-two-nodes-"))
    started: list[Node] = []
    try:
        # Both start at once: migrations must be safe when two nodes race.
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [
                pool.submit(Node, binary, _database_url(name), master_key, workdir, n, receiver.ca) for n in ("a", "b")]
            started = [future.result() for future in futures]
        yield started
    finally:
        for node in started:
            node.stop()
        _psql(CLUSTER_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def owner(nodes, leak_watch):
    a, b = nodes
    email = f"two-{uuid.uuid4().hex[:10]}@example.com"
    assert_sdk_ok(a.client().auth.signup(email, PASSWORD), 200)
    login = a.client().auth.login(email, PASSWORD)
    token = assert_sdk_ok(login, 200)["access_token"]
    leak_watch.track(login.data)
    return token


def test_a_token_from_one_node_is_accepted_by_the_other(nodes, owner) -> None:
    a, b = nodes
    me = assert_sdk_ok(b.client(owner).auth.me(), 200)
    assert me["role"] == "owner"
    keys_a = httpx.get(a.url + "/.well-known/jwks.json").json()
    keys_b = httpx.get(b.url + "/.well-known/jwks.json").json()
    assert keys_a == keys_b


def test_versions_are_exact_across_nodes(nodes, owner, leak_watch) -> None:
    a, b = nodes
    vault = assert_sdk_ok(a.client(owner).vaults.create("two-nodes"), 201)["id"]
    clients = [a.client(owner), b.client(owner)]
    values = [f"TWO-NODE-{uuid.uuid4().hex}" for _ in range(WRITERS)]
    leak_watch.values.update(values)
    started = time.perf_counter()
    responses = run_together(WRITERS, lambda i: clients[i % 2].secrets.set(vault, "race/shared", values[i]))
    elapsed = time.perf_counter() - started
    assert Counter(r.meta.status for r in responses) == Counter({201: WRITERS})
    versions = sorted(r.data["version"] for r in responses)
    assert versions == list(range(1, WRITERS + 1))
    by_version = {r.data["version"]: values[i] for i, r in enumerate(responses)}
    for version in (1, WRITERS // 2, WRITERS):
        got = assert_sdk_ok(clients[version % 2].secrets.get_version(vault, "race/shared", version), 200)
        assert got["value"] == by_version[version]
    print(f"\n[two-node] {WRITERS} concurrent PUTs to one path over 2 nodes: versions 1..{WRITERS}, "
          f"{elapsed * 1000:.0f} ms in all")


def test_access_counts_are_exact_across_nodes(nodes, owner, leak_watch) -> None:
    a, b = nodes
    vault = assert_sdk_ok(a.client(owner).vaults.create("two-nodes-count"), 201)["id"]
    value = f"TWO-NODE-LIMITED-{uuid.uuid4().hex}"
    leak_watch.values.add(value)
    assert_sdk_ok(a.client(owner).secrets.set(vault, "limited", value, max_access_count=READ_LIMIT), 201)
    clients = [a.client(owner), b.client(owner)]
    responses = run_together(READERS, lambda i: clients[i % 2].secrets.get(vault, "limited"))
    statuses = Counter(r.meta.status for r in responses)
    assert statuses == Counter({200: READ_LIMIT, 410: READERS - READ_LIMIT}), statuses
    print(f"\n[two-node] {READERS} concurrent reads of a max_access_count={READ_LIMIT} secret over 2 nodes: "
          f"{statuses[200]} answered 200, {statuses[410]} answered 410")


def test_an_approval_lease_is_spent_exactly_across_nodes(nodes, owner, leak_watch) -> None:
    """An approved lease of LEASE_USES reads, raced by READERS reads through both nodes: exactly LEASE_USES 200s."""
    a, b = nodes
    people = a.client(owner)
    vault = assert_sdk_ok(people.vaults.create("two-nodes-approval"), 201)["id"]
    value = f"TWO-NODE-GATED-{uuid.uuid4().hex}"
    leak_watch.values.add(value)
    assert_sdk_ok(people.secrets.set(vault, "gated/db", value), 201)
    created = assert_sdk_ok(people.agents.create(f"two-node-agent-{uuid.uuid4().hex[:8]}"), 201)
    leak_watch.track(created)
    agent_id = created["agent"]["id"]
    assert_sdk_ok(
        people.policies.create(
            vault, principal_type="agent", principal_id=agent_id, secret_path_pattern="gated/*", permissions=["read"],
            conditions={"require_approval": True, "approval_max_uses": LEASE_USES}),
        201)
    agents = [a.client(api_key=created["api_key"]), b.client(api_key=created["api_key"])]
    for agent in agents:
        assert_sdk_ok(agent.agents.me(), 200)
        leak_watch.tokens.add(agent._http.get_token())
    refused = agents[1].secrets.get(vault, "gated/db")
    assert refused.meta.status == 403 and refused.error.type == "approval_required", refused
    request_id = assert_sdk_ok(b.client(owner).approvals.list(status="pending"), 200)["approvals"][0]["id"]
    assert_sdk_ok(b.client(owner).approvals.decide(request_id, "approve"), 200)
    responses = run_together(READERS, lambda i: agents[i % 2].secrets.get(vault, "gated/db"))
    statuses = Counter(r.meta.status for r in responses)
    assert statuses == Counter({200: LEASE_USES, 403: READERS - LEASE_USES}), statuses
    assert {r.data["value"] for r in responses if r.meta.status == 200} == {value}
    assert assert_sdk_ok(a.client(owner).approvals.get(request_id), 200)["uses_left"] == 0
    print(f"\n[two-node] {READERS} concurrent reads under a {LEASE_USES}-use approval lease over 2 nodes: "
          f"{statuses[200]} answered 200, {statuses[403]} answered 403")


def test_a_capability_lease_is_spent_exactly_across_nodes(nodes, owner, leak_watch, receiver: Receiver) -> None:
    """A lease of LEASE_USES uses, raced by 32 proxy calls through both nodes (24 of them through B): exactly
    LEASE_USES requests reach the upstream, and the others are refused (410) without reaching it."""
    a, b = nodes
    people = a.client(owner)
    vault = assert_sdk_ok(people.vaults.create("two-nodes-lease"), 201)["id"]
    value = f"TWO-NODE-LEASED-{uuid.uuid4().hex}"
    leak_watch.values.add(value)
    assert_sdk_ok(people.secrets.set(vault, "stripe/key", value), 201)
    created = assert_sdk_ok(people.agents.create(f"two-node-payer-{uuid.uuid4().hex[:8]}"), 201)
    leak_watch.track(created)
    prefix = f"/v1/charges/{uuid.uuid4().hex}"
    resp = httpx.post(f"{a.url}/v1/vaults/{vault}/leases", headers=bearer(owner), json={
        "path": "stripe/key", "principal_type": "agent", "principal_id": created["agent"]["id"], "host": "127.0.0.1",
        "port": receiver.port, "methods": ["GET"], "path_prefix": prefix, "max_uses": LEASE_USES,
        "injection": {"type": "header", "name": "Authorization", "template": "Bearer {{value}}"}})
    assert resp.status_code == 201, resp.text
    token = resp.json()["token"]
    leak_watch.credentials.add(token)
    agent_tokens = []
    for node in (a, b):
        exchange = httpx.post(f"{node.url}/v1/auth/agent-token", json={"api_key": created["api_key"]})
        agent_tokens.append(leak_watch.track(exchange.json())["access_token"])
    # Three calls in four go to B, which never opened a value of this vault (its key is not cached there), so most
    # spends of one lease wait for its row lock on one node while holding a connection each.
    def call(i: int) -> int:
        node = a if i % 4 == 0 else b
        return httpx.post(f"{node.url}/v1/proxy", headers=bearer(agent_tokens[0 if node is a else 1]), timeout=60, json={
            "lease": token, "method": "GET", "url": f"https://127.0.0.1:{receiver.port}{prefix}/{i}"}).status_code
    statuses = Counter(run_together(32, call))
    assert statuses == Counter({200: LEASE_USES, 410: 32 - LEASE_USES}), statuses
    with receiver.lock:
        sent = [arrival for arrival in receiver.arrivals if arrival.path.startswith(prefix)]
    assert len(sent) == LEASE_USES and {arrival.headers["authorization"] for arrival in sent} == {f"Bearer {value}"}
    print(f"\n[two-node] 32 concurrent proxy calls under a {LEASE_USES}-use capability lease over 2 nodes: "
          f"{statuses[200]} sent, {statuses[410]} answered 410")


def test_revocations_on_one_node_hold_on_the_other(nodes, owner, leak_watch) -> None:
    a, b = nodes
    vault = assert_sdk_ok(a.client(owner).vaults.create("two-nodes-revoke"), 201)["id"]
    assert_sdk_ok(a.client(owner).secrets.set(vault, "prod/db", "TWO-NODE-REVOKE-VALUE"), 201)
    leak_watch.values.add("TWO-NODE-REVOKE-VALUE")

    # Access token revoked on A: refused on B.
    email = f"two-r-{uuid.uuid4().hex[:10]}@example.com"
    assert_sdk_ok(a.client().auth.signup(email, PASSWORD), 200)
    second = assert_sdk_ok(a.client().auth.login(email, PASSWORD), 200)["access_token"]
    leak_watch.track({"access_token": second})
    assert b.client(second).auth.me().meta.status == 200
    assert httpx.delete(a.url + "/v1/auth/token", headers=bearer(second)).status_code == 204
    assert b.client(second).auth.me().meta.status == 401

    # API key deleted on B: refused on A, directly and through a token exchanged from it.
    created = httpx.post(b.url + "/v1/auth/api-keys", json={"name": "two-nodes"}, headers=bearer(owner)).json()
    leak_watch.track(created)
    key = created["api_key"]
    exchanged = httpx.post(a.url + "/v1/auth/api-key-token", json={"api_key": key}).json()["access_token"]
    leak_watch.track({"access_token": exchanged})
    assert httpx.get(a.url + f"/v1/vaults/{vault}", headers=bearer(key)).status_code == 200
    assert httpx.delete(b.url + f"/v1/auth/api-keys/{created['key']['id']}", headers=bearer(owner)).status_code == 204
    assert httpx.get(a.url + f"/v1/vaults/{vault}", headers=bearer(key)).status_code == 401
    assert httpx.get(a.url + f"/v1/vaults/{vault}", headers=bearer(exchanged)).status_code == 401

    # Agent with a policy made on A reads through B; policy deleted on B, refused on A; deactivated on A, refused on B.
    agent = httpx.post(a.url + "/v1/agents", json={"name": "two-nodes-bot"}, headers=bearer(owner)).json()
    leak_watch.track(agent)
    agent_id = agent["agent"]["id"]
    policy = httpx.post(a.url + f"/v1/vaults/{vault}/policies", headers=bearer(owner), json={
        "secret_path_pattern": "prod/**", "principal_type": "agent", "principal_id": agent_id,
        "permissions": ["read"]}).json()
    agent_client_b = b.client(api_key=agent["api_key"])
    agent_client_a = a.client(api_key=agent["api_key"])
    assert assert_sdk_ok(agent_client_b.secrets.get(vault, "prod/db"), 200)["value"] == "TWO-NODE-REVOKE-VALUE"
    assert assert_sdk_ok(agent_client_a.secrets.get(vault, "prod/db"), 200)["value"] == "TWO-NODE-REVOKE-VALUE"
    assert httpx.delete(b.url + f"/v1/vaults/{vault}/policies/{policy['id']}", headers=bearer(owner)).status_code == 204
    assert agent_client_a.secrets.get(vault, "prod/db").meta.status in (403, 404)
    policy = httpx.post(b.url + f"/v1/vaults/{vault}/policies", headers=bearer(owner), json={
        "secret_path_pattern": "prod/**", "principal_type": "agent", "principal_id": agent_id,
        "permissions": ["read"]}).json()
    assert agent_client_b.secrets.get(vault, "prod/db").meta.status == 200
    assert httpx.patch(a.url + f"/v1/agents/{agent_id}", json={"is_active": False}, headers=bearer(owner)).status_code == 200
    assert agent_client_b.secrets.get(vault, "prod/db").meta.status == 401


@pytest.mark.parametrize("how", ["policy_delete", "token_revoke", "deactivate"])
def test_a_revocation_on_one_node_holds_on_the_other_under_load(nodes, owner, leak_watch, how: str) -> None:
    """Readers on B with an agent's token, while A takes the access away: every request B gets after A answered is
    refused (each node keeps what authorization reads in memory, checked against the database's epoch)."""
    a, b = nodes
    vault = assert_sdk_ok(a.client(owner).vaults.create(f"two-nodes-load-{how}"), 201)["id"]
    assert_sdk_ok(a.client(owner).secrets.set(vault, "prod/db", "TWO-NODE-LOAD-VALUE"), 201)
    leak_watch.values.add("TWO-NODE-LOAD-VALUE")
    agent = httpx.post(a.url + "/v1/agents", json={"name": f"two-nodes-load-{how}"}, headers=bearer(owner)).json()
    leak_watch.track(agent)
    agent_id = agent["agent"]["id"]
    policy = httpx.post(a.url + f"/v1/vaults/{vault}/policies", headers=bearer(owner), json={
        "secret_path_pattern": "prod/**", "principal_type": "agent", "principal_id": agent_id,
        "permissions": ["read"]}).json()
    token = httpx.post(b.url + "/v1/auth/agent-token", json={"api_key": agent["api_key"]}).json()["access_token"]
    leak_watch.track({"access_token": token})

    def revoke() -> int:
        if how == "policy_delete":
            assert httpx.delete(a.url + f"/v1/vaults/{vault}/policies/{policy['id']}", headers=bearer(owner)).status_code == 204
            return 404
        if how == "token_revoke":
            assert httpx.delete(a.url + "/v1/auth/token", headers=bearer(token)).status_code == 204
            return 401
        assert httpx.patch(a.url + f"/v1/agents/{agent_id}", json={"is_active": False}, headers=bearer(owner)).status_code == 200
        return 401

    refused_after_revoking_under_load(f"{b.url}/v1/vaults/{vault}/secrets/prod/db", token, revoke)


def test_the_audit_chain_is_linear_and_valid_after_concurrent_load(nodes, owner) -> None:
    a, b = nodes
    result = assert_sdk_ok(b.client(owner).audit.verify(limit=10000), 200)
    assert result["chain_valid"] is True, result
    events = assert_sdk_ok(a.client(owner).audit.list(limit=1000), 200)["events"]
    sequences = sorted(e["sequence"] for e in events)
    assert sequences == list(range(1, len(sequences) + 1))
    assert result["events_verified"] == len(sequences)
    print(f"\n[two-node] audit chain valid over {result['events_verified']} events written by 2 nodes")


def test_zz_node_logs_hold_no_secret(nodes, leak_watch) -> None:
    for node in nodes:
        node.stop()
    secrets_used = (leak_watch.values | leak_watch.passwords | leak_watch.tokens | leak_watch.credentials) - {""}
    for node in nodes:
        log = node.log_path.read_text(errors="replace")
        assert "Keyhold is listening" in log
        leaked = [s[:12] + "..." for s in secrets_used if s in log]
        assert not leaked, f"{node.log_path.name} contains secrets: {leaked}"
        database_password = urlsplit(CLUSTER_URL).password
        assert database_password and database_password not in log, "the database password reached the log"
