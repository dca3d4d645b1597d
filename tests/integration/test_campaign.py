"""``offerbandit campaign`` against a real server: the send list, resuming without deciding
twice, bulk activation, contact policies in the batch, bad files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from offerbandit.campaign import Campaign, activate, audience, main, run
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
        counts = activate(c, tmp_path / "sent.csv")
        assert counts == {"activated": again.sent, "unknown": 1, "failed": 0}
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
