"""The web console in a real browser (issue 20): sign-up and sign-in (MFA too), vaults, secrets (reveal is an audited
read that hides again), agents and their one-time keys, policies, share links opened in a second browser context,
approvals, the audit log, members and invitations; the security headers, a CSRF attempt from another origin, the
clipboard, keyboard use, labels, and the layout at 1280x800 and on a 390-px-wide phone.

What the console did is checked through the API as well, not only on the page."""

from __future__ import annotations

import http.server
import re
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx
import pyotp
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from browser_support import DESKTOP, PHONE, WAIT_S, Console, canary, login_http, xpath_literal
from support import OCV_KEY_RE, PASSWORD

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "Sources" / "KeyholdHTTP" / "Resources" / "console"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
INVITE_RE = re.compile(r"inv_[A-Za-z0-9_-]+")


def put_secret(user: Any, vault_id: str, path: str, value: str) -> dict[str, Any]:
    resp = user.http.put(f"/v1/vaults/{vault_id}/secrets/{path}", json={"value": value})
    assert resp.status_code == 201, resp.text
    return resp.json()


def events(client: httpx.Client, **query: Any) -> list[dict[str, Any]]:
    resp = client.get("/v1/audit/events", params=query)
    assert resp.status_code == 200, resp.text
    return resp.json()["events"]


def page_has_text(browser: Console, text: str) -> bool:
    return text in browser.driver.execute_script("return document.documentElement.outerHTML")


def read_clipboard(browser: Console) -> str:
    browser.driver.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": browser.base, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    return browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, (e) => done('clipboard error: ' + e));")


# ---------------------------------------------------------------------------------------------------------------
# Sign-up, vaults, secrets, reveal, audit


def test_sign_up_create_a_vault_store_a_secret_reveal_it_and_find_the_read_in_the_audit_log(console, server) -> None:
    browser = console()
    browser.open()
    browser.heading("Sign in")
    browser.shot("sign-in")
    browser.link("Create an account").click()
    browser.heading("Create an account")
    email = f"console-{uuid.uuid4().hex[:12]}@example.com"
    browser.fill("Email", email)
    browser.fill("Password", PASSWORD)
    browser.fill("Repeat the password", PASSWORD)
    browser.shot("sign-up")
    browser.click("Create account")
    browser.heading("Vaults")
    browser.text_present("No vaults yet")
    browser.shot("vaults-empty")
    assert browser.find("//*[contains(@class,'user-name')]").text == email

    vault_name = f"production-{uuid.uuid4().hex[:6]}"
    browser.click("New vault")
    browser.fill("Name", vault_name)
    browser.shot("vault-new")
    browser.submit_dialog("Create vault")
    browser.heading(vault_name)
    browser.text_present("This vault has no secrets yet")
    browser.shot("secrets-empty")

    value = canary()
    browser.click("New secret")
    browser.fill("Path", "db/password")
    browser.fill("Value", value)
    browser.shot("secret-new")
    browser.submit_dialog("Store secret")
    browser.heading("db/password")
    browser.find("//h2[.='Versions']")
    assert not page_has_text(browser, value), "the value is in the page before Reveal"
    browser.shot("secret")

    box = browser.find("//*[@aria-label='Value of db/password']")
    browser.click("Reveal")
    browser.wait.until(lambda d: box.text == value, "the revealed value did not show")
    browser.find("//*[contains(@class,'reveal-timer') and starts-with(normalize-space(.), 'Hides in')]")
    browser.shot("secret-revealed")

    # The read went through the API: it is counted and audited (checked as the same person, through the API).
    api = login_http(server.url, email)
    vault_id = next(v["id"] for v in api.get("/v1/vaults").json()["vaults"] if v["name"] == vault_name)
    reads = events(api, action="secret.read", resource_id="db/password")
    assert len(reads) == 1 and reads[0]["details"].get("vault_id", vault_id) == vault_id
    versions = api.get(f"/v1/vaults/{vault_id}/secret-versions/db/password").json()["versions"]
    assert [v["access_count"] for v in versions] == [1]

    # Leaving the page takes the value out of the DOM; the audit page shows the read, filtered.
    browser.link("Audit log").click()
    browser.heading("Audit log")
    assert not page_has_text(browser, value), "the value outlived its page"
    browser.text_present("The chain is intact")
    browser.fill("Action", "secret.read")
    browser.fill("Resource", "db/password")
    browser.click("Apply filters")
    browser.wait.until(lambda d: "action=secret.read" in d.current_url)
    browser.settled()
    rows = browser.driver.find_elements(By.CSS_SELECTOR, "table.data tbody tr")
    assert len(rows) == 1 and "secret.read" in rows[0].text and "db/password" in rows[0].text
    browser.shot("audit-filtered")

    # Nothing of the session is kept where scripts or other pages could read it.
    storage = browser.driver.execute_script("return [localStorage.length, sessionStorage.length, document.cookie]")
    assert storage == [0, 0, ""]
    assert all(cookie.get("httpOnly") for cookie in browser.driver.get_cookies())


