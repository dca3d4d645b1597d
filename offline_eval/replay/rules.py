"""Marketer rule tables as target policies: ordered rules, first match wins.

Rule tables are JSON (or YAML, ``.yaml``/``.yml``)::

    {
      "name": "spring campaign",
      "rules": [
        {"name": "win back", "when": {"customer.stage": {"in": ["at_risk", "lapsed"]}},
         "then": "discount_20@sms"},
        {"when": {"trigger.type": "cart_abandoned", "trigger.cart_value": {"<": 45}},
         "then": "free_shipping@email"},
        {"when": {"customer.stage": "vip"}, "then": {"double_points@sms": 0.5, "control": 0.5}}
      ],
      "default": "control"
    }

``when`` fields are ``customer.<feature>``, ``trigger.<feature>`` and ``trigger.type``; a bare
value means *equals*; operators are ``==``, ``!=``, ``in``, ``not_in``, ``<``, ``<=``, ``>``,
``>=``, ``contains`` (tags) and ``exists`` (true/false). All conditions of a rule must hold;
a missing feature fails every condition but ``exists: false`` and ``!=``. ``then`` is one
treatment or a ``{treatment: weight}`` split. A rule applies to a decision only when its
conditions hold **and** at least one of its treatments was a candidate (eligible) for it;
otherwise the next rule is tried. ``default`` (``control`` when absent) closes the table, and
when even the default was not a candidate the decision falls back to control.

>>> table = RuleTable.from_dict({"rules": [{"when": {"customer.stage": "vip"}, "then": "x@sms"}]})
>>> table.rules[0].conditions[0], table.default
(Condition(field='c.stage', op='==', value='vip'), (('control', 1.0),))
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from offline_eval.io.logs import CUSTOMER_PREFIX, TRIGGER_PREFIX, LoggedBandit
from offline_eval.replay.policies import (
    PolicyTarget,
    _missing,
    _one_hot,
    _plain,
    control_columns,
    parse_treatment,
    treatment_matrix,
)

__all__ = ["Condition", "Rule", "RuleTable"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


_OPS: Final = ("==", "!=", "in", "not_in", "<", "<=", ">", ">=", "contains", "exists")
_OP_ALIASES: Final = {
    "equals": "==",
    "eq": "==",
    "=": "==",
    "not_equals": "!=",
    "ne": "!=",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "not in": "not_in",
    "nin": "not_in",
}


def _field_column(field_name: str) -> str:
    """``customer.stage`` → ``c.stage``; ``trigger.type`` → ``trigger_type``."""
    scope, dot, feature = field_name.partition(".")
    if dot and feature:
        if scope in ("customer", "c"):
            return CUSTOMER_PREFIX + feature
        if scope in ("trigger", "t"):
            return "trigger_type" if feature == "type" else TRIGGER_PREFIX + feature
    if field_name in ("trigger_type", "trigger"):
        return "trigger_type"
    raise ValueError(
        f"rule field {field_name!r} must be 'customer.<feature>', 'trigger.<feature>' or "
        "'trigger.type'"
    )


@dataclass(frozen=True, slots=True)
class Condition:
    """One test on one feature column of the log (``field`` is the column name)."""

    field: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"unknown operator {self.op!r}; use one of {', '.join(_OPS)}")
        if self.op in ("in", "not_in") and not isinstance(self.value, list | tuple):
            raise ValueError(f"operator {self.op!r} needs a list, got {self.value!r}")
        if self.op in ("<", "<=", ">", ">=") and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float)
        ):
            raise ValueError(f"operator {self.op!r} needs a number, got {self.value!r}")
        if self.op == "exists" and not isinstance(self.value, bool):
            raise ValueError(f"operator 'exists' needs true or false, got {self.value!r}")

    def mask(self, frame: pd.DataFrame) -> NDArray[np.bool_]:
        """Rows where the condition holds."""
        n = len(frame)
        if self.field not in frame.columns:
            present = np.zeros(n, dtype=bool)
            values: list[Any] = [None] * n
        else:
            values = [_plain(v) for v in frame[self.field].tolist()]
            present = np.array([not _missing(v) for v in values], dtype=bool)
        if self.op == "exists":
            return present if self.value else ~present
        test = _TESTS[self.op]
        out = np.array(
            [test(v, self.value) if p else False for v, p in zip(values, present, strict=True)]
        )
        if self.op == "!=":
            out |= ~present
        return out.astype(bool) if n else np.zeros(0, dtype=bool)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _cmp(op: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    def test(v: Any, ref: Any) -> bool:
        x = _num(v)
        return x is not None and op(x, float(ref))

    return test


def _eq(v: Any, ref: Any) -> bool:
    if isinstance(v, bool) or isinstance(ref, bool):
        return isinstance(v, bool) and isinstance(ref, bool) and v == ref
    return bool(v == ref)


_TESTS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": _eq,
    "!=": lambda v, ref: not _eq(v, ref),
    "in": lambda v, ref: any(_eq(v, r) for r in ref),
    "not_in": lambda v, ref: not any(_eq(v, r) for r in ref),
    "<": _cmp(lambda a, b: a < b),
    "<=": _cmp(lambda a, b: a <= b),
    ">": _cmp(lambda a, b: a > b),
    ">=": _cmp(lambda a, b: a >= b),
    "contains": lambda v, ref: isinstance(v, tuple) and ref in v,
}

Split = tuple[tuple[str, float], ...]
"""Treatments (``offer@channel`` or ``control``) with their weights."""


def _parse_split(then: Any, where: str) -> Split:
    if isinstance(then, str):
        parse_treatment(then)
        return ((then.strip(), 1.0),)
    if isinstance(then, Mapping) and then:
        out = []
        for k, w in then.items():
            parse_treatment(str(k))
            if isinstance(w, bool) or not isinstance(w, int | float) or not w > 0:
                raise ValueError(f"{where}: weight of {k!r} must be a positive number, got {w!r}")
            out.append((str(k).strip(), float(w)))
        return tuple(out)
    raise ValueError(f"{where}: 'then' is a treatment or a {{treatment: weight}} map, got {then!r}")


def _parse_conditions(when: Any, where: str) -> tuple[Condition, ...]:
    if when is None:
        return ()
    if not isinstance(when, Mapping):
        raise ValueError(f"{where}: 'when' must map fields to conditions, got {when!r}")
    out = []
    for field_name, spec in when.items():
        column = _field_column(str(field_name))
        if isinstance(spec, Mapping):
            if not spec:
                raise ValueError(f"{where}: empty condition on {field_name!r}")
            for op, value in spec.items():
                key = _OP_ALIASES.get(str(op), str(op))
                try:
                    out.append(Condition(column, key, value))
                except ValueError as exc:
                    raise ValueError(f"{where}, {field_name}: {exc}") from None
        else:
            out.append(Condition(column, "==", spec))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Rule:
    """Conditions (all must hold) and the treatment split they lead to."""

    conditions: tuple[Condition, ...]
    then: Split
    name: str = ""


@dataclass(frozen=True, slots=True)
class RuleTable:
    """An ordered campaign rule table: first matching, applicable rule wins (module doc)."""

    rules: tuple[Rule, ...]
    default: Split = (("control", 1.0),)
    label: str = "rules"
    source: str = ""

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, source: str = "") -> RuleTable:
        """Build a table from its JSON/YAML form; ``ValueError`` names the bad rule."""
        if not isinstance(spec, Mapping):
            raise ValueError("a rule table is an object with 'rules' (and 'default', 'name')")
        unknown = set(spec) - {"name", "rules", "default", "description"}
        if unknown:
            raise ValueError(f"unknown rule table keys: {', '.join(sorted(unknown))}")
        raw_rules = spec.get("rules", [])
        if not isinstance(raw_rules, list):
            raise ValueError("'rules' must be a list")
        rules = []
        for i, raw in enumerate(raw_rules):
            where = f"rule {i + 1}"
            if not isinstance(raw, Mapping) or "then" not in raw:
                raise ValueError(f"{where}: a rule is an object with 'when' and 'then'")
            extra = set(raw) - {"name", "when", "then"}
            if extra:
                raise ValueError(f"{where}: unknown keys {', '.join(sorted(extra))}")
            rules.append(
                Rule(
                    _parse_conditions(raw.get("when"), where),
                    _parse_split(raw["then"], where),
                    str(raw.get("name", "")),
                )
            )
        default = _parse_split(spec.get("default", "control"), "default")
        return cls(tuple(rules), default, str(spec.get("name", "rules")), source)

    @classmethod
    def from_file(cls, path: str | Path) -> RuleTable:
        """Read a ``.json`` table (or ``.yaml``/``.yml``, PyYAML being installed)."""
        p = Path(path)
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() in (".yaml", ".yml"):
            yaml = importlib.import_module("yaml")
            spec = yaml.safe_load(text)
        else:
            try:
                spec = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{p}: not valid JSON: {exc}") from None
        return cls.from_dict(spec, source=str(p))

    @property
    def name(self) -> str:
        return f"rules:{self.label}"

    def params(self) -> dict[str, str]:
        return {"policy": "rules", "rules": self.to_json(), "rules_file": self.source}

    def to_json(self) -> str:
        def cond(c: Condition) -> dict[str, Any]:
            return {c.field: {c.op: c.value}}

        return json.dumps(
            {
                "name": self.label,
                "rules": [
                    {"name": r.name, "when": [cond(c) for c in r.conditions], "then": dict(r.then)}
                    for r in self.rules
                ],
                "default": dict(self.default),
            }
        )

    def target(self, lb: LoggedBandit, *, progress: bool = False) -> PolicyTarget:
        refs, matrix = treatment_matrix(lb)
        index = {r: i for i, r in enumerate(refs)}
        n, k = lb.n, lb.max_treatments
        pmf = np.zeros((n, k))
        open_rows = np.ones(n, dtype=bool)
        counts: list[int] = []
        for rule in (*self.rules, Rule((), self.default, "default")):
            hold = open_rows.copy()
            for c in rule.conditions:
                hold &= c.mask(lb.frame)
            weights = np.zeros((n, k))
            for key, w in rule.then:
                ref = parse_treatment(key)
                if ref in index:
                    weights += w * (matrix == index[ref])
            total = weights.sum(axis=1)
            applies = hold & (total > 0)
            pmf[applies] = weights[applies] / total[applies, None]
            open_rows &= ~applies
            counts.append(int(applies.sum()))
        left = int(open_rows.sum())
        if left:
            control = control_columns(lb)
            pmf[open_rows] = _one_hot(n, k, control)[open_rows]
        names = [r.name or f"rule {i + 1}" for i, r in enumerate(self.rules)] + ["default"]
        notes = [f"{name}: {c} decisions" for name, c in zip(names, counts, strict=True)]
        if left:
            notes.append(f"{left} decisions fell back to control (no applicable rule)")
        return PolicyTarget(pmf, notes=tuple(notes))
