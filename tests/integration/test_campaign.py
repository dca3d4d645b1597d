"""``offerbandit campaign`` against a real server: the send list, resuming without deciding
twice, bulk activation, contact policies in the batch, bad files."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bandit.choose import in_holdout
from offerbandit.campaign import ACTIVATION_COUNTS, Campaign, activate, audience, main, run
from offline_eval.io.logs import load_sqlite
from offline_eval.uplift.cli_uplift import main as uplift_main
from server.client import OfferBanditClient
from tests.conftest import ServerFactory

CAMPAIGN = """
id = "xmas-test"
trigger = "campaign_xmas"
planned_send_at = 2026-12-20T09:00:00+01:00
trigger_features = {season = "xmas"}

[[offer]]
id = "d10"
discount_rate = 0.1
features = {kind = "discount"}

[[offer]]
id = "ship"
fixed_cost = 4.0

[[channel]]
id = "email"
contact_cost = 0.01

[[channel]]
id = "sms"
contact_cost = 0.05
"""


def _files(tmp_path: Path, n: int) -> tuple[Path, Path]:
    (tmp_path / "c.toml").write_text(CAMPAIGN)
    stages = ["new", "active", "vip"]
    table = pa.table(
        {
            "customer_id": [f"cust-{i}" for i in range(n)],
            "stage": [stages[i % 3] for i in range(n)],
            "ltv": [float(i % 50) if i % 7 else None for i in range(n)],
        }
    )
    pq.write_table(table, tmp_path / "audience.parquet", row_group_size=64)
    return tmp_path / "c.toml", tmp_path / "audience.parquet"


def _counts(**nonzero: int) -> dict[str, int]:
    """``campaign activate``'s counts: every result named, these not zero."""
    counts = dict.fromkeys(ACTIVATION_COUNTS.values(), 0)
    counts.update({k.replace("_", " "): v for k, v in nonzero.items()})
    return counts


