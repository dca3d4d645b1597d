"""The decision record as stored in the log: compact JSON, lossless for replay.

Offers and channels are written once each; treatments refer to them by position, with
``null`` for control. Feature values keep their kind (JSON tells numbers, texts, flags and
lists apart).

>>> from bandit.types import *
>>> d = Decision("e1", Context(Customer("c1", {"ltv": 2.0}), Trigger("login")),
...              (CONTROL_TREATMENT, Treatment(Offer("o", discount_rate=0.1), Channel("sms"))),
...              (0.25, 0.75), 1, "v1", "vw", 1700000000.0)
>>> decode_record(encode_record(d)) == d
True
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from typing import Any

from bandit.caching import IdentityCache, ValueMemo, exact_feature
from bandit.types import (
    CONTROL_TREATMENT,
    Channel,
    Context,
    Customer,
    Decision,
    Features,
    FeatureValue,
    Offer,
    Treatment,
    TreatmentRef,
    Trigger,
    freeze_features,
)

SCHEMA_VERSION = 2
"""2: the log keeps each decision's pmf as packed doubles (a BLOB column) beside the JSON
head instead of inside it; version-1 logs are migrated on open (their heads keep the pmf)."""

PMF_IN_HEAD_SCHEMA = 1
"""The one older version still read (and migrated): its heads carry their pmfs."""


def _features_out(features: Features) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in features.items()}


def _features_in(raw: dict[str, Any]) -> Features:
    out: dict[str, FeatureValue] = {}
    for k, v in raw.items():
        if isinstance(v, list):
            out[k] = tuple(v)
        elif isinstance(v, int) and not isinstance(v, bool):
            out[k] = float(v)
        else:
            out[k] = v
    return freeze_features(out)


def _head(d: Decision, *, with_pmf: bool = True) -> dict[str, Any]:
    """Everything of a decision but its candidates (and, as the log stores it, its pmf)."""
    c, t = d.context.customer, d.context.trigger
    pmf: dict[str, Any] = {"pmf": list(d.pmf)} if with_pmf else {}
    return {
        "schema": SCHEMA_VERSION,
        "event_id": d.event_id,
        "request_id": d.request_id,
        "customer": {"id": c.id, "features": _features_out(c.features)},
        "trigger": {"type": t.type, "features": _features_out(t.features)},
        **pmf,
        "chosen": d.chosen,
        "model_version": d.model_version,
        "policy": d.policy,
        "decided_at": d.decided_at,
        "deferred": d.deferred,
        "seed": d.seed,
        "holdout": d.holdout,
        **_contact(d),
    }


def _contact(d: Decision) -> dict[str, Any]:
    """The contact policy's part of a head: present only under a policy (older readers and
    decisions without one see the head they always did)."""
    if not d.contact_policy:
        return {}
    return {
        "contact_policy": d.contact_policy,
        "removed": [[t.offer_id, t.channel_id, rule] for t, rule in d.removed],
    }


def record_dict(d: Decision) -> dict[str, Any]:
    """The decision as plain JSON-able data (used by the log and by exports)."""
    offers: dict[str, int] = {}
    channels: dict[str, int] = {}
    offer_list: list[dict[str, Any]] = []
    channel_list: list[dict[str, Any]] = []
    pairs: list[list[int] | None] = []
    for t in d.treatments:
        if t.offer is None or t.channel is None:
            pairs.append(None)
            continue
        oi = offers.get(t.offer.id)
        if oi is None:
            oi = offers[t.offer.id] = len(offer_list)
            offer_list.append(
                {
                    "id": t.offer.id,
                    "features": _features_out(t.offer.features),
                    "fixed_cost": t.offer.fixed_cost,
                    "discount_rate": t.offer.discount_rate,
                }
            )
        ci = channels.get(t.channel.id)
        if ci is None:
            ci = channels[t.channel.id] = len(channel_list)
            channel_list.append(
                {
                    "id": t.channel.id,
                    "features": _features_out(t.channel.features),
                    "contact_cost": t.channel.contact_cost,
                }
            )
        pairs.append([oi, ci])
    return {**_head(d), "offers": offer_list, "channels": channel_list, "treatments": pairs}


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _dumps(obj: object) -> str:
    return _ENCODER.encode(obj)  # one encoder, not one per call (Choose encodes every record)


def _catalogue_json(treatments: tuple[Treatment, ...]) -> str:
    """The candidates as a JSON object: ``offers``, ``channels`` and ``treatments``."""
    d = record_dict(
        Decision("", _NO_CONTEXT, treatments, (1.0,) + (0.0,) * (len(treatments) - 1), 0, "", "", 0)
    )
    return _dumps({k: d[k] for k in ("offers", "channels", "treatments")})


catalogue_json = IdentityCache(_catalogue_json, size=1024)
"""A candidate tuple's JSON, encoded once per tuple object (Choose reuses one per catalogue)."""

_NO_CONTEXT = Context(Customer("-"), Trigger("-"))


def catalogue_digest(text: str) -> str:
    """A content key for a catalogue's JSON."""
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def encode_head(d: Decision) -> str:
    """The decision as the log's JSON head: everything but its candidates (stored once per
    catalogue) and its pmf (stored packed, :func:`pack_pmf`).

    The text :func:`_dumps` gives for ``_head(d, with_pmf=False)``, written out directly
    (Choose encodes one per call; a test checks both agree). Formatting 51 probabilities as
    JSON took ~27 µs per call; packing them takes ~1 µs.
    """
    c, t = d.context.customer, d.context.trigger
    return (
        f'{{"schema":{SCHEMA_VERSION},"event_id":{_str(d.event_id)},'
        f'"request_id":{_str(d.request_id)},'
        f'"customer":{{"id":{_str(c.id)},"features":{_features_json(c.features)}}},'
        f'"trigger":{{"type":{_str(t.type)},"features":{_trigger_json(t.features)}}},'
        f'"chosen":{_number(d.chosen)},'
        f'"model_version":{_str(d.model_version)},"policy":{_str(d.policy)},'
        f'"decided_at":{_number(d.decided_at)},"deferred":{_bool(d.deferred)},'
        f'"seed":{_number(d.seed)},"holdout":{_bool(d.holdout)}'
        + (_contact_json(d) if d.contact_policy else "")
        + "}"
    )


