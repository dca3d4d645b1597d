"""Cross-fitted reward models ``q̂(x, a)`` for the direct-method family (DM, DR …).

Two models, one family: each predicts every (row, action) of a log with a model fitted on
the other folds of a seeded fold assignment (:func:`fold_assignment`):

* :class:`RewardModel`: ridge on treatment × customer/trigger features
  (:func:`cross_fit_q_hat` per treatment), used by :class:`~offline_eval.study.study.Study`;
* :class:`CellMeans`: shrunken means per treatment × segment × trigger, used by the uplift
  report (:mod:`offline_eval.uplift.analysis`), which needs a model that is exact on
  well-filled cells and falls back on coarser ones.

Cross-fitting (Chernozhukov et al. 2018, "Double/debiased machine learning") splits the rows
into folds; the model that predicts the rows of a fold is fitted on the other folds only,
so a row's prediction never depends on its own reward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from offline_eval.estimators.ope import BanditData
from offline_eval.io.logs import CUSTOMER_PREFIX, TRIGGER_PREFIX, LoggedBandit
from offline_eval.replay.policies import treatment_matrix

__all__ = ["CellMeans", "CellTable", "RewardModel", "cross_fit_q_hat", "fold_assignment"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def fold_assignment(n: int, folds: int, seed: int) -> IntArray:
    """The fold of each of ``n`` rows: a seeded random permutation modulo ``folds``, so the
    folds are balanced (their sizes differ by at most one).

    >>> fold_assignment(6, 3, seed=0).tolist()
    [0, 2, 2, 1, 0, 1]
    """
    out: IntArray = np.random.default_rng(seed).permutation(n) % folds
    return out


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
    fold_of = fold_assignment(n, folds, seed)

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


@dataclass(frozen=True, slots=True)
class RewardModel:
    """The cross-fitted ``q̂(x, a)`` of the DM family: ridge on treatment × key features.

    The features of a (decision, treatment) pair are ``onehot(treatment) ⊗ [1, g(x)]``:
    ``g(x)`` one-hot encodes the categorical customer/trigger features (at most
    ``max_levels`` levels each, the trigger type included) and standardises the numeric
    ones. That design is block-diagonal across treatments, so the joint ridge fit is one
    small ridge per treatment, on the decisions that chose it (with its own unpenalised
    intercept): one :func:`cross_fit_q_hat` call per treatment.

    Cross-fitting holds for every (row, action): the model of treatment ``t`` is fitted on
    rows that chose ``t`` only, in folds, and a row that chose ``t`` is predicted by the model
    of the other folds; every other row's reward never enters that model. The rows that did
    not choose ``t`` (but could have) are packed as extra "actions" of the fitting rows, so
    one call predicts them too, each with some fold's model, at a cost linear in the rows.
    A treatment chosen fewer than ``2 × folds`` times gets a cross-fitted constant (the mean
    reward of the other folds).

    Attributes:
        features: the log columns to use (``c.stage``, ``trigger_type`` …); ``None`` picks
            every customer/trigger feature column automatically.
        folds: cross-fitting folds.
        ridge: L2 penalty (rewards are in money, features about unit scale).
        seed: seed of the fold assignment.
        max_levels: categorical columns with more distinct values are skipped.
    """

    features: tuple[str, ...] | None = None
    folds: int = 5
    ridge: float = 10.0
    seed: int = 0
    max_levels: int = 12

    def design(self, frame: pd.DataFrame) -> tuple[FloatArray, list[str]]:
        """``g(x)`` for every row, and the names of its columns."""
        if self.features is not None:
            columns = list(self.features)
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError(f"reward model features not in the log: {', '.join(missing)}")
        else:
            columns = ["trigger_type"] + [
                str(c)
                for c in frame.columns
                if str(c).startswith((CUSTOMER_PREFIX, TRIGGER_PREFIX))
            ]
        blocks: list[FloatArray] = []
        names: list[str] = []
        for col in columns:
            series = frame[col]
            if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
                x = series.to_numpy(dtype=np.float64, na_value=np.nan)
                ok = np.isfinite(x)
                if ok.sum() < 2:
                    continue
                mean, std = float(x[ok].mean()), float(x[ok].std())
                z = np.where(ok, (x - mean) / (std if std > 0 else 1.0), 0.0)
                blocks.append(np.clip(z, -5.0, 5.0)[:, None])
                names.append(col)
                continue
            codes, levels = pd.factorize(series.astype(object), sort=False)
            if not 0 < len(levels) <= self.max_levels:
                continue
            hot = np.zeros((len(codes), len(levels)))
            present = codes >= 0
            hot[np.flatnonzero(present), codes[present]] = 1.0
            blocks.append(hot)
            names += [f"{col}={lv}" for lv in levels]
        if not blocks:
            return np.zeros((len(frame), 0)), []
        return np.hstack(blocks), names

    def q_hat(self, lb: LoggedBandit, data: BanditData) -> FloatArray:
        """Cross-fitted ``(n, K)`` predictions for ``lb``'s rows (``data`` from the same rows)."""
        if not self.ridge > 0.0:
            raise ValueError(f"ridge must be > 0, got {self.ridge!r}")
        _, matrix = treatment_matrix(lb)
        g, _ = self.design(lb.frame)
        n, k = matrix.shape
        rewards = data.rewards
        logged = matrix[np.arange(n), data.chosen]
        fold_of = fold_assignment(n, self.folds, self.seed)
        fold_sum = np.bincount(fold_of, weights=rewards, minlength=self.folds)
        fold_n = np.bincount(fold_of, minlength=self.folds)
        out_mean = (rewards.sum() - fold_sum) / np.maximum(n - fold_n, 1)
        q = np.zeros((n, k))
        for t in np.unique(matrix[matrix >= 0]).tolist():
            cells = matrix == t
            rows = np.flatnonzero(cells.any(axis=1))
            column = np.argmax(cells[rows], axis=1)
            members = np.flatnonzero(logged == t)
            if members.size < 2 * self.folds:
                q[rows, column] = out_mean[fold_of[rows]]
                continue
            others = np.setdiff1d(rows, members, assume_unique=True)
            m = members.size
            width = 1 + -(-others.size // m)
            features = np.zeros((m, width, g.shape[1]))
            features[:, 0] = g[members]
            slot = np.arange(others.size)
            features[slot % m, 1 + slot // m] = g[others]
            fit = BanditData(rewards[members], np.zeros(m, dtype=np.int64), np.ones(m))
            pred = cross_fit_q_hat(
                features, fit, folds=self.folds, ridge=self.ridge, seed=self.seed
            )
            value = np.empty(n)
            value[members] = pred[:, 0]
            value[others] = pred[slot % m, 1 + slot // m]
            q[rows, column] = value[rows]
        return q


@dataclass(frozen=True, slots=True, eq=False)
class CellTable:
    """A fitted :class:`CellMeans`: ``table[fold, a, cell]`` and each row's fold and cell."""

    table: FloatArray
    fold: IntArray
    cell: IntArray

    def q(self, a: int | IntArray) -> FloatArray:
        """``q̂(x_i, a)`` for every row (``a`` one action, or one per row)."""
        out: FloatArray = self.table[self.fold, a, self.cell]
        return out


@dataclass(frozen=True, slots=True)
class CellMeans:
    """Cross-fitted shrunken cell means ``q̂[fold, a, cell]`` (cell = segment × trigger).

    Each level shrinks to its parent with ``prior_strength`` pseudo-rows: the action's mean
    to the overall mean, action × segment to the action, action × segment × trigger to
    action × segment. The table for fold ``f`` uses only the other folds; an action never
    logged outside a fold gets that fold's overall mean.

    >>> chosen = np.array([0, 1] * 50)
    >>> rewards = np.where(chosen == 1, 3.0, 1.0)
    >>> fit = CellMeans(prior_strength=0.0, folds=2).fit(
    ...     chosen, rewards, np.zeros(100, np.int64), np.zeros(100, np.int64), n_actions=2)
    >>> fit.q(0)[:2].tolist(), fit.q(1)[:2].tolist()
    ([1.0, 1.0], [3.0, 3.0])
    """

    prior_strength: float = 20.0
    folds: int = 5
    seed: int = 0

    def fit(
        self,
        chosen: IntArray,
        rewards: FloatArray,
        segment: IntArray,
        trigger: IntArray,
        n_actions: int,
    ) -> CellTable:
        """Fit on logged (action, reward) pairs with each row's segment and trigger codes
        (``0 ≤ chosen < n_actions``). The table has one more action, all zeros (a padding
        slot)."""
        m = int(chosen.shape[0])
        n_seg = int(segment.max()) + 1 if m else 1
        n_trig = int(trigger.max()) + 1 if m else 1
        cells = segment * n_trig + trigger
        fold = fold_assignment(m, self.folds, self.seed)
        k = self.prior_strength
        shape = (n_actions, n_seg, n_trig)
        size = int(np.prod(shape))
        flat = (chosen * n_seg + segment) * n_trig + trigger
        table = np.zeros((self.folds, n_actions + 1, n_seg * n_trig))
        sums_all = np.bincount(flat, rewards, size).reshape(shape)
        counts_all = np.bincount(flat, minlength=size).reshape(shape).astype(np.float64)
        for f in range(self.folds):
            own = fold == f
            sums = sums_all - np.bincount(flat[own], rewards[own], size).reshape(shape)
            counts = counts_all - np.bincount(flat[own], minlength=size).reshape(shape)
            total = counts.sum()
            grand = float(sums.sum() / total) if total > 0 else 0.0
            top = (sums.sum(axis=(1, 2)) + k * grand) / (counts.sum(axis=(1, 2)) + k + 1e-12)
            top = np.where(counts.sum(axis=(1, 2)) > 0, top, grand)
            mid_n = counts.sum(axis=2)
            mid = (sums.sum(axis=2) + k * top[:, None]) / np.maximum(mid_n + k, 1e-12)
            mid = np.where(mid_n > 0, mid, top[:, None])
            cell = (sums + k * mid[:, :, None]) / np.maximum(counts + k, 1e-12)
            cell = np.where(counts > 0, cell, mid[:, :, None])
            table[f, :n_actions] = cell.reshape(n_actions, -1)
        return CellTable(table, fold, cells)
