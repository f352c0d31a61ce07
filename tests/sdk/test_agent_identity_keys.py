"""Agents' identity keys (issue 19, contract §1.6): an Ed25519 and a P-256 keypair per agent, the public halves on
the agent, the private halves in the org's `__agent-keys` vault, readable by the agent itself and the org's owners
and admins only; `rotate-identity-keys` keeps the old public keys in the agent's history."""

from __future__ import annotations

import base64
import struct
import subprocess
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support import assert_problem, assert_sdk_error, assert_sdk_ok

KEYS_VAULT = "__agent-keys"


def ssh_path(agent_id: str) -> str:
    return f"agents/{agent_id}/ssh/private_key"


def ecdh_path(agent_id: str) -> str:
    return f"agents/{agent_id}/ecdh/private_key"


def keys_vault(client) -> str:
    vaults = assert_sdk_ok(client.vaults.list(), 200)["vaults"]
    found = [v["id"] for v in vaults if v["name"] == KEYS_VAULT]
    assert len(found) == 1, vaults
    return found[0]


def check_ssh_public_key(text: str) -> bytes:
    """The OpenSSH one-line form: `ssh-ed25519 <base64 blob>`, the blob naming the type and a 32-byte key."""
    kind, blob64 = text.split(" ")
    assert kind == "ssh-ed25519"
    blob = base64.b64decode(blob64, validate=True)
    (n,) = struct.unpack(">I", blob[:4])
    assert blob[4 : 4 + n] == b"ssh-ed25519"
    (m,) = struct.unpack(">I", blob[4 + n : 8 + n])
    assert m == 32 and len(blob) == 8 + n + m
    return blob[8 + n :]


def check_ecdh_public_key(text: str) -> ec.EllipticCurvePublicKey:
    point = base64.b64decode(text, validate=True)
    assert len(point) == 65 and point[0] == 4, len(point)
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


def ssh_public_of_private(private_key: str, tmp_path: Path) -> str:
    key_file = tmp_path / f"id_{uuid.uuid4().hex}"
    key_file.write_text(private_key)
    key_file.chmod(0o600)
    out = subprocess.run(["ssh-keygen", "-y", "-f", str(key_file)], check=True, capture_output=True, text=True)
    key_file.unlink()
    return " ".join(out.stdout.split()[:2])


