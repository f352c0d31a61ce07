"""PUT/GET /v1/vaults/{vault_id}/secrets/{path}: the seed operation (contract §1.3, §2.3)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import httpx
import pytest

from support import (
    SECRET_TYPES,
    assert_problem,
    assert_sdk_error,
    assert_sdk_ok,
    is_uuid,
    parse_ts,
)

SEED_PATH = "api-keys/openai"
SEED_METADATA = {"tags": ["openai", "production"], "description": "OpenAI production key"}
SEED_EXPIRES = "2099-12-31T23:59:59Z"


def _put_raw(user, vault: str, path: str, body: Any) -> httpx.Response:
    return user.http.put(f"/v1/vaults/{vault}/secrets/{path}", json=body)


@pytest.fixture
def seeded(user, vault: str, canary) -> dict:
    """Store the seed secret once; return the value and the 201 body."""
    value = canary("sk-proj-")
    resp = user.client.secrets.set(
        vault, SEED_PATH, value, type="api_key", metadata=SEED_METADATA, expires_at=SEED_EXPIRES
    )
    return {"value": value, "status": resp.meta.status, "body": resp.data, "error": resp.error}


# --- the seed: first write ------------------------------------------------------


def test_put_secret_returns_201(seeded: dict) -> None:
    assert seeded["status"] == 201, seeded["error"]


def test_put_secret_response_has_metadata_fields(seeded: dict) -> None:
    body = seeded["body"]
    assert is_uuid(body["id"]), body
    assert body["path"] == SEED_PATH
    assert body["type"] == "api_key"
    assert body["version"] == 1
    assert body["metadata"] == SEED_METADATA
    parse_ts(body["created_at"])
    assert parse_ts(body["expires_at"]) == parse_ts(SEED_EXPIRES)


def test_put_secret_response_has_no_value(seeded: dict) -> None:
    assert "value" not in seeded["body"]
    assert seeded["value"] not in json.dumps(seeded["body"])


def test_put_secret_raw_response_is_json_201(user, vault: str, canary) -> None:
    resp = _put_raw(user, vault, "raw/one", {"type": "password", "value": canary()})
    assert resp.status_code == 201, resp.text
    assert resp.headers.get("content-type", "").split(";")[0].strip() == "application/json"


# --- second write: new version -------------------------------------------------------


def test_second_put_creates_version_2_with_same_id(user, vault: str, seeded: dict, canary) -> None:
    resp = user.client.secrets.set(vault, SEED_PATH, canary("sk-proj-"), type="api_key", metadata=SEED_METADATA)
    body = assert_sdk_ok(resp, 201)
    assert body["version"] == 2
    assert body["id"] == seeded["body"]["id"]
    assert "value" not in body


def test_get_returns_latest_version(user, vault: str, seeded: dict, canary) -> None:
    newer = canary("sk-proj-")
    new_meta = {"tags": ["openai"], "description": "rotated"}
    assert_sdk_ok(user.client.secrets.set(vault, SEED_PATH, newer, type="api_key", metadata=new_meta), 201)
    data = assert_sdk_ok(user.client.secrets.get(vault, SEED_PATH), 200)
    assert data["value"] == newer
    assert data["version"] == 2
    assert data["type"] == "api_key"
    assert data["metadata"] == new_meta
    assert data["path"] == SEED_PATH
    assert data["id"] == seeded["body"]["id"]


def test_get_returns_stored_value_and_fields(user, vault: str, seeded: dict) -> None:
    data = assert_sdk_ok(user.client.secrets.get(vault, SEED_PATH), 200)
    assert data["value"] == seeded["value"]
    assert data["version"] == 1
    assert data["type"] == "api_key"
    assert data["metadata"] == SEED_METADATA
    parse_ts(data["created_at"])
    assert parse_ts(data["expires_at"]) == parse_ts(SEED_EXPIRES)


def test_values_round_trip_exactly(user, vault: str, canary) -> None:
    value = canary("multi\nline \"quoted\" \\ tab\t unicode-é-☃ ")
    assert_sdk_ok(user.client.secrets.set(vault, "exact/value", value), 201)
    assert user.client.secrets.get(vault, "exact/value").data["value"] == value


def test_empty_string_value_round_trips_or_is_400(user, vault: str) -> None:
    resp = _put_raw(user, vault, "empty/value", {"value": ""})
    if resp.status_code == 400:
        assert_problem(resp, 400)
        return
    assert resp.status_code == 201, resp.text
    assert user.client.secrets.get(vault, "empty/value").data["value"] == ""


def test_paths_are_case_sensitive(user, vault: str, canary) -> None:
    lower, upper = canary(), canary()
    assert_sdk_ok(user.client.secrets.set(vault, "case/key", lower), 201)
    assert_sdk_ok(user.client.secrets.set(vault, "case/KEY", upper), 201)
    assert user.client.secrets.get(vault, "case/key").data["value"] == lower
    assert user.client.secrets.get(vault, "case/KEY").data["value"] == upper


def test_secrets_are_isolated_between_vaults(user, vault: str, canary) -> None:
    second = assert_sdk_ok(user.client.vaults.create("second"), 201)["id"]
    assert_sdk_ok(user.client.secrets.set(vault, "same/path", canary()), 201)
    assert_sdk_error(user.client.secrets.get(second, "same/path"), 404)


def test_put_to_missing_vault_is_404_problem(user) -> None:
    assert_problem(_put_raw(user, str(uuid.uuid4()), "a/b", {"value": "x"}), 404)


# --- types -------------------------------------------------------------------------------


def test_type_defaults_to_generic(user, vault: str, canary) -> None:
    resp = _put_raw(user, vault, "untyped/secret", {"value": canary()})
    assert resp.status_code == 201, resp.text
    assert resp.json()["type"] == "generic"
    assert user.client.secrets.get(vault, "untyped/secret").data["type"] == "generic"


@pytest.mark.parametrize("secret_type", SECRET_TYPES)
def test_every_documented_type_is_accepted(user, vault: str, canary, secret_type: str) -> None:
    body = assert_sdk_ok(user.client.secrets.set(vault, f"types/{secret_type}", canary(), type=secret_type), 201)
    assert body["type"] == secret_type
    assert user.client.secrets.get(vault, f"types/{secret_type}").data["type"] == secret_type


def test_type_of_new_version_follows_request(user, vault: str, canary) -> None:
    assert_sdk_ok(user.client.secrets.set(vault, "retype/me", canary(), type="password"), 201)
    assert_sdk_ok(user.client.secrets.set(vault, "retype/me", canary(), type="note"), 201)
    assert user.client.secrets.get(vault, "retype/me").data["type"] == "note"


def test_the_clis_field_names_are_read_and_sent(user, vault: str, canary) -> None:
    """1Claw's CLI sends the type as `secret_type` (`env push`) and reads `secret_type` and `updated_at` (issue 17)."""
    resp = _put_raw(user, vault, "cli/typed", {"value": canary(), "secret_type": "password"})
    assert resp.status_code == 201, resp.text
    written = resp.json()
    assert written["type"] == written["secret_type"] == "password"
    assert parse_ts(written["updated_at"]) == parse_ts(written["created_at"])
    read = user.client.secrets.get(vault, "cli/typed").data
    assert read["type"] == read["secret_type"] == "password"
    assert parse_ts(read["updated_at"]) == parse_ts(written["created_at"])
    assert _put_raw(user, vault, "cli/typed", {"value": canary(), "type": "note", "secret_type": "note"}).json()[
        "secret_type"] == "note"


