"""Key rotation, rewrap and retirement end to end: the HTTP route and the operator commands (`keyhold keys …`)
against the live server's own database and keystore, with every version readable at each step."""

from __future__ import annotations

import os
import re
import subprocess

import httpx
import pytest

from conftest import SDK_KEYSTORE, SOFTHSM_MODULE
from support import assert_problem, assert_sdk_ok, bearer


def keys_command(server, *args: str) -> str:
    result = subprocess.run(
        [str(server.binary), "keys", *args, *server.options],
        capture_output=True, text=True, timeout=120, env={**os.environ, "KEYHOLD_BCRYPT_COST": "10", **server.env})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_rotation_rewrap_and_retirement_keep_every_version_readable(server, signup_user, canary) -> None:
    owner = signup_user()
    client = owner.client
    vault = assert_sdk_ok(client.vaults.create("rotating"), 201)["id"]
    values = {}
    for path in ("app/db", "app/api", "app/cache"):
        for _ in range(2):
            value = canary("ROTATE-")
            version = assert_sdk_ok(client.secrets.set(vault, path, value), 201)["version"]
            values[(path, version)] = value
    # An environment variable's data key is wrapped by the same vault key and moves with the versions'.
    variable = canary("ROTATE-ENV-")
    assert_sdk_ok(client.env_vars.create(vault, "ROTATED_ENV", variable), 201)

    def all_readable() -> None:
        for (path, version), value in values.items():
            assert assert_sdk_ok(client.secrets.get_version(vault, path, version), 200)["value"] == value
        assert assert_sdk_ok(client.env_vars.get(vault, "ROTATED_ENV"), 200)["value"] == variable

    rotated = httpx.post(f"{server.url}/v1/vaults/{vault}/rotate-key", headers=bearer(owner.token))
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["kek_id"] == f"vault-{vault}-v2"
    after = canary("ROTATE-AFTER-")
    values[("app/db", 3)] = after
    assert assert_sdk_ok(client.secrets.set(vault, "app/db", after), 201)["version"] == 3
    all_readable()

    out = keys_command(server, "rewrap", "--batch-size", "2")
    rewrapped = int(re.search(r"rewrapped (\d+) data keys", out).group(1))
    assert rewrapped >= 7, out
    assert "rewrapped 0 data keys" in keys_command(server, "rewrap")
    all_readable()

    out = keys_command(server, "retire")
    assert f"vault-{vault}-v1" in out, out  # retired only once no version and no variable uses it
    all_readable()

    cli = keys_command(server, "rotate", "--vault", vault)
    assert f"vault-{vault}-v3" in cli
    keys_command(server, "rewrap")
    all_readable()
    events = assert_sdk_ok(client.audit.list(action="vault.rotate_key"), 200)["events"]
    assert {e["actor_type"] for e in events} == {"user", "system"}


def test_only_owners_rotate_and_unknown_vaults_are_404(server, user, vault, signup_user) -> None:
    stranger = signup_user()
    assert_problem(httpx.post(f"{server.url}/v1/vaults/{vault}/rotate-key", headers=bearer(stranger.token)), 404)
    assert_problem(httpx.post(f"{server.url}/v1/vaults/{vault}/rotate-key"), 401)


def test_hsm_health_reports_the_keystore(server) -> None:
    body = httpx.get(f"{server.url}/v1/health/hsm").json()
    assert body["status"] == "ok"
    if SDK_KEYSTORE == "pkcs11":
        assert body["keystore"] == "pkcs11" and body["token_label"] == "keyhold-sdk"
        assert body["secret_keys"] >= 1
    else:
        assert body["keystore"] == "software"


@pytest.mark.skipif(SDK_KEYSTORE != "pkcs11", reason="the HSM keystore only")
def test_keys_in_the_token_are_sensitive_and_never_extractable(server, vault) -> None:
    listing = subprocess.run(
        ["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", "keyhold-sdk", "--login",
         "--pin", server.env["KEYHOLD_PKCS11_PIN"], "--list-objects", "--type", "secrkey"],
        capture_output=True, text=True, timeout=60, env={**os.environ, **server.env})
    assert listing.returncode == 0, listing.stderr
    objects = listing.stdout.split("Secret Key Object")[1:]
    labels = [re.search(r"label:\s+(\S+)", o).group(1) for o in objects]
    assert f"vault-{vault}-v1" in labels and "keyhold-system" in labels
    for obj in objects:
        access = re.search(r"Access:\s+(.+)", obj).group(1)
        assert "sensitive" in access and "never extractable" in access, obj
    # No plaintext key material in the database: the KEK records only name the token objects.
    material = server.rows(f"SELECT material FROM keks WHERE id = 'vault-{vault}-v1'")[0]["material"]
    expected = f"pkcs11:vault-{vault}-v1".encode()
    assert material in (expected, "\\x" + expected.hex())


@pytest.mark.skipif(SDK_KEYSTORE != "pkcs11", reason="the HSM keystore only")
def test_an_hsm_outage_answers_503_and_recovers(server, user, vault, canary) -> None:
    value = canary("HSM-OUTAGE-")
    assert_sdk_ok(user.client.secrets.set(vault, "outage/key", value), 201)
    tokens = os.path.join(os.path.dirname(server.env["SOFTHSM2_CONF"]), "tokens")
    os.rename(tokens, tokens + "-away")
    try:
        assert_problem(httpx.get(f"{server.url}/v1/vaults/{vault}/secrets/outage/key", headers=bearer(user.token)), 503)
        assert httpx.get(f"{server.url}/v1/health/hsm").json()["status"] == "unavailable"
        assert_problem(
            httpx.put(f"{server.url}/v1/vaults/{vault}/secrets/outage/other", json={"value": "x"},
                      headers=bearer(user.token)), 503)
    finally:
        os.rename(tokens + "-away", tokens)
    assert assert_sdk_ok(user.client.secrets.get(vault, "outage/key"), 200)["value"] == value
    assert httpx.get(f"{server.url}/v1/health/hsm").json()["status"] == "ok"
    assert_sdk_ok(user.client.secrets.set(vault, "outage/other", canary("HSM-BACK-")), 201)