def test_a_revealed_value_hides_again_after_30_seconds(console, owner, vault_of) -> None:
    vault = vault_of()
    value = canary()
    put_secret(owner, vault["id"], "app/token", value)
    browser = console()
    browser.sign_in(owner.email)
    browser.go(f"#/vaults/{vault['id']}/secret/app/token")
    browser.heading("app/token")
    browser.click("Reveal")
    box = browser.find("//*[@aria-label='Value of app/token']")
    browser.wait.until(lambda d: box.text == value)
    browser.find("//*[contains(@class,'reveal-timer') and starts-with(normalize-space(.), 'Hides in')]")
    WebDriverWait(browser.driver, 60).until(lambda d: not page_has_text(browser, value), "the value stayed on the page")
    assert browser.find("//button[normalize-space(.)='Reveal']").is_displayed()
    assert "••••" in box.text


def test_new_version_rotate_and_disable_a_version(console, owner, vault_of) -> None:
    vault = vault_of()
    first = canary()
    put_secret(owner, vault["id"], "svc/key", first)
    browser = console()
    browser.sign_in(owner.email)
    browser.go(f"#/vaults/{vault['id']}/secret/svc/key")
    browser.heading("svc/key")

    second = canary()
    browser.click("New version")
    browser.fill("Value", second)
    browser.submit_dialog("Save new version")
    browser.wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-version-reads]")) == 2)

    browser.click("Rotate")
    browser.choose("Characters", "Hexadecimal")
    browser.fill("Length", "40")
    browser.submit_dialog("Rotate now")
    browser.wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-version-reads]")) == 3)

    browser.click("Disable version 1")
    browser.submit_dialog("Disable version")
    browser.wait.until(lambda d: len(d.find_elements(By.XPATH, "//button[@aria-label='Disable version 1']")) == 0)
    browser.shot("versions")

    latest = owner.http.get(f"/v1/vaults/{vault['id']}/secrets/svc/key").json()
    assert latest["version"] == 3 and re.fullmatch(r"[0-9a-f]{40}", latest["value"])
    assert owner.http.get(f"/v1/vaults/{vault['id']}/secret-version/svc/key/2").json()["value"] == second
    assert owner.http.get(f"/v1/vaults/{vault['id']}/secret-version/svc/key/1").status_code == 410


def test_deleting_a_vault_needs_its_name_typed(console, owner, vault_of) -> None:
    vault = vault_of()
    browser = console()
    browser.sign_in(owner.email)
    browser.click(f"Delete vault {vault['name']}")
    dialog = browser.dialog()
    confirm = browser.button("Delete vault", dialog)
    assert not confirm.is_enabled()
    browser.fill("Vault name", vault["name"][:-1], dialog)
    assert not confirm.is_enabled()
    browser.shot("delete-typed")
    browser.fill("Vault name", vault["name"], dialog)
    browser.wait.until(lambda d: confirm.is_enabled())
    confirm.click()
    browser.no_dialog()
    browser.text_present("No vaults yet")
    assert owner.http.get(f"/v1/vaults/{vault['id']}").status_code == 404


# ---------------------------------------------------------------------------------------------------------------
# Agents and policies


def test_create_an_agent_copy_its_key_once_and_the_key_works(console, owner, vault_of, agent_sdk) -> None:
    vault = vault_of()
    browser = console()
    browser.sign_in(owner.email)
    browser.link("Agents").click()
    browser.heading("Agents")
    browser.text_present("No agents yet")
    browser.shot("agents-empty")
    browser.click("New agent")
    browser.fill("Name", "deploy-bot")
    browser.control(vault["name"]).click()  # bind it to this vault
    browser.fill("Scopes", "db/**")
    browser.shot("agent-new")
    browser.submit_dialog("Register agent")

    key_input = browser.control("Agent key")
    key = key_input.get_attribute("value")
    assert OCV_KEY_RE.fullmatch(key), "the one-time key is not an ocv_ key"
    browser.shot("agent-key-once")
    browser.click("Copy", browser.dialog())
    browser.find("//button[normalize-space(.)='Copied']")
    assert read_clipboard(browser) == key
    browser.click("Done")
    browser.heading("deploy-bot")
    browser.shot("agent")
    assert not page_has_text(browser, key), "the key stayed in the page after its dialog closed"

    me = agent_sdk(key).agents.me()
    assert me.meta.status == 200 and me.data["name"] == "deploy-bot"
    assert me.data["vault_ids"] == [vault["id"]] and me.data["scopes"] == ["db/**"]


