"""The batch path (bandit/choose_batch.py) decides exactly what the unary pipeline decides.

The same requests go through ``DecisionService.choose`` one by one on one fresh log and
through ``DecisionService.choose_batch`` on another, with the same event-id key and seed:
every decision must be identical — event id, seed, candidates, removals, pmf (``==`` on the
floats: the batch scores with the same arithmetic in the same order, so the same bits),
chosen treatment, policy and model version — and every refusal the same error. Covered: a
trained uplift model, a trained VW policy, consent, the persistent and the campaign holdout,
a contact policy removing treatments (deferred: judged in one pass; not deferred: the
pipeline customer by customer), a retried request id and an invalid customer in the middle.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bandit.choose import Fingerprints, request_fingerprint
from bandit.choose_batch import BatchCustomer
from bandit.contact import ContactPolicy
from bandit.eligibility import ChooseInput
from bandit.errors import OfferBanditError
from bandit.learner import VWPolicy, example_lines, vw_arguments
from bandit.service import DecisionService, ManualClock, ServiceConfig
from bandit.sim import World, WorldConfig
from bandit.types import Customer, Decision, Trigger, freeze_features
from bandit.uplift import UpliftPolicy, uplift_arguments
from bandit.vwformat import reward_to_cost

KEY = "00000000000000b7"
NO_SMS = "[[cap]]\nname = 'no sms'\nchannel = 'sms'\nmax = 0\ndays = 1\n"


def _world() -> World:
    return World(seed=11, config=WorldConfig(n_customers=300))


def _trained_uplift(world: World, form: str = "product") -> tuple[list[str], bytes]:
    p = UpliftPolicy.from_args(uplift_arguments(f"--form {form} --samples 16", seed=2))
    treatments = world.treatments()
    rng = np.random.default_rng(4)
    for ev in world.events(3_000):
        t = treatments[int(rng.integers(len(treatments)))]
        o = world.apply(ev, t)
        p.learn(ev.context, t, o.revenue, o.purchased)
    return p.args, p.serialize()


def _trained_vw(world: World) -> tuple[list[str], bytes]:
    args = vw_arguments("--epsilon 0.2", ["co", "ch"], seed=3)
    p = VWPolicy(args)
    treatments = world.treatments()
    rng = np.random.default_rng(5)
    for ev in world.events(400):
        k = int(rng.integers(len(treatments)))
        o = world.apply(ev, treatments[k])
        shared, actions = example_lines(ev.context, treatments)
        p.learn(shared, actions, k, reward_to_cost(o.revenue, 100.0), 1.0 / len(treatments))
    return args, p.serialize()


def _service(folder: Path, args: list[str], model: bytes, **more: object) -> DecisionService:
    cfg = ServiceConfig(
        data_dir=folder,
        seed=7,
        background=False,
        event_id_prefix=KEY,
        initial_model=model,
        initial_vw_args=tuple(args),
        policy="vw" if args[0] != "uplift" else "uplift",
        holdout_share=0.1,
        **more,  # type: ignore[arg-type]
    )
    svc = DecisionService(cfg, ManualClock())
    svc.start()
    return svc


def _customers(world: World, n: int) -> list[BatchCustomer]:
    out = []
    for i, c in enumerate(world.customers[:n]):
        features = dict(c.features)
        if i % 5 == 1:
            features["consent_sms"] = False
        if i % 9 == 4:
            features["consent_email"] = False
        out.append(BatchCustomer(Customer(c.id, freeze_features(features)), f"camp:{c.id}"))
    # an invalid customer in the middle: a number out of range, refused naming the field
    bad = Customer("bad-1", freeze_features({"ltv": 1e300}))
    out.insert(n // 2, BatchCustomer(bad, "camp:bad-1"))
    out.insert(n // 3, BatchCustomer(None, "camp:nobody"))
    return out


def _template(world: World, defer: bool = True) -> ChooseInput:
    return ChooseInput(
        customer=None,
        trigger=Trigger("campaign_xmas", freeze_features({"season": "xmas"})),
        offers=world.offers,
        channels=world.channels,
        defer_activation=defer,
        campaign_id="xmas",
        campaign_holdout_share=0.2,
    )


def _unary(
    svc: DecisionService, template: ChooseInput, customers: list[BatchCustomer]
) -> list[Decision | OfferBanditError]:
    out: list[Decision | OfferBanditError] = []
    for c in customers:
        try:
            out.append(svc.choose(replace(template, customer=c.customer, request_id=c.request_id)))
        except OfferBanditError as exc:
            out.append(exc)
    return out


def _same(a: Decision | OfferBanditError, b: Decision | OfferBanditError) -> None:
    if isinstance(a, OfferBanditError) or isinstance(b, OfferBanditError):
        assert type(a) is type(b)
        assert str(a) == str(b)
        return
    assert a.event_id == b.event_id
    assert a.seed == b.seed
    assert [t.ref for t in a.treatments] == [t.ref for t in b.treatments]
    assert a.pmf == b.pmf  # the same floats, bit for bit
    assert a.chosen == b.chosen
    assert (a.policy, a.model_version) == (b.policy, b.model_version)
    assert (a.holdout, a.removed, a.contact_policy) == (b.holdout, b.removed, b.contact_policy)
    assert a.context == b.context
    assert a.request_id == b.request_id


@pytest.mark.parametrize(
    ("policy", "defer", "contact"),
    [
        ("uplift", True, True),
        ("uplift-additive", True, False),
        ("vw", True, True),
        ("uplift", False, True),  # not deferred under a policy: customer by customer
        ("uplift", False, False),
    ],
)
def test_a_batch_decides_exactly_what_the_unary_pipeline_decides(
    tmp_path: Path, policy: str, defer: bool, contact: bool
) -> None:
    world = _world()
    if policy == "vw":
        args, model = _trained_vw(world)
    else:
        args, model = _trained_uplift(
            world, "additive" if policy.endswith("additive") else "product"
        )
    more: dict[str, object] = {}
    if contact:
        more["contact_policy"] = ContactPolicy.parse(NO_SMS)
    one = _service(tmp_path / "unary", args, model, **more)
    many = _service(tmp_path / "batch", args, model, **more)
    try:
        template = _template(world, defer)
        customers = _customers(world, 120)
        # a request decided before (the same request: a retry answers with its decision)
        retried = customers[10]
        pre = [
            svc.choose(replace(template, customer=retried.customer, request_id=retried.request_id))
            for svc in (one, many)
        ]
        _same(pre[0], pre[1])
        unary = _unary(one, template, customers)
        batch = many.choose_batch(template, customers)
        assert len(batch) == len(unary) == 122
        for a, b in zip(unary, batch, strict=True):
            _same(a, b)
        refused = [r for r in batch if isinstance(r, OfferBanditError)]
        assert [str(r) for r in refused] == [
            "customer: is required",
            "customer.features['ltv']: " + str(refused[1]).split(": ", 1)[1],
        ]
        assert "ltv" in str(refused[1])
        assert batch[10] == pre[1]  # the retry: its logged decision
        decided = [r for r in batch if isinstance(r, Decision)]
        assert any(d.holdout for d in decided)
        assert any(
            d.policy.startswith(policy[:2] + ("" if policy == "vw" else "lift")) for d in decided
        )
        if contact:
            assert any(d.removed for d in decided)
        assert one.log.count() == many.log.count() == 120  # nothing for the two refused
    finally:
        one.stop()
        many.stop()


def test_a_retried_request_id_answers_the_logged_decision_and_a_changed_one_conflicts(
    tmp_path: Path,
) -> None:
    world = _world()
    args, model = _trained_uplift(world)
    svc = _service(tmp_path, args, model)
    try:
        template = _template(world)
        customers = _customers(world, 20)
        first = svc.choose_batch(template, customers)
        again = svc.choose_batch(template, customers)
        for a, b in zip(first, again, strict=True):
            _same(a, b)
        assert svc.log.count() == 20
        changed = replace(template, campaign_holdout_share=0.5)
        third = svc.choose_batch(changed, customers[:3])
        assert all(isinstance(r, OfferBanditError) and "request_id" in str(r) for r in third)
        twice = svc.choose_batch(template, [BatchCustomer(Customer("n1"), "x:n1")] * 2)
        assert isinstance(twice[0], Decision)
        assert twice[0] == twice[1]
        assert svc.log.count() == 21
    finally:
        svc.stop()


def test_an_interrupted_batch_run_resumed_decides_nobody_twice(tmp_path: Path) -> None:
    """A run killed after some chunks and started again (a new process: new event-id key)
    answers the decided customers with their logged decisions and decides only the rest."""
    world = _world()
    args, model = _trained_uplift(world)
    template = _template(world)
    customers = [c for c in _customers(world, 200) if c.customer and c.customer.id != "bad-1"]
    cfg = dict(initial_model=model, initial_vw_args=tuple(args), background=False, seed=7)
    svc = DecisionService(ServiceConfig(data_dir=tmp_path, **cfg), ManualClock())  # type: ignore[arg-type]
    svc.start()
    first = []
    for lo in range(0, 120, 64):  # two chunks of 64 and the job dies
        first += svc.choose_batch(template, customers[lo : min(lo + 64, 120)])
    svc.stop()
    svc = DecisionService(ServiceConfig(data_dir=tmp_path, **cfg), ManualClock())  # type: ignore[arg-type]
    svc.start()
    try:
        again = []
        for lo in range(0, len(customers), 64):
            again += svc.choose_batch(template, customers[lo : lo + 64])
        assert svc.log.count() == len(customers) == 200
        for a, b in zip(first, again[:120], strict=True):
            assert isinstance(a, Decision)
            assert isinstance(b, Decision)
            assert (a.event_id, a.chosen, a.pmf) == (b.event_id, b.chosen, b.pmf)
        assert len({d.event_id for d in again if isinstance(d, Decision)}) == 200
    finally:
        svc.stop()


@pytest.mark.parametrize("form", ["product", "additive"])
def test_uplift_scores_many_is_scores_bit_for_bit(form: str) -> None:
    world = _world()
    args, model = _trained_uplift(world, form)
    p = UpliftPolicy.from_args(args, model)
    q = UpliftPolicy.from_args(args, model)
    treatments = world.treatments()
    contexts = [ev.context for ev in world.events(600)]
    one = [p.scores(c, treatments) for c in contexts]  # fills its folded rows one by one
    many = q.scores_many(contexts, treatments)  # all at once
    assert one == many
    assert p.scores_many([], treatments) == []
    untrained = UpliftPolicy.from_args(uplift_arguments("--explore 0.2", seed=0))
    assert untrained.scores_many(contexts[:3], treatments) == [
        untrained.scores(c, treatments) for c in contexts[:3]
    ]


def test_fingerprints_of_a_template_are_the_unary_ones() -> None:
    world = _world()
    template = _template(world)
    fp = Fingerprints(template)
    for c in world.customers[:50]:
        assert fp.of(c) == request_fingerprint(replace(template, customer=c))
    plain = ChooseInput(None, Trigger("t"), world.offers[:1], world.channels[:1])
    assert Fingerprints(plain).of(Customer("é", {"x": math.pi})) == request_fingerprint(
        replace(plain, customer=Customer("é", {"x": math.pi}))
    )