def ecdh_public_of_private(private_key: str) -> str:
    key = serialization.load_pem_private_key(private_key.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return base64.b64encode(point).decode()


@pytest.fixture(scope="module")
def org(signup_user, join_org, make_agent):
    owner = signup_user()
    first = make_agent(owner, "first-agent")
    second = make_agent(owner, "second-agent")
    return {
        "owner": owner,
        "admin": join_org(owner, "admin"),
        "member": join_org(owner, "member"),
        "first": first,
        "second": second,
    }


def test_a_new_agent_has_both_public_keys_in_every_response(org, agent_sdk) -> None:
    first = org["first"]
    check_ssh_public_key(first.record["ssh_public_key"])
    check_ecdh_public_key(first.record["ecdh_public_key"])
    assert first.record["identity_key_history"] == []
    owner = org["owner"].client
    assert assert_sdk_ok(owner.agents.get(first.id), 200)["ssh_public_key"] == first.record["ssh_public_key"]
    listed = {a["id"]: a for a in assert_sdk_ok(owner.agents.list(), 200)["agents"]}
    assert listed[first.id]["ecdh_public_key"] == first.record["ecdh_public_key"]
    me = assert_sdk_ok(agent_sdk(first.key).agents.me(), 200)
    assert me["ssh_public_key"] == first.record["ssh_public_key"]
    assert me["ecdh_public_key"] == first.record["ecdh_public_key"]
    # Each agent has its own.
    assert org["second"].record["ssh_public_key"] != first.record["ssh_public_key"]
    assert org["second"].record["ecdh_public_key"] != first.record["ecdh_public_key"]


def test_the_org_has_one_agent_keys_vault_that_no_member_created(org) -> None:
    owner = org["owner"].client
    vault_id = keys_vault(owner)
    vault = assert_sdk_ok(owner.vaults.get(vault_id), 200)
    assert vault["created_by"] != org["owner"].user_id
    # The member sees no such vault, and cannot open it.
    member = org["member"].client
    names = {v["name"] for v in assert_sdk_ok(member.vaults.list(), 200)["vaults"]}
    assert KEYS_VAULT not in names
    assert_sdk_error(member.secrets.get(vault_id, ssh_path(org["first"].id)), (403, 404))


def test_the_agent_reads_its_own_private_keys_and_they_match(org, agent_sdk, tmp_path: Path) -> None:
    first = org["first"]
    bot = agent_sdk(first.key)
    vault_id = keys_vault(bot)
    ssh = assert_sdk_ok(bot.secrets.get(vault_id, ssh_path(first.id)), 200)
    assert ssh["type"] == "ssh_key"
    assert ssh["value"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert ssh_public_of_private(ssh["value"], tmp_path) == first.record["ssh_public_key"]
    ecdh = assert_sdk_ok(bot.secrets.get(vault_id, ecdh_path(first.id)), 200)
    assert ecdh["type"] == "private_key"
    assert ecdh_public_of_private(ecdh["value"]) == first.record["ecdh_public_key"]
    # It lists its own keys only.
    listed = {s["path"] for s in assert_sdk_ok(bot.secrets.list(vault_id), 200)["secrets"]}
    assert listed == {ssh_path(first.id), ecdh_path(first.id)}


def test_an_agent_cannot_read_another_agents_keys(org, agent_sdk) -> None:
    bot = agent_sdk(org["first"].key)
    vault_id = keys_vault(bot)
    for path in (ssh_path(org["second"].id), ecdh_path(org["second"].id)):
        assert_sdk_error(bot.secrets.get(vault_id, path), 403)


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owners_and_admins_read_every_agents_keys(org, role: str) -> None:
    client = org[role].client
    vault_id = keys_vault(client)
    for agent in (org["first"], org["second"]):
        value = assert_sdk_ok(client.secrets.get(vault_id, ecdh_path(agent.id)), 200)["value"]
        assert ecdh_public_of_private(value) == agent.record["ecdh_public_key"]


def test_every_read_of_a_key_is_audited(org, agent_sdk) -> None:
    first = org["first"]
    bot = agent_sdk(first.key)
    vault_id = keys_vault(bot)
    owner = org["owner"]
    def reads() -> list[dict]:
        events = owner.http.get("/v1/audit/events", params={"resource_id": ssh_path(first.id), "action": "secret.read"})
        return events.json()["events"]
    before = len(reads())
    assert_sdk_ok(bot.secrets.get(vault_id, ssh_path(first.id)), 200)
    after = reads()
    assert len(after) == before + 1
    assert after[0]["actor_id"] == first.id
    assert "PRIVATE KEY" not in str(after)


def test_a_member_registering_an_agent_cannot_read_its_keys(org, make_agent, agent_sdk) -> None:
    member = org["member"]
    mine = make_agent(member)
    check_ssh_public_key(mine.record["ssh_public_key"])
    vault_id = keys_vault(org["owner"].client)
    assert_sdk_error(member.client.secrets.get(vault_id, ssh_path(mine.id)), (403, 404))
    # Its agent can.
    bot = agent_sdk(mine.key)
    assert assert_sdk_ok(bot.secrets.get(vault_id, ssh_path(mine.id)), 200)["type"] == "ssh_key"


def test_rotate_identity_keys_keeps_the_old_public_keys(org, make_agent, agent_sdk, tmp_path: Path) -> None:
    owner = org["owner"]
    agent = make_agent(owner)
    old_ssh, old_ecdh = agent.record["ssh_public_key"], agent.record["ecdh_public_key"]
    rotated = assert_sdk_ok(owner.client.agents.rotate_identity_keys(agent.id), 200)
    assert rotated["id"] == agent.id
    assert rotated["ssh_public_key"] != old_ssh and rotated["ecdh_public_key"] != old_ecdh
    check_ssh_public_key(rotated["ssh_public_key"])
    check_ecdh_public_key(rotated["ecdh_public_key"])
    history = rotated["identity_key_history"]
    assert [(h["ssh_public_key"], h["ecdh_public_key"]) for h in history] == [(old_ssh, old_ecdh)]
    assert history[0]["created_at"] <= history[0]["retired_at"]
    again = assert_sdk_ok(owner.client.agents.rotate_identity_keys(agent.id), 200)
    assert [h["ssh_public_key"] for h in again["identity_key_history"]] == [old_ssh, rotated["ssh_public_key"]]
    assert assert_sdk_ok(owner.client.agents.get(agent.id), 200)["identity_key_history"] == again["identity_key_history"]
    # The agent reads the new private keys; the old ones stay as earlier versions.
    bot = agent_sdk(agent.key)
    vault_id = keys_vault(bot)
    latest = assert_sdk_ok(bot.secrets.get(vault_id, ssh_path(agent.id)), 200)
    assert latest["version"] == 3
    assert ssh_public_of_private(latest["value"], tmp_path) == again["ssh_public_key"]
    first = assert_sdk_ok(bot.secrets.get_version(vault_id, ssh_path(agent.id), 1), 200)
    assert ssh_public_of_private(first["value"], tmp_path) == old_ssh
    ecdh = assert_sdk_ok(bot.secrets.get(vault_id, ecdh_path(agent.id)), 200)["value"]
    assert ecdh_public_of_private(ecdh) == again["ecdh_public_key"]
    # The old API key still works: identity keys and the ocv_ key are separate.
    assert_sdk_ok(bot.agents.me(), 200)


def test_rotate_identity_keys_is_for_the_agents_managers(org, make_agent) -> None:
    agent = make_agent(org["owner"])
    assert_problem(org["member"].http.post(f"/v1/agents/{agent.id}/rotate-identity-keys"), 404)
    assert_problem(org["owner"].http.post(f"/v1/agents/{uuid.uuid4()}/rotate-identity-keys"), 404)
    after = assert_sdk_ok(org["owner"].client.agents.get(agent.id), 200)
    assert after["ssh_public_key"] == agent.record["ssh_public_key"]
    assert after["identity_key_history"] == []


def test_an_agent_cannot_rotate_identity_keys(org, agent_sdk) -> None:
    bot = agent_sdk(org["first"].key)
    assert_sdk_error(bot.agents.rotate_identity_keys(org["first"].id), 403)


def test_intents_mode_refuses_the_agents_own_private_keys(org, make_agent, agent_sdk) -> None:
    # Fail closed: intents mode refuses every private_key and ssh_key read, its own identity keys included.
    agent = make_agent(org["owner"], intents_api_enabled=True)
    bot = agent_sdk(agent.key)
    vault_id = keys_vault(bot)
    assert_sdk_error(bot.secrets.get(vault_id, ssh_path(agent.id)), 403)
    assert_sdk_error(bot.secrets.get(vault_id, ecdh_path(agent.id)), 403)
    assert assert_sdk_ok(bot.agents.me(), 200)["ssh_public_key"] == agent.record["ssh_public_key"]


def test_purge_deletes_the_agents_private_keys_and_deactivation_keeps_them(org, make_agent) -> None:
    owner = org["owner"]
    vault_id = keys_vault(owner.client)
    kept, purged = make_agent(owner), make_agent(owner)
    assert owner.client.agents.delete(kept.id).meta.status == 204
    assert_sdk_ok(owner.client.secrets.get(vault_id, ssh_path(kept.id)), 200)
    assert owner.http.delete(f"/v1/agents/{purged.id}", params={"purge": "true"}).status_code == 204
    for path in (ssh_path(purged.id), ecdh_path(purged.id)):
        assert_sdk_error(owner.client.secrets.get(vault_id, path), 410)
