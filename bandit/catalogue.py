"""Catalogues: a Choose request's offers and channels as one object, interned by content.

Most Choose calls of a deployment carry one of a few catalogues. A :class:`Catalogue` holds
one of them with what is derived from it once — the limits it passed its checks under, its
crossing (control, then every offer × channel) and its consent-filtered crossings — and
:class:`Catalogues`, the interning table, gives the *same* object for the same content.
The table has one owner: the service (:attr:`bandit.service.DecisionService.catalogues`);
the gRPC adapter asks it for a request's catalogue by the request's wire bytes, an
in-process caller's lists are interned by their values (:meth:`Catalogues.of`).

Because a catalogue's candidate tuples are made once, the per-tuple memos further down the
path (the VW action text, the log's catalogue JSON, the response pieces) compute once per
catalogue; they hold the tuple they memoise, so any tuple still gets the right answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

from bandit.types import CONTROL_TREATMENT, Channel, FeatureValue, Offer, Treatment

E = TypeVar("E", Offer, Channel)


class Catalogue:
    """Offers and channels (tuples, in request order) and what is derived from them.

    >>> cat = Catalogue((Offer("a"), Offer("b")), (Channel("email"), Channel("sms")))
    >>> [t.ref.key for t in cat.treatments]
    ['control', 'a@email', 'a@sms', 'b@email', 'b@sms']
    >>> [t.ref.key for t in cat.without_channels(frozenset({"sms"}))]
    ['control', 'a@email', 'b@email']
    >>> cat.treatments is cat.treatments  # crossed once
    True
    """

    __slots__ = ("_crossings", "_treatments", "channels", "checked_under", "offers")

    MAX_CROSSINGS = 64
    """Most consent-filtered crossings remembered per catalogue (cleared when full)."""

    def __init__(self, offers: Sequence[Offer], channels: Sequence[Channel]) -> None:
        self.offers: tuple[Offer, ...] = tuple(offers)
        self.channels: tuple[Channel, ...] = tuple(channels)
        self.checked_under: object = None
        """The limits this catalogue last passed its checks under
        (:func:`bandit.eligibility.check_catalogue` sets it)."""
        self._treatments: tuple[Treatment, ...] | None = None
        self._crossings: dict[frozenset[str], tuple[Treatment, ...]] = {}

    @property
    def treatments(self) -> tuple[Treatment, ...]:
        """Control, then every offer × every channel: one tuple for the catalogue's life."""
        found = self._treatments
        if found is None:
            found = self._treatments = _cross(self.offers, self.channels)
        return found

    def without_channels(self, declined: frozenset[str]) -> tuple[Treatment, ...]:
        """:attr:`treatments` without those through ``declined`` channels (control stays):
        one tuple per set of channels."""
        if not declined:
            return self.treatments
        found = self._crossings.get(declined)
        if found is None:
            found = _cross(self.offers, [c for c in self.channels if c.id not in declined])
            if len(self._crossings) >= self.MAX_CROSSINGS:
                self._crossings.clear()
            self._crossings[declined] = found
        return found

    def __repr__(self) -> str:
        return f"Catalogue({len(self.offers)} offers, {len(self.channels)} channels)"


def _cross(offers: Sequence[Offer], channels: Sequence[Channel]) -> tuple[Treatment, ...]:
    return (CONTROL_TREATMENT, *(Treatment(o, c) for o in offers for c in channels))


class Catalogues:
    """The interning table: one :class:`Catalogue` per content, bounded (cleared when full).

    A key is the catalogue's content in whatever form the caller has it: the adapter's wire
    bytes, or :meth:`of`'s key of the domain values. Offers and channels are interned too
    (:meth:`entity`), so catalogues that share an offer share its object.

    >>> table = Catalogues()
    >>> one = table.of([Offer("a")], [Channel("email")])
    >>> table.of((Offer("a"),), (Channel("email"),)) is one  # the same content
    True
    >>> table.of([Offer("a", fixed_cost=1.0)], [Channel("email")]) is one
    False
    """

    def __init__(self, size: int = 1024, entities: int = 8192) -> None:
        self.size = size
        self.entities_size = entities
        self._items: dict[Hashable, Catalogue] = {}
        self._entities: dict[Hashable, Offer | Channel] = {}
        self._by_objects: dict[tuple[int, ...], tuple[tuple[object, ...], Catalogue]] = {}
        self._lock = threading.Lock()

    def get(
        self, key: Hashable, make: Callable[[], tuple[Sequence[Offer], Sequence[Channel]]]
    ) -> Catalogue:
        """The catalogue whose content ``key`` stands for; ``make()`` gives its offers and
        channels the first time."""
        found = self._items.get(key)
        if found is None:
            offers, channels = make()
            with self._lock:
                found = self._items.get(key)
                if found is None:
                    if len(self._items) >= self.size:
                        self._items.clear()
                    found = self._items[key] = Catalogue(offers, channels)
        return found

    def of(self, offers: Sequence[Offer], channels: Sequence[Channel]) -> Catalogue:
        """The catalogue of these offers and channels, by their values.

        Offers and channels are frozen: objects met before are found by their identity
        first (a few µs, where building the key by value takes tens), whatever sequence
        holds them; new ones by their values."""
        ids = (*map(id, offers), -1, *map(id, channels))
        hit = self._by_objects.get(ids)
        if hit is not None and _same(hit[0], (*offers, *channels)):
            return hit[1]
        found = self._of_values(offers, channels)
        with self._lock:
            if len(self._by_objects) >= self.size:
                self._by_objects.clear()
            self._by_objects[ids] = ((*offers, *channels), found)
        return found

    def _of_values(self, offers: Sequence[Offer], channels: Sequence[Channel]) -> Catalogue:
        try:
            key = (tuple(map(_offer_key, offers)), tuple(map(_channel_key, channels)))
            hash(key)
        except TypeError:  # an unhashable feature value (a list of tags, say): not interned
            return Catalogue(offers, channels)
        return self.get(key, lambda: (offers, channels))

    def entity(self, key: Hashable, make: Callable[[], E]) -> E:
        """The offer or channel whose content ``key`` stands for (``make()`` the first time);
        a key names one kind of entity."""
        found = self._entities.get(key)
        if found is None:
            found = make()
            if len(self._entities) >= self.entities_size:
                self._entities.clear()
            self._entities[key] = found
        return found  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._items)


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _value_key(value: FeatureValue) -> Hashable:
    """A feature value's key: its type with it (``True``, ``1`` and ``1.0`` encode apart), and
    a float's sign too (``-0.0 == 0.0``)."""
    kind = value.__class__
    if kind is float:
        return (kind, value, repr(value))
    return (kind, value)


def _features_key(features: Mapping[str, FeatureValue]) -> tuple[Hashable, ...]:
    return tuple([(name, _value_key(v)) for name, v in features.items()])


def _offer_key(o: Offer) -> Hashable:
    return (o.id, _features_key(o.features), _value_key(o.fixed_cost), _value_key(o.discount_rate))


def _channel_key(c: Channel) -> Hashable:
    return (c.id, _features_key(c.features), _value_key(c.contact_cost))


__all__ = ["Catalogue", "Catalogues"]
