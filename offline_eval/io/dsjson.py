"""Vowpal Wabbit Decision Service JSON (DSJson): one logged decision per line.

VW reads these files with ``--dsjson`` (``--cb_explore_adf --dsjson -d log.json``). Each
line is one object:

=======================  =====================================================================
member                   meaning
=======================  =====================================================================
``_label_cost``          VW cost of the chosen action, ``−reward × reward_scale``
``_label_probability``   its logged probability (the propensity)
``_label_Action``        its 1-based action id
``_labelIndex``          its 0-based index in ``_multi``
``_skipLearn``           ``true`` for a decision without a final reward (no label then)
``Timestamp``            decision time, ISO 8601 UTC
``Version``              ``"1"``
``EventId``              the decision's event id
``a``                    1-based action ids, the chosen one first, then the others in order
``c``                    the context: shared namespaces ``c`` (customer) and ``t`` (trigger),
                         and ``_multi``, one object per treatment with namespaces ``o`` (offer)
                         and ``h`` (channel)
``p``                    the logged probabilities, in the order of ``a``
``VWState``              ``{"m": model_version}``
``_offerbandit``         the joined log columns VW does not need (seq, customer id, money
                         reward, revenue …). VW skips members whose name starts with ``_``.
=======================  =====================================================================

The labels come before ``c`` because VW's parser attaches them when ``c`` ends.

Features hash exactly like the service's text examples (:mod:`bandit.vwformat`): names and
texts are percent-encoded the same way, and each feature becomes the JSON member that VW's
JSON parser turns into the same feature name (a string value is appended to its key, ``true``
is a feature of value 1, a number is the feature's value):

=============  =============================  =======================
feature        text token                     JSON member
=============  =============================  =======================
number         ``ltv:120.5``                  ``"ltv": 120.5``
text           ``stage=at%20risk``            ``"stage=": "at%20risk"``
flag true      ``consent_email``              ``"consent_email": true``
flag false     ``consent_sms!``               ``"consent_sms!": true``
tags           ``tags#a tags#b``              ``"tags#a": true, "tags#b": true``
no tags        (nothing)                      ``"_empty_tags": ["tags"]`` (VW skips it)
reserved       ``@id=email`` ``@control``     ``"@id=": "email"``, ``"@control": true``
=============  =============================  =======================

One exception: VW's JSON parser skips (or, for ``_label…``, ``_text`` …, interprets) members
whose name starts with ``_``, so a feature name starting with ``_`` is written with ``%5F``
instead (same information, a different hash from the text token).

A model trained on the export with ``--dsjson`` therefore sees the same features, in the
same namespaces, as the service's learner (a test checks the two give equal predictions).

>>> features_json({"stage": "at risk", "ltv": 3.0, "vip": False, "tags": ("a", "b")})
{'stage=': 'at%20risk', 'ltv': 3.0, 'vip!': True, 'tags#a': True, 'tags#b': True}
>>> decode_features(features_json({"a|b": "x:y", "n": 2.5, "f": True}))
{'a|b': 'x:y', 'n': 2.5, 'f': True}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote

from bandit.log.reader import JsonFeature
from bandit.types import CONTROL_TREATMENT, Channel, FeatureValue, Offer, Treatment
from bandit.vwformat import CHANNEL_NS, CUSTOMER_NS, OFFER_NS, TRIGGER_NS, escape

__all__ = [
    "META_KEY",
    "VERSION",
    "DSJsonRow",
    "catalogue_multi",
    "decode_features",
    "dsjson_line",
    "features_json",
    "iso_utc",
    "parse_dsjson_line",
    "parse_iso",
    "treatment_json",
]

META_KEY: Final = "_offerbandit"
"""Top-level member holding the log columns VW does not need (ignored by VW)."""

VERSION: Final = "1"

_EMPTY_TAGS = "_empty_tags"
"""Names of empty tag lists: no VW feature, so kept in a member VW skips."""
_TYPE = "@type="
_ID = "@id="
_CONTROL = "@control"


# Compact separators matter: VW skips unknown members by scanning for '"name":'.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

_MULTI_SLOT = '"_multi":0}'
"""Where the catalogue's pre-encoded ``_multi`` text goes (no feature member can look like
it: feature names never start with ``_``)."""


def _number(value: float) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"feature values must be finite, not {v}")
    return v


def _key(name: str) -> str:
    """A feature name as a member name: :func:`~bandit.vwformat.escape`, and a leading ``_``
    as ``%5F`` (VW's JSON parser skips, or interprets, members starting with ``_``).

    >>> _key("a b"), _key("_labelIndex")
    ('a%20b', '%5FlabelIndex')
    """
    n = escape(name)
    return "%5F" + n[1:] if n.startswith("_") else n


def features_json(features: Mapping[str, FeatureValue | JsonFeature]) -> dict[str, Any]:
    """One namespace's features as VW JSON members (see the module table).

    A tag repeated ``k`` times becomes the number ``k`` (JSON objects have unique keys).
    A name starting with ``_`` starts with ``%5F`` instead: such features hash differently
    from the service's text tokens (the only difference).

    >>> features_json({"tags": ("x", "x", "y"), "consent": True})
    {'tags#x': 2.0, 'tags#y': True, 'consent': True}
    """
    out: dict[str, Any] = {}
    for name, value in features.items():
        n = _key(name)
        if isinstance(value, bool):
            out[n if value else n + "!"] = True
        elif isinstance(value, int | float):
            out[n] = _number(value)
        elif isinstance(value, str):
            out[n + "="] = escape(value)
        elif value:
            for tag in value:
                key = f"{n}#{escape(tag)}"
                seen = out.get(key)
                out[key] = True if seen is None else float(seen) + 1.0
        else:
            out.setdefault(_EMPTY_TAGS, []).append(n)
    return out


def decode_features(members: Mapping[str, Any]) -> dict[str, FeatureValue]:
    """The features :func:`features_json` encoded (reserved ``@`` members are skipped).

    Tags come back grouped by name, in first-seen order.

    >>> decode_features({"tags#a": True, "n": 1, "tags#b": 2.0, "@id=": "x"})
    {'tags': ('a', 'b', 'b'), 'n': 1.0}
    >>> decode_features(features_json({"none": ()}))
    {'none': ()}
    """
    out: dict[str, FeatureValue] = {}
    tags: dict[str, list[str]] = {}
    for key, value in members.items():
        if key == _EMPTY_TAGS and isinstance(value, list):
            out.update((unquote(str(name)), ()) for name in value)
            continue
        if key.startswith(("@", "_")):
            continue
        if isinstance(value, str):
            out[unquote(key.removesuffix("="))] = unquote(value)
        elif "#" in key:
            name, _, tag = key.partition("#")
            copies = 1 if isinstance(value, bool) else int(value)
            bucket = tags.get(name)
            if bucket is None:
                bucket = tags[name] = []
                out[unquote(name)] = ()  # keeps the feature's position
            bucket.extend([unquote(tag)] * copies)
        elif isinstance(value, bool):
            if value:
                flag = not key.endswith("!")
                out[unquote(key.removesuffix("!"))] = flag
        elif isinstance(value, int | float):
            out[unquote(key)] = float(value)
    for name, bucket in tags.items():
        out[unquote(name)] = tuple(bucket)
    return out


def treatment_json(t: Treatment) -> dict[str, Any]:
    """One ``_multi`` member: the offer in namespace ``o``, the channel in ``h``.

    >>> treatment_json(CONTROL_TREATMENT)
    {'o': {'@control': True}, 'h': {'@control': True}}
    >>> treatment_json(Treatment(Offer("d 10", discount_rate=0.1), Channel("sms")))
    {'o': {'@id=': 'd%2010', '@discount_rate': 0.1}, 'h': {'@id=': 'sms'}}
    """
    if t.offer is None or t.channel is None:
        return {OFFER_NS: {_CONTROL: True}, CHANNEL_NS: {_CONTROL: True}}
    o: dict[str, Any] = {_ID: escape(t.offer.id)}
    if t.offer.fixed_cost:
        o["@fixed_cost"] = _number(t.offer.fixed_cost)
    if t.offer.discount_rate:
        o["@discount_rate"] = _number(t.offer.discount_rate)
    o.update(features_json(t.offer.features))
    h: dict[str, Any] = {_ID: escape(t.channel.id)}
    if t.channel.contact_cost:
        h["@contact_cost"] = _number(t.channel.contact_cost)
    h.update(features_json(t.channel.features))
    return {OFFER_NS: o, CHANNEL_NS: h}


def catalogue_multi(treatments: Sequence[Treatment]) -> str:
    """The ``_multi`` array of a catalogue as JSON text (encode once per catalogue)."""
    return _dumps([treatment_json(t) for t in treatments])


def _treatment_from_json(action: Mapping[str, Any], index: int) -> Treatment:
    o = action.get(OFFER_NS)
    h = action.get(CHANNEL_NS)
    if isinstance(o, dict) and isinstance(h, dict) and _ID in o and _ID in h:
        return Treatment(
            Offer(
                unquote(o[_ID]),
                decode_features(o),
                float(o.get("@fixed_cost", 0.0)),
                float(o.get("@discount_rate", 0.0)),
            ),
            Channel(unquote(h[_ID]), decode_features(h), float(h.get("@contact_cost", 0.0))),
        )
    if isinstance(o, dict) and o.get(_CONTROL) is True:
        return CONTROL_TREATMENT
    # Another system's action: name it by its content, so equal actions get equal ids.
    features = _generic_features(action)
    return Treatment(Offer(_dumps(action) if action else f"action-{index}", features), Channel(""))


def _generic_features(obj: Mapping[str, Any], prefix: str = "") -> dict[str, FeatureValue]:
    """Any VW JSON object as flat features (``namespace.name``), for logs of other systems."""
    out: dict[str, FeatureValue] = {}
    for key, value in obj.items():
        if key == "_text" and isinstance(value, str):
            out[prefix + key] = tuple(value.split())
        elif key.startswith("_") or value is None:
            continue
        elif isinstance(value, dict):
            out.update(_generic_features(value, f"{prefix}{key}."))
        elif isinstance(value, bool | str):
            out[prefix + key] = value
        elif isinstance(value, int | float):
            out[prefix + key] = float(value)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, int | float) and not isinstance(item, bool):
                    out[f"{prefix}{key}[{i}]"] = float(item)
                elif isinstance(item, dict):
                    out.update(_generic_features(item, f"{prefix}{key}[{i}]."))
    return out


def iso_utc(t: float) -> str:
    """Seconds since the epoch as ISO 8601 UTC with microseconds.

    >>> iso_utc(1700000000.25)
    '2023-11-14T22:13:20.250000Z'
    """
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    """ISO 8601 to seconds since the epoch; a time without offset is UTC.

    >>> parse_iso("2023-11-14T22:13:20.250000Z"), parse_iso("2023-11-14 22:13:20")
    (1700000000.25, 1700000000.0)
    """
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def dsjson_line(
    *,
    event_id: str,
    decided_at: float,
    customer_features: Mapping[str, FeatureValue | JsonFeature],
    trigger_type: str,
    trigger_features: Mapping[str, FeatureValue | JsonFeature],
    multi: str,
    pmf: Sequence[float],
    chosen: int,
    cost: float | None,
    model_version: str,
    meta: Mapping[str, Any],
) -> str:
    """One decision as a DSJson line (no newline). ``multi`` is :func:`catalogue_multi`'s
    text; ``cost`` None writes no label and ``_skipLearn: true``.

    >>> line = dsjson_line(event_id="e1", decided_at=0.0, customer_features={"ltv": 2.0},
    ...     trigger_type="login", trigger_features={}, multi=catalogue_multi(
    ...     [CONTROL_TREATMENT, Treatment(Offer("x"), Channel("sms"))]), pmf=[0.25, 0.75],
    ...     chosen=1, cost=-0.5, model_version="v1", meta={})
    >>> print(line[:80])
    {"_label_cost":-0.5,"_label_probability":0.75,"_label_Action":2,"_labelIndex":1,
    >>> obj = json.loads(line)
    >>> obj["a"], obj["p"], obj["c"]["t"], obj["c"]["_multi"][1]
    ([2, 1], [0.75, 0.25], {'@type=': 'login'}, {'o': {'@id=': 'x'}, 'h': {'@id=': 'sms'}})
    """
    order = [chosen, *(i for i in range(len(pmf)) if i != chosen)]
    obj: dict[str, Any] = (
        {"_skipLearn": True}
        if cost is None
        else {
            "_label_cost": float(cost),
            "_label_probability": float(pmf[chosen]),
            "_label_Action": chosen + 1,
            "_labelIndex": chosen,
        }
    )
    trigger = {_TYPE: escape(trigger_type)}
    trigger.update(features_json(trigger_features))
    obj["Timestamp"] = iso_utc(decided_at)
    obj["Version"] = VERSION
    obj["EventId"] = event_id
    obj["a"] = [i + 1 for i in order]
    obj["c"] = {CUSTOMER_NS: features_json(customer_features), TRIGGER_NS: trigger, "_multi": 0}
    obj["p"] = [float(pmf[i]) for i in order]
    obj["VWState"] = {"m": model_version}
    obj[META_KEY] = meta
    text: str = _dumps(obj)
    return text.replace(_MULTI_SLOT, f'"_multi":{multi}}}', 1)


@dataclass(frozen=True, slots=True)
class DSJsonRow:
    """One parsed DSJson line.

    ``pmf`` is in ``_multi`` order and is ``None`` when the line has no (complete) ``p``:
    then only the chosen action's probability is known. ``reward`` is ``None`` for a line
    without a label.
    """

    event_id: str
    timestamp: float | None
    customer_features: dict[str, FeatureValue]
    trigger_type: str
    trigger_features: dict[str, FeatureValue]
    treatments: tuple[Treatment, ...]
    multi_key: str
    """The ``_multi`` JSON text, normalised: equal keys mean equal catalogues."""
    chosen: int
    propensity: float
    pmf: tuple[float, ...] | None
    cost: float | None
    model_version: str
    meta: dict[str, Any] | None
    """The ``_offerbandit`` member when offerbandit wrote the line, else ``None``."""


def parse_dsjson_line(
    line: str, catalogues: dict[str, tuple[Treatment, ...]] | None = None
) -> DSJsonRow:
    """Parse one DSJson line, offerbandit's own or another system's.

    Another system's shared namespaces become customer features named ``namespace.name``
    (a string value stays a text feature), and each action becomes an offer whose id is
    its JSON text, through the channel ``""``. ``catalogues`` caches decoded ``_multi``
    lists across calls (keyed by their JSON text).

    >>> r = parse_dsjson_line('{"_label_cost":1,"_label_probability":0.5,"_labelIndex":1,'
    ...     '"EventId":"x","a":[2,1],"p":[0.5,0.5],"c":{"U":{"age":3,"g":"f"},'
    ...     '"_multi":[{"A":{"id":"a1"}},{"A":{"id":"a2"}}]}}')
    >>> r.chosen, r.propensity, r.pmf, r.cost, r.customer_features
    (1, 0.5, (0.5, 0.5), 1.0, {'U.age': 3.0, 'U.g': 'f'})
    >>> r.treatments[1].ref.key
    '{"A":{"id":"a2"}}@'
    """
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("a DSJson line must be a JSON object")
    ctx = obj.get("c")
    if not isinstance(ctx, dict):
        raise ValueError("a DSJson line needs a context object 'c'")
    actions = ctx.get("_multi")
    if not isinstance(actions, list) or not actions:
        raise ValueError("a DSJson line needs a non-empty 'c._multi' list of actions")
    multi_key = _dumps(actions)
    treatments = None if catalogues is None else catalogues.get(multi_key)
    if treatments is None:
        treatments = tuple(_treatment_from_json(a, i) for i, a in enumerate(actions))
        if catalogues is not None:
            catalogues[multi_key] = treatments
    meta = obj.get(META_KEY)
    ours = isinstance(meta, dict)

    customer: dict[str, FeatureValue]
    trigger: dict[str, FeatureValue]
    trigger_type = ""
    if ours:
        customer = decode_features(ctx.get(CUSTOMER_NS, {}))
        t = ctx.get(TRIGGER_NS, {})
        trigger_type = unquote(t.get(_TYPE, ""))
        trigger = decode_features(t)
    else:
        customer = _generic_features({k: v for k, v in ctx.items() if k != "_multi"})
        trigger = {}

    a = obj.get("a")
    p = obj.get("p")
    n = len(treatments)
    if "_labelIndex" in obj:
        chosen = int(obj["_labelIndex"])
    elif "_label_Action" in obj:
        chosen = int(obj["_label_Action"]) - 1
    elif isinstance(a, list) and a:
        chosen = int(a[0]) - 1
    else:
        raise ValueError("a DSJson line needs _labelIndex, _label_Action or 'a'")
    if not 0 <= chosen < n:
        raise ValueError(f"chosen action {chosen + 1} is not one of the {n} actions")

    pmf: tuple[float, ...] | None = None
    if isinstance(a, list) and isinstance(p, list) and len(a) == len(p) == n:
        dense = [0.0] * n
        for action, prob in zip(a, p, strict=True):
            dense[int(action) - 1] = float(prob)
        pmf = tuple(dense)
    if "_label_probability" in obj:
        propensity = float(obj["_label_probability"])
    elif pmf is not None:
        propensity = pmf[chosen]
    else:
        raise ValueError("a DSJson line needs _label_probability or full 'a' and 'p'")

    cost = obj.get("_label_cost")
    ts = obj.get("Timestamp")
    state = obj.get("VWState")
    return DSJsonRow(
        event_id=str(obj.get("EventId", "")),
        timestamp=parse_iso(ts) if isinstance(ts, str) and ts else None,
        customer_features=customer,
        trigger_type=trigger_type,
        trigger_features=trigger,
        treatments=treatments,
        multi_key=multi_key,
        chosen=chosen,
        propensity=propensity,
        pmf=pmf,
        cost=None if cost is None else float(cost),
        model_version=str(state.get("m", "")) if isinstance(state, dict) else "",
        meta=meta if ours else None,
    )
