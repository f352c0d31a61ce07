"""410 Gone: expiry, exhausted access count, soft delete (contract §1.3, §2.3)."""

from __future__ import annotations

import datetime as dt
import time

from support import assert_problem, assert_sdk_error, assert_sdk_ok, rfc3339

# --- expires_at ----------------------------------------------------------------------


def test_expired_secret_is_410_problem(user, vault: str, canary) -> None:
    value = canary()
    # Whole seconds on the wire, so aim 3 s ahead: between 2 and 3 s of life remain.
    expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3)).replace(microsecond=0)
    assert_sdk_ok(user.client.secrets.set(vault, "short/lived", value, expires_at=rfc3339(expires)), 201)
    before = assert_sdk_ok(user.client.secrets.get(vault, "short/lived"), 200)
    assert before["value"] == value
    remaining = (expires - dt.datetime.now(dt.timezone.utc)).total_seconds()
    time.sleep(max(remaining, 0) + 1.0)
    resp = user.http.get(f"/v1/vaults/{vault}/secrets/short/lived")
    assert_problem(resp, 410)
    assert value not in resp.text


# --- max_access_count ------------------------------------------------------------------


def test_access_count_exhaustion_is_410_problem(user, vault: str, canary) -> None:
    value = canary()
    assert_sdk_ok(user.client.secrets.set(vault, "twice/only", value, max_access_count=2), 201)
    assert user.client.secrets.get(vault, "twice/only").data["value"] == value
    assert user.client.secrets.get(vault, "twice/only").data["value"] == value
    third = user.http.get(f"/v1/vaults/{vault}/secrets/twice/only")
    assert_problem(third, 410)
    assert value not in third.text


def test_access_count_stays_exhausted(user, vault: str, canary) -> None:
    assert_sdk_ok(user.client.secrets.set(vault, "once/only", canary(), max_access_count=1), 201)
    assert_sdk_ok(user.client.secrets.get(vault, "once/only"), 200)
    for _ in range(3):
        assert_sdk_error(user.client.secrets.get(vault, "once/only"), 410)


def test_listing_does_not_consume_access_count(user, vault: str, canary) -> None:
    value = canary()
    assert_sdk_ok(user.client.secrets.set(vault, "count/list", value, max_access_count=1), 201)
    for _ in range(3):
        assert_sdk_ok(user.client.secrets.list(vault), 200)
    assert user.client.secrets.get(vault, "count/list").data["value"] == value


# --- soft delete ------------------------------------------------------------------------


def test_delete_secret_returns_204(user, vault: str, canary) -> None:
    assert_sdk_ok(user.client.secrets.set(vault, "to/delete", canary()), 201)
    resp = user.http.delete(f"/v1/vaults/{vault}/secrets/to/delete")
    assert resp.status_code == 204
    assert resp.content == b""


def test_deleted_secret_read_is_410_problem(user, vault: str, canary) -> None:
    value = canary()
    assert_sdk_ok(user.client.secrets.set(vault, "to/delete", value), 201)
    assert user.client.secrets.delete(vault, "to/delete").meta.status == 204
    resp = user.http.get(f"/v1/vaults/{vault}/secrets/to/delete")
    assert_problem(resp, 410)
    assert value not in resp.text


def test_deleted_secret_is_gone_from_list(user, vault: str, canary) -> None:
    assert_sdk_ok(user.client.secrets.set(vault, "to/delete", canary()), 201)
    assert_sdk_ok(user.client.secrets.set(vault, "to/keep", canary()), 201)
    assert user.client.secrets.delete(vault, "to/delete").meta.status == 204
    data = assert_sdk_ok(user.client.secrets.list(vault), 200)
    assert [s["path"] for s in data["secrets"]] == ["to/keep"]


def test_delete_removes_all_versions(user, vault: str, canary) -> None:
    for _ in range(2):
        assert_sdk_ok(user.client.secrets.set(vault, "to/delete", canary()), 201)
    assert user.client.secrets.delete(vault, "to/delete").meta.status == 204
    for version in (1, 2):
        resp = user.client.secrets.get_version(vault, "to/delete", version)
        assert resp.meta.status in (404, 410), resp.meta.status
        assert resp.data is None


def test_delete_missing_secret_is_404_problem(user, vault: str) -> None:
    assert_problem(user.http.delete(f"/v1/vaults/{vault}/secrets/never/existed"), 404)
