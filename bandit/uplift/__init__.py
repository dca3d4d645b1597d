"""A conservative uplift policy: control is the reference, and a treatment is chosen only
where the lower bound of its net uplift is above 0.

* :mod:`bandit.uplift.features` — request features → pooled, crossed parameters;
* :mod:`bandit.uplift.model` — Bayesian linear regression of revenue and purchase;
* :mod:`bandit.uplift.policy` — the decision rule, its exact pmf, learning and persistence.
"""

from __future__ import annotations

from bandit.uplift.policy import (
    UPLIFT,
    UpliftPolicy,
    UpliftSettings,
    is_uplift_model,
    parse_settings,
    uplift_arguments,
)

__all__ = [
    "UPLIFT",
    "UpliftPolicy",
    "UpliftSettings",
    "is_uplift_model",
    "parse_settings",
    "uplift_arguments",
]
