"""GET /v1/vaults/{vault_id}/secrets (contract §1.3)."""

from __future__ import annotations

import pytest

from support import assert_problem, assert_sdk_ok, is_uuid, parse_ts


@pytest.fixture
def populated(user, vault: str, canary) -> dict:
    """Three paths; api-keys/openai has two versions. Returns all stored values."""
    values = {
        "api-keys/openai": [canary("LIST-"), canary("LIST-")],
        "api-keys/stripe": [canary("LIST-")],
        "db/password": [canary("LIST-")],
    }
    for path, versions in values.items():
        for value in versions:
            assert_sdk_ok(user.client.secrets.set(vault, path, value, type="api_key", metadata={"p": path}), 201)
    return values


def test_list_returns_secrets_array(user, vault: str, populated: dict) -> None:
    data = assert_sdk_ok(user.client.secrets.list(vault), 200)
    assert isinstance(data["secrets"], list)


def test_list_has_one_entry_per_path(user, vault: str, populated: dict) -> None:
    data = assert_sdk_ok(user.client.secrets.list(vault), 200)
    paths = [s["path"] for s in data["secrets"]]
    assert sorted(paths) == sorted(populated)


def test_list_shows_latest_version(user, vault: str, populated: dict) -> None:
    data = assert_sdk_ok(user.client.secrets.list(vault), 200)
    versions = {s["path"]: s["version"] for s in data["secrets"]}
    assert versions == {"api-keys/openai": 2, "api-keys/stripe": 1, "db/password": 1}


def test_list_entries_have_metadata_fields(user, vault: str, populated: dict) -> None:
    data = assert_sdk_ok(user.client.secrets.list(vault), 200)
    for entry in data["secrets"]:
        assert is_uuid(entry["id"]), entry
        assert entry["type"] == "api_key"
        assert entry["metadata"] == {"p": entry["path"]}
        parse_ts(entry["created_at"])


def test_list_entries_have_no_value_key(user, vault: str, populated: dict) -> None:
    data = assert_sdk_ok(user.client.secrets.list(vault), 200)
    for entry in data["secrets"]:
        assert "value" not in entry, entry


def test_list_raw_text_contains_no_stored_value(user, vault: str, populated: dict) -> None:
    resp = user.http.get(f"/v1/vaults/{vault}/secrets")
    assert resp.status_code == 200
    for versions in populated.values():
        for value in versions:
            assert value not in resp.text


def test_list_prefix_filter(user, vault: str, populated: dict) -> None:
    data = assert_sdk_ok(user.client.secrets.list(vault, prefix="api-keys/"), 200)
    assert sorted(s["path"] for s in data["secrets"]) == ["api-keys/openai", "api-keys/stripe"]


def test_list_prefix_without_match_is_empty(user, vault: str, populated: dict) -> None:
    data = assert_sdk_ok(user.client.secrets.list(vault, prefix="nothing-here/"), 200)
    assert data["secrets"] == []


def test_list_prefix_is_a_string_prefix(user, vault: str, populated: dict) -> None:
    data = assert_sdk_ok(user.client.secrets.list(vault, prefix="db"), 200)
    assert [s["path"] for s in data["secrets"]] == ["db/password"]


def test_list_of_empty_vault_is_empty(user, vault: str) -> None:
    data = assert_sdk_ok(user.client.secrets.list(vault), 200)
    assert data["secrets"] == []


def test_list_of_missing_vault_is_404(user) -> None:
    assert_problem(user.http.get("/v1/vaults/00000000-0000-4000-8000-000000000000/secrets"), 404)
