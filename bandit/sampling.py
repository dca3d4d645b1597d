"""Exploration helpers that sit between scoring and logging: the control share and sampling.

Sampling is separate from scoring. Its randomness comes from a seed derived from
(server seed, event id), so any logged decision can be re-derived exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def mix_control(pmf: Sequence[float], control_index: int, floor: float) -> tuple[float, ...]:
    """Raise the control treatment's probability to at least ``floor``, scaling the rest.

    The result is what gets sampled *and* logged, so the propensity of every treatment,
    control included, is exact.

    >>> mix_control([0.9, 0.1], control_index=1, floor=0.2)
    (0.8, 0.2)
    >>> mix_control([0.5, 0.5], control_index=1, floor=0.05)
    (0.5, 0.5)
    >>> mix_control([1.0, 0.0], control_index=1, floor=0.05)
    (0.95, 0.05)
    """
    _check_floor(floor)
    return tuple(_mixed(pmf, control_index, floor))


def normalise(pmf: Sequence[float]) -> tuple[float, ...]:
    """Clip tiny negative rounding noise and make the pmf sum to exactly 1 (within float).

    >>> normalise([0.2, 0.2, 0.2])
    (0.3333333333333333, 0.3333333333333333, 0.3333333333333333)
    """
    return tuple(_normalised(pmf))


def floored_pmf(scores: Sequence[float], control_index: int, floor: float) -> tuple[float, ...]:
    """``normalise(mix_control(normalise(scores), control_index, floor))`` without the
    intermediate tuples (Choose calls it once per decision).

    >>> floored_pmf([3.0, 1.0], control_index=1, floor=0.5)
    (0.5, 0.5)
    """
    _check_floor(floor)
    return tuple(_normalised(_mixed(_normalised(scores), control_index, floor)))


def _check_floor(floor: float) -> None:
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"control share must be within [0, 1], not {floor}")


def _mixed(pmf: Sequence[float], control_index: int, floor: float) -> Sequence[float]:
    pc = pmf[control_index]
    if pc >= floor:
        return pmf
    rest = 1.0 - pc
    scale = (1.0 - floor) / rest if rest > 0 else 0.0
    out = [p * scale for p in pmf]
    out[control_index] = floor
    return out


def _normalised(pmf: Sequence[float]) -> list[float]:
    clipped = [p if p > 0.0 else 0.0 for p in pmf]  # also NaN (from an infinite score) → 0
    total = sum(clipped)
    if total <= 0.0:
        raise ValueError("pmf has no mass")
    return [p / total for p in clipped]


def derive_seed(server_seed: int, event_id: str) -> int:
    """A 64-bit seed from the server seed and the event id (stable across runs and hosts).

    >>> derive_seed(7, "e1") == derive_seed(7, "e1") != derive_seed(8, "e1")
    True
    """
    h = hashlib.blake2b(f"{server_seed}:{event_id}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def uniform_from_seed(seed: int) -> float:
    """A number in [0, 1) determined by ``seed``.

    >>> 0.0 <= uniform_from_seed(123) < 1.0
    True
    """
    h = hashlib.blake2b(seed.to_bytes(8, "big"), digest_size=8, person=b"offerbnd")
    return (int.from_bytes(h.digest(), "big") >> 11) / float(1 << 53)


def sample_index(pmf: Sequence[float], u: float) -> int:
    """Inverse-CDF sampling of ``pmf`` at ``u`` in [0, 1); never returns a zero-probability index.

    >>> sample_index([0.5, 0.0, 0.5], 0.49), sample_index([0.5, 0.0, 0.5], 0.5)
    (0, 2)
    >>> sample_index([0.3, 0.7, 0.0], 0.999999999)
    1
    """
    acc = 0.0
    last = -1
    for i, p in enumerate(pmf):
        if p <= 0.0:
            continue
        last = i
        acc += p
        if u < acc:
            return i
    if last < 0:
        raise ValueError("pmf has no mass")
    return last  # u fell in the rounding gap at the top: the last supported index