def test_rotate_an_agents_key_then_deactivate_it(console, owner, make_agent, server) -> None:
    agent = make_agent(owner, name="rotating-bot")
    browser = console()
    browser.sign_in(owner.email)
    browser.go(f"#/agents/{agent.id}")
    browser.heading("rotating-bot")
    browser.click("Rotate key")
    browser.submit_dialog("Rotate key")
    new_key = browser.control("Agent key").get_attribute("value")
    assert OCV_KEY_RE.fullmatch(new_key) and new_key != agent.key
    browser.click("Done")

    def exchange(key: str) -> int:
        return httpx.post(f"{server.url}/v1/auth/agent-token", json={"api_key": key}, timeout=30.0).status_code

    assert exchange(agent.key) == 401
    assert exchange(new_key) == 200

    browser.click("Deactivate")
    browser.submit_dialog("Deactivate")
    browser.text_present("This agent is inactive")
    browser.shot("agent-inactive")
    assert exchange(new_key) == 401
    assert owner.http.get(f"/v1/agents/{agent.id}").json()["is_active"] is False


def test_a_policy_added_in_the_console_lets_the_agent_read(console, owner, vault_of, make_agent, agent_sdk) -> None:
    vault = vault_of()
    value = canary()
    put_secret(owner, vault["id"], "db/password", value)
    put_secret(owner, vault["id"], "other/thing", canary())
    agent = make_agent(owner, name="reader-bot")
    client = agent_sdk(agent.key)
    assert client.secrets.get(vault["id"], "db/password").meta.status == 404  # no policy: not even the vault

    browser = console()
    browser.sign_in(owner.email)
    browser.go(f"#/vaults/{vault['id']}/policies")
    browser.heading(vault["name"])
    browser.text_present("No policies on this vault")
    browser.click("New policy")
    browser.choose("Agent", "reader-bot")
    browser.fill("Path pattern", "db/*")
    browser.fill("Try a path", "db/password")
    browser.find("//*[contains(@class,'try-verdict')]//*[normalize-space(.)='matches']")
    browser.fill("Try a path", "db/prod/password")
    browser.find("//*[contains(@class,'try-verdict')]//*[normalize-space(.)='does not match']")
    browser.shot("policy-new")
    browser.submit_dialog("Add policy")
    browser.find("//table//code[.='db/*']")
    browser.fill("Test a path", "db/password")
    browser.find("//*[contains(@class,'match-flag')]//*[normalize-space(.)='matches']")
    browser.shot("policies")

    policies = owner.http.get(f"/v1/vaults/{vault['id']}/policies").json()["policies"]
    assert [(p["principal_id"], p["secret_path_pattern"], p["permissions"], p["effect"]) for p in policies] == [
        (agent.id, "db/*", ["read"], "allow")]
    assert client.secrets.get(vault["id"], "db/password").data["value"] == value
    assert client.secrets.get(vault["id"], "other/thing").meta.status == 403


# ---------------------------------------------------------------------------------------------------------------
# Shares


def test_a_share_link_is_shown_once_and_opens_in_another_browser(console, owner, vault_of) -> None:
    vault = vault_of()
    value = canary()
    put_secret(owner, vault["id"], "shared/api-key", value)
    sender = console(label="sender")
    sender.sign_in(owner.email)
    sender.go(f"#/vaults/{vault['id']}/secret/shared/api-key")
    sender.heading("shared/api-key")
    sender.click("Share")
    sender.shot("share-new")
    sender.submit_dialog("Create share")
    link = sender.control("Share link").get_attribute("value")
    assert re.fullmatch(re.escape(sender.base) + r"/v1/share/[A-Za-z0-9_-]+", link), link
    sender.shot("share-link-once")
    sender.click("Done")
    sender.no_dialog()
    assert not page_has_text(sender, link)

    # A second browser context: no cookies, no session. The link opens the console's share page.
    visitor = console(label="visitor")
    visitor.driver.get(link)
    visitor.heading("A secret was shared with you")
    assert not page_has_text(visitor, value)
    visitor.shot("share-open")
    visitor.click("Open the secret")
    box = visitor.find("//*[@aria-label='Shared value']")
    visitor.wait.until(lambda d: box.text == value)
    visitor.shot("share-opened")

    # The open was counted: the sender sees it on the Shares page, and so does the API.
    sender.link("Shares").click()
    sender.heading("Shares")
    row = sender.find("//table//tr[.//a[normalize-space(.)='shared/api-key']]")
    assert row.find_element(By.XPATH, "./td[@data-label='Opens']").text == "1"
    sender.shot("shares")
    outbound = owner.http.get("/v1/shares/outbound").json()["shares"]
    assert [s["access_count"] for s in outbound if s["secret_path"] == "shared/api-key"] == [1]

    # Revoking ends the link.
    sender.click("Revoke share of shared/api-key")
    sender.submit_dialog("Revoke share")
    sender.text_present("You have not shared anything")
    assert httpx.get(link, headers={"Accept": "application/json"}, timeout=30.0).status_code == 404