# --- request validation -----------------------------------------------------------------

INVALID_BODIES = {
    "unknown_type": {"value": "x", "type": "banana"},
    "type_not_string": {"value": "x", "type": 5},
    "type_and_secret_type_disagree": {"value": "x", "type": "password", "secret_type": "note"},
    "unknown_secret_type": {"value": "x", "secret_type": "banana"},
    "missing_value": {"type": "password"},
    "null_value": {"value": None},
    "value_number": {"value": 123},
    "value_object": {"value": {"a": "b"}},
    "value_list": {"value": ["a"]},
    "metadata_list": {"value": "x", "metadata": [1, 2]},
    "metadata_string": {"value": "x", "metadata": "tags"},
    "expires_at_garbage": {"value": "x", "expires_at": "not-a-date"},
    "expires_at_impossible": {"value": "x", "expires_at": "2099-13-45T25:61:61Z"},
    "expires_at_number": {"value": "x", "expires_at": 4102444799},
    "max_access_count_zero": {"value": "x", "max_access_count": 0},
    "max_access_count_negative": {"value": "x", "max_access_count": -1},
    "max_access_count_string": {"value": "x", "max_access_count": "3"},
    "max_access_count_fraction": {"value": "x", "max_access_count": 1.5},
    "body_is_array": [{"value": "x"}],
    "body_is_string": "x",
}


