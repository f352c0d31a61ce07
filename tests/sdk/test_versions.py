"""Secret versions: list, read, disable (contract §1.3, §2.3)."""

from __future__ import annotations

import pytest

from support import assert_problem, assert_sdk_error, assert_sdk_ok, is_uuid

PATH = "svc/token"


@pytest.fixture
def three_versions(user, vault: str, canary) -> list[str]:
    values = [canary("VER-"), canary("VER-"), canary("VER-")]
    for i, value in enumerate(values, start=1):
        body = assert_sdk_ok(user.client.secrets.set(vault, PATH, value, type="password"), 201)
        assert body["version"] == i
    return values


def test_list_versions_returns_all_versions(user, vault: str, three_versions: list[str]) -> None:
    data = assert_sdk_ok(user.client.secrets.list_versions(vault, PATH), 200)
    assert sorted(v["version"] for v in data["versions"]) == [1, 2, 3]


def test_list_versions_is_metadata_only(user, vault: str, three_versions: list[str]) -> None:
    resp = user.http.get(f"/v1/vaults/{vault}/secret-versions/{PATH}")
    assert resp.status_code == 200
    for entry in resp.json()["versions"]:
        assert "value" not in entry, entry
        assert entry["path"] == PATH
        assert entry["type"] == "password"
        assert is_uuid(entry["id"])
    for value in three_versions:
        assert value not in resp.text


def test_get_version_returns_old_value(user, vault: str, three_versions: list[str]) -> None:
    data = assert_sdk_ok(user.client.secrets.get_version(vault, PATH, 1), 200)
    assert data["value"] == three_versions[0]
    assert data["version"] == 1
    assert data["path"] == PATH


def test_get_each_version(user, vault: str, three_versions: list[str]) -> None:
    for number, value in enumerate(three_versions, start=1):
        assert user.client.secrets.get_version(vault, PATH, number).data["value"] == value


def test_disable_version_returns_204(user, vault: str, three_versions: list[str]) -> None:
    resp = user.client.secrets.disable_version(vault, PATH, 1)
    assert resp.meta.status == 204
    assert resp.error is None


def test_disabled_version_read_is_410_problem(user, vault: str, three_versions: list[str]) -> None:
    assert user.client.secrets.disable_version(vault, PATH, 1).meta.status == 204
    assert_sdk_error(user.client.secrets.get_version(vault, PATH, 1), 410)
    assert_problem(user.http.get(f"/v1/vaults/{vault}/secret-version/{PATH}/1"), 410)


def test_disabled_version_body_has_no_value(user, vault: str, three_versions: list[str]) -> None:
    assert user.client.secrets.disable_version(vault, PATH, 1).meta.status == 204
    resp = user.http.get(f"/v1/vaults/{vault}/secret-version/{PATH}/1")
    assert three_versions[0] not in resp.text


def test_other_versions_stay_readable_after_disable(user, vault: str, three_versions: list[str]) -> None:
    assert user.client.secrets.disable_version(vault, PATH, 1).meta.status == 204
    assert user.client.secrets.get_version(vault, PATH, 2).data["value"] == three_versions[1]
    assert user.client.secrets.get_version(vault, PATH, 3).data["value"] == three_versions[2]
    assert user.client.secrets.get(vault, PATH).data["value"] == three_versions[2]


def test_disabled_version_still_listed(user, vault: str, three_versions: list[str]) -> None:
    assert user.client.secrets.disable_version(vault, PATH, 1).meta.status == 204
    data = assert_sdk_ok(user.client.secrets.list_versions(vault, PATH), 200)
    assert sorted(v["version"] for v in data["versions"]) == [1, 2, 3]


def test_nonexistent_version_is_404(user, vault: str, three_versions: list[str]) -> None:
    assert_sdk_error(user.client.secrets.get_version(vault, PATH, 99), 404)
    assert_problem(user.http.get(f"/v1/vaults/{vault}/secret-version/{PATH}/99"), 404)


@pytest.mark.parametrize("version", ["abc", "1.5", "1e2"])
def test_non_integer_version_is_400_problem(user, vault: str, three_versions: list[str], version: str) -> None:
    assert_problem(user.http.get(f"/v1/vaults/{vault}/secret-version/{PATH}/{version}"), 400)


def test_disable_nonexistent_version_is_404(user, vault: str, three_versions: list[str]) -> None:
    assert_sdk_error(user.client.secrets.disable_version(vault, PATH, 99), 404)


def test_versions_of_missing_path_is_404(user, vault: str) -> None:
    assert_sdk_error(user.client.secrets.list_versions(vault, "no/such/path"), 404)


def test_get_version_of_missing_path_is_404(user, vault: str) -> None:
    assert_sdk_error(user.client.secrets.get_version(vault, "no/such/path", 1), 404)