def test_a_share_addressed_to_a_member_is_accepted_then_opened(console, owner, vault_of, join_org) -> None:
    vault = vault_of()
    value = canary()
    secret = put_secret(owner, vault["id"], "team/token", value)
    member = join_org(owner, "member")
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    shared = owner.http.post(f"/v1/secrets/{secret['id']}/share", json={
        "recipient_type": "user", "recipient_id": member.user_id, "expires_at": expires})
    assert shared.status_code == 201, shared.text

    browser = console()
    browser.sign_in(member.email)
    browser.link("Shares").click()
    browser.heading("Shares")
    row = browser.find("//table//tr[.//*[normalize-space(.)='team/token']]")
    assert "waiting for acceptance" in row.text and not page_has_text(browser, value)
    browser.shot("inbound-pending")
    browser.click("Accept share of team/token")
    browser.submit_dialog("Accept")
    row = browser.find("//table//tr[.//*[normalize-space(.)='team/token'] and .//button[normalize-space(.)='Open']]")
    assert "accepted" in row.text
    browser.click("Open", row)
    box = browser.find("//*[@aria-label='Shared value of team/token']")
    browser.wait.until(lambda d: box.text == value)
    browser.shot("inbound-opened")
    inbound = member.http.get("/v1/shares/inbound").json()["shares"]
    assert [(s["status"], s["access_count"]) for s in inbound] == [("accepted", 1)]


# ---------------------------------------------------------------------------------------------------------------
# Approvals


def test_approving_a_gated_read_in_the_console_lets_the_agent_read(console, owner, vault_of, make_agent, agent_sdk) -> None:
    vault = vault_of()
    value = canary()
    put_secret(owner, vault["id"], "db/password", value)
    agent = make_agent(owner, name="gated-bot")
    resp = owner.http.post(f"/v1/vaults/{vault['id']}/policies", json={
        "principal_type": "agent", "principal_id": agent.id, "secret_path_pattern": "db/*", "permissions": ["read"],
        "conditions": {"require_approval": True}})
    assert resp.status_code == 201, resp.text
    client = agent_sdk(agent.key)
    refused = client.secrets.get(vault["id"], "db/password")
    assert refused.meta.status == 403 and refused.error.type == "approval_required"

    browser = console()
    browser.sign_in(owner.email)
    badge = browser.find("//nav//a[@data-section='approvals']/span[contains(@class,'count')]")
    assert badge.text == "1"
    browser.find("//nav//a[@data-section='approvals']").click()
    browser.heading("Approvals")
    card = browser.find("//article[.//code[.='db/password']]")
    assert "gated-bot" in card.text and "risk tier 1" in card.text
    browser.shot("approvals-pending")
    browser.click("Approve", card)
    dialog = browser.dialog()
    assert not dialog.find_elements(By.CSS_SELECTOR, "input[type=password]"), "a tier 1 request asked for a password"
    browser.submit_dialog("Approve")
    browser.text_present("Nothing waits for you")
    browser.wait.until(lambda d: not badge.is_displayed())

    assert client.secrets.get(vault["id"], "db/password").data["value"] == value


def test_a_risk_tier_2_request_asks_for_the_password(console, owner, make_agent, agent_sdk) -> None:
    agent = make_agent(owner, name="deployer")
    client = agent_sdk(agent.key)
    asked = client.approvals.request(action="deploy", target_type="service", target_id="billing",
                                     summary="ship release 42", reason="tests passed", risk_tier=2)
    assert asked.meta.status == 202, asked.error
    request_id = asked.data["id"]

    browser = console()
    browser.sign_in(owner.email)
    browser.go(f"#/approvals/{request_id}")
    browser.heading("Approval request")
    card = browser.find("//article")
    assert "risk tier 2" in card.text and "tests passed" in card.text and "ship release 42" in card.text
    browser.click("Approve", card)
    browser.fill("Your password", "Not-The-Password-1!")
    browser.expect_log(r"/decide - Failed to load resource: the server responded with a status of 403 \(Forbidden\)$")
    browser.submit_dialog("Approve")
    error = browser.find("//dialog[@open]//*[@role='alert']")
    detail = error.text
    assert detail, "the refusal was not explained"
    browser.shot("approval-wrong-password")
    assert client.approvals.get(request_id).data["status"] == "pending"

    browser.fill("Your password", PASSWORD)
    browser.submit_dialog("Approve")
    browser.no_dialog()
    browser.find("//article//span[contains(@class,'badge') and .='approved']")
    browser.shot("approval-approved")
    assert client.approvals.get(request_id).data["status"] == "approved"


