"""The keyhold client CLI, run as a subprocess against a live server (issue 15).

Every test runs the suite's binary (``server.binary``) with a config folder of its own (``HOME`` and
``XDG_CONFIG_HOME`` under ``tmp_path``) and an environment stripped of every ``KEYHOLD_*``/``ONECLAW_*`` variable
but those the test sets, in a session of its own (no controlling terminal, so "no terminal" really holds), with a
timeout on every call. The server is checked through the SDK and raw HTTP, never through the CLI under test.

Some tests put a small forwarding proxy (``Proxy``) between the CLI and the server: it cuts secret-list pages to
a few items (so that following ``next_cursor`` is needed with 30 secrets, where the server's default page holds
1000) and records what the CLI sent and received (the tokens a login handed out).
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from support import assert_sdk_ok, bearer, is_uuid, now_utc, parse_ts, random_like, rfc3339

#: Generous: a CLI call that takes this long is stuck, not slow.
CLI_TIMEOUT = 60.0
#: How long a test polls for something a child process does (a ready file, a line on a pipe).
POLL_TIMEOUT = 30.0
#: The exit code of a usage error from swift-argument-parser (EX_USAGE).
USAGE_EXIT = 64
#: A child that writes its whole environment as JSON to the file named by its first argument.
DUMP_ENV = [sys.executable, "-c", "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"]


# ---------------------------------------------------------------------------
# Running the CLI
# ---------------------------------------------------------------------------


@dataclass
class Result:
    args: list[str]
    code: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", errors="replace")

    def __str__(self) -> str:
        def cut(text: str) -> str:
            return text if len(text) <= 4000 else f"{text[:4000]}… ({len(text)} characters)"

        args = " ".join(a if len(a) <= 200 else a[:200] + "…" for a in self.args)
        return f"keyhold {args} -> exit {self.code}\n--- stdout ---\n{cut(self.out)}\n--- stderr ---\n{cut(self.err)}"


class Cli:
    """The binary with a config folder of its own; ``env`` holds what the test sets on purpose."""

    def __init__(self, binary: Path, url: str, root: Path) -> None:
        self.binary = binary
        self.url = url
        self.root = root
        self.home = root / "home"
        self.config_home = root / "config"
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_home.mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str] = {}

    @property
    def config_dir(self) -> Path:
        return self.config_home / "keyhold"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.json"

    def environ(self, extra: dict[str, str] | None = None, *, url: bool = True, drop: tuple[str, ...] = ()) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYHOLD_", "ONECLAW_"))}
        env["HOME"] = str(self.home)
        env["XDG_CONFIG_HOME"] = str(self.config_home)
        if url:
            env["KEYHOLD_URL"] = self.url
        env.update(self.env)
        env.update(extra or {})
        for name in drop:
            env.pop(name, None)
        return env

    def popen(self, *args: str, env: dict[str, str] | None = None, url: bool = True, drop: tuple[str, ...] = (),
              stdin: Any = subprocess.DEVNULL, stdout: Any = subprocess.PIPE,
              stderr: Any = subprocess.PIPE) -> subprocess.Popen:
        return subprocess.Popen(
            [str(self.binary), *args], stdin=stdin, stdout=stdout, stderr=stderr,
            env=self.environ(env, url=url, drop=drop), cwd=self.root, start_new_session=True)

    def __call__(self, *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None,
                 url: bool = True, drop: tuple[str, ...] = (), timeout: float = CLI_TIMEOUT) -> Result:
        data = input.encode() if isinstance(input, str) else input
        proc = self.popen(*args, env=env, url=url, drop=drop,
                          stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL)
        try:
            out, err = proc.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            pytest.fail(f"keyhold {' '.join(args)} did not finish within {timeout:.0f}s\n"
                        f"--- stdout ---\n{out.decode(errors='replace')}\n--- stderr ---\n{err.decode(errors='replace')}")
        return Result(list(args), proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of a CLI started with ``start_new_session`` (the CLI and its children)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def ok(result: Result) -> Result:
    assert result.code == 0, str(result)
    return result


def failed(result: Result, detail: str | None = None) -> str:
    """Exit 1 and exactly one line on stderr, starting ``keyhold: `` (and holding ``detail``); returns the line."""
    assert result.code == 1, str(result)
    lines = result.err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr\n{result}"
    assert lines[0].startswith("keyhold: "), str(result)
    if detail is not None:
        assert detail in lines[0], f"{detail!r} not in the error line\n{result}"
    return lines[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = POLL_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def assert_same(got: bytes | str, expected: bytes | str) -> None:
    """Equality of large outputs, reported by the first difference (pytest's own diff of megabytes takes minutes)."""
    if got == expected:
        return
    at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    pytest.fail(f"outputs differ at offset {at} (lengths {len(got)} and {len(expected)}): "
                f"got {got[max(0, at - 80):at + 80]!r}, expected {expected[max(0, at - 80):at + 80]!r}")


def redacted(name: str) -> str:
    return f"<redacted:{name}>"


# ---------------------------------------------------------------------------
# A forwarding proxy that cuts list pages and records the exchange
# ---------------------------------------------------------------------------

_LIST_PATH = re.compile(r"/v1/vaults/[^/]+/secrets")
_HOP_HEADERS = {"host", "connection", "keep-alive", "content-length", "transfer-encoding", "proxy-connection"}


@dataclass
class Exchange:
    method: str
    path: str
    sent_path: str
    status: int
    response: bytes


class _Forwarder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self) -> None:
        proxy: Proxy = self.server.proxy  # type: ignore[attr-defined]
        body = self._read_body()
        target = self.path
        parts = urlsplit(self.path)
        if self.command == "GET" and proxy.page and _LIST_PATH.fullmatch(parts.path):
            query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "limit"]
            query.append(("limit", str(proxy.page)))
            target = urlunsplit(("", "", parts.path, urlencode(query), ""))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        # Over TLS when the session's server speaks it (SSL_CERT_FILE names its CA).
        connection = http.client.HTTPSConnection if proxy.upstream.scheme == "https" else http.client.HTTPConnection
        conn = connection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
        try:
            conn.request(self.command, target, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status, resp_headers = resp.status, resp.getheaders()
        finally:
            conn.close()
        with proxy.lock:
            proxy.log.append(Exchange(self.command, self.path, target, status, data))
        self.send_response(status)
        for name, value in resp_headers:
            if name.lower() not in _HOP_HEADERS | {"date", "server"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward


class Proxy:
    def __init__(self, upstream: str, page: int | None) -> None:
        self.upstream = urlsplit(upstream)
        self.page = page
        self.log: list[Exchange] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Forwarder)
        self.httpd.daemon_threads = True
        self.httpd.proxy = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def exchanges(self, method: str, path_re: str) -> list[Exchange]:
        with self.lock:
            return [x for x in self.log if x.method == method and re.fullmatch(path_re, urlsplit(x.path).path)]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def proxy(server) -> Iterator[Callable[..., Proxy]]:
    started: list[Proxy] = []

    def make(page: int | None = None) -> Proxy:
        p = Proxy(server.url, page)
        started.append(p)
        return p

    yield make
    for p in started:
        p.close()


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def owner(signup_user):
    """The person whose token most tests hand the CLI (a fresh account, so that no other test shares its vaults)."""
    return signup_user()


@pytest.fixture
def box(owner) -> str:
    """A fresh vault of ``owner``."""
    return assert_sdk_ok(owner.client.vaults.create(f"cli-{uuid.uuid4().hex[:12]}"), 201)["id"]


@pytest.fixture
def cli(server, tmp_path: Path) -> Cli:
    """The CLI with an empty config folder and no credentials."""
    return Cli(server.binary, server.url, tmp_path)


@pytest.fixture
def as_owner(cli: Cli, owner, box: str) -> Cli:
    """The CLI with ``owner``'s token and ``box`` as the vault, from the environment."""
    cli.env.update({"KEYHOLD_TOKEN": owner.token, "KEYHOLD_VAULT": box})
    return cli


@pytest.fixture
def put(owner, box: str) -> Callable[..., dict]:
    """Store a secret through the SDK (in ``box`` unless told); returns the 201 body."""

    def make(path: str, value: str, *, vault: str | None = None, type: str = "generic", **kwargs: Any) -> dict:
        return assert_sdk_ok(owner.client.secrets.set(vault or box, path, value, type=type, **kwargs), 201)

    return make


def stored(owner, vault: str, path: str) -> dict:
    """The latest version of a secret, read through raw HTTP (counts a read)."""
    resp = owner.http.get(f"/v1/vaults/{vault}/secrets/{path}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def listing(owner, vault: str) -> dict[str, dict]:
    """Metadata of every path of a vault by path (the list counts no read)."""
    data = assert_sdk_ok(owner.client.secrets.list(vault), 200)
    return {s["path"]: s for s in data["secrets"]}


def login_password(cli: Cli, user, *extra: str) -> Result:
    return cli("login", "--url", cli.url, *extra, input=f"{user.email}\n{user.password}\n", url=False)


def api_key(user, leak_watch) -> str:
    data = assert_sdk_ok(user.client.api_keys.create(f"cli-{uuid.uuid4().hex[:8]}"), 201)
    leak_watch.track(data)
    return data["api_key"]


def closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def grant_read(owner, vault: str, agent_id: str, pattern: str) -> None:
    resp = owner.http.post(
        f"/v1/vaults/{vault}/policies",
        json={"secret_path_pattern": pattern, "principal_type": "agent", "principal_id": agent_id,
              "permissions": ["read"]})
    assert resp.status_code == 201, resp.text


def agent_token(server, agent) -> str:
    resp = httpx.post(f"{server.url}/v1/auth/agent-token", json={"agent_id": agent.id, "api_key": agent.key},
                      timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


# --- login, config file ---------------------------------------------------------------------------------------


def test_login_reads_email_and_password_from_stdin_and_saves_a_private_session(cli: Cli, signup_user) -> None:
    person = signup_user()
    result = ok(login_password(cli, person))
    assert person.email in result.out
    assert cli.config_file.is_file()
    assert mode(cli.config_file) == 0o600
    assert mode(cli.config_dir) == 0o700
    json.loads(cli.config_file.read_text())
    for path in files_under(cli.root):
        assert person.password.encode() not in path.read_bytes(), f"the password is in {path}"
    assert person.password not in result.out + result.err
    # The saved session and the saved URL are used: no URL and no credential in the environment.
    whoami = ok(cli("whoami", url=False))
    assert person.email in whoami.out
    # Nothing is written anywhere but the config file.
    assert files_under(cli.root) == [cli.config_file]


def test_login_with_email_option_reads_only_the_password(cli: Cli, signup_user) -> None:
    person = signup_user()
    result = ok(cli("login", "--email", person.email, input=f"{person.password}\n"))
    assert person.email in result.out
    assert person.email in ok(cli("whoami")).out


def test_login_with_a_wrong_password_fails_and_saves_nothing(cli: Cli, signup_user) -> None:
    person = signup_user()
    wrong = "Wrong-Horse-7-Battery?"
    result = cli("login", "--url", cli.url, input=f"{person.email}\n{wrong}\n", url=False)
    failed(result)
    assert wrong not in result.out + result.err
    assert not cli.config_file.exists()
    failed(cli("whoami"))


def test_failed_login_keeps_the_saved_session(cli: Cli, signup_user) -> None:
    first, second = signup_user(), signup_user()
    ok(login_password(cli, first))
    before = cli.config_file.read_bytes()
    failed(cli("login", input=f"{second.email}\nWrong-Horse-7-Battery?\n"))
    assert cli.config_file.read_bytes() == before
    assert first.email in ok(cli("whoami")).out


def test_config_goes_under_home_when_xdg_config_home_is_unset(cli: Cli, signup_user) -> None:
    person = signup_user()
    ok(cli("login", input=f"{person.email}\n{person.password}\n", drop=("XDG_CONFIG_HOME",)))
    config = cli.home / ".config" / "keyhold" / "config.json"
    assert config.is_file()
    assert mode(config) == 0o600
    assert mode(config.parent) == 0o700
    assert not cli.config_file.exists()
    assert person.email in ok(cli("whoami", drop=("XDG_CONFIG_HOME",))).out
    # With XDG_CONFIG_HOME set (to a folder with no config), the file under HOME is not read.
    failed(cli("whoami"))


def test_login_with_api_key_on_stdin(cli: Cli, owner, box: str, put, leak_watch, canary) -> None:
    key = api_key(owner, leak_watch)
    result = ok(cli("login", "--api-key", input=f"{key}\n"))
    assert key not in result.out + result.err
    assert mode(cli.config_file) == 0o600
    assert mode(cli.config_dir) == 0o700
    assert owner.email in ok(cli("whoami")).out
    value = canary()
    put("from/key", value)
    assert ok(cli("secret", "get", "from/key", "--quiet", "--vault", box)).out == value + "\n"


def test_login_with_a_wrong_api_key_fails_and_saves_nothing(cli: Cli, owner, leak_watch) -> None:
    bogus = random_like(api_key(owner, leak_watch))
    result = cli("login", "--api-key", input=f"{bogus}\n")
    failed(result)
    assert bogus not in result.out + result.err
    assert not cli.config_file.exists()


def test_login_as_agent_with_key_on_stdin(cli: Cli, owner, box: str, make_agent, put, canary) -> None:
    agent = make_agent(owner)
    grant_read(owner, box, agent.id, "agent/**")
    value = canary()
    put("agent/reads", value)
    result = ok(cli("login", "--agent-id", agent.id, input=f"{agent.key}\n"))
    assert agent.key not in result.out + result.err
    assert mode(cli.config_file) == 0o600
    assert agent.id in ok(cli("whoami")).out
    assert ok(cli("secret", "get", "agent/reads", "--quiet", "--vault", box)).out == value + "\n"


def test_login_as_agent_with_a_wrong_key_fails_and_saves_nothing(cli: Cli, owner, make_agent) -> None:
    agent = make_agent(owner)
    bogus = random_like(agent.key)
    result = cli("login", "--agent-id", agent.id, input=f"{bogus}\n")
    failed(result)
    assert bogus not in result.out + result.err
    assert not cli.config_file.exists()


def test_whoami_for_a_person(cli: Cli, owner) -> None:
    cli.env["KEYHOLD_TOKEN"] = owner.token
    lines = ok(cli("whoami")).out.splitlines()
    assert any(owner.email in line and "owner" in line and owner.org_id in line for line in lines), lines
    assert json.loads(ok(cli("whoami", "--json")).out) == owner.http.get("/v1/auth/me").json()


def test_whoami_for_an_agent(cli: Cli, server, owner, make_agent) -> None:
    agent = make_agent(owner)
    cli.env.update({"KEYHOLD_AGENT_ID": agent.id, "KEYHOLD_AGENT_API_KEY": agent.key})
    lines = ok(cli("whoami")).out.splitlines()
    name = agent.record["name"]
    assert any("agent" in line and agent.id in line and name in line for line in lines), lines
    me = httpx.get(f"{server.url}/v1/agents/me", headers=bearer(agent_token(server, agent)), timeout=30)
    assert json.loads(ok(cli("whoami", "--json")).out) == me.json()


def test_logout_revokes_the_session_and_forgets_it(cli: Cli, server, signup_user, proxy) -> None:
    person = signup_user()
    relay = proxy()
    ok(cli("login", "--url", relay.url, input=f"{person.email}\n{person.password}\n", url=False))
    ok(cli("whoami", url=False))
    issued = [json.loads(x.response) for x in relay.exchanges("POST", r"/v1/auth/(token|refresh)") if x.status == 200]
    assert issued, "the login's POST /v1/auth/token was not seen"
    ok(cli("logout", url=False))
    # The session is gone from the config (the file itself may stay, with the URL).
    left = cli.config_file.read_text() if cli.config_file.exists() else ""
    for session in issued:
        me = httpx.get(f"{server.url}/v1/auth/me", headers=bearer(session["access_token"]), timeout=30)
        assert me.status_code == 401, me.text
        again = httpx.post(f"{server.url}/v1/auth/refresh", json={"refresh_token": session["refresh_token"]},
                           timeout=30)
        assert again.status_code == 401, again.text
        assert session["access_token"] not in left and session["refresh_token"] not in left
    failed(cli("whoami", url=False))
    failed(cli("vault", "list", url=False))


def _expire_session(node: Any, access_token: str) -> int:
    """Set every ``expir*`` field of the dict that holds ``access_token`` to the past; returns how many."""
    count = 0
    if isinstance(node, dict):
        if access_token in node.values():
            for key, value in node.items():
                if "expir" in key.lower():
                    node[key] = 0 if isinstance(value, (int, float)) else "2000-01-01T00:00:00Z"
                    count += 1
        for value in node.values():
            count += _expire_session(value, access_token)
    elif isinstance(node, list):
        for value in node:
            count += _expire_session(value, access_token)
    return count


def test_an_expired_session_is_refreshed_and_the_new_pair_saved(cli: Cli, signup_user, proxy) -> None:
    # The one test that knows the config file's layout beyond the spec: it finds the saved session by its access
    # token and moves the session's expiry (a field named expir*) into the past.
    person = signup_user()
    relay = proxy()
    ok(cli("login", "--url", relay.url, input=f"{person.email}\n{person.password}\n", url=False))
    [login] = [json.loads(x.response) for x in relay.exchanges("POST", "/v1/auth/token") if x.status == 200]
    config = json.loads(cli.config_file.read_text())
    assert _expire_session(config, login["access_token"]) >= 1, "no expiry saved beside the access token"
    cli.config_file.write_text(json.dumps(config))
    assert person.email in ok(cli("whoami", url=False)).out
    refreshed = [json.loads(x.response) for x in relay.exchanges("POST", "/v1/auth/refresh") if x.status == 200]
    assert len(refreshed) == 1, [(x.method, x.path, x.status) for x in relay.log]
    text = cli.config_file.read_text()
    assert refreshed[0]["access_token"] in text and refreshed[0]["refresh_token"] in text
    assert login["access_token"] not in text and login["refresh_token"] not in text
    assert mode(cli.config_file) == 0o600
    # The new pair is fresh: the next command refreshes nothing.
    ok(cli("whoami", url=False))
    assert len(relay.exchanges("POST", "/v1/auth/refresh")) == 1


def test_client_command_without_credentials_fails(cli: Cli) -> None:
    failed(cli("whoami"))
    failed(cli("vault", "list"))


# --- credentials from the environment -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["KEYHOLD_TOKEN", "ONECLAW_TOKEN"])
def test_token_from_the_environment(cli: Cli, owner, name: str) -> None:
    assert owner.email in ok(cli("whoami", env={name: owner.token})).out
    assert not cli.config_file.exists()


def test_api_key_as_token_from_the_environment(cli: Cli, owner, leak_watch) -> None:
    assert owner.email in ok(cli("whoami", env={"KEYHOLD_TOKEN": api_key(owner, leak_watch)})).out


@pytest.mark.parametrize("name", ["KEYHOLD_API_KEY", "ONECLAW_API_KEY"])
def test_api_key_from_the_environment(cli: Cli, owner, leak_watch, name: str) -> None:
    assert owner.email in ok(cli("whoami", env={name: api_key(owner, leak_watch)})).out


@pytest.mark.parametrize("prefix", ["KEYHOLD", "ONECLAW"])
def test_agent_credentials_from_the_environment(cli: Cli, owner, box: str, make_agent, put, canary,
                                                prefix: str) -> None:
    agent = make_agent(owner)
    grant_read(owner, box, agent.id, "env/**")
    value = canary()
    put("env/agent", value)
    cli.env.update({f"{prefix}_AGENT_ID": agent.id, f"{prefix}_AGENT_API_KEY": agent.key})
    assert agent.id in ok(cli("whoami")).out
    assert ok(cli("secret", "get", "env/agent", "--quiet", "--vault", box)).out == value + "\n"


def test_credentials_first_found_wins(cli: Cli, signup_user, make_agent, leak_watch) -> None:
    saved, by_token, by_key = signup_user(), signup_user(), signup_user()
    agent = make_agent(by_key)
    ok(login_password(cli, saved))
    env = {"KEYHOLD_TOKEN": by_token.token, "KEYHOLD_API_KEY": api_key(by_key, leak_watch),
           "KEYHOLD_AGENT_ID": agent.id, "KEYHOLD_AGENT_API_KEY": agent.key}
    assert by_token.email in ok(cli("whoami", env=env)).out
    assert by_key.email in ok(cli("whoami", env=env, drop=("KEYHOLD_TOKEN",))).out
    assert agent.id in ok(cli("whoami", env=env, drop=("KEYHOLD_TOKEN", "KEYHOLD_API_KEY"))).out
    assert saved.email in ok(cli("whoami")).out


def test_invalid_token_from_the_environment_is_one_line_without_the_token(cli: Cli, owner) -> None:
    bogus = owner.token[:-8] + "AAAAAAAA"
    result = cli("whoami", env={"KEYHOLD_TOKEN": bogus})
    failed(result)
    assert bogus not in result.err


# --- server URL -----------------------------------------------------------------------------------------------


def test_url_option_beats_the_environment(cli: Cli, owner) -> None:
    cli.env["KEYHOLD_TOKEN"] = owner.token
    assert owner.email in ok(cli("whoami", "--url", cli.url, env={"KEYHOLD_URL": closed_port_url()})).out


def test_oneclaw_base_url_is_honoured(cli: Cli, owner) -> None:
    cli.env["KEYHOLD_TOKEN"] = owner.token
    assert owner.email in ok(cli("whoami", url=False, env={"ONECLAW_BASE_URL": cli.url})).out


def test_unreachable_server_is_one_error_line(cli: Cli, owner) -> None:
    # A long timeout: this checks the outcome, not how fast the CLI gives up.
    result = cli("whoami", env={"KEYHOLD_TOKEN": owner.token, "KEYHOLD_URL": closed_port_url()}, timeout=180)
    failed(result)
    assert owner.token not in result.err


# --- vaults ---------------------------------------------------------------------------------------------------


def test_vault_create_prints_the_new_id_alone(as_owner: Cli, owner) -> None:
    name = f"made-{uuid.uuid4().hex[:8]}"
    result = ok(as_owner("vault", "create", name, "--description", "from the cli"))
    vault_id = result.out.strip()
    assert result.out == vault_id + "\n"
    assert is_uuid(vault_id)
    data = assert_sdk_ok(owner.client.vaults.get(vault_id), 200)
    assert (data["name"], data["description"]) == (name, "from the cli")


def test_vault_create_json_is_the_vault_object(as_owner: Cli, owner) -> None:
    name = f"made-{uuid.uuid4().hex[:8]}"
    created = json.loads(ok(as_owner("vault", "create", name, "--json")).out)
    assert created["name"] == name
    assert created == assert_sdk_ok(owner.client.vaults.get(created["id"]), 200)


def test_vault_list_table_and_json(as_owner: Cli, owner, box: str) -> None:
    name = assert_sdk_ok(owner.client.vaults.get(box), 200)["name"]
    lines = ok(as_owner("vault", "list")).out.splitlines()
    assert "ID" in lines[0].split() and "NAME" in lines[0].split(), lines[0]
    assert any(box in line.split() and name in line.split() for line in lines[1:]), lines
    data = json.loads(ok(as_owner("vault", "list", "--json")).out)
    assert set(data) == {"vaults"}
    assert data == owner.http.get("/v1/vaults").json()


def test_vault_get_plain_and_json(as_owner: Cli, owner, box: str) -> None:
    record = assert_sdk_ok(owner.client.vaults.get(box), 200)
    plain = ok(as_owner("vault", "get", box)).out
    assert box in plain and record["name"] in plain
    assert json.loads(ok(as_owner("vault", "get", box, "--json")).out) == record


def test_vault_get_of_an_unknown_vault_is_the_servers_detail(as_owner: Cli, owner) -> None:
    missing = str(uuid.uuid4())
    detail = owner.http.get(f"/v1/vaults/{missing}").json()["detail"]
    failed(as_owner("vault", "get", missing), detail)


def test_vault_delete_without_yes_refuses_without_a_terminal(as_owner: Cli, owner, box: str) -> None:
    failed(as_owner("vault", "delete", box))
    failed(as_owner("vault", "delete", box, input="y\nyes\n"))
    assert owner.client.vaults.get(box).meta.status == 200


def test_vault_delete_with_yes(as_owner: Cli, owner, box: str) -> None:
    ok(as_owner("vault", "delete", box, "--yes"))
    assert owner.client.vaults.get(box).meta.status == 404


def test_vault_use_saves_the_default_vault(cli: Cli, owner, box: str) -> None:
    cli.env["KEYHOLD_TOKEN"] = owner.token
    ok(cli("vault", "use", box))
    assert mode(cli.config_file) == 0o600
    assert mode(cli.config_dir) == 0o700
    ok(cli("secret", "set", "used/default", "--value", "saved-vault-value"))
    assert stored(owner, box, "used/default")["value"] == "saved-vault-value"


def test_vault_option_beats_environment_beats_saved_vault(cli: Cli, owner) -> None:
    saved, from_env, from_option, from_oneclaw = (
        assert_sdk_ok(owner.client.vaults.create(f"cli-{i}-{uuid.uuid4().hex[:8]}"), 201)["id"] for i in range(4))
    cli.env["KEYHOLD_TOKEN"] = owner.token
    ok(cli("vault", "use", saved))
    ok(cli("secret", "set", "which/vault", "--value", "by-option", "--vault", from_option,
           env={"KEYHOLD_VAULT": from_env}))
    ok(cli("secret", "set", "which/vault", "--value", "by-env", env={"KEYHOLD_VAULT": from_env}))
    ok(cli("secret", "set", "which/vault", "--value", "by-oneclaw", env={"ONECLAW_VAULT_ID": from_oneclaw}))
    ok(cli("secret", "set", "which/vault", "--value", "by-saved"))
    found = {v: {s["path"] for s in assert_sdk_ok(owner.client.secrets.list(v), 200)["secrets"]}
             for v in (saved, from_env, from_option, from_oneclaw)}
    assert all(paths == {"which/vault"} for paths in found.values()), found
    assert stored(owner, from_option, "which/vault")["value"] == "by-option"
    assert stored(owner, from_env, "which/vault")["value"] == "by-env"
    assert stored(owner, from_oneclaw, "which/vault")["value"] == "by-oneclaw"
    assert stored(owner, saved, "which/vault")["value"] == "by-saved"


def test_missing_vault_is_an_error(cli: Cli, owner) -> None:
    cli.env["KEYHOLD_TOKEN"] = owner.token
    failed(cli("secret", "list"))
    failed(cli("secret", "set", "no/vault", "--value", "x-value"))


def test_run_without_a_vault_is_an_error(cli: Cli, owner, tmp_path: Path) -> None:
    # run lists the vault's secrets, so it is one of the commands that need a vault.
    cli.env["KEYHOLD_TOKEN"] = owner.token
    marker = tmp_path / "ran"
    failed(cli("run", "--", "touch", str(marker)))
    assert not marker.exists()


def test_run_with_bad_credentials_does_not_start_the_child(as_owner: Cli, owner, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bogus = owner.token[:-8] + "AAAAAAAA"
    result = as_owner("run", "--", "touch", str(marker), env={"KEYHOLD_TOKEN": bogus})
    failed(result)
    assert bogus not in result.err
    assert not marker.exists()


def test_run_with_an_unresolvable_reference_does_not_start_the_child(as_owner: Cli, box: str,
                                                                     tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    failed(as_owner("run", "--", "touch", str(marker), env={"DANGLING": f"keyhold://{box}/no/such/secret"}))
    assert not marker.exists()


def test_run_with_a_missing_env_file_is_an_error(as_owner: Cli, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    failed(as_owner("run", "--env-file", str(tmp_path / "absent.env"), "--", "touch", str(marker)))
    assert not marker.exists()


# --- secret set / get -----------------------------------------------------------------------------------------

STDIN_CASES = {
    "newline_dropped": ("{v}\n", "{v}"),
    "no_newline": ("{v}", "{v}"),
    "only_one_newline_dropped": ("{v}\n\n", "{v}\n"),
    "multi_line": ("line-1 {v}\nline-2\n", "line-1 {v}\nline-2"),
}


@pytest.mark.parametrize("case", sorted(STDIN_CASES))
def test_secret_set_reads_the_value_from_stdin(as_owner: Cli, owner, box: str, canary, case: str) -> None:
    value = canary()
    given, expected = (s.format(v=value) for s in STDIN_CASES[case])
    result = ok(as_owner("secret", "set", "from/stdin", input=given))
    assert value not in result.out + result.err
    assert any("from/stdin" in line and "version 1" in line for line in result.out.splitlines()), str(result)
    assert stored(owner, box, "from/stdin")["value"] == expected


def test_secret_set_prints_the_new_version(as_owner: Cli, put, canary) -> None:
    put("twice/set", canary())
    result = ok(as_owner("secret", "set", "twice/set", input=canary()))
    assert any("twice/set" in line and "version 2" in line for line in result.out.splitlines()), str(result)


def test_secret_set_value_option_and_type(as_owner: Cli, owner, box: str, canary) -> None:
    value = canary()
    ok(as_owner("secret", "set", "by/option", "--value", value, "--type", "password"))
    data = stored(owner, box, "by/option")
    assert (data["value"], data["type"]) == (value, "password")


def test_secret_set_expiry_and_max_access_count(as_owner: Cli, owner, box: str, canary) -> None:
    expires = rfc3339(now_utc() + dt.timedelta(days=3))
    ok(as_owner("secret", "set", "limited/one", "--expires-at", expires, "--max-access-count", "2",
                input=canary()))
    meta = listing(owner, box)["limited/one"]
    assert parse_ts(meta["expires_at"]) == parse_ts(expires)
    assert meta["max_access_count"] == 2


def test_secret_set_json_is_the_servers_object(as_owner: Cli, owner, box: str, canary) -> None:
    value = canary()
    data = json.loads(ok(as_owner("secret", "set", "as/json", "--json", input=value)).out)
    assert value not in json.dumps(data)
    assert (data["path"], data["version"]) == ("as/json", 1)
    assert data["id"] == listing(owner, box)["as/json"]["id"]


def test_secret_get_prints_labelled_lines(as_owner: Cli, put, canary) -> None:
    value = canary()
    put("plain/get", value, type="api_key")
    fields = {}
    for line in ok(as_owner("secret", "get", "plain/get")).out.splitlines():
        key, sep, rest = line.partition(":")
        if sep:
            fields[key.strip()] = rest.strip()
    assert {k: fields.get(k) for k in ("path", "type", "version", "value")} == {
        "path": "plain/get", "type": "api_key", "version": "1", "value": value}


def test_secret_get_quiet_prints_the_bare_value(as_owner: Cli, put, canary) -> None:
    value = canary()
    put("quiet/get", value)
    result = ok(as_owner("secret", "get", "quiet/get", "--quiet"))
    assert result.out == value + "\n"


def test_secret_get_json_is_the_servers_object(as_owner: Cli, put, canary) -> None:
    value = canary()
    put("json/get", value, type="password")
    data = json.loads(ok(as_owner("secret", "get", "json/get", "--json")).out)
    assert (data["path"], data["type"], data["version"], data["value"]) == ("json/get", "password", 1, value)


def test_secret_get_version(as_owner: Cli, put, canary) -> None:
    first, second = canary(), canary()
    put("two/versions", first)
    put("two/versions", second)
    assert ok(as_owner("secret", "get", "two/versions", "--version", "1", "--quiet")).out == first + "\n"
    assert ok(as_owner("secret", "get", "two/versions", "--version", "2", "--quiet")).out == second + "\n"
    assert json.loads(ok(as_owner("secret", "get", "two/versions", "--version", "1", "--json")).out)["version"] == 1


def test_secret_get_of_a_missing_path_is_the_servers_detail(as_owner: Cli, owner, box: str) -> None:
    detail = owner.http.get(f"/v1/vaults/{box}/secrets/no/such/path").json()["detail"]
    failed(as_owner("secret", "get", "no/such/path"), detail)


def test_denied_path_is_one_line_with_the_servers_detail(cli: Cli, server, owner, box: str, make_agent, put,
                                                       canary) -> None:
    agent = make_agent(owner)
    grant_read(owner, box, agent.id, "allowed/**")
    allowed, denied = canary(), canary()
    put("allowed/one", allowed)
    put("private/one", denied)
    cli.env.update({"KEYHOLD_AGENT_ID": agent.id, "KEYHOLD_AGENT_API_KEY": agent.key, "KEYHOLD_VAULT": box})
    refused = httpx.get(f"{server.url}/v1/vaults/{box}/secrets/private/one",
                        headers=bearer(agent_token(server, agent)), timeout=30)
    assert refused.status_code == 403, refused.text
    result = cli("secret", "get", "private/one")
    failed(result, refused.json()["detail"])
    assert denied not in result.out + result.err
    assert ok(cli("secret", "get", "allowed/one", "--quiet")).out == allowed + "\n"
    listed = json.loads(ok(cli("secret", "list", "--json")).out)["secrets"]
    assert [s["path"] for s in listed] == ["allowed/one"]


def test_usage_error_is_argument_parsers_exit(as_owner: Cli) -> None:
    result = as_owner("secret", "get")
    assert result.code == USAGE_EXIT, str(result)


# --- secret list / describe / versions / rotate / delete ------------------------------------------------------


def test_secret_list_follows_cursors_to_the_end(cli: Cli, owner, box: str, put, proxy, canary) -> None:
    relay = proxy(page=7)
    cli.env.update({"KEYHOLD_TOKEN": owner.token, "KEYHOLD_VAULT": box})
    values = {}
    for i in range(30):
        path = f"many/item-{i:02d}"
        values[path] = canary()
        put(path, values[path], type="api_key")
    put("other/one", canary())
    result = ok(cli("secret", "list", "--prefix", "many/", "--url", relay.url))
    lines = result.out.splitlines()
    assert lines[0].split()[:3] == ["PATH", "TYPE", "VERSION"], lines[0]
    rows = [line.split() for line in lines[1:] if line.strip()]
    assert sorted(row[0] for row in rows) == sorted(values), rows
    assert all(row[1:3] == ["api_key", "1"] for row in rows), rows
    assert not any(v in result.out for v in values.values())
    # 31 paths in pages of 7 (whether the prefix is sent or applied on the client): at least 5 requests.
    pages = relay.exchanges("GET", rf"/v1/vaults/{box}/secrets")
    assert len(pages) >= 5, [x.sent_path for x in pages]

    data = json.loads(ok(cli("secret", "list", "--json", "--url", relay.url)).out)
    assert set(data) == {"secrets"}
    assert sorted(s["path"] for s in data["secrets"]) == sorted([*values, "other/one"])
    assert all("value" not in s for s in data["secrets"])


def test_secret_list_of_an_empty_vault(as_owner: Cli) -> None:
    assert json.loads(ok(as_owner("secret", "list", "--json")).out) == {"secrets": []}


def test_secret_describe_shows_metadata_and_counts_no_read(as_owner: Cli, owner, box: str, put, canary) -> None:
    value = canary()
    put("described/one", value, type="api_key")
    put("described/one", value + "-2", type="api_key")
    before = listing(owner, box)["described/one"]
    plain = ok(as_owner("secret", "describe", "described/one"))
    assert "described/one" in plain.out and "api_key" in plain.out, str(plain)
    assert any("version" in line and re.search(r"\b2\b", line) for line in plain.out.splitlines()), str(plain)
    described = json.loads(ok(as_owner("secret", "describe", "described/one", "--json")).out)
    assert "value" not in described
    assert (described["path"], described["type"], described["version"]) == ("described/one", "api_key", 2)
    assert value not in plain.out + plain.err + json.dumps(described)
    after = listing(owner, box)["described/one"]
    assert after["access_count"] == before["access_count"] == 0


def test_secret_versions(as_owner: Cli, owner, box: str, put, canary) -> None:
    for _ in range(3):
        put("versioned/one", canary())
    disabled = owner.http.post(f"/v1/vaults/{box}/secret-version-disable/versioned/one/2")
    assert disabled.status_code == 204, disabled.text
    server_versions = owner.http.get(f"/v1/vaults/{box}/secret-versions/versioned/one").json()["versions"]
    data = json.loads(ok(as_owner("secret", "versions", "versioned/one", "--json")).out)
    assert [v["version"] for v in data["versions"]] == [1, 2, 3]
    assert [v["is_disabled"] for v in data["versions"]] == [False, True, False]
    lines = {}
    for line in ok(as_owner("secret", "versions", "versioned/one")).out.splitlines():
        words = line.split()
        if words and words[0].isdigit():
            lines[int(words[0])] = line
    assert sorted(lines) == [1, 2, 3], lines
    for entry in server_versions:
        assert entry["created_at"] in lines[entry["version"]], (entry, lines)
    # The disabled flag: what is left of a line without its number and created_at is the same for versions 1
    # and 3 and differs for the disabled version 2.
    rest = {e["version"]: " ".join(lines[e["version"]].replace(e["created_at"], " ").split()[1:])
            for e in server_versions}
    assert rest[1] == rest[3] != rest[2], rest


def test_secret_rotate_prints_the_version_and_never_the_value(as_owner: Cli, owner, box: str, put,
                                                              canary) -> None:
    old = canary()
    put("rotated/one", old)
    result = ok(as_owner("secret", "rotate", "rotated/one", "--length", "40", "--charset", "hex"))
    data = stored(owner, box, "rotated/one")
    assert data["version"] == 2
    assert any("version" in line and re.search(r"\b2\b", line) for line in result.out.splitlines()), str(result)
    assert re.fullmatch(r"[0-9a-fA-F]{40}", data["value"]), data["value"]
    assert data["value"] not in result.out + result.err
    assert data["value"].lower() not in (result.out + result.err).lower()


def test_secret_delete(as_owner: Cli, owner, box: str, put, canary) -> None:
    put("deleted/one", canary())
    ok(as_owner("secret", "delete", "deleted/one"))
    gone = owner.http.get(f"/v1/vaults/{box}/secrets/deleted/one")
    assert gone.status_code == 410, gone.text
    failed(as_owner("secret", "get", "deleted/one"), gone.json()["detail"])


# --- env pull / push ------------------------------------------------------------------------------------------


@pytest.fixture
def env_secrets(put, canary) -> dict[str, str]:
    """Secrets of several kinds in ``box``; returns the variables they make (names as for ``run``)."""
    tricky = canary('db "quoted" \\back\\ \'single\' # hash\nsecond line ')
    foo, bar, key = canary("foo-"), canary("bar-"), canary("key-")
    put("app/db-url", tricky)
    put("config/env", f"# a comment\nFOO={foo}\n\nBAR={bar}\n", type="env_bundle")
    put("Api/Key", key, type="api_key")
    return {"APP_DB_URL": tricky, "FOO": foo, "BAR": bar, "API_KEY": key}


def parse_dotenv(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        match = re.fullmatch(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', line)
        assert match, f"not a KEY=\"value\" line: {line!r}"
        escapes = {"\\": "\\", '"': '"', "n": "\n"}
        assert all(e in escapes for e in re.findall(r"\\(.)", match.group(2))), f"unexpected escape in {line!r}"
        value = re.sub(r"\\(.)", lambda m: escapes[m.group(1)], match.group(2))
        out[match.group(1)] = value
    return out


def source_shell(path: Path, names: list[str]) -> dict[str, str]:
    """What ``sh`` makes of an ``export KEY='value'`` file: the values of ``names`` after sourcing it."""
    script = '. "$1"; shift; exec "$@"'
    reader = [sys.executable, "-c", "import json, os, sys; print(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))"]
    proc = subprocess.run(["sh", "-c", script, "sh", str(path), *reader, *names], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, env={"PATH": os.environ["PATH"]})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_env_pull_json(as_owner: Cli, env_secrets: dict) -> None:
    assert json.loads(ok(as_owner("env", "pull", "-f", "json")).out) == env_secrets


def test_env_pull_dotenv_is_the_default(as_owner: Cli, env_secrets: dict) -> None:
    default = ok(as_owner("env", "pull")).out
    assert default == ok(as_owner("env", "pull", "-f", "dotenv")).out
    assert parse_dotenv(default) == env_secrets


def test_env_pull_shell(as_owner: Cli, env_secrets: dict, tmp_path: Path) -> None:
    text = ok(as_owner("env", "pull", "-f", "shell")).out
    assert text.startswith("export ")
    script = tmp_path / "pulled.sh"
    script.write_text(text)
    assert source_shell(script, sorted(env_secrets)) == env_secrets


def test_env_pull_prefix(as_owner: Cli, env_secrets: dict) -> None:
    assert json.loads(ok(as_owner("env", "pull", "--prefix", "app/", "-f", "json")).out) == {
        "APP_DB_URL": env_secrets["APP_DB_URL"]}


def test_env_pull_to_a_private_file(as_owner: Cli, env_secrets: dict, tmp_path: Path) -> None:
    target = tmp_path / "pulled.json"
    result = ok(as_owner("env", "pull", "-f", "json", "-o", str(target)))
    assert not any(v in result.out + result.err for v in env_secrets.values())
    assert mode(target) == 0o600
    assert json.loads(target.read_text()) == env_secrets


def test_env_pull_over_an_existing_file_leaves_it_private(as_owner: Cli, env_secrets: dict,
                                                         tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("OLD=1\n")
    target.chmod(0o644)
    ok(as_owner("env", "pull", "-o", str(target)))
    assert mode(target) == 0o600
    assert parse_dotenv(target.read_text()) == env_secrets


@pytest.mark.parametrize("where", [None, "deploy/prod-env"])
def test_env_push_stores_an_env_bundle(as_owner: Cli, owner, box: str, canary, tmp_path: Path,
                                       where: str | None) -> None:
    content = f"# pushed\nALPHA={canary()}\n\nBETA={canary()}\n"
    source = tmp_path / "push.env"
    source.write_text(content)
    result = ok(as_owner("env", "push", str(source), *(["-p", where] if where else [])))
    assert not any(line.split("=", 1)[-1] in result.out + result.err
                   for line in content.splitlines() if "=" in line)
    data = stored(owner, box, where or "config/env")
    assert (data["type"], data["value"]) == ("env_bundle", content)
    alpha, beta = (line.split("=", 1)[1] for line in content.splitlines() if "=" in line)
    assert json.loads(ok(as_owner("env", "pull", "-f", "json")).out) == {"ALPHA": alpha, "BETA": beta}


# --- run: what the child gets ---------------------------------------------------------------------------------


def run_env(cli: Cli, *options: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment under ``keyhold run OPTIONS -- DUMP_ENV``."""
    target = cli.root / f"env-{uuid.uuid4().hex[:8]}.json"
    ok(cli("run", *options, "--", *DUMP_ENV, str(target), env=env))
    return json.loads(target.read_text())


@pytest.fixture
def run_secrets(put, canary) -> dict[str, str]:
    values = {"A_B_C": canary("abc-"), "X_Y_Z": canary("xyz-"), "FOO": canary("foo-"), "BAR": canary("bar-"),
              "MIXED_CASE_1": canary("mixed-")}
    put("a/b-c", values["A_B_C"])
    put("x/y_z", values["X_Y_Z"], type="api_key")
    put("Mixed/case-1", values["MIXED_CASE_1"], type="password")
    put("config/env", f"FOO={values['FOO']}\n# COMMENTED={canary()}\n\nBAR={values['BAR']}\n", type="env_bundle")
    return values


def test_run_injects_secrets_under_their_names(as_owner: Cli, run_secrets: dict) -> None:
    child = run_env(as_owner, env={"PARENT_ONLY": "kept", "A_B_C": "parent-loses"})
    for name, value in run_secrets.items():
        assert child.get(name) == value, name
    assert "COMMENTED" not in child
    assert child["PARENT_ONLY"] == "kept"
    # No value is left on disk by the CLI (the config folder and HOME).
    for path in files_under(as_owner.config_home) + files_under(as_owner.home):
        assert not any(v.encode() in path.read_bytes() for v in run_secrets.values()), path


def test_run_never_overwrites_reserved_names(as_owner: Cli, put, canary, box: str, tmp_path: Path) -> None:
    libdir = tmp_path / "lib"
    libdir.mkdir()
    parent = {"PWD": str(as_owner.root), "LANG": "C.UTF-8", "USER": "cli-test", "LOGNAME": "cli-test", "SHELL": "/bin/sh",
              "TMPDIR": str(tmp_path), "TERM": "dumb", "LD_LIBRARY_PATH": str(libdir),
              "ONECLAW_VAULT_ID": box, "KEYHOLD_EXTRA": "parent"}
    for path in ("home", "path", "lang", "user", "logname", "shell", "tmpdir", "term", "ld/library-path",
                 "keyhold/url", "keyhold/token", "keyhold-extra", "oneclaw/vault-id"):
        put(path, canary("/evil-"))
    put("config/env", f"PWD=/evil-{uuid.uuid4().hex}\nSHELL=/evil/sh\nLANG=evil\nSAFE_ONE=fine\n", type="env_bundle")
    env = as_owner.environ(parent)
    child = run_env(as_owner, env=parent)
    for name in ("HOME", "PATH", *parent, "KEYHOLD_URL", "KEYHOLD_TOKEN", "KEYHOLD_VAULT"):
        assert child.get(name) == env[name], name
    assert child["SAFE_ONE"] == "fine"


def test_run_only_keeps_the_named_variables(as_owner: Cli, run_secrets: dict) -> None:
    child = run_env(as_owner, "--only", "A_B_C,FOO")
    assert (child.get("A_B_C"), child.get("FOO")) == (run_secrets["A_B_C"], run_secrets["FOO"])
    assert not {"BAR", "X_Y_Z", "MIXED_CASE_1"} & set(child)


def test_run_prefix_limits_the_paths(as_owner: Cli, run_secrets: dict) -> None:
    child = run_env(as_owner, "--prefix", "a/")
    assert child.get("A_B_C") == run_secrets["A_B_C"]
    assert not {"BAR", "FOO", "X_Y_Z", "MIXED_CASE_1"} & set(child)


def test_run_environment_injects_the_resolved_variables_instead_of_secrets(
    as_owner: Cli, owner, box: str, put, canary
) -> None:
    secret, prod, dev, branch, shared = (canary(p) for p in ("secret-", "prod-", "dev-", "branch-", "shared-"))
    put("not/injected", secret)
    env = owner.client.env_vars
    assert_sdk_ok(env.create(box, "API_URL", prod, environments=["production"]), 201)
    assert_sdk_ok(env.create(box, "API_URL", dev, environments=["development", "preview"]), 201)
    assert_sdk_ok(env.create(box, "API_URL", branch, git_branch="feature/x"), 201)
    made = owner.http.post("/v1/org/env-vars", json={"key": "REGION", "value": shared})
    assert made.status_code == 201, made.text
    assert owner.http.post(f"/v1/org/env-vars/{made.json()['id']}/link", json={"vault_id": box}).status_code == 201

    child = run_env(as_owner, "--environment", "production")
    assert (child.get("API_URL"), child.get("REGION")) == (prod, shared)
    assert "NOT_INJECTED" not in child, "--environment injects variables, not the vault's secrets"
    assert run_env(as_owner, "--environment", "development")["API_URL"] == dev
    assert run_env(as_owner, "--environment", "preview", "--git-branch", "feature/x")["API_URL"] == branch
    assert set(run_env(as_owner, "--environment", "production", "--only", "REGION")) & {"API_URL", "REGION"} == {"REGION"}
    # Injected values are masked in the child's output like secrets.
    shown = ok(as_owner("run", "--environment", "production", "--", "sh", "-c", "echo $API_URL"))
    assert prod not in shown.out and "<redacted:API_URL>" in shown.out
    # A person must name a known environment; nothing starts otherwise.
    failed(as_owner("run", "--environment", "staging", "--", "true"), "The vault has no environment 'staging' (HTTP 400)")
    failed(as_owner("run", "--environment", "production", "--prefix", "a/", "--", "true"), "--prefix is for secrets")
    failed(as_owner("run", "--git-branch", "main", "--", "true"), "--git-branch needs --environment")


def test_run_vault_option(cli: Cli, owner, box: str, put, canary) -> None:
    value = canary()
    put("only/here", value)
    cli.env["KEYHOLD_TOKEN"] = owner.token
    assert run_env(cli, "--vault", box).get("ONLY_HERE") == value


def test_run_resolves_references_in_the_environment_and_the_env_file(as_owner: Cli, owner, box: str, put,
                                                                      canary, tmp_path: Path) -> None:
    elsewhere = assert_sdk_ok(owner.client.vaults.create(f"cli-ref-{uuid.uuid4().hex[:8]}"), 201)["id"]
    in_env, in_file = canary("ref-env-"), canary("ref-file-")
    put("deep/ref-env", in_env, vault=elsewhere)
    put("file/ref", in_file)
    env_file = tmp_path / "refs.env"
    env_file.write_text(f"# comment\nFROM_FILE=keyhold://{box}/file/ref\nPLAIN_FILE=plain-value\n")
    child = run_env(as_owner, "--env-file", str(env_file),
                    env={"FROM_PARENT": f"keyhold://{elsewhere}/deep/ref-env", "UNRELATED": "keyhold-free"})
    assert child.get("FROM_PARENT") == in_env
    assert child.get("FROM_FILE") == in_file
    assert child.get("PLAIN_FILE") == "plain-value"
    assert child.get("UNRELATED") == "keyhold-free"


# --- run: exit codes, signals, stdin --------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 7, 42])
def test_run_returns_the_childs_exit_code(as_owner: Cli, code: int) -> None:
    result = as_owner("run", "--", "sh", "-c", f"exit {code}")
    assert result.code == code, str(result)


@pytest.mark.parametrize("sig,code", [("TERM", 143), ("KILL", 137), ("INT", 130)])
def test_run_reports_death_by_signal_as_128_plus_n(as_owner: Cli, sig: str, code: int) -> None:
    result = as_owner("run", "--", "sh", "-c", f"kill -{sig} $$")
    assert result.code == code, str(result)


TRAP_CHILD = 'trap \'echo "$3" > "$2"; exit 0\' "$3"; : > "$1"; while :; do sleep 0.1; done'


@pytest.mark.parametrize("sig", ["TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "WINCH"])
def test_run_forwards_signals_to_the_child(as_owner: Cli, tmp_path: Path, sig: str) -> None:
    ready, marker = tmp_path / "ready", tmp_path / "marker"
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        proc = as_owner.popen("run", "--", "sh", "-c", TRAP_CHILD, "sh", str(ready), str(marker), sig,
                              stdout=out, stderr=err)
        try:
            wait_for(lambda: ready.exists() or proc.poll() is not None, "the child's ready file")
            assert proc.poll() is None, (proc.returncode, (tmp_path / "err").read_text())
            proc.send_signal(getattr(signal, f"SIG{sig}"))
            code = proc.wait(timeout=POLL_TIMEOUT)
        finally:
            _kill_group(proc)
            proc.wait(timeout=POLL_TIMEOUT)
    assert marker.exists(), f"the child did not get SIG{sig}; keyhold exited {proc.returncode}"
    assert marker.read_text().strip() == sig
    assert code == 0, (code, (tmp_path / "err").read_text())


@pytest.mark.parametrize("round", range(5))
def test_run_forwards_a_signal_sent_the_moment_the_child_starts(as_owner: Cli, tmp_path: Path, round: int) -> None:
    """The child signals keyhold before doing anything else: keyhold's forwarding is in place before it starts (a
    signal that keyhold ignores and does not yet forward would be lost, and keyhold would wait for ever)."""
    marker = tmp_path / "marker"
    script = 'trap \'echo INT > "$1"; exit 0\' INT; kill -INT $PPID; while :; do sleep 0.1; done'
    with open(tmp_path / "err", "wb") as err:
        proc = as_owner.popen("run", "--", "sh", "-c", script, "sh", str(marker), stdout=subprocess.DEVNULL,
                              stderr=err)
        try:
            code = proc.wait(timeout=POLL_TIMEOUT)
        finally:
            _kill_group(proc)
            proc.wait(timeout=POLL_TIMEOUT)
    assert marker.read_text().strip() == "INT", (tmp_path / "err").read_text()
    assert code == 0, (code, (tmp_path / "err").read_text())


def test_run_passes_stdin_through(as_owner: Cli) -> None:
    result = ok(as_owner("run", "--", "cat", input="first line\nsecond line\n"))
    assert result.out == "first line\nsecond line\n"


def test_run_returns_the_exit_code_when_the_child_does_not_read_stdin(as_owner: Cli) -> None:
    result = as_owner("run", "--", "sh", "-c", "exit 3", input=b"unread line\n" * 400000)
    assert result.code == 3, str(result)


def test_run_passes_a_large_stream_through_unchanged(as_owner: Cli, put, canary) -> None:
    put("some/secret", canary())
    data = b"".join(b"%07d the quick brown fox jumps over the lazy dog\n" % i for i in range(40000))
    result = ok(as_owner("run", "--", "cat", input=data))
    assert_same(result.stdout, data)


# --- run: masking ---------------------------------------------------------------------------------------------


@pytest.fixture
def mask_value(canary) -> str:
    """A canary whose base64 is padded and holds ``+`` or ``/`` (so that base64url differs) and whose
    URL-encoded form differs from the value."""
    for _ in range(1000):
        value = canary("MASK ?/é+-")
        b64 = base64.b64encode(value.encode()).decode()
        if b64.endswith("=") and ("+" in b64 or "/" in b64):
            return value
    raise AssertionError("no canary with a padded base64 holding + or / in 1000 tries")


def encoded_forms(value: str) -> dict[str, str]:
    raw = value.encode()
    forms = {
        "value": value,
        "base64": base64.b64encode(raw).decode(),
        "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "hex_lower": raw.hex(),
        "hex_upper": raw.hex().upper(),
        "url_encoded": quote(value, safe=""),
    }
    assert len(set(forms.values())) == len(forms), forms
    return forms


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
@pytest.mark.parametrize("form", ["value", "base64", "base64url", "hex_lower", "hex_upper", "url_encoded"])
def test_run_masks_the_value_and_its_encodings(as_owner: Cli, put, mask_value: str, form: str,
                                               stream: str) -> None:
    put("mask/token", mask_value)
    shown = encoded_forms(mask_value)[form]
    other = "stderr" if stream == "stdout" else "stdout"
    script = f'printf "before %s after\\n" "$1" >&{1 if stream == "stdout" else 2}; ' \
             f'printf "plain {other}\\n" >&{2 if stream == "stdout" else 1}'
    result = ok(as_owner("run", "--", "sh", "-c", script, "sh", shown))
    outputs = {"stdout": result.out, "stderr": result.err}
    assert outputs[stream] == f"before {redacted('MASK_TOKEN')} after\n", str(result)
    # Kept apart: the other stream has its own line and nothing of this one.
    assert f"plain {other}\n" in outputs[other], str(result)
    assert "before" not in outputs[other] and "redacted" not in outputs[other], str(result)


def test_run_masks_bundle_and_referenced_values_under_their_names(as_owner: Cli, owner, put, canary) -> None:
    from_bundle, referenced = canary("bundled-"), canary("referenced-")
    elsewhere = assert_sdk_ok(owner.client.vaults.create(f"cli-ref-{uuid.uuid4().hex[:8]}"), 201)["id"]
    put("config/env", f"BUNDLED={from_bundle}\n", type="env_bundle")
    put("ref/target", referenced, vault=elsewhere)
    result = ok(as_owner("run", "--", "sh", "-c", 'printf "%s %s\\n" "$BUNDLED" "$POINTER"',
                         env={"POINTER": f"keyhold://{elsewhere}/ref/target"}))
    assert result.out == f"{redacted('BUNDLED')} {redacted('POINTER')}\n", str(result)


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_run_masks_a_value_split_across_two_writes(as_owner: Cli, put, canary, stream: str) -> None:
    value = canary("SPLIT-")
    put("split/value", value)
    half = len(value) // 2
    fd = 1 if stream == "stdout" else 2
    script = f'printf "start %s" "$1" >&{fd}; sleep 1; printf "%s end\\n" "$2" >&{fd}'
    result = ok(as_owner("run", "--", "sh", "-c", script, "sh", value[:half], value[half:]))
    shown = result.out if stream == "stdout" else result.err
    assert shown == f"start {redacted('SPLIT_VALUE')} end\n", str(result)


def test_run_masks_a_value_at_the_end_of_output_without_a_newline(as_owner: Cli, put, canary) -> None:
    value = canary("TAIL-")
    put("tail/value", value)
    result = ok(as_owner("run", "--", "sh", "-c", 'printf "end: %s" "$TAIL_VALUE"'))
    assert result.out == f"end: {redacted('TAIL_VALUE')}", str(result)


def test_run_masks_a_multi_line_value(as_owner: Cli, put, canary) -> None:
    value = canary("-----BEGIN KEY-----\nline-two-") + "\n-----END KEY-----"
    put("multi/line", value, type="private_key")
    result = ok(as_owner("run", "--", "sh", "-c", 'printf "key=%s;\\n" "$MULTI_LINE"'))
    assert result.out == f"key={redacted('MULTI_LINE')};\n", str(result)


def test_run_masks_every_occurrence_in_a_large_write(as_owner: Cli, put, canary) -> None:
    # Occurrences at every offset modulo 64 across 1.5 MB, so that some straddle whatever chunk size the CLI
    # reads the pipe with.
    value = canary("BULK-")
    put("bulk/value", value)
    writer = ("import os, sys\n"
              "v = os.environ['BULK_VALUE'].encode()\n"
              "sys.stdout.buffer.write(b''.join(b'x' * (i % 64) + v + b'\\n' for i in range(20000)))\n")
    result = ok(as_owner("run", "--", sys.executable, "-c", writer))
    expected = "".join("x" * (i % 64) + redacted("BULK_VALUE") + "\n" for i in range(20000))
    assert_same(result.out, expected)


def read_line(fd: int, timeout: float = POLL_TIMEOUT) -> bytes:
    """Bytes from ``fd`` up to the first newline, failing after ``timeout`` seconds."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"no complete line within {timeout:.0f}s (got {data!r})")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                pytest.fail(f"end of stream before a complete line (got {data!r})")
            data += chunk
    return data


@pytest.mark.parametrize("masked", [False, True], ids=["plain_line", "line_with_a_secret"])
def test_run_streams_a_line_before_the_child_exits(as_owner: Cli, put, canary, tmp_path: Path,
                                                   masked: bool) -> None:
    value = canary("STREAM-")
    put("stream/value", value)
    go = tmp_path / "go"
    script = 'printf "first %s\\n" "$1"; while [ ! -e "$2" ]; do sleep 0.05; done; printf "second\\n"'
    proc = as_owner.popen("run", "--", "sh", "-c", script, "sh", value if masked else "line", str(go))
    try:
        first = read_line(proc.stdout.fileno())
        assert proc.poll() is None
        expected = f"first {redacted('STREAM_VALUE') if masked else 'line'}\n"
        assert first.decode() == expected
        go.touch()
        rest, err = proc.communicate(timeout=CLI_TIMEOUT)
    finally:
        _kill_group(proc)
        proc.wait(timeout=POLL_TIMEOUT)
    assert proc.returncode == 0, err
    assert rest == b"second\n"


def test_run_no_masking_shows_the_value(as_owner: Cli, put, canary) -> None:
    value = canary("SHOWN-")
    put("shown/value", value)
    result = ok(as_owner("run", "--no-masking", "--", "sh", "-c", 'printf "%s\\n" "$SHOWN_VALUE"'))
    assert result.out == value + "\n"


def test_run_does_not_mask_values_shorter_than_four_bytes(as_owner: Cli, put) -> None:
    put("tiny", "q7z")
    put("four", "w4x9")
    result = ok(as_owner("run", "--", "sh", "-c", 'printf "a %s b %s c\\n" "$TINY" "$FOUR"'))
    assert result.out == f"a q7z b {redacted('FOUR')} c\n", str(result)
    lines = result.err.splitlines()
    assert len(lines) == 1, str(result)
    assert "q7z" not in result.err


# ---------------------------------------------------------------------------
# run --watch and --fallback
# ---------------------------------------------------------------------------


def test_run_watch_restarts_only_when_an_injected_value_changes(
    as_owner: Cli, owner, box: str, put, canary, tmp_path: Path
) -> None:
    first, second = canary("WATCH-A-"), canary("WATCH-B-")
    put("app/token", first)
    starts = tmp_path / "starts"
    script = (f'printf "%s\\n" "$APP_TOKEN" >> {starts}; '
              'trap "exit 0" TERM; while true; do sleep 0.1; done')

    def polls() -> int:
        """The watcher's checks so far: each lists the vault, which the server records as `secret.list`."""
        resp = owner.http.get("/v1/audit/events", params={"action": "secret.list", "resource_id": box, "limit": 1000})
        assert resp.status_code == 200, resp.text
        return len(resp.json()["events"])

    proc = as_owner.popen("run", "--watch", "--interval", "1", "--grace-period", "5", "--", "sh", "-c", script)
    try:
        wait_for(lambda: starts.exists() and starts.read_text().count("\n") == 1, "the first start")
        # A new version with the same value: two checks later the command still runs its first start.
        put("app/token", first)
        seen = polls()
        wait_for(lambda: polls() >= seen + 2, "two more checks")
        assert starts.read_text().splitlines() == [first]
        put("app/token", second)
        wait_for(lambda: starts.read_text().splitlines()[-1] == second, "the restart with the new value")
        assert starts.read_text().splitlines() == [first, second]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=CLI_TIMEOUT)
    assert proc.returncode == 0, (out, err)
    assert first.encode() not in out + err and second.encode() not in out + err
    assert err.decode().count("a secret changed; restarting the command") == 1, err


def test_run_fallback_serves_the_last_values_when_the_server_is_unreachable(
    as_owner: Cli, put, canary, tmp_path: Path
) -> None:
    value = canary("FALLBACK-")
    put("app/token", value)
    cache = tmp_path / "cache.json"
    ok(as_owner("run", "--fallback", str(cache), "--", "sh", "-c", "true"))
    assert mode(cache) == 0o600
    assert value.encode() not in cache.read_bytes()
    offline = closed_port_url()
    result = as_owner("run", "--fallback", str(cache), "--", "sh", "-c", 'printf "%s" "$APP_TOKEN" > got',
                      env={"KEYHOLD_URL": offline})
    assert result.code == 0, str(result)
    assert (as_owner.root / "got").read_text() == value
    assert "using the fallback cache" in result.err
    # Without the cache, or with another credential, an unreachable server is an error and the command never runs.
    failed(as_owner("run", "--", "sh", "-c", "touch ran", env={"KEYHOLD_URL": offline}))
    failed(as_owner("run", "--fallback", str(cache), "--", "sh", "-c", "touch ran",
                    env={"KEYHOLD_URL": offline, "KEYHOLD_TOKEN": "another-credential"}))
    assert not (as_owner.root / "ran").exists()


def test_run_gives_a_child_a_terminal_of_its_own_when_stdout_is_one(as_owner: Cli, put, canary) -> None:
    import pty

    value = canary("PTY-")
    put("app/token", value)
    master, slave = pty.openpty()
    script = ('if [ -t 0 ] && [ -t 1 ] && [ -t 2 ]; then echo on-a-terminal; fi; '
              'printf "%s\\n" "$APP_TOKEN"; printf "\\033[31mred\\033[0m\\n"; read line; echo "typed:$line"')
    proc = as_owner.popen("run", "--", "sh", "-c", script, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    output = b""
    try:
        os.write(master, b"hello\n")
        while True:
            ready, _, _ = select.select([master], [], [], CLI_TIMEOUT)
            assert ready, f"no output from keyhold run within {CLI_TIMEOUT}s: {output!r}"
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every holder of the terminal's other side has closed it
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(master)
        code = proc.wait(timeout=CLI_TIMEOUT)
    assert code == 0, output
    assert b"on-a-terminal" in output, output
    assert value.encode() not in output
    assert redacted("APP_TOKEN").encode() in output, output
    assert b"\x1b[31mred\x1b[0m" in output, output
    assert b"typed:hello" in output, output
