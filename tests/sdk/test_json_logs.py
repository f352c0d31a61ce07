"""``--log-format json`` (``KEYHOLD_LOG_FORMAT=json``): every line the server writes is one JSON object with
``time``, ``level`` and ``message``; a request's line (at ``debug``) carries its id, method, route template,
status and duration. The request id is the client's ``X-Request-Id`` when it is a plain one, otherwise the
server's, and is returned either way. No value or token reaches the log."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import oneclaw

from conftest import private_server
from support import PASSWORD, assert_sdk_ok


def test_every_line_is_a_json_object_and_requests_carry_their_id_and_route(server, tmp_path: Path) -> None:
    value = f"JSON-LOG-CANARY-{uuid.uuid4().hex}"
    with private_server(server, tmp_path, env={"KEYHOLD_LOG_FORMAT": "json"}) as srv:
        email = f"u-{uuid.uuid4().hex}@example.com"
        client = oneclaw.create_client(base_url=srv.url)
        assert_sdk_ok(client.auth.signup(email, PASSWORD), 200)
        token = assert_sdk_ok(client.auth.login(email, PASSWORD), 200)["access_token"]
        client.close()
        headers = {"Authorization": f"Bearer {token}"}
        vault = httpx.post(f"{srv.url}/v1/vaults", json={"name": "logs"}, headers=headers, timeout=30).json()["id"]
        put = httpx.put(
            f"{srv.url}/v1/vaults/{vault}/secrets/db/password", json={"value": value},
            headers={**headers, "X-Request-Id": "client-chosen-id-1"}, timeout=30)
        assert put.status_code == 201 and put.headers["X-Request-Id"] == "client-chosen-id-1"
        # An id that is not plain is replaced by the server's own.
        odd = httpx.get(f"{srv.url}/v1/health", headers={"X-Request-Id": "has spaces {and braces}"}, timeout=30)
        generated = odd.headers["X-Request-Id"]
        assert generated and generated != "has spaces {and braces}"
        log = srv.log_path
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    objects = [json.loads(line) for line in lines]  # every line parses, or this fails
    assert all({"time", "level", "message"} <= o.keys() and o["time"].endswith("Z") for o in objects)
    requests = {o.get("request_id"): o for o in objects if o["message"] == "request"}
    written = requests["client-chosen-id-1"]
    assert written["method"] == "PUT" and written["status"] == "201"
    assert written["route"] == "/v1/vaults/{vault_id}/secrets/**"
    assert int(written["duration_us"]) >= 0
    assert requests[generated]["route"] == "/v1/health"
    text = log.read_text()
    assert value not in text and token not in text and PASSWORD not in text
