"""Tamper evidence and fail-closed auditing, with the server running (contract §1.9, §2.7).

The tests edit the server's SQLite file directly (``<data_dir>/keyhold.sqlite``, WAL mode, so a second
connection may write while the server runs): change a field, delete, reorder, forge and truncate events of a
fresh org, and expect ``client.audit.verify()`` to name the first bad event; putting the rows back makes the
chain valid again. Every test works on an org of its own, so a broken chain never leaks into other tests.

The fail-closed test installs a trigger that refuses every audit insert and checks that each audited request
answers 503 and changes nothing; the trigger is always dropped again.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import uuid
from collections import Counter
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, Iterator

import httpx
import pytest

from support import PASSWORD, assert_problem, assert_sdk_error, assert_sdk_ok, now_utc, rfc3339, run_together

COLUMNS = (
    "id",
    "org_id",
    "seq",
    "actor_type",
    "actor_id",
    "action",
    "resource_type",
    "resource_id",
    "details",
    "ip_address",
    "created_at",
    "prev_event_id",
    "integrity_hash",
)
#: A sequence number no real event reaches, to step around UNIQUE(org_id, seq).
PARKED = 1_000_000_000

#: These tests edit the SQLite file under the server; on PostgreSQL the same chain is checked by the Swift suite.
pytestmark = pytest.mark.skipif(
    os.environ.get("KEYHOLD_SDK_BACKEND", "sqlite") != "sqlite", reason="edits the SQLite database directly")


# --- helpers ---------------------------------------------------------------------------------------------


@contextmanager
def database(server) -> Iterator[sqlite3.Connection]:
    """A second connection to the live server's database, in autocommit mode."""
    conn = sqlite3.connect(server.data_dir / "keyhold.sqlite", timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def editing(server) -> Iterator[sqlite3.Connection]:
    """One write transaction on the live database."""
    with database(server) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def chain(server, org_id: str) -> list[dict[str, Any]]:
    """The org's stored events in sequence order, as plain dicts."""
    with database(server) as conn:
        rows = conn.execute("SELECT * FROM audit_events WHERE org_id = ? ORDER BY seq", (org_id,)).fetchall()
    return [dict(row) for row in rows]


def insert(conn: sqlite3.Connection, row: dict[str, Any]) -> None:
    names = ", ".join(COLUMNS)
    marks = ", ".join("?" for _ in COLUMNS)
    conn.execute(f"INSERT INTO audit_events ({names}) VALUES ({marks})", [row[c] for c in COLUMNS])


def shift(conn: sqlite3.Connection, org_id: str, from_seq: int, by: int) -> None:
    """Add ``by`` to the sequence of every event at or after ``from_seq`` (two steps, for the UNIQUE index)."""
    conn.execute(
        "UPDATE audit_events SET seq = seq + ? WHERE org_id = ? AND seq >= ?", (PARKED, org_id, from_seq)
    )
    conn.execute(
        "UPDATE audit_events SET seq = seq - ? + ? WHERE org_id = ? AND seq >= ?", (PARKED, by, org_id, PARKED)
    )


def verify(owner, **kwargs: Any) -> dict[str, Any]:
    report = assert_sdk_ok(owner.client.audit.verify(**kwargs), 200)
    for key in ("chain_valid", "events_verified", "events_checked", "broken_at_event_id", "scheme"):
        assert key in report, (key, report)
    return report


def assert_valid(owner, count: int) -> None:
    report = verify(owner)
    assert report["chain_valid"] is True, report
    assert report["broken_at_event_id"] is None, report
    assert report["events_verified"] == count, report
    assert report["events_checked"] == count, report


def assert_broken_at(owner, event_id: str, verified_before: int) -> dict[str, Any]:
    report = verify(owner)
    assert report["chain_valid"] is False, report
    assert report["broken_at_event_id"] == event_id, report
    assert report["events_verified"] == verified_before, report
    assert isinstance(report.get("reason"), str) and report["reason"], report
    return report


@pytest.fixture
def org(server, signup_user, canary) -> SimpleNamespace:
    """A fresh org with a dozen events (signup, vault, writes, reads, a delete) and a valid chain."""
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("tamper"), 201)["id"]
    for i in range(4):
        assert_sdk_ok(owner.client.secrets.set(vault, f"t/{i}", canary("TAMPER-")), 201)
    for i in range(4):
        assert_sdk_ok(owner.client.secrets.get(vault, f"t/{i}"), 200)
    assert owner.client.secrets.delete(vault, "t/3").meta.status == 204
    rows = chain(server, owner.org_id)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) >= 10
    assert_valid(owner, len(rows))
    return SimpleNamespace(owner=owner, vault=vault, rows=rows, org_id=owner.org_id)


