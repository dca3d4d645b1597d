"""Empirical-Bayes shrinkage of slice effects: small slices borrow strength from their family.

A slice's AIPW effect ``v_j`` with standard error ``s_j`` is read as a draw around the
slice's true effect ``θ_j``, and the ``θ_j`` of one *family* (the same treatment, or group,
or the live policy, cut by the same dimension: ``discount_10@sms`` by stage) as draws from
``N(m, τ²)``. The normal–normal posterior mean and standard deviation are

    θ̂_j = m + B_j·(v_j − m),   sd_j = s_j·√B_j,   B_j = τ² / (τ² + s_j²)

with ``m`` the family's precision-weighted mean (for the live policy: its mean weighted by
decisions, its overall effect) and ``τ²`` the DerSimonian–Laird
moment estimate (``0`` when the slices vary no more than their noise: every slice is then
shown at the family mean). A slice with a wide interval is pulled far towards ``m``, a
precise one barely moves: "+539 EUR per decision [−536, 1,615]" becomes a number close to
the family's mean. The raw estimates stay in the table (``value``, ``ci_low``,
``ci_high``, and the totals, which must add up), the shrunk ones are what is ranked and
plotted.

>>> v = np.array([1.0, 2.0, 40.0]); s = np.array([0.5, 0.5, 30.0])
>>> post, sd = shrink_family(v, s)
>>> [round(x, 2) for x in post.tolist()]
[1.19, 1.81, 1.52]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from offline_eval.uplift.report import OVERALL, SliceEffect

__all__ = ["shrink_effects", "shrink_family"]

FloatArray = NDArray[np.float64]

MIN_ROWS = 5
"""Fewest treated and control rows for a slice's standard error to be trusted in a family."""


def shrink_family(
    values: FloatArray, errors: FloatArray, sizes: FloatArray | None = None
) -> tuple[FloatArray, FloatArray]:
    """Posterior means and standard deviations of one family (finite inputs, ``errors > 0``).

    The family mean is the ``sizes``-weighted mean of the slices when sizes are given (the
    live policy's slices, weighted by decisions: exactly its overall effect, so the shrunk
    slices agree with the overall row; a precision-weighted mean would lean towards the
    slices with the least varied rewards and could put every slice below an overall effect
    above 0), else the precision-weighted mean (treatments: a noisy slice barely moves it).
    """
    k = values.shape[0]
    if k < 2:
        return values.copy(), errors.copy()
    w = 1.0 / errors**2
    share = w / w.sum() if sizes is None else np.asarray(sizes, dtype=np.float64) / np.sum(sizes)
    m = float(share @ values)
    var_m = float(share**2 @ errors**2)
    q = float(np.sum(w * (values - m) ** 2))
    denom = float(np.sum(w) - np.sum(w**2) / np.sum(w))
    tau2 = max(0.0, (q - (k - 1)) / denom) if denom > 0 else 0.0
    b = tau2 / (tau2 + errors**2)
    post: FloatArray = m + b * (values - m)
    # the family mean's own uncertainty, shared by every slice in proportion to (1 − B)
    sd: FloatArray = np.sqrt(errors**2 * b + (1.0 - b) ** 2 * var_m)
    return post, sd


def shrink_effects(effects: Iterable[SliceEffect], z: float) -> list[SliceEffect]:
    """Every effect with its shrunk value and interval (``shrunk``, ``shrunk_low``,
    ``shrunk_high``); the overall rows and families of one slice keep their raw numbers."""
    effects = list(effects)
    families: dict[tuple[str, str, str], list[int]] = {}
    for i, e in enumerate(effects):
        usable = min(e.n_treated, e.n_control) >= MIN_ROWS and math.isfinite(e.value)
        if e.dimension != OVERALL and usable and e.std_error > 0.0:
            families.setdefault((e.dimension, e.level, e.treatment), []).append(i)
    out = [
        dataclasses.replace(e, shrunk=e.value, shrunk_low=e.ci_low, shrunk_high=e.ci_high)
        for e in effects
    ]
    for members in families.values():
        values = np.array([effects[i].value for i in members])
        errors = np.array([effects[i].std_error for i in members])
        policy = effects[members[0]].level == "policy"
        sizes = np.array([effects[i].n for i in members], dtype=np.float64) if policy else None
        post, sd = shrink_family(values, errors, sizes)
        for i, p, s in zip(members, post.tolist(), sd.tolist(), strict=True):
            out[i] = dataclasses.replace(
                out[i], shrunk=p, shrunk_low=p - z * s, shrunk_high=p + z * s
            )
    return out