@pytest.mark.parametrize("case", list(INVALID_BODIES), ids=list(INVALID_BODIES))
def test_invalid_put_body_is_400_problem(user, vault: str, case: str) -> None:
    assert_problem(_put_raw(user, vault, "invalid/body", INVALID_BODIES[case]), 400)


@pytest.mark.parametrize("case", list(INVALID_BODIES), ids=list(INVALID_BODIES))
def test_invalid_put_body_stores_nothing(user, vault: str, case: str) -> None:
    _put_raw(user, vault, "invalid/nothing", INVALID_BODIES[case])
    assert_sdk_error(user.client.secrets.get(vault, "invalid/nothing"), 404)


def test_sdk_unknown_type_is_400(user, vault: str) -> None:
    assert_sdk_error(user.client.secrets.set(vault, "sdk/unknown-type", "x", type="banana"), 400)


def test_malformed_json_is_400_problem(user, vault: str) -> None:
    resp = user.http.put(
        f"/v1/vaults/{vault}/secrets/bad/json",
        content=b'{"value": "x", ',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(resp, 400)


def test_empty_body_is_400_problem(user, vault: str) -> None:
    resp = user.http.put(
        f"/v1/vaults/{vault}/secrets/bad/empty",
        content=b"",
        headers={"Content-Type": "application/json"},
    )
    assert_problem(resp, 400)


def test_body_over_1_mib_is_413_problem(user, vault: str) -> None:
    body = json.dumps({"value": "x" * (1024 * 1024 + 1)}).encode()
    assert len(body) > 1024 * 1024
    resp = user.http.put(
        f"/v1/vaults/{vault}/secrets/too/big",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert_problem(resp, 413)


def test_oversized_body_stores_nothing(user, vault: str) -> None:
    body = json.dumps({"value": "x" * (1024 * 1024 + 1)}).encode()
    user.http.put(f"/v1/vaults/{vault}/secrets/too/big2", content=body, headers={"Content-Type": "application/json"})
    assert_sdk_error(user.client.secrets.get(vault, "too/big2"), 404)


def test_max_access_count_positive_is_accepted(user, vault: str, canary) -> None:
    resp = user.client.secrets.set(vault, "counted/ok", canary(), max_access_count=3)
    assert_sdk_ok(resp, 201)


def test_future_expires_at_with_offset_is_accepted(user, vault: str, canary) -> None:
    resp = user.client.secrets.set(vault, "expiry/offset", canary(), expires_at="2099-06-01T12:00:00+02:00")
    body = assert_sdk_ok(resp, 201)
    assert parse_ts(body["expires_at"]) == dt.datetime(2099, 6, 1, 10, 0, tzinfo=dt.timezone.utc)


def test_rotation_policy_is_accepted(user, vault: str, canary) -> None:
    resp = user.client.secrets.set(vault, "rotation/policy", canary(), rotation_policy={"interval_days": 30})
    assert_sdk_ok(resp, 201)


# --- reads -------------------------------------------------------------------------------


def test_get_never_written_path_is_404_problem(user, vault: str) -> None:
    assert_problem(user.http.get(f"/v1/vaults/{vault}/secrets/never/written"), 404)


def test_get_never_written_path_via_sdk_is_404(user, vault: str) -> None:
    assert_sdk_error(user.client.secrets.get(vault, "never/written"), 404)


def test_get_secret_response_is_json(user, vault: str, canary) -> None:
    assert_sdk_ok(user.client.secrets.set(vault, "ctype/check", canary()), 201)
    resp = user.http.get(f"/v1/vaults/{vault}/secrets/ctype/check")
    assert resp.status_code == 200
    assert resp.headers.get("content-type", "").split(";")[0].strip() == "application/json"