# --- a changed field -------------------------------------------------------------------------------------

FIELD_EDITS = {
    "action": lambda v: "secret.read" if v != "secret.read" else "secret.write",
    "actor_id": lambda v: str(uuid.uuid4()),
    "actor_type": lambda v: "agent" if v != "agent" else "user",
    "resource_type": lambda v: v + "x",
    "resource_id": lambda v: (v or "") + "-edited",
    "details": lambda v: '{"vault_id":"00000000-0000-0000-0000-000000000000","version":99}',
    "ip_address": lambda v: "10.9.8.7",
    "created_at": lambda v: v + 1,
    "prev_event_id": lambda v: str(uuid.uuid4()),
    "integrity_hash": lambda v: ("0" if v[0] != "0" else "1") + v[1:],
}


@pytest.mark.parametrize("column", sorted(FIELD_EDITS))
def test_changed_field_breaks_the_chain_at_that_event(server, org, column: str) -> None:
    index = 5  # a middle event (sequence 6)
    target = org.rows[index]
    original = target[column]
    edited = FIELD_EDITS[column](original)
    assert edited != original
    with editing(server) as conn:
        conn.execute(f"UPDATE audit_events SET {column} = ? WHERE id = ?", (edited, target["id"]))
    assert_broken_at(org.owner, target["id"], verified_before=index)
    with editing(server) as conn:
        conn.execute(f"UPDATE audit_events SET {column} = ? WHERE id = ?", (original, target["id"]))
    assert_valid(org.owner, len(org.rows))


def test_changed_first_event_is_reported(server, org) -> None:
    first = org.rows[0]
    with editing(server) as conn:
        conn.execute("UPDATE audit_events SET details = ? WHERE id = ?", ('{"email":"evil@example.com"}', first["id"]))
    assert_broken_at(org.owner, first["id"], verified_before=0)
    with editing(server) as conn:
        conn.execute("UPDATE audit_events SET details = ? WHERE id = ?", (first["details"], first["id"]))
    assert_valid(org.owner, len(org.rows))


def test_changed_last_event_is_reported(server, org) -> None:
    last = org.rows[-1]
    with editing(server) as conn:
        conn.execute("UPDATE audit_events SET resource_id = ? WHERE id = ?", ("t/other", last["id"]))
    assert_broken_at(org.owner, last["id"], verified_before=len(org.rows) - 1)
    with editing(server) as conn:
        conn.execute("UPDATE audit_events SET resource_id = ? WHERE id = ?", (last["resource_id"], last["id"]))
    assert_valid(org.owner, len(org.rows))


def test_edit_is_visible_in_the_listing_but_flagged(server, org) -> None:
    """The listing shows what is stored; only verify can tell that it was changed."""
    target = org.rows[4]
    with editing(server) as conn:
        conn.execute("UPDATE audit_events SET action = ? WHERE id = ?", ("secret.forged", target["id"]))
    listed = assert_sdk_ok(org.owner.client.audit.list(action="secret.forged"), 200)["events"]
    assert [e["id"] for e in listed] == [target["id"]]
    assert_broken_at(org.owner, target["id"], verified_before=4)
    with editing(server) as conn:
        conn.execute("UPDATE audit_events SET action = ? WHERE id = ?", (target["action"], target["id"]))
    assert_valid(org.owner, len(org.rows))


# --- deleted, reordered, forged and truncated events -----------------------------------------------------


