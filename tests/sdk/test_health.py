"""GET /v1/health (contract §1.13)."""

from __future__ import annotations

import httpx


def test_health_returns_200_without_auth(anon: httpx.Client) -> None:
    resp = anon.get("/v1/health")
    assert resp.status_code == 200, resp.text


def test_health_status_is_ok(anon: httpx.Client) -> None:
    body = anon.get("/v1/health").json()
    assert body["status"] == "ok"


def test_health_reports_a_version(anon: httpx.Client) -> None:
    body = anon.get("/v1/health").json()
    assert isinstance(body.get("version"), str) and body["version"].strip(), body


def test_health_is_json(anon: httpx.Client) -> None:
    resp = anon.get("/v1/health")
    assert resp.headers.get("content-type", "").split(";")[0].strip() == "application/json"
