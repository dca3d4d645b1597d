"""The number policy: which numbers a request may carry, so that none breaks VW's float32.

VW keeps every feature value, weight and label in 32-bit floats and reads them from text.
Finite doubles that float32 cannot hold become ±inf or NaN inside VW (1e39 overflows;
``1e-163`` parses to NaN), and one such value learned poisons every later prediction. So
every number that comes from the wire — feature values, offer and channel costs, discount
rates, revenue — goes through one rule:

* not finite (NaN, ±inf) → rejected;
* ``|x| > MAX_MAGNITUDE`` (1e15) → rejected. 1e15 leaves room for pairwise interactions
  (1e30) below float32's 3.4e38 and keeps integers up to 2^49 exact in a double;
* ``0 < |x| < TINY`` (1e-30) → **flushed to 0.0** (the value the decision is logged and
  learned with). Such values carry nothing a marketing model can use, and rejecting them
  would fail requests over rounding noise;
* everything else is kept as it is.

Rejections raise :class:`~bandit.errors.InvalidRequest` naming the field. Times have their
own range (:data:`MIN_TIME`, :data:`MAX_TIME`: the protobuf ``Timestamp`` range).

>>> flush(1e-40), flush(-2.5), flush(0.0)
(0.0, -2.5, 0.0)
>>> check_number(1e16, "customer.features['ltv']")
Traceback (most recent call last):
...
bandit.errors.InvalidRequest: customer.features['ltv']: must be within ±1e+15, got 1e+16
"""

from __future__ import annotations

import math

from bandit.errors import InvalidRequest

MAX_MAGNITUDE = 1e15
"""Largest magnitude a number from a request may have."""
TINY = 1e-30
"""Magnitudes below this (but not zero) are flushed to 0.0."""
MIN_TIME = 0.0
"""Earliest time (seconds since the epoch) a request may carry: 1970-01-01."""
MAX_TIME = 253_402_300_799.0
"""Latest time a request may carry: 9999-12-31T23:59:59Z (the protobuf Timestamp range)."""


def flush(value: float) -> float:
    """``value`` with a subnormal-small magnitude (below :data:`TINY`) replaced by 0.0.

    Non-finite and huge values pass unchanged (:func:`check_number` rejects them)."""
    if value != 0.0 and -TINY < value < TINY:
        return 0.0
    return value


def in_range(value: float) -> bool:
    """Whether ``value`` passes the number policy (finite, ``|x| <= MAX_MAGNITUDE``, and not
    a non-zero below :data:`TINY`).

    >>> in_range(1e15), in_range(float("inf")), in_range(1e-31), in_range(0.0)
    (True, False, False, True)
    """
    try:
        x = float(value)
    except OverflowError:  # a Python int beyond a double
        return False
    return math.isfinite(x) and abs(x) <= MAX_MAGNITUDE and (x == 0.0 or abs(x) >= TINY)


def check_number(value: float, field: str) -> None:
    """Raise :class:`InvalidRequest` naming ``field`` unless ``value`` passes the policy.

    >>> check_number(float("nan"), "revenue")
    Traceback (most recent call last):
    ...
    bandit.errors.InvalidRequest: revenue: must be a finite number, not nan
    """
    try:
        x = float(value)
    except OverflowError:
        raise InvalidRequest(field, f"must be within ±{MAX_MAGNITUDE:g}") from None
    if not math.isfinite(x):
        raise InvalidRequest(field, f"must be a finite number, not {x}")
    if abs(x) > MAX_MAGNITUDE:
        raise InvalidRequest(field, f"must be within ±{MAX_MAGNITUDE:g}, got {x:.6g}")
    if x != 0.0 and abs(x) < TINY:
        raise InvalidRequest(field, f"must be 0 or at least {TINY:g} in magnitude, got {x:.6g}")


def check_time(value: float, field: str) -> None:
    """Raise :class:`InvalidRequest` naming ``field`` unless ``value`` is a time within
    [:data:`MIN_TIME`, :data:`MAX_TIME`].

    >>> check_time(1.7e9, "occurred_at")
    >>> check_time(-1.0, "occurred_at")
    Traceback (most recent call last):
    ...
    bandit.errors.InvalidRequest: occurred_at: must be a time between 1970 and 9999, got -1
    """
    if not (math.isfinite(value) and MIN_TIME <= value <= MAX_TIME):
        raise InvalidRequest(field, f"must be a time between 1970 and 9999, got {value:.6g}")


def finite_float32(value: float) -> bool:
    """Whether ``value`` survives the trip into VW's float32 (a label or weight VW may see).

    >>> finite_float32(1e15), finite_float32(1e39), finite_float32(float("nan"))
    (True, False, False)
    """
    return math.isfinite(value) and abs(value) <= MAX_MAGNITUDE


__all__ = [
    "MAX_MAGNITUDE",
    "MAX_TIME",
    "MIN_TIME",
    "TINY",
    "check_number",
    "check_time",
    "finite_float32",
    "flush",
    "in_range",
]
