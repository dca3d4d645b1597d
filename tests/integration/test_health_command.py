"""``offerbandit health`` (the container's HEALTHCHECK) against a real server: exit 0 while it
is SERVING, plaintext or TLS, 1 once it is shutting down, 2 when nothing answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from offerbandit.health import main
from server.app import start_server
from server.settings import Settings
from tests.tls import make_pki


def test_health_follows_the_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    running = start_server(Settings.load(host="127.0.0.1", port=0, data_dir=tmp_path / "d"))
    try:
        assert main(["--address", running.address]) == 0
        assert capsys.readouterr().out == f"{running.address}: SERVING\n"
        assert (
            main(["--address", running.address, "--service", "offerbandit.v1.DecisionService"]) == 0
        )
        running.enter_graceful_shutdown()
        assert main(["--address", running.address]) == 1
        assert "NOT_SERVING" in capsys.readouterr().out
    finally:
        running.stop(grace=1.0)
    assert main(["--address", running.address, "--timeout", "1"]) == 2
    assert "no answer" in capsys.readouterr().err


def test_health_over_tls_with_the_certificates_name(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    tokens = tmp_path / "tokens.toml"
    tokens.write_text("")
    running = start_server(
        Settings.load(
            host="127.0.0.1",
            port=0,
            data_dir=tmp_path / "d",
            tls_cert_file=pki.server_cert,
            tls_key_file=pki.server_key,
            tokens_file=tokens,  # health needs no token
        )
    )
    try:
        address = f"localhost:{running.port}"
        assert main(["--address", address, "--ca-file", str(pki.ca)]) == 0
        assert main([
            "--address", running.address, "--ca-file", str(pki.ca), "--server-name", "localhost"
        ]) == 0  # fmt: skip
        assert main(["--address", running.address, "--timeout", "1"]) == 2  # plaintext: refused
    finally:
        running.stop(grace=1.0)