def test_deleted_middle_event_breaks_the_chain_at_the_next(server, org) -> None:
    index = 4
    gone = org.rows[index]
    with editing(server) as conn:
        conn.execute("DELETE FROM audit_events WHERE id = ?", (gone["id"],))
    assert_broken_at(org.owner, org.rows[index + 1]["id"], verified_before=index)
    with editing(server) as conn:
        insert(conn, gone)
    assert_valid(org.owner, len(org.rows))


def test_deleted_middle_event_with_renumbering_is_still_caught(server, org) -> None:
    """Closing the gap (renumbering the later events) does not hide the deletion."""
    index = 4
    gone = org.rows[index]
    with editing(server) as conn:
        conn.execute("DELETE FROM audit_events WHERE id = ?", (gone["id"],))
        shift(conn, org.org_id, gone["seq"] + 1, -1)
    assert_broken_at(org.owner, org.rows[index + 1]["id"], verified_before=index)
    with editing(server) as conn:
        shift(conn, org.org_id, gone["seq"], +1)
        insert(conn, gone)
    assert_valid(org.owner, len(org.rows))


def test_deleted_first_event_is_reported(server, org) -> None:
    first = org.rows[0]
    with editing(server) as conn:
        conn.execute("DELETE FROM audit_events WHERE id = ?", (first["id"],))
    assert_broken_at(org.owner, org.rows[1]["id"], verified_before=0)
    with editing(server) as conn:
        insert(conn, first)
    assert_valid(org.owner, len(org.rows))


def test_deleted_last_event_is_reported(server, org) -> None:
    last = org.rows[-1]
    with editing(server) as conn:
        conn.execute("DELETE FROM audit_events WHERE id = ?", (last["id"],))
    report = verify(org.owner)
    assert report["chain_valid"] is False, report
    # Every remaining event checks out; what is missing is the last one, which the report names.
    assert report["broken_at_event_id"] == last["id"], report
    assert report["events_verified"] == len(org.rows) - 1, report
    with editing(server) as conn:
        insert(conn, last)
    assert_valid(org.owner, len(org.rows))


def test_deleted_tail_is_reported(server, org) -> None:
    tail = org.rows[-3:]
    with editing(server) as conn:
        for row in tail:
            conn.execute("DELETE FROM audit_events WHERE id = ?", (row["id"],))
    report = verify(org.owner)
    assert report["chain_valid"] is False, report
    assert report["broken_at_event_id"] is not None, report
    assert report["events_verified"] == len(org.rows) - 3, report
    with editing(server) as conn:
        for row in tail:
            insert(conn, row)
    assert_valid(org.owner, len(org.rows))