def test_approving_an_agent_enrolment_shows_its_key_once(console, owner, server, agent_sdk) -> None:
    name = f"enrolled-{uuid.uuid4().hex[:8]}"
    asked = httpx.post(f"{server.url}/v1/agents/enroll", json={"name": name, "human_email": owner.email}, timeout=30.0)
    assert asked.status_code == 202, asked.text

    browser = console()
    browser.sign_in(owner.email)
    browser.go("#/approvals")
    browser.heading("Approvals")
    card = browser.find(f"//article[.//strong[.={xpath_literal(name)}]]")
    assert "risk tier 2" in card.text
    browser.click("Approve", card)
    browser.fill("Your password", PASSWORD)
    browser.submit_dialog("Approve")
    key = browser.control("Agent key").get_attribute("value")
    assert OCV_KEY_RE.fullmatch(key)
    browser.shot("enrolment-key-once")
    browser.click("Done")
    browser.no_dialog()
    assert not page_has_text(browser, key)

    me = agent_sdk(key).agents.me()
    assert me.meta.status == 200 and me.data["name"] == name


def test_the_page_a_quick_decide_link_lands_on_shows_the_request_after_sign_in(console, owner, vault_of, make_agent, agent_sdk) -> None:
    vault = vault_of()
    put_secret(owner, vault["id"], "db/password", canary())
    agent = make_agent(owner, name="quick-bot")
    assert owner.http.post(f"/v1/vaults/{vault['id']}/policies", json={
        "principal_type": "agent", "principal_id": agent.id, "secret_path_pattern": "db/*", "permissions": ["read"],
        "conditions": {"require_approval": True}}).status_code == 201
    assert agent_sdk(agent.key).secrets.get(vault["id"], "db/password").meta.status == 403
    pending = owner.http.get("/v1/approvals", params={"status": "pending"}).json()["approvals"]
    assert [a["target_id"] for a in pending] == ["db/password"]
    request_id = pending[0]["id"]
    assert owner.http.post(f"/v1/approvals/{request_id}/decide", json={"decision": "reject"}).status_code == 200

    # Where GET /v1/approvals/quick-decide redirects: the console's page of the request (signed out at first).
    browser = console()
    browser.open(f"approvals/{request_id}?decided=true")
    browser.heading("Sign in")
    browser.fill("Email", owner.email)
    browser.fill("Password", PASSWORD)
    browser.click("Sign in")
    browser.heading("Approval request")
    browser.text_present("This request was decided from its link: it is now rejected.")
    assert browser.driver.current_url.endswith(f"/#/approvals/{request_id}?decided=true")
    browser.shot("quick-decide-landing")


# ---------------------------------------------------------------------------------------------------------------
# Members and invitations


def test_invite_a_member_who_signs_up_with_the_code(console, owner) -> None:
    admin = console(label="owner")
    admin.sign_in(owner.email)
    admin.link("Members").click()
    admin.heading("Members")
    admin.text_present("You are the only member")
    admin.click("Invite someone")
    invitee = f"invited-{uuid.uuid4().hex[:10]}@example.com"
    admin.fill("Email address", invitee)
    admin.choose("Role", "Admin")
    admin.submit_dialog("Create invitation")
    code = admin.control("Invitation code").get_attribute("value")
    assert INVITE_RE.fullmatch(code)
    admin.shot("invitation-once")
    admin.click("Done")

    newcomer = console(label="invitee")
    newcomer.open("#/signup")
    newcomer.heading("Create an account")
    newcomer.fill("Email", invitee)
    newcomer.fill("Password", PASSWORD)
    newcomer.fill("Repeat the password", PASSWORD)
    newcomer.find("//summary[.='I have an invitation code']").click()
    newcomer.fill("Invitation code", code)
    newcomer.click("Create account")
    newcomer.heading("Vaults")
    assert newcomer.find("//*[contains(@class,'user-role')]").text == "admin"

    admin.go("#/vaults")
    admin.heading("Vaults")
    admin.go("#/members")
    admin.heading("Members")
    admin.find(f"//table//*[normalize-space(.)={xpath_literal(invitee)}]")
    admin.shot("members")
    members = owner.http.get("/v1/org/members").json()["members"]
    assert {m["email"]: m["role"] for m in members}[invitee] == "admin"


# ---------------------------------------------------------------------------------------------------------------
# Environment variables


def test_environment_variables_are_created_and_revealed(console, owner, vault_of) -> None:
    vault = vault_of()
    value = canary("postgres://")
    browser = console()
    browser.sign_in(owner.email)
    browser.go(f"#/vaults/{vault['id']}/env")
    browser.heading(vault["name"])
    browser.text_present("No environment variables yet")
    browser.click("New variable")
    browser.fill("Key", "DATABASE_URL")
    browser.fill("Value", value)
    browser.control("development").click()  # production and preview only
    browser.submit_dialog("Add variable")
    browser.find("//table//code[.='DATABASE_URL']")
    assert not page_has_text(browser, value), "a listed value is in the page before Reveal"
    browser.click("Reveal")
    browser.wait.until(lambda d: page_has_text(browser, value))
    browser.shot("env")
    listed = owner.http.get(f"/v1/vaults/{vault['id']}/env-vars").json()["env_vars"]
    assert [(v["key"], sorted(v["environments"])) for v in listed] == [("DATABASE_URL", ["preview", "production"])]


