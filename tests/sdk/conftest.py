"""Fixtures that run a live Keyhold server and drive it with the oneclaw SDK.

The server binary comes from ``KEYHOLD_BIN`` (default: ``.build/release/keyhold``
relative to the repository root).  One server runs for the whole session; a
test may restart it on the same data dir and port through ``server.stop()`` and
``server.start()``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from urllib.parse import urlsplit, urlunsplit
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import oneclaw
import pyotp
import pytest

from support import PASSWORD, assert_sdk_ok

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / ".build" / "release" / "keyhold"
#: Which storage and keystore the session server uses (scripts/test runs the suite once per combination).
#: ``postgres`` needs KEYHOLD_TEST_DATABASE_URL (a cluster to create a scratch database in); ``pkcs11`` makes a
#: SoftHSM2 token in the session's temporary directory.
SDK_BACKEND = os.environ.get("KEYHOLD_SDK_BACKEND", "sqlite")
SDK_KEYSTORE = os.environ.get("KEYHOLD_SDK_KEYSTORE", "software")
#: ``1``: the session server speaks TLS with a certificate of a CA made for the session, which every client trusts
#: through ``SSL_CERT_FILE`` (httpx, the SDK, the ``keyhold`` CLI).
SDK_TLS = os.environ.get("KEYHOLD_SDK_TLS", "0") == "1"
SCHEME = "https" if SDK_TLS else "http"
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_tls_files(directory: Path, name: str = "server") -> dict[str, Path]:
    """A CA, and a certificate it signs for 127.0.0.1 (EC P-256, PEM files): ``ca``, ``cert``, ``key``. With the same
    directory and another ``name``, another certificate of the same CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca-key.pem"
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    if not ca.exists():
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(ca_key),
            "-out", str(ca), "-days", "2", "-subj", "/CN=Keyhold test CA")
    cert, key, request = directory / f"{name}.pem", directory / f"{name}-key.pem", directory / f"{name}.csr"
    extensions = directory / f"{name}.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
        "-out", str(request), "-subj", f"/CN={name}")
    run("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
        "-out", str(cert), "-extfile", str(extensions))
    return {"ca": ca, "cert": cert, "key": key}


_session_tls: dict[str, Path] = {}


def session_tls_files() -> dict[str, Path]:
    """The session's CA and server certificate (made on first use). Every client of the session (httpx, the SDK,
    the CLI and MCP subprocesses) trusts that CA through ``SSL_CERT_FILE``."""
    if not _session_tls:
        _session_tls.update(make_tls_files(Path(tempfile.mkdtemp(prefix="keyhold-tls-"))))
        os.environ["SSL_CERT_FILE"] = str(_session_tls["ca"])
    return _session_tls


