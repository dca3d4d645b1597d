"""A contact policy's removals and digest reach the exports: Parquet, CSV and DSJson, and
the log's own reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bandit.contact import ContactPolicy
from bandit.eligibility import ChooseInput
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.types import Channel, Customer, Offer, Trigger
from offline_eval.io.export import export_log
from offline_eval.io.logs import load_sqlite
from offline_eval.io.read import read_dsjson, read_parquet

POLICY = "[[quiet_hours]]\nname = 'quiet'\nchannel = 'sms'\nstart = '00:00'\nend = '23:59'\n"


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("contact-export")
    svc = DecisionService(
        ServiceConfig(
            data_dir=data,
            policy="vw",
            background=False,
            event_id_prefix="00000000000000e1",
            contact_policy=ContactPolicy.parse(POLICY),
        ),
        ManualClock(1_800_000_000.0),
    )
    svc.start()
    try:
        for i in range(5):
            svc.choose(
                ChooseInput(
                    Customer(f"c{i}"),
                    Trigger("login"),
                    (Offer("a"), Offer("b")),
                    (Channel("email"), Channel("sms")),
                )
            )
    finally:
        svc.stop()
    return data


REMOVED = [["a", "sms", "quiet"], ["b", "sms", "quiet"]]


@pytest.mark.parametrize("fmt", ["parquet", "dsjson", "sqlite"])
def test_the_removals_and_digest_are_exported(log_dir: Path, tmp_path: Path, fmt: str) -> None:
    digest = ContactPolicy.parse(POLICY).digest
    if fmt == "sqlite":
        got = load_sqlite(log_dir, closed_only=False, progress=False)
    else:
        out = tmp_path / f"log.{fmt}"
        export_log(log_dir, out, fmt=fmt, closed_only=False, progress=False)
        got = read_parquet(out) if fmt == "parquet" else read_dsjson(out, progress=False)
    assert got.n == 5
    assert got.frame["contact_policy"].tolist() == [digest] * 5
    assert [json.loads(x) for x in got.frame["removed"]] == [REMOVED] * 5
    assert got.frame["n_treatments"].tolist() == [3] * 5  # control, a@email, b@email
