"""Browser tests of the Keyhold web console: headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by
Selenium against a live server.

The server comes from the SDK suite's session fixture (``tests/sdk/conftest.py``: ``KEYHOLD_BIN``, default
``.build/release/keyhold``, a free port, a temporary data dir), reused here unchanged together with ``signup_user``,
``join_org``, ``make_agent`` and ``agent_sdk``. The server serves the console files built into it; with
``KEYHOLD_CONSOLE_DIR`` set in the environment it serves that folder instead (for working on the console without a
rebuild).

Each test opens fresh browsers (``console()``): a new WebDriver is a new browser context with no cookies. At the end
of the test every browser's console log (``goog:loggingPrefs``) must hold no SEVERE entry, besides the ones a test
expects by name (see ``Console.expect_log``). Screenshots of
the pages go to ``$KEYHOLD_BROWSER_ARTIFACTS`` or to ``browser-screenshots`` under pytest's temporary directory
(printed at the end of the run); they are not part of the repository.

Run: ``KEYHOLD_BIN=.build/release/keyhold python3 -m pytest tests/browser -q -p no:cacheprovider`` (needs
tests/sdk/requirements.txt and tests/browser/requirements.txt, and Debian's chromium and chromium-driver).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SDK_DIR = REPO_ROOT / "tests" / "sdk"

# The SDK suite's fixtures, loaded under a module name of their own (its helpers import ``support`` from its folder).
sys.path.insert(0, str(SDK_DIR))
_spec = importlib.util.spec_from_file_location("keyhold_sdk_conftest", SDK_DIR / "conftest.py")
assert _spec is not None and _spec.loader is not None
sdk_conftest = importlib.util.module_from_spec(_spec)
sys.modules["keyhold_sdk_conftest"] = sdk_conftest
_spec.loader.exec_module(sdk_conftest)

server = sdk_conftest.server
leak_watch = sdk_conftest.leak_watch
signup_user = sdk_conftest.signup_user
join_org = sdk_conftest.join_org
make_agent = sdk_conftest.make_agent
agent_sdk = sdk_conftest.agent_sdk

from browser_support import CHROMEDRIVER, CHROMIUM, DESKTOP, Console, new_driver  # noqa: E402

_artifacts_dir: Path | None = None


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$KEYHOLD_BROWSER_ARTIFACTS`` or a folder of this run's temporary directory."""
    global _artifacts_dir
    configured = os.environ.get("KEYHOLD_BROWSER_ARTIFACTS")
    folder = Path(configured) if configured else tmp_path_factory.getbasetemp() / "browser-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    _artifacts_dir = folder
    return folder


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _artifacts_dir is not None:
        terminalreporter.write_line(f"console screenshots: {_artifacts_dir}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Keeps each phase's report on the test item, so that ``console`` can screenshot a failed test's browsers."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser_binaries() -> None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (shutil.which(path) or Path(path).is_file()):
            pytest.fail(f"{path} is missing: install Debian's chromium and chromium-driver", pytrace=False)


@pytest.fixture
def console(server: Any, artifacts: Path, browser_binaries: None, request: pytest.FixtureRequest) -> Iterator[Callable[..., Console]]:
    """Factory: ``console(size=DESKTOP, label=None)`` opens a fresh browser (a new context: no cookies) on the
    server. At teardown each browser's log must hold no unexpected SEVERE entry."""
    opened: list[Console] = []
    test_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")

    def make(size: tuple[int, int] = DESKTOP, label: str | None = None) -> Console:
        name = f"{test_name}{'-' + label if label else ''}"
        browser = Console(driver=new_driver(size, server.url), base=server.url, shots=artifacts, name=name)
        opened.append(browser)
        return browser

    yield make
    report = getattr(request.node, "rep_call", None)
    problems = []
    for browser in opened:
        if report is not None and report.failed:
            try:
                print(f"screenshot of the failure: {browser.shot('failed')}")
            except Exception as exc:  # noqa: BLE001 - a diagnostic must not hide the failure
                print(f"no screenshot of the failure: {exc}")
        try:
            severe = browser.severe_entries()
        finally:
            browser.driver.quit()
        problems += [f"{browser.name}: {entry['message']}" for entry in severe]
    assert not problems, "SEVERE entries in the browser console:\n" + "\n".join(problems)


@pytest.fixture
def owner(signup_user: Callable[[], Any]) -> Any:
    """A fresh person with an org of their own (made through the SDK)."""
    return signup_user()


@pytest.fixture
def vault_of(owner: Any) -> Callable[..., dict[str, Any]]:
    """Factory: a vault of ``owner`` (through the API)."""

    def make(name: str | None = None) -> dict[str, Any]:
        resp = owner.http.post("/v1/vaults", json={"name": name or f"vault-{uuid.uuid4().hex[:8]}"})
        assert resp.status_code == 201, resp.text
        return resp.json()

    return make


