"""How comparisons and reports are laid out in MLflow (every MLflow call of offerbandit goes
through this package).

* a study (:func:`track_study`): a parent run per comparison (its parameters, the logged
  policy's value, the table, JSON and plots), a child run per policy (its parameters,
  every estimate with its interval and diagnostics, learning curves, the model's checkpoint
  as ``model/model.ckpt``);
* an uplift report (:func:`track_uplift_report`): a parent run (the live policy's
  incremental revenue, the holdout comparison, the table, summary and plots), a child run
  per dimension with every reportable slice effect.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bandit.checkpoint import CheckpointStore
from offline_eval.estimators import Estimate
from offline_eval.study.results import _utc
from offline_eval.tracking.registry import ARTIFACT_DIR, CHECKPOINT_FILE
from offline_eval.tracking.tracker import Tracker

if TYPE_CHECKING:
    from offline_eval.study.results import StudyResult
    from offline_eval.uplift.report import SliceEffect, UpliftReport

__all__ = [
    "TrackedStudy",
    "metric_key",
    "track_study",
    "track_uplift_report",
    "uplift_metric_key",
]


_METRIC_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")


def metric_key(text: str) -> str:
    """An MLflow-safe metric name: ``SwitchDR(tau=20)`` → ``SwitchDR_tau_20``.

    >>> metric_key("SwitchDR(tau=20)")
    'SwitchDR_tau_20'
    """
    return _METRIC_BAD.sub("_", text).strip("_")


@dataclass(frozen=True, slots=True)
class TrackedStudy:
    """Where a tracked comparison went."""

    experiment_id: str
    parent_run_id: str
    child_run_ids: Mapping[str, str]
    artifacts: Mapping[str, Path]

    @property
    def link(self) -> str:
        """The parent run's path in the MLflow UI (after its address), in the classic view:
        MLflow 3's UI opens the GenAI view unless the URL (or the user's last choice) says
        ``workflowType=machine_learning``."""
        return (
            f"#/experiments/{self.experiment_id}/runs/{self.parent_run_id}"
            "?workflowType=machine_learning"
        )


def _metrics(est: Estimate) -> dict[str, float]:
    key = metric_key(est.estimator)
    return {
        f"{key}.value": est.value,
        f"{key}.ci_low": est.ci_low,
        f"{key}.ci_high": est.ci_high,
        f"{key}.std_error": est.std_error,
        f"{key}.ess": est.ess,
        f"{key}.max_weight": est.max_weight,
        f"{key}.mean_weight": est.mean_weight,
        f"{key}.unsupported_mass": est.unsupported_mass,
    }


DESCRIPTION_TAG = "mlflow.note.content"
"""The tag the MLflow UI shows (and edits) as a run's description."""


