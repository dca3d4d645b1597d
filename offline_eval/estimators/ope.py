"""Off-policy estimators of a target policy's value from a logged bandit dataset.

Every estimator is a small frozen dataclass of hyper-parameters implementing one formula.
``estimate`` validates the target policy once, computes the per-row :class:`Scores` and
hands them to an :class:`~offline_eval.estimators.intervals.Interval`; the result is an
:class:`Estimate` carrying the value, the interval and overlap diagnostics.

Notation: row ``i`` has context ``x_i``, logged action ``a_i`` drawn with probability
``μ(a_i|x_i)`` (the propensity), reward ``r_i``; the target policy is ``π`` and the
importance weight ``w_i = π(a_i|x_i) / μ(a_i|x_i)``; ``q̂(x, a)`` is a reward model and
``q̂_π(x_i) = Σ_a π(a|x_i)·q̂(x_i, a)``.

Example: two actions logged uniformly, a target that plays action 0 with probability 0.8.

>>> data = BanditData(
...     rewards=np.array([1.0, 0.0, 1.0, 0.0]),
...     chosen=np.array([0, 1, 0, 1]),
...     propensities=np.full(4, 0.5),
... )
>>> target = np.tile([0.8, 0.2], (4, 1))
>>> est = IPS().estimate(data, target)
>>> est.estimator, round(est.value, 3), est.n, round(est.ess, 2)
('IPS', 0.8, 4, 2.94)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Final

import numpy as np
from numpy.typing import NDArray

from offline_eval.estimators.intervals import ImportanceSample, Interval, NormalInterval, Scores

__all__ = [
    "DEFAULT_INTERVAL",
    "DM",
    "DR",
    "IPS",
    "PMF_ATOL",
    "SNDR",
    "SNIPS",
    "BanditData",
    "Estimate",
    "OffPolicyEstimator",
    "SwitchDR",
    "importance_weights",
]

FloatArray = NDArray[np.float64]

PMF_ATOL: Final = 1e-6
"""Absolute tolerance on pmf row sums and on propensity/pmf agreement."""

DEFAULT_INTERVAL: Final = NormalInterval(alpha=0.05)
"""The interval used when none is given: a 95% normal interval."""


def _first(bad: NDArray[np.bool_] | np.bool_) -> int:
    """Index of the first True of a 1-D mask (the first offending row)."""
    return int(np.argmax(bad))


def _as_float_array(value: object, name: str, ndim: int) -> FloatArray:
    array = np.asarray(value)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    return np.asarray(array, dtype=np.float64)


def _check_finite(array: FloatArray, name: str) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        row = _first(~finite.reshape(array.shape[0], -1).all(axis=1))
        raise ValueError(f"{name} must be finite; row {row} holds {array[row]!r}")


@dataclass(frozen=True, slots=True, eq=False)
class BanditData:
    """A logged bandit dataset of ``n`` rows with at most ``K`` actions per row.

    Rows may offer fewer than ``K`` actions: they are padded, and ``action_mask`` says which
    actions exist. The arrays are checked once, here; a ``ValueError`` names the argument
    and the first offending row.

    Attributes:
        rewards: ``(n,)`` observed reward of the logged action.
        chosen: ``(n,)`` index of the logged action in its row.
        propensities: ``(n,)`` logging probability of the chosen action, in ``(0, 1]``.
        logging_pmf: ``(n, K)`` full logging pmf when known (0 where padded), else ``None``.
        action_mask: ``(n, K)`` True where an action exists; ``None`` means all exist.

    >>> BanditData(rewards=np.array([1.0]), chosen=np.array([0]), propensities=np.array([0.0]))
    Traceback (most recent call last):
    ...
    ValueError: propensities must be in (0, 1]; row 0 holds 0.0
    """

    rewards: FloatArray
    chosen: NDArray[np.int64]
    propensities: FloatArray
    logging_pmf: FloatArray | None = None
    action_mask: NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        rewards = _as_float_array(self.rewards, "rewards", 1)
        n = rewards.shape[0]
        if n == 0:
            raise ValueError("rewards must hold at least one row")
        _check_finite(rewards, "rewards")

        chosen = np.asarray(self.chosen)
        if chosen.shape != (n,):
            raise ValueError(f"chosen must have shape ({n},) like rewards, got {chosen.shape}")
        if not np.issubdtype(chosen.dtype, np.integer):
            raise ValueError(f"chosen must hold integer action indices, got dtype {chosen.dtype}")
        chosen = chosen.astype(np.int64, copy=False)
        if chosen.min() < 0:
            row = _first(chosen < 0)
            raise ValueError(f"chosen must be >= 0; row {row} holds {chosen[row]}")

        propensities = _as_float_array(self.propensities, "propensities", 1)
        if propensities.shape != (n,):
            raise ValueError(
                f"propensities must have shape ({n},) like rewards, got {propensities.shape}"
            )
        valid = (propensities > 0.0) & (propensities <= 1.0 + PMF_ATOL)
        if not valid.all():
            row = _first(~valid)
            raise ValueError(f"propensities must be in (0, 1]; row {row} holds {propensities[row]}")

        mask = self.action_mask
        width: int | None = None
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != np.bool_:
                raise ValueError(f"action_mask must be boolean, got dtype {mask.dtype}")
            if mask.ndim != 2 or mask.shape[0] != n:
                raise ValueError(f"action_mask must have shape ({n}, K), got {mask.shape}")
            width = mask.shape[1]

        pmf = self.logging_pmf
        if pmf is not None:
            pmf = _as_float_array(pmf, "logging_pmf", 2)
            if pmf.shape[0] != n or (width is not None and pmf.shape[1] != width):
                expected = f"({n}, {width})" if width is not None else f"({n}, K)"
                raise ValueError(f"logging_pmf must have shape {expected}, got {pmf.shape}")
            width = pmf.shape[1]

        if width is not None and chosen.max() >= width:
            row = _first(chosen >= width)
            raise ValueError(f"chosen must be < K={width}; row {row} holds action {chosen[row]}")
        rows = np.arange(n)
        if mask is not None and not mask[rows, chosen].all():
            row = _first(~mask[rows, chosen])
            raise ValueError(
                f"chosen must be an existing action (action_mask True); row {row} chose "
                f"padded action {chosen[row]}"
            )
        if pmf is not None:
            _check_pmf_rows(pmf, mask, "logging_pmf")
            gap = np.abs(pmf[rows, chosen] - propensities)
            if not (gap <= PMF_ATOL).all():
                row = _first(gap > PMF_ATOL)
                raise ValueError(
                    f"propensities must equal logging_pmf[i, chosen[i]] within {PMF_ATOL}; "
                    f"row {row} has propensity {propensities[row]} but logging_pmf "
                    f"{pmf[row, chosen[row]]}"
                )

        object.__setattr__(self, "rewards", rewards)
        object.__setattr__(self, "chosen", chosen)
        object.__setattr__(self, "propensities", propensities)
        object.__setattr__(self, "logging_pmf", pmf)
        object.__setattr__(self, "action_mask", mask)

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.rewards.shape[0])

    @property
    def n_actions(self) -> int | None:
        """``K`` when the logging pmf or the action mask fixes it, else ``None``."""
        if self.logging_pmf is not None:
            return int(self.logging_pmf.shape[1])
        if self.action_mask is not None:
            return int(self.action_mask.shape[1])
        return None


def _check_pmf_rows(pmf: FloatArray, mask: NDArray[np.bool_] | None, name: str) -> None:
    """Finite, non-negative, zero on padded actions, rows summing to 1."""
    _check_finite(pmf, name)
    negative = (pmf < 0.0).any(axis=1)
    if negative.any():
        raise ValueError(f"{name} must be >= 0; row {_first(negative)} has a negative entry")
    if mask is not None:
        padded = (pmf != 0.0) & ~mask
        if padded.any():
            row, action = np.argwhere(padded)[0]
            raise ValueError(
                f"{name} must be 0 on padded actions; row {row} puts {pmf[row, action]} on "
                f"padded action {action}"
            )
    gap = np.abs(pmf.sum(axis=1) - 1.0)
    if not (gap <= PMF_ATOL).all():
        row = _first(gap > PMF_ATOL)
        raise ValueError(
            f"{name} rows must sum to 1 within {PMF_ATOL}; row {row} sums to {pmf[row].sum()}"
        )


def _check_policy(data: BanditData, target_pmf: object) -> FloatArray:
    """Validate a target pmf against the data; return it as float64."""
    target = _as_float_array(target_pmf, "target_pmf", 2)
    width = data.n_actions
    if target.shape[0] != data.n or (width is not None and target.shape[1] != width):
        expected = f"({data.n}, {width})" if width is not None else f"({data.n}, K)"
        raise ValueError(f"target_pmf must have shape {expected}, got {target.shape}")
    if width is None and target.shape[1] <= int(data.chosen.max()):
        raise ValueError(
            f"target_pmf has {target.shape[1]} actions but chosen goes up to "
            f"{int(data.chosen.max())}"
        )
    _check_pmf_rows(target, data.action_mask, "target_pmf")
    return target


def importance_weights(data: BanditData, target_pmf: FloatArray) -> FloatArray:
    """``w_i = π(a_i|x_i) / μ(a_i|x_i)`` after validating ``target_pmf``.

    >>> data = BanditData(np.array([1.0, 0.0]), np.array([0, 1]), np.array([0.5, 0.25]))
    >>> importance_weights(data, np.array([[1.0, 0.0], [0.5, 0.5]])).tolist()
    [2.0, 2.0]
    """
    target = _check_policy(data, target_pmf)
    return _weights(data, target)


def _weights(data: BanditData, target: FloatArray) -> FloatArray:
    return target[np.arange(data.n), data.chosen] / data.propensities


@dataclass(frozen=True, slots=True)
class Estimate:
    """One off-policy estimate with its interval and overlap diagnostics.

    Attributes:
        estimator: estimator label, e.g. ``"SNIPS"`` or ``"SwitchDR(tau=10)"``.
        value: point estimate of the target policy's expected reward.
        ci_low: lower end of the ``1 − alpha`` interval.
        ci_high: upper end of the ``1 − alpha`` interval.
        std_error: ``sd(ψ)/√n`` of the (linearised) per-row scores ψ.
        n: number of logged rows.
        alpha: miscoverage level of the interval.
        interval: name of the interval method (``"normal"``, ``"bootstrap"`` …).
        ess: effective sample size of the importance weights ``(Σw)²/Σw²``.
        max_weight: largest importance weight.
        mean_weight: mean importance weight (about 1 when the target is supported).
        unsupported_mass: mean over rows of the target mass on actions with logging
            probability 0 (needs ``logging_pmf``; ``nan`` otherwise).
    """

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    std_error: float
    n: int
    alpha: float
    interval: str
    ess: float
    max_weight: float
    mean_weight: float
    unsupported_mass: float


@dataclass(frozen=True, slots=True, eq=False)
class _Inputs:
    """Validated inputs shared by every estimator's formula."""

    data: BanditData
    target: FloatArray
    weights: FloatArray
    q_hat: FloatArray | None

    def q(self) -> FloatArray:
        if self.q_hat is None:  # pragma: no cover - guarded by OffPolicyEstimator._inputs
            raise ValueError("q_hat is required")
        return self.q_hat

    def direct(self) -> FloatArray:
        """``q̂_π(x_i) = Σ_a π(a|x_i)·q̂(x_i, a)``."""
        direct: FloatArray = np.einsum("ij,ij->i", self.target, self.q())
        return direct

    def residual(self) -> FloatArray:
        """``r_i − q̂(x_i, a_i)``."""
        return self.data.rewards - self.q()[np.arange(self.data.n), self.data.chosen]

    def importance(self) -> ImportanceSample:
        """Raw weights and rewards with the support bound of the weights."""
        pmf = self.data.logging_pmf
        if pmf is None:
            bound = float(self.weights.max())
        else:
            ratio = np.divide(self.target, pmf, out=np.zeros_like(self.target), where=pmf > 0.0)
            bound = float(ratio.max())
        return ImportanceSample(self.weights, self.data.rewards, bound)