def _contact_json(d: Decision) -> str:
    if not d.removed:  # the usual case, written out directly
        return f',"contact_policy":{_str(d.contact_policy)},"removed":[]'
    return "," + _dumps(_contact(d))[1:-1]


def pack_pmf(pmf: tuple[float, ...]) -> bytes:
    """The pmf as the log stores it: little-endian IEEE doubles, in candidate order.

    In SQL: ``length(pmf) / 8`` candidates; the chosen one's probability is the
    ``propensity`` column.

    >>> unpack_pmf(pack_pmf((0.25, 0.75)))
    (0.25, 0.75)
    """
    return _pack_doubles(len(pmf)).pack(*pmf)


def unpack_pmf(blob: bytes) -> tuple[float, ...]:
    return _pack_doubles(len(blob) // 8).unpack(blob)


@functools.lru_cache(maxsize=256)
def _pack_doubles(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}d")


_INF = float("inf")
_str = json.encoder.encode_basestring  # what the encoder uses with ensure_ascii=False


def _number(x: float) -> str:
    if x.__class__ is int:
        return repr(x)
    if x.__class__ is float and -_INF < x < _INF:
        return repr(x)
    return _dumps(x)  # other types as the encoder writes them; inf and nan raise ValueError


def _bool(x: bool) -> str:
    return "true" if x else "false"


def _fragment_text(pair: tuple[str, FeatureValue]) -> str:
    return _dumps(_features_out(dict([pair])))[1:-1]


_fragments = ValueMemo(_fragment_text)
"""``"name":value`` of texts, flags and tag lists (they repeat from call to call)."""


def _fragment(name: str, value: FeatureValue) -> str:
    if value.__class__ is float:
        if not -_INF < value < _INF:
            raise ValueError(f"feature {name!r} is not JSON compliant: {value!r}")
        return f"{_str(name)}:{value!r}"
    if not exact_feature(name, value):  # ints, odd types, tags that are not all str
        return _fragment_text((name, value))
    return _fragments((name, value))


def _features_json(features: Features) -> str:
    return "{" + ",".join([_fragment(k, v) for k, v in features.items()]) + "}"


_trigger_json = IdentityCache(_features_json, size=64)
"""A trigger's features as JSON, by identity (a batch's decisions share their trigger)."""


def encode_record(d: Decision) -> str:
    """The whole decision as one compact JSON object, pmf included (exports, tools)."""
    return _dumps(_head(d))[:-1] + "," + catalogue_json(d.treatments)[1:]


def decode_catalogue(text: str) -> tuple[Treatment, ...]:
    r = json.loads(text)
    offers = [
        Offer(
            o["id"], _features_in(o["features"]), float(o["fixed_cost"]), float(o["discount_rate"])
        )
        for o in r["offers"]
    ]
    channels = [
        Channel(c["id"], _features_in(c["features"]), float(c["contact_cost"]))
        for c in r["channels"]
    ]
    return tuple(
        CONTROL_TREATMENT if p is None else Treatment(offers[p[0]], channels[p[1]])
        for p in r["treatments"]
    )


def decode_head(text: str, treatments: tuple[Treatment, ...], pmf: bytes | None = None) -> Decision:
    """A decision from its head JSON, its (decoded) candidates and its packed pmf (a
    version-1 head carries its pmf itself)."""
    r = json.loads(text)
    if pmf is not None:
        r["pmf"] = unpack_pmf(pmf)
    return _decision(r, treatments)


def decision_from_dict(r: dict[str, Any]) -> Decision:
    """A decision from :func:`record_dict`'s form (head and candidates together)."""
    return _decision(
        r, decode_catalogue(_dumps({k: r[k] for k in ("offers", "channels", "treatments")}))
    )


def _decision(r: dict[str, Any], treatments: tuple[Treatment, ...]) -> Decision:
    if r.get("schema") not in (SCHEMA_VERSION, PMF_IN_HEAD_SCHEMA):
        raise ValueError(
            f"decision record has schema {r.get('schema')!r}, expected {SCHEMA_VERSION}"
        )
    if "pmf" not in r:
        raise ValueError(f"decision record {r.get('event_id')!r} comes without its pmf")
    return Decision(
        event_id=r["event_id"],
        context=Context(
            Customer(r["customer"]["id"], _features_in(r["customer"]["features"])),
            Trigger(r["trigger"]["type"], _features_in(r["trigger"]["features"])),
        ),
        treatments=treatments,
        pmf=tuple(float(p) for p in r["pmf"]),
        chosen=int(r["chosen"]),
        model_version=r["model_version"],
        policy=r["policy"],
        decided_at=float(r["decided_at"]),
        request_id=r["request_id"],
        deferred=bool(r["deferred"]),
        seed=int(r["seed"]),
        holdout=bool(r.get("holdout", False)),
        removed=tuple(
            (TreatmentRef(str(o), str(c)), str(rule)) for o, c, rule in r.get("removed", ())
        ),
        contact_policy=str(r.get("contact_policy", "")),
    )


def decode_record(text: str) -> Decision:
    return decision_from_dict(json.loads(text))
