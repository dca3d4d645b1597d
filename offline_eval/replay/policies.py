"""Target policies for off-policy evaluation: each maps a log's rows to a target pmf.

A target policy is asked one question: *with which probabilities would you have chosen among
the treatments each logged decision offered?* The answer is an ``(n, K)`` array aligned with
the log's candidate catalogues (column ``j`` of row ``i`` is treatment
``lb.catalogues[catalogue_id[i]][j]``; padded columns are 0), ready for the estimators.

=====================  =====================================================================
policy                 target pmf
=====================  =====================================================================
:class:`LoggedPolicy`  the logged pmf itself (its value is the mean logged reward)
:class:`Uniform`       uniform over each row's candidates
:class:`AllControl`    control with probability 1
:class:`FixedTreatment` one ``offer@channel`` wherever it was a candidate, control elsewhere
``RuleTable``          ordered marketer rules, first match wins (:mod:`.rules`)
:class:`SavedModel`    a VW checkpoint (file or MLflow model URI), predict only
``VWReplay``           candidate VW settings replayed through the log (:mod:`.vw_replay`)
=====================  =====================================================================

Rule tables (:class:`~offline_eval.replay.rules.RuleTable`) are in :mod:`.rules`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from bandit.checkpoint import Checkpoint, read_checkpoint
from bandit.learner import UPLIFT, VWPolicy
from bandit.types import CONTROL, TreatmentRef
from bandit.vwformat import CUSTOMER_NS, TRIGGER_NS, action_lines, encode_feature, escape
from offline_eval.io.logs import CUSTOMER_PREFIX, TRIGGER_PREFIX, LoggedBandit

__all__ = [
    "AllControl",
    "FixedTreatment",
    "LoggedPolicy",
    "PolicyTarget",
    "SavedModel",
    "TargetPolicy",
    "Uniform",
    "catalogue_lines",
    "control_columns",
    "mix_control_share",
    "parse_treatment",
    "shared_lines",
    "treatment_matrix",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True, eq=False)
class PolicyTarget:
    """What a target policy answered for a log.

    Attributes:
        pmf: ``(n, K)`` target pmf aligned with the log's catalogues (0 on padded columns).
        model: VW weights behind the policy, when it has some (saved models, replays).
        vw_args: the VW command line of ``model``.
        notes: human-readable remarks (fallbacks, rows without support …).
        seconds: wall time spent computing the pmf.
        learned: how many decisions a replay learned (0 otherwise).
    """

    pmf: FloatArray
    model: bytes | None = None
    vw_args: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    learned: int = 0


class TargetPolicy(Protocol):
    """Anything the study can evaluate: a name, its parameters, and its pmf on a log."""

    @property
    def name(self) -> str:
        """A short label, unique within a comparison (``uniform``, ``fixed:x@sms`` …)."""

    def params(self) -> dict[str, str]:
        """What defines the policy, for tracking (spec, VW arguments, rule file …)."""

    def target(self, lb: LoggedBandit, *, progress: bool = False) -> PolicyTarget:
        """The target pmf of every row of ``lb``."""


# ---- catalogue helpers -----------------------------------------------------------------------


def parse_treatment(text: str) -> TreatmentRef:
    """``offer@channel`` (or ``control``) as a :class:`~bandit.types.TreatmentRef`.

    >>> parse_treatment("discount_10@sms"), parse_treatment("control").is_control
    (TreatmentRef(offer_id='discount_10', channel_id='sms'), True)
    >>> parse_treatment("discount_10")
    Traceback (most recent call last):
    ...
    ValueError: a treatment is 'offer@channel' or 'control', got 'discount_10'
    """
    t = text.strip()
    if t.lower() == "control":
        return CONTROL
    offer, sep, channel = t.partition("@")
    if not sep or not offer or not channel:
        raise ValueError(f"a treatment is 'offer@channel' or 'control', got {text!r}")
    return TreatmentRef(offer, channel)


def treatment_matrix(lb: LoggedBandit) -> tuple[list[TreatmentRef], IntArray]:
    """Every treatment of the log (control first) and, per (row, column), its index there.

    Padded columns hold ``-1``. Built per catalogue, then gathered: no per-row Python work.
    """
    refs = lb.treatment_refs()
    index = {r: i for i, r in enumerate(refs)}
    k = lb.max_treatments
    ids = sorted(lb.catalogues)
    table = np.full((max(ids, default=0) + 1, max(k, 1)), -1, dtype=np.int64)
    for cid in ids:
        cols = [index[t.ref] for t in lb.catalogues[cid]]
        table[cid, : len(cols)] = cols
    cat = lb.frame["catalogue_id"].to_numpy(dtype=np.int64)
    return refs, table[cat, :k]


def control_columns(lb: LoggedBandit) -> IntArray:
    """Per row, the column of control in its catalogue; ``ValueError`` when one has none."""
    _, matrix = treatment_matrix(lb)
    is_control = matrix == 0
    missing = ~is_control.any(axis=1)
    if missing.any():
        row = int(np.argmax(missing))
        raise ValueError(f"row {row} (event {lb.frame['event_id'].iloc[row]}) has no control")
    columns: IntArray = np.argmax(is_control, axis=1).astype(np.int64)
    return columns


def _one_hot(n: int, k: int, columns: IntArray) -> FloatArray:
    pmf = np.zeros((n, k))
    pmf[np.arange(n), columns] = 1.0
    return pmf


def mix_control_share(pmf: FloatArray, control: IntArray, share: float) -> FloatArray:
    """``(1 − share)·pmf + share·1{control}``: the service's control share, vectorised.

    >>> mix_control_share(np.array([[0.0, 1.0]]), np.array([0]), 0.1).tolist()
    [[0.1, 0.9]]
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"control share must be in [0, 1], got {share!r}")
    if share == 0.0:
        return pmf
    out = pmf * (1.0 - share)
    out[np.arange(len(out)), control] += share
    return out


