"""Request features → the uplift model's parameters, crossed generically.

The uplift model knows nothing of any catalogue: it reads the same features VW does (customer
and trigger on the shared side, offer and channel on the action side, ids included) and
crosses them the way VW's ``-q`` namespaces do.

* **Context tokens** (``z``): a bias, every customer feature, the trigger type and every
  trigger feature. They carry the *baseline* — what the customer does if left alone.
* **Effect tokens** (``e``): ``@treated`` (any contact), the offer id, cost model and
  features, the channel id, contact cost and features. Each is crossed with every context
  token (bias included), so an offer's effect is pooled across every channel it goes
  through, a channel's across every offer, and contacting at all across both.
* **Pair tokens**: the (offer, channel) pair itself, crossed only with the bias and the
  trigger type (a channel reaches people differently per trigger, an offer lifts them
  differently: their product is the pair's own).

Control has no effect tokens: it is the reference every treatment is measured against.

Texts, flags and tags are indicators; a number ``v`` enters as ``sign(v)·log1p(|v|)`` (so
scales as different as a share and a lifetime value stay comparable, and no finite number
can blow the model up). A token gets a parameter the first time a learned decision carries
it (in log order, so the mapping is reproducible); tokens the model has not learned from
contribute nothing. Capacities bound the number of tokens and parameters.

>>> from bandit.types import Customer, Trigger
>>> idx = FeatureIndex(max_params=1000)
>>> ctx = Context(Customer("c", {"vip": True, "ltv": 2.0}), Trigger("t"))
>>> ids, vals = idx.context(ctx, add=True)
>>> [round(v, 3) for v in vals.tolist()]
[1.0, 1.0, 1.0, 1.099]
>>> idx.n_params
5
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from bandit.types import Context, FeatureValue, Treatment

IntArray = NDArray[np.intp]
FloatArray = NDArray[np.float64]

Token = tuple[Any, ...]
BIAS: Token = ("@bias",)
TREATED: Token = ("@treated",)


def squash(value: float) -> float:
    """``sign(v)·log1p(|v|)``: a number as the uplift model reads it (0 when not finite).

    >>> squash(0.0), round(squash(99.0), 4), round(squash(-1e300), 1), squash(float("inf"))
    (0.0, 4.6052, -690.8, 0.0)
    """
    v = float(value)
    if not math.isfinite(v):
        return 0.0
    return math.copysign(math.log1p(abs(v)), v)


def feature_tokens(ns: str, features: Mapping[str, FeatureValue]) -> Iterator[tuple[Token, float]]:
    """(token, value) pairs of one namespace's features.

    >>> for pair in feature_tokens("c", {"s": "vip", "f": False, "tags": ("a",), "n": 0.0}):
    ...     print(pair)
    (('c', 's', 'vip'), 1.0)
    (('c', 'f', False), 1.0)
    (('c', 'tags', 'a'), 1.0)
    (('c', 'n'), 0.0)
    """
    for name, value in features.items():
        if isinstance(value, bool | str):
            yield (ns, name, value), 1.0
        elif isinstance(value, int | float):
            yield (ns, name), squash(value)
        else:
            for tag in value:
                yield (ns, name, str(tag)), 1.0


def number_bin(value: float) -> int:
    """A number's half-octave bin, ``±round(2·log2(1 + |v|))``: with ``bins`` on, a context
    number also sets an indicator of its bin, so responses need not be linear in it.

    >>> number_bin(0.0), number_bin(30.0), number_bin(45.0), number_bin(-3.0)
    (0, 10, 11, -4)
    """
    v = float(value)
    if not math.isfinite(v):
        return 0
    return int(math.copysign(round(2.0 * math.log2(1.0 + abs(v))), v))


def context_tokens(context: Context, bins: bool = False) -> dict[Token, float]:
    """The context's tokens (bias first); a token named twice adds up."""
    out: dict[Token, float] = {BIAS: 1.0}
    out[("t", "@type", context.trigger.type)] = 1.0
    for ns, features in (("c", context.customer.features), ("t", context.trigger.features)):
        for tok, v in feature_tokens(ns, features):
            out[tok] = out.get(tok, 0.0) + v
            if bins and len(tok) == 2:
                value = features[tok[1]]
                b = (ns, tok[1], "~", number_bin(cast(float, value)))
                out[b] = out.get(b, 0.0) + 1.0
    return out