class OffPolicyEstimator(ABC):
    """Base of every estimator: validation and the :class:`Estimate` are built here, once.

    A subclass sets ``name`` (and ``needs_q_hat``) and implements ``_scores``: its formula.
    """

    __slots__ = ()

    name: ClassVar[str]
    needs_q_hat: ClassVar[bool] = False

    @property
    def label(self) -> str:
        """Name with the hyper-parameters that change the formula."""
        return self.name

    @abstractmethod
    def _scores(self, inputs: _Inputs) -> Scores: ...

    def _inputs(
        self, data: BanditData, target_pmf: FloatArray, q_hat: FloatArray | None
    ) -> _Inputs:
        target = _check_policy(data, target_pmf)
        checked_q: FloatArray | None = None
        if self.needs_q_hat:
            if q_hat is None:
                raise ValueError(f"q_hat is required by {self.name}")
            checked_q = _as_float_array(q_hat, "q_hat", 2)
            if checked_q.shape != target.shape:
                raise ValueError(
                    f"q_hat must have the shape of target_pmf {target.shape}, got {checked_q.shape}"
                )
            _check_finite(checked_q, "q_hat")
        return _Inputs(data, target, _weights(data, target), checked_q)

    def scores(
        self, data: BanditData, target_pmf: FloatArray, q_hat: FloatArray | None = None
    ) -> Scores:
        """Per-row scores; ``scores(...).influence()`` are the influence-style contributions."""
        return self._scores(self._inputs(data, target_pmf, q_hat))

    def estimate(
        self,
        data: BanditData,
        target_pmf: FloatArray,
        q_hat: FloatArray | None = None,
        *,
        interval: Interval = DEFAULT_INTERVAL,
    ) -> Estimate:
        """Estimate the value of ``target_pmf`` (``(n, K)``, 0 on padded actions).

        ``q_hat`` (``(n, K)`` reward-model predictions, cross-fitted) is required by the
        DM family and ignored by IPS/SNIPS.
        """
        inputs = self._inputs(data, target_pmf, q_hat)
        scores = self._scores(inputs)
        low, high = interval.bounds(scores)
        w = inputs.weights
        sum_sq = float(np.dot(w, w))
        unsupported = math.nan
        if data.logging_pmf is not None:
            unsupported = float(np.sum(inputs.target, where=data.logging_pmf == 0.0)) / data.n
        return Estimate(
            estimator=self.label,
            value=scores.value,
            ci_low=low,
            ci_high=high,
            std_error=scores.std_error,
            n=data.n,
            alpha=interval.alpha,
            interval=interval.name,
            ess=float(np.sum(w)) ** 2 / sum_sq if sum_sq > 0.0 else 0.0,
            max_weight=float(w.max()),
            mean_weight=float(w.mean()),
            unsupported_mass=unsupported,
        )


