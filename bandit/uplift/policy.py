"""The uplift policy: do nothing unless a treatment is confidently worth more than control.

For a context ``x`` and a candidate treatment ``a`` (offer with fixed cost ``f`` and discount
rate ``d``, channel with contact cost ``c``), the reward rule (:mod:`bandit.rewards`) makes the
expected net value

    V(a) = (1 − d)·R(x, a) − f·P(x, a) − c          V(control) = R(x, control)

where ``R`` is the attributed revenue and ``P`` the chance of a purchase. The costs are known
exactly from the request; ``R`` and ``P`` are learned (:mod:`bandit.uplift.model`) as a
baseline ``b(x)`` plus pooled effects of the treatment's tokens
(:mod:`bandit.uplift.features`). The net uplift ``U(a) = V(a) − V(control)`` therefore
charges the discount on the purchases that would have happened anyway (``d·b(x)``),
estimated from every decision, control ones included.

The pmf is an explicit mixture, so every logged propensity is exact:

* with probability ``1 − explore``: the treatment with the highest lower bound
  ``mean(U) − k·sd(U)`` if that bound is above 0, else control, where
  ``k = kappa·sqrt(1 + evidence/n)`` after ``n`` learned decisions (the gate asks for more
  while little is known; :attr:`UpliftSettings.evidence`);
* with probability ``explore``: posterior sampling computed exactly over the model's ``S``
  published posterior draws — each draw votes for its best treatment (control's uplift is 0
  in every draw), and the votes' shares are the probabilities.

The service mixes its control-share floor in afterwards. Before anything is learned the
model knows nothing: ``1 − explore`` on control, ``explore`` spread evenly.

>>> from bandit.types import CONTROL_TREATMENT, Channel, Customer, Offer, Trigger
>>> p = UpliftPolicy.from_args(uplift_arguments("--explore 0.2", seed=0))
>>> ts = (CONTROL_TREATMENT, Treatment(Offer("o"), Channel("h")))
>>> p.scores(Context(Customer("c"), Trigger("t")), ts)
[0.9, 0.1]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bandit.rewards import RewardRule
from bandit.types import Context, Decision, Treatment
from bandit.uplift.features import FeatureIndex
from bandit.uplift.model import LinearStats, Posterior

UPLIFT = "uplift"
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

_REVENUE, _PURCHASE = 0, 1
_SCORE_CHUNK = 256
"""Most contexts :meth:`UpliftPolicy.scores_many` scores in one pass (bounds its arrays)."""
RIDGE_GRID = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0)
"""Candidate prior precisions of the crosses when ``ridge_cross`` is ``auto``."""


@dataclass(frozen=True, slots=True)
class UpliftSettings:
    """The uplift policy's hyper-parameters (its ``args`` after ``uplift``)."""

    kappa: float = 1.0
    """Standard deviations below the mean a treatment's net uplift must stay above 0, for one
    candidate (a one-sided level of ``Φ(−kappa)``, 16 % at 1)."""
    evidence: float = 10_000.0
    """While the model has learned few decisions, the gate asks for more: ``kappa`` is
    multiplied by ``sqrt(1 + evidence/n)`` after ``n`` learned decisions (2.4 at 2,000,
    1.4 at 10,000, 1.2 at 20,000, 1.05 at 100,000; 0: ``kappa`` throughout). The
    posterior's spread only knows the noise, not the misfit of a model whose crosses are still
    at their prior, and picking the best of many noisy lower bounds is confident by chance."""
    explore: float = 0.1
    """Share of decisions drawn by posterior sampling instead of the confident choice."""
    samples: int = 32
    """Posterior draws published with each model (spread and posterior sampling)."""
    ridge: float = 1.0
    """Prior precision λ of the main effects (baseline, offer, channel, pair; relative to the
    noise)."""
    ridge_cross: float = 1000.0
    """Prior precision of effect × context crosses: heterogeneity is believed only with
    evidence (a cross needs about this many informative decisions to reach half its
    least-squares value). 0 (``auto``, the default): chosen at every publication from
    :data:`RIDGE_GRID` by the marginal likelihood of everything learned, so it weakens as
    strong heterogeneity shows in the data."""
    max_revenue: float = 1000.0
    """Attributed revenue above this is learned as this (the log keeps the raw value)."""
    max_params: int = 4096
    """At most this many weights; later tokens are not learned from."""
    bins: bool = False
    """Context numbers also set an indicator of their half-octave bin."""
    form: str = "product"
    """``product``: expected revenue = P(purchase) × basket (a purchase model on every
    decision, a basket model on the decisions with a purchase), so an effect on purchases is
    worth more for bigger baskets; ``additive``: one linear model of revenue."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.kappa >= 0.0:
            raise ValueError(f"kappa must be >= 0, not {self.kappa}")
        if not 0.0 <= self.explore <= 1.0:
            raise ValueError(f"explore must be within [0, 1], not {self.explore}")
        if not 1 <= self.samples <= 4096:
            raise ValueError(f"samples must be within [1, 4096], not {self.samples}")
        if not (self.ridge > 0.0 and self.ridge_cross >= 0.0):
            raise ValueError(f"ridges must be > 0 (or auto), not {self.ridge}, {self.ridge_cross}")
        if not self.max_revenue > 0.0:
            raise ValueError(f"max_revenue must be > 0, not {self.max_revenue}")
        if not self.evidence >= 0.0:
            raise ValueError(f"evidence must be >= 0, not {self.evidence}")
        if self.form not in ("product", "additive"):
            raise ValueError(f"form must be 'product' or 'additive', not {self.form!r}")
        if not 16 <= self.max_params <= 16384:
            raise ValueError(f"max_params must be within [16, 16384], not {self.max_params}")

    def args(self) -> list[str]:
        return [
            UPLIFT,
            "--kappa", f"{self.kappa:g}",
            "--explore", f"{self.explore:g}",
            "--evidence", f"{self.evidence:g}",
            "--samples", str(self.samples),
            "--ridge", f"{self.ridge:g}",
            "--ridge-cross", f"{self.ridge_cross:g}" if self.ridge_cross else "auto",
            "--max-revenue", f"{self.max_revenue:g}",
            "--max-params", str(self.max_params),
            "--bins", "on" if self.bins else "off",
            "--form", self.form,
            "--seed", str(self.seed),
        ]  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uplift", add_help=False, exit_on_error=False)
    d = UpliftSettings()
    p.add_argument("--kappa", type=float, default=d.kappa)
    p.add_argument("--evidence", type=float, default=d.evidence)
    p.add_argument("--explore", type=float, default=d.explore)
    p.add_argument("--samples", type=int, default=d.samples)
    p.add_argument("--ridge", type=float, default=d.ridge)
    p.add_argument("--ridge-cross", type=_ridge, default=d.ridge_cross)
    p.add_argument("--max-revenue", type=float, default=d.max_revenue)
    p.add_argument("--max-params", type=int, default=d.max_params)
    p.add_argument("--bins", choices=("on", "off"), default="on" if d.bins else "off")
    p.add_argument("--form", choices=("product", "additive"), default=d.form)
    p.add_argument("--seed", type=int, default=None)
    return p


def _ridge(text: str) -> float:
    return 0.0 if text == "auto" else float(text)


def parse_settings(args: Sequence[str], seed: int = 0) -> UpliftSettings:
    """Settings from option tokens (``--kappa 1.5 --explore 0.1`` …); unknown ones refused.

    >>> parse_settings(["--kappa", "2"]).kappa
    2.0
    >>> parse_settings(["--kapa", "2"])
    Traceback (most recent call last):
    ...
    ValueError: unknown uplift options: --kapa 2
    """
    try:
        ns, rest = _parser().parse_known_args(list(args))
    except argparse.ArgumentError as exc:
        raise ValueError(f"bad uplift options: {exc}") from None
    if rest:
        raise ValueError(f"unknown uplift options: {' '.join(rest)}")
    return UpliftSettings(
        kappa=ns.kappa,
        evidence=ns.evidence,
        explore=ns.explore,
        samples=ns.samples,
        ridge=ns.ridge,
        ridge_cross=ns.ridge_cross,
        max_revenue=ns.max_revenue,
        max_params=ns.max_params,
        bins=ns.bins == "on",
        form=ns.form,
        seed=seed if ns.seed is None else ns.seed,
    )


def uplift_arguments(options: str = "", seed: int = 0) -> list[str]:
    """The full, canonical argument list of an uplift policy (what a checkpoint stores).

    >>> uplift_arguments("--kappa 2", seed=3)[:3]
    ['uplift', '--kappa', '2']
    """
    return parse_settings(shlex.split(options), seed).args()


@dataclass(frozen=True, slots=True)
class _Catalogue:
    """A candidate tuple prepared for scoring against one published posterior: which
    weights each context token reaches, and how they add up per treatment."""

    cross: IntArray
    """``[context tokens, 1 + E]``: per context token (as many as the index had when this
    was built) its baseline weight, then its crosses with the catalogue's ``E`` effect tokens
    (pair tokens aside)."""
    mix: NDArray[np.float32]
    """``[K + 1, 1 + E]``: a treatment's linear predictor from those (1 for the baseline,
    its token values for the effects); the last row is the baseline alone."""
    pair: IntArray
    """``[context tokens, K]``: each treatment's pair token crossed with each context token
    (0 but for the bias and trigger types, the only context tokens pairs are crossed with,
    and for treatments without a learned pair)."""
    pair_value: NDArray[np.float32]
    """``[K, 1]``: the pair token's value per treatment."""
    discount: FloatArray
    keep: FloatArray
    """``1 − discount``: the share of the basket the business keeps (``[K, 1]``)."""
    fixed: FloatArray
    """``[K, 1]``."""
    contact: FloatArray
    """``[K, 1]``."""
    control: NDArray[np.bool_]
    any_control: bool
    control_at: int
    """Control's position (0 when there is none)."""
    zero: Any
    """Where control is, as an index of the rows: ``control_at`` when it is there once (a
    cheaper assignment than through the mask), else ``control``."""
    fold: NDArray[np.float32]
    """``[context tokens, K + 1, W]``: what one unit of each context token adds to every
    treatment's (and, last, the baseline's) predictors — ``mix`` times its gathered weights,
    plus its pair weights — filled the first time a call meets the token (:meth:`folded`)."""
    filled: NDArray[np.bool_]
    """``[context tokens]``: which rows of ``fold`` are filled."""

    def folded(self, table: NDArray[np.float32], tokens: IntArray) -> NDArray[np.float32]:
        """``fold[tokens]``, filling the rows not filled yet from the published ``table``
        (weights past its end, learned since it was published, count as 0)."""
        todo = tokens[~self.filled[tokens]]
        if len(todo):
            dim = len(table)
            cross = self.cross[todo]
            cross[cross >= dim] = 0
            pair = self.pair[todo]
            pair[pair >= dim] = 0
            rows = np.matmul(self.mix.astype(np.float64), table[cross].astype(np.float64))
            rows[:, :-1] += self.pair_value * table[pair]
            self.fold[todo] = rows
            self.filled[todo] = True
        return self.fold[tokens]


