"""Backup and restore (issue 21): ``keyhold backup`` copies the SQLite store while the server runs and writes,
``keyhold restore`` refuses anything it cannot verify and leaves the data dir as it was, ``keyhold verify-backup``
runs the same checks; a PostgreSQL store goes through ``pg_dump``/``pg_restore`` and ``verify-backup --database-url``.

Every test runs the real ``keyhold`` binary as a subprocess against a server of its own (the session's keystore: the
software master key, or the PKCS#11 token)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from conftest import SDK_BACKEND, SDK_KEYSTORE, KeyholdServer, _free_port, private_server
from support import PASSWORD, bearer

sqlite_only = pytest.mark.skipif(SDK_BACKEND != "sqlite", reason="a backup file is of the SQLite store")
postgres_only = pytest.mark.skipif(SDK_BACKEND != "postgres", reason="pg_dump is for the PostgreSQL store")
CANARY = "BACKUP-CANARY-"


def keyhold(srv: KeyholdServer, *args: str, options: list[str] | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it beside ``srv``: its storage and keystore options unless ``options`` replaces
    them, its environment (the PKCS#11 PIN) plus ``env``."""
    return subprocess.run(
        [str(srv.binary), *args, *(srv.options if options is None else options)],
        env={**os.environ, **srv.env, **(env or {})}, capture_output=True, text=True, timeout=300)


def keystore_options(srv: KeyholdServer) -> list[str]:
    """The server's options without where its data lives."""
    kept: list[str] = []
    for index in range(0, len(srv.options), 2):
        if srv.options[index] not in {"--data-dir", "--database-url"}:
            kept += srv.options[index:index + 2]
    return kept


def server_on(srv: KeyholdServer, base: Path, data_dir: Path, database_url: str | None = None) -> KeyholdServer:
    """A server like ``srv`` (keystore, environment) on another data dir or database."""
    other = KeyholdServer(srv.binary, data_dir, base / f"server-{uuid.uuid4().hex[:6]}.log", _free_port())
    other.env = dict(srv.env)
    other.options = ["--data-dir", str(data_dir), *keystore_options(srv)]
    if database_url:
        other.backend, other.database_url = "postgres", database_url
        other.options += ["--database-url", database_url]
    return other


def sign_up(srv: KeyholdServer) -> tuple[str, str]:
    """A new account with one vault: (token, vault id)."""
    email = f"backup-{uuid.uuid4().hex}@example.com"
    assert httpx.post(f"{srv.url}/v1/auth/signup", json={"email": email, "password": PASSWORD},
                      timeout=30).status_code == 200
    login = httpx.post(f"{srv.url}/v1/auth/token", json={"email": email, "password": PASSWORD}, timeout=30)
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    vault = httpx.post(f"{srv.url}/v1/vaults", json={"name": "backup"}, headers=bearer(token), timeout=30)
    assert vault.status_code == 201, vault.text
    return token, vault.json()["id"]


@dataclass
class Load:
    """Writers putting new versions of their own paths, each with a distinct value, until stopped."""

    url: str
    token: str
    vault: str
    acked: list[tuple[float, str, int, str]] = field(default_factory=list)  # (answered at, path, version, value)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def writer(self, index: int) -> None:
        with httpx.Client(base_url=self.url, headers=bearer(self.token), timeout=30) as client:
            n = 0
            while not self.stop.is_set():
                path = f"load/w{index}/p{n % 5}"
                value = f"{CANARY}{uuid.uuid4().hex}"
                try:
                    resp = client.put(f"/v1/vaults/{self.vault}/secrets/{path}", json={"value": value})
                except httpx.HTTPError as error:
                    with self.lock:
                        self.errors.append(repr(error))
                    return
                answered = time.monotonic()
                with self.lock:
                    if resp.status_code == 201:
                        self.acked.append((answered, path, resp.json()["version"], value))
                    else:
                        self.errors.append(f"{resp.status_code} {resp.text[:200]}")
                n += 1

    def run(self, writers: int) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.writer, args=(i,), daemon=True) for i in range(writers)]
        for thread in threads:
            thread.start()
        return threads

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 120
        while len(self.acked) < count:
            assert time.monotonic() < deadline and not self.errors, (len(self.acked), self.errors[:3])
            time.sleep(0.05)

    def finish(self, threads: list[threading.Thread]) -> None:
        self.stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert not self.errors, self.errors[:5]


