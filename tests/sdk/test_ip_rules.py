"""Org IP rules (`/v1/security/ip-rules`, contract §1.10): management, enforcement on every authenticated request
and every token exchange, the lock-out guard, audit events, and X-Forwarded-For behind a trusted proxy.

The session server listens on 127.0.0.1; a client socket bound to 127.0.0.2 (still loopback) reaches it from a
second address. Every test works in an org of its own (``signup_user``), so its rules touch no other test.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterator

import httpx
import pytest

from conftest import KeyholdServer, User, _free_port
from support import PASSWORD, PROBLEM_JSON

RULES = "/v1/security/ip-rules"
OTHER = "127.0.0.2"
REFUSED = "Requests from this address are not allowed by the organization's IP rules"


def url_of(user: User) -> str:
    return str(user.http.base_url).rstrip("/")


def client_from(url: str, address: str, token: str | None = None) -> httpx.Client:
    """A raw client whose socket is bound to ``address``, with ``token`` as its Bearer when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, timeout=30.0, headers=headers,
                        transport=httpx.HTTPTransport(local_address=address))


def assert_problem(resp: httpx.Response, status: int, detail: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM_JSON)
    body = resp.json()
    assert body["status"] == status and body["title"] and body["type"]
    if detail is not None:
        assert body["detail"] == detail


def add_rule(user: User, rule_type: str, cidr: str, **extra: Any) -> dict[str, Any]:
    resp = user.http.post(RULES, json={"rule_type": rule_type, "cidr": cidr, **extra})
    assert resp.status_code == 201, resp.text
    return resp.json()


def events(user: User, action: str) -> list[dict[str, Any]]:
    resp = user.http.get("/v1/audit/events", params={"action": action, "limit": 1000})
    assert resp.status_code == 200, resp.text
    return resp.json()["events"]


