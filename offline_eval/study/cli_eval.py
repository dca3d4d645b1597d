"""``offerbandit eval``: off-policy evaluation of candidate policies, tracked in MLflow.

Examples::

    offerbandit eval --log data --policy uniform --policy control \\
        --policy fixed:discount_10@sms --policy rules:campaign.json \\
        --policy model:models:/offerbandit@champion --policy vw:"--squarecb -q co" \\
        --estimators ips,snips,dr --alpha 0.05 --study spring-campaign

    offerbandit eval --log data --search --register offerbandit --alias champion

See ``docs/offline-evaluation.md``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bandit.log.backends import is_postgres_url
from offline_eval._cli import time_arg
from offline_eval.io.logs import LoggedBandit, load_sqlite
from offline_eval.io.status import check_closed
from offline_eval.replay.contact import load_contact_policies
from offline_eval.replay.vw_replay import (
    DEFAULT_GRID_EXPLORATIONS,
    DEFAULT_GRID_INTERACTIONS,
    DEFAULT_GRID_LEARNING_RATES,
    DEFAULT_SCALE,
    settings_grid,
)
from offline_eval.study.study import (
    DEFAULT_ESTIMATORS,
    SERVICE_CONTROL_SHARE,
    RewardModel,
    Study,
    StudyResult,
    parse_policy,
)

if TYPE_CHECKING:
    from bandit.contact import ContactPolicy
    from offline_eval.replay.policies import TargetPolicy
    from offline_eval.tracking.runs import TrackedStudy

log = logging.getLogger(__name__)

DEFAULT_POLICIES = ("uniform", "control")


def _interactions(text: str) -> tuple[str, ...]:
    t = text.strip()
    if t.lower() in ("", "none", "-"):
        return ()
    return tuple(p.strip() for p in t.split(",") if p.strip())


def _floats(text: str) -> list[float | None]:
    out: list[float | None] = []
    for part in text.split(","):
        p = part.strip().lower()
        if p:
            out.append(None if p == "default" else float(p))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="offerbandit eval",
        description="Off-policy evaluation of candidate policies on a decision log, "
        "tracked in MLflow (one experiment per study, a parent run per comparison, a child "
        "run per policy).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="policies: logged, uniform, control, fixed:OFFER@CHANNEL, rules:FILE.json, "
        "model:PATH_OR_URI, uplift:'OPTIONS' (the uplift policy replayed), vw:'VW ARGS' "
        "(vw:logged replays the logging settings)",
    )
    p.add_argument("--log", required=True, help="data folder, decisions.sqlite or postgresql://")
    p.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="SPEC",
        help=f"a policy to evaluate (repeat; default: {', '.join(DEFAULT_POLICIES)})",
    )
    p.add_argument(
        "--estimators",
        default=",".join(DEFAULT_ESTIMATORS),
        help="comma-separated: ips,snips,dm,dr,sndr,switchdr[:TAU] (default: all)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="1 - confidence (default 0.05)")
    p.add_argument(
        "--interval", default="normal", choices=["normal", "bootstrap", "el"], help="intervals"
    )
    p.add_argument("--study", default="offerbandit", help="study name (the MLflow experiment)")
    p.add_argument("--run-name", help="name of the parent run")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
    )
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    p.add_argument(
        "--out",
        type=Path,
        help="folder for results.csv/json, verdict.csv and the plots (default: eval/ in the "
        "log's data folder)",
    )
    p.add_argument("--since", type=time_arg, help="first decision time (ISO 8601 or epoch)")
    p.add_argument("--until", type=time_arg, help="decisions before this time only")
    p.add_argument(
        "--control-share",
        type=float,
        default=SERVICE_CONTROL_SHARE,
        help="control share mixed into model/uplift/vw replays' pmfs, as the service does "
        f"(default: the service's, {SERVICE_CONTROL_SHARE:g})",
    )
    p.add_argument(
        "--reward-scale",
        type=float,
        default=DEFAULT_SCALE,
        help=f"reward → VW cost scale of replays (default {DEFAULT_SCALE})",
    )
    p.add_argument("--seed", type=int, default=0, help="VW and fold seed")
    p.add_argument("--folds", type=int, default=5, help="reward model cross-fitting folds")
    p.add_argument("--ridge", type=float, default=RewardModel().ridge, help="reward model L2")
    s = p.add_argument_group("settings search")
    s.add_argument("--search", action="store_true", help="replay a grid of VW settings")
    s.add_argument(
        "--explorations",
        action="append",
        metavar="ARGS",
        help="exploration to try, written with '=': --explorations=--squarecb (repeat; "
        f"default {' | '.join(DEFAULT_GRID_EXPLORATIONS)})",
    )
    s.add_argument(
        "--interactions",
        action="append",
        type=_interactions,
        metavar="PAIRS",
        help="interaction set to try, e.g. 'co,ch' or 'none' (repeat)",
    )
    s.add_argument(
        "--learning-rates",
        type=_floats,
        metavar="LIST",
        help="learning rates to try, e.g. '0.1,0.5' "
        f"(default {','.join(str(x) for x in DEFAULT_GRID_LEARNING_RATES)})",
    )
    s.add_argument("--rank-by", default="DR", help="estimator whose lower bound ranks (DR)")
    r = p.add_argument_group("promotion")
    r.add_argument("--register", metavar="NAME", help="register the best model under NAME")
    r.add_argument("--alias", default="champion", help="alias of the registered version")
    r.add_argument("--candidate", help="the policy to promote (default: best model by --rank-by)")
    p.add_argument(
        "--contact-policy",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a candidate contact-policy file (TOML; repeat to compare several): the logged "
        "policy and every --policy are also evaluated with it applied (removed treatments' "
        "probability goes to control; see docs/contact-policies.md)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def load_log(path: str, since: float | None, until: float | None, progress: bool) -> LoggedBandit:
    """A decision log (SQLite folder/file; Parquet or DSJson exports when supported)."""
    if is_postgres_url(path):
        return load_sqlite(path, since=since, until=until, progress=progress)
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".json", ".dsjson"):
        from offline_eval.io import read

        lb = read.read_parquet(p) if suffix == ".parquet" else read.read_dsjson(p)
        t = lb.frame["decided_at"].to_numpy()
        keep = (t >= (since if since is not None else -math.inf)) & (
            t < (until if until is not None else math.inf)
        )
        return lb if keep.all() else lb.select(keep)
    return load_sqlite(p, since=since, until=until, progress=progress)


def with_contact_policies(
    log_path: str,
    lb: LoggedBandit,
    policies: list[TargetPolicy],
    contact: list[tuple[str, ContactPolicy]],
    progress: bool,
) -> list[TargetPolicy]:
    """The logged policy and each of ``policies`` with each contact policy applied."""
    from offline_eval.io.logs import open_log
    from offline_eval.replay.contact import ContactMask, WithContactPolicy, negative_outcomes
    from offline_eval.replay.policies import LoggedPolicy

    bases: list[TargetPolicy] = [  # control is never removed: control+caps is control
        LoggedPolicy(),
        *(p for p in policies if p.name not in ("logged", "control")),
    ]
    out: list[TargetPolicy] = []
    for label, cp in contact:
        negatives = None
        if cp.negative_outcomes and Path(log_path).suffix.lower() not in (
            ".parquet",
            ".json",
            ".dsjson",
        ):
            reader = open_log(log_path)
            try:
                negatives = negative_outcomes(reader, cp, lb)
            finally:
                reader.close()
        mask = ContactMask.of(lb, cp, negatives, progress=progress)
        out += [WithContactPolicy(b, mask, label) for b in bases]
    return out


def default_out(log: str) -> Path:
    """``eval/`` in the log's data folder (the folder given, or the SQLite file's folder);
    in the current folder for a log that is no file (a ``postgresql://`` URL)."""
    if "://" in log:
        return Path("eval")
    p = Path(log)
    return (p if p.is_dir() else p.parent) / "eval"


def run(ns: argparse.Namespace) -> int:
    progress = not ns.no_progress
    contact = load_contact_policies(ns.contact_policy)  # a bad file fails before the log loads
    lb = load_log(ns.log, ns.since, ns.until, progress)
    if not check_closed(
        ns.log, since=ns.since, until=ns.until, prog="offerbandit eval", loaded=lb.n
    ):
        return 1
    study = Study(
        lb,
        name=ns.study,
        alpha=ns.alpha,
        interval=ns.interval,
        estimators=ns.estimators,
        reward_model=RewardModel(folds=ns.folds, ridge=ns.ridge, seed=ns.seed),
        progress=progress,
        seed=ns.seed,
    )
    specs = ns.policy or ([] if ns.search else list(DEFAULT_POLICIES))
    policies = [
        parse_policy(
            s, lb=lb, seed=ns.seed, control_share=ns.control_share, tracking_uri=ns.tracking_uri
        )
        for s in specs
    ]
    if ns.contact_policy:
        policies += with_contact_policies(ns.log, lb, policies, contact, progress)
    result: StudyResult
    if ns.search:
        grid = settings_grid(
            ns.explorations or DEFAULT_GRID_EXPLORATIONS,
            ns.interactions or DEFAULT_GRID_INTERACTIONS,
            ns.learning_rates or DEFAULT_GRID_LEARNING_RATES,
            seed=ns.seed,
            scale=ns.reward_scale,
            control_share=ns.control_share,
        )
        result = study.search(grid, rank_by=ns.rank_by, baselines=policies)
    else:
        result = study.compare(policies)
    print(result.summary())
    if ns.search:
        print(f"\nsettings ranked by the {ns.rank_by} lower bound:")
        for i, r in enumerate(x for x in result.results if x.params.get("policy") == "vw-replay"):
            est = r.estimate(ns.rank_by)
            print(f"{i + 1:>3}. {est.ci_low:>10.4f}  {r.name}")
    out = ns.out if ns.out is not None else default_out(ns.log)
    paths = result.write(out)
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    tracked: TrackedStudy | None = None
    tracker = None
    if not ns.no_track:
        from offline_eval.tracking.tracker import Tracker, ui_command

        tracker = Tracker(ns.tracking_uri)
        tracked = result.track(tracker, ns.run_name, artifacts_dir=out)
        print(
            f"\ntracked in {tracker.tracking_uri}: experiment {ns.study!r} "
            f"(id {tracked.experiment_id}), parent run {tracked.parent_run_id}"
        )
        print(
            f"open the MLflow UI: {ui_command(tracker.tracking_uri)}, then "
            f"http://127.0.0.1:5000/{tracked.link}"
        )
    if ns.register:
        promotion = result.promotion(ns.rank_by, ns.candidate)
        if not promotion.approved or promotion.candidate is None:
            print(f"\n{promotion.reason}; nothing registered")
            return 0
        if tracker is None or tracked is None:
            print("\n--register needs tracking (drop --no-track); nothing registered")
            return 1
        version = tracker.register_model(
            tracked.child_run_ids[promotion.candidate],
            ns.register,
            alias=ns.alias,
            description=f"{promotion.reason}\n\nevaluation: {tracked.link}",
            tags={
                "offerbandit.study": ns.study,
                "offerbandit.policy": promotion.candidate,
                "offerbandit.evaluation_run": tracked.parent_run_id,
                "offerbandit.evaluation_experiment": tracked.experiment_id,
            },
        )
        tracker.tag_run(
            tracked.parent_run_id, {"offerbandit.registered": f"{ns.register}/{version}"}
        )
        print(f"\npromoted: {promotion.reason}")
        print(f"registered {ns.register} version {version} as models:/{ns.register}@{ns.alias}")
    return 0


def main(argv: list[str]) -> int:
    """Entry point of ``offerbandit eval`` (returns the exit code)."""
    ns = build_parser().parse_args(argv)
    try:
        return run(ns)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
