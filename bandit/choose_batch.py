"""The Choose path for many customers at once: a campaign's batch, one pass.

A batch is a *template* — one Choose request without its customer and request id (trigger,
offers, channels, treatments or exclusions, ``defer_activation``, the campaign and its
holdout share) — and a list of customers, each with its request id. It decides every customer
exactly as the unary pipeline (:mod:`bandit.choose`) would decide the same requests one after
another, with the same event ids, seeds, candidates, pmfs and chosen treatments (a test
checks it bit for bit), but what the unary path does per request is done once per batch:

* the template is validated once, its catalogue interned and crossed once, its trigger (with
  the campaign feature) made once, and the request fingerprint's template part serialised
  once (:class:`bandit.choose.Fingerprints`);
* each customer is validated with the unary checks (:func:`bandit.eligibility.check_customer`:
  the same :class:`~bandit.errors.InvalidRequest` naming the field); a refused customer is
  an error result for that customer only, and nothing is written for it;
* the request ids are looked up in the log in one query (``find_requests``): a retried one
  answers with its logged decision;
* consent, the holdout and the contact policy run per customer (the same step objects as
  the unary path; the contact gate's lock is taken once for the batch);
* the policy scores every customer with the same candidates in one call
  (``Learner.scores_many``, one NumPy pass for the uplift policy), the decider's lock taken
  once for the batch;
* the control floor and the sampling run per customer (the unary steps);
* the decisions go to the log as one write (``submit_decisions``: one transaction, multi-row
  INSERTs), and each is answered only once that write is durable.

Where deciding one customer can change how the next is judged before its decision is queued
— a contact policy with budgets, decisions that are not deferred under a contact policy (a
contact counts at once), or a log other processes write under a contact policy — the batch
runs the unary pipeline customer by customer instead (same results, without the savings).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from bandit.catalogue import Catalogues
from bandit.choose import (
    ChoiceLog,
    Clock,
    ConsentStep,
    ControlFloorStep,
    Decider,
    Draft,
    Fingerprints,
    HoldoutStep,
    Pipeline,
    SampleStep,
    call_on_done,
    decision_of,
)
from bandit.commit import Commit, OnDone
from bandit.contact.gate import ContactGate, customer_zone, judge
from bandit.eligibility import (
    ChooseInput,
    Limits,
    build_candidates,
    check_customer,
    check_request_id,
)
from bandit.errors import InvalidRequest, OfferBanditError
from bandit.records import StoredDecision
from bandit.types import Context, Customer, Decision, Treatment

TEMPLATE_CUSTOMER = Customer("template")
"""The placeholder customer a template is validated with (its own customer is ignored)."""


@dataclass(frozen=True, slots=True)
class BatchCustomer:
    """One customer of a batch and the id of its request (``""``: none)."""

    customer: Customer | None
    request_id: str = ""
    refused: OfferBanditError | None = None
    """Why the customer could not even be read (an adapter's conversion error): its result,
    nothing decided for it."""


Decided = tuple[Decision, Commit[Decision] | None] | OfferBanditError
"""One customer's result: its decision and the handle of its queued write (``None`` for a
retried request answered with its logged decision), or what was wrong with it."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """A batch's results, in customer order, and how many log writes it queued (each calls
    the ``on_done`` given once it is durable)."""

    results: list[Decided]
    writes: int


class BatchChooser:
    """Decides batches (see the module's docstring) with the service's parts: the same
    catalogue table, log, decider, holdout step, contact gate and control floor as its unary
    pipeline, which it falls back on when a batch cannot be judged in one pass."""

    def __init__(
        self,
        *,
        limits: Limits,
        catalogues: Catalogues,
        log: ChoiceLog,
        decider: Decider,
        holdout: HoldoutStep,
        control_floor: ControlFloorStep,
        clock: Clock,
        gate: ContactGate | None,
        pipeline: Pipeline,
    ) -> None:
        self.limits = limits
        self.catalogues = catalogues
        self.log = log
        self.decider = decider
        self.holdout = holdout
        self.control_floor = control_floor
        self.clock = clock
        self.gate = gate
        self.pipeline = pipeline
        self._sample = SampleStep()
        self._consent = ConsentStep()

    def submit(
        self,
        template: ChooseInput,
        customers: Sequence[BatchCustomer],
        on_done: OnDone | None = None,
    ) -> BatchResult:
        """Decide ``customers`` under ``template`` and queue the decisions' write; raises
        what is wrong with the template (nothing decided then)."""
        cat = template.catalogue
        if cat is None:
            cat = self.catalogues.of(template.offers, template.channels)
            template = replace(template, offers=(), channels=(), catalogue=cat)
        template = replace(template, customer=None, request_id="")
        probe = build_candidates(
            replace(template, customer=TEMPLATE_CUSTOMER), self.limits, consent=False
        )
        gate = self.gate
        if gate is not None and not gate.judges_batches(template.defer_activation):
            return self._one_by_one(template, customers, on_done)
        base = probe.treatments
        trigger = probe.context.trigger
        fingerprints = Fingerprints(template)
        results: list[Decided | None] = [None] * len(customers)
        drafts: list[tuple[int, Draft]] = []
        retries: list[tuple[str, str]] = []
        for i, item in enumerate(customers):
            customer = item.customer
            if item.refused is not None:
                results[i] = item.refused
                continue
            try:
                check_customer(customer, self.limits)
                check_request_id(item.request_id, self.limits)
            except OfferBanditError as exc:
                results[i] = exc.with_traceback(None)
                continue
            assert customer is not None
            draft = Draft(template, on_done, False)
            draft.catalogue = cat
            draft.context = Context(customer, trigger)
            draft.candidates = base
            self._consent(draft)
            if item.request_id:
                draft.fingerprint = fingerprints.of(customer)
                retries.append((item.request_id, draft.fingerprint))
            drafts.append((i, draft))
        found = self.log.find_requests(retries) if retries else {}
        live: list[tuple[int, Draft]] = []
        for i, draft in drafts:
            logged = found.get(customers[i].request_id) if draft.fingerprint else None
            if isinstance(logged, OfferBanditError):
                results[i] = logged
            elif isinstance(logged, StoredDecision):
                results[i] = (logged.decision, None)
            else:
                live.append((i, draft))
        if gate is not None:
            gate.lock.acquire()
        try:
            decided = self._decide(live, results, gate)
            writes = 0
            if decided:
                writes = 1
                self._log(decided, customers, results, on_done, gate)
        finally:
            if gate is not None:
                gate.lock.release()
        out: list[Decided] = []
        for r in results:
            assert r is not None
            out.append(r)
        return BatchResult(out, writes)

    def _decide(
        self,
        live: list[tuple[int, Draft]],
        results: list[Decided | None],
        gate: ContactGate | None,
    ) -> list[tuple[int, Draft]]:
        """Holdout and contact policy per customer, scores for all, then the control floor and
        the sample per customer; the drafts that reached a pmf."""
        scored: list[tuple[int, Draft]] = []
        groups: dict[int, tuple[tuple[Treatment, ...], list[Draft]]] = {}
        for i, draft in live:
            self.holdout(draft)
            if gate is not None:
                if draft.holdout:
                    draft.contact_policy = gate.policy.digest
                else:
                    try:
                        zone = customer_zone(draft)
                    except InvalidRequest as exc:
                        results[i] = exc.with_traceback(None)
                        continue
                    judge(gate, draft, zone)
            scored.append((i, draft))
            if draft.pmf is None:
                key = id(draft.candidates)
                group = groups.get(key)
                if group is None:
                    groups[key] = (draft.candidates, [draft])
                else:
                    group[1].append(draft)
        if groups:
            batches = [(cands, [_context(d) for d in ds]) for cands, ds in groups.values()]
            scores, version = self.decider.scores_groups(batches)
            policy = self.decider.policy_id
            for (_, ds), group_scores in zip(groups.values(), scores, strict=True):
                for d, s in zip(ds, group_scores, strict=True):
                    d.scores, d.version, d.policy = s, version, policy
        for _, draft in scored:
            self.control_floor(draft)
            self._sample(draft)
        return scored

    def _log(
        self,
        decided: list[tuple[int, Draft]],
        customers: Sequence[BatchCustomer],
        results: list[Decided | None],
        on_done: OnDone | None,
        gate: ContactGate | None,
    ) -> None:
        """One write of every decision; each customer's result holds its own handle."""
        now = self.clock.now
        decisions = [decision_of(draft, now(), customers[i].request_id) for i, draft in decided]
        notify = None if on_done is None else call_on_done
        item = self.log.submit_decisions(
            decisions, [d.fingerprint for _, d in decided], notify, on_done, True
        )
        for k, ((i, _), decision) in enumerate(zip(decided, decisions, strict=True)):
            commit: Commit[Decision] = Commit(
                self.log, item, functools.partial(_batch_answer, decision, k)
            )
            results[i] = (decision, commit)
            if gate is not None:
                gate.made(decision, commit)

    def _one_by_one(
        self,
        template: ChooseInput,
        customers: Sequence[BatchCustomer],
        on_done: OnDone | None,
    ) -> BatchResult:
        """The unary pipeline per customer (see the module's docstring)."""
        results: list[Decided] = []
        writes = 0
        for item in customers:
            if item.refused is not None:
                results.append(item.refused)
                continue
            req = replace(template, customer=item.customer, request_id=item.request_id)
            try:
                decision, commit = self.pipeline.run(req, on_done)
            except OfferBanditError as exc:
                results.append(exc.with_traceback(None))
                continue
            writes += commit is not None
            results.append((decision, commit))
        return BatchResult(results, writes)


def _context(draft: Draft) -> Context:
    assert draft.context is not None
    return draft.context


def _batch_answer(decision: Decision, k: int, values: Sequence[Any]) -> Decision:
    """Decision ``k``'s answer from its batch write's values (see ``submit_decisions``)."""
    value = values[k]
    if value is None:
        return decision
    if isinstance(value, OfferBanditError):
        raise value
    answer: Decision = value
    return answer


__all__ = ["BatchChooser", "BatchCustomer", "BatchResult", "Decided"]
