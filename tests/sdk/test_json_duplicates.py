"""Request bodies whose JSON names a key twice in one object are refused (400) and change nothing.

Keyhold's decoder keeps the first of two equal keys, while a proxy or firewall in front of it may read the last: the
two would act on different requests. Keys count as equal after unescaping (``"a"`` and ``"\\u0061"``) and up to
canonical equivalence, as the decoder's dictionaries merge them. Bodies in UTF-16 or UTF-32, which the decoder would
transcode without a word, are refused as well. Bodies are sent as raw bytes: no JSON library can write a duplicate.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable

import httpx
import pytest

from support import assert_problem, assert_sdk_error, assert_sdk_ok

JSON = {"Content-Type": "application/json"}


def _refused(resp: httpx.Response, *values: str) -> dict[str, Any]:
    """A 400 problem that names no value of the refused body; its parsed body."""
    problem = assert_problem(resp, 400)
    for value in values:
        assert value not in resp.text, resp.text
    return problem


def _vaults(owner: Any) -> list[tuple[str, str]]:
    resp = owner.http.get("/v1/vaults")
    assert resp.status_code == 200, resp.text
    return sorted((v["id"], v["name"]) for v in resp.json()["vaults"])


@pytest.mark.parametrize("template", [
    '{"name":"%s","name":"%s"}',
    '{"name":"%s","\\u006eame":"%s"}',
    '{"description":"d","name":"%s","description":"e","name":"%s"}',
], ids=["plain", "escaped", "two-fields"])
def test_a_vault_body_with_a_repeated_name_creates_nothing(signup_user: Callable[[], Any], template: str) -> None:
    owner = signup_user()
    before = _vaults(owner)
    first, second = f"first-{uuid.uuid4().hex[:8]}", f"second-{uuid.uuid4().hex[:8]}"
    problem = _refused(owner.http.post("/v1/vaults", content=(template % (first, second)).encode(), headers=JSON),
                       first, second)
    assert "appears twice" in problem["detail"], problem
    assert _vaults(owner) == before


@pytest.mark.parametrize("template,field", [
    ('{"value":"%s","value":"%s"}', "value"),
    ('{"value":"%s","type":"note","\\u0076alue":"%s"}', "value"),
    ('{"value":"%s","metadata":{"env":"%s","env":"prod"}}', "metadata.env"),
    ('{"value":"%s","metadata":{"tags":[{"k":"%s","k":"x"}]}}', "metadata.tags.0.k"),
    ('{"value":"%s","metadata":{"K":"%s","\\u212a":"x"}}', "metadata."),
], ids=["plain", "escaped", "nested", "in-array", "canonically-equal"])
def test_a_secret_body_with_a_repeated_key_stores_nothing(
        user: Any, vault: str, canary: Callable[[str], str], template: str, field: str) -> None:
    kept, first, second = canary("KEPT-"), canary("FIRST-"), canary("SECOND-")
    assert_sdk_ok(user.client.secrets.set(vault, "dup/kept", kept), 201)
    for path in ("dup/new", "dup/kept"):
        resp = user.http.put(f"/v1/vaults/{vault}/secrets/{path}", content=(template % (first, second)).encode(),
                             headers=JSON)
        problem = _refused(resp, kept, first, second)
        assert f"Field '{field}" in problem["detail"] and "appears twice" in problem["detail"], problem
    assert_sdk_error(user.client.secrets.get(vault, "dup/new"), 404)
    stored = assert_sdk_ok(user.client.secrets.get(vault, "dup/kept"), 200)
    assert (stored["value"], stored["version"]) == (kept, 1), stored
    versions = assert_sdk_ok(user.client.secrets.list_versions(vault, "dup/kept"), 200)["versions"]
    assert [v["version"] for v in versions] == [1], versions


def test_the_same_key_in_sibling_objects_is_accepted(user: Any, vault: str, canary: Callable[[str], str]) -> None:
    value = canary()
    body = '{"value":"%s","metadata":{"a":{"k":1},"b":{"k":2},"k":[{"k":"k"},{"k":"k"}]}}' % value
    resp = user.http.put(f"/v1/vaults/{vault}/secrets/dup/siblings", content=body.encode(), headers=JSON)
    assert resp.status_code == 201, resp.text
    assert assert_sdk_ok(user.client.secrets.get(vault, "dup/siblings"), 200)["value"] == value


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16", "utf-32-be"])
def test_a_body_that_is_not_utf8_creates_nothing(signup_user: Callable[[], Any], encoding: str) -> None:
    owner = signup_user()
    before = _vaults(owner)
    name = f"utf-{uuid.uuid4().hex[:8]}"
    for body in (json.dumps({"name": name}), '{"name":"%s","name":"other"}' % name):
        problem = _refused(owner.http.post("/v1/vaults", content=body.encode(encoding), headers=JSON), name)
        assert "UTF-8" in problem["detail"], problem
    assert _vaults(owner) == before


def test_an_mcp_message_with_a_repeated_key_stores_nothing(
        server: Any, user: Any, vault: str, canary: Callable[[str], str]) -> None:
    first, second = canary("MCP-FIRST-"), canary("MCP-SECOND-")
    headers = {"Authorization": f"Bearer {user.token}", "X-Vault-ID": vault,
               "Accept": "application/json, text/event-stream", **JSON}

    def call(path: str, arguments: str) -> httpx.Response:
        body = ('{"jsonrpc":"2.0","id":1,"method":"tools/call",'
                '"params":{"name":"put_secret","arguments":{"path":"%s",%s}}}' % (path, arguments))
        return httpx.post(f"{server.url}/mcp", content=body.encode(), headers=headers, timeout=30)

    problem = _refused(call("mcp/dup", '"value":"%s","value":"%s"' % (first, second)), first, second)
    assert problem["detail"] == "Field 'params.arguments.value' appears twice in one object", problem
    assert_sdk_error(user.client.secrets.get(vault, "mcp/dup"), 404)
    # The same call without the repeated key stores the secret: the refusal above is the duplicate's alone.
    accepted = call("mcp/single", '"value":"%s"' % first)
    assert accepted.status_code == 200 and accepted.json()["result"].get("isError") is not True, accepted.text
    assert assert_sdk_ok(user.client.secrets.get(vault, "mcp/single"), 200)["value"] == first
