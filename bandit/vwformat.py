"""Features → Vowpal Wabbit text examples, through one safe path.

VW's text format has no escaping: ``|`` starts a namespace, ``:`` separates a value, white
space separates features. Every name and value coming from a request is therefore
percent-encoded (UTF-8) down to ``[A-Za-z0-9_.~-]`` and ``%XX`` before it is placed in a line,
so no request can change an example's structure. The encoding is injective, and the token
kinds cannot collide:

=============  =====================  ========================================
feature        token                  example
=============  =====================  ========================================
number         ``name:value``         ``ltv:120.5``
text           ``name=value``         ``stage=at_risk``
flag true      ``name``               ``consent_email``
flag false     ``name!``              ``consent_sms!``
tags           ``name#tag`` each      ``interests#shoes interests#bags``
reserved       ``@…``                 ``@id=email`` ``@control`` ``@discount_rate:0.1``
=============  =====================  ========================================

Namespaces: ``c`` customer and ``t`` trigger on the shared line; ``o`` offer and ``h``
channel on each action line.

>>> shared_line({"stage": "vip", "ltv": 3.0}, "cart abandoned", {})
'shared |c stage=vip ltv:3 |t @type=cart%20abandoned'
>>> encode_features({"a|b": "x:y z"})
'a%7Cb=x%3Ay%20z'
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote

from bandit.caching import IdentityCache, ValueMemo, exact_feature
from bandit.types import Channel, FeatureValue, Offer, Treatment

CUSTOMER_NS = "c"
TRIGGER_NS = "t"
OFFER_NS = "o"
CHANNEL_NS = "h"

_SAFE = re.compile(r"[A-Za-z0-9_.~-]+")

CONTROL_ACTION_LINE = f"|{OFFER_NS} @control |{CHANNEL_NS} @control"


def escape(text: str) -> str:
    """Percent-encode ``text`` so that it is one VW token of safe characters.

    >>> escape("plain_name-1.0")
    'plain_name-1.0'
    >>> escape("a b|c:d")
    'a%20b%7Cc%3Ad'
    >>> escape("")
    ''
    >>> escape("€")
    '%E2%82%AC'

    A leading underscore is encoded too: VW's JSON reader skips members named ``_…``, and
    the DSJson export must carry the very same feature names.

    >>> escape("_private")
    '%5Fprivate'
    """
    if _SAFE.fullmatch(text) and not text.startswith("_"):
        return text
    if text.startswith("_"):
        return "%5F" + quote(text[1:], safe="")
    return quote(text, safe="")


def format_number(value: float) -> str:
    """A finite number as VW reads it.

    VW keeps 32-bit floats, so nine significant digits carry everything it can use (and
    VW's own parser drops long mantissas with large exponents).

    >>> format_number(3), format_number(1e16), format_number(-2.5e-7), format_number(0.1)
    ('3', '1e16', '-2.5e-07', '0.1')
    >>> format_number(float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: feature values must be finite, not nan
    """
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"feature values must be finite, not {v}")
    return format(v, ".9g").replace("e+", "e")


def encode_feature(name: str, value: FeatureValue) -> str:
    """One feature as space-separated safe tokens (see the module table).

    >>> encode_feature("vip", True), encode_feature("vip", False)
    ('vip', 'vip!')
    >>> encode_feature("tags", ("a b", "c"))
    'tags#a%20b tags#c'
    >>> encode_feature("tags", ())
    ''
    """
    n = escape(name)
    if isinstance(value, bool):
        return n if value else n + "!"
    if isinstance(value, int | float):
        return f"{n}:{format_number(value)}"
    if isinstance(value, str):
        return f"{n}={escape(value)}"
    return " ".join(f"{n}#{escape(tag)}" for tag in value)


def _encode_pair(pair: tuple[str, FeatureValue]) -> str:
    return encode_feature(*pair)


_tokens = ValueMemo(_encode_pair)
"""Tokens of texts, flags and tag lists, by (name, value): those repeat from call to call
(stage, device, consent …), so Choose encodes each once. Numbers are not remembered (they
rarely repeat); only exact types are (see :func:`bandit.caching.exact_feature`)."""
_escape_name = ValueMemo(escape)
"""Escaped feature names and trigger types."""


def _token(name: str, value: FeatureValue) -> str:
    if value.__class__ is float:
        return f"{_escape_name(name)}:{format_number(value)}"
    if not exact_feature(name, value):  # ints, odd types, tags that are not all str
        return encode_feature(name, value)
    return _tokens((name, value))


def encode_features(features: Mapping[str, FeatureValue]) -> str:
    """All features of one namespace, in the mapping's order.

    >>> encode_features({"stage": "vip", "ltv": 3.0, "vip": True, "tags": ()})
    'stage=vip ltv:3 vip'
    """
    return " ".join([t for t in [_token(k, v) for k, v in features.items()] if t])


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def shared_line(
    customer_features: Mapping[str, FeatureValue],
    trigger_type: str,
    trigger_features: Mapping[str, FeatureValue],
) -> str:
    """The shared line of a multi-line example: customer and trigger."""
    customer = encode_features(customer_features)
    trigger = encode_features(trigger_features)
    return (
        f"shared |{CUSTOMER_NS} {customer + ' ' if customer else ''}|{TRIGGER_NS} "
        f"@type={_escape_name(trigger_type)}{' ' + trigger if trigger else ''}"
    )


def offer_part(offer: Offer) -> str:
    """The offer namespace of an action line.

    >>> offer_part(Offer("d10", discount_rate=0.1))
    '|o @id=d10 @discount_rate:0.1'
    """
    costs = []
    if offer.fixed_cost:
        costs.append(f"@fixed_cost:{format_number(offer.fixed_cost)}")
    if offer.discount_rate:
        costs.append(f"@discount_rate:{format_number(offer.discount_rate)}")
    return _join(f"|{OFFER_NS}", f"@id={escape(offer.id)}", *costs, encode_features(offer.features))


def channel_part(channel: Channel) -> str:
    """The channel namespace of an action line.

    >>> channel_part(Channel("sms", {"instant": True}, contact_cost=0.05))
    '|h @id=sms @contact_cost:0.05 instant'
    """
    cost = f"@contact_cost:{format_number(channel.contact_cost)}" if channel.contact_cost else ""
    return _join(
        f"|{CHANNEL_NS}", f"@id={escape(channel.id)}", cost, encode_features(channel.features)
    )


_offer_part = IdentityCache(offer_part)
_channel_part = IdentityCache(channel_part)


def action_lines(treatments: Iterable[Treatment]) -> list[str]:
    """One unlabelled action line per treatment, each offer and channel encoded once.

    >>> from bandit.types import CONTROL_TREATMENT
    >>> action_lines([CONTROL_TREATMENT, Treatment(Offer("x"), Channel("web"))])
    ['|o @control |h @control', '|o @id=x |h @id=web']
    """
    lines = []
    for t in treatments:
        if t.offer is None or t.channel is None:
            lines.append(CONTROL_ACTION_LINE)
        else:
            lines.append(f"{_offer_part(t.offer)} {_channel_part(t.channel)}")
    return lines


def reward_to_cost(reward: float, scale: float = 1.0) -> float:
    """VW minimises cost; offerbandit maximises reward. ``scale`` maps money to VW units.

    >>> reward_to_cost(12.5, scale=0.1)
    -1.25
    >>> reward_to_cost(0.0)
    0.0
    """
    return 0.0 - reward * scale


def label_prefix(cost: float, probability: float) -> str:
    """The ``--cb_explore_adf`` label put in front of the chosen action's line.

    >>> label_prefix(-1.5, 0.25)
    '0:-1.5:0.25 '
    """
    return f"0:{format_number(cost)}:{format_number(probability)} "


def _action_lines_tuple(treatments: tuple[Treatment, ...]) -> tuple[str, ...]:
    return tuple(action_lines(treatments))


candidate_lines = IdentityCache(_action_lines_tuple, size=1024)
""":func:`action_lines` remembered per candidate tuple (Choose reuses one per catalogue)."""
