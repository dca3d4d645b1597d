"""Bayesian linear regression on sparse design rows, for two targets that share the design.

Prior ``w ~ N(0, σ²/λ · I)``, Gaussian noise ``σ²``: the posterior of ``w`` is
``N(A⁻¹ b, σ² A⁻¹)`` with ``A = λI + XᵀX`` and ``b = Xᵀy`` (Bishop, *Pattern Recognition and
Machine Learning*, §3.3). Both targets — attributed revenue and purchase — are regressed on
the same rows, so they share ``A`` and one Cholesky factor; each has its own ``b`` and its
noise variance ``σ²``, estimated from the residual sum of squares
``yᵀy − mᵀb − λ‖m‖²``.

:class:`LinearStats` accumulates the sufficient statistics one learned row at a time (exact,
order-independent up to rounding); :meth:`LinearStats.fit` turns them into a
:class:`Posterior`: the two means and ``S`` joint posterior draws of each weight vector
(drawn once per fit with a seeded generator), which the policy uses for the spread of a
treatment's net uplift and for posterior-sampling exploration.

>>> st = LinearStats(targets=2)
>>> for x, y in [(1.0, 2.0), (2.0, 4.1), (3.0, 5.9)]:
...     st.add(np.array([1]), np.array([x]), (y, 1.0))
>>> post = st.fit(lam=1e-6, samples=8, seed=0)
>>> round(float(post.means[0][1]), 2), post.samples[0].shape
(1.99, (2, 8))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import cho_factor, cho_solve, solve_triangular

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

MIN_NOISE_VARIANCE = 1e-6


@dataclass(frozen=True, slots=True)
class Posterior:
    """What a decider needs: per target the posterior mean (``[D]``) and draws (``[D, S]``,
    deviations from the mean, noise scale included). Parameter 0 is always 0."""

    means: tuple[FloatArray, ...]
    samples: tuple[NDArray[np.float32], ...]
    noise: tuple[float, ...]
    """Each target's estimated noise standard deviation."""
    n: int
    """How many rows were learned."""

    @staticmethod
    def empty(targets: int, samples: int) -> Posterior:
        return Posterior(
            tuple(np.zeros(1) for _ in range(targets)),
            tuple(np.zeros((1, samples), dtype=np.float32) for _ in range(targets)),
            tuple(0.0 for _ in range(targets)),
            0,
        )


class LinearStats:
    """``XᵀX``, ``Xᵀy`` and ``yᵀy`` per target, grown as parameters appear."""

    def __init__(self, targets: int, capacity: int = 256) -> None:
        self.targets = targets
        self.xtx = np.zeros((capacity, capacity))
        self.xty = np.zeros((targets, capacity))
        self.yty = np.zeros(targets)
        self.n = 0
        self.dim = 1

    def _grow(self, dim: int) -> None:
        cap = len(self.xtx)
        if dim <= cap:
            return
        new = max(dim + 256, int(cap * 1.25))
        xtx = np.zeros((new, new))
        xtx[:cap, :cap] = self.xtx
        xty = np.zeros((self.targets, new))
        xty[:, :cap] = self.xty
        self.xtx, self.xty = xtx, xty

    def reserve(self, dim: int) -> None:
        """Widen to ``dim`` parameters (unseen ones: no data, prior only)."""
        self._grow(dim)
        self.dim = max(self.dim, dim)

    def add(self, idx: IntArray, val: FloatArray, ys: Sequence[float]) -> None:
        """Learn one row: distinct parameter ids ``idx`` (> 0) with values ``val``."""
        if len(idx):
            top = int(idx.max()) + 1
            self._grow(top)
            self.dim = max(self.dim, top)
            block = np.ix_(idx, idx)
            self.xtx[block] += np.outer(val, val)
            for t, y in enumerate(ys):
                self.xty[t, idx] += val * y
        self.yty += np.square(np.asarray(ys, dtype=np.float64))
        self.n += 1

    def log_evidence(self, lam: FloatArray, targets: Sequence[int] | None = None) -> float:
        """The log marginal likelihood of both targets under prior precisions ``lam``, each
        target's noise variance profiled out (up to a constant): ``Σ_t −n/2·log σ̂²_t −
        ½(log|A| − log|Λ|)`` with ``σ̂²_t = (yᵀy − bᵀA⁻¹b)/n`` (Bishop §3.5, with the prior
        scaled by the noise). Used to choose the crosses' prior precision from the data."""
        d = self.dim
        a = self.xtx[:d, :d].copy()
        a[np.diag_indices(d)] += lam[:d]
        factor = cho_factor(a, lower=True, check_finite=False)
        logdet = 2.0 * float(np.sum(np.log(np.diag(factor[0])))) - float(np.sum(np.log(lam[:d])))
        n = max(self.n, 1)
        total = 0.0
        for t in range(self.targets) if targets is None else targets:
            b = self.xty[t, :d]
            fit = float(b @ cho_solve(factor, b, check_finite=False))
            var = max((float(self.yty[t]) - fit) / n, MIN_NOISE_VARIANCE)
            total += -0.5 * n * float(np.log(var)) - 0.5 * logdet
        return total

    def fit(self, lam: FloatArray | float, samples: int, seed: int) -> Posterior:
        """The posterior under prior precisions ``lam`` (one per parameter, or one for all),
        with ``samples`` draws per target."""
        d = self.dim
        prior = np.broadcast_to(np.asarray(lam, dtype=np.float64), (max(d, 1),))[:d]
        a = self.xtx[:d, :d].copy()
        a[np.diag_indices(d)] += prior
        factor = cho_factor(a, lower=True, check_finite=False)
        rng = np.random.default_rng([seed, self.n])
        means: list[FloatArray] = []
        draws: list[NDArray[np.float32]] = []
        noise: list[float] = []
        for t in range(self.targets):
            b = self.xty[t, :d]
            m = cho_solve(factor, b, check_finite=False)
            m[0] = 0.0
            rss = float(self.yty[t] - m @ b - m @ (prior * m))
            var = max(rss / max(self.n, 1), MIN_NOISE_VARIANCE)
            # L Lᵀ = A, so z = L⁻ᵀ g has covariance A⁻¹ for standard normal g.
            g = rng.standard_normal((d, samples))
            z = solve_triangular(factor[0], g, lower=True, trans="T", check_finite=False)
            z[0] = 0.0
            means.append(m)
            draws.append((np.sqrt(var) * z).astype(np.float32))
            noise.append(float(np.sqrt(var)))
        return Posterior(tuple(means), tuple(draws), tuple(noise), self.n)

    def state(self) -> dict[str, FloatArray]:
        d = self.dim
        iu = np.triu_indices(d)
        return {
            "xtx": self.xtx[:d, :d][iu].astype(np.float64),
            "xty": self.xty[:, :d].copy(),
            "yty": self.yty.copy(),
            "n_dim": np.array([self.n, d], dtype=np.float64),
        }

    @classmethod
    def from_state(cls, targets: int, s: dict[str, FloatArray]) -> LinearStats:
        n, d = (int(x) for x in s["n_dim"])
        st = cls(targets, capacity=d + 256)
        iu = np.triu_indices(d)
        block = np.zeros((d, d))
        block[iu] = s["xtx"]
        block = block + np.triu(block, 1).T
        st.xtx[:d, :d] = block
        st.xty[:, :d] = s["xty"]
        st.yty = np.array(s["yty"], dtype=np.float64)
        st.n, st.dim = n, d
        return st
