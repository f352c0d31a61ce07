"""TLS (``--tls-cert``, ``--tls-key``, ``--tls-client-ca``): TLS 1.2 or later only, the certificate reloaded on
SIGHUP without dropping an open connection, client certificates required with a client CA, files that do not load
refused at start, and a warning when the server listens beyond loopback without TLS. Each test runs a server of its
own with a CA made for it (the whole suite also runs over TLS once: ``KEYHOLD_SDK_TLS=1`` in scripts/test)."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import _free_port, make_tls_files, private_server


def trusting(ca: Path, client: tuple[str, str] | None = None) -> ssl.SSLContext:
    """A client context that trusts ``ca`` (and presents ``client``'s certificate and key)."""
    context = ssl.create_default_context(cafile=str(ca))
    if client:
        context.load_cert_chain(*client)
    return context


def peer_common_name(port: int, ca: Path) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            subject = dict(item[0] for item in tls.getpeercert()["subject"])
            return subject["commonName"]


@pytest.fixture
def tls_server(server, tmp_path: Path):
    files = make_tls_files(tmp_path / "tls", "first")
    options = ["--tls-cert", str(files["cert"]), "--tls-key", str(files["key"])]
    with private_server(server, tmp_path, options=options, scheme="https") as srv:
        yield srv, files


def test_the_api_answers_over_tls_with_a_verified_certificate(tls_server) -> None:
    srv, files = tls_server
    resp = httpx.get(f"{srv.url}/v1/health", verify=trusting(files["ca"]), timeout=30)
    assert resp.status_code == 200 and resp.json()["status"] == "healthy"
    # Plain HTTP on the TLS port gets no answer.
    with pytest.raises(httpx.HTTPError):
        httpx.get(srv.url.replace("https://", "http://") + "/v1/health", timeout=10)


def test_only_tls_1_2_and_later(tls_server) -> None:
    srv, files = tls_server
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = ssl.create_default_context(cafile=str(files["ca"]))
        context.minimum_version = context.maximum_version = version
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                assert tls.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(cafile=str(files["ca"]))
    try:
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    except ValueError:
        pytest.fail("this Python cannot offer TLS 1.1, so the refusal cannot be checked")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        with pytest.raises(ssl.SSLError):
            old.wrap_socket(sock, server_hostname="127.0.0.1").do_handshake()


def test_sighup_reloads_the_certificate_without_dropping_open_connections(tls_server) -> None:
    srv, files = tls_server
    assert peer_common_name(srv.port, files["ca"]) == "first"
    with httpx.Client(base_url=srv.url, verify=trusting(files["ca"]), timeout=30) as open_connection:
        assert open_connection.get("/v1/health").status_code == 200
        # New files in place of the old, then SIGHUP.
        second = make_tls_files(files["ca"].parent, "second")
        files["cert"].write_bytes(second["cert"].read_bytes())
        files["key"].write_bytes(second["key"].read_bytes())
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30  # bounds the wait for the reload, not its speed
        while peer_common_name(srv.port, files["ca"]) != "second":
            assert time.monotonic() < deadline, "the new certificate was not served after SIGHUP"
            time.sleep(0.2)
        # The connection opened before the reload still answers, on its old session.
        assert open_connection.get("/v1/health").status_code == 200
    # A reload from files that do not load keeps the certificate in use.
    files["key"].write_text("not a key\n")
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "TLS reload failed" not in srv.log_path.read_text():
        assert time.monotonic() < deadline, "no word of the failed reload in the log"
        time.sleep(0.2)
    assert srv.running and peer_common_name(srv.port, files["ca"]) == "second"


def test_a_client_ca_makes_client_certificates_required(server, tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls", "server")
    client = make_tls_files(tmp_path / "tls", "client")  # the same CA signs the client's certificate
    stranger = make_tls_files(tmp_path / "other-ca", "client")  # another CA
    options = ["--tls-cert", str(files["cert"]), "--tls-key", str(files["key"]), "--tls-client-ca", str(files["ca"])]
    pair = (str(client["cert"]), str(client["key"]))
    with private_server(server, tmp_path, options=options, scheme="https", client_cert=pair) as srv:
        url = f"{srv.url}/v1/health"
        assert httpx.get(url, verify=trusting(files["ca"], pair), timeout=30).status_code == 200
        for cert in (None, (str(stranger["cert"]), str(stranger["key"]))):
            with pytest.raises(httpx.HTTPError):
                httpx.get(url, verify=trusting(files["ca"], cert), timeout=10)


def test_unusable_tls_files_stop_the_server_at_start(server, tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls", "server")
    cases = [
        (["--tls-cert", str(files["cert"])], "--tls-cert and --tls-key go together"),
        (["--tls-cert", str(files["cert"]), "--tls-key", str(tmp_path / "missing.pem")], "TLS certificate or key"),
        (["--tls-cert", str(files["key"]), "--tls-key", str(files["key"])], "TLS certificate or key"),
    ]
    for options, message in cases:
        done = subprocess.run(
            [str(server.binary), "serve", "--port", str(_free_port()), "--data-dir", str(tmp_path / "data"), *options],
            capture_output=True, text=True, timeout=60)
        assert done.returncode != 0, options
        assert message in done.stdout + done.stderr, (options, done.stderr[-2000:])


def test_listening_beyond_loopback_without_tls_is_warned_about(server, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(server.binary), "serve", "--host", "0.0.0.0", "--port", str(_free_port()), "--data-dir",
             str(tmp_path / "data")], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "Keyhold is listening" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        assert "Listening without TLS on a non-loopback address" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
