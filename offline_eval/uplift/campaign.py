"""One outbound campaign's decisions and its incremental revenue against its own holdout
(``offerbandit uplift --campaign ID``).

A campaign's decisions carry its id as the trigger feature ``campaign`` (the ChooseRequest's
``campaign_id``; :mod:`offerbandit.campaign` sets it). Its holdout — customers the keyed hash
of (campaign id, customer id) put below the campaign's ``holdout`` share, and customers of
the service's persistent holdout — got control with certainty and are logged as holdout
decisions, so the difference of mean net revenue per customer between the rest and the
holdout is the campaign's incremental revenue, with no model: each customer is decided once
per campaign, so the Welch interval's independence holds.
"""

from __future__ import annotations

import numpy as np

from bandit.eligibility import CAMPAIGN_FEATURE
from offline_eval.io.logs import TRIGGER_PREFIX, LoggedBandit
from offline_eval.uplift.analysis import holdout_comparison

COLUMN = TRIGGER_PREFIX + CAMPAIGN_FEATURE

__all__ = ["campaign_rows", "campaign_summary"]


def campaign_rows(lb: LoggedBandit, campaign_id: str) -> LoggedBandit:
    """The decisions of campaign ``campaign_id`` (``ValueError`` naming what the log has
    when none)."""
    if COLUMN not in lb.frame.columns:
        raise ValueError(
            f"no campaign decisions in the log (no trigger feature {CAMPAIGN_FEATURE!r})"
        )
    ids = lb.frame[COLUMN]
    mask = (ids == campaign_id).to_numpy(dtype=bool)
    if not mask.any():
        known = sorted({str(x) for x in ids.dropna().unique()})[:20]
        raise ValueError(
            f"no closed decisions of campaign {campaign_id!r} in the log; campaigns with "
            f"closed decisions: {', '.join(known) or 'none'}"
        )
    return lb.select(mask)


def campaign_summary(lb: LoggedBandit, campaign_id: str, alpha: float = 0.05) -> str:
    """A few lines: the campaign's decisions, sends, holdout and incremental net revenue."""
    f = lb.frame
    holdout = f["holdout"].to_numpy(dtype=bool)
    sent = ~f["is_control"].to_numpy(dtype=bool)
    h = holdout_comparison(lb, alpha=alpha)
    level = round(100 * (1 - alpha))
    lines = [
        f"campaign {campaign_id}: {lb.n:,} closed decisions — {int(sent.sum()):,} sent, "
        f"{int((~sent & ~holdout).sum()):,} left alone by the policy, "
        f"{int(holdout.sum()):,} in the holdout",
    ]
    if np.isfinite(h.difference):
        total = h.difference * h.n_targeted
        lines.append(
            f"incremental net revenue per targeted customer: {h.difference:+.2f} EUR "
            f"[{h.ci_low:+.2f}, {h.ci_high:+.2f}] ({level}% Welch; targeted "
            f"{h.mean_targeted:.2f}, holdout {h.mean_holdout:.2f} EUR per customer); "
            f"≈ {total:+,.0f} EUR over the {h.n_targeted:,} targeted customers"
        )
    else:
        lines.append(f"no holdout comparison: {h.note}")
    return "\n".join(lines)
