"""deploy/: the systemd unit passes ``systemd-analyze verify`` (with ExecStart pointed at the binary under test),
and the Dockerfile builds the product this package declares from files that exist. (The image itself is built only
where a container runtime runs; the tests' machines have none.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import REPO_ROOT


def test_the_systemd_unit_verifies(server, tmp_path: Path) -> None:
    unit = (REPO_ROOT / "deploy" / "keyhold.service").read_text()
    assert "ExecStart=/usr/local/bin/keyhold serve" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    local = tmp_path / "keyhold.service"
    local.write_text(unit.replace("/usr/local/bin/keyhold", str(server.binary)))
    done = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (done.stdout + done.stderr).splitlines() if "keyhold.service" in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr


def test_the_dockerfile_builds_the_declared_product_from_files_that_exist() -> None:
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+) ", dockerfile, flags=re.MULTILINE):
        assert (REPO_ROOT / source).exists(), source
    assert '.executable(name: "keyhold"' in (REPO_ROOT / "Package.swift").read_text()
    assert "--product keyhold" in dockerfile and "Keyhold_KeyholdHTTP.resources" in dockerfile
    assert re.search(r"^USER keyhold$", dockerfile, flags=re.MULTILINE)
