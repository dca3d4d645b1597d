"""GetStats' live incremental estimate: doubly robust, with a baseline fitted on earlier data.

The quantity is the live policy's net value per decision above all-control,
``Δ = V(logged policy) − V(control)``, over the closed, non-holdout decisions of a recent
period. Per decision ``i`` (context ``x``, reward ``r``, control's logged propensity ``μ``):

    ψ_i = (r_i − b_{i}(x_i)) · (1 − 1{control}_i / μ_i)

where ``b_i`` is a ridge regression of the reward on the context, fitted on the control
decisions closed *before* ``i``'s block (never on ``i`` itself). Whatever ``b`` is, as long as
it is fixed before ``i``'s outcome, ``E[ψ_i | past, x_i] = E[r | x_i] − E[r | x_i, control]``
(the ``b`` terms cancel: ``E[1{control}/μ | x] = 1``), so the mean of the ψ is an unbiased
estimate of ``Δ`` and their centred sum a martingale: the normal interval holds although the
policy adapts. With ``b = 0`` this is the plain estimate ``r − 1{control}·r/μ``; a ``b`` close
to control's expected reward removes the part of each control row's 1/μ-weighted reward that
the context explains, which is most of the interval's width once the policy treats and
control is drawn by the control floor only (Robins et al. 1994; Dudík et al. 2011,
"Doubly robust policy evaluation and learning"; the baseline as a control variate).

The context's tokens are those the uplift policy reads with number bins on (the log does not
import the policy: :func:`tokens` spells them out), plus each one crossed with the trigger
type, hashed into ``dims`` columns (CRC-32: the same in every process).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
DIMS = 512
BLOCK = 1000
RIDGE = 1.0


@dataclass(frozen=True, slots=True)
class Row:
    """One closed decision as the estimate reads it."""

    customer: Mapping[str, Any]
    """The customer's features (as logged)."""
    trigger_type: str
    trigger: Mapping[str, Any]
    reward: float
    control: bool
    propensity: float
    """Control's logged probability when the decision took control (else unused)."""


_SLOTS: dict[tuple[object, int], int] = {}


def _slot(token: object, dims: int) -> int:
    key = (token, dims)
    slot = _SLOTS.get(key)
    if slot is None:
        if len(_SLOTS) >= 1 << 16:
            _SLOTS.clear()
        slot = _SLOTS[key] = zlib.crc32(repr(token).encode()) % dims
    return slot


def _number(value: float) -> tuple[float, int]:
    """``sign(v)·log1p(|v|)`` and the half-octave bin ``±round(2·log2(1 + |v|))`` (0, 0
    when not finite)."""
    v = float(value)
    if not math.isfinite(v):
        return 0.0, 0
    return math.copysign(math.log1p(abs(v)), v), int(
        math.copysign(round(2.0 * math.log2(1.0 + abs(v))), v)
    )


def tokens(
    customer: Mapping[str, Any], trigger_type: str, trigger: Mapping[str, Any]
) -> dict[tuple[Any, ...], float]:
    """The context's tokens and values: a bias, the trigger type, each text or flag feature
    (name and value), each number (its squashed value, and its bin) and each list item; a
    token named twice adds up.

    >>> t = tokens({"stage": "vip", "ltv": 30.0}, "login", {"tags": ["a"]})
    >>> len(t), t[("t", "@type", "login")], t[("c", "ltv", "~", 10)], round(t[("c", "ltv")], 4)
    (6, 1.0, 1.0, 3.434)
    """
    out: dict[tuple[Any, ...], float] = {("@bias",): 1.0, ("t", "@type", trigger_type): 1.0}
    for ns, feats in (("c", customer), ("t", trigger)):
        for name, value in feats.items():
            if isinstance(value, bool | str):
                keys: list[tuple[tuple[Any, ...], float]] = [((ns, name, value), 1.0)]
            elif isinstance(value, int | float):
                v, b = _number(value)
                keys = [((ns, name), v), ((ns, name, "~", b), 1.0)]
            else:
                keys = [((ns, name, str(tag)), 1.0) for tag in value]
            for tok, v in keys:
                out[tok] = out.get(tok, 0.0) + v
    return out


