"""Confidence intervals for off-policy estimates.

An estimator hands an interval its per-row :class:`Scores`; the interval returns
``(low, high)``. Three intervals are provided:

- :class:`NormalInterval`: ``value ± z·sd(ψ)/√n`` on the (linearised) per-row scores ψ.
- :class:`BootstrapInterval`: a vectorised Poisson bootstrap (percentile interval) that
  recomputes the full statistic, self-normalisation included, on every resample.
- :class:`EmpiricalLikelihoodInterval`: the empirical-likelihood interval of Karampatziakis,
  Mineiro & Langford (2020) for importance-weighted estimators (IPS, SNIPS); it stays valid
  with small samples and heavy importance weights, where the normal interval under-covers.

Every estimator's value has the form ``mean(additive) + mean(numerator) / mean(denominator)``
(the ratio part is absent for linear estimators), which is all the bootstrap needs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final, Protocol

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, stats

__all__ = [
    "BootstrapInterval",
    "EmpiricalLikelihoodInterval",
    "ImportanceSample",
    "Interval",
    "NormalInterval",
    "Scores",
    "empirical_likelihood_bounds",
]

FloatArray = NDArray[np.float64]

_POISSON_TABLE_BITS: Final = 16


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


@dataclass(frozen=True, slots=True, eq=False)
class ImportanceSample:
    """Raw importance weights and rewards, for intervals that need them (empirical likelihood).

    Attributes:
        weights: ``(n,)`` importance weights ``π(a_i|x_i) / μ(a_i|x_i)``, unclipped, ``≥ 0``.
        rewards: ``(n,)`` observed rewards.
        weight_bound: an upper bound on the importance weight over the whole support (not
            only the observed rows), e.g. ``max π/μ`` over every logged row and action.
    """

    weights: FloatArray
    rewards: FloatArray
    weight_bound: float


@dataclass(frozen=True, slots=True, eq=False)
class Scores:
    """Per-row contributions of an estimator.

    The estimate is ``mean(additive) + mean(numerator) / mean(denominator)``; linear
    estimators (IPS, DM, DR, Switch-DR) leave ``numerator``/``denominator`` as ``None``.

    Attributes:
        estimator: name of the estimator that produced the scores.
        additive: ``(n,)`` per-row terms averaged directly.
        numerator: ``(n,)`` per-row numerator of the self-normalised part, or ``None``.
        denominator: ``(n,)`` per-row denominator of the self-normalised part, or ``None``.
        importance: raw weights and rewards when the estimator is a pure importance-weighted
            one (IPS, SNIPS), else ``None``.

    >>> s = Scores("SNIPS", np.zeros(3), np.array([2.0, 0.0, 1.0]), np.array([2.0, 1.0, 1.0]))
    >>> s.value
    0.75
    >>> s.influence().round(3).tolist()
    [1.125, 0.188, 0.938]
    """

    estimator: str
    additive: FloatArray
    numerator: FloatArray | None = None
    denominator: FloatArray | None = None
    importance: ImportanceSample | None = None

    def __post_init__(self) -> None:
        if (self.numerator is None) != (self.denominator is None):
            raise ValueError("numerator and denominator must be given together")
        if self.denominator is not None and not np.sum(self.denominator) > 0.0:
            raise ValueError(
                f"{self.estimator} is undefined: the self-normalising sum of importance "
                "weights is 0 (the target policy puts no mass on any logged action)"
            )

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.additive.shape[0])

    @property
    def value(self) -> float:
        """The point estimate."""
        value = float(np.mean(self.additive))
        if self.numerator is not None and self.denominator is not None:
            value += float(np.mean(self.numerator) / np.mean(self.denominator))
        return value

    def influence(self) -> FloatArray:
        """Per-row influence scores ψ with ``mean(ψ) == value``.

        For the self-normalised part ``N̄/D̄`` the delta method linearises it into
        ``N̄/D̄ + (N_i − (N̄/D̄)·D_i) / D̄``.
        """
        if self.numerator is None or self.denominator is None:
            return self.additive
        mean_den = float(np.mean(self.denominator))
        ratio = float(np.mean(self.numerator)) / mean_den
        return self.additive + ratio + (self.numerator - ratio * self.denominator) / mean_den

    @property
    def std_error(self) -> float:
        """Standard error ``sd(ψ)/√n`` (``nan`` with fewer than two rows)."""
        if self.n < 2:
            return math.nan
        return float(np.std(self.influence(), ddof=1)) / math.sqrt(self.n)


class Interval(Protocol):
    """A way of turning per-row scores into a two-sided ``1 − alpha`` confidence interval."""

    @property
    def alpha(self) -> float:
        """Miscoverage level: the interval aims at ``1 − alpha`` coverage."""
        ...

    @property
    def name(self) -> str:
        """Short name recorded in :class:`~offline_eval.estimators.Estimate`."""
        ...

    def bounds(self, scores: Scores) -> tuple[float, float]:
        """Return ``(low, high)``."""
        ...


@dataclass(frozen=True, slots=True)
class NormalInterval:
    """Wald interval ``value ± z_{1−α/2}·sd(ψ)/√n`` on the linearised per-row scores ψ.

    >>> low, high = NormalInterval(alpha=0.05).bounds(Scores("IPS", np.array([0.0, 1.0, 0.0, 1.0])))
    >>> round(low, 3), round(high, 3)
    (-0.066, 1.066)
    """

    alpha: float = 0.05

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)

    @property
    def name(self) -> str:
        return "normal"

    def bounds(self, scores: Scores) -> tuple[float, float]:
        z = NormalDist().inv_cdf(1.0 - self.alpha / 2.0)
        half = z * scores.std_error
        value = scores.value
        return value - half, value + half


@functools.cache
def _poisson_table() -> FloatArray:
    """Poisson(1) quantiles on a ``2**16`` grid: ``table[u]`` for uniform ``u`` is Poisson(1).

    Drawing a 16-bit integer and looking it up is ~10x faster than ``Generator.poisson``;
    the law is Poisson(1) with probabilities rounded to multiples of ``2**-16``.
    """
    size = 1 << _POISSON_TABLE_BITS
    grid = (np.arange(size, dtype=np.float64) + 0.5) / size
    return np.asarray(stats.poisson.ppf(grid, 1.0), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class BootstrapInterval:
    """Percentile interval of a vectorised Poisson bootstrap.

    Each resample gives every row an independent Poisson(1) weight (Hanley & MacGibbon
    2006; Chamandy et al. 2012), and the whole statistic
    ``Σ W·additive / Σ W + Σ W·numerator / Σ W·denominator`` is recomputed, so
    self-normalised estimators are bootstrapped exactly rather than through their
    linearisation. Resamples are drawn as a ``(chunk, n)`` weight matrix and reduced by one
    matrix product per chunk, ``chunk`` being chosen so that the matrix stays under
    ``max_chunk_bytes``: no Python loop over resamples.

    Attributes:
        alpha: miscoverage level.
        n_resamples: number of bootstrap resamples.
        seed: seed of the private random generator (same seed, same interval).
        max_chunk_bytes: memory budget of one chunk of the weight matrix.

    >>> scores = Scores("IPS", np.random.default_rng(0).normal(size=500))
    >>> low, high = BootstrapInterval(n_resamples=2000, seed=1).bounds(scores)
    >>> bool(low < scores.value < high)
    True
    """

    alpha: float = 0.05
    n_resamples: int = 1000
    seed: int = 0
    max_chunk_bytes: int = 64 * 2**20

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)
        if self.n_resamples < 10:
            raise ValueError(f"n_resamples must be >= 10, got {self.n_resamples!r}")
        if self.max_chunk_bytes <= 0:
            raise ValueError(f"max_chunk_bytes must be > 0, got {self.max_chunk_bytes!r}")

    @property
    def name(self) -> str:
        return "bootstrap"

    def replicates(self, scores: Scores) -> FloatArray:
        """The ``n_resamples`` bootstrap values of the statistic (non-finite ones dropped)."""
        n = scores.n
        columns = [np.ones(n), scores.additive]
        ratio = scores.numerator is not None and scores.denominator is not None
        if scores.numerator is not None and scores.denominator is not None:
            columns += [scores.numerator, scores.denominator]
        design = np.column_stack(columns)
        table = _poisson_table()
        rng = np.random.default_rng(self.seed)
        # uint16 draws + float64 weights per cell.
        chunk = max(1, min(self.n_resamples, self.max_chunk_bytes // (10 * n)))
        out = np.empty(self.n_resamples)
        with np.errstate(divide="ignore", invalid="ignore"):
            for start in range(0, self.n_resamples, chunk):
                stop = min(start + chunk, self.n_resamples)
                draws = rng.integers(0, table.shape[0], size=(stop - start, n), dtype=np.uint16)
                sums = table[draws] @ design
                values = sums[:, 1] / sums[:, 0]
                if ratio:
                    values += sums[:, 2] / sums[:, 3]
                out[start:stop] = values
        return out[np.isfinite(out)]

    def bounds(self, scores: Scores) -> tuple[float, float]:
        reps = self.replicates(scores)
        if reps.shape[0] == 0:
            return math.nan, math.nan
        low, high = np.quantile(reps, [self.alpha / 2.0, 1.0 - self.alpha / 2.0])
        return float(low), float(high)


@dataclass(frozen=True, slots=True)
class EmpiricalLikelihoodInterval:
    """Empirical-likelihood interval for the value ``E_μ[w·r]`` of IPS / SNIPS.

    Karampatziakis, Mineiro & Langford (2020), "Empirical Likelihood for Contextual
    Bandits", NeurIPS. The data ``(w_i, r_i)`` are modelled by a distribution ``Q`` on
    ``[0, w_max] × [r_min, r_max]`` with ``E_Q[w] = 1``; ``Q`` may put mass on unobserved
    points, which is what keeps the interval valid at small ``n`` with heavy weights. The
    interval is ``{E_Q[w·r] : log L(Q) ≥ log L(Q_mle) − δ}`` with
    ``δ = ½·F_{1, n−1}(1−α)`` (an F quantile in place of χ²₁ as a small-sample correction).

    The maximum-likelihood ``Q`` comes from a 1-D concave dual (Brent root). Each end of the
    interval then solves a two-variable concave dual,
    ``max_{γ,β} n·exp(mean_i log(γ + (β + r_i)·w_i) + B/n) − γ − β`` with
    ``B = log L(Q_mle) − δ``, subject to ``γ + (β + r)·w ≥ 0`` at the corners of the box;
    in corner coordinates these are two bounds ``≥ 0``, handled by projected Newton. Any
    dual-feasible point bounds the primal (weak duality), so an early stop errs on the
    wide side. For large ``n`` the interval approaches the normal interval of the optimal
    control-variate estimator ``mean(w·r − β(w − 1))``, which is narrower than SNIPS's.

    Attributes:
        alpha: miscoverage level.
        w_max: upper bound on the importance weight; ``None`` uses the estimator's support
            bound (``max π/μ`` over all logged actions when the logging pmf is known, else
            the largest observed weight — pass ``w_max`` in that case).
        r_min: lower bound of the reward range; ``None`` uses the smallest observed reward.
        r_max: upper bound of the reward range; ``None`` uses the largest observed reward.

    >>> rng = np.random.default_rng(0)
    >>> w = np.where(rng.random(60) < 0.1, 10.0, 0.0)
    >>> r = rng.random(60)
    >>> scores = Scores("IPS", w * r, importance=ImportanceSample(w, r, 10.0))
    >>> low, high = EmpiricalLikelihoodInterval(r_min=0.0, r_max=1.0).bounds(scores)
    >>> bool(0.0 <= low < scores.value < high <= 1.0)
    True
    """

    alpha: float = 0.05
    w_max: float | None = None
    r_min: float | None = None
    r_max: float | None = None

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)
        if self.w_max is not None and not self.w_max > 1.0:
            raise ValueError(f"w_max must be > 1, got {self.w_max!r}")
        if self.r_min is not None and self.r_max is not None and self.r_min > self.r_max:
            raise ValueError(f"r_min must be <= r_max, got {self.r_min!r} > {self.r_max!r}")

    @property
    def name(self) -> str:
        return "empirical-likelihood"

    def bounds(self, scores: Scores) -> tuple[float, float]:
        sample = scores.importance
        if sample is None:
            raise ValueError(
                "EmpiricalLikelihoodInterval applies to importance-weighted estimators "
                f"(IPS, SNIPS) only, not to {scores.estimator}"
            )
        w, r = sample.weights, sample.rewards
        r_min = float(np.min(r)) if self.r_min is None else self.r_min
        r_max = float(np.max(r)) if self.r_max is None else self.r_max
        w_max = sample.weight_bound if self.w_max is None else self.w_max
        # A support bound of exactly 1 (target == logging) still needs the corner w_max > 1.
        w_max = max(w_max, 1.0 + 1e-9)
        return empirical_likelihood_bounds(
            w, r, alpha=self.alpha, w_max=w_max, r_min=r_min, r_max=r_max
        )


def empirical_likelihood_bounds(
    w: FloatArray, r: FloatArray, *, alpha: float, w_max: float, r_min: float, r_max: float
) -> tuple[float, float]:
    """Empirical-likelihood ``1 − alpha`` interval for ``E[w·r]`` (see the class docstring).

    ``w`` must lie in ``[0, w_max]`` with ``w_max > 1`` and ``r`` in ``[r_min, r_max]``.
    """
    _check_alpha(alpha)
    if w.shape != r.shape or w.ndim != 1:
        raise ValueError(f"w and r must be 1-D of the same shape, got {w.shape} and {r.shape}")
    if not w_max > 1.0:
        raise ValueError(f"w_max must be > 1, got {w_max!r}")
    if float(np.min(w)) < 0.0:
        raise ValueError(f"importance weights must be >= 0, got {float(np.min(w))!r}")
    if float(np.max(w)) > w_max * (1.0 + 1e-9):
        raise ValueError(
            f"w_max={w_max!r} is below the largest importance weight {float(np.max(w))!r}"
        )
    if float(np.min(r)) < r_min:
        raise ValueError(f"r_min={r_min!r} is above the smallest reward {float(np.min(r))!r}")
    if float(np.max(r)) > r_max:
        raise ValueError(f"r_max={r_max!r} is below the largest reward {float(np.max(r))!r}")
    w = np.minimum(w, w_max)
    n = int(w.shape[0])
    if r_max == r_min:
        return r_min, r_max
    if n < 2:
        return r_min, r_max
    beta_mle, d_mle = _mle_dual(w, w_max)
    log_d = np.log(d_mle)
    delta = 0.5 * float(stats.f.isf(alpha, 1, n - 1))
    low = r_min + _dual_bound(w, (r - r_min) * w, beta_mle, log_d, delta, w_max)
    high = r_max - _dual_bound(w, (r_max - r) * w, beta_mle, log_d, delta, w_max)
    low, high = min(max(low, r_min), r_max), min(max(high, r_min), r_max)
    return low, max(low, high)


def _mle_dual(w: FloatArray, w_max: float) -> tuple[float, FloatArray]:
    """``(β*, d)`` with ``d_i = n + β*(w_i − 1)``: the EL maximum-likelihood ``q_i = 1/d_i``.

    ``β*`` maximises the concave ``Σ log(n + β(w_i − 1))`` over the interval where the
    missing mass on the corners ``w ∈ {0, w_max}`` stays non-negative,
    ``n/(1 − w_max) ≤ β ≤ n``.
    """
    n = float(w.shape[0])
    wm1 = w - 1.0
    lo, hi = n / (1.0 - w_max), n
    # Step off the ends by a hair so that a row sitting on a corner keeps d_i > 0.
    lo, hi = lo + 1e-10 * abs(lo), hi - 1e-10 * abs(hi)

    def slope(beta: float) -> float:
        return float(np.sum(wm1 / (n + beta * wm1)))

    if slope(lo) <= 0.0:
        beta = lo
    elif slope(hi) >= 0.0:
        beta = hi
    else:
        beta = float(optimize.brentq(slope, lo, hi, xtol=1e-12 * n, rtol=1e-14))
    return beta, n + beta * wm1


def _dual_bound(
    w: FloatArray, c: FloatArray, beta_mle: float, log_d: FloatArray, delta: float, w_max: float
) -> float:
    """Lower bound on ``E_Q[w·s]`` for shifted rewards ``s ≥ 0``, with ``c = s·w``.

    In the corner coordinates ``a = γ``, ``b = γ + u·w_max`` (``u = β + r_min``) the dual
    reads ``max_{a,b ≥ 0} F(a, b) = n·exp(mean log(D_i/d_i) − δ/n) − a(1 − 1/w_max) −
    b/w_max`` with ``D_i = a(1 − w_i/w_max) + b·w_i/w_max + c_i``; ``F`` is concave and
    ``F(x)`` at any feasible ``x`` is a valid bound.
    """
    if not float(np.max(c)) > 0.0:
        # Every observed w·s is 0: F is positively homogeneous, so its supremum is F(0) = 0.
        return 0.0
    n = float(w.shape[0])
    frac = w / w_max
    basis = np.stack([1.0 - frac, frac])  # (2, n): D = basis.T @ (a, b) + c
    lin = np.array([1.0 - 1.0 / w_max, 1.0 / w_max])
    shift = float(np.mean(log_d)) + delta / n

    def value(x: FloatArray) -> float:
        d = x[0] * basis[0] + x[1] * basis[1] + c
        if not float(np.min(d)) > 0.0:
            return -math.inf
        return n * math.exp(float(np.mean(np.log(d))) - shift) - float(lin @ x)

    # Start on the ray through the MLE multipliers, its scale set by a 1-D search.
    ray = np.array([n - beta_mle, n + beta_mle * (w_max - 1.0)]) + 1e-6 * n

    def neg_on_ray(log_t: float) -> float:
        v = value(math.exp(log_t) * ray)
        return -v if math.isfinite(v) else math.inf

    found = optimize.minimize_scalar(
        neg_on_ray,
        bounds=(math.log(1e-14), math.log(10.0)),
        method="bounded",
        options={"xatol": 1e-3},
    )
    x = math.exp(float(found.x)) * ray
    f_x = value(x)
    if not math.isfinite(f_x):
        return 0.0
    best = max(f_x, 0.0)
    for _ in range(100):
        d = x[0] * basis[0] + x[1] * basis[1] + c
        inv = basis / d
        scale = n * math.exp(float(np.mean(np.log(d))) - shift)
        g_mean = inv.mean(axis=1)
        grad = scale * g_mean - lin
        hess = scale * (np.outer(g_mean, g_mean) - (inv @ inv.T) / n)
        free = ~((x <= 0.0) & (grad <= 0.0))
        if not free.any():
            break
        step = np.zeros(2)
        try:
            step[free] = -np.linalg.solve(hess[np.ix_(free, free)], grad[free])
        except np.linalg.LinAlgError:
            step[free] = grad[free]
        if not float(grad @ step) > 0.0:
            step = np.where(free, grad, 0.0)
        gain = float(grad @ step)
        if gain <= 1e-12 * max(1.0, abs(f_x)):
            break
        # Longest step keeping a, b >= 0; it lands exactly on the blocking bound.
        blocking = [(float(x[j] / -step[j]), j) for j in range(2) if step[j] < 0.0]
        t_max, j_block = min(blocking, default=(math.inf, -1))
        t = min(1.0, t_max)
        for _ in range(60):
            x_new = np.maximum(x + t * step, 0.0)
            if t == t_max:
                x_new[j_block] = 0.0
            f_new = value(x_new)
            if f_new >= f_x + 1e-4 * t * gain:
                break
            t *= 0.5
        else:
            break
        improvement = f_new - f_x
        x, f_x = x_new, f_new
        best = max(best, f_x)
        if t == 1.0 and improvement <= 1e-13 * max(1.0, abs(f_x)):
            break
    return best
