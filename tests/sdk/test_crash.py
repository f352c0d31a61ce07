"""Crash safety: SIGKILL a loaded server, restart it, and prove that no acknowledged write was lost.

The test runs its own Keyhold server (the same binary and storage backend as the session: SQLite in a data dir of
its own, or a scratch PostgreSQL database), signs up, creates a vault, and then runs ``KEYHOLD_CRASH_ROUNDS``
rounds (default 3) of:

1. 8-16 concurrent writer threads; each writes new versions of a few paths of its own, and every third thread also
   writes one path that they all share (so the version counter of that path is contended), each write with a
   distinct canary value. Every write answered 201 is recorded as (path, version, value); every write sent on a
   connection that died before the answer is recorded as cut off (it may or may not have committed); a write whose
   connection was refused never reached the server.
2. After a random 0.3-1.5 s the server is killed with SIGKILL mid-load, then restarted on the same data dir or
   database (and master key, which lives in the data dir), on the same port when it is free.
3. Proofs: every write answered 201 in the round reads back at its version with exactly its value; every path's
   versions (of this round and all before) are exactly 1..N with N >= its highest acknowledged version, and this
   round's acknowledged versions are above the previous round's N; a version nobody acknowledged holds the value of
   a write to that path that was cut off, and no cut-off write committed twice; the latest version of every path is
   N; every committed version has its ``secret.write`` audit event (they commit in one transaction); the audit chain
   verifies to its head, and ``events_verified`` does not decrease between rounds.

After the last round every write acknowledged in any round reads back again, the chain verifies again, and the
server log (all runs) holds no canary value, password or token; on SQLite, no file of the data dir holds a canary.

``KEYHOLD_CRASH_SEED`` replays a run's random choices (thread counts, paths, kill delays); the seed is printed.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest

from conftest import DEFAULT_BIN, REPO_ROOT, SCHEME, SDK_BACKEND, SDK_KEYSTORE, KeyholdServer, _free_port
from support import PASSWORD, bearer

if SDK_KEYSTORE != "software":
    # The PKCS#11 pass stores on SQLite exactly like the first pass; what a crash tests is the storage.
    pytest.skip("the crash test runs in the software-keystore passes (SQLite and PostgreSQL)", allow_module_level=True)

ROUNDS = int(os.environ.get("KEYHOLD_CRASH_ROUNDS", "3"))
SEED = int(os.environ.get("KEYHOLD_CRASH_SEED", str(random.SystemRandom().randrange(1 << 32))))
MIN_WRITERS, MAX_WRITERS = 8, 16
OWN_PATHS = 3  # paths each writer thread owns
SHARED_PATH = "crash/shared"
KILL_DELAY_S = (0.3, 1.5)
#: Seconds a writer waits for an answer, and for the writers to end after the kill (every loop is bounded).
REQUEST_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
JOIN_TIMEOUT_S = 30.0
#: /v1/audit/verify checks at most this many events from the first; the whole chain must stay below it to be
#: verified to its head. Every write and every read is an event, and every acknowledged write is read twice (after
#: its round and after the last), so a round starts at most WRITE_BUDGET writes: paced at first, then, for the
#: last BURST_S before the kill, as fast as the server answers, so that every writer has a write in flight when
#: the SIGKILL lands. Each round's check also reads every path's version list and latest version (one event each
#: since issue 14, F9): 200 events a round are kept for those.
VERIFY_LIMIT = 10_000
WRITE_BUDGET = (VERIFY_LIMIT - 1000 - 200 * ROUNDS) // (3 * ROUNDS)
BURST_S = 0.15
BURST_RESERVE = WRITE_BUDGET // 3
CANARY_PREFIX = "CRASH-CANARY-"


@dataclass
class Ack:
    path: str
    version: int
    value: str


@dataclass
class RoundLog:
    """What the writers of one round saw."""

    acked: list[Ack] = field(default_factory=list)
    #: Writes sent on a connection that died before the answer: committed or not, nobody knows.
    cut_off: list[tuple[str, str]] = field(default_factory=list)
    #: Writes whose connection was refused: never reached the server.
    refused: list[tuple[str, str]] = field(default_factory=list)
    #: Writes answered with anything but 201 (none expected: the server was healthy until the kill).
    rejected: list[tuple[str, int, str]] = field(default_factory=list)
    #: Exceptions other than transport errors in the writer threads (test bugs; reported, never swallowed).
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _port_is_free(port: int) -> bool:
    """Whether a listener could bind ``port`` now (with SO_REUSEADDR, as the server binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _psql(url: str, sql: str) -> None:
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True, capture_output=True,
                   timeout=60)


