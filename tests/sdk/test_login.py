"""POST /v1/auth/token, GET /v1/auth/me and Bearer validation (contract §1.1, §2.1)."""

from __future__ import annotations

import json
import re
import time
import uuid

import httpx
import oneclaw
import pytest

from support import (
    PASSWORD,
    assert_problem,
    assert_sdk_error,
    b64url_encode,
    bearer,
    decode_jwt,
    is_uuid,
    with_flipped_signature_byte,
)

WRONG_PASSWORD = "Wrong-Horse-9-Battery?"


@pytest.fixture(scope="module")
def login_body(anon: httpx.Client, user) -> dict:
    """One raw login response body for the session user."""
    resp = anon.post("/v1/auth/token", json={"email": user.email, "password": user.password})
    assert resp.status_code == 200, resp.text
    return resp.json()


# --- token response --------------------------------------------------------


def test_login_through_sdk_returns_200_and_token(base_url: str, user, leak_watch) -> None:
    client = oneclaw.create_client(base_url=base_url)
    try:
        resp = client.auth.login(user.email, user.password)
        assert resp.meta.status == 200, resp.error
        token = resp.data["access_token"]
        leak_watch.tokens.add(token)
        assert client._http.get_token() == token
    finally:
        client.close()


def test_login_access_token_has_three_parts(login_body: dict) -> None:
    parts = login_body["access_token"].split(".")
    assert len(parts) == 3 and all(parts), parts


def test_login_token_header_alg_is_eddsa(login_body: dict) -> None:
    header, _, _, _ = decode_jwt(login_body["access_token"])
    assert header["alg"] == "EdDSA", header


def test_login_token_type_is_bearer(login_body: dict) -> None:
    assert login_body["token_type"] == "Bearer"


def test_login_expires_in_is_900(login_body: dict) -> None:
    assert login_body["expires_in"] == 900


def test_login_token_sub_is_user_uuid(login_body: dict, user) -> None:
    _, payload, _, _ = decode_jwt(login_body["access_token"])
    sub = payload["sub"]
    assert sub.startswith("user:"), sub
    assert is_uuid(sub[len("user:") :]), sub
    assert uuid.UUID(sub[len("user:") :]) == uuid.UUID(user.user_id)


@pytest.mark.parametrize("claim", ["org", "iat", "exp", "jti"])
def test_login_token_has_required_claim(login_body: dict, claim: str) -> None:
    _, payload, _, _ = decode_jwt(login_body["access_token"])
    assert claim in payload, payload


def test_login_token_lifetime_matches_expires_in(login_body: dict) -> None:
    _, payload, _, _ = decode_jwt(login_body["access_token"])
    # RFC 7519 NumericDate: a JSON number (integer or not).
    assert isinstance(payload["iat"], (int, float)) and isinstance(payload["exp"], (int, float)), payload
    assert abs((payload["exp"] - payload["iat"]) - login_body["expires_in"]) < 1.0, payload
    assert abs(payload["iat"] - time.time()) < 300, payload


def test_login_tokens_have_distinct_jti(anon: httpx.Client, user, login_body: dict, leak_watch) -> None:
    again = anon.post("/v1/auth/token", json={"email": user.email, "password": user.password})
    assert again.status_code == 200, again.text
    leak_watch.tokens.add(again.json()["access_token"])
    _, first, _, _ = decode_jwt(login_body["access_token"])
    _, second, _, _ = decode_jwt(again.json()["access_token"])
    assert first["jti"] != second["jti"]


def test_login_response_does_not_echo_password(anon: httpx.Client, user, leak_watch) -> None:
    resp = anon.post("/v1/auth/token", json={"email": user.email, "password": user.password})
    assert resp.status_code == 200
    leak_watch.tokens.add(resp.json()["access_token"])
    assert user.password not in resp.text


# --- failed logins -----------------------------------------------------------


def test_login_wrong_password_is_401(sdk_anon, user, leak_watch) -> None:
    leak_watch.passwords.add(WRONG_PASSWORD)
    resp = sdk_anon.auth.login(user.email, WRONG_PASSWORD)
    assert_sdk_error(resp, 401)


def test_login_unknown_email_is_401(sdk_anon) -> None:
    resp = sdk_anon.auth.login(f"nobody-{uuid.uuid4().hex}@example.com", PASSWORD)
    assert_sdk_error(resp, 401)


