"""Public key discovery: JWKS, jwt-public-key, OpenID configuration (contract §1.1, §2.1)."""

from __future__ import annotations

import httpx
import pytest

from support import b64_decode_any, b64url_decode, decode_jwt


@pytest.fixture(scope="module")
def jwks(anon: httpx.Client) -> dict:
    resp = anon.get("/.well-known/jwks.json")
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def jwt_public_key(anon: httpx.Client) -> dict:
    resp = anon.get("/v1/auth/jwt-public-key")
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_jwks_is_public_json(anon: httpx.Client) -> None:
    resp = anon.get("/.well-known/jwks.json")
    assert resp.status_code == 200
    ctype = resp.headers.get("content-type", "").split(";")[0].strip()
    assert ctype in ("application/json", "application/jwk-set+json"), ctype


def test_jwks_first_key_is_ed25519_okp(jwks: dict) -> None:
    keys = jwks["keys"]
    assert isinstance(keys, list) and keys, jwks
    key = keys[0]
    assert key["kty"] == "OKP"
    assert key["crv"] == "Ed25519"
    assert isinstance(key.get("kid"), str) and key["kid"], key
    assert len(b64url_decode(key["x"])) == 32, key


def test_jwks_exposes_no_private_material(jwks: dict) -> None:
    for key in jwks["keys"]:
        assert "d" not in key, "JWKS must not publish private key material"


def test_token_kid_matches_jwks(jwks: dict, user) -> None:
    header, _, _, _ = decode_jwt(user.token)
    assert header.get("kid") == jwks["keys"][0]["kid"], (header, jwks)


def test_jwt_public_key_alg_is_eddsa(jwt_public_key: dict) -> None:
    assert jwt_public_key["alg"] == "EdDSA"


def test_jwt_public_key_is_32_bytes(jwt_public_key: dict) -> None:
    assert len(b64_decode_any(jwt_public_key["public_key_base64"])) == 32


def test_jwt_public_key_matches_jwk_x(jwt_public_key: dict, jwks: dict) -> None:
    raw = b64_decode_any(jwt_public_key["public_key_base64"])
    assert raw == b64url_decode(jwks["keys"][0]["x"])


def test_openid_configuration_has_issuer_and_jwks_uri(anon: httpx.Client) -> None:
    resp = anon.get("/.well-known/openid-configuration")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body.get("issuer"), str) and body["issuer"], body
    assert isinstance(body.get("jwks_uri"), str), body
    assert body["jwks_uri"].endswith("/.well-known/jwks.json"), body


def test_token_signature_verifies_with_published_key(jwks: dict, user) -> None:
    import cryptography.hazmat.primitives.asymmetric.ed25519 as ed25519
    _, _, signature, signing_input = decode_jwt(user.token)
    public = ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwks["keys"][0]["x"]))
    public.verify(signature, signing_input)  # raises InvalidSignature on mismatch


def test_signing_key_is_stable_across_requests(anon: httpx.Client, jwks: dict) -> None:
    again = anon.get("/.well-known/jwks.json").json()
    assert again["keys"][0]["kid"] == jwks["keys"][0]["kid"]
    assert again["keys"][0]["x"] == jwks["keys"][0]["x"]