# ---------------------------------------------------------------------------------------------------------------
# Signing in and out


def test_sign_in_with_mfa(console, owner) -> None:
    setup = owner.http.post("/v1/auth/mfa/setup")
    assert setup.status_code == 200, setup.text
    totp = pyotp.parse_uri(setup.json()["otpauth_uri"])
    assert owner.http.post("/v1/auth/mfa/verify-setup", json={"code": totp.now()}).status_code == 200
    browser = console()
    browser.open()
    browser.fill("Email", owner.email)
    browser.fill("Password", PASSWORD)
    browser.click("Sign in")
    browser.heading("Two-step verification")
    browser.shot("mfa")
    # The next time step's code: the current one was spent confirming the setup (each step is accepted once).
    browser.fill("Code", totp.at(time.time() + 30))
    browser.click("Verify")
    browser.heading("Vaults")


def test_turn_on_two_step_verification_in_the_account_page(console, owner) -> None:
    browser = console()
    browser.sign_in(owner.email)
    browser.link("Account").click()
    browser.heading("Account")
    browser.click("Turn on")
    dialog = browser.dialog()
    uri = browser.find(".//code[starts-with(., 'otpauth://')]", dialog).text
    totp = pyotp.parse_uri(uri)
    browser.fill("Code from the app", totp.now())
    browser.shot("mfa-setup")
    browser.submit_dialog("Turn on")
    codes = browser.find("//dialog[@open]//pre").text.split()
    assert len(codes) == 8
    browser.shot("mfa-recovery-codes")
    browser.click("Done")
    browser.find("//dd//span[contains(@class,'badge') and .='on']")
    assert owner.http.get("/v1/auth/mfa/status").json()["enabled"] is True


def test_a_wrong_password_shows_the_problem_detail(console, owner, server) -> None:
    expected = httpx.post(f"{server.url}/console/session", json={"email": owner.email, "password": "Wrong-Horse-8-Battery?"}, timeout=30.0)
    assert expected.status_code == 401 and expected.headers["content-type"].startswith("application/problem+json")
    browser = console()
    browser.expect_log(r"/console/session - Failed to load resource: the server responded with a status of 401 \(Unauthorized\)$")
    browser.open()
    browser.fill("Email", owner.email)
    browser.fill("Password", "Wrong-Horse-8-Battery?")
    browser.click("Sign in")
    alert = browser.find("//*[@role='alert']")
    assert alert.text == expected.json()["detail"]
    browser.shot("wrong-password")


def test_an_expired_access_cookie_is_renewed_and_a_lost_session_returns_to_sign_in(console, owner, vault_of) -> None:
    vault = vault_of()
    browser = console()
    browser.sign_in(owner.email)

    def drop_cookie(name: str, path: str) -> None:
        browser.driver.execute_cdp_cmd("Network.deleteCookies", {"name": name, "domain": "127.0.0.1", "path": path})

    # Without the access cookie (as after its 15 minutes) the next call answers 401: the console renews the session
    # with the refresh cookie and retries, and the page loads.
    drop_cookie("keyhold_session", "/")
    browser.expect_log(r"/v1/vaults/[0-9a-f-]+ - Failed to load resource: the server responded with a status of 401 \(Unauthorized\)$")
    browser.go(f"#/vaults/{vault['id']}/secrets")
    browser.heading(vault["name"])
    assert "keyhold_session" in {c["name"] for c in browser.driver.get_cookies()}

    # Without either cookie the session cannot be renewed: back to sign-in, saying why, and then to the same page.
    drop_cookie("keyhold_session", "/")
    drop_cookie("keyhold_refresh", "/console/session")
    browser.expect_log(r"/v1/vaults - Failed to load resource: the server responded with a status of 401 \(Unauthorized\)$")
    browser.expect_log(r"/console/session/refresh - Failed to load resource: the server responded with a status of 401 \(Unauthorized\)$")
    browser.go("#/vaults")
    browser.heading("Sign in")
    browser.text_present("Your session has ended")
    browser.shot("session-ended")
    browser.fill("Email", owner.email)
    browser.fill("Password", PASSWORD)
    browser.click("Sign in")
    browser.heading("Vaults")


def test_sign_out_ends_the_session(console, owner, server) -> None:
    browser = console()
    browser.sign_in(owner.email)
    assert {c["name"] for c in browser.driver.get_cookies()} >= {"keyhold_session"}
    browser.click("Sign out")
    browser.heading("Sign in")
    browser.text_present("You have signed out.")
    assert "keyhold_session" not in {c["name"] for c in browser.driver.get_cookies()}
    browser.open("#/vaults")
    browser.heading("Sign in")  # a reload finds no session
    assert browser.driver.execute_script("return [localStorage.length, sessionStorage.length]") == [0, 0]


