"""Keyhold's MCP server (`keyhold mcp`, stdio) driven by the official Python MCP client (issue 15).

Every test starts the suite's binary (``server.binary``) as ``keyhold mcp`` through ``mcp.stdio_client`` and talks to
it with ``mcp.ClientSession``. The subprocess gets an explicit environment: ``PATH``, ``HOME`` (an empty folder under
``tmp_path``, so no saved session or default vault), and the variables the test sets; nothing else is inherited
(the client library's own default inheritance is switched off). Every session runs under a timeout.

What the tools do is checked from the outside: values through the owner's SDK client, policies and shares through
the API, and the audit trail through the owner's ``GET /v1/audit/events``. Tools carry 1Claw's names, argument shapes
and error texts (``../shared/reference/1claw-mcp-and-cli.md``); value-free mode (``--no-reveal``) is Keyhold's own.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

import anyio
import httpx
import mcp.client.stdio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from support import assert_sdk_ok, is_uuid, now_utc, rfc3339

#: Generous: a session that takes this long is stuck, not slow.
SESSION_TIMEOUT = 120.0
#: Per request inside a session.
CALL_TIMEOUT = 60.0

#: 1Claw's 13 core tools (v0.6.0 plus rotate_generate and list_versions), resolve_env and proxy_request: name ->
#: (properties, required).
TOOLS: dict[str, tuple[set[str], set[str]]] = {
    "list_secrets": ({"prefix"}, set()),
    "get_secret": ({"path"}, {"path"}),
    "put_secret": ({"path", "value", "type", "metadata", "expires_at", "max_access_count"}, {"path", "value"}),
    "delete_secret": ({"path"}, {"path"}),
    "describe_secret": ({"path"}, {"path"}),
    "rotate_and_store": ({"path", "value", "type"}, {"path", "value"}),
    "rotate_generate": ({"path", "length", "charset"}, {"path"}),
    "list_versions": ({"path"}, {"path"}),
    "get_env_bundle": ({"path"}, {"path"}),
    "resolve_env": ({"environment", "git_branch"}, set()),
    "create_vault": ({"name", "description"}, {"name"}),
    "list_vaults": (set(), set()),
    "grant_access": (
        {"vault_id", "principal_type", "principal_id", "permissions", "secret_path_pattern"},
        {"vault_id", "principal_type", "principal_id"},
    ),
    "share_secret": (
        {"secret_id", "recipient_type", "recipient_id", "expires_at", "max_access_count"},
        {"secret_id", "recipient_type", "expires_at"},
    ),
    # 1Claw's name for calling an API with a credential the agent never sees (issue 23: a capability lease).
    "proxy_request": ({"lease", "method", "url", "headers", "body"}, {"lease", "method", "url"}),
}
PUT_TYPES = ["api_key", "password", "private_key", "certificate", "file", "note", "ssh_key", "env_bundle"]
VALUE_FREE = "Value-free mode"
DENIED = "Access denied"


def not_found(path: str) -> str:
    return f"No secret found at path '{path}'."


def gone(path: str) -> str:
    # 1Claw's wording, the same in get_secret.ts, describe_secret.ts and env.ts of 1clawAI/1claw-mcp ("at path").
    return f"Secret at path '{path}' is expired or has exceeded its maximum access count."


def not_a_bundle(path: str, kind: str) -> str:
    # 1Claw's get_env_bundle (src/tools/env.ts of 1clawAI/1claw-mcp).
    return f"Secret at '{path}' is type '{kind}', not 'env_bundle'."


def tomorrow() -> str:
    return rfc3339(now_utc() + dt.timedelta(days=1))


# ---------------------------------------------------------------------------
# Running `keyhold mcp`
# ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_inherited_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``stdio_client`` merges HOME, LOGNAME, PATH, SHELL, TERM and USER of this process under the given env; the
    tests want the server to see exactly what they pass."""
    monkeypatch.setattr(mcp.client.stdio, "get_default_environment", lambda: {})


class Session:
    """One ``keyhold mcp`` session; every text it returned (tool results, resources, tool descriptions) is kept."""

    def __init__(self, client: ClientSession) -> None:
        self.client = client
        self.texts: list[str] = []

    async def call(self, name: str, /, **arguments: Any) -> Any:
        result = await self.client.call_tool(name, arguments)
        for block in result.content:
            self.texts.append(getattr(block, "text", repr(block)))
        return result

    async def text(self, name: str, /, **arguments: Any) -> str:
        """A successful call's single text block."""
        result = await self.call(name, **arguments)
        texts = [getattr(block, "text", repr(block)) for block in result.content]
        assert result.is_error is False, f"{name}({arguments}) failed: {texts}"
        assert len(result.content) == 1 and result.content[0].type == "text", f"{name}({arguments}): {texts}"
        return result.content[0].text

    async def json(self, name: str, /, **arguments: Any) -> Any:
        text = await self.text(name, **arguments)
        try:
            return json.loads(text)
        except ValueError:
            pytest.fail(f"{name}({arguments}) did not return JSON: {text!r}")

    async def error(self, name: str, /, **arguments: Any) -> str:
        """A failed call's (``is_error``) single text block."""
        result = await self.call(name, **arguments)
        texts = [getattr(block, "text", repr(block)) for block in result.content]
        assert result.is_error is True, f"{name}({arguments}) should have failed: {texts}"
        assert len(result.content) == 1 and result.content[0].type == "text", f"{name}({arguments}): {texts}"
        return result.content[0].text

    async def tools(self) -> dict[str, Any]:
        listed = await self.client.list_tools()
        for tool in listed.tools:
            self.texts.append(tool.description or "")
        names = [tool.name for tool in listed.tools]
        assert len(names) == len(set(names)), f"duplicate tool names: {names}"
        return {tool.name: tool for tool in listed.tools}

    async def resource(self) -> dict[str, Any]:
        read = await self.client.read_resource("vault://secrets")
        assert len(read.contents) == 1, read
        content = read.contents[0]
        assert str(content.uri) == "vault://secrets", content
        assert content.mime_type == "application/json", content
        self.texts.append(content.text)
        return json.loads(content.text)


