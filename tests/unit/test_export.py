"""Export of the joined log (Parquet, VW DSJson, CSV) and import back into a LoggedBandit."""

from __future__ import annotations

import json
import math
import random
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit.eligibility import ChooseInput
from bandit.learner import decision_lines
from bandit.logcodec import decode_catalogue, decode_head
from bandit.records import OutcomeInput
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.types import Channel, Customer, Offer, Trigger
from bandit.vwformat import label_prefix, reward_to_cost
from offline_eval.estimators import SNIPS
from offline_eval.io.cli_export import main
from offline_eval.io.dsjson import decode_features, features_json, parse_dsjson_line
from offline_eval.io.export import DEFAULT_REWARD_SCALE, export_log
from offline_eval.io.logs import BASE_COLUMNS, LoggedBandit, contexts, load_outcomes, load_sqlite
from offline_eval.io.read import read_dsjson, read_parquet, read_table

N_CLOSED = 240
N_OPEN = 7
START = 1_700_000_000.0

HOSTILE = ["plain", "with space", "a|b", "k:v", 'say "hi"', "naïve ☃ €", "tab\there", "100%"]


def _build_log(data_dir: Path) -> None:
    """A real service log: closed decisions (some with purchases), then a few open ones."""
    # A fixed event-id prefix makes the log the same in every run (event ids seed the
    # sampling). VW's text parser rounds decimals to float32 less exactly than its DSJson
    # parser (0.123456789 → 0.123456776 instead of 0.123456791), so whether the two files'
    # training agrees to the last printed digit depends on the data: it must not vary.
    cfg = ServiceConfig(
        data_dir=data_dir, background=False, synchronous="OFF", event_id_prefix="00000000000000e7"
    )
    clock = ManualClock(START)
    svc = DecisionService(cfg, clock)
    svc.start()
    offers = [
        Offer("free ship|x", {"kind": "ship ping", "value:eur": 1.5}, fixed_cost=2.0),
        Offer('d:10 "€"', {"kind": 'q"uote', "tags": ("a b", "c|d")}, discount_rate=0.1),
    ]
    channels = [
        Channel("email", {"instant": False}, contact_cost=0.01),
        Channel("sms ☎", {"instant": True, "len limit": 160.0}, contact_cost=0.05),
    ]
    rng = random.Random(7)
    for i in range(N_CLOSED + N_OPEN):
        if i == N_CLOSED:
            clock.advance(10**8)
            while svc.close_due_windows():
                pass
        h = HOSTILE[i % len(HOSTILE)]
        customer = Customer(
            f"cust {h} {i % 40}",
            {
                "stage": h,
                h: float(i % 13) - 3.25,
                "consent email": i % 2 == 0,
                "interests": ("shoes", h) if i % 4 else (),
                "ünï|code": "ça:va",
            },
        )
        trigger = Trigger(
            "cart abandoned" if i % 2 else "login:web|app", {"cart value": float(i % 7)}
        )
        d = svc.choose(ChooseInput(customer, trigger, offers, channels))
        if rng.random() < 0.4:
            revenue = 20.0 + 10 * rng.random()
            svc.record_outcome(OutcomeInput(f"o{i}", d.event_id, "", "purchase", revenue, None))
        clock.advance(1.0)
    svc.record_outcome(OutcomeInput("orphan", "", "nobody", "purchase", 5.0, None))
    svc.log.close()


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("log")
    _build_log(d)
    return d


@pytest.fixture(scope="module")
def reference(log_dir: Path) -> LoggedBandit:
    return load_sqlite(log_dir, progress=False)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12)
    return bool(a == b)


