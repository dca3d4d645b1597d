"""Memos for the hot path: by object identity (immutable domain objects), and by value
(features that repeat from call to call).

Memos only: an answer never depends on whether they hit. An :class:`IdentityCache` holds
the object it remembers a value for, so an object it has not seen is computed afresh. What
makes them hit on the Choose path is explicit: a request's candidate tuples belong to its
interned :class:`~bandit.catalogue.Catalogue`, one tuple per catalogue (and per set of
declined channels), so the VW action text, the log's catalogue JSON and the response
pieces are computed once per catalogue."""

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


class ValueMemo(Generic[K, V]):
    """Values computed from hashable keys, remembered by equality. Bounded; cleared when full.

    Only for keys whose equality means "the same input" (see :func:`exact_feature`): in Python
    ``True == 1 == 1.0`` and ``0.0 == -0.0``, which encode differently.

    >>> calls = []
    >>> upper = ValueMemo(lambda s: calls.append(s) or s.upper(), size=2)
    >>> upper("a"), upper("a"), calls
    ('A', 'A', ['a'])
    """

    def __init__(self, compute: Callable[[K], V], size: int = 65536) -> None:
        self._compute = compute
        self._size = size
        self._items: dict[K, V] = {}

    def __call__(self, key: K) -> V:
        value = self._items.get(key)
        if value is None:
            value = self._compute(key)
            if len(self._items) >= self._size:
                self._items.clear()
            self._items[key] = value
        return value


def exact_feature(name: object, value: object) -> bool:
    """Whether ``(name, value)`` can key a :class:`ValueMemo` of feature encodings: an exact
    ``str`` name with an exact ``str``/``bool`` value or a tuple of exact ``str`` tags.

    >>> exact_feature("a", ("x", "y")), exact_feature("a", (True,)), exact_feature(1, "x")
    (True, False, False)
    >>> exact_feature("a", 1.0), exact_feature("a", True)
    (False, True)
    """
    if name.__class__ is not str:
        return False
    kind = value.__class__
    if kind is str or kind is bool:
        return True
    return kind is tuple and all(v.__class__ is str for v in value)  # type: ignore[attr-defined]