# ---- VW examples from the log, vectorised -----------------------------------------------------


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _column_tokens(name: str, values: Iterable[Any]) -> list[str]:
    """The encoded feature of every row of one column ('' where missing)."""
    cache: dict[tuple[type, Any], str] = {}
    out: list[str] = []
    for raw in values:
        v = _plain(raw)
        if _missing(v):
            out.append("")
            continue
        key = (type(v), v)
        token = cache.get(key)
        if token is None:
            token = encode_feature(name, v)
            if len(cache) < 100_000:
                cache[key] = token
        out.append(token)
    return out


def shared_lines(lb: LoggedBandit) -> list[str]:
    """Every row's VW shared line, as :func:`bandit.vwformat.shared_line` would build it
    from :func:`offline_eval.io.logs.contexts` (a test checks they are equal), column-wise.
    """
    frame = lb.frame
    customer: list[list[str]] = []
    trigger: list[list[str]] = []
    for col in frame.columns:
        name = str(col)
        if name.startswith(CUSTOMER_PREFIX):
            customer.append(_column_tokens(name[len(CUSTOMER_PREFIX) :], frame[col].tolist()))
        elif name.startswith(TRIGGER_PREFIX):
            trigger.append(_column_tokens(name[len(TRIGGER_PREFIX) :], frame[col].tolist()))
    types = [f"@type={escape(str(t))}" for t in frame["trigger_type"].tolist()]
    head_c, head_t = f"shared |{CUSTOMER_NS}", f"|{TRIGGER_NS}"
    lines = []
    for i, type_token in enumerate(types):
        parts = [head_c]
        parts += [tok for col in customer if (tok := col[i])]
        parts += [head_t, type_token]
        parts += [tok for col in trigger if (tok := col[i])]
        lines.append(" ".join(parts))
    return lines


def catalogue_lines(lb: LoggedBandit) -> dict[int, list[str]]:
    """The unlabelled VW action lines of every catalogue, built once per catalogue."""
    return {cid: action_lines(cat) for cid, cat in lb.catalogues.items()}


# ---- simple policies -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoggedPolicy:
    """The policy that wrote the log: its own pmf (all importance weights are 1).

    >>> from offline_eval.replay.policies import LoggedPolicy
    >>> LoggedPolicy().name
    'logged'
    """

    @property
    def name(self) -> str:
        return "logged"

    def params(self) -> dict[str, str]:
        return {"policy": "logged"}

    def target(self, lb: LoggedBandit, *, progress: bool = False) -> PolicyTarget:
        policies = sorted({str(p) for p in lb.frame["policy"].unique()}) if lb.n else []
        return PolicyTarget(lb.pmf.copy(), notes=tuple(f"logged by {p}" for p in policies))


@dataclass(frozen=True, slots=True)
class Uniform:
    """Every candidate of a decision equally likely."""

    @property
    def name(self) -> str:
        return "uniform"

    def params(self) -> dict[str, str]:
        return {"policy": "uniform"}

    def target(self, lb: LoggedBandit, *, progress: bool = False) -> PolicyTarget:
        mask = lb.action_mask().astype(np.float64)
        return PolicyTarget(mask / mask.sum(axis=1, keepdims=True))


@dataclass(frozen=True, slots=True)
class AllControl:
    """Never contact anyone: control with probability 1."""

    @property
    def name(self) -> str:
        return "control"

    def params(self) -> dict[str, str]:
        return {"policy": "control"}

    def target(self, lb: LoggedBandit, *, progress: bool = False) -> PolicyTarget:
        return PolicyTarget(_one_hot(lb.n, lb.max_treatments, control_columns(lb)))


