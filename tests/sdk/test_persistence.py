"""State survives a SIGTERM + restart on the same data dir."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import httpx
import oneclaw
import pytest

from support import assert_problem, bearer


@pytest.fixture(scope="module")
def restarted(server, signup_user, leak_watch, anon: httpx.Client) -> SimpleNamespace:
    """Write state, restart the server, return what was written and the exit code."""
    u = signup_user()
    c = u.client
    vault = c.vaults.create("persist").data["id"]
    v1, v2 = f"PERSIST-{uuid.uuid4().hex}", f"PERSIST-{uuid.uuid4().hex}"
    limited = f"PERSIST-{uuid.uuid4().hex}"
    leak_watch.values.update({v1, v2, limited})
    assert c.secrets.set(vault, "keep/me", v1, type="password").meta.status == 201
    assert c.secrets.set(vault, "keep/me", v2, type="password").meta.status == 201
    assert c.secrets.set(vault, "limited/once-more", limited, max_access_count=2).meta.status == 201
    assert c.secrets.get(vault, "limited/once-more").meta.status == 200
    assert c.secrets.set(vault, "deleted/stays", v1).meta.status == 201
    assert c.secrets.delete(vault, "deleted/stays").meta.status == 204
    jwks_before = anon.get("/.well-known/jwks.json").json()

    exit_code = server.stop()
    # What the server logged while it shut down, to say why when it did not exit cleanly.
    stop_log = server.log_path.read_text(errors="replace")[-4000:]
    server.start()
    return SimpleNamespace(
        user=u, vault=vault, v1=v1, v2=v2, limited=limited, exit_code=exit_code, jwks_before=jwks_before,
        stop_log=stop_log,
    )


@pytest.fixture
def fresh_client(server, restarted):
    """A new SDK client (new connections) holding the pre-restart token."""
    client = oneclaw.create_client(base_url=server.url, token=restarted.user.token)
    yield client
    client.close()


def test_sigterm_exit_code_is_zero(restarted) -> None:
    assert restarted.exit_code == 0, restarted.stop_log


def test_health_after_restart(server, restarted) -> None:
    assert httpx.get(f"{server.url}/v1/health").status_code == 200


def test_old_token_still_valid(server, restarted) -> None:
    resp = httpx.get(f"{server.url}/v1/auth/me", headers=bearer(restarted.user.token))
    assert resp.status_code == 200, resp.text
    assert resp.json()["email"] == restarted.user.email


def test_secret_reads_back(fresh_client, restarted) -> None:
    resp = fresh_client.secrets.get(restarted.vault, "keep/me")
    assert resp.meta.status == 200, resp.error
    assert resp.data["value"] == restarted.v2
    assert resp.data["version"] == 2
    assert resp.data["type"] == "password"


def test_old_versions_read_back(fresh_client, restarted) -> None:
    resp = fresh_client.secrets.get_version(restarted.vault, "keep/me", 1)
    assert resp.meta.status == 200, resp.error
    assert resp.data["value"] == restarted.v1


def test_vault_still_listed(fresh_client, restarted) -> None:
    vaults = fresh_client.vaults.list().data["vaults"]
    assert restarted.vault in {v["id"] for v in vaults}


def test_signing_key_survives_restart(anon: httpx.Client, restarted) -> None:
    after = anon.get("/.well-known/jwks.json").json()
    assert after["keys"][0]["kid"] == restarted.jwks_before["keys"][0]["kid"]
    assert after["keys"][0]["x"] == restarted.jwks_before["keys"][0]["x"]


def test_login_after_restart(server, restarted, leak_watch) -> None:
    client = oneclaw.create_client(base_url=server.url)
    try:
        resp = client.auth.login(restarted.user.email, restarted.user.password)
        assert resp.meta.status == 200, resp.error
        leak_watch.tokens.add(resp.data["access_token"])
    finally:
        client.close()


def test_access_count_survives_restart(fresh_client, restarted) -> None:
    first = fresh_client.secrets.get(restarted.vault, "limited/once-more")
    assert first.meta.status == 200, first.error
    assert first.data["value"] == restarted.limited
    assert fresh_client.secrets.get(restarted.vault, "limited/once-more").meta.status == 410


def test_deleted_secret_stays_deleted(server, restarted) -> None:
    resp = httpx.get(
        f"{server.url}/v1/vaults/{restarted.vault}/secrets/deleted/stays", headers=bearer(restarted.user.token)
    )
    assert_problem(resp, 410)