def _tail(path: Path, limit: int = 8000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:  # pragma: no cover - diagnostic only
        return f"<cannot read {path}: {exc}>"
    return text[-limit:]


class KeyholdServer:
    """A Keyhold process bound to a fixed port and data dir."""

    def __init__(self, binary: Path, data_dir: Path, log_path: Path, port: int) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = port
        self.url = f"{SCHEME}://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.last_exit_code: int | None = None
        #: Storage and keystore options after ``serve`` (also what ``keyhold keys …`` needs), and their environment.
        self.options: list[str] = ["--data-dir", str(data_dir)]
        self.env: dict[str, str] = {}
        #: The client certificate and key the start-up check presents to a server that requires one (mTLS).
        self.client_cert: tuple[str, str] | None = None
        self.backend = "sqlite"
        self.database_url: str | None = None
        #: Leave KEYHOLD_RATE_LIMIT / KEYHOLD_RATE_BURST unset, so that the server runs with its default limits
        #: (the abuse tests in test_attacks.py start such a server of their own).
        self.default_rate_limits = False

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a read-only query, straight from the server's database (SQLite file or PostgreSQL)."""
        if self.backend == "postgres":
            out = subprocess.run(
                ["psql", self.database_url, "-At", "-c", f"SELECT coalesce(json_agg(t), '[]') FROM ({sql}) t"],
                check=True, capture_output=True, text=True).stdout
            return json.loads(out)
        import sqlite3

        conn = sqlite3.connect(self.data_dir / "keyhold.sqlite", timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in conn.execute(sql)]
        finally:
            conn.close()

    def execute(self, sql: str) -> int:
        """One statement on the server's database from outside Keyhold (an operator with database access); returns
        how many rows it changed."""
        if self.backend == "postgres":
            out = subprocess.run(["psql", self.database_url, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                                 check=True, capture_output=True, text=True).stdout
            return int(out.split()[-1])  # "UPDATE n" / "INSERT 0 n"
        import sqlite3

        conn = sqlite3.connect(self.data_dir / "keyhold.sqlite", timeout=30, isolation_level=None)
        try:
            return conn.execute(sql).rowcount
        finally:
            conn.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        env = dict(os.environ)
        env["KEYHOLD_BCRYPT_COST"] = "10"
        if self.default_rate_limits:
            env.pop("KEYHOLD_RATE_LIMIT", None)
            env.pop("KEYHOLD_RATE_BURST", None)
        else:
            # The suite sends far more than 100 requests a second from one address; the default limit has its own
            # test (test_attacks.py).
            env["KEYHOLD_RATE_LIMIT"] = "5000"
            env["KEYHOLD_RATE_BURST"] = "10000"
        # The most verbose level (one line per request), so that test_zz_logs.py searches everything a server writes.
        env["KEYHOLD_LOG_LEVEL"] = "debug"
        # Counted refusals (failed authentications, refused link opens) are written every 2 s, so tests that look
        # for their events wait briefly.
        env["KEYHOLD_AUTH_FAILURE_INTERVAL"] = "2"
        env.update(self.env)
        options = list(self.options)
        if SDK_TLS and "--tls-cert" not in options:
            tls = session_tls_files()
            options += ["--tls-cert", str(tls["cert"]), "--tls-key", str(tls["key"])]
            env["SSL_CERT_FILE"] = str(tls["ca"])
        cmd = [str(self.binary), "serve", "--host", "127.0.0.1", "--port", str(self.port), *options]
        # Append, so that a restart keeps the earlier output for the log checks.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self._wait_healthy()

    def _startup_verify(self) -> bool | ssl.SSLContext:
        if not self.url.startswith("https"):
            return True
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        if self.client_cert:
            context.load_cert_chain(*self.client_cert)
        return context

    def _wait_healthy(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last_error = "no attempt"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self.last_exit_code = code
                self.proc = None
                log = _tail(self.log_path)
                print(log)
                pytest.fail(
                    f"keyhold exited with code {code} during startup.\n--- server log ---\n{log}",
                    pytrace=False,
                )
            try:
                # Only waiting for the server to answer: the certificate is checked by the tests that mean to.
                resp = httpx.get(f"{self.url}/v1/health", timeout=2.0, verify=self._startup_verify())
                if resp.status_code == 200:
                    return
                last_error = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                last_error = repr(exc)
            time.sleep(0.1)
        log = _tail(self.log_path)
        print(log)
        self.stop()
        pytest.fail(
            f"keyhold did not answer 200 on /v1/health within {STARTUP_TIMEOUT_S:.0f}s "
            f"(last: {last_error}).\n--- server log ---\n{log}",
            pytrace=False,
        )

    def stop(self) -> int | None:
        """Send SIGTERM, wait up to STOP_TIMEOUT_S (then SIGKILL); return the exit code."""
        if self.proc is None:
            return self.last_exit_code
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        self.last_exit_code = proc.returncode
        self.proc = None
        return self.last_exit_code

    def restart(self) -> int | None:
        code = self.stop()
        self.start()
        return code


@dataclass
class User:
    email: str
    password: str
    token: str
    user_id: str
    client: Any  # oneclaw.OneclawClient holding ``token``
    http: httpx.Client  # raw client with the Bearer header preset
    refresh_token: str | None = None
    org_id: str | None = None
    role: str = "owner"


@dataclass
class Agent:
    """An agent registered through the SDK, with the one-time ``ocv_`` key."""

    id: str
    key: str
    record: dict[str, Any]
    owner: User


#: Response fields that carry a bearer credential (JWT or opaque) the server hands out.
_JWT_FIELDS = ("access_token",)
_OPAQUE_FIELDS = ("refresh_token", "api_key", "invite_token", "claim_token", "mfa_token")


@dataclass
class LeakWatch:
    """Strings that must never show up in server logs (or on disk)."""

    values: set[str] = field(default_factory=set)
    passwords: set[str] = field(default_factory=set)
    #: Access tokens (JWTs, user and agent); checked whole and by signature.
    tokens: set[str] = field(default_factory=set)
    #: Opaque credentials: ``ocv_`` agent keys, ``1ck_`` API keys, ``rt_`` refresh tokens, ``inv_`` invites,
    #: ``shc_`` share claim tokens.
    credentials: set[str] = field(default_factory=set)
    #: Share passphrases (never returned by the server, so registered by the ``passphrase`` fixture).
    passphrases: set[str] = field(default_factory=set)

    def track(self, body: Any) -> Any:
        """Register every credential found in a response body (any nesting); return the body."""
        if isinstance(body, dict):
            for key, value in body.items():
                if isinstance(value, str) and value:
                    if key in _JWT_FIELDS:
                        self.tokens.add(value)
                    elif key in _OPAQUE_FIELDS:
                        self.credentials.add(value)
                else:
                    self.track(value)
        elif isinstance(body, list):
            for item in body:
                self.track(item)
        return body


# ---------------------------------------------------------------------------
# Session fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def leak_watch() -> LeakWatch:
    return LeakWatch()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyholdServer]:
    binary = Path(os.environ.get("KEYHOLD_BIN", str(DEFAULT_BIN)))
    if not binary.is_absolute():
        binary = (REPO_ROOT / binary).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(
            f"keyhold binary not found or not executable at {binary}; "
            "run `swift build -c release` or set KEYHOLD_BIN",
            pytrace=False,
        )
    base = tmp_path_factory.mktemp("keyhold")
    # The data dir is deliberately NOT created here: the server must create it
    # itself (with mode 0700, see test_at_rest.py).
    data_dir = base / "data"
    log_path = base / "server.log"
    srv = KeyholdServer(binary, data_dir, log_path, _free_port())
    scratch_database = None
    if SDK_BACKEND == "postgres":
        cluster = os.environ.get("KEYHOLD_TEST_DATABASE_URL")
        if not cluster:
            pytest.fail("KEYHOLD_SDK_BACKEND=postgres needs KEYHOLD_TEST_DATABASE_URL", pytrace=False)
        scratch_database = "kh_sdk_" + uuid.uuid4().hex[:12]
        subprocess.run(["psql", cluster, "-q", "-c", f"CREATE DATABASE {scratch_database}"], check=True)
        parts = urlsplit(cluster)
        srv.database_url = urlunsplit((parts.scheme, parts.netloc, "/" + scratch_database, "", ""))
        srv.backend = "postgres"
        srv.options += ["--database-url", srv.database_url]
    if SDK_KEYSTORE == "pkcs11":
        hsm = base / "softhsm"
        (hsm / "tokens").mkdir(parents=True)
        (hsm / "softhsm2.conf").write_text(f"directories.tokendir = {hsm}/tokens\nobjectstore.backend = file\n")
        pin = uuid.uuid4().hex[:12]
        srv.env = {"SOFTHSM2_CONF": str(hsm / "softhsm2.conf"), "KEYHOLD_PKCS11_PIN": pin}
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", "keyhold-sdk", "--pin", pin, "--so-pin", pin + "0"],
            check=True, capture_output=True, env={**os.environ, **srv.env})
        srv.options += ["--keystore", "pkcs11", "--pkcs11-module", SOFTHSM_MODULE, "--pkcs11-token-label", "keyhold-sdk"]
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        if scratch_database:
            subprocess.run(
                ["psql", os.environ["KEYHOLD_TEST_DATABASE_URL"], "-q", "-c",
                 f"DROP DATABASE IF EXISTS {scratch_database} WITH (FORCE)"], check=False)


@pytest.fixture(scope="session")
def server_log(server: KeyholdServer) -> Path:
    return server.log_path


@pytest.fixture(scope="session")
def base_url(server: KeyholdServer) -> str:
    return server.url


@pytest.fixture(scope="session")
def anon(server: KeyholdServer) -> Iterator[httpx.Client]:
    """Raw HTTP client without credentials."""
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="session")
def sdk_anon(server: KeyholdServer) -> Any:
    """SDK client without a token."""
    return oneclaw.create_client(base_url=server.url)