class UpliftPolicy:
    """The :class:`~bandit.learner.Learner` for ``uplift`` arguments. One owner; not
    thread-safe. ``scores`` uses the last published posterior (:meth:`publish`, or the
    model it was built from); ``learn_*`` only accumulate."""

    def __init__(self, settings: UpliftSettings) -> None:
        self.settings = settings
        self.args = settings.args()
        self.learned = 0
        self.ridge_cross = settings.ridge_cross or RIDGE_GRID[-1]
        """The crosses' prior precision of the last publication."""
        self._tuned_at = 0
        """How many decisions had been learned when ``ridge_cross`` was last chosen."""
        self.index = FeatureIndex(settings.max_params, bins=settings.bins)
        self._stats: LinearStats | None = LinearStats(targets=2)
        """All learned decisions: revenue and purchase."""
        self._basket = LinearStats(targets=1)
        """Decisions with a purchase: the basket (revenue given a purchase)."""
        self._lazy_stats: dict[str, FloatArray] | None = None
        self._lazy_basket: dict[str, FloatArray] | None = None
        self.posterior = Posterior.empty(2, settings.samples)
        self._table = _pack(self.posterior)
        self._upper = _upper(self._table, settings.samples)
        """Each column's upper clip: 1 for the first model's (purchase, in the product form)."""
        self._catalogues: dict[int, tuple[tuple[Treatment, ...], int, _Catalogue]] = {}
        self._generation = 0
        self._gate_kappa = settings.kappa
        """``kappa`` as the gate applies it to the published posterior (see ``evidence``)."""

    @classmethod
    def from_args(cls, args: Sequence[str], model: bytes | None = None) -> UpliftPolicy:
        if not args or args[0] != UPLIFT:
            raise ValueError(f"not uplift arguments: {list(args)!r}")
        policy = cls(parse_settings(args[1:]))
        if model is not None:
            policy._load(model)
        return policy

    # ---- scoring ------------------------------------------------------------------------------

    def _catalogue(self, treatments: tuple[Treatment, ...]) -> _Catalogue:
        """The candidates' weights and costs, cached by the tuple's identity (the service
        hands the same tuple for the same catalogue) until the next publication."""
        hit = self._catalogues.get(id(treatments))
        if hit is not None and hit[0] is treatments and hit[1] == self._generation:
            return hit[2]
        index = self.index
        n_ctx, k = len(index.ctx_ids), len(treatments)
        rows = [index.effects(t) for t in treatments]
        eff = sorted({int(j) for ids, _ in rows for j in ids if not index.pair_eff[j]})
        col = {j: 1 + i for i, j in enumerate(eff)}
        mix = np.zeros((k + 1, 1 + len(eff)), dtype=np.float32)
        mix[:, 0] = 1.0
        pair = np.zeros((n_ctx, k), dtype=np.intp)
        pair_value = np.zeros((k, 1), dtype=np.float32)
        for t, (ids, vals) in enumerate(rows):
            for j, v in zip(ids.tolist(), vals.tolist(), strict=True):
                if index.pair_eff[j]:
                    pair[:, t] = index.cross[j, :n_ctx]
                    pair_value[t] = v
                else:
                    mix[t, col[j]] = v
        cross = np.empty((n_ctx, 1 + len(eff)), dtype=np.intp)
        cross[:, 0] = index.base[:n_ctx]
        cross[:, 1:] = index.cross[eff, :n_ctx].T
        control = np.array([t.is_control for t in treatments], dtype=np.bool_)
        discount = np.array([t.offer.discount_rate if t.offer else 0.0 for t in treatments])
        width = self._table.shape[1]
        cat = _Catalogue(
            cross=cross,
            mix=mix,
            pair=pair,
            pair_value=pair_value,
            discount=discount,
            keep=(1.0 - discount)[:, None],
            fixed=np.array([t.offer.fixed_cost if t.offer else 0.0 for t in treatments])[:, None],
            contact=np.array([t.channel.contact_cost if t.channel else 0.0 for t in treatments])[
                :, None
            ],
            control=control,
            any_control=bool(control.any()),
            control_at=int(np.argmax(control)) if k else 0,
            zero=int(np.argmax(control)) if control.sum() == 1 else control,
            # calloc'd: only the rows a call fills take memory
            fold=np.zeros((n_ctx, k + 1, width), dtype=np.float32),
            filled=np.zeros(n_ctx, dtype=np.bool_),
        )
        if len(self._catalogues) >= 256:
            self._catalogues.clear()
        self._catalogues[id(treatments)] = (treatments, self._generation, cat)
        return cat

    def _values(self, context: Context, cat: _Catalogue) -> NDArray[np.float64]:
        """``[K, 1 + S]``: each treatment's net uplift over control from the posterior means
        (column 0) and in each posterior draw (columns 1…); control's row is 0.

        One gather of the catalogue's folded rows for the context's tokens (each the
        published weights it reaches — baseline, effect crosses and pairs — already mixed
        per treatment) and one product with the context's values give every treatment's two
        linear predictors (means and draws: the table holds each draw's full weights) and
        the baseline's."""
        table = self._table
        ck, cv = self.index.context(context)
        x = cv.astype(np.float32)
        if len(ck) and ck.max() >= len(cat.filled):
            # learned from since the last publication: what is new has no weight yet
            known = ck < len(cat.filled)
            ck, x = ck[known], x[known]
        width = table.shape[1]
        if len(ck):
            # [K + 1, W]: the treatments', then the baseline's
            t = (x @ cat.folded(table, ck).reshape(len(ck), -1)).reshape(-1, width)
        else:
            t = np.zeros((len(cat.mix), width), dtype=np.float32)
        n = self.settings.samples
        if self.settings.form == "product":
            # U = (1 − d)·P·B − f·P − c − P₀·B₀, purchase P and basket B (columns [P, B]):
            # every row's P within [0, 1] and B ≥ 0, the baseline's included, in two passes.
            np.minimum(np.maximum(t, 0.0, out=t), self._upper, out=t)
            p, q = t[:-1, : n + 1], t[:-1, n + 1 :]
            values = p * (cat.keep * q - cat.fixed) - cat.contact
            values -= t[-1, : n + 1] * t[-1, n + 1 :]
        else:
            b = t[-1]
            t = t[:-1]
            # U = (1 − d)·R − d·R₀ − f·P − c with R₀, P₀ the baseline, R, P the effects
            # (columns [R, P]).
            e = t - b
            d = cat.discount[:, None]
            values = (
                cat.keep * e[:, : n + 1] - d * b[: n + 1] - cat.fixed * t[:, n + 1 :] - cat.contact
            )
        values[cat.zero] = 0.0
        return values

    def uplift(
        self, context: Context, treatments: tuple[Treatment, ...]
    ) -> tuple[FloatArray, NDArray[np.float64]]:
        """Each treatment's mean net uplift over control (``[K]``, money) and its posterior
        draws' deviations from that mean (``[K, S]``); control's are 0."""
        values = self._values(context, self._catalogue(treatments))
        mean = values[:, 0].astype(np.float64)
        return mean, values[:, 1:] - mean[:, None]

    def scores(self, context: Context, treatments: tuple[Treatment, ...]) -> list[float]:
        """The pmf over ``treatments`` (see the module docstring)."""
        s = self.settings
        k = len(treatments)
        cat = self._catalogue(treatments)
        pmf = np.zeros(k)
        if self.posterior.n == 0:
            greedy = cat.control_at
            pmf += s.explore / k
        else:
            values = self._values(context, cat)
            mean = values[:, 0].astype(np.float64)
            draws = values[:, 1:]
            dev = draws - mean[:, None]
            dev *= dev
            sd = np.sqrt(dev.sum(axis=1) / dev.shape[1])
            lower = mean - self._gate_kappa * sd
            if cat.any_control:
                lower[cat.zero] = -np.inf
            best = int(np.argmax(lower)) if k > 1 else 0
            greedy = best if lower[best] > 0.0 or not cat.any_control else cat.control_at
            if s.explore > 0.0:
                votes = np.argmax(draws, axis=0)
                pmf = s.explore * np.bincount(votes, minlength=k) / draws.shape[1]
        pmf[greedy] += 1.0 - s.explore
        return pmf.tolist()

    def scores_many(
        self, contexts: Sequence[Context], treatments: tuple[Treatment, ...]
    ) -> list[Sequence[float]]:
        """:meth:`scores` of each context, in one NumPy pass over all of them: bit for bit
        what :meth:`scores` gives each (a test checks it).

        Each context's linear predictors are the same product as :meth:`_values`' — its
        tokens' folded rows gathered, times its values — done for all contexts with the same
        tokens in one stacked ``matmul`` over one gathered block (NumPy runs the same BLAS
        call per context, so the sums round alike); everything after is elementwise, or
        reduces along the same axis, over a ``[contexts, K, ...]`` array."""
        s = self.settings
        k = len(treatments)
        cat = self._catalogue(treatments)
        b = len(contexts)
        if b == 0:
            return []
        if self.posterior.n == 0:
            pmf = np.zeros((b, k)) + s.explore / k
            pmf[:, cat.control_at] += 1.0 - s.explore
            return list(pmf.tolist())
        out: list[Sequence[float]] = []
        for lo in range(0, b, _SCORE_CHUNK):
            values = self._values_many(contexts[lo : lo + _SCORE_CHUNK], cat)
            mean = values[:, :, 0].astype(np.float64)
            draws = values[:, :, 1:]
            dev = draws - mean[:, :, None]
            dev *= dev
            sd = np.sqrt(dev.sum(axis=2) / dev.shape[2])
            lower = mean - self._gate_kappa * sd
            if cat.any_control:
                lower[:, cat.zero] = -np.inf
            n = len(values)
            rows = np.arange(n)
            best = np.argmax(lower, axis=1) if k > 1 else np.zeros(n, dtype=np.intp)
            if cat.any_control:
                greedy = np.where(lower[rows, best] > 0.0, best, cat.control_at)
            else:
                greedy = best
            if s.explore > 0.0:
                votes = np.argmax(draws, axis=1)  # [n, S]
                counts = np.bincount((votes + k * rows[:, None]).ravel(), minlength=n * k).reshape(
                    n, k
                )
                pmf = s.explore * counts / draws.shape[2]
            else:
                pmf = np.zeros((n, k))
            pmf[rows, greedy] += 1.0 - s.explore
            out += pmf.tolist()
        return out

    def _values_many(self, contexts: Sequence[Context], cat: _Catalogue) -> NDArray[np.float64]:
        """:meth:`_values` of each context: ``[contexts, K, 1 + S]``."""
        table = self._table
        width = table.shape[1]
        rows_k = len(cat.mix)
        known = len(cat.filled)
        tokens: list[IntArray] = []
        xs: list[NDArray[np.float32]] = []
        for context in contexts:
            ck, cv = self.index.context(context)
            x = cv.astype(np.float32)
            if len(ck) and ck.max() >= known:
                keep = ck < known
                ck, x = ck[keep], x[keep]
            tokens.append(ck)
            xs.append(x)
        t = np.zeros((len(contexts), rows_k, width), dtype=np.float32)
        every = np.concatenate(tokens) if tokens else np.zeros(0, dtype=np.intp)
        if len(every):
            cat.folded(table, np.unique(every))  # fill what no call met yet
        # Contexts with the same tokens (most of a campaign's: the same kinds of features,
        # only the numbers differ) share one gathered block, broadcast to each of them.
        by_tokens: dict[bytes, list[int]] = {}
        for i, ck in enumerate(tokens):
            by_tokens.setdefault(ck.tobytes(), []).append(i)
        for members in by_tokens.values():
            ck = tokens[members[0]]
            m = len(ck)
            if m == 0:
                continue
            x_m = np.stack([xs[i] for i in members])[:, None, :]  # [G, 1, m]
            fold = cat.fold[ck].reshape(1, m, -1)  # [1, m, (K + 1)·W], broadcast to each
            t[members] = np.matmul(x_m, fold).reshape(len(members), rows_k, width)
        n = self.settings.samples
        if self.settings.form == "product":
            np.minimum(np.maximum(t, 0.0, out=t), self._upper, out=t)
            p, q = t[:, :-1, : n + 1], t[:, :-1, n + 1 :]
            values = p * (cat.keep * q - cat.fixed) - cat.contact
            values -= t[:, -1:, : n + 1] * t[:, -1:, n + 1 :]
        else:
            base = t[:, -1:]
            t = t[:, :-1]
            e = t - base
            d = cat.discount[:, None]
            values = (
                cat.keep * e[:, :, : n + 1]
                - d * base[:, :, : n + 1]
                - cat.fixed * t[:, :, n + 1 :]
                - cat.contact
            )
        values[:, cat.zero] = 0.0
        return values

    # ---- learning -----------------------------------------------------------------------------

    def _ensure_stats(self) -> LinearStats:
        if self._stats is None:
            assert self._lazy_stats is not None
            self._stats = LinearStats.from_state(2, self._lazy_stats)
            assert self._lazy_basket is not None
            self._basket = LinearStats.from_state(1, self._lazy_basket)
            self._lazy_stats = self._lazy_basket = None
        return self._stats

    def learn(
        self, context: Context, treatment: Treatment, revenue: float, purchased: bool
    ) -> None:
        """Learn one outcome: the attributed revenue (clipped) and whether a purchase was made."""
        stats = self._ensure_stats()
        idx, val = self.index.design(context, treatment)
        r = min(max(float(revenue), 0.0), self.settings.max_revenue)
        if not np.isfinite(r):
            r = 0.0
        stats.add(idx, val, (r, 1.0 if purchased else 0.0))
        if purchased:
            self._basket.add(idx, val, (r,))
        self.learned += 1

    def learn_closed(
        self, d: Decision, reward: float, revenue: float, n_outcomes: int, rule: RewardRule
    ) -> None:
        """The :class:`~bandit.learner.Learner` method: learns revenue and purchase (the
        reward follows from them and the known costs)."""
        clip = getattr(rule, "clip", None)
        if clip is not None:
            revenue = float(clip(revenue))
        self.learn(d.context, d.chosen_treatment, revenue, n_outcomes > 0 and revenue > 0.0)

    def publish(self) -> Posterior:
        """Fit the posterior from everything learned; :meth:`scores` uses it from now on."""
        s = self.settings
        stats = self._ensure_stats()
        cross = s.ridge_cross
        if not cross:
            # Re-chosen each time the data have doubled since the last choice: the evidence
            # moves slowly, and each candidate costs a factorisation.
            if self._tuned_at == 0 or stats.n >= 2 * self._tuned_at:
                self.ridge_cross = self._tuned_ridge(stats)
                self._tuned_at = max(stats.n, 1)
            cross = self.ridge_cross
        else:
            self.ridge_cross = cross
        prior = self.index.prior_precision(s.ridge, cross)
        post = stats.fit(prior[: stats.dim], s.samples, s.seed)
        if s.form == "product":
            basket = self._basket
            basket.reserve(stats.dim)
            b = basket.fit(prior[: basket.dim], s.samples, s.seed + 1)
            post = Posterior(
                (post.means[_PURCHASE], b.means[0]),
                (post.samples[_PURCHASE], b.samples[0]),
                (post.noise[_PURCHASE], b.noise[0]),
                post.n,
            )
        self._set_posterior(post)
        return self.posterior

    def _set_posterior(self, post: Posterior) -> None:
        """Score with ``post`` from now on."""
        s = self.settings
        self.posterior = post
        self._table = _pack(post)
        self._upper = _upper(self._table, s.samples)
        self._gate_kappa = s.kappa * math.sqrt(1.0 + s.evidence / max(post.n, 1))
        self._generation += 1

    def _tuned_ridge(self, stats: LinearStats) -> float:
        """The crosses' prior precision with the highest marginal likelihood (ties: the
        larger, more conservative one)."""
        if stats.n == 0:
            return RIDGE_GRID[-1]
        best, best_value = RIDGE_GRID[-1], -np.inf
        for lam in reversed(RIDGE_GRID):
            prior = self.index.prior_precision(self.settings.ridge, lam)
            # The product form's decisions rest on the purchase model: its evidence decides.
            targets = (_PURCHASE,) if self.settings.form == "product" else None
            value = stats.log_evidence(prior, targets)
            if value > best_value + 1e-9:
                best, best_value = lam, value
        return best

    # ---- persistence --------------------------------------------------------------------------

    def serialize(self) -> bytes:
        """Publish, then the whole state: settings, feature index, statistics, posterior."""
        post = self.publish()
        stats = self._ensure_stats()
        header = {"format": 1, "args": self.args, "learned": self.learned,
                  "ridge_cross": self.ridge_cross, "tuned_at": self._tuned_at,
                  "index": self.index.state(), "noise": list(post.noise), "n": post.n}  # fmt: skip
        arrays: dict[str, Any] = {
            "base": self.index.base,
            "cross": self.index.cross,
            "crossed": self.index.crossed,
            "mean_0": post.means[0],
            "mean_1": post.means[1],
            "draws_0": post.samples[0],
            "draws_1": post.samples[1],
        }
        arrays.update({f"stats_{k}": v for k, v in stats.state().items()})
        arrays.update({f"basket_{k}": v for k, v in self._basket.state().items()})
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return json.dumps(header).encode() + b"\n" + buf.getvalue()

    def _load(self, model: bytes) -> None:
        head, sep, body = model.partition(b"\n")
        try:
            meta = json.loads(head)
            if not sep or meta.get("format") != 1:
                raise ValueError("not an uplift model")
            data = np.load(io.BytesIO(body), allow_pickle=False)
            self.index = FeatureIndex.from_state(
                meta["index"], data["base"], data["cross"], data["crossed"]
            )
            self._set_posterior(
                Posterior(
                    (data["mean_0"], data["mean_1"]),
                    (data["draws_0"], data["draws_1"]),
                    tuple(float(x) for x in meta["noise"]),
                    int(meta["n"]),
                )
            )
            self._stats = None
            keys = ("xtx", "xty", "yty", "n_dim")
            self._lazy_stats = {k: data[f"stats_{k}"] for k in keys}
            self._lazy_basket = {k: data[f"basket_{k}"] for k in keys}
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise ValueError(f"cannot read the uplift model: {exc}") from exc
        self.learned = int(meta["learned"])
        self.ridge_cross = float(meta["ridge_cross"])
        self._tuned_at = int(meta["tuned_at"])