# ---------------------------------------------------------------------------------------------------------------
# Security: headers, CSP, CSRF


def test_console_responses_carry_the_security_headers_and_the_files_have_no_inline_code(server) -> None:
    for path, content_type in [("/", "text/html"), ("/console/js/app.js", "text/javascript"),
                               ("/console/css/console.css", "text/css"), ("/console/img/favicon.svg", "image/svg+xml")]:
        resp = httpx.get(f"{server.url}{path}", timeout=30.0)
        assert resp.status_code == 200, path
        assert resp.headers["content-type"].startswith(content_type), (path, resp.headers["content-type"])
        assert resp.headers["content-security-policy"] == CSP, path
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["referrer-policy"] == "no-referrer"
        assert resp.headers["x-frame-options"] == "DENY"
    html = httpx.get(f"{server.url}/", timeout=30.0).text
    assert re.findall(r"<script\b[^>]*>", html) == ['<script type="module" src="/console/js/app.js">']
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", html, re.I)
    # The sources: no markup from strings, no eval, no storage, no third-party origin.
    for file in CONSOLE_DIR.rglob("*.js"):
        text = file.read_text()
        for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                          "localStorage", "sessionStorage", "javascript:", "setAttribute('style'", "http://", "https://"):
            assert forbidden not in text, f"{file.name} uses {forbidden}"


def test_a_csrf_attempt_from_another_origin_creates_nothing(console, owner, server) -> None:
    browser = console()
    browser.sign_in(owner.email)
    target = f"{server.url}/v1/vaults"
    attack = f"""<!doctype html><html><head><title>pending</title></head><body>
<form id="f" method="POST" action="{target}" enctype="text/plain">
<input name='{{"name":"csrf-form","x":"' value='"}}'></form>
<script>
fetch("{target}", {{method: "POST", credentials: "include", headers: {{"Content-Type": "text/plain"}}, body: '{{"name":"csrf-fetch"}}'}})
  .then(r => {{ document.title = "fetch answered " + r.status; }}, e => {{ document.title = "fetch blocked"; }})
  .finally(() => document.getElementById("f").submit());
</script></body></html>"""
    with other_origin(attack) as url:
        browser.expect_log(r"has been blocked by CORS policy")
        browser.expect_log(r"/v1/vaults - Failed to load resource: net::ERR_FAILED$")
        browser.expect_log(r"/v1/vaults - Failed to load resource: the server responded with a status of 40[13] \((Unauthorized|Forbidden)\)$")
        # The form lands the browser on the API's error answer, for which Chromium asks for /favicon.ico.
        browser.expect_log(r"/favicon\.ico - Failed to load resource: ")
        browser.driver.get(url)
        WebDriverWait(browser.driver, WAIT_S).until(lambda d: d.current_url.startswith(target), "the form was not sent")
        # The SameSite=Strict cookie did not go along: the server saw no credentials at all.
        body = browser.driver.find_element(By.TAG_NAME, "body").text
        assert '"status":401' in body.replace(" ", ""), body
    # Same origin but without the CSRF header (a script that got in some other way): refused as well.
    browser.open()
    browser.heading("Vaults")
    status = browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/v1/vaults', {method: 'POST', credentials: 'same-origin', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({name: 'csrf-no-header'})}).then(r => done(r.status), e => done(String(e)));")
    assert status == 403
    names = [v["name"] for v in owner.http.get("/v1/vaults").json()["vaults"]]
    assert not [n for n in names if n.startswith("csrf")], names


@contextmanager
def other_origin(page: str) -> Iterator[str]:
    """Serves ``page`` at http://127.0.0.2:<port>/ (another origin, another site) while the block runs."""
    body = page.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.2", port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{port}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---------------------------------------------------------------------------------------------------------------
# Keyboard, labels, layout