def assert_same_log(got: LoggedBandit, ref: LoggedBandit) -> None:
    assert got.n == ref.n
    for col in BASE_COLUMNS:
        for i, (a, b) in enumerate(
            zip(ref.frame[col].tolist(), got.frame[col].tolist(), strict=True)
        ):
            assert _same(a, b), f"{col}[{i}]: {a!r} != {b!r}"
    np.testing.assert_allclose(got.pmf, ref.pmf, rtol=0, atol=1e-15)
    for i in range(ref.n):
        assert contexts(got, i) == contexts(ref, i)
        cat_ref = ref.catalogues[int(ref.frame["catalogue_id"][i])]
        assert got.catalogues[int(got.frame["catalogue_id"][i])] == cat_ref
    a, b = got.bandit_data(), ref.bandit_data()
    np.testing.assert_array_equal(a.rewards, b.rewards)
    np.testing.assert_array_equal(a.chosen, b.chosen)
    np.testing.assert_array_equal(a.propensities, b.propensities)


def test_reference_log_is_what_the_tests_expect(reference: LoggedBandit) -> None:
    assert reference.n == N_CLOSED
    assert reference.frame["n_outcomes"].sum() > 0
    assert (reference.frame["c.interests"].map(len) == 0).any()  # empty tag lists too


def test_dsjson_round_trip(log_dir: Path, reference: LoggedBandit, tmp_path: Path) -> None:
    out = tmp_path / "log.json"
    result = export_log(log_dir, out, fmt="dsjson", progress=False, chunk_size=17)
    assert result.rows == N_CLOSED
    assert_same_log(read_dsjson(out, progress=False), reference)


def test_dsjson_fields_follow_the_decision_service_format(
    log_dir: Path, reference: LoggedBandit, tmp_path: Path
) -> None:
    out = tmp_path / "log.json"
    export_log(log_dir, out, fmt="dsjson", reward_scale=0.5, progress=False)
    lines = out.read_text(encoding="utf-8").splitlines()
    for line, (_, row) in zip(lines, reference.frame.iterrows(), strict=True):
        obj = json.loads(line)
        chosen = int(row["chosen"])
        keys = list(obj)
        assert keys.index("_labelIndex") < keys.index("c")  # VW applies labels when c ends
        assert obj["_label_cost"] == reward_to_cost(row["reward"], 0.5)
        assert obj["_label_probability"] == row["propensity"]
        assert obj["_label_Action"] == chosen + 1
        assert obj["_labelIndex"] == chosen
        assert obj["a"][0] == chosen + 1
        assert sorted(obj["a"]) == list(range(1, int(row["n_treatments"]) + 1))
        assert obj["p"][0] == row["propensity"]
        assert obj["EventId"] == row["event_id"]
        assert obj["Timestamp"].endswith("Z")
        assert len(obj["c"]["_multi"]) == row["n_treatments"]
        assert set(obj["c"]) == {"c", "t", "_multi"}
        assert all(set(a) == {"o", "h"} for a in obj["c"]["_multi"])
    # The reader recovers the money reward whatever the scale.
    np.testing.assert_array_equal(
        read_dsjson(out, progress=False).frame["reward"], reference.frame["reward"]
    )


def test_parquet_round_trip(log_dir: Path, reference: LoggedBandit, tmp_path: Path) -> None:
    out = tmp_path / "log.parquet"
    result = export_log(log_dir, out, fmt="parquet", progress=False, chunk_size=50)
    assert result.rows == N_CLOSED
    assert pq.ParquetFile(out).num_row_groups == math.ceil(N_CLOSED / 50)
    assert_same_log(read_parquet(out), reference)


def test_open_decisions_are_exported_with_all(log_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.json"
    assert export_log(log_dir, out, fmt="dsjson", closed_only=False, progress=False).rows == (
        N_CLOSED + N_OPEN
    )
    open_lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()][-N_OPEN:]
    assert all(o["_skipLearn"] is True and "_label_cost" not in o for o in open_lines)
    lb = read_dsjson(out, progress=False)
    assert lb.n == N_CLOSED + N_OPEN
    assert int(lb.frame["closed"].sum()) == N_CLOSED
    with pytest.raises(ValueError, match="without a final reward"):
        lb.bandit_data()
    assert lb.closed().bandit_data().n == N_CLOSED
    pq_all = tmp_path / "all.parquet"
    export_log(log_dir, pq_all, fmt="parquet", closed_only=False, progress=False)
    assert_same_log(read_parquet(pq_all).closed(), load_sqlite(log_dir, progress=False))