@dataclass(frozen=True, slots=True)
class IPS(OffPolicyEstimator):
    """Inverse propensity scoring: ``V̂ = (1/n)·Σ_i min(w_i, M)·r_i``.

    Horvitz & Thompson (1952), "A generalization of sampling without replacement from a
    finite universe", JASA. Unbiased when ``π`` is supported by ``μ`` and ``M = ∞``;
    clipping at ``M = max_weight`` (Bottou et al. 2013, "Counterfactual reasoning and
    learning systems", JMLR) trades a downward bias for variance. The empirical-likelihood
    interval always uses the raw weights: it bounds the unclipped value ``E[w·r]``.

    Attributes:
        max_weight: clip importance weights at this value; ``None`` means no clipping.

    >>> data = BanditData(np.array([1.0, 0.0, 1.0, 0.0]), np.array([0, 1, 0, 1]), np.full(4, 0.5))
    >>> target = np.tile([0.8, 0.2], (4, 1))
    >>> round(IPS().estimate(data, target).value, 3)
    0.8
    >>> round(IPS(max_weight=1.0).estimate(data, target).value, 3)
    0.5
    """

    max_weight: float | None = None
    name: ClassVar[str] = "IPS"

    def __post_init__(self) -> None:
        if self.max_weight is not None and not self.max_weight > 0.0:
            raise ValueError(f"max_weight must be > 0, got {self.max_weight!r}")

    @property
    def label(self) -> str:
        return self.name if self.max_weight is None else f"IPS(max_weight={self.max_weight:g})"

    def _scores(self, inputs: _Inputs) -> Scores:
        w = inputs.weights
        if self.max_weight is not None:
            w = np.minimum(w, self.max_weight)
        return Scores(self.label, w * inputs.data.rewards, importance=inputs.importance())


