"""The Choose path as a list of small steps, each with one job.

A :class:`Draft` goes through the steps in order: candidates → eligibility → retry →
holdout → contact policy (when one is set, :mod:`bandit.contact.gate`) → score → control
floor → sample → log. A step reads what the steps before it set
and sets its own part; one that answers early (a retried request already logged) sets
:attr:`Draft.answered` and the pipeline stops there. A new rule — a contact policy, say — is
one more element of the list (:func:`standard_steps`), not an edit of a long method.

"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from bandit.catalogue import Catalogue, Catalogues
from bandit.commit import Commit, OnDone
from bandit.eligibility import ChooseInput, Limits, build_candidates, without_channels
from bandit.errors import OfferBanditError
from bandit.learner import Learner
from bandit.ratelog import RateLimitedLog
from bandit.records import StoredDecision
from bandit.sampling import derive_seed, floored_pmf, sample_index, uniform_from_seed
from bandit.types import Context, Customer, Decision, Features, Treatment, TreatmentRef

log = logging.getLogger(__name__)
_rate_log = RateLimitedLog(log, interval=10.0)

FALLBACK_POLICY = "fallback:uniform"
"""The policy id of a decision whose model scores were unusable (non-finite, or no mass): its
pmf is uniform over the candidates with the control floor mixed in, logged as such."""
HOLDOUT_POLICY = "holdout"


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""


class ChoiceLog(Protocol):
    """What the Choose path needs of the decision log."""

    def find_request(self, request_id: str, request_hash: str) -> StoredDecision | None: ...

    def find_requests(
        self, requests: Sequence[tuple[str, str]]
    ) -> dict[str, StoredDecision | OfferBanditError]: ...

    def submit_decisions(
        self,
        decisions: Sequence[Decision],
        request_hashes: Sequence[str],
        notify: Any = None,
        token: Any = None,
        wake: bool = True,
    ) -> Any: ...

    def submit_decision(
        self,
        decision: Decision,
        request_hash: str = "",
        notify: Any = None,
        token: Any = None,
        wake: bool = True,
    ) -> Any: ...

    def wait(self, item: Any) -> Any: ...

    def commit_queued(self) -> bool: ...

    def wake_writer(self) -> None: ...


class Draft:
    """One Choose call on its way through the steps."""

    __slots__ = (
        "answered",
        "candidates",
        "catalogue",
        "chosen",
        "commit",
        "contact_policy",
        "context",
        "event_id",
        "fingerprint",
        "finish",
        "hold",
        "holdout",
        "on_done",
        "pmf",
        "policy",
        "removed",
        "request",
        "scores",
        "seed",
        "version",
    )

    def __init__(self, request: ChooseInput, on_done: OnDone | None, hold: bool) -> None:
        self.request = request
        self.on_done = on_done
        self.hold = hold
        self.context: Context | None = None
        self.catalogue: Catalogue | None = None
        """The request's offers and channels, interned (:mod:`bandit.catalogue`)."""
        self.candidates: tuple[Treatment, ...] = ()
        """Control first; steps may only remove treatments (never control) or keep them."""
        self.fingerprint = ""
        self.event_id = ""
        self.seed = 0
        self.holdout = False
        self.scores: Sequence[float] | None = None
        self.version = ""
        self.pmf: tuple[float, ...] | None = None
        self.policy = ""
        self.chosen = -1
        self.answered: Decision | None = None
        """The decision to answer with at once (set by a step that ends the pipeline)."""
        self.commit: Commit[Decision] | None = None
        self.removed: tuple[tuple[TreatmentRef, str], ...] = ()
        """Candidates the contact policy removed, with the rule that removed each."""
        self.contact_policy = ""
        """The digest of the contact policy that judged the candidates; empty: none."""
        self.finish: Callable[[Draft], None] | None = None
        """Called once the pipeline ends, answered or not (a step that holds something
        until the decision is queued sets it)."""


class Step(Protocol):
    """One job of the Choose path."""

    def __call__(self, draft: Draft) -> None: ...


class Pipeline:
    """Runs a :class:`Draft` through its steps, stopping once one answers."""

    __slots__ = ("steps",)

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps: tuple[Step, ...] = tuple(steps)

    def run(
        self, request: ChooseInput, on_done: OnDone | None = None, hold: bool = False
    ) -> tuple[Decision, Commit[Decision] | None]:
        """The decision and the handle of its queued log write, or (for a retried request
        already logged) the logged decision and ``None``."""
        draft = Draft(request, on_done, hold)
        try:
            for step in self.steps:
                step(draft)
                if draft.answered is not None:
                    return draft.answered, draft.commit
            raise AssertionError("the Choose pipeline ended without answering")
        finally:
            if draft.finish is not None:
                draft.finish(draft)