def _sigkill(srv: KeyholdServer) -> None:
    """SIGKILL the server process, by its PID, and reap it."""
    proc = srv.proc
    assert proc is not None and proc.poll() is None, "the server died before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    srv.last_exit_code = proc.returncode
    srv.proc = None


@dataclass
class Load:
    """What the writers of one round share: when to start, when to stop pacing, when to stop, the write budget."""

    interval: float  # seconds between the writes one writer starts while paced
    start: threading.Barrier
    burst: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    started: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ticket(self) -> bool:
        """Take one write of the round's budget; False once it is spent."""
        with self.lock:
            self.started += 1
            return self.started <= WRITE_BUDGET


def _writer(index: int, base_url: str, token: str, vault: str, round_no: int, paths: list[str], load: Load,
            log: RoundLog, seed: int) -> None:
    """Write new versions of ``paths`` until the server dies (or the budget is spent)."""
    rng = random.Random(seed)
    try:
        with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT, headers=bearer(token)) as client:
            load.start.wait(timeout=30)
            began = time.monotonic() + rng.uniform(0, load.interval)
            for n in range(WRITE_BUDGET):
                if not load.burst.is_set():
                    pause = began + n * load.interval - time.monotonic()
                    if pause > 0:
                        load.burst.wait(pause)
                if load.stop.is_set() or not load.ticket():
                    return
                path = rng.choice(paths)
                value = f"{CANARY_PREFIX}r{round_no}-t{index}-{n}-{uuid.uuid4().hex}"
                try:
                    resp = client.put(f"/v1/vaults/{vault}/secrets/{path}", json={"value": value, "type": "password"})
                except httpx.ConnectError:
                    with log.lock:
                        log.refused.append((path, value))
                    return
                except httpx.TransportError:
                    with log.lock:
                        log.cut_off.append((path, value))
                    return
                if resp.status_code == 201:
                    body = resp.json()
                    assert body["path"] == path, body
                    with log.lock:
                        log.acked.append(Ack(path, body["version"], value))
                else:
                    with log.lock:
                        log.rejected.append((path, resp.status_code, resp.text[:300]))
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        with log.lock:
            log.errors.append(f"writer {index}: {exc!r}")


