"""Helpers of the console's browser tests: a ``Console`` wraps one headless Chromium and finds things as a person
does (by label, button text, heading); constants and small API helpers."""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from support import PASSWORD

CHROMIUM = os.environ.get("KEYHOLD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("KEYHOLD_CHROMEDRIVER", "/usr/bin/chromedriver")
#: Upper bound of every wait for the page (a bound on waiting, never a speed requirement).
WAIT_S = 20
DESKTOP = (1280, 800)
PHONE = (390, 844)

#: A browser that opens the console without a session asks whether it has one (``GET /console/session``, then the
#: refresh cookie): both answer 401 when nobody is signed in, and Chromium logs every HTTP error status of a fetch as
#: "Failed to load resource", whatever the script does with it. These two entries are the only ones every test
#: tolerates; anything else SEVERE fails the test.


@dataclass
class Console:
    """One headless Chromium on the console, with helpers that find things the way a person does: by label, by
    button text, by heading."""

    driver: WebDriver
    base: str
    shots: Path
    name: str
    expected_log: list[str] = field(default_factory=list)

    # ---- navigation -------------------------------------------------------------------------------------------

    @property
    def wait(self) -> WebDriverWait:
        return WebDriverWait(self.driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))

    def open(self, route: str = "") -> None:
        """Loads ``/`` + ``route`` (e.g. ``#/vaults``) as a fresh page."""
        self.driver.get(f"{self.base}/{route}")

    def go(self, route: str) -> None:
        """Changes the hash route inside the running app (no reload), like clicking a link."""
        self.driver.execute_script("window.location.hash = arguments[0]", route)

    def heading(self, text: str, timeout: float = WAIT_S) -> WebElement:
        """Waits for the page's h1 to read ``text`` (and for its loading state to be gone)."""
        wait = WebDriverWait(self.driver, timeout, ignored_exceptions=(StaleElementReferenceException,))
        element = wait.until(lambda d: next((h for h in d.find_elements(By.TAG_NAME, "h1") if h.text.strip() == text), None),
                             f"no h1 reading {text!r}")
        self.settled()
        return element

    def settled(self) -> None:
        """Waits until no loading indicator is on the page."""
        self.wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#app .loading"), "the page kept loading")

    def shot(self, label: str) -> Path:
        path = self.shots / f"{self.name}--{label}.png"
        self.driver.save_screenshot(str(path))
        return path

    # ---- finding ----------------------------------------------------------------------------------------------

    def find(self, xpath: str, root: Any = None, *, in_dialog: bool = False) -> WebElement:
        """The first visible element at ``xpath`` under ``root`` (or, with ``in_dialog``, under whatever dialog or page
        is current at each attempt: dialogs open and close while we wait)."""

        def lookup(_: Any) -> WebElement | None:
            scope = root or (self.dialog_or_page() if in_dialog else self.driver)
            return next((e for e in scope.find_elements(By.XPATH, xpath) if e.is_displayed()), None)

        return self.wait.until(lookup, f"nothing visible at {xpath}")

    def text_present(self, text: str) -> WebElement:
        return self.find(f"//*[contains(normalize-space(.), {xpath_literal(text)}) and not(*[contains(normalize-space(.), {xpath_literal(text)})])]")

    def button(self, text: str, root: Any = None) -> WebElement:
        return self.find(f".//button[normalize-space(.)={xpath_literal(text)} or @aria-label={xpath_literal(text)}]", root, in_dialog=True)

    def click(self, text: str, root: Any = None) -> None:
        element = self.button(text, root)
        self.wait.until(lambda d: element.is_enabled(), f"button {text!r} stayed disabled")
        element.click()

    def link(self, text: str) -> WebElement:
        return self.find(f"//a[normalize-space(.)={xpath_literal(text)}]")

    def dialog(self) -> WebElement:
        return self.wait.until(lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, "dialog[open]")), None), "no dialog opened")

    def dialog_or_page(self) -> WebElement:
        dialogs = self.driver.find_elements(By.CSS_SELECTOR, "dialog[open]")
        return dialogs[-1] if dialogs else self.driver.find_element(By.TAG_NAME, "body")

    def no_dialog(self) -> None:
        self.wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "dialog[open]"), "the dialog stayed open")

    def control(self, label: str, root: Any = None) -> WebElement:
        """The input, select or textarea whose <label> reads ``label`` (the label's own text, optional mark aside)."""
        def lookup(_: Any) -> WebElement | None:
            scope = root or self.dialog_or_page()
            for lab in scope.find_elements(By.TAG_NAME, "label"):
                own = lab.get_attribute("textContent").replace("(optional)", "").strip()
                if own == label and lab.is_displayed():
                    target = lab.get_attribute("for")
                    if target:
                        return self.driver.find_element(By.ID, target)
            return None

        return self.wait.until(lookup, f"no control labelled {label!r}")

    def fill(self, label: str, value: str, root: Any = None) -> WebElement:
        element = self.control(label, root)
        element.clear()
        element.send_keys(value)
        return element

    def choose(self, label: str, option_text: str, root: Any = None) -> None:
        Select(self.control(label, root)).select_by_visible_text(option_text)

    def submit_dialog(self, text: str) -> None:
        self.click(text, self.dialog())

    # ---- session ----------------------------------------------------------------------------------------------

    def sign_in(self, email: str, password: str = PASSWORD) -> None:
        self.open()
        self.fill("Email", email)
        self.fill("Password", password)
        self.click("Sign in")
        self.heading("Vaults")

    # ---- checks -----------------------------------------------------------------------------------------------

    def expect_log(self, pattern: str) -> None:
        """Tolerates SEVERE log entries matching ``pattern`` (a regular expression) in this browser: for a test that
        provokes an error on purpose."""
        self.expected_log.append(pattern)

    def severe_entries(self) -> list[dict[str, Any]]:
        allowed = [re.compile(p) for p in self.expected_log]
        entries = self.driver.get_log("browser")
        return [e for e in entries if e["level"] == "SEVERE" and not any(a.search(e["message"]) for a in allowed)]

    def no_horizontal_scroll(self) -> tuple[int, int]:
        return self.driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")

    def unlabelled_controls(self) -> list[str]:
        """Visible form controls without an accessible label (a <label>, aria-label or aria-labelledby)."""
        return self.driver.execute_script(
            """
            const out = [];
            for (const el of document.querySelectorAll('input, select, textarea')) {
              if (el.type === 'hidden' || el.offsetParent === null && el.getClientRects().length === 0) continue;
              const labelled = (el.labels && el.labels.length > 0) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
              if (!labelled) out.push(el.outerHTML.slice(0, 120));
            }
            return out;
            """)


