"""``--metrics``: ``GET /metrics`` in Prometheus's text format, parsed with ``prometheus_client``'s parser —
requests by route template and status with latency histograms, storage commits and group sizes (SQLite), keystore
calls, webhook deliveries, what is stored and the process's memory. No label holds a path, a secret's name, an
email or a token. Off by default; ``--metrics-listen`` serves it on a listener of its own instead."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import httpx
import oneclaw
from prometheus_client.parser import text_string_to_metric_families

from conftest import SDK_BACKEND, _free_port, private_server
from support import PASSWORD, assert_problem, assert_sdk_ok


TOKEN = "scrape-token-" + uuid.uuid4().hex


def scrape(url: str, token: str | None = TOKEN) -> dict[str, list]:
    resp = httpx.get(url, timeout=30, headers={"Authorization": f"Bearer {token}"} if token else {})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family.samples for family in text_string_to_metric_families(resp.text)}


def exercise(url: str) -> dict[str, str]:
    """A person signs up, makes a vault and writes and reads a secret; returns what must never be a label."""
    email = f"metrics-{uuid.uuid4().hex}@example.com"
    client = oneclaw.create_client(base_url=url)
    assert_sdk_ok(client.auth.signup(email, PASSWORD), 200)
    token = assert_sdk_ok(client.auth.login(email, PASSWORD), 200)["access_token"]
    client.close()
    headers = {"Authorization": f"Bearer {token}"}
    vault = httpx.post(f"{url}/v1/vaults", json={"name": "metrics"}, headers=headers, timeout=30).json()["id"]
    path, value = f"team-{uuid.uuid4().hex[:8]}/db-password", f"METRICS-CANARY-{uuid.uuid4().hex}"
    assert httpx.put(f"{url}/v1/vaults/{vault}/secrets/{path}", json={"value": value}, headers=headers, timeout=30).status_code == 201
    assert httpx.get(f"{url}/v1/vaults/{vault}/secrets/{path}", headers=headers, timeout=30).status_code == 200
    assert httpx.get(f"{url}/v1/vaults/{vault}/secrets/nothing-here", headers=headers, timeout=30).status_code == 404
    return {"email": email, "token": token, "path": path, "value": value, "vault": vault}


def test_metrics_are_off_by_default(base_url: str) -> None:
    assert httpx.get(f"{base_url}/metrics", timeout=30).status_code == 404


def test_a_scrape_has_requests_storage_keystore_and_process_figures(server, tmp_path: Path) -> None:
    with private_server(server, tmp_path, options=["--metrics"], env={"KEYHOLD_METRICS_TOKEN": TOKEN}) as srv:
        secret = exercise(srv.url)
        # Only with the scrape token.
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Bearer {secret['token']}"}):
            assert_problem(httpx.get(f"{srv.url}/metrics", headers=headers, timeout=30), 401)
        text = httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).text
        families = scrape(f"{srv.url}/metrics")
    requests = families["keyhold_http_requests"]
    routes = {(s.labels["method"], s.labels["route"], s.labels["status"]) for s in requests}
    assert ("PUT", "/v1/vaults/{vault_id}/secrets/**", "201") in routes
    assert ("GET", "/v1/vaults/{vault_id}/secrets/**", "200") in routes
    assert ("GET", "/v1/vaults/{vault_id}/secrets/**", "404") in routes
    written = [s for s in requests if s.labels["route"] == "/v1/vaults/{vault_id}/secrets/**" and s.labels["method"] == "PUT"]
    assert sum(s.value for s in written) == 1
    latency = families["keyhold_http_request_duration_seconds"]
    assert any(s.name.endswith("_bucket") and s.labels["le"] == "+Inf" and s.value >= 1 for s in latency)
    # What is stored, counted at the scrape.
    assert families["keyhold_secrets"][0].value >= 1 and families["keyhold_secret_versions"][0].value >= 1
    assert families["keyhold_storage_up"][0].value == 1
    # The keystore's calls, by operation (a write wraps a data key, a read unwraps it).
    operations = {s.labels["operation"] for s in families["keyhold_keystore_operation_duration_seconds"]}
    assert {"wrap", "unwrap"} <= operations
    if SDK_BACKEND == "sqlite":  # the group committer is SQLite's
        commits = families["keyhold_storage_commit_duration_seconds"]
        assert any(s.name.endswith("_count") and s.value >= 1 for s in commits)
        sizes = families["keyhold_sqlite_group_commit_transactions"]
        assert any(s.name.endswith("_count") and s.value >= 1 for s in sizes)
    assert families["process_resident_memory_bytes"][0].value > 1_000_000
    assert families["process_open_fds"][0].value > 0
    # Never a path, a name, an email, a token or a value.
    for leak in secret.values():
        if leak != secret["vault"]:
            assert leak not in text, leak
    assert secret["vault"] not in text


def test_metrics_on_the_api_listener_need_a_scrape_token(server, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(server.binary), "serve", "--port", str(_free_port()), "--data-dir", str(tmp_path / "data"), "--metrics"],
        capture_output=True, text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "KEYHOLD_METRICS_TOKEN"})
    assert done.returncode != 0 and "KEYHOLD_METRICS_TOKEN" in done.stdout + done.stderr


def test_metrics_listen_serves_them_on_their_own_listener_only(server, tmp_path: Path) -> None:
    port = _free_port()
    with private_server(server, tmp_path, options=["--metrics-listen", f"127.0.0.1:{port}"]) as srv:
        exercise(srv.url)
        families = scrape(f"http://127.0.0.1:{port}/metrics", token=None)
        assert "keyhold_http_requests" in families
        assert httpx.get(f"{srv.url}/metrics", timeout=30).status_code == 404
