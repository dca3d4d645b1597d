"""Request text can never change a VW example's structure (property-based)."""

from __future__ import annotations

import re
from urllib.parse import unquote

import vowpal_wabbit_next as vw
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.learner import vw_arguments
from bandit.vwformat import encode_feature, encode_features, escape, shared_line

SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.~%@=#!:-]+")

names = st.text(min_size=1, max_size=30)
texts = st.text(max_size=40)
values = st.one_of(
    # VW's float parser drops values that are 0 or vanishingly small (seen below ~1e-27).
    st.floats(allow_nan=False, allow_infinity=False, width=32).filter(
        lambda v: v == 0 or abs(v) > 1e-15
    ),
    texts,
    st.booleans(),
    st.lists(texts, max_size=4).map(tuple),
)
feature_maps = st.dictionaries(names, values, max_size=8)

_WS = vw.Workspace(vw_arguments("--epsilon 0.1", [], seed=0))
_PARSER = vw.TextFormatParser(_WS)


def _token_count(features: dict[str, object]) -> int:
    n = 0
    for v in features.values():
        if isinstance(v, tuple):
            n += len(v)
        elif isinstance(v, float | int) and not isinstance(v, bool) and v == 0:
            continue
        else:
            n += 1
    return n


@given(st.text())
def test_escape_is_safe_and_reversible(text: str) -> None:
    e = escape(text)
    assert re.fullmatch(r"[A-Za-z0-9_.~%-]*", e)
    assert unquote(e) == text


@given(names, values)
def test_each_feature_is_whitespace_free_safe_tokens(name: str, value: object) -> None:
    encoded = encode_feature(name, value)  # type: ignore[arg-type]
    for token in encoded.split(" ") if encoded else []:
        assert SAFE_TOKEN.fullmatch(token), token
        assert "|" not in token
        assert "\n" not in token


@settings(max_examples=200, deadline=None)
@given(feature_maps, names, feature_maps)
def test_vw_sees_exactly_one_feature_per_token(
    customer: dict[str, object], trigger_type: str, trigger: dict[str, object]
) -> None:
    line = shared_line(customer, trigger_type, trigger)  # type: ignore[arg-type]
    assert "\n" not in line
    assert line.count("|") == 2
    example = _PARSER.parse_line(line)
    c_features = len(example["c"].indices) if "c" in example else 0
    t_features = len(example["t"].indices) if "t" in example else 0
    assert c_features == _token_count(customer)
    assert t_features == 1 + _token_count(trigger)  # @type=… comes first


def test_distinct_kinds_never_collide() -> None:
    tokens = {
        encode_feature("x", "1"),
        encode_feature("x", 1.0),
        encode_feature("x", True),
        encode_feature("x", False),
        encode_feature("x", ("1",)),
        encode_feature("x=1", True),
    }
    assert len(tokens) == 6


@given(feature_maps, feature_maps)
def test_remembered_tokens_equal_fresh_encodings(
    first: dict[str, object], again: dict[str, object]
) -> None:
    """Texts, flags and tag lists are encoded once and remembered; numbers never are."""
    for features in (first, again, first):
        fresh = " ".join(t for t in (encode_feature(k, v) for k, v in features.items()) if t)  # type: ignore[arg-type]
        assert encode_features(features) == fresh  # type: ignore[arg-type]


def test_remembered_tokens_keep_kinds_apart() -> None:
    # True == 1 == 1.0 in Python: a memo keyed by value alone would mix them up.
    assert [encode_features({"x": v}) for v in (True, 1.0, 1, True, "1", ("1",))] == [
        "x",
        "x:1",
        "x:1",
        "x",
        "x=1",
        "x#1",
    ]
    assert encode_features({"x": ["a b"]}) == "x#a%20b"  # type: ignore[dict-item]  # unhashable
