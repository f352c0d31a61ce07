"""Stored rows fail closed (issue 16): a guarded field edited in the database into something that does not parse
makes the requests that need it answer 503 with a generic detail, where the old lenient decoding read it with a wider
meaning (an agent bound to every vault, a share open to every address). The server log names the table and column,
never the value. These tests edit the live SQLite file; the Swift conformance suite plants the same values on
PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import pytest

from support import assert_problem, assert_sdk_ok
from test_sharing import share


@pytest.fixture
def user(signup_user):
    """A user of their own org: the rows these tests damage must not reach other tests' lists."""
    return signup_user()


@pytest.fixture
def vault(user) -> str:
    return assert_sdk_ok(user.client.vaults.create("tampered"), 201)["id"]

pytestmark = pytest.mark.skipif(
    os.environ.get("KEYHOLD_SDK_BACKEND", "sqlite") != "sqlite", reason="edits the SQLite database directly")


def plant(server, sql: str, *params: Any) -> None:
    """One statement on the live database, from outside Keyhold (an operator with database access)."""
    conn = sqlite3.connect(server.data_dir / "keyhold.sqlite", timeout=30, isolation_level=None)
    try:
        assert conn.execute(sql, params).rowcount == 1, sql
    finally:
        conn.close()


def assert_refused(resp, *hidden: str) -> None:
    body = assert_problem(resp, 503)
    assert body["detail"] == "Stored data failed an integrity check; the request was refused", body
    for text in hidden:
        assert text not in resp.text


def log_names(server, table: str, column: str, value: str) -> None:
    log = server.log_path.read_text(errors="replace")
    assert f"keyhold.storage.table={table}" in log and f"keyhold.storage.column={column}" in log, log[-2000:]
    assert value not in log


def test_a_share_allowlist_that_does_not_parse_refuses_the_link_instead_of_opening_it(server, user, vault, anon,
                                                                                    canary) -> None:
    value = canary("ROWS-")
    secret = assert_sdk_ok(user.client.secrets.set(vault, "rows/allowlist", value), 201)
    link = share(user.client, secret["id"], ip_allowlist=["10.0.0.0/8"])
    assert_problem(anon.get(f"/v1/share/{link['id']}"), 403)
    # Lenient decoding dropped the entry that did not parse: an empty allowlist, which means every address.
    plant(server, "UPDATE shares SET ip_allowlist = ? WHERE id = ?", '["everywhere-at-once"]', link["id"])
    assert_refused(anon.get(f"/v1/share/{link['id']}"), value, "everywhere-at-once")
    log_names(server, "shares", "ip_allowlist", "everywhere-at-once")


def test_an_unknown_share_recipient_type_is_refused_not_read_as_a_public_link(server, user, vault, anon, canary,
                                                                            signup_user) -> None:
    value = canary("ROWS-")
    other = signup_user()
    secret = assert_sdk_ok(user.client.secrets.set(vault, "rows/recipient", value), 201)
    link = share(user.client, secret["id"], recipient_type="external_email", email=other.email)
    assert_problem(anon.get(f"/v1/share/{link['id']}"), 401)
    # Lenient decoding read an unknown recipient type as `anyone_with_link`.
    plant(server, "UPDATE shares SET recipient_type = 'everyone' WHERE id = ?", link["id"])
    assert_refused(anon.get(f"/v1/share/{link['id']}"), value)
    log_names(server, "shares", "recipient_type", "everyone")


def test_an_agent_binding_that_does_not_parse_refuses_the_agent_instead_of_opening_every_vault(
        server, user, vault, make_agent, agent_sdk, canary) -> None:
    value = canary("ROWS-")
    other = assert_sdk_ok(user.client.vaults.create("rows-other"), 201)["id"]
    assert_sdk_ok(user.client.secrets.set(other, "app/key", value), 201)
    bot = make_agent(user, vault_ids=[vault])
    assert_sdk_ok(user.client.policies.create(other, principal_type="agent", principal_id=bot.id,
                                              secret_path_pattern="**"), 201)
    client = agent_sdk(bot.key, agent_id=bot.id)
    assert client.secrets.get(other, "app/key").meta.status == 404  # an unbound vault is hidden
    # Lenient decoding dropped the id that did not parse: an empty binding, which means every vault.
    plant(server, "UPDATE agents SET vault_ids = ? WHERE id = ?", '["not-a-vault-id"]', bot.id)
    resp = client.secrets.get(other, "app/key")
    assert resp.meta.status == 503, (resp.meta.status, resp.error)
    assert value not in str(resp.data)
    log_names(server, "agents", "vault_ids", "not-a-vault-id")
