"""The access log and request ids over real gRPC, and JSON log lines."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import grpc
import pytest

from server.app import start_server
from server.client import OfferBanditClient, choose_request
from server.logs import JsonFormatter, RequestIdFilter
from server.settings import Settings
from tests.conftest import CHANNELS, OFFERS, customer, trigger


def _access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "offerbandit.access"]


def test_each_call_is_logged_once_with_its_status_and_request_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    running = start_server(
        Settings.load(host="127.0.0.1", port=0, data_dir=tmp_path / "d", access_log=True)
    )
    # for the whole test: an aborted call's status reaches the client before its handler's
    # last line runs; stopping the server waits for that line
    caplog.set_level(logging.INFO, logger="offerbandit.access")
    try:
        with OfferBanditClient(running.address) as c:
            req = choose_request(customer(), trigger(), OFFERS, CHANNELS)
            c.stub.Choose(req, timeout=10, metadata=(("x-request-id", "abc-123"),))
            with pytest.raises(grpc.RpcError):
                c.get_decision("nope")
    finally:
        running.stop(grace=1.0)
    lines = _access(caplog)
    assert [(r.method, r.code) for r in lines] == [("Choose", "OK"), ("GetDecision", "NOT_FOUND")]  # type: ignore[attr-defined]
    assert lines[0].request_id == "abc-123"  # type: ignore[attr-defined]
    generated = lines[1].request_id  # type: ignore[attr-defined]
    assert len(generated) == 16
    assert int(generated, 16) >= 0
    assert all(r.ms >= 0 for r in lines)  # type: ignore[attr-defined]
    assert "stage" not in caplog.text  # no customer context in the log


def test_no_access_log_by_default(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    running = start_server(Settings.load(host="127.0.0.1", port=0, data_dir=tmp_path / "d"))
    try:
        with caplog.at_level(logging.INFO), OfferBanditClient(running.address) as c:
            c.stats()
    finally:
        running.stop(grace=1.0)
    assert _access(caplog) == []


def test_json_lines_carry_the_request_id_and_the_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "server.errors", logging.ERROR, "f", 1, "failed: %s", ("x",), exc_info
    )
    record.request_id = "r-9"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed: x"
    assert line["level"] == "ERROR"
    assert line["request_id"] == "r-9"
    assert "RuntimeError: boom" in line["exc"]
    assert line["ts"].endswith("+00:00")