def effect_tokens(t: Treatment) -> dict[Token, float]:
    """A treatment's effect tokens; none for control."""
    if t.offer is None or t.channel is None:
        return {}
    o, h = t.offer, t.channel
    out: dict[Token, float] = {TREATED: 1.0, ("o", "@id", o.id): 1.0}
    if o.fixed_cost:
        out[("o", "@fixed_cost")] = squash(o.fixed_cost)
    if o.discount_rate:
        out[("o", "@discount_rate")] = float(o.discount_rate)
    for tok, v in feature_tokens("o", o.features):
        out[tok] = out.get(tok, 0.0) + v
    out[("h", "@id", h.id)] = 1.0
    if h.contact_cost:
        out[("h", "@contact_cost")] = squash(h.contact_cost)
    for tok, v in feature_tokens("h", h.features):
        out[tok] = out.get(tok, 0.0) + v
    out[("oh", o.id, h.id)] = 1.0
    return out


def _is_pair(tok: Token) -> bool:
    return bool(tok[0] == "oh")


def _is_type(tok: Token) -> bool:
    return tok[0] == "t" and len(tok) == 3 and tok[1] == "@type"


class FeatureIndex:
    """Token ids and parameter ids. Parameter 0 is a fixed zero (nothing learned yet).

    Parameters: ``base[k]`` for context token ``k``; ``cross[j, k]`` for effect token ``j``
    × context token ``k`` (for pair tokens only the bias and trigger types). Grows only
    through ``add=True`` (learning); reading never changes it.
    """

    def __init__(
        self,
        max_params: int,
        max_context_tokens: int = 512,
        max_effect_tokens: int = 128,
        bins: bool = False,
    ) -> None:
        self.bins = bins
        self.max_params = max_params
        self.max_context = max_context_tokens
        self.max_effect = max_effect_tokens
        self.ctx_ids: dict[Token, int] = {}
        self.eff_ids: dict[Token, int] = {}
        self.pair_eff = np.zeros(8, dtype=np.bool_)
        """Per effect token: a pair token (crossed with the bias and trigger types only)."""
        self.type_ctx = np.zeros(16, dtype=np.bool_)
        """Per context token: the bias or a trigger type."""
        self.base = np.zeros(16, dtype=np.intp)
        self.cross = np.zeros((8, 16), dtype=np.intp)
        self.n_params = 1
        self.crossed = np.zeros(64, dtype=np.bool_)
        """Per parameter: an effect × context-token cross (not a main effect)."""

    # ---- growth -------------------------------------------------------------------------------

    def _new_params(self, n: int, crossed: NDArray[np.bool_] | None = None) -> IntArray:
        """Up to ``n`` fresh parameter ids (0 where the capacity is spent)."""
        room = max(0, min(n, self.max_params - self.n_params))
        out = np.zeros(n, dtype=np.intp)
        out[:room] = np.arange(self.n_params, self.n_params + room)
        self.n_params += room
        if self.n_params > len(self.crossed):
            grown = np.zeros(max(self.n_params, 2 * len(self.crossed)), dtype=np.bool_)
            grown[: len(self.crossed)] = self.crossed
            self.crossed = grown
        if crossed is not None and room:
            self.crossed[out[:room]] = crossed[:room]
        return out

    def _ctx_id(self, tok: Token, add: bool) -> int:
        k = self.ctx_ids.get(tok)
        if k is None:
            if not add or len(self.ctx_ids) >= self.max_context:
                return -1
            k = len(self.ctx_ids)
            self.ctx_ids[tok] = k
            if k >= len(self.base):
                self.base = np.concatenate([self.base, np.zeros_like(self.base)])
                self.type_ctx = np.concatenate([self.type_ctx, np.zeros_like(self.type_ctx)])
                grown = np.zeros((self.cross.shape[0], len(self.base)), dtype=np.intp)
                grown[:, : self.cross.shape[1]] = self.cross
                self.cross = grown
            self.base[k] = self._new_params(1)[0]
            self.type_ctx[k] = tok == BIAS or _is_type(tok)
        return k

    def _eff_id(self, tok: Token, add: bool) -> int:
        j = self.eff_ids.get(tok)
        if j is None:
            if not add or len(self.eff_ids) >= self.max_effect:
                return -1
            j = len(self.eff_ids)
            self.eff_ids[tok] = j
            if j >= self.cross.shape[0]:
                grown = np.zeros((2 * self.cross.shape[0], self.cross.shape[1]), dtype=np.intp)
                grown[: self.cross.shape[0]] = self.cross
                self.cross = grown
                self.pair_eff = np.concatenate([self.pair_eff, np.zeros_like(self.pair_eff)])
            self.pair_eff[j] = _is_pair(tok)
        return j

    # ---- reading ------------------------------------------------------------------------------

    def context(self, context: Context, add: bool = False) -> tuple[IntArray, FloatArray]:
        """Context token ids and values (tokens without an id left out)."""
        if not add:
            return self._read_context(context)
        ids: list[int] = []
        vals: list[float] = []
        for tok, v in context_tokens(context, self.bins).items():
            k = self._ctx_id(tok, add)
            if k >= 0:
                ids.append(k)
                vals.append(v)
        return np.array(ids, dtype=np.intp), np.array(vals, dtype=np.float64)

    def _read_context(self, context: Context) -> tuple[IntArray, FloatArray]:
        """:meth:`context` without adding (Choose's path): the same tokens, one pass.

        A test checks it against the general path."""
        get = self.ctx_ids.get
        found: dict[int, float] = {}
        k = get(BIAS)
        if k is not None:
            found[k] = 1.0
        k = get(("t", "@type", context.trigger.type))
        if k is not None:
            found[k] = 1.0
        for ns, features in (("c", context.customer.features), ("t", context.trigger.features)):
            for name, value in features.items():
                cls = value.__class__
                if cls is float or cls is int:
                    k = get((ns, name))
                    if k is not None:
                        v = float(cast(float, value))
                        if v != v or v in (math.inf, -math.inf):
                            v = 0.0
                        found[k] = found.get(k, 0.0) + math.copysign(math.log1p(abs(v)), v)
                    if self.bins:
                        k = get((ns, name, "~", number_bin(cast(float, value))))
                        if k is not None:
                            found[k] = found.get(k, 0.0) + 1.0
                elif cls is str or cls is bool:
                    k = get((ns, name, value))
                    if k is not None:
                        found[k] = found.get(k, 0.0) + 1.0
                else:
                    for tok, x in feature_tokens(ns, {name: value}):
                        k = get(tok)
                        if k is not None:
                            found[k] = found.get(k, 0.0) + x
        n = len(found)
        return np.fromiter(found, np.intp, n), np.fromiter(found.values(), np.float64, n)

    def effects(self, t: Treatment, add: bool = False) -> tuple[IntArray, FloatArray]:
        ids: list[int] = []
        vals: list[float] = []
        for tok, v in effect_tokens(t).items():
            j = self._eff_id(tok, add)
            if j >= 0:
                ids.append(j)
                vals.append(v)
        return np.array(ids, dtype=np.intp), np.array(vals, dtype=np.float64)

    def design(self, context: Context, t: Treatment) -> tuple[IntArray, FloatArray]:
        """The learned decision's sparse design row (parameter ids, values); adds ids."""
        ck, cv = self.context(context, add=True)
        idx = [self.base[ck]]
        val = [cv]
        ej, ev = self.effects(t, add=True)
        if len(ej):
            block = self.cross[np.ix_(ej, ck)]
            allowed = ~self.pair_eff[ej][:, None] | self.type_ctx[ck][None, :]
            missing = (block == 0) & allowed
            if missing.any():
                is_cross = np.broadcast_to(ck != 0, block.shape)[missing]  # 0: the bias
                block[missing] = self._new_params(int(missing.sum()), is_cross)
                self.cross[np.ix_(ej, ck)] = block
            idx.append(block.ravel())
            val.append(np.outer(ev, cv).ravel())
        ids = np.concatenate(idx)
        vals = np.concatenate(val)
        keep = ids > 0
        return ids[keep], vals[keep]

    # ---- state --------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-able state (tokens in id order) plus the two parameter tables."""
        return {
            "max_params": self.max_params,
            "max_context": self.max_context,
            "max_effect": self.max_effect,
            "bins": self.bins,
            "n_params": self.n_params,
            "ctx": [list(t) for t in self.ctx_ids],
            "eff": [list(t) for t in self.eff_ids],
        }

    def prior_precision(self, main: float, cross: float) -> FloatArray:
        """Each parameter's prior precision: ``cross`` for crosses, ``main`` for the rest."""
        return np.where(self.crossed[: self.n_params], cross, main)

    @classmethod
    def from_state(
        cls, s: Mapping[str, Any], base: IntArray, cross: IntArray, crossed: NDArray[np.bool_]
    ) -> FeatureIndex:
        idx = cls(
            int(s["max_params"]), int(s["max_context"]), int(s["max_effect"]), bool(s["bins"])
        )
        idx.ctx_ids = {tuple(t): i for i, t in enumerate(s["ctx"])}
        idx.eff_ids = {tuple(t): i for i, t in enumerate(s["eff"])}
        idx.n_params = int(s["n_params"])
        idx.base = np.array(base, dtype=np.intp)
        idx.cross = np.array(cross, dtype=np.intp)
        idx.crossed = np.array(crossed, dtype=np.bool_)
        # Sized like the tables they flag (the next token gets the next row or column).
        idx.pair_eff = np.zeros(idx.cross.shape[0], dtype=np.bool_)
        idx.pair_eff[: len(idx.eff_ids)] = [_is_pair(t) for t in idx.eff_ids]
        idx.type_ctx = np.zeros(len(idx.base), dtype=np.bool_)
        idx.type_ctx[: len(idx.ctx_ids)] = [t == BIAS or _is_type(t) for t in idx.ctx_ids]
        return idx
