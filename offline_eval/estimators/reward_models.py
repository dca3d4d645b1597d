"""A cross-fitted ridge reward model ``q̂(x, a)`` for the direct-method family (DM, DR …).

Cross-fitting (Chernozhukov et al. 2018, "Double/debiased machine learning") splits the rows
into folds; the model that predicts the rows of a fold is fitted on the other folds only,
so a row's prediction never depends on its own reward.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from offline_eval.estimators.ope import BanditData

__all__ = ["cross_fit_q_hat"]

FloatArray = NDArray[np.float64]


def cross_fit_q_hat(
    features: FloatArray,
    data: BanditData,
    folds: int = 5,
    ridge: float = 1.0,
    seed: int = 0,
    *,
    fit_intercept: bool = True,
) -> FloatArray:
    """Cross-fitted ridge predictions of the reward for every (row, action).

    The model is ``q̂(x, a) = b + φ(x, a)ᵀθ``, fitted by ridge regression of ``r_i`` on
    ``φ(x_i, a_i)`` over the logged (row, chosen action) pairs; the intercept ``b`` is not
    penalised. Rows are split into ``folds`` random, balanced folds (seeded); the rows of a
    fold are predicted by the model fitted on the other folds. Each fold's normal equations
    come from the full Gram matrix minus the fold's own, so the cost is one pass over the
    data plus ``folds`` solves of ``d × d`` systems.

    Args:
        features: ``(n, K, d)`` feature vector ``φ(x_i, a)`` of each (row, action); padded
            actions must hold finite values (their predictions are returned, and ignored by
            the estimators since the target puts no mass on them).
        data: the logged data; rewards and chosen actions are used.
        folds: number of folds, ``2 ≤ folds ≤ n``.
        ridge: L2 penalty on ``θ`` (``≥ 0``).
        seed: seed of the fold assignment.
        fit_intercept: add an unpenalised intercept.

    Returns:
        ``(n, K)`` predictions ``q̂(x_i, a)``.

    >>> rng = np.random.default_rng(0)
    >>> phi = rng.normal(size=(200, 3, 2))
    >>> chosen = rng.integers(0, 3, size=200)
    >>> r = 1.0 + 2.0 * phi[np.arange(200), chosen, 0] + rng.normal(scale=0.1, size=200)
    >>> data = BanditData(r, chosen, np.full(200, 1 / 3))
    >>> q_hat = cross_fit_q_hat(phi, data, folds=5, ridge=1e-3)
    >>> q_hat.shape, bool(np.abs(q_hat - (1.0 + 2.0 * phi[..., 0])).max() < 0.1)
    ((200, 3), True)
    """
    x_all = np.asarray(features, dtype=np.float64)
    n = data.n
    if x_all.ndim != 3 or x_all.shape[0] != n:
        raise ValueError(f"features must have shape ({n}, K, d), got {x_all.shape}")
    width = data.n_actions
    if (width is not None and x_all.shape[1] != width) or x_all.shape[1] <= int(data.chosen.max()):
        raise ValueError(
            f"features must have one row per action (K={width if width else 'max(chosen)+1'}),"
            f" got shape {x_all.shape}"
        )
    if not np.isfinite(x_all).all():
        raise ValueError("features must be finite")
    if not 2 <= folds <= n:
        raise ValueError(f"folds must be in [2, n={n}], got {folds!r}")
    if not ridge >= 0.0:
        raise ValueError(f"ridge must be >= 0, got {ridge!r}")

    x = x_all[np.arange(n), data.chosen]  # (n, d): features of the logged pairs
    if fit_intercept:
        x = np.column_stack([np.ones(n), x])
    d = x.shape[1]
    fold_of = np.random.default_rng(seed).permutation(n) % folds

    # Per-fold Gram matrices and moments, then leave-one-fold-out by subtraction.
    members = [np.flatnonzero(fold_of == f) for f in range(folds)]
    gram_fold = np.stack([x[m].T @ x[m] for m in members])  # (folds, d, d)
    moment_fold = np.stack([x[m].T @ data.rewards[m] for m in members])  # (folds, d)
    penalty = ridge * np.eye(d)
    if fit_intercept:
        penalty[0, 0] = 0.0
    gram_out = gram_fold.sum(axis=0) - gram_fold + penalty
    moment_out = moment_fold.sum(axis=0) - moment_fold
    try:
        theta = np.linalg.solve(gram_out, moment_out[..., None])[..., 0]  # (folds, d)
    except np.linalg.LinAlgError as err:
        raise ValueError(
            f"the ridge system is singular (ridge={ridge!r}); use ridge > 0 or more rows"
        ) from err

    q_hat = np.empty(x_all.shape[:2])
    for f, m in enumerate(members):
        intercept = theta[f, 0] if fit_intercept else 0.0
        q_hat[m] = x_all[m] @ theta[f, int(fit_intercept) :] + intercept
    return q_hat