@dataclass(frozen=True, slots=True)
class SNIPS(OffPolicyEstimator):
    """Self-normalised IPS: ``V̂ = Σ_i w_i·r_i / Σ_i w_i``.

    Swaminathan & Joachims (2015), "The self-normalized estimator for counterfactual
    learning", NeurIPS. Biased by O(1/n) but bounded by the reward range and far less
    variable than IPS; intervals use the delta-method scores
    ``ψ_i = V̂ + w_i·(r_i − V̂)/w̄``.

    >>> data = BanditData(np.array([1.0, 0.0, 1.0, 0.0]), np.array([0, 1, 0, 1]), np.full(4, 0.5))
    >>> target = np.tile([0.8, 0.2], (4, 1))
    >>> round(SNIPS().estimate(data, target).value, 3)
    0.8
    """

    name: ClassVar[str] = "SNIPS"

    def _scores(self, inputs: _Inputs) -> Scores:
        w = inputs.weights
        return Scores(
            self.name,
            np.zeros(inputs.data.n),
            w * inputs.data.rewards,
            w,
            importance=inputs.importance(),
        )


@dataclass(frozen=True, slots=True)
class DM(OffPolicyEstimator):
    """Direct method: ``V̂ = (1/n)·Σ_i Σ_a π(a|x_i)·q̂(x_i, a)``.

    Dudík, Langford & Li (2011), "Doubly robust policy evaluation and learning", ICML.
    Only as good as the reward model; ``q̂`` must be cross-fitted (see
    :func:`offline_eval.estimators.reward_models.cross_fit_q_hat`) and the interval ignores
    the model's own estimation error.

    >>> data = BanditData(np.array([1.0, 0.0, 1.0, 0.0]), np.array([0, 1, 0, 1]), np.full(4, 0.5))
    >>> target = np.tile([0.8, 0.2], (4, 1))
    >>> q_hat = np.tile([0.9, 0.1], (4, 1))
    >>> round(DM().estimate(data, target, q_hat).value, 3)
    0.74
    """

    name: ClassVar[str] = "DM"
    needs_q_hat: ClassVar[bool] = True

    def _scores(self, inputs: _Inputs) -> Scores:
        return Scores(self.name, inputs.direct())