@dataclass(frozen=True, slots=True)
class FixedTreatment:
    """One treatment for everyone it was a candidate for; control for the others.

    A logged decision only offers its eligible treatments (consent, caps …): where the
    fixed treatment was not among them, the policy cannot play it and falls back to control
    (the share of such rows is reported in the notes).
    """

    treatment: TreatmentRef

    @classmethod
    def parse(cls, text: str) -> FixedTreatment:
        """``FixedTreatment.parse("discount_10@sms")``."""
        return cls(parse_treatment(text))

    @property
    def name(self) -> str:
        return f"fixed:{self.treatment.key}"

    def params(self) -> dict[str, str]:
        return {"policy": "fixed", "treatment": self.treatment.key}

    def target(self, lb: LoggedBandit, *, progress: bool = False) -> PolicyTarget:
        refs, matrix = treatment_matrix(lb)
        control = control_columns(lb)
        if self.treatment not in refs:
            raise ValueError(f"{self.treatment.key} is not a candidate anywhere in the log")
        hit = matrix == refs.index(self.treatment)
        found = hit.any(axis=1)
        columns = np.where(found, np.argmax(hit, axis=1), control)
        missing = int((~found).sum())
        notes: tuple[str, ...] = ()
        if missing:
            notes = (
                f"{missing} of {lb.n} decisions ({missing / max(lb.n, 1):.1%}) did not offer "
                f"{self.treatment.key}: control there",
            )
        return PolicyTarget(_one_hot(lb.n, lb.max_treatments, columns), notes=notes)


# ---- saved models ----------------------------------------------------------------------------


def _load_checkpoint(source: str, tracking_uri: str | None) -> Checkpoint:
    if source.startswith(("models:/", "runs:/")) or "://" in source:
        from offline_eval.tracking.registry import load_checkpoint

        return load_checkpoint(source, tracking_uri)
    return read_checkpoint(Path(source))


def predict_pmf(
    policy: VWPolicy, lb: LoggedBandit, *, progress: bool = False, desc: str = "predicting"
) -> FloatArray:
    """``policy``'s pmf on every logged decision (predict only; nothing is learned)."""
    shared = shared_lines(lb)
    actions = catalogue_lines(lb)
    cats = lb.frame["catalogue_id"].to_numpy(dtype=np.int64).tolist()
    pmf = np.zeros((lb.n, lb.max_treatments))
    predict = policy.predict
    for i in tqdm(range(lb.n), desc=desc, unit="dec", disable=not progress, mininterval=0.5):
        row = predict(shared[i], actions[cats[i]])
        pmf[i, : len(row)] = row
    total = pmf.sum(axis=1, keepdims=True)
    return pmf / np.where(total > 0, total, 1.0)


@dataclass(frozen=True, slots=True)
class SavedModel:
    """A trained model (VW or uplift), predict-only: a checkpoint file or an MLflow model URI.

    ``control_share`` mixes in control as the service would (0 scores the model alone).
    """

    source: str
    tracking_uri: str | None = None
    control_share: float = 0.0
    _cache: dict[str, Checkpoint] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @property
    def name(self) -> str:
        return f"model:{self.source}"

    def checkpoint(self) -> Checkpoint:
        if "ckpt" not in self._cache:
            self._cache["ckpt"] = _load_checkpoint(self.source, self.tracking_uri)
        return self._cache["ckpt"]

    def params(self) -> dict[str, str]:
        ckpt = self.checkpoint()
        return {
            "policy": "model",
            "model_source": self.source,
            "vw_args": " ".join(ckpt.vw_args),
            "model_learned": str(ckpt.learned),
            "control_share": str(self.control_share),
        }

    def target(self, lb: LoggedBandit, *, progress: bool = False) -> PolicyTarget:
        start = time.perf_counter()
        ckpt = self.checkpoint()
        if ckpt.vw_args and ckpt.vw_args[0] == UPLIFT:
            from bandit.uplift import UpliftPolicy
            from offline_eval.replay.uplift_replay import uplift_pmf

            uplift = UpliftPolicy.from_args(ckpt.vw_args, ckpt.model)
            pmf, _ = uplift_pmf(uplift, lb, progress=progress, desc=f"scoring {self.source}")
        else:
            policy = VWPolicy(ckpt.vw_args, ckpt.model)
            pmf = predict_pmf(policy, lb, progress=progress, desc=f"scoring {self.source}")
        pmf = mix_control_share(pmf, control_columns(lb), self.control_share)
        return PolicyTarget(
            pmf,
            model=ckpt.model,
            vw_args=tuple(ckpt.vw_args),
            seconds=time.perf_counter() - start,
        )


def describe(policies: Sequence[TargetPolicy]) -> list[str]:
    """The policies' names, checked to be unique (they name the tracked runs)."""
    names = [p.name for p in policies]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"policy names must be unique within a comparison: {', '.join(dup)}")
    return names
