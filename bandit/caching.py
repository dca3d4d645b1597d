"""Caches keyed by object identity, for immutable domain objects on the hot path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class IdentityCache(Generic[K, V]):
    """Values computed from immutable objects, remembered by the objects' identity.

    Frozen domain objects cannot change, so a value computed from one stays right for as
    long as that very object lives; the cache holds the object to keep its id unique.
    Bounded; cleared when full. Safe under the GIL (single dict operations).
    """

    def __init__(self, compute: Callable[[K], V], size: int = 16384) -> None:
        self._compute = compute
        self._size = size
        self._items: dict[int, tuple[K, V]] = {}

    def __call__(self, obj: K) -> V:
        hit = self._items.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        value = self._compute(obj)
        if len(self._items) >= self._size:
            self._items.clear()
        self._items[id(obj)] = (obj, value)
        return value