@pytest.fixture(scope="session")
def signup_user(server: KeyholdServer, leak_watch: LeakWatch) -> Iterator[Callable[..., User]]:
    """Factory: sign up a fresh user (own org) through the SDK, then log in.

    Open sign-up hands out no session and no ids (issue 14, F5): the user logs in with ``POST /v1/auth/token``,
    and the user and org ids come from ``GET /v1/auth/me``.
    """
    created: list[User] = []

    def make() -> User:
        email = f"u-{uuid.uuid4().hex}@example.com"
        leak_watch.passwords.add(PASSWORD)
        bootstrap = oneclaw.create_client(base_url=server.url)
        try:
            signup = bootstrap.auth.signup(email, PASSWORD)
            assert signup.meta.status == 200, f"signup failed: {signup.meta.status} {signup.error!r}"
            leak_watch.track(signup.data)
            session = bootstrap.auth.login(email, PASSWORD)
            assert session.meta.status == 200, f"login failed: {session.meta.status} {session.error!r}"
            leak_watch.track(session.data)
            token = session.data["access_token"]
        finally:
            bootstrap.close()
        leak_watch.tokens.add(token)
        client = oneclaw.create_client(base_url=server.url, token=token)
        raw = httpx.Client(
            base_url=server.url,
            timeout=30.0,
            headers={"Authorization": f"Bearer {token}"},
        )
        me = raw.get("/v1/auth/me")
        assert me.status_code == 200, f"GET /v1/auth/me failed: {me.status_code} {me.text}"
        user = User(
            email=email,
            password=PASSWORD,
            token=token,
            user_id=me.json()["id"],
            client=client,
            http=raw,
            refresh_token=session.data.get("refresh_token"),
            org_id=me.json()["org_id"],
        )
        created.append(user)
        return user

    yield make
    for user in created:
        user.client.close()
        user.http.close()


