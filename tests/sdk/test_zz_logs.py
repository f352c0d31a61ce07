"""Runs last (module order is alphabetical): the server log leaks nothing.

Every secret value written through the ``canary`` fixture, every password,
every access token (user and agent), every opaque credential (``ocv_`` agent
keys, ``1ck_`` API keys, ``rt_`` refresh tokens, ``inv_`` invite tokens) handed
out during the session and every share passphrase is tracked in ``leak_watch``.
The same strings must not show up in any stored audit event either.
"""

from __future__ import annotations

import json

from support import b64url_decode

#: Characters of an opaque credential that a server may legitimately show (the
#: lookup prefix, e.g. ``key_prefix``); everything after them is secret.
PUBLIC_PREFIX_CHARS = 12


def _log_bytes(server) -> bytes:
    # Stop the server first so that any buffered output reaches the file,
    # then bring it back for whatever may run after this module.
    server.stop()
    try:
        return server.log_path.read_bytes()
    finally:
        server.start()


def test_log_has_no_secret_values_passwords_or_tokens(server, server_log, user, leak_watch) -> None:
    assert server_log == server.log_path
    log = _log_bytes(server)
    leaked_values = sorted(v for v in leak_watch.values if v.encode() in log)
    leaked_passwords = sorted(p for p in leak_watch.passwords if p.encode() in log)
    leaked_passphrases = sorted(p for p in leak_watch.passphrases if p.encode() in log)
    leaked_tokens = []
    for token in leak_watch.tokens:
        signature = token.rsplit(".", 1)[-1]
        if token.encode() in log or signature.encode() in log:
            leaked_tokens.append(token[:16] + "...")
    assert leaked_values == [], f"secret values in server log: {leaked_values[:5]}"
    assert leaked_passwords == [], "a password appears in the server log"
    assert leaked_passphrases == [], f"share passphrases in server log: {leaked_passphrases[:5]}"
    assert leaked_tokens == [], f"access tokens in server log: {leaked_tokens[:5]}"
    leaked_credentials = []
    for credential in leak_watch.credentials:
        secret_tail = credential[PUBLIC_PREFIX_CHARS:]
        if credential.encode() in log or (len(secret_tail) >= 16 and secret_tail.encode() in log):
            leaked_credentials.append(credential[:8] + "...")
    assert leaked_credentials == [], f"keys / refresh or invite tokens in server log: {leaked_credentials[:5]}"


def test_log_tracking_saw_the_suite(leak_watch, user) -> None:
    # Sanity check on the tracking itself: the session user's token and
    # password are always registered.
    assert user.token in leak_watch.tokens
    assert user.password in leak_watch.passwords
    assert len(b64url_decode(user.token.rsplit(".", 1)[-1])) == 64
    # Login hands out a refresh token, which conftest registers with the user.
    assert user.refresh_token in leak_watch.credentials


def test_audit_events_hold_no_secret_values_passwords_or_tokens(server, user, leak_watch) -> None:
    """Every stored event of every org (read straight from the database) after the whole suite."""
    rows = server.rows("SELECT * FROM audit_events")
    assert rows, "no audit events at all"
    text = json.dumps(rows)
    found = [f"value {v[:16]}..." for v in leak_watch.values if v in text]
    found += ["a password" for p in leak_watch.passwords if p in text]
    found += [f"passphrase {p[:14]}..." for p in leak_watch.passphrases if p in text]
    for token in leak_watch.tokens:
        if token in text or token.rsplit(".", 1)[-1] in text:
            found.append(f"token {token[:16]}...")
    for credential in leak_watch.credentials:
        tail = credential[PUBLIC_PREFIX_CHARS:]
        if credential in text or (len(tail) >= 16 and tail in text):
            found.append(f"credential {credential[:8]}...")
    assert found == [], f"secrets in stored audit events: {found[:5]}"