def test_a_campaign_resumes_without_deciding_twice_and_its_sends_activate(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    running = make_server(event_id_prefix="00000000000000ca")  # the same sampling every run
    campaign_file, audience_file = _files(tmp_path, 250)
    campaign = Campaign.load(campaign_file)
    with OfferBanditClient(running.address) as c:
        first = run(
            c, campaign, audience(audience_file), tmp_path / "part.csv", progress=False, limit=120
        )
        assert (first.decided, first.refused) == (120, 0)
        assert c.stats().decisions == 120  # … and the job dies here
        again = run(c, campaign, audience(audience_file), tmp_path / "send.parquet", progress=False)
        assert (again.decided, again.refused) == (250, 0)
        assert c.stats().decisions == 250  # the first 120 were not decided again
        part = pd.read_csv(tmp_path / "part.csv")
        sends = pd.read_parquet(tmp_path / "send.parquet")
        assert list(sends["customer_id"]) == [f"cust-{i}" for i in range(250)]
        assert list(sends["event_id"][:120]) == list(part["event_id"])
        assert set(sends["action"]) <= {"send", "control"}
        assert ((sends["action"] == "send") == (sends["offer_id"].fillna("") != "")).all()
        assert sends["propensity"].between(0, 1, inclusive="right").all()
        assert set(sends["planned_send_at"]) == {"2026-12-20T09:00:00+01:00"}
        logged = c.get_decision(sends["event_id"][7])
        assert logged.deferred
        assert not logged.HasField("activated_at")
        assert "ltv" not in logged.customer.features  # cust-7 has no ltv: left out
        # the platform sent the "send" rows: bulk activation
        sent = sends[sends["action"] == "send"][["event_id"]]
        assert len(sent) == again.sent > 0
        sent = pd.concat([sent, pd.DataFrame({"event_id": ["no-such-event"]})])
        sent.to_csv(tmp_path / "sent.csv", index=False)
        counts = activate(c, tmp_path / "sent.csv", progress=False)
        assert counts == _counts(activated=again.sent, unknown=1)
        assert c.get_decision(sent["event_id"].iloc[0]).HasField("activated_at")


def test_contact_policies_hold_in_the_batch(make_server: ServerFactory, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[[cap]]\nname = 'no sms'\nchannel = 'sms'\nmax = 0\ndays = 1\n")
    running = make_server(contact_policy=policy)
    campaign_file, audience_file = _files(tmp_path, 60)
    with OfferBanditClient(running.address) as c:
        run(
            c,
            Campaign.load(campaign_file),
            audience(audience_file),
            tmp_path / "s.csv",
            progress=False,
        )
    sends = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)
    assert len(sends) == 60
    assert "sms" not in set(sends["channel_id"])


def test_bad_files_are_refused_with_a_message(tmp_path: Path, capsys: object) -> None:
    (tmp_path / "bad.toml").write_text('id = "x"\ntrigger = "t"\n')
    (tmp_path / "a.csv").write_text("customer_id,stage\nc1,new\n")
    code = main(
        ["run", "--campaign", str(tmp_path / "bad.toml"), "--audience", str(tmp_path / "a.csv"),
         "--out", str(tmp_path / "o.csv"), "--server", "127.0.0.1:1"]
    )  # fmt: skip
    assert code == 2
    assert not (tmp_path / "o.csv").exists()


def test_a_campaign_holdout_is_logged_and_its_uplift_reported(
    make_server: ServerFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A campaign with ``holdout = 0.3``: exactly the customers the keyed hash puts in the
    holdout get control with certainty, logged as holdout decisions; after the sends, the
    control and holdout rows are activated and the windows close, ``offerbandit uplift
    --campaign`` reports targeted minus holdout mean net revenue per customer — the value
    worked out here from the logged rewards."""
    data = tmp_path / "data"
    running = make_server(
        data_dir=data,
        event_id_prefix="00000000000000cb",
        attribution_window_seconds=1.5,
        close_interval_seconds=0.2,
    )
    campaign_file, audience_file = _files(tmp_path, 300)
    campaign_file.write_text(
        CAMPAIGN.replace('id = "xmas-test"', 'id = "xmas-test"\nholdout = 0.3')
    )
    campaign = Campaign.load(campaign_file)
    assert campaign.holdout == 0.3
    with OfferBanditClient(running.address) as c:
        summary = run(c, campaign, audience(audience_file), tmp_path / "send.csv", progress=False)
        sends = pd.read_csv(tmp_path / "send.csv", keep_default_na=False)
        expected = {
            f"cust-{i}" for i in range(300) if in_holdout(f"cust-{i}", 0.3, "campaign:xmas-test")
        }
        held = sends[sends["action"] == "holdout"]
        assert set(held["customer_id"]) == expected
        assert summary.holdout == len(expected) > 0
        assert (held["propensity"] == 1.0).all()
        assert (held["offer_id"] == "").all()
        logged = c.get_decision(str(held["event_id"].iloc[0]))
        assert logged.policy == "holdout"
        assert logged.trigger.features["campaign"].text == "xmas-test"
        sent = sends[sends["action"] == "send"]
        sent[["event_id"]].to_csv(tmp_path / "sent.csv", index=False)
        counts = activate(c, tmp_path / "sent.csv", send_list=tmp_path / "send.csv")
        assert counts == _counts(activated=300)
        # everyone buys once; a sent customer buys for more
        for i, row in enumerate(sends.itertuples()):
            revenue = 60.0 if row.action == "send" else 20.0 + (i % 3)
            c.record_outcome(f"o-{i}", event_id=row.event_id, revenue=revenue)
        deadline = time.monotonic() + 60.0
        while c.stats().closed_decisions < 300:
            assert time.monotonic() < deadline, "windows did not close"
            time.sleep(0.2)
    lb = load_sqlite(data, progress=False)
    rows = lb.frame[lb.frame["t.campaign"] == "xmas-test"]
    assert len(rows) == 300
    diff = rows[~rows["holdout"]]["reward"].mean() - rows[rows["holdout"]]["reward"].mean()
    code = uplift_main(
        ["--log", str(data), "--campaign", "xmas-test", "--no-mlflow", "--no-progress",
         "--out", str(tmp_path / "report")]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert f"campaign xmas-test: 300 closed decisions — {len(sent)} sent" in out
    assert f"{len(expected)} in the holdout" in out
    assert f"incremental net revenue per targeted customer: {diff:+.2f} EUR" in out
    assert uplift_main(["--log", str(data), "--campaign", "nope", "--no-mlflow"]) == 1
    assert "campaigns with closed decisions: xmas-test" in capsys.readouterr().err


def test_a_campaign_decided_in_process_resumes_and_reports_refusals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``campaign run --data-dir``: the service in this process, the same send list, a
    re-run deciding nobody twice, a refused customer as an error row."""
    campaign_file, _ = _files(tmp_path, 1)
    campaign_file.write_text(
        CAMPAIGN.replace('id = "xmas-test"', 'id = "xmas-test"\nholdout = 0.2')
    )
    rows = ["customer_id,stage,ltv"] + [f"cust-{i},new,{i}" for i in range(150)]
    rows[43] = "cust-42,new,inf"  # a number the service refuses, naming the field
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")
    data = tmp_path / "data"
    args = ["run", "--campaign", str(campaign_file), "--audience", str(tmp_path / "a.csv"),
            "--data-dir", str(data)]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "s1.csv")]) == 0
    assert "150 customers" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "s2.csv")]) == 0
    first = pd.read_csv(tmp_path / "s1.csv", keep_default_na=False)
    second = pd.read_csv(tmp_path / "s2.csv", keep_default_na=False)
    assert list(first["event_id"]) == list(second["event_id"])  # decided once
    refused = first[first["error"] != ""]
    assert list(refused["customer_id"]) == ["cust-42"]
    assert "customer.features['ltv']" in refused["error"].iloc[0]
    lb = load_sqlite(data, closed_only=False, progress=False)
    assert lb.n == 149
    expected = {
        f"cust-{i}"
        for i in range(150)
        if i != 42 and in_holdout(f"cust-{i}", 0.2, "campaign:xmas-test")
    }
    assert set(first[first["action"] == "holdout"]["customer_id"]) == expected
    assert set(lb.frame[lb.frame["holdout"]]["customer_id"]) == expected
    assert lb.frame["deferred"].all()