def _run_round(srv: KeyholdServer, token: str, vault: str, round_no: int, rng: random.Random,
               paths_of: dict[int, list[str]]) -> tuple[RoundLog, Load, int, float]:
    """Load the server with writers, SIGKILL it mid-load; return the log, the load, the writer count, the delay."""
    log = RoundLog()
    count = rng.randint(MIN_WRITERS, MAX_WRITERS)
    delay = rng.uniform(*KILL_DELAY_S)
    # Paced so that even the longest load leaves BURST_RESERVE writes of the budget for the burst.
    interval = count * (KILL_DELAY_S[1] - BURST_S) / (WRITE_BUDGET - BURST_RESERVE)
    load = Load(interval=interval, start=threading.Barrier(count + 1))
    threads = [
        threading.Thread(
            target=_writer, name=f"crash-writer-{i}", daemon=True,
            args=(i, srv.url, token, vault, round_no, paths_of[i], load, log, rng.randrange(1 << 32)))
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    try:
        load.start.wait(timeout=30)
        time.sleep(max(0.0, delay - BURST_S))
        load.burst.set()
        time.sleep(min(BURST_S, delay))
        _sigkill(srv)
    finally:
        load.burst.set()
        load.stop.set()
        load.start.abort()  # frees writers still at the barrier if the main thread failed before it
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"writer threads still running {JOIN_TIMEOUT_S:.0f}s after the kill: {alive}"
    assert not log.errors, log.errors
    return log, load, count, delay


def _restart(srv: KeyholdServer) -> tuple[float, bool]:
    """Start the server again on the same data; the same port if free. Return seconds to healthy and port reuse."""
    same_port = _port_is_free(srv.port)
    if not same_port:
        srv.port = _free_port()
        srv.url = f"{SCHEME}://127.0.0.1:{srv.port}"
    started = time.monotonic()
    srv.start()  # waits for 200 on /v1/health (fails the test after 30 s, with the log)
    return time.monotonic() - started, same_port


def _get_json(client: httpx.Client, url: str) -> dict:
    resp = client.get(url)
    assert resp.status_code == 200, f"GET {url}: {resp.status_code} {resp.text[:500]}"
    return resp.json()


def _read(client: httpx.Client, vault: str, path: str, version: int) -> tuple[str, int, int, str]:
    """(path, version, status, value or the start of the error body) of one version."""
    resp = client.get(f"/v1/vaults/{vault}/secret-version/{quote(path)}/{version}")
    return path, version, resp.status_code, (resp.json()["value"] if resp.status_code == 200 else resp.text[:300])


def _read_back(client: httpx.Client, vault: str, acks: list[Ack], when: str) -> None:
    """Every write in ``acks`` (each answered 201) reads back at its version with exactly its value."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda ack: _read(client, vault, ack.path, ack.version), acks))
    lost = [(ack, status, value) for ack, (_, _, status, value) in zip(acks, results)
            if status != 200 or value != ack.value]
    assert not lost, (
        f"{len(lost)} of {len(acks)} acknowledged writes do not read back {when}, e.g. "
        + "; ".join(f"{a.path} v{a.version} answered 201 with {a.value!r}, reads {st} {v!r}" for a, st, v in lost[:5]))


def _verify(client: httpx.Client, vault: str, acked_all: list[Ack], new_acks: list[Ack],
            cut_off_all: dict[str, set[str]], committed_unacked: dict[tuple[str, int], str],
            paths: list[str]) -> dict[str, int]:
    """Check every path, and the writes acknowledged in this round; return the highest version of each path."""
    latest: dict[str, int] = {}
    acked_by_path: dict[str, dict[int, str]] = defaultdict(dict)
    for ack in acked_all:
        previous = acked_by_path[ack.path].setdefault(ack.version, ack.value)
        assert previous == ack.value, (
            f"{ack.path}: version {ack.version} was answered 201 to two different writes ({previous!r}, {ack.value!r})")

    def versions_of(path: str) -> tuple[str, list[int]]:
        listing = client.get(f"/v1/vaults/{vault}/secret-versions/{quote(path)}")
        if listing.status_code == 404:
            return path, []
        assert listing.status_code == 200, f"versions of {path}: {listing.status_code} {listing.text[:500]}"
        return path, [entry["version"] for entry in listing.json()["versions"]]

    with ThreadPoolExecutor(max_workers=8) as pool:
        listed = dict(pool.map(versions_of, paths))
        for path, versions in listed.items():
            n = max(versions, default=0)
            assert sorted(versions) == list(range(1, n + 1)), f"{path}: versions are not 1..{n}: {sorted(versions)}"
            top_acked = max(acked_by_path.get(path, {0: ""}))
            assert n >= top_acked, f"{path}: highest version {n}, but version {top_acked} was answered 201"
            latest[path] = n

        # Versions nobody was told about must come from writes that were cut off, each at most once.
        unknown = [(path, v) for path, n in latest.items() for v in range(1, n + 1)
                   if v not in acked_by_path.get(path, {}) and (path, v) not in committed_unacked]
        for path, version, status, value in pool.map(lambda pv: _read(client, vault, *pv), unknown):
            assert status == 200, f"{path} v{version} (committed, unanswered) reads {status}: {value}"
            assert value in cut_off_all.get(path, set()), (
                f"{path} v{version} holds {value!r}, which no cut-off write to this path sent")
            committed_unacked[(path, version)] = value
    _read_back(client, vault, new_acks, "after the restart")
    seen: dict[str, tuple[str, int]] = {}
    for (path, version), value in committed_unacked.items():
        assert value not in seen, f"the cut-off write {value!r} committed twice: {seen[value]} and {(path, version)}"
        seen[value] = (path, version)

    # The latest version of each path is the highest one.
    for path, n in latest.items():
        if n:
            body = _get_json(client, f"/v1/vaults/{vault}/secrets/{quote(path)}")
            assert body["version"] == n, f"{path}: latest is v{body['version']}, versions go up to {n}"
    return latest


def _audit_writes(client: httpx.Client, path: str) -> int:
    """Number of ``secret.write`` audit events for ``path``."""
    total = 0
    for page in range(VERIFY_LIMIT // 1000):
        events = _get_json(client, f"/v1/audit/events?action=secret.write&resource_id={quote(path)}"
                                   f"&limit=1000&offset={page * 1000}")["events"]
        total += len(events)
        if len(events) < 1000:
            return total
    raise AssertionError(f"more than {VERIFY_LIMIT} secret.write events for {path}")


@pytest.fixture
def crash_server(tmp_path: Path):
    """A Keyhold server of this test's own, on the session's storage backend; dropped afterwards."""
    binary = Path(os.environ.get("KEYHOLD_BIN", str(DEFAULT_BIN)))
    if not binary.is_absolute():
        binary = (REPO_ROOT / binary).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"keyhold binary not found at {binary}; run `swift build -c release` or set KEYHOLD_BIN",
                    pytrace=False)
    srv = KeyholdServer(binary, tmp_path / "data", tmp_path / "crash-server.log", _free_port())
    # KeyholdServer.start sets KEYHOLD_BCRYPT_COST=10, KEYHOLD_RATE_LIMIT=5000 and KEYHOLD_RATE_BURST=10000.
    cluster = os.environ.get("KEYHOLD_TEST_DATABASE_URL", "")
    database = None
    if SDK_BACKEND == "postgres":
        if not cluster:
            pytest.fail("KEYHOLD_SDK_BACKEND=postgres needs KEYHOLD_TEST_DATABASE_URL", pytrace=False)
        database = "kh_crash_" + uuid.uuid4().hex[:12]
        _psql(cluster, f"CREATE DATABASE {database}")
        parts = urlsplit(cluster)
        srv.database_url = urlunsplit((parts.scheme, parts.netloc, "/" + database, "", ""))
        srv.backend = "postgres"
        srv.options += ["--database-url", srv.database_url]
    try:
        srv.start()
        yield srv
    finally:
        try:
            if srv.proc is not None and srv.proc.poll() is None:
                _sigkill(srv)  # a crash is what this test is about; no need to wait for a graceful stop
        finally:
            if database:
                _psql(cluster, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def test_sigkill_under_concurrent_writes_loses_no_acknowledged_write(crash_server: KeyholdServer) -> None:
    srv = crash_server
    rng = random.Random(SEED)
    assert ROUNDS >= 1, "KEYHOLD_CRASH_ROUNDS must be at least 1"
    assert WRITE_BUDGET >= 100, (
        f"KEYHOLD_CRASH_ROUNDS={ROUNDS} leaves {WRITE_BUDGET} writes a round within the {VERIFY_LIMIT} events "
        "the audit chain can be verified over; run fewer rounds")
    print(f"\n[crash] backend={srv.backend} rounds={ROUNDS} seed={SEED} (replay with KEYHOLD_CRASH_SEED={SEED})")

    email = f"crash-{uuid.uuid4().hex}@example.com"
    signup = httpx.post(f"{srv.url}/v1/auth/signup", json={"email": email, "password": PASSWORD}, timeout=30)
    assert signup.status_code == 200, signup.text
    # Open sign-up hands out no session (issue 14, F5): log in.
    login = httpx.post(f"{srv.url}/v1/auth/token", json={"email": email, "password": PASSWORD}, timeout=30)
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    created = httpx.post(f"{srv.url}/v1/vaults", json={"name": "crash"}, headers=bearer(token), timeout=30)
    assert created.status_code == 201, created.text
    vault = created.json()["id"]

    # Thread i owns crash/t{i}/p{k}; every third thread also writes the shared path. The same paths are written
    # in every round, so numbering has to continue correctly after each crash.
    paths_of = {
        i: [f"crash/t{i}/p{k}" for k in range(OWN_PATHS)] + ([SHARED_PATH] * OWN_PATHS if i % 3 == 0 else [])
        for i in range(MAX_WRITERS)
    }
    all_paths = sorted({p for paths in paths_of.values() for p in paths})

    acked_all: list[Ack] = []
    cut_off_all: dict[str, set[str]] = defaultdict(set)
    committed_unacked: dict[tuple[str, int], str] = {}
    canaries: list[str] = []
    latest_before = {path: 0 for path in all_paths}
    events_before = 0
    totals = {"acked": 0, "cut_off": 0, "unacked_committed": 0}

    for round_no in range(1, ROUNDS + 1):
        log, load, writers, delay = _run_round(srv, token, vault, round_no, rng, paths_of)
        canaries += [a.value for a in log.acked] + [v for _, v in log.cut_off] + [v for _, v in log.refused]
        assert not log.rejected, f"writes answered with something other than 201 before the kill: {log.rejected[:5]}"
        assert log.acked, "no write was acknowledged before the kill"
        restart_s, same_port = _restart(srv)

        acked_all += log.acked
        for path, value in log.cut_off:
            cut_off_all[path].add(value)
        unacked_before = len(committed_unacked)
        with httpx.Client(base_url=srv.url, timeout=30, headers=bearer(token)) as client:
            latest = _verify(client, vault, acked_all, log.acked, cut_off_all, committed_unacked, all_paths)
            # Versions of this round continue the numbering of the last: acknowledged ones above the old top.
            for ack in log.acked:
                assert ack.version > latest_before[ack.path], (
                    f"{ack.path}: round {round_no} got version {ack.version}, at or below the "
                    f"{latest_before[ack.path]} versions committed before")
            # A write and its audit event commit together.
            for path, n in latest.items():
                if n:
                    events = _audit_writes(client, path)
                    assert events == n, f"{path}: {n} versions but {events} secret.write audit events"
            verified = _get_json(client, f"/v1/audit/verify?limit={VERIFY_LIMIT}")
        assert verified["chain_valid"] is True, verified
        assert verified["events_verified"] >= events_before, (
            f"events_verified fell from {events_before} to {verified['events_verified']}")
        assert verified["events_verified"] < VERIFY_LIMIT, (
            f"the chain reached {VERIFY_LIMIT} events, so verify no longer covers it to its head; "
            "run fewer rounds")
        events_before = verified["events_verified"]

        new_versions = sum(latest[p] - latest_before[p] for p in all_paths)
        unacked = len(committed_unacked) - unacked_before
        assert new_versions == len(log.acked) + unacked, (new_versions, len(log.acked), unacked)
        shared = sum(1 for a in log.acked if a.path == SHARED_PATH)
        totals["acked"] += len(log.acked)
        totals["cut_off"] += len(log.cut_off)
        totals["unacked_committed"] += unacked
        spent = f" (all {WRITE_BUDGET} writes of the round's budget started before the kill)" \
            if load.started > WRITE_BUDGET else ""
        print(f"[crash] round {round_no}: {writers} writers, SIGKILL after {delay:.2f}s: "
              f"{len(log.acked)} writes acknowledged ({shared} on the shared path), "
              f"{len(log.cut_off)} cut off, {len(log.refused)} refused after the kill, "
              f"{unacked} committed beyond the acknowledged ones{spent}; "
              f"restart {restart_s:.2f}s ({'same' if same_port else 'new'} port); "
              f"audit chain valid over {verified['events_verified']} events")
        latest_before = latest

    # After the last crash, the writes acknowledged in every earlier round still read back (and the committed but
    # unanswered ones too), and the chain, now holding those reads, still verifies to its head.
    earlier = acked_all[: len(acked_all) - len(log.acked)]
    committed = [Ack(path, version, value) for (path, version), value in committed_unacked.items()]
    with httpx.Client(base_url=srv.url, timeout=30, headers=bearer(token)) as client:
        _read_back(client, vault, earlier + committed, f"after all {ROUNDS} crashes")
        verified = _get_json(client, f"/v1/audit/verify?limit={VERIFY_LIMIT}")
    assert verified["chain_valid"] is True, verified
    assert events_before <= verified["events_verified"] < VERIFY_LIMIT, (events_before, verified)

    # Nothing a writer sent shows up in the server's output, across every crash and restart.
    log_text = srv.log_path.read_text(errors="replace")
    leaked = [value for value in canaries if value in log_text]
    assert not leaked, f"{len(leaked)} canary values in the server log, e.g. {leaked[0]!r}"
    assert CANARY_PREFIX not in log_text
    assert PASSWORD not in log_text and token not in log_text
    if srv.backend == "sqlite":
        # Nor on disk in plaintext, WAL included, after the crashes.
        for file in (srv.data_dir).rglob("*"):
            if file.is_file():
                assert CANARY_PREFIX.encode() not in file.read_bytes(), f"a canary in plaintext in {file}"
    print(f"[crash] {ROUNDS} rounds: {totals['acked']} acknowledged writes checked, 0 lost; "
          f"{totals['cut_off']} cut off, {totals['unacked_committed']} of them committed; "
          f"audit chain valid over {verified['events_verified']} events")