def assert_restored(srv: KeyholdServer, token: str, vault: str, acked: list[tuple[float, str, int, str]],
                    later: list[tuple[float, str, int, str]]) -> None:
    """The restored store is the database as of one commit: every write in ``acked`` (answered before the backup
    started) is in it; of each path's writes in ``later`` (answered while the copy was taken, or after), exactly
    those up to the path's restored latest version are, each version with its own value; the audit chain
    verifies."""
    writes = acked + later
    with httpx.Client(base_url=srv.url, headers=bearer(token), timeout=30) as client:
        latest = {}
        for path in sorted({path for _, path, _, _ in writes}):
            resp = client.get(f"/v1/vaults/{vault}/secrets/{path}")
            assert resp.status_code == 200, (path, resp.text)
            latest[path] = resp.json()["version"]
        for _, path, version, _ in acked:
            assert version <= latest[path], (path, version, latest[path])
        for _, path, version, value in writes:
            resp = client.get(f"/v1/vaults/{vault}/secret-version/{path}/{version}")
            if version <= latest[path]:
                assert resp.status_code == 200 and resp.json()["value"] == value, (path, version, resp.status_code)
            else:
                assert resp.status_code == 404, (path, version, resp.status_code)
        verified = client.get("/v1/audit/verify", params={"limit": 10000})
        assert verified.status_code == 200 and verified.json()["chain_valid"] is True, verified.text


def split_backup(path: Path) -> tuple[bytes, dict, bytes, bytes]:
    """(first line, manifest, MAC line, database) of a backup file."""
    data = path.read_bytes()
    first = data.index(b"\n") + 1
    second = data.index(b"\n", first) + 1
    third = data.index(b"\n", second) + 1
    return data[:first], json.loads(data[first:second - 1]), data[second:third], data[third:]


@sqlite_only
def test_a_backup_under_write_load_restores_every_acknowledged_write(server: KeyholdServer, tmp_path: Path) -> None:
    with private_server(server, tmp_path) as srv:
        token, vault = sign_up(srv)
        load = Load(srv.url, token, vault)
        threads = load.run(6)
        try:
            load.wait_for(150)
            started = time.monotonic()
            backup = tmp_path / "keyhold.backup"
            taken = keyhold(srv, "backup", "--to", str(backup))
            load.wait_for(len(load.acked) + 30)  # the writers went on during the copy and after it
        finally:
            load.finish(threads)
        assert taken.returncode == 0, taken.stderr
        manifest = json.loads(taken.stdout)
        acked = [a for a in load.acked if a[0] < started]
        later = [a for a in load.acked if a[0] >= started]
        assert len(acked) >= 150 and later

        # The file: private, a manifest that describes it, and no value in the clear.
        assert stat.S_IMODE(backup.stat().st_mode) == 0o600
        first, written, mac, database = split_backup(backup)
        assert first == b"KEYHOLD-BACKUP 1\n" and len(mac) == 65
        assert written == manifest and manifest["backend"] == "sqlite"
        assert manifest["database"] == {"bytes": len(database), "sha256": hashlib.sha256(database).hexdigest()}
        assert manifest["counts"]["secret_versions"] >= len(acked)
        assert CANARY.encode() not in backup.read_bytes() and token.encode() not in backup.read_bytes()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".keyhold.backup")], "scratch files left"

        verified = keyhold(srv, "verify-backup", str(backup))
        assert verified.returncode == 0, verified.stderr
        report = json.loads(verified.stdout)
        assert report["valid"] is True and report["problems"] == []
        assert report["counts"] == manifest["counts"] and report["events_verified"] == manifest["counts"]["audit_events"]
        assert report["keys_checked"] >= 1 and report["server_keys_checked"] >= 5

        # Restored into a new data dir (with the software keystore, its master key copied in first).
        restored_dir = tmp_path / "restored"
        if SDK_KEYSTORE == "software":
            restored_dir.mkdir(mode=0o700)
            shutil.copy2(srv.data_dir / "master.key", restored_dir / "master.key")
        done = keyhold(srv, "restore", "--from", str(backup), options=["--data-dir", str(restored_dir),
                                                                          *keystore_options(srv)])
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["valid"] is True
        assert sorted(p.name for p in restored_dir.iterdir()) == sorted(
            ["keyhold.sqlite"] + (["master.key"] if SDK_KEYSTORE == "software" else []))

    restored = server_on(srv, tmp_path, restored_dir)
    restored.start()
    try:
        assert_restored(restored, token, vault, acked, later)
        # The restored store is a working server: it takes new writes.
        resp = httpx.put(f"{restored.url}/v1/vaults/{vault}/secrets/after/restore", json={"value": "x"},
                         headers=bearer(token), timeout=30)
        assert resp.status_code == 201, resp.text
    finally:
        restored.stop()


