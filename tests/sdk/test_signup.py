"""POST /v1/auth/signup (contract §1.1)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from support import PASSWORD, assert_problem, assert_sdk_error, is_uuid


def _email() -> str:
    return f"u-{uuid.uuid4().hex}@example.com"


def test_signup_returns_200_with_user_id(sdk_anon) -> None:
    resp = sdk_anon.auth.signup(_email(), PASSWORD)
    assert resp.meta.status == 200, resp.error
    assert is_uuid(resp.data.get("user_id")), resp.data


def test_signup_response_does_not_echo_password(anon: httpx.Client) -> None:
    resp = anon.post("/v1/auth/signup", json={"email": _email(), "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    assert PASSWORD not in resp.text


def test_signup_with_display_name_is_accepted(sdk_anon) -> None:
    resp = sdk_anon.auth.signup(_email(), PASSWORD, display_name="Ada Lovelace")
    assert resp.meta.status == 200, resp.error
    assert is_uuid(resp.data.get("user_id")), resp.data


# Each weak password breaks exactly one rule of the policy.
WEAK_PASSWORDS = {
    "too_short": "Ab1!Zq7#",
    "no_upper": "correct-horse-9-battery!",
    "no_lower": "CORRECT-HORSE-9-BATTERY!",
    "no_digit": "Correct-Horse-Nine-Battery!",
    "no_special": "CorrectHorse9Battery",
}


@pytest.mark.parametrize("password", list(WEAK_PASSWORDS.values()), ids=list(WEAK_PASSWORDS))
def test_signup_rejects_weak_password(anon: httpx.Client, leak_watch, password: str) -> None:
    leak_watch.passwords.add(password)
    resp = anon.post("/v1/auth/signup", json={"email": _email(), "password": password})
    assert_problem(resp, 400)


@pytest.mark.parametrize("password", list(WEAK_PASSWORDS.values()), ids=list(WEAK_PASSWORDS))
def test_weak_password_signup_creates_no_account(sdk_anon, password: str) -> None:
    email = _email()
    sdk_anon.auth.signup(email, password)
    login = sdk_anon.auth.login(email, password)
    assert_sdk_error(login, 401)


def test_signup_duplicate_email_is_rejected(anon: httpx.Client) -> None:
    email = _email()
    first = anon.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert first.status_code == 200, first.text
    second = anon.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert_problem(second, (409, 400))


@pytest.mark.parametrize("missing", ["email", "password", "both"])
def test_signup_missing_field_is_400(anon: httpx.Client, missing: str) -> None:
    body = {"email": _email(), "password": PASSWORD}
    if missing in ("email", "both"):
        del body["email"]
    if missing in ("password", "both"):
        del body["password"]
    assert_problem(anon.post("/v1/auth/signup", json=body), 400)


def test_signup_malformed_json_is_400(anon: httpx.Client) -> None:
    resp = anon.post(
        "/v1/auth/signup",
        content=b'{"email": "x@example.com", "password": ',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(resp, 400)