def test_the_console_works_from_the_keyboard(console, owner) -> None:
    browser = console()
    browser.open()
    browser.heading("Sign in")
    active = browser.driver.switch_to.active_element
    assert active.get_attribute("name") == "email"  # the first field has focus
    active.send_keys(owner.email, Keys.TAB)
    browser.driver.switch_to.active_element.send_keys(PASSWORD, Keys.ENTER)
    browser.heading("Vaults")
    ActionChains(browser.driver).send_keys(Keys.TAB).perform()
    skip = browser.driver.switch_to.active_element
    assert skip.text == "Skip to content"
    skip.send_keys(Keys.ENTER)
    assert browser.driver.switch_to.active_element.get_attribute("id") == "main"
    browser.driver.switch_to.active_element.send_keys(Keys.TAB)
    new_vault = browser.driver.switch_to.active_element
    assert new_vault.text == "New vault"
    new_vault.send_keys(Keys.ENTER)
    dialog = browser.dialog()
    name = browser.driver.switch_to.active_element
    assert name.get_attribute("name") == "name"
    name.send_keys(Keys.ESCAPE)
    browser.no_dialog()
    assert browser.driver.switch_to.active_element.text == "New vault"  # focus returns to the opener
    new_vault.send_keys(Keys.ENTER)
    browser.dialog()
    vault_name = f"kbd-{uuid.uuid4().hex[:6]}"
    browser.driver.switch_to.active_element.send_keys(vault_name, Keys.ENTER)
    browser.heading(vault_name)
    assert dialog is not None


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop-1280x800", "phone-390x844"])
def test_every_page_fits_the_screen_and_labels_every_control(console, owner, vault_of, make_agent, agent_sdk, size) -> None:
    vault = vault_of("payments")
    put_secret(owner, vault["id"], "app/db/password", canary())
    secret = put_secret(owner, vault["id"], "app/stripe/api-key-with-a-rather-long-name-for-wrapping", canary())
    agent = make_agent(owner, name="tour-bot", vault_ids=[vault["id"]])
    assert owner.http.post(f"/v1/vaults/{vault['id']}/policies", json={
        "principal_type": "agent", "principal_id": agent.id, "secret_path_pattern": "app/**", "permissions": ["read"],
        "conditions": {"require_approval": True}}).status_code == 201
    assert agent_sdk(agent.key).secrets.get(vault["id"], "app/db/password").meta.status == 403  # a pending request
    share = owner.http.post(f"/v1/secrets/{secret['id']}/share", json={
        "recipient_type": "anyone_with_link", "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))})
    assert share.status_code == 201, share.text
    assert owner.http.post(f"/v1/vaults/{vault['id']}/env-vars", json={"key": "REGION", "value": "eu-west-1"}).status_code == 201

    browser = console(size=size)
    browser.sign_in(owner.email)
    assert browser.driver.execute_script("return window.innerWidth") == size[0]
    pages = [
        ("#/vaults", "Vaults", "vaults"),
        (f"#/vaults/{vault['id']}/secrets", "payments", "secrets"),
        (f"#/vaults/{vault['id']}/secret/app/db/password", "app/db/password", "secret"),
        (f"#/vaults/{vault['id']}/policies", "payments", "policies"),
        (f"#/vaults/{vault['id']}/env", "payments", "env-vars"),
        ("#/agents", "Agents", "agents"),
        (f"#/agents/{agent.id}", "tour-bot", "agent"),
        ("#/shares", "Shares", "shares"),
        ("#/approvals", "Approvals", "approvals"),
        ("#/audit", "Audit log", "audit"),
        ("#/members", "Members", "members"),
        ("#/env", "Shared variables", "shared-variables"),
        ("#/account", "Account", "account"),
    ]
    for route, heading, label in pages:
        browser.go(route)
        browser.heading(heading)
        width, viewport = browser.no_horizontal_scroll()
        assert width <= viewport, f"{route} scrolls sideways at {size}: {width} > {viewport}"
        assert browser.unlabelled_controls() == [], route
        browser.shot(label)

    # Dialogs fit too, and label their fields.
    for route, heading, opener in [("#/vaults", "Vaults", "New vault"),
                                   (f"#/vaults/{vault['id']}/secrets", "payments", "New secret"),
                                   ("#/agents", "Agents", "New agent"),
                                   (f"#/vaults/{vault['id']}/policies", "payments", "New policy"),
                                   (f"#/vaults/{vault['id']}/secret/app/db/password", "app/db/password", "Share")]:
        browser.go(route)
        browser.heading(heading)
        browser.click(opener)
        browser.dialog()
        width, viewport = browser.no_horizontal_scroll()
        assert width <= viewport, f"the {opener} dialog scrolls sideways at {size}"
        assert browser.unlabelled_controls() == [], opener
        browser.shot(f"dialog-{opener.lower().replace(' ', '-')}")
        ActionChains(browser.driver).send_keys(Keys.ESCAPE).perform()
        browser.no_dialog()

    if size == PHONE:
        menu = browser.button("Menu")
        nav = browser.driver.find_element(By.ID, "nav")
        assert menu.get_attribute("aria-expanded") == "false" and not nav.is_displayed()
        menu.click()
        browser.wait.until(lambda d: nav.is_displayed())
        assert menu.get_attribute("aria-expanded") == "true"
        browser.shot("menu-open")
        nav.find_element(By.LINK_TEXT, "Agents").click()
        browser.heading("Agents")
        browser.wait.until(lambda d: not nav.is_displayed())

    # The share page, as a visitor sees it at this size.
    visitor = console(size=size, label="visitor")
    visitor.driver.get(share.json()["share_url"])
    visitor.heading("A secret was shared with you")
    width, viewport = visitor.no_horizontal_scroll()
    assert width <= viewport
    assert visitor.unlabelled_controls() == []
    visitor.shot("share-page")
