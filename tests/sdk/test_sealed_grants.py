"""Sealed grants (issue 16): a row that grants or limits access carries a MAC under a key only the keystore can
unseal. Someone who can write to the database but not use the keystore (a PostgreSQL operator, an edited backup) can
delete such a row but not widen it: each edit below is well formed and, on a build without seals, widened access;
now the requests that need the row answer 503 and the log names the table's `seal` column. Runs on every backend."""

from __future__ import annotations

from support import assert_problem, assert_sdk_error, assert_sdk_ok
from test_sharing import share
from test_stored_rows import assert_refused
from test_stored_rows import user, vault  # noqa: F401  (a user and vault of their own org)


def assert_sdk_refused(resp, *hidden: str) -> None:
    assert resp.meta.status == 503, (resp.meta.status, resp.error)
    for text in hidden:
        assert text not in str(resp.data) and text not in str(resp.error)


def log_names(server, table: str) -> None:
    log = server.log_path.read_text(errors="replace")
    assert f"keyhold.storage.table={table}" in log and "keyhold.storage.column=seal" in log, log[-2000:]


def test_a_policy_widened_in_the_database_grants_nothing(server, user, vault, make_agent, agent_sdk, canary) -> None:
    value = canary("SEAL-")
    assert_sdk_ok(user.client.secrets.set(vault, "app/key", value), 201)
    bot = make_agent(user, vault_ids=[vault])
    assert_sdk_ok(user.client.policies.create(vault, principal_type="agent", principal_id=bot.id,
                                              secret_path_pattern="app/**", permissions=["read"]), 201)
    client = agent_sdk(bot.key, agent_id=bot.id)
    assert assert_sdk_ok(client.secrets.get(vault, "app/key"), 200)["value"] == value
    assert_sdk_error(client.secrets.set(vault, "app/key", "overwritten-by-the-agent"), 403)

    assert server.execute(f"UPDATE policies SET permissions = '[\"read\", \"write\"]' "
                          f"WHERE principal_id = '{bot.id}' AND vault_id = '{vault}'") == 1
    assert_sdk_refused(client.secrets.set(vault, "app/key", "overwritten-by-the-agent"))
    assert_sdk_refused(client.secrets.get(vault, "app/key"), value)
    assert assert_sdk_ok(user.client.secrets.get(vault, "app/key"), 200)["value"] == value  # nothing was written
    log_names(server, "policies")


def test_an_agent_binding_emptied_in_the_database_opens_no_vault(server, user, vault, make_agent, agent_sdk,
                                                                 canary) -> None:
    value = canary("SEAL-")
    other = assert_sdk_ok(user.client.vaults.create("sealed-other"), 201)["id"]
    assert_sdk_ok(user.client.secrets.set(other, "app/key", value), 201)
    bot = make_agent(user, vault_ids=[vault])
    assert_sdk_ok(user.client.policies.create(other, principal_type="agent", principal_id=bot.id,
                                              secret_path_pattern="**"), 201)
    client = agent_sdk(bot.key, agent_id=bot.id)
    assert client.secrets.get(other, "app/key").meta.status == 404  # a vault outside the binding is hidden

    # An empty binding means every vault of the org.
    assert server.execute(f"UPDATE agents SET vault_ids = '[]' WHERE id = '{bot.id}'") == 1
    assert_sdk_refused(client.secrets.get(other, "app/key"), value)
    log_names(server, "agents")


def test_a_share_whose_count_was_reset_in_the_database_stays_spent(server, user, vault, anon, canary) -> None:
    value = canary("SEAL-")
    secret = assert_sdk_ok(user.client.secrets.set(vault, "sealed/once", value), 201)
    link = share(user.client, secret["id"], max_access_count=1)
    assert anon.get(f"/v1/share/{link['id']}").json()["value"] == value
    assert_problem(anon.get(f"/v1/share/{link['id']}"), 410)

    assert server.execute(f"UPDATE shares SET access_count = 0 WHERE id = '{link['id']}'") == 1
    assert_refused(anon.get(f"/v1/share/{link['id']}"), value)
    log_names(server, "shares")