# ---- parts the steps share ----------------------------------------------------------------


class EventIds:
    """Event ids that cannot be walked: 32 hex digits, each a keyed BLAKE2b hash (128 bits)
    of a counter under a 64-bit key — random per process start unless given (a fixed key
    makes a run reproducible). Knowing one id tells nothing of the next or the previous one
    (before, ids were the key followed by the counter: one id gave its neighbours away);
    unique across restarts as random 128-bit ids are (a collision is refused by the log's
    unique key, never overwritten). Ids of older logs are opaque strings like these and keep
    working. About a microsecond each.

    >>> ids = EventIds("00000000000000ab"); a, b = ids.next(), ids.next()
    >>> len(a), a != b, a == EventIds("00000000000000ab").next()
    (32, True, True)
    >>> int(a, 16) + 1 == int(b, 16)
    False
    """

    __slots__ = ("_counter", "_key", "prefix")

    def __init__(self, prefix: str) -> None:
        if not (len(prefix) == 16 and all(ch in "0123456789abcdef" for ch in prefix)):
            raise ValueError(f"event_id_prefix must be 16 lowercase hex digits, not {prefix!r}")
        self.prefix = prefix
        """The key the ids are made with (the setting's historical name: it was a prefix)."""
        self._key = bytes.fromhex(prefix)
        self._counter = itertools.count(1)

    def next(self) -> str:
        n = next(self._counter).to_bytes(8, "big")
        return hashlib.blake2b(n, digest_size=16, key=self._key).hexdigest()


class Decider:
    """The live policy the Choose path scores with: one owner, behind a lock, swapped whole
    when a new model is published."""

    def __init__(self, policy: Learner, version: str, policy_id: str) -> None:
        self._lock = threading.Lock()
        self._policy = policy
        self._version = version
        self.policy_id = policy_id
        self.published_at = time.time()
        """When the live model was published (seconds since the epoch; start-up counts)."""

    @property
    def version(self) -> str:
        return self._version

    def scores(
        self, context: Context, treatments: tuple[Treatment, ...]
    ) -> tuple[Sequence[float], str]:
        """The policy's scores and the model version that gave them."""
        with self._lock:
            return self._policy.scores(context, treatments), self._version

    def scores_groups(
        self, groups: Sequence[tuple[tuple[Treatment, ...], Sequence[Context]]]
    ) -> tuple[list[list[Sequence[float]]], str]:
        """The policy's ``scores_many`` of each (candidates, contexts) group, under one lock."""
        with self._lock:
            policy = self._policy
            return [policy.scores_many(cs, ts) for ts, cs in groups], self._version

    def publish(self, policy: Learner, version: str) -> None:
        with self._lock:
            self._policy = policy
            self._version = version
            self.published_at = time.time()


def _canonical(features: Features) -> list[Any]:
    return sorted([k, list(v) if isinstance(v, tuple) else v] for k, v in features.items())