@dataclass(frozen=True, slots=True)
class DR(OffPolicyEstimator):
    """Doubly robust: ``V̂ = (1/n)·Σ_i [q̂_π(x_i) + w_i·(r_i − q̂(x_i, a_i))]``.

    Dudík, Langford & Li (2011), "Doubly robust policy evaluation and learning", ICML.
    Unbiased when the propensities are right, whatever ``q̂``; low variance when ``q̂`` is
    good.

    >>> data = BanditData(np.array([1.0, 0.0, 1.0, 0.0]), np.array([0, 1, 0, 1]), np.full(4, 0.5))
    >>> target = np.tile([0.8, 0.2], (4, 1))
    >>> q_hat = np.tile([0.9, 0.1], (4, 1))
    >>> round(DR().estimate(data, target, q_hat).value, 3)
    0.8
    """

    name: ClassVar[str] = "DR"
    needs_q_hat: ClassVar[bool] = True

    def _scores(self, inputs: _Inputs) -> Scores:
        return Scores(self.name, inputs.direct() + inputs.weights * inputs.residual())


@dataclass(frozen=True, slots=True)
class SNDR(OffPolicyEstimator):
    """Self-normalised DR: ``V̂ = (1/n)·Σ_i q̂_π(x_i) + Σ_i w_i·(r_i − q̂(x_i, a_i)) / Σ_i w_i``.

    Kallus & Uehara (2019), "Intrinsically efficient, stable, and bounded off-policy
    evaluation for reinforcement learning", NeurIPS. The correction term of DR is
    self-normalised like SNIPS; intervals use its delta-method scores.

    >>> data = BanditData(np.array([1.0, 0.0, 1.0, 0.0]), np.array([0, 1, 0, 1]), np.full(4, 0.5))
    >>> target = np.tile([0.8, 0.2], (4, 1))
    >>> q_hat = np.tile([0.9, 0.1], (4, 1))
    >>> round(SNDR().estimate(data, target, q_hat).value, 3)
    0.8
    """

    name: ClassVar[str] = "SNDR"
    needs_q_hat: ClassVar[bool] = True

    def _scores(self, inputs: _Inputs) -> Scores:
        w = inputs.weights
        return Scores(self.name, inputs.direct(), w * inputs.residual(), w)


@dataclass(frozen=True, slots=True)
class SwitchDR(OffPolicyEstimator):
    """Switch-DR: ``V̂ = (1/n)·Σ_i [q̂_π(x_i) + 1{w_i ≤ τ}·w_i·(r_i − q̂(x_i, a_i))]``.

    Wang, Agarwal & Dudík (2017), "Optimal and adaptive off-policy evaluation in contextual
    bandits", ICML. Rows whose weight exceeds ``τ`` fall back on the model (DM); ``τ = ∞``
    is DR, ``τ = 0`` is DM.

    Attributes:
        tau: weight threshold above which the importance-weighted correction is dropped.

    >>> data = BanditData(np.array([1.0, 0.0, 1.0, 0.0]), np.array([0, 1, 0, 1]), np.full(4, 0.5))
    >>> target = np.tile([0.8, 0.2], (4, 1))
    >>> q_hat = np.tile([0.9, 0.1], (4, 1))
    >>> round(SwitchDR(tau=1.0).estimate(data, target, q_hat).value, 3)
    0.72
    """

    tau: float = math.inf
    name: ClassVar[str] = "SwitchDR"
    needs_q_hat: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not self.tau >= 0.0:
            raise ValueError(f"tau must be >= 0, got {self.tau!r}")

    @property
    def label(self) -> str:
        return f"SwitchDR(tau={self.tau:g})"

    def _scores(self, inputs: _Inputs) -> Scores:
        w = inputs.weights
        correction = np.where(w <= self.tau, w * inputs.residual(), 0.0)
        return Scores(self.label, inputs.direct() + correction)