def test_time_bounds(log_dir: Path, reference: LoggedBandit, tmp_path: Path) -> None:
    since, until = START + 50, START + 120
    out = tmp_path / "slice.parquet"
    export_log(log_dir, out, fmt="parquet", since=since, until=until, progress=False)
    decided = reference.frame["decided_at"]
    want = reference.select(((decided >= since) & (decided < until)).to_numpy())
    assert want.n == 70
    assert_same_log(read_parquet(out), want)


_VW_CHILD = textwrap.dedent(
    """
    import json, sys
    import vowpal_wabbit_next as vw
    args = ["--cb_explore_adf", "--epsilon", "0.05", "-q", "co", "-q", "ch", "-q", "th",
            "--random_seed", "1"]
    dsjson, text, pred_dsjson, pred_text = sys.argv[1:]
    out_js, _ = vw.run_cli_driver(args + ["--dsjson", "-d", dsjson, "-p", pred_dsjson])
    out_tx, _ = vw.run_cli_driver(args + ["-d", text, "-p", pred_text])
    print(json.dumps([out_js, out_tx]))
    """
)


def _text_examples(log_dir: Path, out: Path) -> None:
    """The service's own VW text examples for the closed decisions, in log order."""
    conn = sqlite3.connect(log_dir / "decisions.sqlite")
    cats = {
        cid: decode_catalogue(body) for cid, body in conn.execute("SELECT id, body FROM catalogues")
    }
    rows = conn.execute(
        "SELECT record, catalogue_id, reward, pmf FROM decisions WHERE closed_seq IS NOT NULL"
        " ORDER BY seq"
    ).fetchall()
    conn.close()
    with out.open("w", encoding="utf-8") as f:
        for record, cid, reward, pmf in rows:
            d = decode_head(record, cats[cid], pmf)
            shared, actions = decision_lines(d)
            label = label_prefix(reward_to_cost(reward, DEFAULT_REWARD_SCALE), d.propensity)
            f.write(shared + "\n")
            f.writelines((label + a if i == d.chosen else a) + "\n" for i, a in enumerate(actions))
            f.write("\n")