def _verdict_markdown(result: StudyResult) -> str:
    """The ranked verdict table as the parent run's description (markdown)."""
    pct = f"{1 - result.alpha:.0%}"
    lines = [
        f"**{result.study}**: {result.evaluated:,} decisions of {result.source}, "
        f"{_utc(result.time_range[0])} .. {_utc(result.time_range[1])}. Verdict by "
        f"{result.recommended} with {pct} intervals; differences to the logged policy and to "
        "control are paired (same decisions). EUR per decision.",
        "",
        "| # | policy | value [CI] | vs logged | vs control | ESS | max w | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, v in enumerate(result.verdicts, start=1):
        e = v.estimate
        dl = v.vs_logged.words() if v.vs_logged else "—"
        dc = v.vs_control.words() if v.vs_control else "—"
        lines.append(
            f"| {i} | {v.policy} | {e.value:,.2f} [{e.ci_low:,.2f}, {e.ci_high:,.2f}] | {dl} | "
            f"{dc} | {e.ess:,.0f} | {e.max_weight:,.1f} | {v.text} |"
        )
    warnings = [f"- {v.policy}: {w}" for v in result.verdicts for w in v.warnings]
    if warnings:
        lines += ["", "Warnings:", *warnings]
    lines += [
        "",
        "Compare: select the child runs, **Compare**, then chart `verdict.vs_logged` "
        "(differences.png holds the same with intervals).",
    ]
    return "\n".join(lines)


def _headline(result: StudyResult) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Per-policy headline metrics: on the parent ``<policy>.<name>``, on each child
    ``verdict.<name>``."""
    parent: dict[str, float] = {}
    children: dict[str, dict[str, float]] = {}
    for rank, v in enumerate(result.verdicts, start=1):
        e = v.estimate
        m = {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "ess": e.ess,
             "max_weight": e.max_weight, "rank": float(rank)}  # fmt: skip
        for name, d in (("vs_logged", v.vs_logged), ("vs_control", v.vs_control)):
            if d is not None:
                m.update({name: d.value, f"{name}_low": d.ci_low, f"{name}_high": d.ci_high})
        children[v.policy] = {f"verdict.{k}": x for k, x in m.items()}
        parent.update({f"{metric_key(v.policy)}.{k}": x for k, x in m.items()})
    return parent, children


def track_study(
    result: StudyResult,
    tracker: Tracker,
    run_name: str | None = None,
    *,
    artifacts_dir: str | Path | None = None,
    tags: Mapping[str, Any] | None = None,
) -> TrackedStudy:
    """Log ``result`` (:meth:`StudyResult.track`). Artifacts are written to ``artifacts_dir`` (a
    temporary folder by default) and uploaded: the plot(s), CSV, JSON and each model's
    checkpoint (``model/model.ckpt`` of its child run)."""
    name = run_name or f"{result.mode} {datetime.now(UTC).isoformat(timespec='seconds')}"
    common_tags = {"offerbandit.mode": result.mode, **(tags or {})}
    with tempfile.TemporaryDirectory(prefix="offerbandit-eval-") as tmp:
        folder = Path(artifacts_dir) if artifacts_dir is not None else Path(tmp)
        paths = result.write(folder)
        children: dict[str, str] = {}
        headline, child_headline = _headline(result)
        verdicts = {v.policy: (rank, v) for rank, v in enumerate(result.verdicts, start=1)}
        best = next((v.policy for v in result.verdicts if v.status == "better"), "")
        parent_tags = {
            **common_tags,
            DESCRIPTION_TAG: _verdict_markdown(result),
            "offerbandit.recommended_estimator": result.recommended,
            "offerbandit.best": best or "none beats the logged policy",
        }
        with tracker.comparison(
            result.study, name, params=result.params(), tags=parent_tags
        ) as parent:
            parent.log_metrics(
                {
                    "logged.mean_reward": result.logged_value,
                    "logged.std_error": result.logged_std_error,
                    "rows": float(result.rows),
                    "rows_evaluated": float(result.evaluated),
                    "holdout_excluded": float(result.holdout_excluded),
                    **headline,
                }
            )
            for order, r in enumerate(result.results):
                rank, verdict = verdicts.get(r.name, (order, None))
                child_tags = {
                    **common_tags,
                    "offerbandit.policy": r.name,
                    "offerbandit.kind": r.params.get("policy", ""),
                    "offerbandit.rank": rank,
                }
                if verdict is not None:
                    child_tags["offerbandit.verdict"] = verdict.status
                    child_tags[DESCRIPTION_TAG] = "\n".join(
                        [f"**{verdict.text}** ({result.recommended}, paired, EUR per decision)"]
                        + [f"- warning: {w}" for w in verdict.warnings]
                        + [f"- note: {n}" for n in r.notes]
                    )
                params = {
                    **dict(r.params),
                    "seconds": f"{r.seconds:.2f}",
                    "log_source": result.source,
                    "rows_evaluated": result.evaluated,
                    "time_from": _utc(result.time_range[0]),
                    "time_to": _utc(result.time_range[1]),
                }
                if r.vw_args:
                    params["vw_args"] = " ".join(r.vw_args)
                with parent.child(r.name, params=params, tags=child_tags) as run:
                    metrics: dict[str, float] = dict(child_headline.get(r.name, {}))
                    for est in r.estimates.values():
                        metrics.update(_metrics(est))
                    if r.learned:
                        metrics["learned"] = float(r.learned)
                    run.log_metrics(metrics)
                    for key, series in r.curves.items():
                        run.log_series(key, list(series))
                    if r.notes:
                        run.set_tags({"offerbandit.notes": " | ".join(r.notes)[:4900]})
                    ckpt = r.checkpoint()
                    if ckpt is not None:
                        model_dir = folder / "models" / metric_key(r.name)
                        saved = CheckpointStore(model_dir, keep=1).save(ckpt)
                        final = saved.with_name(CHECKPOINT_FILE)
                        saved.replace(final)
                        run.log_artifact(final, ARTIFACT_DIR)
                    children[r.name] = run.run_id
            for key in ("differences", "plot", "curves", "verdict", "csv", "json"):
                if key in paths:
                    parent.log_artifact(paths[key])
            experiment_id = parent.experiment_id
            parent_id = parent.run_id
        kept = paths if artifacts_dir is not None else {}
    return TrackedStudy(experiment_id, parent_id, children, kept)


def uplift_metric_key(text: str) -> str:
    """An MLflow-safe metric name.

    >>> uplift_metric_key("stage=at_risk/discount_10@sms")
    'stage:at_risk/discount_10_sms'
    """
    return re.sub(r"[^A-Za-z0-9_\-./ :]", "_", text.replace("=", ":"))[:250]


def track_uplift_report(
    report: UpliftReport,
    study: str,
    *,
    tracking_uri: str | None = None,
    run_name: str = "uplift",
    out_dir: str | Path | None = None,
    params: dict[str, Any] | None = None,
) -> str:
    """Log an uplift report as an MLflow run (parent) with one child run per dimension.

    Metrics: the live policy's incremental revenue, the holdout comparison and every
    ``ok`` slice effect; artifacts: the table as CSV/JSON, the summary, both PNGs.
    Returns the parent run id.
    """
    tracker = Tracker(tracking_uri)
    p, h = report.policy_incremental, report.holdout
    run_params = {
        "by": ",".join(report.settings.by),
        "pairs": ";".join(",".join(pair) for pair in report.settings.pairs),
        "segment_column": report.settings.segment_column,
        "min_count": report.settings.min_count,
        "max_ci_width": report.settings.max_ci_width,
        "alpha": report.settings.alpha,
        "folds": report.settings.folds,
        "rows": report.exclusions.rows,
        "analysed": report.exclusions.analysed,
        "excluded_holdout": report.exclusions.holdout,
        "excluded_open": report.exclusions.open,
        **(params or {}),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out_dir) if out_dir is not None else Path(tmp)
        paths = report.write(folder)
        with tracker.comparison(study, run_name, params=run_params) as cmp:
            metrics = {
                "live.incremental_per_decision": p.per_decision,
                "live.ci_low": p.ci_low,
                "live.ci_high": p.ci_high,
                "live.total": p.total,
                "live.realised_per_decision": p.policy_value,
                "live.control_per_decision": p.control_value,
                "holdout.difference": h.difference,
                "holdout.ci_low": h.ci_low,
                "holdout.ci_high": h.ci_high,
                "rows.analysed": float(report.exclusions.analysed),
                "rows.holdout_excluded": float(report.exclusions.holdout),
            }
            for c in report.candidates:
                key = uplift_metric_key(c.policy)
                metrics[f"{key}.incremental_per_decision"] = c.per_decision
                metrics[f"{key}.ci_low"] = c.ci_low
                metrics[f"{key}.ci_high"] = c.ci_high
            cmp.log_metrics(metrics)
            cmp.set_tags({"holdout_note": h.note, "exclusions": report.exclusions.describe()})
            for path in paths:
                cmp.log_artifact(path)
            dims: dict[str, list[SliceEffect]] = {}
            for e in report.effects:
                dims.setdefault(e.dimension, []).append(e)
            for dim, effects in dims.items():
                with cmp.child(dim, params={"dimension": dim}) as child:
                    child_metrics: dict[str, float] = {}
                    for e in effects:
                        if not e.reportable:
                            continue
                        key = uplift_metric_key(f"{e.slice}/{e.treatment}")
                        child_metrics[f"{key}.value"] = e.value
                        child_metrics[f"{key}.ci_low"] = e.ci_low
                        child_metrics[f"{key}.ci_high"] = e.ci_high
                    child.log_metrics(child_metrics)
                    child.set_tags(
                        {
                            "rows_not_reported": sum(not e.reportable for e in effects),
                        }
                    )
            return cmp.run_id
