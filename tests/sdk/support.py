"""Small helpers shared by the Keyhold SDK-level tests (no fixtures here)."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

import httpx

#: Password used for every test account. It satisfies the documented policy
#: (>= 12 chars, upper, lower, digit, special, no 3 repeated, no 3 sequential).
PASSWORD = "Correct-Horse-9-Battery!"

PROBLEM_JSON = "application/problem+json"

#: Secret types Keyhold must accept (union of spec and docs, contract §2.3).
SECRET_TYPES = [
    "generic",
    "password",
    "api_key",
    "private_key",
    "certificate",
    "file",
    "note",
    "ssh_key",
    "env",
    "env_bundle",
]


#: Shapes of the opaque credentials: a prefix and base64url(32 random bytes), no padding (contract §2.1).
OCV_KEY_RE = re.compile(r"ocv_[A-Za-z0-9_-]{43}")
USER_KEY_RE = re.compile(r"1ck_[A-Za-z0-9_-]{43}")
REFRESH_TOKEN_RE = re.compile(r"rt_[A-Za-z0-9_-]+")
INVITE_TOKEN_RE = re.compile(r"inv_[A-Za-z0-9_-]+")


# ---------------------------------------------------------------------------
# JWT / base64 helpers
# ---------------------------------------------------------------------------


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64_decode_any(text: str) -> bytes:
    """Decode standard base64 with or without padding."""
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Split a compact JWS into (header, payload, signature, signing_input)."""
    parts = token.split(".")
    assert len(parts) == 3, f"JWT must have 3 dot-separated parts, got {len(parts)}"
    header = json.loads(b64url_decode(parts[0]))
    payload = json.loads(b64url_decode(parts[1]))
    signature = b64url_decode(parts[2])
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    return header, payload, signature, signing_input


def with_flipped_signature_byte(token: str, index: int = 10) -> str:
    """Return the token with one byte of the decoded signature XOR-ed.

    Flipping a base64url *character* is not enough: the last character of an
    Ed25519 signature carries padding bits, so a flip there may decode to the
    very same bytes.  We flip a decoded byte and re-encode.
    """
    head, body, sig = token.split(".")
    raw = bytearray(b64url_decode(sig))
    raw[index % len(raw)] ^= 0x01
    return f"{head}.{body}.{b64url_encode(bytes(raw))}"


# ---------------------------------------------------------------------------
# Misc value helpers
# ---------------------------------------------------------------------------


def is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def parse_ts(value: str) -> dt.datetime:
    """Parse an RFC 3339 timestamp (Z or offset) into an aware datetime."""
    assert isinstance(value, str), f"timestamp must be a string, got {value!r}"
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, f"timestamp {value!r} has no timezone"
    return parsed


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def random_like(credential: str) -> str:
    """A credential of the same prefix and shape whose random part is fresh (so: unknown to the server)."""
    prefix = credential.split("_", 1)[0] + "_"
    return prefix + b64url_encode(uuid.uuid4().bytes + uuid.uuid4().bytes)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# ---------------------------------------------------------------------------
# Problem+json assertion
# ---------------------------------------------------------------------------


def assert_problem(resp: httpx.Response, status: int | Iterable[int]) -> dict[str, Any]:
    """Assert an RFC 7807 error response and return its parsed body."""
    allowed = (status,) if isinstance(status, int) else tuple(status)
    assert resp.status_code in allowed, (
        f"expected status in {allowed}, got {resp.status_code}: {resp.text[:500]!r}"
    )
    ctype = resp.headers.get("content-type", "")
    assert ctype.split(";")[0].strip().lower() == PROBLEM_JSON, (
        f"error Content-Type must be {PROBLEM_JSON}, got {ctype!r}"
    )
    body = resp.json()
    assert isinstance(body, dict), f"problem body must be an object: {body!r}"
    for field in ("type", "title", "status", "detail"):
        assert field in body, f"problem body lacks {field!r}: {body!r}"
    assert body["status"] == resp.status_code, body
    assert isinstance(body["type"], str) and body["type"], body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str), body
    return body