def features(
    customer: Mapping[str, Any], trigger_type: str, trigger: Mapping[str, Any], dims: int = DIMS
) -> FloatArray:
    """The context's hashed design row ``[dims]``.

    >>> x = features({"stage": "vip", "ltv": 3.0}, "login", {})
    >>> x.shape, float(x[_slot(("@bias",), DIMS)]) > 0
    ((512,), True)
    """
    out = np.zeros(dims)
    kind = ("@type", trigger_type)
    for tok, v in tokens(customer, trigger_type, trigger).items():
        out[_slot(tok, dims)] += v
        out[_slot((kind, tok), dims)] += v
    return out


class LiveIncremental:
    """The doubly robust scores of decisions fed in closing order (:meth:`add`).

    The baseline is refitted every ``block`` decisions from the control decisions seen so
    far; a decision's score uses the fit from before its block.

    >>> est = LiveIncremental(dims=16, block=2)
    >>> rows = [Row({}, "t", {}, r, c, 0.5) for r, c in [(1.0, True), (3.0, False)] * 3]
    >>> [round(x, 3) for x in est.add(rows)]
    [-1.0, 3.0, -0.2, 2.2, -0.111, 2.111]
    """

    def __init__(self, dims: int = DIMS, block: int = BLOCK, ridge: float = RIDGE) -> None:
        self.dims = dims
        self.block = block
        self.ridge = ridge
        self._xtx = np.zeros((dims, dims))
        self._xty = np.zeros(dims)
        self._beta: NDArray[Any] = np.zeros(dims)
        self._seen = np.zeros(dims, dtype=np.bool_)
        self._pending = 0
        """Decisions scored with the current fit (a refit comes once ``block`` are)."""
        self.n = 0

    def add(self, rows: Iterable[Row]) -> list[float]:
        """Each row's ψ, in order."""
        out: list[float] = []
        batch: list[Row] = []
        for row in rows:
            batch.append(row)
            if self._pending + len(batch) >= self.block:
                out += self._score(batch)
                batch = []
        if batch:
            out += self._score(batch)
        return out

    def _score(self, rows: list[Row]) -> list[float]:
        x = np.stack([features(r.customer, r.trigger_type, r.trigger, self.dims) for r in rows])
        r = np.array([_finite(row.reward) for row in rows])
        control = np.array([row.control for row in rows], dtype=np.bool_)
        mu = np.array([row.propensity if row.control else 1.0 for row in rows])
        b = x @ self._beta
        weight = np.where(control, 1.0 - 1.0 / np.maximum(mu, 1e-12), 1.0)
        psi = (r - b) * weight
        # Only the columns these rows use (a few dozen of ``dims``): the same sums, cheaper.
        cols = np.flatnonzero(x[control].any(axis=0))
        xc = x[np.ix_(control, cols)]
        self._xtx[np.ix_(cols, cols)] += xc.T @ xc
        self._xty[cols] += xc.T @ r[control]
        self._seen[cols] = True
        self._pending += len(rows)
        self.n += len(rows)
        if self._pending >= self.block:
            self._refit()
        return [float(v) for v in psi]

    def _refit(self) -> None:
        # Columns no control row has used have no data: their ridge solution is 0, so only
        # the used ones are solved for.
        used = np.flatnonzero(self._seen)
        a = self._xtx[np.ix_(used, used)] + self.ridge * np.eye(len(used))
        beta = np.zeros(self.dims)
        try:
            beta[used] = np.linalg.solve(a, self._xty[used])
        except np.linalg.LinAlgError:  # pragma: no cover - ridge keeps it positive definite
            beta[:] = 0.0
        self._beta = beta
        self._pending = 0


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


__all__ = ["BLOCK", "DIMS", "LiveIncremental", "Row", "features", "tokens"]