@pytest.fixture
def backed_up(server: KeyholdServer, tmp_path: Path):
    """A server with a secret, and a backup of it: (server, backup file, token, vault)."""
    with private_server(server, tmp_path) as srv:
        token, vault = sign_up(srv)
        assert httpx.put(f"{srv.url}/v1/vaults/{vault}/secrets/db/password", json={"value": CANARY + "1"},
                         headers=bearer(token), timeout=30).status_code == 201
        backup = tmp_path / "keyhold.backup"
        taken = keyhold(srv, "backup", "--to", str(backup))
        assert taken.returncode == 0, taken.stderr
        yield srv, backup, token, vault


def restore_into(srv: KeyholdServer, backup: Path, target: Path, env: dict[str, str] | None = None,
                 with_master_key: bool = True) -> subprocess.CompletedProcess[str]:
    if SDK_KEYSTORE == "software" and with_master_key and not target.exists():
        target.mkdir(mode=0o700)
        shutil.copy2(srv.data_dir / "master.key", target / "master.key")
    return keyhold(srv, "restore", "--from", str(backup), options=["--data-dir", str(target), *keystore_options(srv)],
                   env=env)


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert all(word in result.stderr for word in words), result.stderr
    assert "Traceback" not in result.stderr and "Fatal error" not in result.stderr


def assert_untouched(target: Path) -> None:
    """The data dir holds what it held before the refused restore: at most the master key put there."""
    if target.exists():
        assert sorted(p.name for p in target.iterdir()) in ([], ["master.key"]), list(target.iterdir())