def assert_sdk_error(resp: Any, status: int | Iterable[int]) -> None:
    """Assert that an SDK OneclawResponse carries an error with this status."""
    allowed = (status,) if isinstance(status, int) else tuple(status)
    assert resp.meta.status in allowed, (
        f"expected status in {allowed}, got {resp.meta.status} (data={resp.data!r}, error={resp.error!r})"
    )
    assert resp.error is not None
    assert resp.data is None


def assert_sdk_ok(resp: Any, status: int) -> Any:
    assert resp.meta.status == status, (
        f"expected {status}, got {resp.meta.status}: {resp.error!r}"
    )
    assert resp.error is None
    return resp.data


# ---------------------------------------------------------------------------
# Verbatim HTTP (no path normalisation)
# ---------------------------------------------------------------------------


def connection(parts: Any, **options: Any) -> http.client.HTTPConnection:
    """An http.client connection to the server of ``parts`` (a urlsplit result): over TLS for https (trusting the
    CAs that SSL_CERT_FILE names when the suite runs over TLS)."""
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return kind(parts.hostname, parts.port, **options)


def raw_request(
    base_url: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    json_body: Any = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> httpx.Response:
    """Send a request whose target is put on the wire exactly as given.

    httpx (like every URL library) removes ``.`` and ``..`` segments before
    sending, so it cannot express the dot-segment cases; the standard
    library's http.client sends the request target verbatim.
    """
    parts = urlsplit(base_url)
    conn = connection(parts, timeout=timeout)
    send_headers: dict[str, str] = {"Accept": "application/json"}
    if token is not None:
        send_headers.update(bearer(token))
    body: bytes | None = content
    if json_body is not None:
        body = json.dumps(json_body).encode("utf-8")
    if body is not None:
        send_headers["Content-Type"] = "application/json"
        send_headers["Content-Length"] = str(len(body))
    if headers:
        send_headers.update(headers)
    try:
        conn.request(method, path, body=body, headers=send_headers)
        resp = conn.getresponse()
        data = resp.read()
        return httpx.Response(
            resp.status,
            headers=resp.getheaders(),
            content=data,
            request=httpx.Request(method, base_url.rstrip("/") + "/"),
        )
    finally:
        conn.close()


def run_together(count: int, action: Callable[[int], Any]) -> list[Any]:
    """Run ``action(i)`` for i in 0..count-1 in ``count`` threads released at once; an exception in any is raised."""
    barrier = threading.Barrier(count)

    def task(i: int) -> Any:
        barrier.wait(timeout=30)
        return action(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(task, range(count)))


def refused_after_revoking_under_load(read_url: str, token: str, revoke, readers: int = 4, each: int = 20) -> None:
    """`readers` clients GET `read_url` with `token` as fast as they can. Once each has been answered 200 `each`
    times, `revoke()` takes access away and returns the status a refused read gets. Every request sent after
    `revoke()` returned must get that status, and each client sends `each` of them (whatever was in flight before
    may go either way and is not judged)."""
    revoked_at: list[float] = []
    ready = threading.Barrier(readers + 1)
    logs: list[list[tuple[float, int]]] = [[] for _ in range(readers)]

    def read(log: list[tuple[float, int]]) -> None:
        with httpx.Client(headers=bearer(token), timeout=30.0) as client:
            try:
                for _ in range(10 * each):  # bounded: a reader that is never let in fails the test, not hangs it
                    if sum(1 for _, status in log if status == 200) >= each:
                        break
                    log.append((time.monotonic(), client.get(read_url).status_code))
            finally:
                ready.wait()
            while sum(1 for sent, _ in log if revoked_at and sent > revoked_at[0]) < each:
                log.append((time.monotonic(), client.get(read_url).status_code))

    threads = [threading.Thread(target=read, args=(log,)) for log in logs]
    for thread in threads:
        thread.start()
    ready.wait()
    try:
        refusal = revoke()
    finally:
        revoked_at.append(time.monotonic())
    for thread in threads:
        thread.join()
    for log in logs:
        assert sum(1 for _, status in log if status == 200) >= each, log[:5]
        after = [status for sent, status in log if sent > revoked_at[0]]
        assert len(after) >= each and set(after) == {refusal}, after
