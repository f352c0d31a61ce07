"""Secret path syntax and URL encoding (contract §2.3)."""

from __future__ import annotations

import pytest

from support import assert_problem, assert_sdk_ok, raw_request


def test_encoded_slashes_address_the_same_secret(user, vault: str, canary) -> None:
    value = canary()
    created = assert_sdk_ok(user.client.secrets.set(vault, "a%2Fb%2Fc", value), 201)
    assert created["path"] == "a/b/c"
    read = assert_sdk_ok(user.client.secrets.get(vault, "a/b/c"), 200)
    assert read["value"] == value
    assert read["id"] == created["id"]


def test_raw_slashes_readable_with_encoded_slashes(user, vault: str, canary) -> None:
    value = canary()
    created = assert_sdk_ok(user.client.secrets.set(vault, "x/y/z", value), 201)
    read = assert_sdk_ok(user.client.secrets.get(vault, "x%2Fy%2Fz"), 200)
    assert read["value"] == value
    assert read["id"] == created["id"]


def test_mixed_encoding_writes_one_version_chain(user, vault: str, canary) -> None:
    assert_sdk_ok(user.client.secrets.set(vault, "m/n", canary()), 201)
    second = assert_sdk_ok(user.client.secrets.set(vault, "m%2Fn", canary()), 201)
    assert second["version"] == 2
    assert second["path"] == "m/n"


def test_lowercase_percent_encoding_is_accepted(user, vault: str, base_url: str, canary) -> None:
    value = canary()
    resp = raw_request(base_url, "PUT", f"/v1/vaults/{vault}/secrets/p%2fq", token=user.token, json_body={"value": value})
    assert resp.status_code == 201, resp.text
    assert user.client.secrets.get(vault, "p/q").data["value"] == value


@pytest.mark.parametrize(
    "path",
    ["a", "A9", "api-keys/openai", "under_score/x-y/Z9", "deep/" * 20 + "leaf"],
    ids=["one_char", "two_chars", "seed", "mixed", "deep"],
)
def test_valid_paths_are_accepted(user, vault: str, canary, path: str) -> None:
    body = assert_sdk_ok(user.client.secrets.set(vault, path, canary()), 201)
    assert body["path"] == path


# The segment after /secrets/ exactly as it goes on the wire.
INVALID_PATHS = {
    "leading_slash": "/x",
    "trailing_slash": "a/",
    "double_slash": "a//b",
    "dot": ".",
    "dotdot": "..",
    "dotdot_inside": "a/../b",
    "dot_inside": "a/./b",
    "encoded_dotdot": "%2E%2E",
    "encoded_dotdot_inside": "a%2F%2E%2E%2Fb",
    "encoded_leading_slash": "%2Fx",
    "space": "a%20b",
    "semicolon": "a;b",
    "non_ascii": "caf%C3%A9",
    "too_long": "a" * 1025,
    "backslash": "a%5Cb",
    "percent_null": "a%00b",
}


@pytest.mark.parametrize("wire", list(INVALID_PATHS.values()), ids=list(INVALID_PATHS))
def test_invalid_path_put_is_400_problem(user, vault: str, base_url: str, wire: str) -> None:
    resp = raw_request(
        base_url, "PUT", f"/v1/vaults/{vault}/secrets/{wire}", token=user.token, json_body={"value": "x"}
    )
    assert_problem(resp, 400)


def test_invalid_path_write_does_not_leak_into_listing(user, vault: str, base_url: str) -> None:
    for wire in INVALID_PATHS.values():
        raw_request(base_url, "PUT", f"/v1/vaults/{vault}/secrets/{wire}", token=user.token, json_body={"value": "x"})
    listing = assert_sdk_ok(user.client.secrets.list(vault), 200)
    assert listing["secrets"] == []


@pytest.mark.parametrize("wire", ["..", "a/../b", "%2E%2E"], ids=["dotdot", "dotdot_inside", "encoded_dotdot"])
def test_dot_segments_on_read_never_succeed(user, vault: str, base_url: str, wire: str) -> None:
    resp = raw_request(base_url, "GET", f"/v1/vaults/{vault}/secrets/{wire}", token=user.token)
    assert_problem(resp, (400, 404))


def test_dotdot_cannot_reach_sibling_secret(user, vault: str, base_url: str, canary) -> None:
    value = canary()
    assert_sdk_ok(user.client.secrets.set(vault, "b", value), 201)
    resp = raw_request(base_url, "GET", f"/v1/vaults/{vault}/secrets/a/../b", token=user.token)
    assert value not in resp.text
    assert_problem(resp, (400, 404))


def test_never_written_path_is_404(user, vault: str) -> None:
    assert_problem(user.http.get(f"/v1/vaults/{vault}/secrets/no/such/secret"), 404)
