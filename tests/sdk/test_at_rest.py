"""Nothing sensitive is stored in plaintext; the data dir is private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from support import PASSWORD, assert_sdk_ok


def _all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in _all_files(root):
        try:
            if needle in path.read_bytes():
                hits.append(str(path.relative_to(root)))
        except OSError:
            continue
    return hits


def test_data_dir_has_files(server, user, vault: str) -> None:
    assert server.data_dir.is_dir()
    assert _all_files(server.data_dir), "no files under the data dir"


def test_secret_value_not_stored_in_plaintext(server, user, vault: str, canary) -> None:
    value = canary("PLAINTEXT-CANARY-")
    assert_sdk_ok(user.client.secrets.set(vault, "at-rest/canary", value), 201)
    assert user.client.secrets.get(vault, "at-rest/canary").data["value"] == value
    assert _files_containing(server.data_dir, value.encode()) == []


def test_old_versions_not_stored_in_plaintext(server, user, vault: str, canary) -> None:
    first, second = canary("PLAINTEXT-CANARY-"), canary("PLAINTEXT-CANARY-")
    assert_sdk_ok(user.client.secrets.set(vault, "at-rest/versions", first), 201)
    assert_sdk_ok(user.client.secrets.set(vault, "at-rest/versions", second), 201)
    for value in (first, second):
        assert _files_containing(server.data_dir, value.encode()) == []


def test_password_not_stored_in_plaintext(server, user) -> None:
    assert _files_containing(server.data_dir, PASSWORD.encode()) == []


def test_data_dir_mode_is_0700(server, user) -> None:
    mode = stat.S_IMODE(os.stat(server.data_dir).st_mode)
    assert mode == 0o700, oct(mode)


def test_key_files_mode_is_0600(server, user) -> None:
    offenders = {}
    for path in _all_files(server.data_dir):
        # "keyhold.db" is the product name, not a key: look at what is left.
        name = path.name.lower().replace("keyhold", "")
        if "key" in name:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode != 0o600:
                offenders[str(path.relative_to(server.data_dir))] = oct(mode)
    assert offenders == {}


def test_credentials_not_stored_in_plaintext(server, user, make_agent, leak_watch) -> None:
    """ocv_ agent keys, 1ck_ API keys, rt_ refresh tokens and inv_ invites are kept as digests only."""
    agent = make_agent(user)
    api_key = leak_watch.track(assert_sdk_ok(user.client.api_keys.create("at-rest"), 201))["api_key"]
    invite = user.client.org.invite(f"at-rest-{agent.id}@example.com", "member")
    invite_token = leak_watch.track(assert_sdk_ok(invite, 200))["invite_token"]
    credentials = {"agent key": agent.key, "api key": api_key, "invite": invite_token}
    if user.refresh_token:
        credentials["refresh token"] = user.refresh_token
    for name, credential in credentials.items():
        # Past the 12-character lookup prefix, nothing of the credential may be on disk.
        tail = credential[12:]
        assert _files_containing(server.data_dir, tail.encode()) == [], name
