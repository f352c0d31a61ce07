"""POST /v1/vaults/{vault_id}/secret-rotate/{path}: server-generated values (contract §1.3)."""

from __future__ import annotations

import re

import pytest

from support import assert_problem, assert_sdk_error, assert_sdk_ok, is_uuid

PATH = "rotate/me"

CHARSETS = {
    "hex": re.compile(r"[0-9a-f]+"),
    "alphanumeric": re.compile(r"[A-Za-z0-9]+"),
    # Standard base64 alphabet (RFC 4648 section 4), padding tolerated.
    "base64": re.compile(r"[A-Za-z0-9+/=]+"),
    # Printable ASCII, no control characters.
    "ascii": re.compile(r"[\x20-\x7e]+"),
}


@pytest.fixture
def existing(user, vault: str, canary) -> dict:
    value = canary("ROT-")
    body = assert_sdk_ok(user.client.secrets.set(vault, PATH, value, type="api_key", metadata={"k": "v"}), 201)
    return {"value": value, "body": body}


def _read(user, vault: str) -> dict:
    return assert_sdk_ok(user.client.secrets.get(vault, PATH), 200)


def test_rotate_returns_201(user, vault: str, existing: dict) -> None:
    resp = user.client.secrets.rotate_generate(vault, PATH, length=48, charset="alphanumeric")
    assert resp.meta.status == 201, resp.error


def test_rotate_response_has_metadata_and_no_value(user, vault: str, existing: dict) -> None:
    resp = user.http.post(
        f"/v1/vaults/{vault}/secret-rotate/{PATH}", json={"length": 48, "charset": "alphanumeric"}
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert "value" not in body
    assert body["path"] == PATH
    assert body["id"] == existing["body"]["id"]
    assert is_uuid(body["id"])
    new_value = _read(user, vault)["value"]
    assert new_value not in resp.text


def test_rotate_increments_version(user, vault: str, existing: dict) -> None:
    body = assert_sdk_ok(user.client.secrets.rotate_generate(vault, PATH, length=48, charset="alphanumeric"), 201)
    assert body["version"] == existing["body"]["version"] + 1
    assert _read(user, vault)["version"] == body["version"]


def test_rotated_value_has_requested_length_and_charset(user, vault: str, existing: dict) -> None:
    assert_sdk_ok(user.client.secrets.rotate_generate(vault, PATH, length=48, charset="alphanumeric"), 201)
    value = _read(user, vault)["value"]
    assert len(value) == 48
    assert re.fullmatch(r"[A-Za-z0-9]+", value), value


def test_rotate_replaces_old_value_and_keeps_history(user, vault: str, existing: dict) -> None:
    assert_sdk_ok(user.client.secrets.rotate_generate(vault, PATH), 201)
    assert _read(user, vault)["value"] != existing["value"]
    assert user.client.secrets.get_version(vault, PATH, 1).data["value"] == existing["value"]


def test_rotate_keeps_existing_type(user, vault: str, existing: dict) -> None:
    body = assert_sdk_ok(user.client.secrets.rotate_generate(vault, PATH), 201)
    assert body["type"] == "api_key"
    assert _read(user, vault)["type"] == "api_key"


def test_rotate_type_override(user, vault: str, existing: dict) -> None:
    body = assert_sdk_ok(user.client.secrets.rotate_generate(vault, PATH, type="password"), 201)
    assert body["type"] == "password"


def test_rotate_defaults_to_32_hex_chars(user, vault: str, existing: dict) -> None:
    assert_sdk_ok(user.client.secrets.rotate_generate(vault, PATH), 201)
    value = _read(user, vault)["value"]
    assert len(value) == 32
    assert CHARSETS["hex"].fullmatch(value), value


@pytest.mark.parametrize("charset", list(CHARSETS))
@pytest.mark.parametrize("length", [8, 64, 1024])
def test_each_charset_yields_requested_length(user, vault: str, existing: dict, charset: str, length: int) -> None:
    assert_sdk_ok(user.client.secrets.rotate_generate(vault, PATH, length=length, charset=charset), 201)
    value = _read(user, vault)["value"]
    assert len(value) == length
    assert CHARSETS[charset].fullmatch(value), value


def test_rotate_without_body_uses_defaults(user, vault: str, existing: dict) -> None:
    resp = user.http.post(f"/v1/vaults/{vault}/secret-rotate/{PATH}")
    assert resp.status_code == 201, resp.text
    value = _read(user, vault)["value"]
    assert len(value) == 32
    assert CHARSETS["hex"].fullmatch(value), value


def test_rotated_values_differ(user, vault: str, existing: dict) -> None:
    seen = set()
    for _ in range(3):
        assert_sdk_ok(user.client.secrets.rotate_generate(vault, PATH, length=32, charset="hex"), 201)
        seen.add(_read(user, vault)["value"])
    assert len(seen) == 3


@pytest.mark.parametrize("length", [7, 1025, 0, -1])
def test_rotate_length_out_of_range_is_400(user, vault: str, existing: dict, length: int) -> None:
    resp = user.http.post(f"/v1/vaults/{vault}/secret-rotate/{PATH}", json={"length": length})
    assert_problem(resp, 400)


def test_rotate_bad_length_keeps_version(user, vault: str, existing: dict) -> None:
    assert_sdk_error(user.client.secrets.rotate_generate(vault, PATH, length=7), 400)
    assert _read(user, vault)["version"] == 1


@pytest.mark.parametrize("charset", ["emoji", "base32"])
def test_rotate_unknown_charset_is_400(user, vault: str, existing: dict, charset: str) -> None:
    resp = user.http.post(f"/v1/vaults/{vault}/secret-rotate/{PATH}", json={"charset": charset})
    assert_problem(resp, 400)


def test_rotate_unknown_type_is_400(user, vault: str, existing: dict) -> None:
    assert_problem(user.http.post(f"/v1/vaults/{vault}/secret-rotate/{PATH}", json={"type": "banana"}), 400)


def test_rotate_missing_path_is_404(user, vault: str) -> None:
    assert_sdk_error(user.client.secrets.rotate_generate(vault, "no/such/secret", length=32), 404)
    assert_problem(user.http.post(f"/v1/vaults/{vault}/secret-rotate/no/such/secret", json={}), 404)


def test_rotate_in_missing_vault_is_404(user) -> None:
    resp = user.http.post("/v1/vaults/00000000-0000-4000-8000-000000000000/secret-rotate/a/b", json={})
    assert_problem(resp, 404)