def test_login_failures_are_indistinguishable(anon: httpx.Client, user, leak_watch) -> None:
    leak_watch.passwords.add(WRONG_PASSWORD)
    wrong_pw = anon.post("/v1/auth/token", json={"email": user.email, "password": WRONG_PASSWORD})
    unknown = anon.post(
        "/v1/auth/token",
        json={"email": f"nobody-{uuid.uuid4().hex}@example.com", "password": WRONG_PASSWORD},
    )
    a = assert_problem(wrong_pw, 401)
    b = assert_problem(unknown, 401)
    assert wrong_pw.status_code == unknown.status_code
    for field in ("type", "title", "detail"):
        assert a[field] == b[field], (field, a, b)


@pytest.mark.parametrize("missing", ["email", "password"])
def test_login_missing_field_is_400(anon: httpx.Client, user, missing: str) -> None:
    body = {"email": user.email, "password": user.password}
    del body[missing]
    assert_problem(anon.post("/v1/auth/token", json=body), 400)


# --- /v1/auth/me ---------------------------------------------------------------


def test_me_returns_profile(user) -> None:
    resp = user.client.auth.me()
    assert resp.meta.status == 200, resp.error
    me = resp.data
    assert uuid.UUID(me["id"]) == uuid.UUID(user.user_id)
    assert me["email"] == user.email
    assert is_uuid(me["org_id"]), me
    assert me["role"] == "owner"


def test_me_org_matches_token_org_claim(user) -> None:
    me = user.client.auth.me().data
    _, payload, _, _ = decode_jwt(user.token)
    assert uuid.UUID(str(payload["org"])) == uuid.UUID(me["org_id"])


def test_me_does_not_expose_password_hash(user) -> None:
    resp = user.http.get("/v1/auth/me")
    assert resp.status_code == 200
    text = resp.text
    assert user.password not in text
    assert re.search(r"\$2[abxy]\$\d\d\$", text) is None, "bcrypt hash leaked in /v1/auth/me"
    assert "password" not in resp.json()


def test_users_get_separate_orgs(user, other_user) -> None:
    a = user.client.auth.me().data
    b = other_user.client.auth.me().data
    assert a["org_id"] != b["org_id"]


# --- rejected bearer tokens ------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/v1/auth/me", "/v1/vaults", "/v1/vaults/00000000-0000-4000-8000-000000000000/secrets/a"],
)
def test_no_token_is_401_problem(anon: httpx.Client, path: str) -> None:
    assert_problem(anon.get(path), 401)


def test_garbage_token_is_401_problem(anon: httpx.Client) -> None:
    assert_problem(anon.get("/v1/auth/me", headers=bearer("not-a-jwt")), 401)


def test_garbage_three_part_token_is_401_problem(anon: httpx.Client) -> None:
    assert_problem(anon.get("/v1/auth/me", headers=bearer("aaaa.bbbb.cccc")), 401)


def test_flipped_signature_byte_is_401_problem(anon: httpx.Client, user) -> None:
    forged = with_flipped_signature_byte(user.token)
    assert forged != user.token
    assert_problem(anon.get("/v1/auth/me", headers=bearer(forged)), 401)


def test_tampered_payload_is_401_problem(anon: httpx.Client, user, other_user) -> None:
    head, body, sig = user.token.split(".")
    _, payload, _, _ = decode_jwt(user.token)
    payload["sub"] = f"user:{other_user.user_id}"
    forged_body = b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
    assert_problem(anon.get("/v1/auth/me", headers=bearer(f"{head}.{forged_body}.{sig}")), 401)


def test_alg_none_token_is_401_problem(anon: httpx.Client, user) -> None:
    _, payload, _, _ = decode_jwt(user.token)
    head = b64url_encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64url_encode(json.dumps(payload).encode())
    assert_problem(anon.get("/v1/auth/me", headers=bearer(f"{head}.{body}.")), 401)


def test_non_bearer_scheme_is_401_problem(anon: httpx.Client, user) -> None:
    assert_problem(anon.get("/v1/auth/me", headers={"Authorization": f"Basic {user.token}"}), 401)


def test_token_signed_by_foreign_key_is_401_problem(anon: httpx.Client, user) -> None:
    import cryptography.hazmat.primitives.asymmetric.ed25519 as ed25519
    header, payload, _, _ = decode_jwt(user.token)
    signing_input = (
        b64url_encode(json.dumps(header).encode()) + "." + b64url_encode(json.dumps(payload).encode())
    )
    signature = ed25519.Ed25519PrivateKey.generate().sign(signing_input.encode("ascii"))
    forged = f"{signing_input}.{b64url_encode(signature)}"
    assert_problem(anon.get("/v1/auth/me", headers=bearer(forged)), 401)
