"""Off-policy estimators (:mod:`.ope`), their confidence intervals (:mod:`.intervals`) and
the cross-fitted reward models of the direct-method family (:mod:`.reward_models`).

The estimators and intervals are re-exported here::

    from offline_eval.estimators import DR, BanditData, NormalInterval
"""

from offline_eval.estimators.intervals import (
    BootstrapInterval,
    EmpiricalLikelihoodInterval,
    ImportanceSample,
    Interval,
    NormalInterval,
    Scores,
)
from offline_eval.estimators.ope import (
    DEFAULT_INTERVAL,
    DM,
    DR,
    IPS,
    PMF_ATOL,
    SNDR,
    SNIPS,
    BanditData,
    Estimate,
    OffPolicyEstimator,
    SwitchDR,
    importance_weights,
)

__all__ = [
    "DEFAULT_INTERVAL",
    "DM",
    "DR",
    "IPS",
    "PMF_ATOL",
    "SNDR",
    "SNIPS",
    "BanditData",
    "BootstrapInterval",
    "EmpiricalLikelihoodInterval",
    "Estimate",
    "ImportanceSample",
    "Interval",
    "NormalInterval",
    "OffPolicyEstimator",
    "Scores",
    "SwitchDR",
    "importance_weights",
]
