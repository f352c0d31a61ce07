"""GET /v1/health (contract §1.13: `healthy|degraded` and the version, as 1Claw's spec says) and
GET /v1/health/ready (readiness: 503 while storage or the keystore does not answer)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import private_server
from support import assert_problem


def test_health_returns_200_without_auth(anon: httpx.Client) -> None:
    resp = anon.get("/v1/health")
    assert resp.status_code == 200, resp.text


def test_health_is_healthy_with_its_checks(anon: httpx.Client) -> None:
    body = anon.get("/v1/health").json()
    assert body["status"] == "healthy"
    assert body["checks"] == {"storage": "ok", "keystore": "ok"}


def test_health_reports_a_version(anon: httpx.Client) -> None:
    body = anon.get("/v1/health").json()
    assert isinstance(body.get("version"), str) and body["version"].strip(), body


def test_health_is_json(anon: httpx.Client) -> None:
    resp = anon.get("/v1/health")
    assert resp.headers.get("content-type", "").split(";")[0].strip() == "application/json"


def test_ready_answers_200_when_storage_and_keystore_answer(anon: httpx.Client) -> None:
    resp = anon.get("/v1/health/ready")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "ready" and resp.json()["checks"] == {"storage": "ok", "keystore": "ok"}


@pytest.mark.skipif(
    os.environ.get("KEYHOLD_SDK_BACKEND", "sqlite") != "postgres",
    reason="takes the database away from under a running server, which needs PostgreSQL")
def test_without_its_database_the_server_is_degraded_and_not_ready(server, tmp_path: Path) -> None:
    with private_server(server, tmp_path) as srv:
        assert httpx.get(f"{srv.url}/v1/health/ready", timeout=30).status_code == 200
        database = srv.database_url.rsplit("/", 1)[1]
        subprocess.run(
            ["psql", os.environ["KEYHOLD_TEST_DATABASE_URL"], "-q", "-c", f"DROP DATABASE {database} WITH (FORCE)"],
            check=True)
        # A check's answer is reused for a second: wait for the next one (at most 30 s).
        deadline = time.monotonic() + 30
        while (health := httpx.get(f"{srv.url}/v1/health", timeout=30)).json()["status"] != "degraded":
            assert health.status_code == 200 and time.monotonic() < deadline, health.text
            time.sleep(0.2)
        assert health.json()["checks"]["storage"] == "unavailable"
        problem = assert_problem(httpx.get(f"{srv.url}/v1/health/ready", timeout=30), 503)
        assert "storage" in problem["detail"]