@pytest.fixture(scope="session")
def join_org(server: KeyholdServer, leak_watch: LeakWatch) -> Iterator[Callable[..., User]]:
    """Factory: ``inviter`` invites a fresh email with ``role``; the invitee signs up with the invite token.

    The returned user holds the access token the invite signup hands out (no extra login, to keep bcrypt off
    the critical path).
    """
    created: list[User] = []

    def make(inviter: User, role: str = "member") -> User:
        email = f"m-{uuid.uuid4().hex}@example.com"
        leak_watch.passwords.add(PASSWORD)
        invite = inviter.client.org.invite(email, role)
        assert invite.meta.status == 200, f"invite failed: {invite.meta.status} {invite.error!r}"
        leak_watch.track(invite.data)
        resp = httpx.post(
            f"{server.url}/v1/auth/signup",
            json={"email": email, "password": PASSWORD, "invite_token": invite.data["invite_token"]},
            timeout=30.0,
        )
        assert resp.status_code == 200, f"invite signup failed: {resp.status_code} {resp.text}"
        body = leak_watch.track(resp.json())
        token = body["access_token"]
        member = User(
            email=email,
            password=PASSWORD,
            token=token,
            user_id=body["user_id"],
            client=oneclaw.create_client(base_url=server.url, token=token),
            http=httpx.Client(base_url=server.url, timeout=30.0, headers={"Authorization": f"Bearer {token}"}),
            refresh_token=body.get("refresh_token"),
            org_id=body.get("org_id"),
            role=body.get("role", role),
        )
        created.append(member)
        return member

    yield make
    for member in created:
        member.client.close()
        member.http.close()


@pytest.fixture(scope="session")
def make_agent(leak_watch: LeakWatch) -> Callable[..., Agent]:
    """Factory: ``owner`` registers an agent through the SDK (keyword arguments go to ``agents.create``)."""

    def make(owner: User, name: str | None = None, **kwargs: Any) -> Agent:
        resp = owner.client.agents.create(name or f"agent-{uuid.uuid4().hex[:10]}", **kwargs)
        assert resp.meta.status == 201, f"agent create failed: {resp.meta.status} {resp.error!r}"
        leak_watch.track(resp.data)
        return Agent(id=resp.data["agent"]["id"], key=resp.data["api_key"], record=resp.data["agent"], owner=owner)

    return make


@pytest.fixture(scope="session")
def agent_sdk(server: KeyholdServer, leak_watch: LeakWatch) -> Iterator[Callable[..., Any]]:
    """Factory: an SDK client built from an ``ocv_`` key, as an agent runs it (``create_client(api_key=...)``).

    With ``connect=True`` (default) the key is exchanged at once (through ``agents.me``) so that the client
    holds a token before the test starts revoking things.
    """
    clients: list[Any] = []

    def make(key: str, *, agent_id: str | None = None, connect: bool = True) -> Any:
        client = oneclaw.create_client(base_url=server.url, api_key=key, agent_id=agent_id)
        clients.append(client)
        if connect:
            me = client.agents.me()
            assert me.meta.status == 200, f"agent exchange/me failed: {me.meta.status} {me.error!r}"
            leak_watch.tokens.add(client._http.get_token())
        return client

    yield make
    for client in clients:
        token = client._http.get_token()
        if token:
            leak_watch.tokens.add(token)
        client.close()


