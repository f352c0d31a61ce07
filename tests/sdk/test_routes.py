"""Unknown routes and wrong methods answer with problem+json, never 5xx."""

from __future__ import annotations

import httpx
import pytest

from support import assert_problem


@pytest.mark.parametrize(
    "path",
    ["/v1/no-such-route", "/v1/vaults/00000000-0000-4000-8000-000000000000/no-such-thing/x", "/nope"],
)
def test_unknown_route_is_404_problem(user, path: str) -> None:
    assert_problem(user.http.get(path), 404)


def test_unknown_route_outside_v1_without_token_is_404_problem(anon: httpx.Client) -> None:
    assert_problem(anon.get("/definitely/not/here"), 404)


def test_wrong_method_on_vaults_is_404_or_405_problem(user) -> None:
    assert_problem(user.http.patch("/v1/vaults", json={"name": "x"}), (404, 405))


def test_wrong_method_on_health_is_404_or_405_problem(anon: httpx.Client) -> None:
    assert_problem(anon.delete("/v1/health"), (404, 405))
