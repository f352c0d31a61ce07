"""MCP over streamable HTTP at ``/mcp`` in ``keyhold serve``, driven by the official Python MCP client (issue 15).

Every tool call runs through the server's own router with the caller's credential and address, so the same
policies, audit events and errors apply as to any API request.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from support import assert_problem, assert_sdk_ok

TIMEOUT = 60

TOOLS = {
    "list_secrets", "get_secret", "put_secret", "delete_secret", "describe_secret", "rotate_and_store",
    "rotate_generate", "list_versions", "get_env_bundle", "resolve_env", "create_vault", "list_vaults", "grant_access",
    "share_secret", "proxy_request",
}


def session(url: str, headers: dict[str, str], body: Any) -> Any:
    """Runs ``body(client)`` in an initialized MCP session over streamable HTTP; returns what it returns."""

    async def main() -> Any:
        with anyio.fail_after(TIMEOUT):
            async with httpx2.AsyncClient(headers=headers, timeout=TIMEOUT) as http:
                async with streamable_http_client(url + "/mcp", http_client=http) as streams:
                    async with ClientSession(streams[0], streams[1]) as client:
                        init = await client.initialize()
                        assert init.server_info.name == "keyhold", init
                        return await body(client)

    try:
        return anyio.run(main)
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        raise error from None


def text(result: Any) -> str:
    assert len(result.content) == 1 and result.content[0].type == "text", result
    return result.content[0].text


@pytest.fixture
def setup(signup_user: Any, make_agent: Any, canary: Any) -> Any:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create(f"mcp-http-{uuid.uuid4().hex[:8]}"), 201)["id"]
    value = canary("MCP-HTTP-")
    assert_sdk_ok(owner.client.secrets.set(vault, "api/key", value), 201)
    assert_sdk_ok(owner.client.secrets.set(vault, "db/password", canary("MCP-HTTP-DB-")), 201)
    agent = make_agent(owner)
    assert_sdk_ok(
        owner.client.policies.create(
            vault, principal_type="agent", principal_id=agent.id, secret_path_pattern="api/*", permissions=["read"]),
        201)
    return owner, vault, value, agent


def agent_events(owner: Any, agent_id: str, action: str) -> list[dict]:
    resp = owner.http.get("/v1/audit/events", params={"actor_id": agent_id, "action": action, "limit": 1000})
    assert resp.status_code == 200, resp.text
    return resp.json()["events"]


def test_tools_over_http_follow_the_agents_policies_and_are_audited(server: Any, setup: Any) -> None:
    owner, vault, value, agent = setup
    reads_before = len(agent_events(owner, agent.id, "secret.read"))

    async def body(client: ClientSession) -> dict[str, str]:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == TOOLS
        got = await client.call_tool("get_secret", {"path": "api/key"})
        denied = await client.call_tool("get_secret", {"path": "db/password"})
        write = await client.call_tool("put_secret", {"path": "api/new", "value": "zzzz-zzzz"})
        listed = await client.call_tool("list_secrets", {})
        assert got.is_error is False and denied.is_error is True and write.is_error is True
        return {"got": text(got), "denied": text(denied), "write": text(write), "listed": text(listed)}

    out = session(server.url, {"Authorization": f"Bearer {agent.key}", "X-Vault-ID": vault}, body)
    assert json.loads(out["got"]) == {"path": "api/key", "type": "generic", "version": 1, "value": value}
    assert out["denied"] == "Access denied" and out["write"] == "Access denied"
    assert [s["path"] for s in json.loads(out["listed"])["secrets"]] == ["api/key"]
    assert value not in out["listed"]
    reads = agent_events(owner, agent.id, "secret.read")
    new = reads[: len(reads) - reads_before]
    assert sorted((e["resource_id"], e["details"].get("outcome")) for e in new) == [
        ("api/key", None), ("db/password", "denied")]
    assert all(e["ip_address"] == "127.0.0.1" for e in new)
    # The server records that these reads came through MCP; a direct API read carries no transport.
    assert all(e["details"].get("transport") == "mcp-http" for e in new), new
    direct = owner.http.get(f"/v1/vaults/{vault}/secrets/api/key")
    assert direct.status_code == 200, direct.text
    owner_reads = owner.http.get(
        "/v1/audit/events", params={"actor_id": owner.user_id, "action": "secret.read", "limit": 1}).json()["events"]
    assert owner_reads and "transport" not in owner_reads[0]["details"], owner_reads
    assert_problem(owner.http.get(f"/v1/vaults/{vault}/secrets/api/new"), 404)


def test_an_agent_jwt_works_as_well_as_its_key(server: Any, setup: Any) -> None:
    owner, vault, value, agent = setup
    token = httpx.post(f"{server.url}/v1/auth/agent-token", json={"api_key": agent.key}, timeout=30).json()[
        "access_token"]

    async def body(client: ClientSession) -> str:
        return text(await client.call_tool("get_secret", {"path": "api/key"}))

    assert json.loads(session(server.url, {"Authorization": f"Bearer {token}", "X-Vault-ID": vault}, body))[
        "value"] == value


def test_the_endpoint_refuses_requests_without_credentials_or_vault(server: Any, setup: Any) -> None:
    owner, vault, value, agent = setup
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    no_token = httpx.post(f"{server.url}/mcp", json=message, headers={**headers, "X-Vault-ID": vault}, timeout=30)
    assert_problem(no_token, 401)
    no_vault = httpx.post(
        f"{server.url}/mcp", json=message, headers={**headers, "Authorization": f"Bearer {agent.key}"}, timeout=30)
    assert_problem(no_vault, 400)
    wrong_key = httpx.post(
        f"{server.url}/mcp", json=message,
        headers={**headers, "Authorization": "Bearer ocv_" + "A" * 43, "X-Vault-ID": vault}, timeout=30)
    assert_problem(wrong_key, 401)
    assert value not in no_token.text + no_vault.text + wrong_key.text