@pytest.mark.parametrize("a, b", [(3, 4), (2, 7)])
def test_swapped_sequence_numbers_break_the_chain(server, org, a: int, b: int) -> None:
    first, second = org.rows[a], org.rows[b]

    def swap(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE audit_events SET seq = ? WHERE id = ?", (-1, first["id"]))
        conn.execute("UPDATE audit_events SET seq = ? WHERE id = ?", (first["seq"], second["id"]))
        conn.execute("UPDATE audit_events SET seq = ? WHERE id = ?", (second["seq"], first["id"]))

    with editing(server) as conn:
        swap(conn)
    stored = chain(server, org.org_id)
    assert stored[a]["id"] == second["id"] and stored[b]["id"] == first["id"]
    # The first bad event is the one that now sits at the lower sequence number.
    assert_broken_at(org.owner, second["id"], verified_before=a)
    with editing(server) as conn:
        conn.execute("UPDATE audit_events SET seq = ? WHERE id = ?", (-1, first["id"]))
        conn.execute("UPDATE audit_events SET seq = ? WHERE id = ?", (second["seq"], second["id"]))
        conn.execute("UPDATE audit_events SET seq = ? WHERE id = ?", (first["seq"], first["id"]))
    assert_valid(org.owner, len(org.rows))


def test_forged_event_at_the_end_is_reported(server, org) -> None:
    last = org.rows[-1]
    forged = dict(last)
    forged.update(
        id=str(uuid.uuid4()),
        seq=last["seq"] + 1,
        prev_event_id=last["id"],
        action="secret.read",
        resource_id="t/0",
        created_at=last["created_at"] + 5,
        integrity_hash=last["integrity_hash"],  # a well-formed hash, copied from a real event
    )
    with editing(server) as conn:
        insert(conn, forged)
    assert_broken_at(org.owner, forged["id"], verified_before=len(org.rows))
    with editing(server) as conn:
        conn.execute("DELETE FROM audit_events WHERE id = ?", (forged["id"],))
    assert_valid(org.owner, len(org.rows))


def test_forged_event_in_the_middle_is_reported(server, org) -> None:
    index = 5
    before = org.rows[index - 1]
    forged = dict(org.rows[index])
    forged.update(
        id=str(uuid.uuid4()),
        seq=index + 1,
        prev_event_id=before["id"],
        actor_id=str(uuid.uuid4()),
        action="policy.delete",
        resource_type="policy",
        resource_id=str(uuid.uuid4()),
        details="{}",
        created_at=before["created_at"],
    )
    with editing(server) as conn:
        shift(conn, org.org_id, index + 1, +1)
        insert(conn, forged)
    assert_broken_at(org.owner, forged["id"], verified_before=index)
    with editing(server) as conn:
        conn.execute("DELETE FROM audit_events WHERE id = ?", (forged["id"],))
        shift(conn, org.org_id, index + 2, -1)
    assert_valid(org.owner, len(org.rows))


def test_event_replayed_from_another_org_is_reported(server, org, signup_user) -> None:
    """A genuine event of another org, copied into this chain at the right place, does not verify."""
    other = signup_user()
    theirs = chain(server, other.org_id)[-1]
    last = org.rows[-1]
    copied = dict(theirs)
    copied.update(id=str(uuid.uuid4()), org_id=org.org_id, seq=last["seq"] + 1, prev_event_id=last["id"])
    with editing(server) as conn:
        insert(conn, copied)
    assert_broken_at(org.owner, copied["id"], verified_before=len(org.rows))
    with editing(server) as conn:
        conn.execute("DELETE FROM audit_events WHERE id = ?", (copied["id"],))
    assert_valid(org.owner, len(org.rows))
    # The other org's own chain was never touched.
    assert_valid(other, len(chain(server, other.org_id)))


def test_tampering_in_one_org_leaves_other_orgs_valid(server, org, signup_user) -> None:
    other = signup_user()
    with editing(server) as conn:
        conn.execute("UPDATE audit_events SET details = '{}' WHERE id = ?", (org.rows[2]["id"],))
    try:
        assert_broken_at(org.owner, org.rows[2]["id"], verified_before=2)
        assert_valid(other, len(chain(server, other.org_id)))
    finally:
        with editing(server) as conn:
            original = org.rows[2]
            conn.execute("UPDATE audit_events SET details = ? WHERE id = ?", (original["details"], original["id"]))
    assert_valid(org.owner, len(org.rows))


def test_new_events_after_a_restore_continue_the_chain(server, org, canary) -> None:
    gone = org.rows[3]
    with editing(server) as conn:
        conn.execute("DELETE FROM audit_events WHERE id = ?", (gone["id"],))
    assert verify(org.owner)["chain_valid"] is False
    with editing(server) as conn:
        insert(conn, gone)
    assert_sdk_ok(org.owner.client.secrets.set(org.vault, "t/after", canary("TAMPER-")), 201)
    rows = chain(server, org.org_id)
    assert len(rows) == len(org.rows) + 1
    assert rows[-1]["prev_event_id"] == org.rows[-1]["id"]
    assert_valid(org.owner, len(rows))


# --- concurrency -----------------------------------------------------------------------------------------

THREADS = 20


def test_concurrent_requests_keep_one_valid_chain(server, signup_user, make_agent, agent_sdk, canary) -> None:
    owner = signup_user()
    vault = assert_sdk_ok(owner.client.vaults.create("busy-threads"), 201)["id"]
    agent = make_agent(owner)
    assert_sdk_ok(
        owner.client.policies.create(
            vault, principal_type="agent", principal_id=agent.id, secret_path_pattern="shared/**"
        ),
        201,
    )
    bot = agent_sdk(agent.key)
    values = [canary("THREADS-") for _ in range(THREADS * 3)]
    assert_sdk_ok(owner.client.secrets.set(vault, "shared/hot", values[-1]), 201)
    before = len(chain(server, owner.org_id))

    def work(i: int) -> list[int]:
        statuses = []
        for round_ in range(3):
            value = values[i * 3 + round_]
            if i % 4 == 0:
                statuses.append(bot.secrets.get(vault, "shared/hot").meta.status)
                statuses.append(bot.secrets.set(vault, "private/x", value).meta.status)  # denied: audited too
            elif i % 4 == 1:
                statuses.append(owner.client.secrets.set(vault, "shared/hot", value).meta.status)
            else:
                statuses.append(owner.client.secrets.set(vault, f"own/{i}", value).meta.status)
                statuses.append(owner.client.secrets.get(vault, f"own/{i}").meta.status)
        return statuses

    results = run_together(THREADS, work)
    statuses = Counter(s for r in results for s in r)
    assert set(statuses) <= {200, 201, 403}, statuses
    expected_new = sum(len(r) for r in results)

    rows = chain(server, owner.org_id)
    assert len(rows) == before + expected_new
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    listed = assert_sdk_ok(owner.client.audit.list(limit=1000), 200)["events"]
    assert len(listed) == len(rows)
    assert len({r["id"] for r in rows}) == len(rows)
    assert_valid(owner, len(rows))


def test_concurrent_orgs_keep_separate_valid_chains(server, signup_user, canary) -> None:
    owners = [signup_user() for _ in range(4)]
    vaults = [assert_sdk_ok(o.client.vaults.create("par"), 201)["id"] for o in owners]
    values = [canary("PAR-") for _ in range(THREADS)]

    def work(i: int) -> int:
        owner, vault = owners[i % 4], vaults[i % 4]
        return owner.client.secrets.set(vault, f"p/{i}", values[i]).meta.status

    assert Counter(run_together(THREADS, work)) == Counter({201: THREADS})
    for owner in owners:
        assert_valid(owner, len(chain(server, owner.org_id)))


# --- fail-closed -----------------------------------------------------------------------------------------

TRIGGER = "CREATE TRIGGER audit_refused BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'refused'); END"


@contextmanager
def audit_refused(server) -> Iterator[None]:
    with database(server) as conn:
        conn.execute(TRIGGER)
    try:
        yield
    finally:
        with database(server) as conn:
            conn.execute("DROP TRIGGER IF EXISTS audit_refused")


#: Every org's events, without the system chain: failed authentications that name no org are counted in memory
#: and written there once per interval (issue 14, F10), so a flush of earlier tests' failures may land at any time.
ORG_EVENTS = "SELECT COUNT(*) FROM audit_events WHERE org_id != '00000000-0000-0000-0000-000000000000'"


def _no_value_in(resp: httpx.Response, *values: str) -> None:
    for value in values:
        assert value not in resp.text


@pytest.fixture
def fail_closed_world(server, signup_user, canary) -> SimpleNamespace:
    owner = signup_user()
    c = owner.client
    vault = assert_sdk_ok(c.vaults.create("fail-closed"), 201)["id"]
    value = canary("FAILCLOSED-")
    secret = assert_sdk_ok(c.secrets.set(vault, "fc/keep", value, max_access_count=10), 201)
    first_read = assert_sdk_ok(c.secrets.get(vault, "fc/keep"), 200)
    assert first_read["access_count"] == 1
    link = assert_sdk_ok(
        c.sharing.create(
            secret["id"], recipient_type="anyone_with_link", expires_at=rfc3339(now_utc() + dt.timedelta(hours=1))
        ),
        201,
    )
    return SimpleNamespace(owner=owner, vault=vault, value=value, secret=secret, link=link)


def test_audit_failure_refuses_every_audited_request(server, fail_closed_world, canary, anon) -> None:
    w = fail_closed_world
    h = w.owner.http
    new_value = canary("FAILCLOSED-")
    vaults_before = {v["id"] for v in assert_sdk_ok(w.owner.client.vaults.list(), 200)["vaults"]}
    shares_before = assert_sdk_ok(w.owner.client.sharing.list_outbound(), 200)["shares"]
    rows_before = chain(server, w.owner.org_id)
    with database(server) as conn:
        total_before = conn.execute(ORG_EVENTS).fetchone()[0]

    responses: dict[str, httpx.Response] = {}
    with audit_refused(server):
        responses["put existing"] = h.put(f"/v1/vaults/{w.vault}/secrets/fc/keep", json={"value": new_value})
        responses["put new"] = h.put(f"/v1/vaults/{w.vault}/secrets/fc/new", json={"value": new_value})
        responses["get"] = h.get(f"/v1/vaults/{w.vault}/secrets/fc/keep")
        responses["delete"] = h.delete(f"/v1/vaults/{w.vault}/secrets/fc/keep")
        responses["create vault"] = h.post("/v1/vaults", json={"name": "never"})
        responses["create share"] = h.post(
            f"/v1/secrets/{w.secret['id']}/share",
            json={"recipient_type": "anyone_with_link", "expires_at": rfc3339(now_utc() + dt.timedelta(hours=1))},
        )
        responses["open share"] = anon.get(f"/v1/share/{w.link['id']}")
        responses["login"] = anon.post("/v1/auth/token", json={"email": w.owner.email, "password": PASSWORD})
        # The SDK sees the same refusal.
        sdk_get = w.owner.client.secrets.get(w.vault, "fc/keep")

    for name, resp in responses.items():
        assert resp.status_code == 503, f"{name}: {resp.status_code} {resp.text[:300]}"
        assert_problem(resp, 503)
        _no_value_in(resp, w.value, new_value)
        assert "access_token" not in resp.text, name
    assert_sdk_error(sdk_get, 503)

    # Nothing happened: no event, no new version, no new vault or share, no counted read.
    with database(server) as conn:
        assert conn.execute(ORG_EVENTS).fetchone()[0] == total_before
    assert chain(server, w.owner.org_id) == rows_before
    data = assert_sdk_ok(w.owner.client.secrets.get(w.vault, "fc/keep"), 200)
    assert data["value"] == w.value
    assert data["version"] == 1
    assert data["access_count"] == 2  # the read before, and this one: the refused reads did not count
    assert_sdk_error(w.owner.client.secrets.get(w.vault, "fc/new"), 404)
    assert {v["id"] for v in assert_sdk_ok(w.owner.client.vaults.list(), 200)["vaults"]} == vaults_before
    shares_after = assert_sdk_ok(w.owner.client.sharing.list_outbound(), 200)["shares"]
    assert [s["id"] for s in shares_after] == [s["id"] for s in shares_before]
    assert shares_after[0]["access_count"] == 0
    opened = anon.get(f"/v1/share/{w.link['id']}")
    assert opened.status_code == 200, opened.text
    assert opened.json()["access_count"] == 1
    assert opened.json()["value"] == w.value
    # And the chain is whole, with the new events of the checks above appended.
    assert_valid(w.owner, len(chain(server, w.owner.org_id)))


def test_audit_failure_refuses_logins_and_key_exchanges(server, signup_user, make_agent, anon, leak_watch) -> None:
    owner = signup_user()
    agent = make_agent(owner)
    key = leak_watch.track(assert_sdk_ok(owner.client.api_keys.create("fail-closed"), 201))["api_key"]
    with audit_refused(server):
        login = anon.post("/v1/auth/token", json={"email": owner.email, "password": PASSWORD})
        agent_token = anon.post("/v1/auth/agent-token", json={"api_key": agent.key})
        key_token = anon.post("/v1/auth/api-key-token", json={"api_key": key})
    for name, resp in {"login": login, "agent-token": agent_token, "api-key-token": key_token}.items():
        assert resp.status_code == 503, f"{name}: {resp.status_code} {resp.text[:300]}"
        assert_problem(resp, 503)
        assert "access_token" not in resp.text
    # Afterwards everything works again.
    resp = anon.post("/v1/auth/agent-token", json={"api_key": agent.key})
    assert resp.status_code == 200, resp.text
    leak_watch.track(resp.json())
    assert_valid(owner, len(chain(server, owner.org_id)))


def test_trigger_is_gone_after_the_fail_closed_tests(server, user, vault, canary) -> None:
    with database(server) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
    assert "audit_refused" not in names
    assert_sdk_ok(user.client.secrets.set(vault, "after/trigger", canary()), 201)