@sqlite_only
def test_a_changed_byte_is_refused_before_anything_is_written(backed_up, tmp_path: Path) -> None:
    srv, backup, _, _ = backed_up
    first, manifest, mac, database = split_backup(backup)
    changed = bytearray(database)
    changed[len(changed) // 2] ^= 0x01
    tampered = tmp_path / "changed.backup"
    tampered.write_bytes(first + json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode() + b"\n" + mac
                         + bytes(changed))
    assert_refused(keyhold(srv, "verify-backup", str(tampered)), "SHA-256")
    target = tmp_path / "target"
    assert_refused(restore_into(srv, tampered, target), "SHA-256")
    assert_untouched(target)

    cut = tmp_path / "cut.backup"
    cut.write_bytes(backup.read_bytes()[:-4096])
    assert_refused(restore_into(srv, cut, target), "cut short")
    assert_untouched(target)

    not_a_backup = tmp_path / "plain.sqlite"
    not_a_backup.write_bytes(database)
    assert_refused(restore_into(srv, not_a_backup, target), "not a Keyhold backup")
    assert_untouched(target)


@sqlite_only
def test_a_manifest_rewritten_to_match_a_changed_database_is_refused(backed_up, tmp_path: Path) -> None:
    """Whoever changes the database and writes the new SHA-256 into the manifest cannot make its MAC (its key is
    derived from the audit key the keystore seals)."""
    srv, backup, _, _ = backed_up
    first, manifest, mac, database = split_backup(backup)
    manifest["counts"]["secrets"] += 1
    forged = tmp_path / "forged.backup"
    forged.write_bytes(first + json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode() + b"\n" + mac
                       + database)
    assert_refused(keyhold(srv, "verify-backup", str(forged)), "MAC does not verify")
    target = tmp_path / "target"
    assert_refused(restore_into(srv, forged, target), "MAC does not verify")
    assert_untouched(target)


@sqlite_only
@pytest.mark.skipif(SDK_KEYSTORE != "software", reason="another master key: the software keystore's case")
def test_a_restore_needs_the_master_key_that_sealed_the_backup(backed_up, tmp_path: Path) -> None:
    srv, backup, _, _ = backed_up
    without = tmp_path / "without"
    assert_refused(restore_into(srv, backup, without, with_master_key=False), "no master key", "master.key")
    assert not without.exists()
    other = tmp_path / "other"
    assert_refused(restore_into(srv, backup, other, env={"KEYHOLD_MASTER_KEY": os.urandom(32).hex()},
                                with_master_key=False), "do not unseal")
    assert not other.exists(), "a refused restore leaves no data dir behind"


@sqlite_only
def test_a_restore_never_overwrites_a_database(backed_up, tmp_path: Path) -> None:
    srv, backup, _, _ = backed_up
    before = (srv.data_dir / "keyhold.sqlite").stat().st_mtime_ns
    assert_refused(keyhold(srv, "restore", "--from", str(backup)), "already holds a Keyhold database")
    assert (srv.data_dir / "keyhold.sqlite").stat().st_mtime_ns == before


@sqlite_only
def test_a_store_whose_audit_chain_was_edited_is_not_backed_up(backed_up, tmp_path: Path) -> None:
    """An operator with access to the database edits an audit row: the backup's own checks refuse to copy it."""
    srv, _, _, _ = backed_up
    assert srv.execute("UPDATE audit_events SET action = 'secret.read' WHERE seq = 2") >= 1
    target = tmp_path / "second.backup"
    assert_refused(keyhold(srv, "backup", "--to", str(target)), "audit chain", "integrity_hash")
    assert not target.exists()


@postgres_only
def test_pg_dump_under_load_restores_and_verifies(server: KeyholdServer, tmp_path: Path) -> None:
    cluster = os.environ["KEYHOLD_TEST_DATABASE_URL"]
    with private_server(server, tmp_path) as srv:
        assert_refused(keyhold(srv, "backup", "--to", str(tmp_path / "x.backup")), "pg_dump")
        token, vault = sign_up(srv)
        load = Load(srv.url, token, vault)
        threads = load.run(6)
        dump = tmp_path / "keyhold.dump"
        try:
            load.wait_for(150)
            started = time.monotonic()
            subprocess.run(["pg_dump", "--format=custom", "--file", str(dump), srv.database_url], check=True,
                           timeout=300)
            load.wait_for(len(load.acked) + 30)
        finally:
            load.finish(threads)
        acked = [a for a in load.acked if a[0] < started]
        later = [a for a in load.acked if a[0] >= started]

    database = "kh_restored_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", cluster, "-q", "-c", f"CREATE DATABASE {database}"], check=True)
    parts = urlsplit(cluster)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + database, "", ""))
    try:
        subprocess.run(["pg_restore", "--no-owner", "--dbname", url, str(dump)], check=True, timeout=300)
        restored = server_on(srv, tmp_path, tmp_path / "restored-data", database_url=url)
        if SDK_KEYSTORE == "software":  # the master key is not in the dump: the operator brings it
            restored.data_dir.mkdir(mode=0o700)
            shutil.copy2(srv.data_dir / "master.key", restored.data_dir / "master.key")
        verified = keyhold(restored, "verify-backup")
        assert verified.returncode == 0, verified.stderr
        report = json.loads(verified.stdout)
        assert report["valid"] is True and report["counts"]["secret_versions"] >= len(acked)
        assert report["events_verified"] == report["counts"]["audit_events"] and report["keys_checked"] >= 1
        restored.start()
        try:
            assert_restored(restored, token, vault, acked, later)
        finally:
            restored.stop()
        restored.execute("UPDATE audit_events SET action = 'secret.read' WHERE seq = 3")
        assert_refused(keyhold(restored, "verify-backup"), "audit chain", "integrity_hash")
    finally:
        subprocess.run(["psql", cluster, "-q", "-c", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], check=False)