class Mcp:
    """Starts ``keyhold mcp`` sessions: the suite's binary, an empty HOME, and only the variables a test gives."""

    def __init__(self, server: Any, root: Path, leak_watch: Any) -> None:
        self.server = server
        self.url = server.url
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.leak_watch = leak_watch
        self.count = 0

    def environ(self, variables: dict[str, str]) -> dict[str, str]:
        # SSL_CERT_FILE: the session's CA when the suite runs over TLS.
        trust = {"SSL_CERT_FILE": os.environ["SSL_CERT_FILE"]} if "SSL_CERT_FILE" in os.environ else {}
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), **trust, **variables}

    def agent(self, agent: Any, vault: str) -> dict[str, str]:
        return {
            "KEYHOLD_URL": self.url,
            "KEYHOLD_VAULT": vault,
            "KEYHOLD_AGENT_ID": agent.id,
            "KEYHOLD_AGENT_API_KEY": agent.key,
        }

    def person(self, user: Any, vault: str) -> dict[str, str]:
        return {"KEYHOLD_URL": self.url, "KEYHOLD_VAULT": vault, "KEYHOLD_TOKEN": user.token}

    def run(self, variables: dict[str, str], body: Callable[[Session], Awaitable[Any]], *args: str) -> Any:
        """Run ``body`` in a fresh session of ``keyhold mcp ARGS`` (initialized); return what it returns.

        The server's stderr is kept in a file; it must hold no tracked value, credential or token.
        """
        self.count += 1
        errlog_path = self.root / f"mcp-stderr-{self.count}.log"
        params = StdioServerParameters(
            command=str(self.server.binary), args=["mcp", *args], env=self.environ(variables), cwd=str(self.root))

        async def main() -> Any:
            with anyio.fail_after(SESSION_TIMEOUT):
                with open(errlog_path, "w") as errlog:
                    async with stdio_client(params, errlog=errlog) as (read, write):
                        async with ClientSession(read, write, read_timeout_seconds=CALL_TIMEOUT) as client:
                            init = await client.initialize()
                            assert init.server_info.name == "keyhold", init
                            return await body(Session(client))

        try:
            result = anyio.run(main)
        except BaseExceptionGroup as group:  # the task groups of the client wrap what the test body raised
            raise _innermost(group) from None
        stderr = errlog_path.read_text(errors="replace")
        watched = (self.leak_watch.values | self.leak_watch.credentials | self.leak_watch.tokens
                   | self.leak_watch.passwords)
        leaked = sorted(item for item in watched if item in stderr)
        assert not leaked, f"keyhold mcp wrote secrets to stderr: {leaked}\n{stderr}"
        return result


