"""Customer-managed keys (contract §1.2, §1.3 ``cmek_encrypted``, §2.3): enable and disable, the CMEK value format
on every write, reads marked ``cmek_encrypted``, and server-assisted rotation to a new key, with the real ``oneclaw``
SDK's cmek methods (raw HTTP only for what the SDK does not expose: headers of the answer, malformed requests)."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import sqlite3
import time
import uuid
from dataclasses import dataclass

import httpx
import oneclaw
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import private_server
from support import PASSWORD, assert_problem, assert_sdk_error, assert_sdk_ok, is_uuid

#: How long a rotation job may take before the test gives up waiting (a hang, not a speed requirement).
JOB_DEADLINE_S = 600.0


@dataclass
class Key:
    raw: bytes
    b64: str
    fingerprint: str


@pytest.fixture
def new_key(leak_watch):
    """Factory: a fresh 32-byte client key; its base64 must never reach a log or the disk."""

    def make() -> Key:
        raw = os.urandom(32)
        key = Key(raw=raw, b64=base64.b64encode(raw).decode(), fingerprint=hashlib.sha256(raw).hexdigest())
        leak_watch.values.add(key.b64)
        return key

    return make


def encrypt(key: Key, plaintext: bytes) -> str:
    """What a CMEK client sends: base64([0x01][12-byte IV][ciphertext][16-byte GCM tag])."""
    iv = os.urandom(12)
    return base64.b64encode(b"\x01" + iv + AESGCM(key.raw).encrypt(iv, plaintext, None)).decode()


def decrypt(key: Key, value: str) -> bytes:
    raw = base64.b64decode(value, validate=True)
    assert raw[0] == 1 and len(raw) >= 29, raw[:1]
    return AESGCM(key.raw).decrypt(raw[1:13], raw[13:], None)


@pytest.fixture
def cmek(user, vault: str, new_key) -> Key:
    """The vault with CMEK on under a fresh key."""
    key = new_key()
    body = assert_sdk_ok(user.client.vaults.enable_cmek(vault, key.fingerprint), 200)
    assert body["cmek_enabled"] is True
    assert body["cmek_fingerprint"] == key.fingerprint
    return key


def wait_for(user, vault: str, job_id: str) -> dict:
    deadline = time.monotonic() + JOB_DEADLINE_S
    while True:
        job = assert_sdk_ok(user.client.vaults.get_rotation_job_status(vault, job_id), 200)
        if job["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# enable / disable
# ---------------------------------------------------------------------------


def test_enable_answers_the_vault_with_its_fingerprint(user, vault: str, new_key) -> None:
    before = assert_sdk_ok(user.client.vaults.get(vault), 200)
    assert before["cmek_enabled"] is False and "cmek_fingerprint" not in before
    key = new_key()
    # Upper-case hex is accepted and stored in lower case.
    body = assert_sdk_ok(user.client.vaults.enable_cmek(vault, key.fingerprint.upper()), 200)
    assert body["id"] == vault
    assert (body["cmek_enabled"], body["cmek_fingerprint"]) == (True, key.fingerprint)
    got = assert_sdk_ok(user.client.vaults.get(vault), 200)
    assert (got["cmek_enabled"], got["cmek_fingerprint"]) == (True, key.fingerprint)
    listed = [v for v in assert_sdk_ok(user.client.vaults.list(), 200)["vaults"] if v["id"] == vault]
    assert listed[0]["cmek_fingerprint"] == key.fingerprint
    # The same fingerprint again changes nothing; another one while CMEK is on needs a rotation.
    assert assert_sdk_ok(user.client.vaults.enable_cmek(vault, key.fingerprint), 200)["cmek_fingerprint"] == key.fingerprint
    assert_problem(user.http.post(f"/v1/vaults/{vault}/cmek", json={"fingerprint": new_key().fingerprint}), 409)
    assert assert_sdk_ok(user.client.vaults.get(vault), 200)["cmek_fingerprint"] == key.fingerprint


@pytest.mark.parametrize(
    "body",
    [
        {"fingerprint": "ab" * 31},
        {"fingerprint": "ab" * 33},
        {"fingerprint": "zz" * 32},
        {"fingerprint": " " + "ab" * 31 + "a"},
        {"fingerprint": 12},
        {},
    ],
)
def test_enable_refuses_what_is_not_a_fingerprint(user, vault: str, body: dict) -> None:
    assert_problem(user.http.post(f"/v1/vaults/{vault}/cmek", json=body), 400)
    assert assert_sdk_ok(user.client.vaults.get(vault), 200)["cmek_enabled"] is False


def test_disable_keeps_versions_written_encrypted_and_marked(user, vault: str, cmek: Key) -> None:
    sent = encrypt(cmek, b"postgres://prod")
    assert_sdk_ok(user.client.secrets.set(vault, "db/url", sent), 201)
    body = assert_sdk_ok(user.client.vaults.disable_cmek(vault), 200)
    assert body["cmek_enabled"] is False and "cmek_fingerprint" not in body
    assert assert_sdk_ok(user.client.vaults.get(vault), 200)["cmek_enabled"] is False
    old = assert_sdk_ok(user.client.secrets.get(vault, "db/url"), 200)
    assert (old["value"], old["cmek_encrypted"]) == (sent, True)
    assert decrypt(cmek, old["value"]) == b"postgres://prod"
    # New writes are plain again, and so marked; the earlier version keeps its mark.
    assert_sdk_ok(user.client.secrets.set(vault, "db/url", "plain-now"), 201)
    new = assert_sdk_ok(user.client.secrets.get(vault, "db/url"), 200)
    assert (new["value"], new["cmek_encrypted"], new["version"]) == ("plain-now", False, 2)
    first = user.http.get(f"/v1/vaults/{vault}/secret-version/db/url/1")
    assert first.status_code == 200, first.text
    assert (first.json()["value"], first.json()["cmek_encrypted"]) == (sent, True)
    versions = user.http.get(f"/v1/vaults/{vault}/secret-versions/db/url").json()["versions"]
    assert [v["cmek_encrypted"] for v in versions] == [True, False]
    # Disabling twice is harmless.
    assert assert_sdk_ok(user.client.vaults.disable_cmek(vault), 200)["cmek_enabled"] is False


# ---------------------------------------------------------------------------
# the value format
# ---------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


NOT_CMEK = {
    "plaintext": "sk-live-1234567890",
    "empty": "",
    "too short (28 bytes)": _b64(b"\x01" + b"\x00" * 27),
    "wrong version byte": _b64(b"\x02" + b"\x00" * 40),
    "missing padding": _b64(b"\x01" + b"\x00" * 30).rstrip("="),
    "url-safe alphabet": _b64(b"\x01" + b"\xfb\xff" * 20).replace("+", "-").replace("/", "_"),
    "white space": _b64(b"\x01" + b"\x00" * 40)[:20] + "\n" + _b64(b"\x01" + b"\x00" * 40)[20:],
    "non-canonical trailing bits": _b64(b"\x01" + b"\x00" * 30)[:-2] + "B=",
}


@pytest.mark.parametrize("name", sorted(NOT_CMEK))
def test_a_cmek_vault_refuses_every_value_not_in_the_cmek_format(user, vault: str, cmek: Key, name: str) -> None:
    resp = user.http.put(f"/v1/vaults/{vault}/secrets/api/key", json={"value": NOT_CMEK[name]})
    assert_problem(resp, 400)
    # Nothing stored.
    assert_problem(user.http.get(f"/v1/vaults/{vault}/secrets/api/key"), 404)
    assert user.http.get(f"/v1/vaults/{vault}/secrets").json()["secrets"] == []


def test_the_sdk_write_of_a_plain_value_is_refused_and_a_cmek_one_accepted(user, vault: str, cmek: Key) -> None:
    assert_sdk_error(user.client.secrets.set(vault, "api/key", "plain"), 400)
    created = assert_sdk_ok(user.client.secrets.set(vault, "api/key", encrypt(cmek, b"")), 201)
    assert created["version"] == 1 and created["cmek_encrypted"] is True
    assert "value" not in created


def test_reads_answer_the_clients_ciphertext_marked_cmek_encrypted(user, vault: str, new_key) -> None:
    assert_sdk_ok(user.client.secrets.set(vault, "before", "written-before-cmek"), 201)
    key = new_key()
    assert_sdk_ok(user.client.vaults.enable_cmek(vault, key.fingerprint), 200)
    sent = encrypt(key, b"the real secret")
    assert_sdk_ok(user.client.secrets.set(vault, "api/key", sent, type="api_key"), 201)

    got = assert_sdk_ok(user.client.secrets.get(vault, "api/key"), 200)
    assert got["value"] == sent, "stored opaquely: the client's own ciphertext comes back"
    assert got["cmek_encrypted"] is True
    assert decrypt(key, got["value"]) == b"the real secret"
    with pytest.raises(InvalidTag):
        decrypt(new_key(), got["value"])
    before = assert_sdk_ok(user.client.secrets.get(vault, "before"), 200)
    assert (before["value"], before["cmek_encrypted"]) == ("written-before-cmek", False)
    listed = {s["path"]: s["cmek_encrypted"] for s in assert_sdk_ok(user.client.secrets.list(vault), 200)["secrets"]}
    assert listed == {"api/key": True, "before": False}


def test_server_generated_rotation_is_refused_in_a_cmek_vault(user, vault: str, cmek: Key) -> None:
    sent = encrypt(cmek, b"v1")
    assert_sdk_ok(user.client.secrets.set(vault, "svc/token", sent), 201)
    resp = user.http.post(f"/v1/vaults/{vault}/secret-rotate/svc/token", json={"length": 32})
    assert_problem(resp, 400)
    assert_sdk_error(user.client.secrets.rotate_generate(vault, "svc/token", length=32), 400)
    got = assert_sdk_ok(user.client.secrets.get(vault, "svc/token"), 200)
    assert (got["version"], got["value"]) == (1, sent)


# ---------------------------------------------------------------------------
# rotation
# ---------------------------------------------------------------------------


def test_rotation_moves_every_version_to_the_new_key(user, vault: str, cmek: Key, new_key) -> None:
    paths = [f"svc/{i:03d}" for i in range(150)]
    plaintexts: dict[tuple[str, int], bytes] = {}
    for path in paths:
        for version in (1, 2):
            plaintexts[(path, version)] = f"{path}#{version}-{uuid.uuid4().hex}".encode()
            assert_sdk_ok(user.client.secrets.set(vault, path, encrypt(cmek, plaintexts[(path, version)])), 201)
    total = len(plaintexts)
    target = new_key()

    started = time.monotonic()
    resp = user.client.vaults.rotate_cmek(vault, cmek.b64, target.b64, target.fingerprint)
    job = assert_sdk_ok(resp, 202)
    assert is_uuid(job["id"]) and job["job_id"] == job["id"]
    assert job["vault_id"] == vault
    assert (job["old_fingerprint"], job["new_fingerprint"]) == (cmek.fingerprint, target.fingerprint)
    assert job["status"] == "pending" and job["processed"] == 0 and job["total_secrets"] == total
    assert "created_at" in job
    done = wait_for(user, vault, job["id"])
    elapsed = time.monotonic() - started
    assert done["status"] == "completed", done
    assert (done["total_secrets"], done["processed"]) == (total, total)
    assert "error" not in done and done["started_at"] and done["completed_at"]
    print(f"\nCMEK rotation: {total} versions in {elapsed:.2f} s, {total / elapsed:.0f} versions/s (polled)")

    vault_now = assert_sdk_ok(user.client.vaults.get(vault), 200)
    assert (vault_now["cmek_enabled"], vault_now["cmek_fingerprint"]) == (True, target.fingerprint)
    for (path, version), plaintext in plaintexts.items():
        got = user.http.get(f"/v1/vaults/{vault}/secret-version/{path}/{version}")
        assert got.status_code == 200, got.text
        assert got.json()["cmek_encrypted"] is True
        assert decrypt(target, got.json()["value"]) == plaintext
        with pytest.raises(InvalidTag):
            decrypt(cmek, got.json()["value"])
    # From now on the vault answers to the new key only.
    assert_sdk_error(user.client.vaults.rotate_cmek(vault, cmek.b64, new_key().b64, new_key().fingerprint), 400)
    assert_sdk_ok(user.client.secrets.set(vault, "after", encrypt(target, b"after")), 201)


def test_rotation_answers_202_with_the_jobs_location(user, vault: str, cmek: Key, new_key) -> None:
    assert_sdk_ok(user.client.secrets.set(vault, "one", encrypt(cmek, b"one")), 201)
    target = new_key()
    resp = user.http.post(
        f"/v1/vaults/{vault}/cmek-rotate", json={"new_fingerprint": target.fingerprint},
        headers={"x-cmek-old-key": cmek.b64, "x-cmek-new-key": target.b64})
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert resp.headers["location"] == f"/v1/vaults/{vault}/cmek-rotate/{job['id']}"
    assert wait_for(user, vault, job["id"])["status"] == "completed"
    polled = user.http.get(resp.headers["location"])
    assert polled.status_code == 200 and polled.json()["id"] == job["id"]
    for body in (polled.text, resp.text):
        assert cmek.b64 not in body and target.b64 not in body


def test_rotation_refuses_keys_that_do_not_match(user, vault: str, cmek: Key, new_key) -> None:
    sent = encrypt(cmek, b"keep me")
    assert_sdk_ok(user.client.secrets.set(vault, "keep", sent), 201)
    target, stranger = new_key(), new_key()
    url = f"/v1/vaults/{vault}/cmek-rotate"
    cases = [
        # A wrong old key.
        ({"x-cmek-old-key": stranger.b64, "x-cmek-new-key": target.b64}, {"new_fingerprint": target.fingerprint}),
        # The new key is not the one new_fingerprint names.
        ({"x-cmek-old-key": cmek.b64, "x-cmek-new-key": stranger.b64}, {"new_fingerprint": target.fingerprint}),
        # Not 32 bytes, not base64, missing.
        ({"x-cmek-old-key": _b64(cmek.raw[:16]), "x-cmek-new-key": target.b64}, {"new_fingerprint": target.fingerprint}),
        ({"x-cmek-old-key": cmek.b64, "x-cmek-new-key": "not base64!"}, {"new_fingerprint": target.fingerprint}),
        ({"x-cmek-new-key": target.b64}, {"new_fingerprint": target.fingerprint}),
        ({"x-cmek-old-key": cmek.b64}, {"new_fingerprint": target.fingerprint}),
        # A bad fingerprint; the same key again.
        ({"x-cmek-old-key": cmek.b64, "x-cmek-new-key": target.b64}, {"new_fingerprint": "xyz"}),
        ({"x-cmek-old-key": cmek.b64, "x-cmek-new-key": cmek.b64}, {"new_fingerprint": cmek.fingerprint}),
    ]
    for headers, body in cases:
        problem = assert_problem(user.http.post(url, json=body, headers=headers), 400)
        for key in (cmek, target, stranger):
            assert key.b64 not in problem["detail"]
    assert_sdk_error(user.client.vaults.rotate_cmek(vault, stranger.b64, target.b64, target.fingerprint), 400)
    assert assert_sdk_ok(user.client.vaults.get(vault), 200)["cmek_fingerprint"] == cmek.fingerprint
    assert assert_sdk_ok(user.client.secrets.get(vault, "keep"), 200)["value"] == sent


def test_rotation_needs_cmek_on(user, vault: str, new_key) -> None:
    old, target = new_key(), new_key()
    assert_sdk_error(user.client.vaults.rotate_cmek(vault, old.b64, target.b64, target.fingerprint), 400)


def test_a_version_that_does_not_open_under_the_old_key_fails_the_job_and_changes_nothing(
    user, vault: str, cmek: Key, new_key
) -> None:
    good = {f"ok/{i}": encrypt(cmek, f"ok-{i}".encode()) for i in range(5)}
    for path, value in good.items():
        assert_sdk_ok(user.client.secrets.set(vault, path, value), 201)
    # CMEK-formatted, but under another key: the server cannot tell until the rotation opens it.
    impostor = encrypt(new_key(), b"not under the vault's key")
    assert_sdk_ok(user.client.secrets.set(vault, "bad/one", impostor), 201)
    target = new_key()
    job = assert_sdk_ok(user.client.vaults.rotate_cmek(vault, cmek.b64, target.b64, target.fingerprint), 202)
    done = wait_for(user, vault, job["id"])
    assert done["status"] == "failed", done
    assert "bad/one" in done["error"] and "old key" in done["error"]
    assert done["processed"] == 0 and done["completed_at"]
    assert cmek.b64 not in done["error"] and target.b64 not in done["error"]
    # The whole batch stayed as it was, and the vault on its key.
    assert assert_sdk_ok(user.client.vaults.get(vault), 200)["cmek_fingerprint"] == cmek.fingerprint
    for path, value in good.items():
        assert assert_sdk_ok(user.client.secrets.get(vault, path), 200)["value"] == value
    # Deleting the secret does not help: a deleted secret's versions are kept, and move with the rest, so posting
    # the rotation again fails the same way.
    assert user.http.delete(f"/v1/vaults/{vault}/secrets/bad/one").status_code == 204
    again = assert_sdk_ok(user.client.vaults.rotate_cmek(vault, cmek.b64, target.b64, target.fingerprint), 202)
    assert wait_for(user, vault, again["id"])["status"] == "failed"
    # A new write at the path replaces the deleted secret with its versions; then the rotation goes through.
    assert_sdk_ok(user.client.secrets.set(vault, "bad/one", encrypt(cmek, b"mended")), 201)
    last = assert_sdk_ok(user.client.vaults.rotate_cmek(vault, cmek.b64, target.b64, target.fingerprint), 202)
    finished = wait_for(user, vault, last["id"])
    assert finished["status"] == "completed", finished
    assert finished["processed"] == len(good) + 1
    assert decrypt(target, assert_sdk_ok(user.client.secrets.get(vault, "bad/one"), 200)["value"]) == b"mended"


def test_an_unknown_job_is_404(user, vault: str, cmek: Key, new_key) -> None:
    assert_sdk_error(user.client.vaults.get_rotation_job_status(vault, str(uuid.uuid4())), 404)
    assert_problem(user.http.get(f"/v1/vaults/{vault}/cmek-rotate/not-a-uuid"), 404)
    # A job of another vault is not found under this one.
    other = assert_sdk_ok(user.client.vaults.create(f"other-{uuid.uuid4().hex[:8]}"), 201)["id"]
    target = new_key()
    job = assert_sdk_ok(user.client.vaults.rotate_cmek(vault, cmek.b64, target.b64, target.fingerprint), 202)
    assert wait_for(user, vault, job["id"])["status"] == "completed"
    assert_sdk_error(user.client.vaults.get_rotation_job_status(other, job["id"]), 404)


# ---------------------------------------------------------------------------
# who may
# ---------------------------------------------------------------------------


def test_only_the_vaults_owners_manage_its_keys(user, other_user, join_org, make_agent, agent_sdk, vault: str, cmek: Key, new_key) -> None:
    target = new_key()
    job = assert_sdk_ok(user.client.vaults.rotate_cmek(vault, cmek.b64, target.b64, target.fingerprint), 202)
    assert wait_for(user, vault, job["id"])["status"] == "completed"
    after = new_key()

    # Another org, and a member without a policy on the vault: it does not exist for them.
    member = join_org(user, "member")
    for outsider in (other_user, member):
        assert_sdk_error(outsider.client.vaults.enable_cmek(vault, after.fingerprint), 404)
        assert_sdk_error(outsider.client.vaults.disable_cmek(vault), 404)
        assert_sdk_error(outsider.client.vaults.rotate_cmek(vault, target.b64, after.b64, after.fingerprint), 404)
        assert_sdk_error(outsider.client.vaults.get_rotation_job_status(vault, job["id"]), 404)
    # A member who may read the vault, and an agent with a policy on it: they see it but do not manage its keys.
    policy = {"secret_path_pattern": "**", "principal_type": "user", "principal_id": member.user_id, "permissions": ["read", "write"]}
    assert user.http.post(f"/v1/vaults/{vault}/policies", json=policy).status_code == 201
    bot = make_agent(user)
    policy = {"secret_path_pattern": "**", "principal_type": "agent", "principal_id": bot.id, "permissions": ["read", "write"]}
    assert user.http.post(f"/v1/vaults/{vault}/policies", json=policy).status_code == 201
    for client in (member.client, agent_sdk(bot.key, agent_id=bot.id)):
        assert_sdk_error(client.vaults.enable_cmek(vault, after.fingerprint), 403)
        assert_sdk_error(client.vaults.disable_cmek(vault), 403)
        assert_sdk_error(client.vaults.rotate_cmek(vault, target.b64, after.b64, after.fingerprint), 403)
        assert_sdk_error(client.vaults.get_rotation_job_status(vault, job["id"]), 403)
    # A member who may write still writes only CMEK values.
    assert_sdk_error(member.client.secrets.set(vault, "m/one", "plain"), 400)
    assert_sdk_ok(member.client.secrets.set(vault, "m/one", encrypt(target, b"m")), 201)
    # Nothing they tried changed the vault; an admin of the org is an owner.
    assert assert_sdk_ok(user.client.vaults.get(vault), 200)["cmek_fingerprint"] == target.fingerprint
    admin = join_org(user, "admin")
    assert assert_sdk_ok(admin.client.vaults.disable_cmek(vault), 200)["cmek_enabled"] is False
    # The refusals and the changes are in the audit log, without any key.
    events = user.http.get("/v1/audit/events", params={"limit": 500}).json()["events"]
    cmek_events = [e for e in events if e["action"].startswith("vault.cmek_") and e["resource_id"] == vault]
    actions = {(e["action"], (e.get("details") or {}).get("outcome")) for e in cmek_events}
    assert ("vault.cmek_enable", None) in actions
    assert ("vault.cmek_disable", "denied") in actions and ("vault.cmek_disable", None) in actions
    assert ("vault.cmek_rotate", "completed") in actions and ("vault.cmek_rotate", "denied") in actions
    text = str(cmek_events)
    for key in (cmek, target, after):
        assert key.b64 not in text


@pytest.mark.skipif(os.environ.get("KEYHOLD_SDK_BACKEND", "sqlite") != "sqlite", reason="edits the SQLite database directly")
def test_versions_left_under_a_third_key_must_be_finished_first(server, user, vault: str, cmek: Key, new_key) -> None:
    """An unfinished rotation to K9 left a version under K9 (planted with SQL: a version's fingerprint is not sealed):
    rotating to yet another key is refused, naming K9, and rotating to K9 brings every version under it."""
    third, other = new_key(), new_key()
    kept = encrypt(cmek, b"under the vault's key")
    moved = encrypt(third, b"moved by an unfinished rotation")
    assert_sdk_ok(user.client.secrets.set(vault, "kept", kept), 201)
    assert_sdk_ok(user.client.secrets.set(vault, "moved", moved), 201)
    conn = sqlite3.connect(server.data_dir / "keyhold.sqlite", timeout=30, isolation_level=None)
    try:
        changed = conn.execute(
            "UPDATE secret_versions SET cmek_fingerprint = ? WHERE secret_id = "
            "(SELECT id FROM secrets WHERE vault_id = ? AND path = 'moved')", (third.fingerprint, vault)).rowcount
        assert changed == 1
    finally:
        conn.close()

    refused = assert_problem(user.http.post(
        f"/v1/vaults/{vault}/cmek-rotate", json={"new_fingerprint": other.fingerprint},
        headers={"x-cmek-old-key": cmek.b64, "x-cmek-new-key": other.b64}), 409)
    assert third.fingerprint in refused["detail"] and other.b64 not in refused["detail"]

    job = assert_sdk_ok(user.client.vaults.rotate_cmek(vault, cmek.b64, third.b64, third.fingerprint), 202)
    done = wait_for(user, vault, job.get("id") or job["job_id"])
    assert done["status"] == "completed", done
    assert assert_sdk_ok(user.client.vaults.get(vault), 200)["cmek_fingerprint"] == third.fingerprint
    assert decrypt(third, assert_sdk_ok(user.client.secrets.get(vault, "kept"), 200)["value"]) == b"under the vault's key"
    assert decrypt(third, assert_sdk_ok(user.client.secrets.get(vault, "moved"), 200)["value"]) == b"moved by an unfinished rotation"


def test_a_rotation_killed_midway_is_resumed_after_a_restart(server, tmp_path, leak_watch, new_key) -> None:
    """SIGKILL once the job has committed its first batch of 1,500 versions; after the restart the job is left
    unfinished, posting the rotation again finishes it, and every version ends under the new key exactly once. On a
    server of its own: the session's clients keep no connection to a killed process."""
    with private_server(server, tmp_path) as own:
        email = f"cmek-{uuid.uuid4().hex}@example.com"
        assert httpx.post(f"{own.url}/v1/auth/signup", json={"email": email, "password": PASSWORD}).status_code == 200
        login = httpx.post(f"{own.url}/v1/auth/token", json={"email": email, "password": PASSWORD})
        token = leak_watch.track(login.json())["access_token"]
        client = oneclaw.create_client(base_url=own.url, token=token)
        try:
            _rotate_across_a_kill(own, client, new_key)
        finally:
            client.close()


def _rotate_across_a_kill(own, client, new_key) -> None:
    vault = assert_sdk_ok(client.vaults.create(f"cmek-kill-{uuid.uuid4().hex[:8]}"), 201)["id"]
    cmek = new_key()
    assert_sdk_ok(client.vaults.enable_cmek(vault, cmek.fingerprint), 200)
    plaintexts = {f"bulk/{i:04d}": f"value-{i}-{uuid.uuid4().hex}".encode() for i in range(1500)}
    for path, plaintext in plaintexts.items():
        assert_sdk_ok(client.secrets.set(vault, path, encrypt(cmek, plaintext)), 201)
    target = new_key()
    first = assert_sdk_ok(client.vaults.rotate_cmek(vault, cmek.b64, target.b64, target.fingerprint), 202)
    # Killed as soon as a batch has committed (15 batches of 100; polled without pause).
    deadline = time.monotonic() + JOB_DEADLINE_S
    while assert_sdk_ok(client.vaults.get_rotation_job_status(vault, first["id"]), 200)["processed"] == 0:
        assert time.monotonic() < deadline, "the job committed no batch"
    proc = own.proc
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    own.proc = None
    own.start()

    interrupted = assert_sdk_ok(client.vaults.get_rotation_job_status(vault, first["id"]), 200)
    assert interrupted["status"] == "running" and 0 < interrupted["processed"] < len(plaintexts), interrupted
    assert assert_sdk_ok(client.vaults.get(vault), 200)["cmek_fingerprint"] == cmek.fingerprint
    second = assert_sdk_ok(client.vaults.rotate_cmek(vault, cmek.b64, target.b64, target.fingerprint), 202)
    deadline = time.monotonic() + JOB_DEADLINE_S
    while (done := assert_sdk_ok(client.vaults.get_rotation_job_status(vault, second["id"]), 200))["status"] not in (
            "completed", "failed"):
        assert time.monotonic() < deadline, done
        time.sleep(0.05)
    assert done["status"] == "completed", done
    before = assert_sdk_ok(client.vaults.get_rotation_job_status(vault, first["id"]), 200)
    assert before["status"] == "failed" and second["id"] in before["error"], before
    # The batches committed before the kill are not done again: the two jobs together moved each version once.
    assert before["processed"] + done["processed"] == len(plaintexts), (before, done)
    assert assert_sdk_ok(client.vaults.get(vault), 200)["cmek_fingerprint"] == target.fingerprint
    for path, plaintext in plaintexts.items():
        got = assert_sdk_ok(client.secrets.get(vault, path), 200)
        assert (got["version"], decrypt(target, got["value"])) == (1, plaintext)
    print(f"\nCMEK rotation killed midway: {before['processed']} of {len(plaintexts)} versions moved before the "
          f"kill, the rest by the resumed job")
