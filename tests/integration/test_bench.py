"""``offerbandit bench`` runs end to end: a real server process, real gRPC, a printed table."""

from __future__ import annotations

import re

import pytest

from offerbandit.bench import main


def test_bench_prints_rates_and_ratios_for_every_measurement(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--seconds", "0.6", "--concurrency", "1", "2", "--treatments", "10", "--rounds", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = re.findall(
        r"^(health|choose/10)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s",
        out,
        re.M,
    )
    assert [(name, int(conc)) for name, conc, *_ in rows] == [
        ("health", 1),
        ("choose/10", 1),
        ("health", 2),
        ("choose/10", 2),
    ]
    for _, _, calls, rate, p50, p99, server_us in rows:
        assert int(calls) > 0
        assert int(rate) > 0
        assert 0 < float(p50) <= float(p99)
        assert 0 < int(server_us) < 1_000_000  # the server's CPU per call, read from /proc
    # Choose rows carry the ratio to the health check, its range over the rounds and the
    # rounds' median, which lies within that range.
    spreads = re.findall(r"^choose/10 .* \d+%\s+(\d+)%–(\d+)%\s+(\d+)%$", out, re.M)
    assert len(spreads) == 2
    for low, high, median in spreads:
        assert int(low) <= int(median) <= int(high)