@pytest.mark.slow
def test_vw_trains_on_the_dsjson_export_like_on_the_service_examples(
    log_dir: Path, tmp_path: Path
) -> None:
    dsjson, text = tmp_path / "log.json", tmp_path / "log.vw"
    export_log(log_dir, dsjson, fmt="dsjson", progress=False)
    _text_examples(log_dir, text)
    preds = tmp_path / "p_dsjson", tmp_path / "p_text"
    # VW's driver installs a signal handler and holds the GIL: run it in its own process.
    proc = subprocess.run(
        [sys.executable, "-c", _VW_CHILD, str(dsjson), str(text), *map(str, preds)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out_js, out_tx = json.loads(proc.stdout)
    assert f"number of examples = {N_CLOSED}" in out_js
    loss = float(out_js.split("average loss = ")[1].split()[0])
    assert math.isfinite(loss)
    # Same features in the same namespaces: VW predicts identically from both files.
    assert out_js.split("average loss")[1] == out_tx.split("average loss")[1]
    assert preds[0].read_text() == preds[1].read_text()


def test_cli_writes_log_and_outcomes(
    log_dir: Path, reference: LoggedBandit, tmp_path: Path
) -> None:
    out = tmp_path / "log.csv"
    assert (
        main(
            [
                "--log",
                str(log_dir / "decisions.sqlite"),
                "--format",
                "csv",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    df = pd.read_csv(out)
    assert len(df) == N_CLOSED
    assert list(df.columns[: len(BASE_COLUMNS)]) == BASE_COLUMNS
    np.testing.assert_allclose(df["reward"], reference.frame["reward"])
    assert (
        json.loads(df["pmf"][0]) == reference.pmf[0, : reference.frame["n_treatments"][0]].tolist()
    )
    outcomes = pd.read_csv(tmp_path / "log.outcomes.csv")
    assert len(outcomes) == len(load_outcomes(log_dir)) > 0
    assert "unattributed" in set(outcomes["status"])

    pq_out = tmp_path / "log.parquet"
    argv = ["--log", str(log_dir), "--format", "parquet", "--out", str(pq_out), "--quiet"]
    argv += ["--since", "2023-11-14T22:14:10Z", "--outcomes", str(tmp_path / "o.parquet")]
    assert main(argv) == 0
    assert read_parquet(pq_out).n == N_CLOSED - 50
    assert pd.read_parquet(tmp_path / "o.parquet").shape[1] == 8


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["--format", "dsjson", "--out", "x"], 2),  # --log missing: argparse
        (["--log", "nowhere", "--format", "xml", "--out", "x"], 2),
        (["--log", "nowhere", "--format", "dsjson", "--out", "x", "--since", "yesterday"], 2),
        (["--log", "nowhere", "--format", "dsjson", "--out", "x", "--reward-scale", "0"], 2),
        (["--log", "nowhere", "--format", "dsjson", "--out", "x"], 1),  # no log there
    ],
)
def test_cli_rejects_bad_arguments(argv: list[str], status: int, tmp_path: Path) -> None:
    argv = [str(tmp_path / a) if a in {"nowhere", "x"} else a for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:
        code = int(e.code or 0)
    assert code == status


def _third_party_frame(n: int, seed: int) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    actions = ["control", "ten_off@email", "banner"]
    segment = rng.choice(["young", "old"], size=n)
    spend = rng.gamma(2.0, 30.0, size=n)
    # Logging policy: depends on the segment, so propensities vary per row.
    p_young = np.array([0.2, 0.5, 0.3])
    p_old = np.array([0.6, 0.2, 0.2])
    probs = np.where((segment == "young")[:, None], p_young, p_old)
    chosen = np.array([rng.choice(3, p=p) for p in probs])
    base = np.array([1.0, 3.0, 2.0])
    reward = base[chosen] + rng.normal(0.0, 0.5, size=n)
    df = pd.DataFrame(
        {
            "customer": [f"u{i}" for i in range(n)],
            "segment": segment,
            "spend": spend,
            "vip": spend > 100,
            "action": [actions[j] for j in chosen],
            "propensity": probs[np.arange(n), chosen],
            "reward": reward,
        }
    )
    return df, actions


def test_third_party_csv_evaluates_with_snips(tmp_path: Path) -> None:
    df, _ = _third_party_frame(3000, seed=3)
    path = tmp_path / "other.csv"
    df.to_csv(path, index=False)
    lb = read_table(
        path,
        context_columns=["segment", "spend", "vip"],
        action_column="action",
        propensity_column="propensity",
        reward_column="reward",
        customer_id_column="customer",
    )
    assert not lb.pmf_complete
    assert [t.ref.key for t in lb.catalogues[0]] == ["control", "banner@", "ten_off@email"]
    assert contexts(lb, 0)[0].keys() == {"segment", "spend", "vip"}
    data = lb.bandit_data()
    assert data.logging_pmf is None
    target = np.zeros((lb.n, 3))
    target[:, 2] = 1.0  # always ten_off@email
    est = SNIPS().estimate(data, target)
    w = (data.chosen == 2) / data.propensities
    assert est.value == pytest.approx(float((w * data.rewards).sum() / w.sum()))
    assert est.value == pytest.approx(3.0, abs=0.1)


def test_third_party_table_with_full_pmf() -> None:
    df, actions = _third_party_frame(200, seed=4)
    young = (df["segment"] == "young").to_numpy()
    df["probs"] = [[0.2, 0.5, 0.3] if y else [0.6, 0.2, 0.2] for y in young]
    lb = read_table(
        df,
        context_columns=["segment"],
        action_column="action",
        propensity_column="propensity",
        reward_column="reward",
        actions=actions,
        pmf_column="probs",
    )
    assert lb.pmf_complete
    data = lb.bandit_data()
    assert data.logging_pmf is not None
    assert lb.frame["is_control"].sum() == (df["action"] == "control").sum()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"reward_column": "gain"}, r"no column\(s\) \['gain'\]"),
        ({"actions": ["control", "banner"]}, r"logged actions \['ten_off@email'\]"),
        ({"actions": ["control", "ten_off@email", "banner"], "pmf_column": "bad"}, "2 entries"),
    ],
)
def test_read_table_rejects_inconsistent_input(change: dict[str, Any], message: str) -> None:
    df, _ = _third_party_frame(20, seed=5)
    df["bad"] = [[0.5, 0.5]] * len(df)
    kwargs: dict[str, Any] = {
        "context_columns": ["segment"],
        "action_column": "action",
        "propensity_column": "propensity",
        "reward_column": "reward",
    }
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        read_table(df, **kwargs)