@pytest.fixture(scope="session")
def user(signup_user: Callable[[], User]) -> User:
    return signup_user()


@pytest.fixture(scope="session")
def other_user(signup_user: Callable[[], User]) -> User:
    """A second user; signup gives every user an org of their own."""
    return signup_user()


# ---------------------------------------------------------------------------
# Per-test fixtures
# ---------------------------------------------------------------------------


@pytest.fixture
def vault(user: User) -> str:
    resp = user.client.vaults.create(f"vault-{uuid.uuid4().hex[:12]}")
    assert resp.meta.status == 201, f"vault create failed: {resp.meta.status} {resp.error!r}"
    return resp.data["id"]


@pytest.fixture
def canary(leak_watch: LeakWatch) -> Callable[[str], str]:
    """Factory for distinctive secret values that are tracked for leak checks."""

    def make(prefix: str = "CANARY-") -> str:
        value = f"{prefix}{uuid.uuid4().hex}"
        leak_watch.values.add(value)
        return value

    return make


@pytest.fixture
def passphrase(leak_watch: LeakWatch) -> Callable[[str], str]:
    """Factory for distinctive share passphrases that are tracked for leak checks."""

    def make(prefix: str = "PASSPHRASE-") -> str:
        value = f"{prefix}{uuid.uuid4().hex}"
        leak_watch.passphrases.add(value)
        return value

    return make


@pytest.fixture
def mfa_user(signup_user: Callable[[], Any], leak_watch) -> Callable[[], tuple[Any, pyotp.TOTP, list[str]]]:
    """Factory: a fresh user (own org) with MFA enabled through the SDK; returns (user, totp, recovery codes)."""

    def make() -> tuple[Any, pyotp.TOTP, list[str]]:
        user = signup_user()
        setup = assert_sdk_ok(user.client.auth.mfa_setup(), 200)
        leak_watch.values.add(setup["secret"])
        assert setup["otpauth_uri"].startswith("otpauth://totp/Keyhold:")
        assert f"secret={setup['secret']}" in setup["otpauth_uri"]
        totp = pyotp.parse_uri(setup["otpauth_uri"])
        assert totp.secret == setup["secret"] and totp.digits == 6 and totp.interval == 30
        codes = assert_sdk_ok(user.client.auth.mfa_verify_setup(totp.now()), 200)["recovery_codes"]
        leak_watch.values.update(codes)
        return user, totp, codes

    return make


@contextmanager
def private_server(
    server: KeyholdServer, base: Path, env: dict[str, str] | None = None, options: list[str] | None = None,
    scheme: str = SCHEME, client_cert: tuple[str, str] | None = None,
) -> Iterator[KeyholdServer]:
    """A server of a test's own, beside the session's: the session's backend and keystore options (its PKCS#11
    token), its own data dir and, on PostgreSQL, a scratch database; ``env`` adds to the session's environment. For
    tests that restart or kill a server, or need a flag the session server runs without (``options``; with
    ``--tls-cert`` among them, ``scheme`` says how to reach it, and ``client_cert`` what to present when it asks)."""
    srv = KeyholdServer(server.binary, base / "data", base / "server.log", _free_port())
    srv.url = f"{scheme}://127.0.0.1:{srv.port}"
    srv.client_cert = client_cert
    srv.env = {**server.env, **(env or {})}
    skip = {"--data-dir", "--database-url"}
    session_options = server.options
    for index in range(0, len(session_options), 2):
        if session_options[index] not in skip:
            srv.options += session_options[index:index + 2]
    cluster = os.environ.get("KEYHOLD_TEST_DATABASE_URL", "")
    database = None
    if SDK_BACKEND == "postgres":
        database = "kh_private_" + uuid.uuid4().hex[:12]
        subprocess.run(["psql", cluster, "-q", "-c", f"CREATE DATABASE {database}"], check=True)
        parts = urlsplit(cluster)
        srv.database_url = urlunsplit((parts.scheme, parts.netloc, "/" + database, "", ""))
        srv.backend = "postgres"
        srv.options += ["--database-url", srv.database_url]
    srv.options += options or []
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        if database:
            subprocess.run(["psql", cluster, "-q", "-c", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], check=False)