def request_fingerprint(req: ChooseInput) -> str:
    """A hash of what a Choose request asks, independent of map ordering on the wire."""
    raw = _ENCODER.encode(_fingerprint_body(req))
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""``json.dumps(…, separators=(",", ":"), ensure_ascii=False)``, its encoder made once."""


def _fingerprint_body(req: ChooseInput) -> dict[str, object]:
    body: dict[str, object] = {
        "customer": [req.customer.id, _canonical(req.customer.features)] if req.customer else None,
        "trigger": [req.trigger.type, _canonical(req.trigger.features)] if req.trigger else None,
        "offers": [
            [o.id, _canonical(o.features), o.fixed_cost, o.discount_rate] for o in req.offers
        ],
        "channels": [[c.id, _canonical(c.features), c.contact_cost] for c in req.channels],
        "treatments": [[t.offer_id, t.channel_id] for t in req.treatments],
        "excluded": sorted([t.offer_id, t.channel_id] for t in req.excluded),
        "defer": req.defer_activation,
    }
    if req.campaign_id or req.campaign_holdout_share:  # (older requests hash as before)
        body["campaign"] = [req.campaign_id, req.campaign_holdout_share]
    return body


class Fingerprints:
    """:func:`request_fingerprint` of requests that differ only in their customer (a batch's
    template): the template's part serialised once, the customer's per call — the same
    bytes, so the same hash.

    >>> from bandit.types import Trigger
    >>> req = ChooseInput(Customer("c1", {"a": 1.0}), Trigger("t"), campaign_id="x")
    >>> Fingerprints(req).of(req.customer) == request_fingerprint(req)
    True
    """

    __slots__ = ("_tail",)

    def __init__(self, template: ChooseInput) -> None:
        body = _fingerprint_body(template)
        del body["customer"]
        rest = _ENCODER.encode(body)
        self._tail = "," + rest[1:]

    def of(self, customer: Customer) -> str:
        head = _ENCODER.encode([customer.id, _canonical(customer.features)])
        raw = '{"customer":' + head + self._tail
        return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def in_holdout(customer_id: str, share: float, key: str) -> bool:
    """Whether a customer is in the persistent holdout: a keyed hash of the id below ``share``.

    The same customer is always in or always out (for a given key), across restarts and
    replicas.

    >>> in_holdout("c1", 0.0, "k"), in_holdout("c1", 1.0, "k")
    (False, True)
    >>> sum(in_holdout(f"c{i}", 0.1, "k") for i in range(10_000))
    1003
    """
    if share <= 0.0:
        return False
    h = hashlib.blake2b(customer_id.encode(), key=key.encode()[:64], digest_size=8)
    return int.from_bytes(h.digest(), "big") / float(1 << 64) < share


# ---- the steps --------------------------------------------------------------------------


class CandidatesStep:
    """Validate the request and list what it asks for: every offer × channel (or its explicit
    treatments), minus its exclusions, control first. Raises what is wrong with it.

    The request's catalogue comes from ``catalogues`` (the request's own when the adapter
    interned it, else its lists interned by value): checked and crossed once."""

    __slots__ = ("catalogues", "limits")

    def __init__(self, limits: Limits, catalogues: Catalogues) -> None:
        self.limits = limits
        self.catalogues = catalogues

    def __call__(self, draft: Draft) -> None:
        req = draft.request
        cat = req.catalogue or self.catalogues.of(req.offers, req.channels)
        draft.catalogue = cat
        cands = build_candidates(req, self.limits, consent=False, catalogue=cat)
        draft.context = cands.context
        draft.candidates = cands.treatments


class ConsentStep:
    """Eligibility: remove the channels the customer has not consented to
    (:func:`bandit.eligibility.consented`)."""

    __slots__ = ()

    def __call__(self, draft: Draft) -> None:
        assert draft.context is not None
        assert draft.catalogue is not None
        customer = draft.context.customer
        features = customer.features
        if not features:
            return
        declined = [
            c.id for c in draft.catalogue.channels if features.get(f"consent_{c.id}", True) is False
        ]
        if declined:
            draft.candidates = without_channels(
                draft.request, draft.candidates, declined, draft.catalogue
            )


class RetryStep:
    """A request id already logged answers with its logged decision (idempotent retries)."""

    __slots__ = ("log",)

    def __init__(self, log: ChoiceLog) -> None:
        self.log = log

    def __call__(self, draft: Draft) -> None:
        req = draft.request
        if req.request_id:
            draft.fingerprint = request_fingerprint(req)
            found = self.log.find_request(req.request_id, draft.fingerprint)
            if found is not None:
                draft.answered = found.decision


class HoldoutStep:
    """Give the decision its event id and seed; customers in the persistent holdout get
    control with certainty, logged as such."""

    __slots__ = ("event_ids", "key", "seed", "share", "version")

    def __init__(
        self,
        event_ids: EventIds,
        server_seed: int,
        share: float,
        key: str,
        version: Callable[[], str],
    ) -> None:
        self.event_ids = event_ids
        self.seed = server_seed
        self.share = share
        self.key = key
        self.version = version

    def __call__(self, draft: Draft) -> None:
        draft.event_id = self.event_ids.next()
        draft.seed = derive_seed(self.seed, draft.event_id)
        assert draft.context is not None
        customer_id = draft.context.customer.id
        req = draft.request
        draft.holdout = in_holdout(customer_id, self.share, self.key) or (
            req.campaign_holdout_share > 0.0
            and in_holdout(customer_id, req.campaign_holdout_share, "campaign:" + req.campaign_id)
        )
        if draft.holdout:
            draft.pmf = (1.0,) + (0.0,) * (len(draft.candidates) - 1)
            draft.version = self.version()
            draft.policy = HOLDOUT_POLICY


class ScoreStep:
    """The live policy's scores for the candidates (unless a step before decided the pmf)."""

    __slots__ = ("decider",)

    def __init__(self, decider: Decider) -> None:
        self.decider = decider

    def __call__(self, draft: Draft) -> None:
        if draft.pmf is None:
            assert draft.context is not None
            draft.scores, draft.version = self.decider.scores(draft.context, draft.candidates)
            draft.policy = self.decider.policy_id


