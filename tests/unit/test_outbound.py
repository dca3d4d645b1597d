"""The simulator's outbound mode: campaigns over every customer between the triggered events,
decided through the service with their id and holdout, scored apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bandit.choose import in_holdout
from bandit.sim import World, WorldConfig
from bandit.sim._catalog import CAMPAIGN_TRIGGER, DAY
from bandit.sim.driver import SimulationConfig, simulate_in_process
from bandit.sim.outbound import Outbound, with_campaigns
from offline_eval.io.logs import load_sqlite


def test_campaigns_interleave_without_touching_the_triggered_stream() -> None:
    plain = list(World(seed=2, config=WorldConfig(n_customers=50)).events(400))
    world = World(seed=2, config=WorldConfig(n_customers=50))
    merged = list(with_campaigns(world, world.events(400), Outbound(every_days=1.0, hour=9.0)))
    triggered = [e for e in merged if e.trigger.type != CAMPAIGN_TRIGGER]
    sent = [e for e in merged if e.trigger.type == CAMPAIGN_TRIGGER]
    assert [(e.event_id, e.time) for e in triggered] == [(e.event_id, e.time) for e in plain]
    days = (plain[-1].time - world.config.start_time) / DAY
    assert len(sent) == 50 * len({e.time for e in sent})
    assert abs(len({e.time for e in sent}) - days) <= 1.0
    assert all(((e.time / 3600.0) % 24.0) == 9.0 for e in sent)
    times = [e.time for e in merged]
    assert times == sorted(times)
    assert len({e.index for e in merged}) == len(merged)  # outcome draws never shared
    # the truth knows the campaign trigger: only outbound channels reach anyone
    values = world.expected_values(sent[:10])
    assert np.isfinite(values).all()


def test_an_outbound_run_logs_each_campaign_with_its_holdout(tmp_path: Path) -> None:
    config = SimulationConfig(
        seed=3, customers=120, decisions=300, campaign_every_days=1.0, campaign_holdout=0.25
    )
    report = simulate_in_process(config, tmp_path)
    c = report.campaigns
    assert c is not None
    assert c.decisions % 120 == 0
    assert c.decisions >= 120
    assert report.overall.decisions == 300 + c.decisions
    lb = load_sqlite(tmp_path, closed_only=False, progress=False)
    f = lb.frame
    for cid, rows in f[f["trigger_type"] == CAMPAIGN_TRIGGER].groupby("t.campaign"):
        assert len(rows) == 120
        expected = {cu for cu in rows["customer_id"] if in_holdout(cu, 0.25, f"campaign:{cid}")}
        assert set(rows[rows["holdout"]]["customer_id"]) == expected
        assert rows[rows["holdout"]]["is_control"].all()
    assert f[f["trigger_type"] != CAMPAIGN_TRIGGER]["t.campaign"].isna().all()
    assert "outbound campaigns:" in report.summary()
    assert report.to_dict()["campaigns"]["decisions"] == c.decisions