def xpath_literal(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    return "concat(" + ", \"'\", ".join(f"'{part}'" for part in text.split("'")) + ")"


def new_driver(size: tuple[int, int], base: str = "") -> WebDriver:
    """A headless Chromium whose viewport is ``size``. Below 500 px (a phone) the width comes from device emulation:
    a headless window is never narrower than 500 px. A server on ``https`` (the SDK suite's ``KEYHOLD_SDK_TLS=1``)
    has a certificate of a CA made for the session, which the browser is told to accept."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    window = (max(size[0], 500), size[1])
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={window[0]},{window[1]}",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--password-store=basic"):
        options.add_argument(arg)
    if size[0] < 500:
        options.add_experimental_option("mobileEmulation", {
            "deviceMetrics": {"width": size[0], "height": size[1], "pixelRatio": 1.0, "mobile": True, "touch": True}})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if base.startswith("https://"):
        options.accept_insecure_certs = True
    try:
        return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        pytest.fail(f"Chromium did not start: {exc.msg}", pytrace=False)


def canary(prefix: str = "CANARY-") -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def login_http(base_url: str, email: str, password: str = PASSWORD) -> httpx.Client:
    """An API client signed in with a password (for checking through the API what the console did)."""
    token = httpx.post(f"{base_url}/v1/auth/token", json={"email": email, "password": password}, timeout=30.0)
    assert token.status_code == 200, token.text
    return httpx.Client(base_url=base_url, timeout=30.0, headers={"Authorization": f"Bearer {token.json()['access_token']}"})


