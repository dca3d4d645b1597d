"""Contact-policy rules (bandit.contact): the file format and each rule, without a database."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.contact import (
    Budgets,
    BudgetUse,
    Contact,
    ContactPolicy,
    CustomerHistory,
    NegativeOutcome,
    PolicyError,
    Situation,
)
from bandit.contact.policy import DAY, Budget, Cap, QuietHours, Repeat, Suppression, Validity
from bandit.types import CONTROL, TreatmentRef

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC).timestamp()
EMAIL, SMS = TreatmentRef("o1", "email"), TreatmentRef("o1", "sms")
O2_EMAIL, O2_SMS = TreatmentRef("o2", "email"), TreatmentRef("o2", "sms")
ALL = [CONTROL, EMAIL, SMS, O2_EMAIL, O2_SMS]


def removed(policy: ContactPolicy, situation: Situation) -> dict[str, str]:
    verdict = policy.apply(ALL, situation)
    assert 0 in verdict.kept  # control always stays
    assert len(verdict.kept) + len(verdict.removed) == len(ALL)
    return {t.key: rule for t, rule in verdict.removed}


def history(
    *contacts: tuple[float, str, str], negatives: tuple[NegativeOutcome, ...] = ()
) -> CustomerHistory:
    return CustomerHistory(tuple(Contact(NOW - ago, o, c) for ago, o, c in contacts), negatives)


# ---- the file -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[[cap]\n", "not valid TOML"),
        ("caps = 1", r"unknown key\(s\) \['caps'\]"),
        (
            "[[cap]]\nmax = 1\ndays = 7\nchanel = 'email'",
            r"cap\[0\]: unknown key\(s\) \['chanel'\]",
        ),
        ("[[cap]]\ndays = 7", r"cap\[0\]\.max: must be a whole number"),
        ("[[cap]]\nmax = -1\ndays = 7", r"cap\[0\]\.max: must be a whole number ≥ 0"),
        ("[[cap]]\nmax = true\ndays = 7", r"cap\[0\]\.max"),
        ("[[cap]]\nmax = 1", r"cap\[0\]\.days: give either days or hours"),
        ("[[cap]]\nmax = 1\ndays = 1\nhours = 2", r"cap\[0\]\.days: give either"),
        ("[[cap]]\nmax = 1\ndays = 0", r"cap\[0\]\.days: must be > 0"),
        ("[[cap]]\nmax = 1\ndays = 'seven'", r"cap\[0\]\.days: must be a number"),
        ("cap = 3", r"cap: must be an array of tables"),
        ("version = 3", "version: must be a string"),
        ("[[repeat]]\noffer = ''\ndays = 1", r"repeat\[0\]\.offer: must be a non-empty string"),
        ("[[suppression]]\noutcomes = []\ndays = 0", r"suppression\[0\]\.outcomes"),
        ("[[suppression]]\noutcomes = ['x']\nscope = 'some'\ndays = 0", r"suppression\[0\]\.scope"),
        (
            "[[quiet_hours]]\nstart = '25:00'\nend = '08:00'",
            r"quiet_hours\[0\]\.start: must be a time",
        ),
        ("[[quiet_hours]]\nstart = '08:00'\nend = '08:00'", r"quiet_hours\[0\]\.end: must differ"),
        (
            "[[quiet_hours]]\nstart = '21:00'\nend = '08:00'\ntime_zone = 'Mars/Olympus'",
            r"quiet_hours\[0\]\.time_zone: unknown time zone 'Mars/Olympus'",
        ),
        (
            "[[validity]]\noffer = 'o'\nstart = 2026-11-27T00:00:00",
            r"validity\[0\]\.start: must be a date-time with an offset",
        ),
        ("[[validity]]\noffer = 'o'", r"validity\[0\]\.start: give start, end or both"),
        (
            "[[validity]]\noffer = 'o'\nstart = 2026-11-28T00:00:00Z\nend = 2026-11-27T00:00:00Z",
            r"validity\[0\]\.end: must be after start",
        ),
        ("[[budget]]\noffer = 'o'", r"budget\[0\]\.count: give count, per_day, money"),
        ("[[budget]]\noffer = 'o'\nmoney = -1.0", r"budget\[0\]\.money: must be a number ≥ 0"),
        (
            "[[cap]]\nname = 'a'\nmax = 1\ndays = 1\n[[repeat]]\nname = 'a'\ndays = 1",
            r"rule names must be unique: \['a'\]",
        ),
    ],
)
def test_a_bad_file_is_refused_naming_the_rule_and_field(text: str, match: str) -> None:
    with pytest.raises(PolicyError, match=match):
        ContactPolicy.parse(text)


def test_a_missing_file_is_refused(tmp_path: object) -> None:
    with pytest.raises(PolicyError, match="cannot read the contact policy"):
        ContactPolicy.load(f"{tmp_path}/nope.toml")


def test_the_digest_follows_the_content_and_the_version_is_a_label(tmp_path: object) -> None:
    text = 'version = "spring"\n[[cap]]\nmax = 1\ndays = 7\n'
    a, b = ContactPolicy.parse(text), ContactPolicy.parse(text.replace("max = 1", "max = 2"))
    assert a.version == "spring"
    assert len(a.digest) == 12
    assert a.digest == ContactPolicy.parse(text.encode()).digest != b.digest
    assert ContactPolicy().digest == "none"
    assert not ContactPolicy().rules


def test_the_documented_example_parses() -> None:
    doc = ContactPolicy.__module__
    import bandit.contact.policy as module

    assert module.__doc__ is not None
    assert doc
    example = module.__doc__.split("```toml\n")[1].split("```")[0]
    policy = ContactPolicy.parse(example)
    assert [r.name for r in policy.rules] == [
        "one email a week",
        "no repeats",
        "unsubscribed",
        "no sms at night",
        "validity[0]",
        "budget[0]",
    ]
    assert policy.budget_offers == {"coupon10"}
    assert policy.negative_outcomes == {"unsubscribe", "complaint", "spam_report"}
    assert policy.longest_lookback == math.inf  # a suppression for good


# ---- each rule --------------------------------------------------------------------------------


def test_a_channel_cap_counts_that_channel_over_its_window() -> None:
    policy = ContactPolicy.parse(
        "[[cap]]\nname = 'email/week'\nchannel = 'email'\nmax = 1\ndays = 7"
    )
    assert removed(policy, Situation(NOW)) == {}
    recent = history((6.9 * DAY, "o2", "email"), (1.0, "o1", "sms"))
    assert removed(policy, Situation(NOW, recent)) == {
        "o1@email": "email/week",
        "o2@email": "email/week",
    }
    assert removed(policy, Situation(NOW, history((7 * DAY + 1, "o2", "email")))) == {}


def test_a_cap_across_channels_counts_every_contact() -> None:
    policy = ContactPolicy.parse("[[cap]]\nmax = 2\nhours = 24")
    one = history((3600.0, "o1", "email"))
    two = history((3600.0, "o1", "email"), (7200.0, "o2", "sms"))
    assert removed(policy, Situation(NOW, one)) == {}
    assert set(removed(policy, Situation(NOW, two))) == {"o1@email", "o1@sms", "o2@email", "o2@sms"}
    never = ContactPolicy.parse("[[cap]]\nchannel = 'sms'\nmax = 0\ndays = 1")
    assert removed(never, Situation(NOW)) == {"o1@sms": "cap[0]", "o2@sms": "cap[0]"}


def test_an_offer_is_not_repeated_within_its_window() -> None:
    every = ContactPolicy.parse("[[repeat]]\ndays = 14")
    only_o2 = ContactPolicy.parse("[[repeat]]\noffer = 'o2'\ndays = 14")
    h = history((13 * DAY, "o1", "email"), (13 * DAY, "o2", "sms"))
    assert removed(every, Situation(NOW, h)) == {
        k: "repeat[0]" for k in ("o1@email", "o1@sms", "o2@email", "o2@sms")
    }
    assert removed(only_o2, Situation(NOW, h)) == {"o2@email": "repeat[0]", "o2@sms": "repeat[0]"}
    assert removed(every, Situation(NOW, history((14 * DAY, "o1", "email")))) == {}


def test_suppressions_after_negative_outcomes() -> None:
    channel = ContactPolicy.parse("[[suppression]]\noutcomes = ['unsubscribe']\ndays = 0")
    everything = ContactPolicy.parse(
        "[[suppression]]\noutcomes = ['complaint']\nscope = 'all'\ndays = 30"
    )
    unsub = history(negatives=(NegativeOutcome(NOW - 400 * DAY, "unsubscribe", "email"),))
    assert removed(channel, Situation(NOW, unsub)) == {
        "o1@email": "suppression[0]",
        "o2@email": "suppression[0]",
    }
    unknown_channel = history(negatives=(NegativeOutcome(NOW - DAY, "unsubscribe", ""),))
    assert len(removed(channel, Situation(NOW, unknown_channel))) == 4
    complaint = history(negatives=(NegativeOutcome(NOW - 29 * DAY, "complaint", "sms"),))
    assert len(removed(everything, Situation(NOW, complaint))) == 4
    old = history(negatives=(NegativeOutcome(NOW - 30 * DAY, "complaint", "sms"),))
    assert removed(everything, Situation(NOW, old)) == {}
    assert removed(everything, Situation(NOW, unsub)) == {}  # another outcome type


def test_quiet_hours_in_the_customers_time_zone() -> None:
    policy = ContactPolicy.parse(
        "[[quiet_hours]]\nchannel = 'sms'\nstart = '21:00'\nend = '08:00'\n"
        "time_zone = 'Europe/Berlin'"
    )
    at = lambda h, m=0: dt.datetime(2026, 12, 6, h, m, tzinfo=dt.UTC).timestamp()  # noqa: E731
    # Berlin is UTC+1 in December
    assert removed(policy, Situation(at(20, 0))) == {
        "o1@sms": "quiet_hours[0]",
        "o2@sms": "quiet_hours[0]",
    }
    assert removed(policy, Situation(at(19, 59))) == {}
    assert len(removed(policy, Situation(at(6, 59)))) == 2
    assert removed(policy, Situation(at(7, 0))) == {}
    # the customer's own zone wins: 20:00 UTC is 15:00 in New York
    assert removed(policy, Situation(at(20, 0), time_zone="America/New_York")) == {}
    day_window = ContactPolicy.parse("[[quiet_hours]]\nstart = '12:00'\nend = '14:00'")
    assert len(removed(day_window, Situation(at(13, 59)))) == 4
    assert removed(day_window, Situation(at(14, 0))) == {}


def test_offer_validity() -> None:
    policy = ContactPolicy.parse(
        "[[validity]]\noffer = 'o2'\nstart = 2026-12-06T12:00:00Z\nend = 2026-12-07T00:00:00+01:00"
    )
    assert set(removed(policy, Situation(NOW - 1))) == {"o2@email", "o2@sms"}
    assert removed(policy, Situation(NOW)) == {}
    end = dt.datetime(2026, 12, 6, 23, 0, tzinfo=dt.UTC).timestamp()
    assert removed(policy, Situation(end - 1)) == {}
    assert set(removed(policy, Situation(end))) == {"o2@email", "o2@sms"}
    open_ended = ContactPolicy.parse("[[validity]]\noffer = 'o1'\nend = 2026-12-01T00:00:00Z")
    assert set(removed(open_ended, Situation(NOW))) == {"o1@email", "o1@sms"}


@pytest.mark.parametrize(
    ("use", "gone"),
    [
        (BudgetUse(), False),
        (BudgetUse(count=999, today=9, money=49.0), False),
        (BudgetUse(count=1000), True),
        (BudgetUse(today=10), True),
        (BudgetUse(money=50.0), True),
    ],
)
def test_budgets(use: BudgetUse, gone: bool) -> None:
    policy = ContactPolicy.parse("[[budget]]\noffer = 'o1'\ncount = 1000\nper_day = 10\nmoney = 50")
    expected = {"o1@email": "budget[0]", "o1@sms": "budget[0]"} if gone else {}
    assert (
        removed(policy, Situation(NOW, budgets=Budgets({"o1": use, "o2": BudgetUse(count=10**6)})))
        == expected
    )


def test_the_first_rule_that_removes_a_treatment_is_named() -> None:
    policy = ContactPolicy.parse(
        "[[budget]]\nname = 'b'\noffer = 'o1'\ncount = 0\n"
        "[[cap]]\nname = 'c'\nchannel = 'email'\nmax = 0\ndays = 1"
    )
    assert removed(policy, Situation(NOW)) == {"o1@email": "c", "o2@email": "c", "o1@sms": "b"}


# ---- properties -------------------------------------------------------------------------------

contacts = st.lists(
    st.builds(
        Contact,
        st.floats(NOW - 30 * DAY, NOW),
        st.sampled_from(["o1", "o2"]),
        st.sampled_from(["email", "sms"]),
    ),
    max_size=6,
)
rules = st.lists(
    st.one_of(
        st.builds(
            Cap,
            st.just("cap"),
            st.integers(0, 3),
            st.floats(3600, 20 * DAY),
            st.sampled_from([None, "email"]),
        ),
        st.builds(
            Repeat, st.just("repeat"), st.floats(3600, 20 * DAY), st.sampled_from([None, "o1"])
        ),
        st.builds(
            Suppression,
            st.just("sup"),
            st.just(frozenset({"unsubscribe"})),
            st.sampled_from(["channel", "all"]),
            st.sampled_from([None, DAY]),
        ),
    ),
    max_size=4,
)


@settings(max_examples=200, database=None, derandomize=True)
@given(rules, contacts, contacts)
def test_rules_only_remove_and_more_history_never_readmits(
    rs: list, older: list, newer: list
) -> None:  # type: ignore[type-arg]
    policy = ContactPolicy(tuple(rs))
    small = Situation(NOW, CustomerHistory(tuple(older)))
    big = Situation(NOW, CustomerHistory(tuple(older + newer)))
    v_small, v_big = policy.apply(ALL, small), policy.apply(ALL, big)
    assert 0 in v_small.kept
    assert 0 in v_big.kept
    for t, name in v_small.removed:
        assert any(r.name == name and r.removes(t, small) for r in rs)
    assert set(v_big.kept) <= set(v_small.kept)  # caps, repeats: more contacts, fewer treatments


negatives = st.lists(
    st.builds(
        NegativeOutcome,
        st.floats(NOW - 3 * DAY, NOW),
        st.sampled_from(["unsubscribe", "purchase"]),
        st.sampled_from(["", "email", "sms"]),
    ),
    max_size=3,
)


@settings(max_examples=300, database=None, derandomize=True)
@given(rules, contacts, negatives, st.floats(NOW - DAY, NOW + DAY))
def test_apply_is_the_first_rule_that_removes_each_candidate(
    rs: list,  # type: ignore[type-arg]
    history: list,  # type: ignore[type-arg]
    negs: list,  # type: ignore[type-arg]
    now: float,
) -> None:
    """apply works out each rule's cut once per call; it must agree with the rules asked
    candidate by candidate, in order."""
    extra = (
        QuietHours("quiet", 0, 12 * 60, "Europe/Berlin", "sms"),
        Validity("valid", "o2", NOW - DAY / 2, NOW + DAY / 2),
        Budget("budget", "o1", count=2),
    )
    named = [replace(r, name=f"{r.name}{i}") for i, r in enumerate(rs)]
    policy = ContactPolicy((*named, *extra))
    s = Situation(
        now,
        CustomerHistory(tuple(history), tuple(negs)),
        Budgets({"o1": BudgetUse(count=2)}) if now > NOW else Budgets(),
    )
    expected = [
        (t, next(r.name for r in policy.rules if r.removes(t, s)))
        for t in ALL
        if not t.is_control and any(r.removes(t, s) for r in policy.rules)
    ]
    assert list(policy.apply(ALL, s).removed) == expected