def _innermost(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


@pytest.fixture
def mcp_server(server: Any, tmp_path: Path, leak_watch: Any) -> Mcp:
    return Mcp(server, tmp_path, leak_watch)


# ---------------------------------------------------------------------------
# Owner-side helpers
# ---------------------------------------------------------------------------


def put(owner: Any, vault: str, path: str, value: str, **kwargs: Any) -> dict:
    return assert_sdk_ok(owner.client.secrets.set(vault, path, value, **kwargs), 201)


def read(owner: Any, vault: str, path: str) -> dict:
    return assert_sdk_ok(owner.client.secrets.get(vault, path), 200)


def versions(owner: Any, vault: str, path: str) -> list[dict]:
    """The owner's view of a secret's versions (metadata; reading it counts no access)."""
    resp = owner.http.get(f"/v1/vaults/{vault}/secret-versions/{path}")
    assert resp.status_code == 200, resp.text
    return resp.json()["versions"]


def grant(owner: Any, vault: str, principal_id: str, pattern: str, permissions: list[str],
          principal_type: str = "agent") -> dict:
    return assert_sdk_ok(
        owner.client.policies.create(vault, principal_type=principal_type, principal_id=principal_id,
                                     secret_path_pattern=pattern, permissions=permissions),
        201,
    )


def new_vault(owner: Any, name: str = "mcp") -> str:
    return assert_sdk_ok(owner.client.vaults.create(f"{name}-{uuid.uuid4().hex[:8]}"), 201)["id"]


class Trail:
    """The secret.* events one actor caused, as the org owner reads them; ``new()`` returns those since the last
    look, oldest first."""

    def __init__(self, owner: Any, actor_id: str) -> None:
        self.owner = owner
        self.actor_id = actor_id
        self.seen = {event["id"] for event in self.events()}

    def events(self) -> list[dict]:
        resp = self.owner.http.get("/v1/audit/events", params={"actor_id": self.actor_id, "limit": 1000})
        assert resp.status_code == 200, resp.text
        events = resp.json()["events"]
        assert len(events) < 1000, "too many events for one test actor"
        return [event for event in events if event["action"].startswith("secret.")]

    def new(self) -> list[dict]:
        fresh = [event for event in self.events() if event["id"] not in self.seen]
        self.seen |= {event["id"] for event in fresh}
        return list(reversed(fresh))

    def one(self, action: str, resource_id: str, outcome: str | None = None) -> dict:
        fresh = self.new()
        summary = [(e["action"], e.get("resource_id"), e["details"]) for e in fresh]
        assert len(fresh) == 1, f"expected exactly one new secret event ({action} {resource_id}), got {summary}"
        event = fresh[0]
        assert (event["action"], event.get("resource_id")) == (action, resource_id), summary
        assert event["actor_id"] == self.actor_id, event
        assert event["details"].get("outcome") == outcome, event
        return event


# ---------------------------------------------------------------------------
# The tool list and the resource
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args", [(), ("--no-reveal",)], ids=["reveal", "no-reveal"])
def test_tools_are_1claws_with_their_argument_shapes(mcp_server, user, vault, make_agent, args) -> None:
    agent = make_agent(user)

    async def body(s: Session) -> dict:
        return await s.tools()

    tools = mcp_server.run(mcp_server.agent(agent, vault), body, *args)
    assert sorted(tools) == sorted(TOOLS)
    for name, (properties, required) in TOOLS.items():
        schema = tools[name].input_schema
        assert schema["type"] == "object", (name, schema)
        assert set(schema.get("properties", {})) == properties, (name, schema)
        assert set(schema.get("required", [])) == required, (name, schema)
    put_schema = tools["put_secret"].input_schema["properties"]
    assert sorted(put_schema["type"]["enum"]) == sorted(PUT_TYPES)
    assert put_schema["type"]["default"] == "api_key"
    rotate = tools["rotate_generate"].input_schema["properties"]
    assert (rotate["length"]["minimum"], rotate["length"]["maximum"]) == (8, 1024)
    assert sorted(rotate["charset"]["enum"]) == ["alphanumeric", "ascii", "base64", "hex"]
    grant_schema = tools["grant_access"].input_schema["properties"]
    assert sorted(grant_schema["principal_type"]["enum"]) == ["agent", "user"]
    assert grant_schema["permissions"]["default"] == ["read"]
    assert grant_schema["secret_path_pattern"]["default"] == "**"
    share = tools["share_secret"].input_schema["properties"]
    assert sorted(share["recipient_type"]["enum"]) == ["agent", "anyone_with_link", "creator", "user"]
    assert share["max_access_count"]["default"] == 5


def test_resource_lists_readable_paths_without_values(mcp_server, user, vault, make_agent, canary) -> None:
    values = {path: canary() for path in ("api/one", "api/two", "db/password")}
    for path, value in values.items():
        put(user, vault, path, value)
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/*", ["read"])

    async def body(s: Session) -> tuple:
        listed = await s.client.list_resources()
        return [(str(r.uri), r.mime_type) for r in listed.resources], await s.resource(), s.texts

    resources, listing, texts = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert resources == [("vault://secrets", "application/json")]
    assert listing["vault_id"] == vault
    assert sorted(item["path"] for item in listing["secrets"]) == ["api/one", "api/two"]
    for item in listing["secrets"]:
        assert "value" not in item, item
        assert isinstance(item["version"], int) and item["version"] == 1, item
    for value in values.values():
        assert not any(value in text for text in texts)
    # Listing is not reading.
    assert [v["access_count"] for v in versions(user, vault, "api/one")] == [0]


def test_unknown_resource_is_a_protocol_error(mcp_server, user, vault, make_agent) -> None:
    agent = make_agent(user)

    async def body(s: Session) -> None:
        with pytest.raises(MCPError):
            await s.client.read_resource("vault://nothing-here")

    mcp_server.run(mcp_server.agent(agent, vault), body)


# ---------------------------------------------------------------------------
# Every tool's happy path, as an agent with a policy
# ---------------------------------------------------------------------------


def test_list_secrets_with_and_without_prefix(mcp_server, user, vault, make_agent, canary) -> None:
    values = [canary() for _ in range(3)]
    for path, value in zip(("api/a", "api/b", "web/c"), values):
        put(user, vault, path, value)
    agent = make_agent(user)
    grant(user, vault, agent.id, "**", ["read"])

    async def body(s: Session) -> tuple:
        return await s.json("list_secrets"), await s.json("list_secrets", prefix="api/"), s.texts

    everything, under_api, texts = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert sorted(item["path"] for item in everything["secrets"]) == ["api/a", "api/b", "web/c"]
    assert sorted(item["path"] for item in under_api["secrets"]) == ["api/a", "api/b"]
    assert all("value" not in item for item in everything["secrets"])
    assert not any(value in text for value in values for text in texts)


def test_get_secret_returns_path_type_version_value(mcp_server, user, vault, make_agent, canary) -> None:
    value = canary()
    put(user, vault, "api/key", value, type="password")
    put(user, vault, "api/key", value + "-v2", type="password")
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read"])

    async def body(s: Session) -> Any:
        return await s.json("get_secret", path="api/key")

    got = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert got == {"path": "api/key", "type": "password", "version": 2, "value": value + "-v2"}
    assert [v["access_count"] for v in versions(user, vault, "api/key")] == [0, 1]


def test_get_secret_under_approval_names_the_request_then_reads_once_approved(
    mcp_server, user, vault, make_agent, canary
) -> None:
    value = canary()
    put(user, vault, "gated/key", value)
    agent = make_agent(user)
    assert_sdk_ok(
        user.client.policies.create(vault, principal_type="agent", principal_id=agent.id,
                                    secret_path_pattern="gated/*", permissions=["read"],
                                    conditions={"require_approval": True}),
        201,
    )

    async def ask(s: Session) -> str:
        return await s.error("get_secret", path="gated/key")

    message = mcp_server.run(mcp_server.agent(agent, vault), ask)
    pending = assert_sdk_ok(user.client.approvals.list(status="pending"), 200)["approvals"]
    request_id = next(a["id"] for a in pending if a["agent_id"] == agent.id)
    assert message == (f"Human approval is required to read 'gated/key'. Approval request {request_id} is pending: "
                       "retry once a person approves it.")
    assert_sdk_ok(user.client.approvals.decide(request_id, "approve"), 200)

    async def read_twice(s: Session) -> tuple[Any, str]:
        return await s.json("get_secret", path="gated/key"), await s.error("get_secret", path="gated/key")

    got, again = mcp_server.run(mcp_server.agent(agent, vault), read_twice)
    assert got["value"] == value
    assert again.startswith("Human approval is required to read 'gated/key'.") and request_id not in again


def test_put_secret_creates_a_version_per_call(mcp_server, user, vault, make_agent, canary) -> None:
    first, second = canary(), canary()
    expires = rfc3339(now_utc() + dt.timedelta(days=30))
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read", "write"])

    async def body(s: Session) -> tuple:
        one = await s.json("put_secret", path="api/new", value=first, type="password", metadata={"env": "prod"},
                           expires_at=expires, max_access_count=3)
        two = await s.json("put_secret", path="api/new", value=second)
        return one, two, s.texts

    one, two, texts = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert "value" not in one and "value" not in two
    assert (one["path"], one["version"], one["type"]) == ("api/new", 1, "password")
    assert one["metadata"] == {"env": "prod"}
    assert one["max_access_count"] == 3
    assert one["expires_at"].startswith(expires[:19]), one
    assert one["created_by"] == agent.id
    assert (two["version"], two["type"]) == (2, "api_key")  # 1Claw's default type
    assert not any(first in text or second in text for text in texts)
    latest = read(user, vault, "api/new")
    assert (latest["value"], latest["version"], latest["type"]) == (second, 2, "api_key")


def test_describe_secret_and_list_versions_are_metadata_and_count_no_read(
        mcp_server, user, vault, make_agent, canary) -> None:
    value = canary()
    record = put(user, vault, "api/key", value, metadata={"team": "core"})
    put(user, vault, "api/key", value + "-v2", metadata={"team": "core"})
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read"])

    async def body(s: Session) -> tuple:
        return await s.json("describe_secret", path="api/key"), await s.json("list_versions", path="api/key"), s.texts

    described, listed, texts = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert described["id"] == record["id"]
    assert (described["path"], described["version"], described["access_count"]) == ("api/key", 2, 0)
    assert described["metadata"] == {"team": "core"}
    assert "value" not in described
    assert [v["version"] for v in listed["versions"]] == [1, 2]
    assert all("value" not in v for v in listed["versions"])
    assert not any(value in text for text in texts)
    assert [v["access_count"] for v in versions(user, vault, "api/key")] == [0, 0]


def test_rotate_and_store_returns_the_new_version(mcp_server, user, vault, make_agent, canary) -> None:
    old, new = canary(), canary()
    put(user, vault, "api/key", old)
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read", "write"])

    async def body(s: Session) -> tuple:
        return await s.json("rotate_and_store", path="api/key", value=new), s.texts

    rotated, texts = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert (rotated["path"], rotated["version"], rotated["type"]) == ("api/key", 2, "api_key")
    assert "value" not in rotated
    assert not any(new in text for text in texts)
    assert (read(user, vault, "api/key")["value"], read(user, vault, "api/key")["version"]) == (new, 2)


def test_rotate_generate_stores_a_server_generated_value(mcp_server, user, vault, make_agent, canary) -> None:
    old = canary()
    put(user, vault, "api/key", old, type="password")
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read", "write"])

    async def body(s: Session) -> tuple:
        return await s.json("rotate_generate", path="api/key", length=40, charset="hex"), s.texts

    rotated, texts = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert (rotated["path"], rotated["version"], rotated["type"]) == ("api/key", 2, "password")
    assert "value" not in rotated
    stored = read(user, vault, "api/key")
    assert stored["version"] == 2
    assert len(stored["value"]) == 40 and set(stored["value"]) <= set("0123456789abcdef"), stored["value"]
    assert not any(stored["value"] in text for text in texts)


def test_delete_secret_removes_every_version(mcp_server, user, vault, make_agent, canary) -> None:
    put(user, vault, "api/key", canary())
    put(user, vault, "api/key", canary())
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read", "write"])

    async def body(s: Session) -> tuple:
        return await s.text("delete_secret", path="api/key"), await s.json("list_secrets")

    deleted, listed = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert deleted == "Secret at 'api/key' deleted."
    assert listed == {"secrets": []}
    # A soft delete of every version: GET answers 410 afterwards (contract §2.3).
    assert user.client.secrets.get(vault, "api/key").meta.status == 410


def test_deleted_secret_is_gone_for_every_tool(mcp_server, user, vault, make_agent, canary) -> None:
    """After delete_secret, reads answer 1Claw's 410 text; describe_secret must not present the deleted secret as
    live (1Claw's describe_secret lists, then falls back to GET, which answers 410)."""
    put(user, vault, "api/key", canary())
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read", "write"])

    async def body(s: Session) -> tuple:
        await s.text("delete_secret", path="api/key")
        return (await s.error("get_secret", path="api/key"), await s.error("describe_secret", path="api/key"),
                await s.error("delete_secret", path="api/key"))

    got, described, deleted_again = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert got == gone("api/key")
    assert described == gone("api/key")
    assert deleted_again == not_found("api/key")


def test_get_env_bundle_parses_key_value_lines(mcp_server, user, vault, make_agent, canary) -> None:
    token, plain = canary(), canary()
    put(user, vault, "api/env", f"A=1\n# a comment\n\nTOKEN={token}\nURL=https://x.example/?a=b\n", type="env_bundle")
    put(user, vault, "api/plain", plain)
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read"])

    async def body(s: Session) -> tuple:
        return await s.json("get_env_bundle", path="api/env"), await s.error("get_env_bundle", path="api/plain"), s.texts

    bundle, refused, texts = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert bundle == {"A": "1", "TOKEN": token, "URL": "https://x.example/?a=b"}
    assert refused == not_a_bundle("api/plain", "generic")
    assert not any(plain in text for text in texts)


def test_resolve_env_returns_one_environments_variables(mcp_server, user, vault, make_agent, canary) -> None:
    prod, preview, branch = canary("PROD-"), canary("PREVIEW-"), canary("BRANCH-")
    for key, value, extra in [("API_URL", prod, {"environments": ["production"]}),
                              ("API_URL", preview, {"environments": ["preview"]}),
                              ("API_URL", branch, {"git_branch": "feature/x"}),
                              ("LOG_LEVEL", "debug", {})]:
        resp = user.http.post(f"/v1/vaults/{vault}/env-vars", json={"key": key, "value": value, **extra})
        assert resp.status_code == 201, resp.text
    agent = make_agent(user)
    grant(user, vault, agent.id, "env-vars/*", ["read"])

    async def body(s: Session) -> tuple:
        return (await s.json("resolve_env", environment="production"),
                await s.json("resolve_env", environment="preview", git_branch="feature/x"),
                await s.error("resolve_env"))

    production, overridden, untagged = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert production["vars"] == {"API_URL": prod, "LOG_LEVEL": "debug"}
    assert production["sources"] == {"API_URL": "vault", "LOG_LEVEL": "vault"} and production["environment"] == "production"
    assert overridden["vars"] == {"API_URL": branch, "LOG_LEVEL": "debug"}
    assert overridden["sources"]["API_URL"] == "branch_override" and overridden["git_branch"] == "feature/x"
    assert "environment is required" in untagged, "an agent without an environment tag must name one"

    async def value_free(s: Session) -> tuple:
        return await s.json("resolve_env", environment="production"), s.texts

    keys_only, texts = mcp_server.run(mcp_server.agent(agent, vault), value_free, "--no-reveal")
    assert keys_only["keys"] == ["API_URL", "LOG_LEVEL"] and "vars" not in keys_only
    assert not any(prod in text for text in texts)


def test_list_vaults_shows_the_vaults_the_agent_may_use(mcp_server, user, vault, make_agent) -> None:
    hidden = new_vault(user, "hidden")
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read"])

    async def body(s: Session) -> Any:
        return await s.json("list_vaults")

    listed = mcp_server.run(mcp_server.agent(agent, vault), body)
    ids = [item["id"] for item in listed["vaults"]]
    assert vault in ids and hidden not in ids, ids


def test_agent_creates_a_vault_and_grants_another_agent_access(mcp_server, user, vault, make_agent, canary) -> None:
    value = canary()
    creator, reader = make_agent(user), make_agent(user)
    grant(user, vault, creator.id, "api/**", ["read"])
    name = f"agent-made-{uuid.uuid4().hex[:8]}"

    async def create(s: Session) -> Any:
        made = await s.json("create_vault", name=name, description="made over MCP")
        listed = await s.json("list_vaults")
        return made, [item["id"] for item in listed["vaults"]]

    made, listed_ids = mcp_server.run(mcp_server.agent(creator, vault), create)
    assert is_uuid(made["id"]) and made["name"] == name and made["description"] == "made over MCP"
    assert (made["created_by"], made["created_by_type"]) == (creator.id, "agent")
    assert made["id"] in listed_ids and vault in listed_ids

    async def fill_and_grant(s: Session) -> Any:
        await s.json("put_secret", path="shared/key", value=value)
        # permissions and secret_path_pattern left out: 1Claw's defaults, ["read"] on "**".
        return await s.json("grant_access", vault_id=made["id"], principal_type="agent", principal_id=reader.id)

    policy = mcp_server.run(mcp_server.agent(creator, made["id"]), fill_and_grant)
    assert (policy["vault_id"], policy["principal_type"], policy["principal_id"]) == (made["id"], "agent", reader.id)
    assert (policy["permissions"], policy["secret_path_pattern"]) == (["read"], "**")
    assert policy["created_by"] == creator.id

    async def use(s: Session) -> tuple:
        return await s.json("get_secret", path="shared/key"), await s.error("put_secret", path="shared/key", value="x")

    got, refused = mcp_server.run(mcp_server.agent(reader, made["id"]), use)
    assert got["value"] == value
    assert refused == DENIED


def test_agent_cannot_grant_access_on_a_vault_it_did_not_create(mcp_server, user, vault, make_agent) -> None:
    agent, other = make_agent(user), make_agent(user)
    grant(user, vault, agent.id, "**", ["read", "write"])

    async def body(s: Session) -> str:
        return await s.error("grant_access", vault_id=vault, principal_type="agent", principal_id=other.id,
                             permissions=["read"])

    refused = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert refused.startswith(DENIED), refused
    assert [p for p in assert_sdk_ok(user.client.policies.list(vault), 200)["policies"]
            if p["principal_id"] == other.id] == []


def test_person_creates_a_vault_and_grants_an_agent_access(
        mcp_server, signup_user, make_agent, canary) -> None:
    owner = signup_user()
    vault = new_vault(owner)
    agent = make_agent(owner)
    allowed, refused_value = canary(), canary()

    async def body(s: Session) -> tuple:
        made = await s.json("create_vault", name="people-made", description="by a person")
        policy = await s.json("grant_access", vault_id=made["id"], principal_type="agent", principal_id=agent.id,
                              permissions=["read", "write"], secret_path_pattern="api/**")
        return made, policy

    made, policy = mcp_server.run(mcp_server.person(owner, vault), body)
    assert (made["name"], made["description"]) == ("people-made", "by a person")
    assert (made["created_by"], made["created_by_type"]) == (owner.user_id, "user")
    assert (policy["principal_id"], policy["secret_path_pattern"]) == (agent.id, "api/**")
    assert sorted(policy["permissions"]) == ["read", "write"]
    put(owner, made["id"], "api/key", allowed)
    put(owner, made["id"], "db/key", refused_value)

    async def use(s: Session) -> tuple:
        return await s.json("get_secret", path="api/key"), await s.error("get_secret", path="db/key"), s.texts

    got, refused, texts = mcp_server.run(mcp_server.agent(agent, made["id"]), use)
    assert got["value"] == allowed
    assert refused == DENIED
    assert not any(refused_value in text for text in texts)


def test_share_secret_with_the_creator_and_a_user(mcp_server, user, vault, make_agent, canary, signup_user) -> None:
    value = canary()
    record = put(user, vault, "api/key", value)
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read"])
    colleague = signup_user()
    expires = tomorrow()

    async def body(s: Session) -> tuple:
        described = await s.json("describe_secret", path="api/key")
        to_creator = await s.json("share_secret", secret_id=described["id"], recipient_type="creator",
                                  expires_at=expires)
        to_user = await s.json("share_secret", secret_id=described["id"], recipient_type="user",
                               recipient_id=colleague.user_id, expires_at=expires, max_access_count=2)
        return described, to_creator, to_user, s.texts

    described, to_creator, to_user, texts = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert described["id"] == record["id"]
    assert (to_creator["recipient_type"], to_creator["recipient_id"]) == ("creator", user.user_id)
    assert (to_creator["secret_id"], to_creator["max_access_count"], to_creator["is_accepted"]) == (record["id"], 5, False)
    assert (to_user["recipient_type"], to_user["recipient_id"], to_user["max_access_count"]) == (
        "user", colleague.user_id, 2)
    assert not any(value in text for text in texts)
    # The recipient must accept before the share opens.
    assert user.client.sharing.access(to_creator["id"]).meta.status == 403
    assert user.client.sharing.accept(to_creator["id"]).meta.status == 204
    assert assert_sdk_ok(user.client.sharing.access(to_creator["id"]), 200)["value"] == value
    assert colleague.client.sharing.accept(to_user["id"]).meta.status == 204
    assert assert_sdk_ok(colleague.client.sharing.access(to_user["id"]), 200)["value"] == value


# ---------------------------------------------------------------------------
# Error texts: 404, 410, 403
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tool", ["get_secret", "describe_secret", "list_versions", "delete_secret", "rotate_generate", "get_env_bundle"])
def test_missing_path_is_no_secret_found(mcp_server, user, vault, make_agent, tool) -> None:
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read", "write"])

    async def body(s: Session) -> str:
        return await s.error(tool, path="api/missing")

    assert mcp_server.run(mcp_server.agent(agent, vault), body) == not_found("api/missing")


def test_exhausted_secret_is_gone(mcp_server, user, vault, make_agent, canary) -> None:
    value = canary()
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read", "write"])

    async def body(s: Session) -> tuple:
        stored = await s.json("put_secret", path="api/once", value=value, max_access_count=1)
        first = await s.json("get_secret", path="api/once")
        second = await s.error("get_secret", path="api/once")
        return stored, first, second, s.texts

    stored, first, second, texts = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert stored["max_access_count"] == 1
    assert first["value"] == value
    assert second == gone("api/once")
    assert sum(value in text for text in texts) == 1  # only the one allowed read


DENIED_CALLS = [
    ("get_secret", {"path": "db/password"}),
    ("get_secret", {"path": "db/no-such-secret"}),  # no existence oracle: denied, not missing
    ("describe_secret", {"path": "db/password"}),
    ("list_versions", {"path": "db/password"}),
    ("get_env_bundle", {"path": "db/password"}),
    ("put_secret", {"path": "db/password", "value": "overwritten-by-agent"}),
    ("put_secret", {"path": "db/new", "value": "new-by-agent"}),
    ("rotate_and_store", {"path": "db/password", "value": "rotated-by-agent"}),
    ("rotate_generate", {"path": "db/password"}),
    ("delete_secret", {"path": "db/password"}),
]


@pytest.mark.parametrize("tool,arguments", DENIED_CALLS, ids=[f"{t}-{a['path']}" for t, a in DENIED_CALLS])
def test_path_outside_the_policy_is_access_denied(mcp_server, user, vault, make_agent, canary, tool,
                                                  arguments) -> None:
    value = canary()
    put(user, vault, "db/password", value)
    put(user, vault, "api/key", canary())
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/*", ["read", "write"])

    async def body(s: Session) -> tuple:
        return await s.error(tool, **arguments), s.texts

    refused, texts = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert refused == DENIED
    assert not any(value in text for text in texts)
    # Nothing changed.
    assert [(v["version"], v["access_count"]) for v in versions(user, vault, "db/password")] == [(1, 0)]
    assert user.client.secrets.get(vault, "db/new").meta.status == 404


def test_the_vault_is_fixed_for_the_session(mcp_server, user, vault, make_agent, canary) -> None:
    """A path cannot climb out of the configured vault into another one the agent may read."""
    other = new_vault(user, "other")
    value = canary()
    put(user, other, "api/key", value)
    agent = make_agent(user)
    grant(user, vault, agent.id, "**", ["read"])
    grant(user, other, agent.id, "**", ["read"])

    async def body(s: Session) -> list[str]:
        await s.error("get_secret", path=f"../../{other}/secrets/api/key")
        await s.error("get_secret", path=f"api/../../../{other}/secrets/api/key")
        return s.texts

    texts = mcp_server.run(mcp_server.agent(agent, vault), body)
    assert not any(value in text for text in texts)
    assert [v["access_count"] for v in versions(user, other, "api/key")] == [0]


# ---------------------------------------------------------------------------
# The audit trail: one event per tool call that touches a secret
# ---------------------------------------------------------------------------


def test_every_secret_tool_call_adds_one_audit_event(mcp_server, user, vault, make_agent, canary) -> None:
    put(user, vault, "api/key", canary())
    put(user, vault, "api/env", f"A={canary()}", type="env_bundle")
    put(user, vault, "db/password", canary())
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/*", ["read", "write"])
    trail = Trail(user, agent.id)
    assert trail.new() == []

    async def body(s: Session) -> None:
        await s.json("list_secrets")
        trail.one("secret.list", vault)
        await s.json("get_secret", path="api/key")
        read_event = trail.one("secret.read", "api/key")
        assert read_event["details"]["vault_id"] == vault and read_event["details"]["version"] == 1
        assert read_event["actor_type"] == "agent"
        await s.json("describe_secret", path="api/key")
        trail.one("secret.versions", "api/key")
        await s.json("list_versions", path="api/key")
        trail.one("secret.versions", "api/key")
        await s.json("get_env_bundle", path="api/env")
        trail.one("secret.read", "api/env")
        await s.json("put_secret", path="api/new", value=canary())
        trail.one("secret.write", "api/new")
        await s.json("rotate_and_store", path="api/new", value=canary())
        trail.one("secret.write", "api/new")
        await s.json("rotate_generate", path="api/new")
        trail.one("secret.rotate", "api/new")
        await s.text("delete_secret", path="api/new")
        trail.one("secret.delete", "api/new")
        await s.error("get_secret", path="api/missing")
        trail.one("secret.read", "api/missing", outcome="not_found")
        await s.error("get_secret", path="db/password")
        denied = trail.one("secret.read", "db/password", outcome="denied")
        assert denied["details"]["vault_id"] == vault and denied["details"].get("reason")
        await s.error("put_secret", path="db/password", value="x")
        trail.one("secret.write", "db/password", outcome="denied")
        await s.resource()
        trail.one("secret.list", vault)
        # Tools that touch no secret add no secret event.
        await s.json("list_vaults")
        assert trail.new() == []

    mcp_server.run(mcp_server.agent(agent, vault), body)


def test_gone_read_is_audited_as_gone(mcp_server, user, vault, make_agent, canary) -> None:
    put(user, vault, "api/once", canary(), max_access_count=1)
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read"])
    trail = Trail(user, agent.id)

    async def body(s: Session) -> None:
        await s.json("get_secret", path="api/once")
        trail.one("secret.read", "api/once")
        await s.error("get_secret", path="api/once")
        trail.one("secret.read", "api/once", outcome="gone")

    mcp_server.run(mcp_server.agent(agent, vault), body)


# ---------------------------------------------------------------------------
# Value-free mode (--no-reveal)
# ---------------------------------------------------------------------------


def test_value_free_mode_refuses_value_tools_without_reading(mcp_server, user, vault, make_agent, canary) -> None:
    put(user, vault, "api/key", canary())
    put(user, vault, "api/env", f"A={canary()}", type="env_bundle")
    agent = make_agent(user)
    grant(user, vault, agent.id, "**", ["read"])
    trail = Trail(user, agent.id)

    async def body(s: Session) -> list[str]:
        return [
            await s.error("get_secret", path="api/key"),
            await s.error("get_env_bundle", path="api/env"),
            await s.error("get_secret", path="api/missing"),
        ]

    refusals = mcp_server.run(mcp_server.agent(agent, vault), body, "--no-reveal")
    assert all(text.startswith(VALUE_FREE) for text in refusals), refusals
    assert trail.new() == []  # not even attempted
    assert [v["access_count"] for v in versions(user, vault, "api/key")] == [0]
    assert [v["access_count"] for v in versions(user, vault, "api/env")] == [0]


def test_value_free_session_never_returns_a_value(mcp_server, user, vault, make_agent, canary) -> None:
    values = {
        "api/key": canary(),
        "api/env": canary("ENV-CANARY-"),
        "api/rotated": canary(),
    }
    put(user, vault, "api/key", values["api/key"], type="password")
    put(user, vault, "api/env", f"TOKEN={values['api/env']}\n", type="env_bundle")
    put(user, vault, "api/rotated", values["api/rotated"])
    written, stored = canary("WRITTEN-"), canary("STORED-")
    agent = make_agent(user)
    grant(user, vault, agent.id, "**", ["read", "write"])

    async def body(s: Session) -> tuple:
        await s.tools()
        await s.json("list_secrets")
        await s.resource()
        described = await s.json("describe_secret", path="api/key")
        await s.json("list_versions", path="api/key")
        for path in values:
            assert (await s.error("get_secret", path=path)).startswith(VALUE_FREE)
        assert (await s.error("get_env_bundle", path="api/env")).startswith(VALUE_FREE)
        await s.json("put_secret", path="api/written", value=written)
        await s.json("rotate_and_store", path="api/key", value=stored)
        await s.json("rotate_generate", path="api/rotated")
        await s.json("list_vaults")
        await s.json("create_vault", name="value-free")
        await s.json("share_secret", secret_id=described["id"], recipient_type="creator", expires_at=tomorrow())
        await s.error("describe_secret", path="api/missing")
        return s.texts

    texts = mcp_server.run(mcp_server.agent(agent, vault), body, "--no-reveal")
    generated = read(user, vault, "api/rotated")["value"]
    assert generated != values["api/rotated"]
    every_value = [*values.values(), written, stored, generated]
    leaked = [value for value in every_value if any(value in text for text in texts)]
    assert leaked == [], leaked
    assert len(texts) > 20  # the session really returned something to check


def test_value_free_describe_works_and_counts_no_read(mcp_server, user, vault, make_agent, canary) -> None:
    value = canary()
    put(user, vault, "api/once", value, max_access_count=1)
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read"])
    trail = Trail(user, agent.id)

    async def body(s: Session) -> list:
        described = [await s.json("describe_secret", path="api/once") for _ in range(3)]
        events = trail.new()
        return described, events

    described, events = mcp_server.run(mcp_server.agent(agent, vault), body, "--no-reveal")
    assert [(d["path"], d["version"], d["access_count"], d["max_access_count"]) for d in described] == [
        ("api/once", 1, 0, 1)] * 3
    assert [e["action"] for e in events] == ["secret.versions"] * 3
    # The single allowed read is still there.
    assert read(user, vault, "api/once")["value"] == value


def test_value_free_mode_hands_out_no_link_that_opens_a_value(mcp_server, user, vault, make_agent, agent_sdk,
                                                              anon, canary) -> None:
    """A link share opens with a plain GET and no credentials: in value-free mode the agent must not be able to make
    one, or the value is one fetch away from its context."""
    value = canary()
    put(user, vault, "api/key", value)
    agent = make_agent(user)
    grant(user, vault, agent.id, "api/**", ["read"])

    async def body(s: Session) -> list[str]:
        described = await s.json("describe_secret", path="api/key")
        await s.call("share_secret", secret_id=described["id"], recipient_type="anyone_with_link",
                     expires_at=tomorrow())
        return s.texts

    texts = mcp_server.run(mcp_server.agent(agent, vault), body, "--no-reveal")
    assert not any(value in text for text in texts)
    shares = assert_sdk_ok(agent_sdk(agent.key).sharing.list_outbound(), 200)["shares"]
    opened = [share["id"] for share in shares if value in anon.get(f"/v1/share/{share['id']}").text]
    assert opened == [], f"link shares made in value-free mode open the value: {opened}"


# ---------------------------------------------------------------------------
# Configuration: credentials and vault from the environment, flags, a missing vault
# ---------------------------------------------------------------------------


CREDENTIAL_STYLES = ["keyhold-agent-key", "oneclaw-agent-key", "oneclaw-agent-token", "keyhold-agent-token",
                     "keyhold-person-token", "keyhold-api-key"]


@pytest.mark.parametrize("style", CREDENTIAL_STYLES)
def test_credentials_from_the_environment(mcp_server, server, signup_user, make_agent, canary, leak_watch,
                                          style) -> None:
    owner = signup_user()
    vault = new_vault(owner)
    value = canary()
    put(owner, vault, "api/key", value)
    agent = make_agent(owner)
    grant(owner, vault, agent.id, "api/**", ["read"])

    def agent_token() -> str:
        resp = httpx.post(f"{server.url}/v1/auth/agent-token", json={"agent_id": agent.id, "api_key": agent.key},
                          timeout=30)
        assert resp.status_code == 200, resp.text
        return leak_watch.track(resp.json())["access_token"]

    if style == "keyhold-agent-key":
        env, actor = mcp_server.agent(agent, vault), agent.id
    elif style == "oneclaw-agent-key":
        env = {"ONECLAW_BASE_URL": server.url, "ONECLAW_VAULT_ID": vault, "ONECLAW_AGENT_ID": agent.id,
               "ONECLAW_AGENT_API_KEY": agent.key}
        actor = agent.id
    elif style == "oneclaw-agent-token":
        env = {"ONECLAW_BASE_URL": server.url, "ONECLAW_VAULT_ID": vault, "ONECLAW_AGENT_TOKEN": agent_token()}
        actor = agent.id
    elif style == "keyhold-agent-token":
        env = {"KEYHOLD_URL": server.url, "KEYHOLD_VAULT": vault, "KEYHOLD_TOKEN": agent_token()}
        actor = agent.id
    elif style == "keyhold-person-token":
        env, actor = mcp_server.person(owner, vault), owner.user_id
    else:
        key = leak_watch.track(assert_sdk_ok(owner.client.api_keys.create("mcp-key"), 201))["api_key"]
        env = {"KEYHOLD_URL": server.url, "KEYHOLD_VAULT": vault, "KEYHOLD_API_KEY": key}
        actor = owner.user_id
    trail = Trail(owner, actor)

    async def body(s: Session) -> Any:
        return await s.json("get_secret", path="api/key")

    got = mcp_server.run(env, body)
    assert (got["path"], got["value"]) == ("api/key", value)
    trail.one("secret.read", "api/key")


def test_flags_win_over_the_environment(mcp_server, server, user, make_agent, canary) -> None:
    """``--vault`` beats KEYHOLD_VAULT and ``--url`` beats KEYHOLD_URL (which points at a closed port here)."""
    env_vault, flag_vault = new_vault(user, "env"), new_vault(user, "flag")
    put(user, env_vault, "api/key", canary())
    value = canary()
    put(user, flag_vault, "api/key", value)
    agent = make_agent(user)
    grant(user, env_vault, agent.id, "**", ["read"])
    grant(user, flag_vault, agent.id, "**", ["read"])
    env = mcp_server.agent(agent, env_vault)
    env["KEYHOLD_URL"] = "http://127.0.0.1:9"

    async def body(s: Session) -> Any:
        return await s.json("get_secret", path="api/key")

    got = mcp_server.run(env, body, "--url", server.url, "--vault", flag_vault)
    assert got["value"] == value


def test_keyhold_names_win_over_oneclaw_names(mcp_server, server, user, make_agent, canary) -> None:
    keyhold_vault, oneclaw_vault = new_vault(user, "kh"), new_vault(user, "oc")
    value = canary()
    put(user, keyhold_vault, "api/key", value)
    put(user, oneclaw_vault, "api/key", canary())
    agent = make_agent(user)
    grant(user, keyhold_vault, agent.id, "**", ["read"])
    grant(user, oneclaw_vault, agent.id, "**", ["read"])
    env = {**mcp_server.agent(agent, keyhold_vault), "ONECLAW_VAULT_ID": oneclaw_vault,
           "ONECLAW_BASE_URL": "http://127.0.0.1:9"}

    async def body(s: Session) -> Any:
        return await s.json("get_secret", path="api/key")

    assert mcp_server.run(env, body)["value"] == value


def test_wrong_agent_key_is_an_error_without_the_key(mcp_server, user, vault, make_agent) -> None:
    agent = make_agent(user)
    grant(user, vault, agent.id, "**", ["read"])
    env = mcp_server.agent(agent, vault)
    wrong = agent.key[:-6] + ("AAAAAA" if not agent.key.endswith("AAAAAA") else "BBBBBB")
    env["KEYHOLD_AGENT_API_KEY"] = wrong

    async def body(s: Session) -> str:
        return await s.error("list_secrets")

    text = mcp_server.run(env, body)
    assert wrong not in text and agent.key not in text
    assert "401" in text, text


@pytest.mark.parametrize("credentials", ["agent", "token"])
def test_missing_vault_exits_with_one_line_on_stderr(mcp_server, server, user, make_agent, credentials) -> None:
    agent = make_agent(user)
    if credentials == "agent":
        env = {"KEYHOLD_URL": server.url, "KEYHOLD_AGENT_ID": agent.id, "KEYHOLD_AGENT_API_KEY": agent.key}
    else:
        env = {"ONECLAW_BASE_URL": server.url, "ONECLAW_AGENT_TOKEN": user.token, "ONECLAW_VAULT_ID": ""}
    # stdin stays open: the server must fail at start, not at the first message.
    proc = subprocess.Popen([str(server.binary), "mcp"], env=mcp_server.environ(env), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=mcp_server.root,
                            start_new_session=True)
    try:
        code = proc.wait(timeout=SESSION_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("keyhold mcp without a vault did not exit")
    finally:
        proc.stdin.close()
    out, err = proc.stdout.read().decode(errors="replace"), proc.stderr.read().decode(errors="replace")
    proc.stdout.close()
    proc.stderr.close()
    assert code != 0, (code, out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("keyhold: ") and "vault" in lines[0], err
    assert agent.key not in err and user.token not in err
