"""The decision record's JSON: the hand-written head encoding equals the JSON encoder's."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit.logcodec import _dumps, _head, decode_head, encode_head, pack_pmf
from bandit.types import (
    CONTROL_TREATMENT,
    Channel,
    Context,
    Customer,
    Decision,
    Offer,
    Treatment,
    Trigger,
)

texts = st.text(max_size=12)
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**70), 2**70),
    texts,
    st.booleans(),
    st.lists(texts, max_size=3).map(tuple),
)
features = st.dictionaries(st.text(min_size=1, max_size=10), values, max_size=6)
TREATMENTS = (CONTROL_TREATMENT, Treatment(Offer("o"), Channel("sms")))


@st.composite
def decisions(draw: Any) -> Decision:
    weights = draw(st.lists(st.floats(0.001, 1.0), min_size=2, max_size=2))
    pmf = tuple(w / sum(weights) for w in weights)
    return Decision(
        event_id=draw(texts),
        context=Context(
            Customer(draw(texts), draw(features)), Trigger(draw(texts), draw(features))
        ),
        treatments=TREATMENTS,
        pmf=pmf,
        chosen=draw(st.integers(0, 1)),
        model_version=draw(texts),
        policy=draw(texts),
        decided_at=draw(st.floats(0, 4e9)),
        request_id=draw(texts),
        deferred=draw(st.booleans()),
        seed=draw(st.integers(0, 2**64 - 1)),
        holdout=draw(st.booleans()),
    )


@given(decisions())
def test_head_text_is_what_the_json_encoder_writes(d: Decision) -> None:
    for _ in range(2):  # the second time, texts and flags come from the memo
        text = encode_head(d)
        assert text == _dumps(_head(d, with_pmf=False))
        back = decode_head(text, TREATMENTS, pack_pmf(d.pmf))
        assert back.pmf == d.pmf  # exactly: doubles packed, not printed
        assert (back.seed, back.event_id) == (d.seed, d.event_id)


def test_a_version_1_head_carries_its_own_pmf() -> None:
    d = Decision(
        "e", Context(Customer("c"), Trigger("t")), TREATMENTS, (0.3, 0.7), 1, "v", "p", 1.0
    )
    v1 = _dumps({**_head(d), "schema": 1})
    assert decode_head(v1, TREATMENTS) == d
    with pytest.raises(ValueError, match="without its pmf"):
        decode_head(encode_head(d), TREATMENTS)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_non_finite_features_are_refused_like_the_encoder_does(bad: float) -> None:
    d = Decision(
        "e",
        Context(Customer("c", {"x": bad}), Trigger("t")),
        TREATMENTS,
        (0.5, 0.5),
        0,
        "v",
        "p",
        1.0,
    )
    with pytest.raises(ValueError, match="JSON compliant"):
        _dumps(_head(d))
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode_head(d)


def test_a_record_from_an_unknown_schema_is_refused() -> None:
    d = Decision(
        "e", Context(Customer("c"), Trigger("t")), TREATMENTS, (0.3, 0.7), 1, "v", "p", 1.0
    )
    with pytest.raises(ValueError, match="schema 99"):
        decode_head(_dumps({**_head(d), "schema": 99}), TREATMENTS)


def test_a_non_finite_decision_time_is_refused_not_written_as_invalid_json() -> None:
    d = Decision(
        "e", Context(Customer("c"), Trigger("t")), TREATMENTS, (0.3, 0.7), 1, "v", "p", math.inf
    )
    with pytest.raises(ValueError, match="JSON compliant"):
        encode_head(d)


def test_equal_but_different_tag_values_are_not_mixed_up_by_the_memo() -> None:
    def head(tags: tuple[object, ...]) -> str:
        d = Decision(
            "e",
            Context(Customer("c", {"a": tags}), Trigger("t")),  # type: ignore[dict-item]
            TREATMENTS,
            (0.3, 0.7),
            1,
            "v",
            "p",
            1.0,
        )
        assert encode_head(d) == _dumps(_head(d, with_pmf=False))
        return encode_head(d)

    assert len({head((1,)), head((True,)), head((1.0,)), head((-0.0,)), head((0.0,))}) == 5