def test_read_parquet_rejects_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(path)
    with pytest.raises(ValueError, match="not an offerbandit export"):
        read_parquet(path)


def test_third_party_dsjson(tmp_path: Path) -> None:
    """Another system's DSJson: its own namespaces, one line without the full pmf."""
    lines = [
        {"_label_cost": -1.0, "_label_probability": 0.5, "_label_Action": 1, "_labelIndex": 0,
         "Timestamp": "2024-01-01T00:00:00Z", "EventId": "a", "a": [1, 2], "p": [0.5, 0.5],
         "c": {"User": {"age": 30, "city": "Paris"},
               "_multi": [{"Action": {"id": "x"}}, {"Action": {"id": "y"}}]}},
        {"_label_cost": 0.0, "_label_probability": 0.25, "_labelIndex": 1, "EventId": "b",
         "c": {"User": {"age": 40}, "_multi": [{"Action": {"id": "x"}}, {"Action": {"id": "y"}}]}},
    ]  # fmt: skip
    path = tmp_path / "other.json"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    lb = read_dsjson(path, progress=False)
    assert not lb.pmf_complete
    assert len(lb.catalogues) == 1
    assert contexts(lb, 0)[0] == {"User.age": 30.0, "User.city": "Paris"}
    np.testing.assert_array_equal(lb.pmf, [[0.5, 0.5], [0.0, 0.25]])  # row 1: chosen only
    data = lb.bandit_data()
    np.testing.assert_array_equal(data.rewards, [1.0, 0.0])
    np.testing.assert_array_equal(data.chosen, [0, 1])
    assert lb.frame["decided_at"][0] == 1704067200.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[1]", "must be a JSON object"),
        ('{"a":[1]}', "context object 'c'"),
        ('{"c":{"_multi":[]}}', "non-empty 'c._multi'"),
        ('{"c":{"_multi":[{}]},"_labelIndex":3,"_label_probability":1}', "not one of the 1"),
        ('{"c":{"_multi":[{}]},"_labelIndex":0}', "_label_probability or full"),
    ],
)
def test_parse_dsjson_line_rejects_malformed_lines(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_dsjson_line(line)


_names = st.text(min_size=1, max_size=12)
_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=12),
    st.booleans(),
    st.lists(st.text(max_size=6), unique=True, max_size=4).map(tuple),
)


@given(st.dictionaries(_names, _values, max_size=6))
def test_features_survive_the_vw_json_encoding(features: dict[str, Any]) -> None:
    encoded = features_json(features)
    # VW skips (or, for _label*, _text …, interprets) members starting with "_".
    assert all(not k.startswith("_") or k == "_empty_tags" for k in encoded)
    assert decode_features(json.loads(json.dumps(encoded))) == features


def test_offline_eval_export_imports_no_transport_or_tracking() -> None:
    code = (
        "import sys, offline_eval.io.export, offline_eval.io.cli_export, offline_eval.io.dsjson\n"
        "bad = [m for m in ('grpc', 'google.protobuf', 'mlflow', 'server') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