class ControlFloorStep:
    """The pmf: the scores normalised with control's share floored at ``control_share``.

    A score that is NaN, infinite or negative, or scores without mass, never reach the pmf:
    the decision is then uniform over its candidates with the control floor (its
    propensities stay exact), its policy :data:`FALLBACK_POLICY`, counted in
    :attr:`fallbacks` and logged (rate-limited)."""

    __slots__ = ("_lock", "control_share", "fallbacks")

    def __init__(self, control_share: float) -> None:
        self.control_share = control_share
        self.fallbacks = 0
        self._lock = threading.Lock()

    def __call__(self, draft: Draft) -> None:
        if draft.pmf is not None:
            return
        scores = draft.scores
        assert scores is not None
        n = len(draft.candidates)
        total = 0.0
        usable = len(scores) == n
        for x in scores:
            if not (0.0 <= x <= 1e300):  # NaN, negative, infinite
                usable = False
                break
            total += x
        if usable and total > 0.0:
            draft.pmf = floored_pmf(scores, 0, self.control_share)
            return
        with self._lock:
            self.fallbacks += 1
        _rate_log.warning(
            "scores",
            "model %s gave unusable scores (non-finite or no mass) for %d candidates; "
            "deciding with the uniform fallback",
            draft.version,
            n,
        )
        draft.pmf = floored_pmf([1.0] * n, 0, self.control_share)
        draft.policy = FALLBACK_POLICY


class SampleStep:
    """Sample the treatment from the pmf with the decision's own seed."""

    __slots__ = ()

    def __call__(self, draft: Draft) -> None:
        assert draft.pmf is not None
        draft.chosen = sample_index(draft.pmf, uniform_from_seed(draft.seed))


class LogStep:
    """Build the decision and queue its log write; the handle answers once it is durable."""

    __slots__ = ("clock", "log")

    def __init__(self, log: ChoiceLog, clock: Clock) -> None:
        self.log = log
        self.clock = clock

    def __call__(self, draft: Draft) -> None:
        assert draft.context is not None
        assert draft.pmf is not None
        decision = decision_of(draft, self.clock.now(), draft.request.request_id)
        on_done = draft.on_done
        notify = None if on_done is None else call_on_done
        item = self.log.submit_decision(
            decision, draft.fingerprint, notify, on_done, not draft.hold
        )
        draft.commit = Commit(self.log, item, functools.partial(_choice_answer, decision))
        draft.answered = decision


def decision_of(draft: Draft, decided_at: float, request_id: str) -> Decision:
    """The decision a draft that reached its sample stands for."""
    assert draft.context is not None
    assert draft.pmf is not None
    return Decision(
        event_id=draft.event_id,
        context=draft.context,
        treatments=draft.candidates,
        pmf=draft.pmf,
        chosen=draft.chosen,
        model_version=draft.version,
        policy=draft.policy,
        decided_at=decided_at,
        request_id=request_id,
        deferred=draft.request.defer_activation,
        seed=draft.seed,
        holdout=draft.holdout,
        removed=draft.removed,
        contact_policy=draft.contact_policy,
    )


def call_on_done(items: list[Any]) -> None:
    """The log's ``notify`` for writes submitted with an ``on_done`` (its token): call each."""
    for it in items:
        try:
            it.token()
        except Exception:
            log.exception("a commit notification failed")


def _choice_answer(decision: Decision, existing: StoredDecision | None) -> Decision:
    return decision if existing is None else existing.decision


def standard_steps(
    *,
    limits: Limits,
    catalogues: Catalogues,
    log: ChoiceLog,
    decider: Decider,
    holdout: HoldoutStep,
    control_floor: ControlFloorStep,
    clock: Clock,
    contact: Step | None = None,
) -> list[Step]:
    """The service's Choose steps, in order; ``contact`` (a contact policy's step,
    :class:`bandit.contact.gate.ContactStep`) runs after the holdout, before scoring."""
    steps: list[Step] = [CandidatesStep(limits, catalogues), ConsentStep(), RetryStep(log), holdout]
    if contact is not None:
        steps.append(contact)
    steps += [ScoreStep(decider), control_floor, SampleStep(), LogStep(log, clock)]
    return steps


__all__ = [
    "FALLBACK_POLICY",
    "HOLDOUT_POLICY",
    "CandidatesStep",
    "ChoiceLog",
    "Clock",
    "ConsentStep",
    "ControlFloorStep",
    "Decider",
    "Draft",
    "EventIds",
    "Fingerprints",
    "HoldoutStep",
    "LogStep",
    "Pipeline",
    "RetryStep",
    "SampleStep",
    "ScoreStep",
    "Step",
    "decision_of",
    "in_holdout",
    "request_fingerprint",
    "standard_steps",
]