def wait_for_events(user: User, action: str, accept: Callable[[list[dict[str, Any]]], bool],
                    timeout: float = 10.0) -> list[dict[str, Any]]:
    """Counted refusals are written every KEYHOLD_AUTH_FAILURE_INTERVAL (2 s in the suite)."""
    deadline = time.monotonic() + timeout
    while True:
        found = events(user, action)
        if accept(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


@pytest.fixture
def owner(signup_user: Callable[[], User]) -> User:
    return signup_user()


@pytest.fixture
def elsewhere(owner: User) -> Iterator[httpx.Client]:
    """The owner's session, from the second loopback address."""
    with client_from(url_of(owner), OTHER, owner.token) as client:
        yield client


# ---------------------------------------------------------------------------
# Management
# ---------------------------------------------------------------------------


def test_rules_are_created_listed_and_deleted_with_the_spec_shapes(owner: User) -> None:
    assert owner.http.get(RULES).json() == {"rules": []}
    # 1Claw's docs send "block" and "description": read as deny and label, answered as the spec says.
    deny = add_rule(owner, "block", "192.0.2.0/24", description="lab")
    assert set(deny) == {"id", "org_id", "rule_type", "cidr", "label", "applies_to", "created_by", "created_at"}
    assert deny["rule_type"] == "deny" and deny["cidr"] == "192.0.2.0/24" and deny["label"] == "lab"
    assert deny["applies_to"] == "all" and deny["org_id"] == owner.org_id and deny["created_by"] == owner.user_id
    uuid.UUID(deny["id"])
    allow = add_rule(owner, "allow", "2001:db8::/32", label="v6 office", applies_to="agents")
    assert (allow["rule_type"], allow["cidr"], allow["applies_to"]) == ("allow", "2001:db8::/32", "agents")
    host = add_rule(owner, "deny", "198.51.100.7")
    assert host["label"] is None and host["cidr"] == "198.51.100.7"
    assert [r["id"] for r in owner.http.get(RULES).json()["rules"]] == [deny["id"], allow["id"], host["id"]]

    for body in ({"rule_type": "permit", "cidr": "10.0.0.0/8"}, {"rule_type": "allow", "cidr": "10.0.0.0/33"},
                 {"rule_type": "allow", "cidr": "example.com"}, {"rule_type": "allow", "cidr": "10.0.0.0/8",
                                                                 "applies_to": "robots"},
                 {"rule_type": "allow"}, {"cidr": "10.0.0.0/8"}):
        assert_problem(owner.http.post(RULES, json=body), 400)

    assert owner.http.delete(f"{RULES}/{deny['id']}").status_code == 204
    assert_problem(owner.http.delete(f"{RULES}/{deny['id']}"), 404)
    assert_problem(owner.http.delete(f"{RULES}/not-a-uuid"), 404)
    assert [r["id"] for r in owner.http.get(RULES).json()["rules"]] == [allow["id"], host["id"]]

    created = events(owner, "ip_rule.create")
    assert {e["resource_id"] for e in created} == {deny["id"], allow["id"], host["id"]}
    assert any(e["details"]["cidr"] == "192.0.2.0/24" and e["details"]["rule_type"] == "deny" for e in created)
    deleted = events(owner, "ip_rule.delete")
    assert [e["resource_id"] for e in deleted] == [deny["id"]]


def test_only_owners_and_admins_manage_rules(owner: User, join_org, make_agent, agent_sdk) -> None:
    member = join_org(owner, "member")
    rule = add_rule(owner, "deny", "192.0.2.0/24")
    assert_problem(member.http.get(RULES), 403)
    assert_problem(member.http.post(RULES, json={"rule_type": "deny", "cidr": "198.51.100.0/24"}), 403)
    assert_problem(member.http.delete(f"{RULES}/{rule['id']}"), 403)
    agent = make_agent(owner)
    client = agent_sdk(agent.key)
    with httpx.Client(base_url=url_of(owner), timeout=30.0,
                      headers={"Authorization": f"Bearer {client._http.get_token()}"}) as as_agent:
        assert_problem(as_agent.get(RULES), 403)
        assert_problem(as_agent.post(RULES, json={"rule_type": "deny", "cidr": "198.51.100.0/24"}), 403)
    admin = join_org(owner, "admin")
    add_rule(admin, "deny", "198.51.100.0/24")
    assert len(owner.http.get(RULES).json()["rules"]) == 2
    refused = [e for e in events(owner, "ip_rule.create") if e["details"].get("outcome") == "denied"]
    assert {e["actor_id"] for e in refused} == {member.user_id, agent.id}


# ---------------------------------------------------------------------------
# Enforcement
# ---------------------------------------------------------------------------


def test_a_deny_rule_blocks_the_address_it_names_and_no_other(owner: User, elsewhere: httpx.Client) -> None:
    assert elsewhere.get("/v1/vaults").status_code == 200
    rule = add_rule(owner, "deny", f"{OTHER}/32")
    for path in ("/v1/vaults", "/v1/auth/me", RULES, "/v1/audit/events"):
        assert_problem(elsewhere.get(path), 403, REFUSED)
    assert_problem(elsewhere.post("/v1/vaults", json={"name": "nope"}), 403, REFUSED)
    assert owner.http.get("/v1/vaults").status_code == 200, "127.0.0.1 is not named"
    # A change takes effect with the next request.
    assert owner.http.delete(f"{RULES}/{rule['id']}").status_code == 204
    assert elsewhere.get("/v1/vaults").status_code == 200


def test_allow_rules_make_an_allow_list_and_deny_wins(owner: User, elsewhere: httpx.Client) -> None:
    add_rule(owner, "allow", "127.0.0.1/32")
    assert owner.http.get("/v1/vaults").status_code == 200
    assert_problem(elsewhere.get("/v1/vaults"), 403, REFUSED)
    add_rule(owner, "allow", "127.0.0.0/30")
    assert elsewhere.get("/v1/vaults").status_code == 200
    add_rule(owner, "deny", OTHER)
    assert_problem(elsewhere.get("/v1/vaults"), 403, REFUSED)
    assert owner.http.get("/v1/vaults").status_code == 200


def test_applies_to_separates_agents_and_humans(owner: User, elsewhere: httpx.Client, make_agent) -> None:
    agent = make_agent(owner)
    exchanged = httpx.post(f"{url_of(owner)}/v1/auth/agent-token", json={"api_key": agent.key}, timeout=30.0)
    assert exchanged.status_code == 200, exchanged.text
    agent_token = exchanged.json()["access_token"]
    url = url_of(owner)
    with client_from(url, OTHER, agent_token) as agent_elsewhere, client_from(url, "127.0.0.1", agent_token) as agent_here:
        assert agent_elsewhere.get("/v1/agents/me").status_code == 200
        add_rule(owner, "deny", OTHER, applies_to="agents")
        assert_problem(agent_elsewhere.get("/v1/agents/me"), 403, REFUSED)
        assert agent_here.get("/v1/agents/me").status_code == 200
        assert elsewhere.get("/v1/vaults").status_code == 200, "a person is not covered by an agents' rule"
        with client_from(url, OTHER) as anonymous:
            assert_problem(anonymous.post("/v1/auth/agent-token", json={"api_key": agent.key}), 403, REFUSED)

        add_rule(owner, "deny", OTHER, applies_to="humans")
        assert_problem(elsewhere.get("/v1/vaults"), 403, REFUSED)

    # An allow-list for agents alone leaves people free.
    for rule in owner.http.get(RULES).json()["rules"]:
        assert owner.http.delete(f"{RULES}/{rule['id']}").status_code == 204
    add_rule(owner, "allow", "10.0.0.0/8", applies_to="agents")
    with client_from(url, "127.0.0.1", agent_token) as agent_here:
        assert_problem(agent_here.get("/v1/agents/me"), 403, REFUSED)
    assert owner.http.get("/v1/vaults").status_code == 200
    assert elsewhere.get("/v1/vaults").status_code == 200


def test_token_exchanges_are_refused_from_a_denied_address(owner: User, make_agent, leak_watch) -> None:
    url = url_of(owner)
    agent = make_agent(owner)
    key = owner.http.post("/v1/auth/api-keys", json={"name": "ci"})
    assert key.status_code == 201, key.text
    api_key = leak_watch.track(key.json())["api_key"]
    refresh = owner.refresh_token
    assert refresh
    add_rule(owner, "deny", OTHER)
    with client_from(url, OTHER) as there:
        assert_problem(there.post("/v1/auth/token", json={"email": owner.email, "password": PASSWORD}), 403, REFUSED)
        # A wrong password is the usual 401: the rules are looked at only once the caller is known.
        assert_problem(there.post("/v1/auth/token", json={"email": owner.email, "password": PASSWORD + "x"}), 401)
        assert_problem(there.post("/v1/auth/api-key-token", json={"api_key": api_key}), 403, REFUSED)
        assert_problem(there.get("/v1/vaults", headers={"Authorization": f"Bearer {api_key}"}), 403, REFUSED)
        assert_problem(there.post("/v1/auth/agent-token", json={"api_key": agent.key}), 403, REFUSED)
        assert_problem(there.post("/v1/auth/refresh", json={"refresh_token": refresh}), 403, REFUSED)
        assert_problem(there.post("/v1/auth/refresh", headers={"Authorization": f"Bearer {owner.token}"}), 403, REFUSED)
    with client_from(url, "127.0.0.1") as here:
        login = here.post("/v1/auth/token", json={"email": owner.email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        leak_watch.track(login.json())
        assert here.post("/v1/auth/api-key-token", json={"api_key": api_key}).status_code == 200
        assert here.post("/v1/auth/agent-token", json={"api_key": agent.key}).status_code == 200
        renewed = here.post("/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]})
        assert renewed.status_code == 200, renewed.text
        leak_watch.track(renewed.json())


def test_refusals_are_audited_as_counted_events(owner: User, elsewhere: httpx.Client) -> None:
    add_rule(owner, "deny", OTHER)
    for _ in range(5):
        assert_problem(elsewhere.get("/v1/vaults"), 403, REFUSED)
    with client_from(url_of(owner), OTHER) as there:
        assert_problem(there.post("/v1/auth/token", json={"email": owner.email, "password": PASSWORD}), 403, REFUSED)

    def counts(found: list[dict[str, Any]]) -> dict[str, int]:
        totals: dict[str, int] = {}
        for e in found:
            totals[e["details"]["method"]] = totals.get(e["details"]["method"], 0) + e["details"]["count"]
        return totals

    def complete(found: list[dict[str, Any]]) -> bool:
        return counts(found).get("bearer", 0) >= 5 and counts(found).get("password", 0) >= 1

    found = wait_for_events(owner, "ip_rule.refused", complete)
    assert complete(found), found
    for event in found:
        assert event["ip_address"] == OTHER and event["org_id"] == owner.org_id
        assert event["resource_type"] == "user" and event["resource_id"] == owner.user_id
        assert event["details"]["outcome"] == "denied" and event["details"]["reason"] == "deny_rule"
        assert {"count", "first_at", "last_at"} <= set(event["details"])
    assert counts(found) == {"bearer": 5, "password": 1}, "counted per interval, not one event per refusal"
    assert len(found) <= 4


# ---------------------------------------------------------------------------
# The lock-out guard
# ---------------------------------------------------------------------------


def test_a_rule_against_the_callers_own_address_needs_force(owner: User, elsewhere: httpx.Client) -> None:
    for body in ({"rule_type": "deny", "cidr": "127.0.0.0/8"}, {"rule_type": "allow", "cidr": "10.0.0.0/8"},
                 {"rule_type": "allow", "cidr": "10.0.0.0/8", "force": False}):
        resp = owner.http.post(RULES, json=body)
        assert_problem(resp, 409)
        assert "127.0.0.1" in resp.json()["detail"] and "force" in resp.json()["detail"]
    assert owner.http.get(RULES).json() == {"rules": []}
    refused = events(owner, "ip_rule.create")
    assert len(refused) == 3 and all(e["details"]["reason"] == "would_lock_out" for e in refused)

    # Deleting the allow rule the caller depends on is guarded too.
    mine = add_rule(owner, "allow", "127.0.0.1")
    add_rule(owner, "allow", OTHER)
    assert_problem(owner.http.delete(f"{RULES}/{mine['id']}"), 409)
    assert_problem(owner.http.delete(f"{RULES}/{mine['id']}", params={"force": "maybe"}), 400)
    assert owner.http.delete(f"{RULES}/{mine['id']}", params={"force": "true"}).status_code == 204
    assert_problem(owner.http.get("/v1/vaults"), 403, REFUSED)

    # From the address still allowed, the owner puts things back; force was recorded.
    forced = [e for e in events_from(elsewhere, "ip_rule.delete") if e["details"].get("forced")]
    assert [e["resource_id"] for e in forced] == [mine["id"]]
    back = elsewhere.post(RULES, json={"rule_type": "allow", "cidr": "127.0.0.1"})
    assert back.status_code == 201, back.text
    assert owner.http.get("/v1/vaults").status_code == 200

    # force: true makes a rule that locks the caller out at once.
    locked = owner.http.post(RULES, json={"rule_type": "deny", "cidr": "127.0.0.1", "force": True})
    assert locked.status_code == 201, locked.text
    assert_problem(owner.http.get(RULES), 403, REFUSED)
    assert elsewhere.delete(f"{RULES}/{locked.json()['id']}").status_code == 204
    assert owner.http.get(RULES).status_code == 200


def events_from(client: httpx.Client, action: str) -> list[dict[str, Any]]:
    resp = client.get("/v1/audit/events", params={"action": action, "limit": 1000})
    assert resp.status_code == 200, resp.text
    return resp.json()["events"]


# ---------------------------------------------------------------------------
# X-Forwarded-For
# ---------------------------------------------------------------------------


def test_forwarded_for_is_ignored_without_trusted_proxies(owner: User, elsewhere: httpx.Client) -> None:
    add_rule(owner, "deny", OTHER)
    assert owner.http.get("/v1/vaults", headers={"X-Forwarded-For": OTHER}).status_code == 200
    assert_problem(elsewhere.get("/v1/vaults", headers={"X-Forwarded-For": "127.0.0.1"}), 403, REFUSED)


@pytest.fixture(scope="module")
def proxied(server: KeyholdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyholdServer]:
    """A server of its own that trusts 127.0.0.1 as its reverse proxy."""
    base = tmp_path_factory.mktemp("keyhold-proxied")
    srv = KeyholdServer(server.binary, base / "data", base / "server.log", _free_port())
    srv.env = {"KEYHOLD_TRUSTED_PROXIES": "127.0.0.1/32"}
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_behind_a_trusted_proxy_the_right_most_untrusted_forwarded_address_is_the_client(proxied, leak_watch) -> None:
    email = f"p-{uuid.uuid4().hex}@example.com"
    assert httpx.post(f"{proxied.url}/v1/auth/signup", json={"email": email, "password": PASSWORD}).status_code == 200
    login = httpx.post(f"{proxied.url}/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    token = leak_watch.track(login.json())["access_token"]
    with client_from(proxied.url, "127.0.0.1", token) as proxy, client_from(proxied.url, OTHER, token) as direct:
        created = proxy.post(RULES, json={"rule_type": "deny", "cidr": "198.51.100.0/24"})
        assert created.status_code == 201, created.text
        assert_problem(proxy.get("/v1/vaults", headers={"X-Forwarded-For": "198.51.100.9"}), 403, REFUSED)
        # The proxy appended what it saw: the client's own first entry is not believed.
        assert proxy.get("/v1/vaults", headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.5"}).status_code == 200
        assert_problem(proxy.get("/v1/vaults", headers={"X-Forwarded-For": "203.0.113.5, 198.51.100.9"}), 403)
        # A peer that is not a trusted proxy cannot name another address.
        assert direct.get("/v1/vaults", headers={"X-Forwarded-For": "198.51.100.9"}).status_code == 200
        # The forwarded address is the one the audit log records.
        vault = proxy.post("/v1/vaults", json={"name": "via-proxy"}, headers={"X-Forwarded-For": "203.0.113.5"})
        assert vault.status_code == 201, vault.text
        found = [e for e in events_from(proxy, "vault.create") if e["resource_id"] == vault.json()["id"]]
        assert [e["ip_address"] for e in found] == ["203.0.113.5"]
        # The lock-out guard looks at the forwarded address too.
        assert_problem(proxy.post(RULES, json={"rule_type": "deny", "cidr": "203.0.113.0/24"},
                                  headers={"X-Forwarded-For": "203.0.113.5"}), 409)