def is_uplift_model(model: bytes) -> bool:
    """Whether ``model`` holds an uplift policy's bytes (:meth:`UpliftPolicy.serialize`).

    >>> is_uplift_model(b'{"format": 1}\\n...'), is_uplift_model(b"\\x06\\x00vw")
    (True, False)
    """
    head = model[:64]
    return head.startswith(b'{"format": 1')


def _pack(post: Posterior) -> NDArray[np.float32]:
    """``[D, 2 + 2S]``: the first target's mean and its ``S`` draws (full weights: mean plus
    deviation), then the second's (revenue and purchase in the additive form; purchase and
    basket in the product form)."""
    d = max(len(post.means[0]), len(post.means[1]))
    cols: list[NDArray[Any]] = []
    for mean, draws in zip(post.means, post.samples, strict=True):
        m = _pad(mean, d)
        cols += [m, m[:, None] + _pad(draws, d)]
    return np.ascontiguousarray(np.column_stack(cols), dtype=np.float32)


def _upper(table: NDArray[np.float32], samples: int) -> NDArray[np.float32]:
    out = np.full(table.shape[1], np.inf, dtype=np.float32)
    out[: samples + 1] = 1.0
    return out


def _pad(a: NDArray[Any], d: int) -> NDArray[Any]:
    if len(a) >= d:
        return a
    out = np.zeros((d, *a.shape[1:]), dtype=a.dtype)
    out[: len(a)] = a
    return out
