"""Erasure (the right to be forgotten) while a real server runs: afterwards neither the
customer's id nor a feature value is anywhere in the log's files, byte for byte."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from bandit.log.sqlite.erasure import erase_customer
from offerbandit.admin import erase_main
from server.app import start_server
from server.client import OfferBanditClient
from server.settings import Settings
from tests.conftest import CHANNELS, OFFERS, customer, trigger

WHO = "cust-erase-me-7731"
SECRET = "zz-unique-feature-9937"


def _files(data: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in data.glob("decisions.sqlite*") if p.is_file()}


def test_an_erased_customer_leaves_no_bytes_and_the_figures_stay(tmp_path: Path) -> None:
    data = tmp_path / "data"
    running = start_server(Settings.load(host="127.0.0.1", port=0, data_dir=data))
    try:
        with OfferBanditClient(running.address) as c:
            mine = [
                c.choose(customer(WHO, email_hash=SECRET, n=float(i)), trigger(), OFFERS, CHANNELS)
                for i in range(12)
            ]
            others = [
                c.choose(customer(f"other-{i}"), trigger(), OFFERS, CHANNELS) for i in range(12)
            ]
            c.record_outcome("erase-o1", event_id=mine[0].event_id, revenue=30.0)
            c.record_outcome("erase-o2", customer_id=WHO, revenue=12.0)
            before = c.stats()
            assert any(WHO.encode() in b for b in _files(data).values())
            # erase while the server runs
            assert erase_main(["--data-dir", str(data), "--customer", WHO]) == 0
            after = c.stats()
            logged = c.get_decision(mine[3].event_id)
            assert logged.customer.id.startswith("erased:")
            assert not logged.customer.features
            assert c.get_decision(others[0].event_id).customer.id == "other-0"
            # the business's figures do not change
            assert (after.decisions, after.outcomes_attributed) == (
                before.decisions,
                before.outcomes_attributed,
            )
            # the erased customer's outcome, resent, is no longer matched to its old payload
            with pytest.raises(grpc.RpcError) as resent:
                c.record_outcome("erase-o2", customer_id=WHO, revenue=12.0)
            assert resent.value.code() == grpc.StatusCode.ALREADY_EXISTS
            files = _files(data)
            for name, content in files.items():
                assert WHO.encode() not in content, name
                assert SECRET.encode() not in content, name
    finally:
        running.stop(grace=1.0)
    for name, content in _files(data).items():  # and after the shutdown's own checkpoint
        assert WHO.encode() not in content, name
        assert SECRET.encode() not in content, name


def test_erasing_nobody_changes_nothing_and_an_id_is_required(tmp_path: Path) -> None:
    data = tmp_path / "data"
    running = start_server(Settings.load(host="127.0.0.1", port=0, data_dir=data))
    running.stop(grace=1.0)
    done = erase_customer(data / "decisions.sqlite", "never-seen")
    assert (done.decisions, done.outcomes, done.wal_truncated) == (0, 0, True)
    with pytest.raises(ValueError, match="customer_id: required"):
        erase_customer(data / "decisions.sqlite", "")
