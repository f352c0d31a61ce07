"""Vault lifecycle and tenant isolation (contract §1.2, §2.2)."""

from __future__ import annotations

import uuid
from typing import Callable

import httpx
import pytest

from support import assert_problem, assert_sdk_error, assert_sdk_ok, is_uuid, parse_ts


# --- create / list / get -------------------------------------------------------


def test_create_vault_returns_201_with_fields(user) -> None:
    name = f"team-{uuid.uuid4().hex[:8]}"
    data = assert_sdk_ok(user.client.vaults.create(name, description="Team credentials"), 201)
    assert is_uuid(data["id"]), data
    assert data["name"] == name
    assert data["description"] == "Team credentials"
    parse_ts(data["created_at"])


def test_create_vault_without_name_is_400(user) -> None:
    assert_problem(user.http.post("/v1/vaults", json={"description": "no name"}), 400)


def test_create_vault_with_empty_name_is_400(user) -> None:
    assert_problem(user.http.post("/v1/vaults", json={"name": ""}), 400)


def test_list_vaults_contains_created_vault(user, vault: str) -> None:
    data = assert_sdk_ok(user.client.vaults.list(), 200)
    assert isinstance(data["vaults"], list), data
    assert vault in {v["id"] for v in data["vaults"]}


def test_get_vault_returns_200(user, vault: str) -> None:
    data = assert_sdk_ok(user.client.vaults.get(vault), 200)
    assert data["id"] == vault
    assert data["name"].startswith("vault-")
    parse_ts(data["created_at"])


def test_list_vaults_hides_other_orgs_vaults(user, other_user) -> None:
    theirs = assert_sdk_ok(other_user.client.vaults.create("theirs"), 201)["id"]
    mine = assert_sdk_ok(user.client.vaults.list(), 200)
    assert theirs not in {v["id"] for v in mine["vaults"]}


# --- cross-org access looks exactly like a missing vault ---------------------------

PROBE_PATH = "leak/probe"


@pytest.fixture
def foreign_vault(other_user, canary: Callable[[str], str]) -> str:
    """A vault of another org that holds a secret at PROBE_PATH."""
    vid = assert_sdk_ok(other_user.client.vaults.create("foreign"), 201)["id"]
    assert_sdk_ok(other_user.client.secrets.set(vid, PROBE_PATH, canary("FOREIGN-")), 201)
    return vid


CROSS_ORG_OPERATIONS: dict[str, Callable[[httpx.Client, str], httpx.Response]] = {
    "get_vault": lambda h, v: h.get(f"/v1/vaults/{v}"),
    "delete_vault": lambda h, v: h.delete(f"/v1/vaults/{v}"),
    "put_secret": lambda h, v: h.put(f"/v1/vaults/{v}/secrets/{PROBE_PATH}", json={"value": "overwrite"}),
    "get_secret": lambda h, v: h.get(f"/v1/vaults/{v}/secrets/{PROBE_PATH}"),
    "list_secrets": lambda h, v: h.get(f"/v1/vaults/{v}/secrets"),
    "delete_secret": lambda h, v: h.delete(f"/v1/vaults/{v}/secrets/{PROBE_PATH}"),
}


@pytest.mark.parametrize("op", list(CROSS_ORG_OPERATIONS), ids=list(CROSS_ORG_OPERATIONS))
def test_other_orgs_vault_is_indistinguishable_from_missing(user, foreign_vault: str, op: str) -> None:
    call = CROSS_ORG_OPERATIONS[op]
    random_id = str(uuid.uuid4())
    foreign = call(user.http, foreign_vault)
    missing = call(user.http, random_id)
    a = assert_problem(foreign, 404)
    b = assert_problem(missing, 404)
    # The detail may mention the id; compare with the ids masked out.
    assert a["detail"].replace(foreign_vault, "<id>") == b["detail"].replace(random_id, "<id>")
    assert a["title"] == b["title"]
    assert a["type"] == b["type"]


def test_other_org_cannot_delete_vault(user, other_user, foreign_vault: str) -> None:
    user.http.delete(f"/v1/vaults/{foreign_vault}")
    assert_sdk_ok(other_user.client.vaults.get(foreign_vault), 200)


def test_other_org_cannot_overwrite_secret(user, other_user, foreign_vault: str) -> None:
    user.http.put(f"/v1/vaults/{foreign_vault}/secrets/{PROBE_PATH}", json={"value": "overwrite"})
    data = assert_sdk_ok(other_user.client.secrets.get(foreign_vault, PROBE_PATH), 200)
    assert data["version"] == 1
    assert data["value"] != "overwrite"


def test_other_org_cannot_delete_secret(user, other_user, foreign_vault: str) -> None:
    user.http.delete(f"/v1/vaults/{foreign_vault}/secrets/{PROBE_PATH}")
    assert_sdk_ok(other_user.client.secrets.get(foreign_vault, PROBE_PATH), 200)


# --- malformed ids -------------------------------------------------------------------

MALFORMED_IDS = ["not-a-uuid", "1234", "00000000-0000-0000-0000-00000000000g"]


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
@pytest.mark.parametrize(
    "method,suffix",
    [("GET", ""), ("DELETE", ""), ("GET", "/secrets"), ("GET", "/secrets/a/b"), ("PUT", "/secrets/a/b")],
    ids=["get_vault", "delete_vault", "list_secrets", "get_secret", "put_secret"],
)
def test_malformed_vault_id_is_400_or_404_problem(user, bad_id: str, method: str, suffix: str) -> None:
    kwargs = {"json": {"value": "v"}} if method == "PUT" else {}
    resp = user.http.request(method, f"/v1/vaults/{bad_id}{suffix}", **kwargs)
    assert resp.status_code < 500, resp.text
    assert_problem(resp, (400, 404))


# --- delete ------------------------------------------------------------------------


def test_delete_vault_returns_204(user, vault: str) -> None:
    resp = user.client.vaults.delete(vault)
    assert resp.meta.status == 204
    assert resp.error is None


def test_delete_vault_returns_empty_body(user, vault: str) -> None:
    resp = user.http.delete(f"/v1/vaults/{vault}")
    assert resp.status_code == 204
    assert resp.content == b""


def test_deleted_vault_get_is_404(user, vault: str) -> None:
    assert user.client.vaults.delete(vault).meta.status == 204
    assert_problem(user.http.get(f"/v1/vaults/{vault}"), 404)


def test_deleted_vault_is_not_listed(user, vault: str) -> None:
    assert user.client.vaults.delete(vault).meta.status == 204
    data = assert_sdk_ok(user.client.vaults.list(), 200)
    assert vault not in {v["id"] for v in data["vaults"]}


def test_deleted_vault_secrets_are_unreadable(user, vault: str, canary) -> None:
    assert_sdk_ok(user.client.secrets.set(vault, "db/password", canary()), 201)
    assert user.client.vaults.delete(vault).meta.status == 204
    assert_problem(user.http.get(f"/v1/vaults/{vault}/secrets/db/password"), 404)
    assert_problem(user.http.get(f"/v1/vaults/{vault}/secrets"), 404)


def test_deleted_vault_rejects_new_secrets(user, vault: str) -> None:
    assert user.client.vaults.delete(vault).meta.status == 204
    assert_sdk_error(user.client.secrets.set(vault, "db/password", "x"), 404)


def test_delete_missing_vault_is_404(user) -> None:
    assert_problem(user.http.delete(f"/v1/vaults/{uuid.uuid4()}"), 404)
