"""Concurrent writers and readers (contract §2.3 versioning and access counts)."""

from __future__ import annotations

from collections import Counter

from support import assert_sdk_ok, run_together

WRITERS = 20
READERS = 30
READ_LIMIT = 5


def test_concurrent_puts_get_distinct_consecutive_versions(user, vault: str, canary) -> None:
    values = [canary("CONC-") for _ in range(WRITERS)]
    responses = run_together(WRITERS, lambda i: user.client.secrets.set(vault, "race/path", values[i]))
    statuses = Counter(r.meta.status for r in responses)
    assert statuses == Counter({201: WRITERS}), statuses
    versions = sorted(r.data["version"] for r in responses)
    assert versions == list(range(1, WRITERS + 1))


def test_concurrent_puts_keep_every_value(user, vault: str, canary) -> None:
    values = [canary("CONC-") for _ in range(WRITERS)]
    responses = run_together(WRITERS, lambda i: user.client.secrets.set(vault, "race/values", values[i]))
    by_version = {r.data["version"]: values[i] for i, r in enumerate(responses)}
    for version, value in by_version.items():
        assert user.client.secrets.get_version(vault, "race/values", version).data["value"] == value
    latest = assert_sdk_ok(user.client.secrets.get(vault, "race/values"), 200)
    assert latest["version"] == WRITERS
    assert latest["value"] == by_version[WRITERS]


def test_concurrent_reads_respect_max_access_count(user, vault: str, canary) -> None:
    value = canary("CONC-")
    assert_sdk_ok(user.client.secrets.set(vault, "race/limited", value, max_access_count=READ_LIMIT), 201)
    responses = run_together(READERS, lambda i: user.client.secrets.get(vault, "race/limited"))
    statuses = Counter(r.meta.status for r in responses)
    assert statuses == Counter({200: READ_LIMIT, 410: READERS - READ_LIMIT}), statuses
    assert all(r.data["value"] == value for r in responses if r.meta.status == 200)
