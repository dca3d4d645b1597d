"""The decision service object: what every transport calls (gRPC today, in-process in the
simulator). It owns the decision log, the decider, the learner and their background tasks.

Roles are separate objects with narrow interfaces (docs/architecture.md):

* the **decider** (:class:`~bandit.choose.Decider`) holds the live policy the Choose
  pipeline (:mod:`bandit.choose`) scores with, behind a lock;
* the **log** (the port :class:`~bandit.log.DecisionLog`; SQLite by default) makes decisions
  and outcomes durable and joins outcomes to decisions;
* the **closer** and the **learner** (:mod:`bandit.learn`) close attribution windows on
  schedule, learn closed decisions in log order with their own policy object, checkpoint
  model + position atomically, and publish the new model to the decider.

The service validates outcomes and activations and answers through one commit handle
(:class:`bandit.commit.Commit`); everything else is its parts'.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bandit.catalogue import Catalogues
from bandit.checkpoint import Checkpoint, CheckpointStore
from bandit.choose import (
    FALLBACK_POLICY,
    HOLDOUT_POLICY,
    Clock,
    ControlFloorStep,
    Decider,
    EventIds,
    HoldoutStep,
    Pipeline,
    call_on_done,
    in_holdout,
    request_fingerprint,
    standard_steps,
)
from bandit.choose_batch import BatchChooser, BatchCustomer, BatchResult
from bandit.commit import Commit, OnDone
from bandit.contact import ContactPolicy
from bandit.contact.gate import ContactGate, ContactStep
from bandit.eligibility import ChooseInput, Limits
from bandit.errors import InvalidRequest, InvalidState, NotReady, OfferBanditError, TooLarge
from bandit.learn import Closer, Learning, learnable, starting_point
from bandit.learn.watch import ModelWatcher
from bandit.learner import (
    DEFAULT_EXPLORATION,
    DEFAULT_INTERACTIONS,
    UPLIFT,
    describe_policy,
    make_policy,
    vw_arguments,
)
from bandit.log import DecisionLog
from bandit.log.backends import open_decision_log
from bandit.log.sqlite import SqliteDecisionLog
from bandit.log.sqlite.retention import Retention, bounds_for
from bandit.numbers import check_number, check_time
from bandit.records import (
    Activation,
    ActivationInput,
    LogStats,
    OutcomeInput,
    OutcomeResult,
    StoredDecision,
    Windows,
)
from bandit.rewards import RewardRule
from bandit.sampling import derive_seed, sample_index, uniform_from_seed
from bandit.types import Decision

log = logging.getLogger(__name__)


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock tests and the in-process simulator move by hand.

    >>> c = ManualClock(100.0); c.advance(5); c.now()
    105.0
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds

    def set(self, t: float) -> None:
        with self._lock:
            self._t = t


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Everything the service needs, as plain values (the server builds it from settings)."""

    data_dir: Path
    seed: int = 0
    policy: str = "uplift"
    """The live policy's kind: ``uplift`` (a conservative uplift model, see
    :mod:`bandit.uplift`) or ``vw`` (a VW ``--cb_explore_adf`` policy)."""
    uplift_options: str = ""
    """Options of the uplift policy (``--kappa 1 --explore 0.1`` …; see
    :func:`bandit.uplift.uplift_arguments`)."""
    exploration: str = DEFAULT_EXPLORATION
    interactions: tuple[str, ...] = DEFAULT_INTERACTIONS
    vw_extra: str = ""
    control_share: float = 0.05
    limits: Limits = field(default_factory=Limits)
    windows: Windows = field(default_factory=Windows)
    reward_rule: RewardRule = field(default_factory=RewardRule)
    checkpoint_every_learns: int = 1000
    checkpoint_every_seconds: float = 30.0
    checkpoints_kept: int = 5
    """How many of the newest checkpoints are kept (the ones a rollback can return to)."""
    close_interval_seconds: float = 1.0
    max_future_skew_seconds: float = 300.0
    max_stream_outcomes: int = 100_000
    max_batch_customers: int = 4096
    """Most customers one batch (:meth:`DecisionService.submit_batch`) may carry."""
    max_revenue_per_outcome: float = 1e9
    """An outcome reporting more revenue than this is rejected (INVALID_ARGUMENT)."""
    learn_batch: int = 256
    background: bool = True
    """Run the closer and learner threads. Off for step-by-step driving (tests, simulator)."""
    initial_model: bytes | None = None
    """Start from these VW weights when the data folder has no checkpoint yet."""
    initial_vw_args: tuple[str, ...] = ()
    """The VW arguments ``initial_model`` was trained with (they win over the configured
    ones, as a checkpoint's do)."""
    holdout_share: float = 0.0
    """Share of customers in the persistent holdout (always control, logged as such)."""
    holdout_key: str = "offerbandit-holdout"
    """Key of the hash that assigns customers to the holdout; change it to redraw."""
    synchronous: str = "FULL"
    """SQLite durability: FULL fsyncs every commit (survives power loss); NORMAL survives
    process crashes (kill -9) but may lose the last commits on power loss; OFF is for
    simulations only."""
    contact_policy: ContactPolicy | None = None
    """The contact policy applied before scoring (:mod:`bandit.contact`); None: none.
    :meth:`DecisionService.reload_contact_policy` replaces it while serving."""
    contact_cache_customers: int = 100_000
    """Customers whose recent contacts the contact policy keeps in memory between Choose
    calls (:mod:`bandit.contact.gate`); 0: read them from the log every time, as a log that
    other processes also write must."""
    retention_days: float | None = None
    """Delete closed decisions and their outcomes older than this many days, in background
    batches (:mod:`bandit.log.sqlite.retention`); None: keep everything."""
    retention_export_dir: Path | None = None
    """Export what retention deletes to Parquet files here first; None: no export."""
    retention_batch: int = 256
    retention_every_seconds: float = 60.0
    retention_duty: float = 0.1
    log: str = ""
    """Where the decision log is: empty (the default), the SQLite log in ``data_dir``; a
    ``postgresql://…`` URL, a PostgreSQL log several processes share
    (:mod:`bandit.log.backends`)."""
    event_id_prefix: str = ""
    """Empty (the default): event ids start with a random prefix drawn at each start, so they
    stay unique across restarts. Sixteen hex digits: that fixed prefix instead, which makes a
    run on a fresh log reproducible (event ids seed the sampling) — for tests and
    simulations; a restart on the same log would then reuse ids and fail to log."""

    role: str = "all"
    """``all``: decide, close windows, learn and checkpoint in this process (the default).
    ``decider``: decide only, loading each new model version the trainer publishes to the
    model store (``offerbandit trainer``; docs/scale-out.md)."""
    model_store: Path | None = None
    """The folder of model checkpoints; default ``data_dir/checkpoints``. Deciders and the
    trainer of one log share it."""
    model_poll_seconds: float = 1.0
    """How often a decider looks for a new model version in the model store."""

    @property
    def log_path(self) -> Path:
        return self.data_dir / "decisions.sqlite"

    @property
    def checkpoint_dir(self) -> Path:
        return self.model_store or self.data_dir / "checkpoints"


@dataclass(frozen=True, slots=True)
class Stats:
    log: LogStats
    learned: int
    model_version: str
    duplicates: int
    """Duplicate outcomes seen since this process started (duplicates change nothing)."""
    score_fallbacks: int = 0
    """Decisions since this process started whose model scores were unusable (non-finite or
    without mass) and that were decided by the uniform fallback (:data:`FALLBACK_POLICY`)."""
    learn_skipped: int = 0
    """Closed decisions since this process started that the learner skipped because their
    label could not be held by VW (non-finite or beyond the number policy's range)."""
    removals: dict[str, int] = field(default_factory=dict)
    """Treatments removed by each contact-policy rule (by rule name), over the whole log."""
    contact_policy: str = ""
    """The digest of the contact policy in force; empty: none."""


def policy_arguments(config: ServiceConfig) -> list[str]:
    """The live policy's arguments (what a checkpoint stores beside the model)."""
    if config.policy == UPLIFT:
        from bandit.uplift import uplift_arguments

        return uplift_arguments(config.uplift_options, config.seed)
    if config.policy != "vw":
        raise ValueError(f"policy must be 'uplift' or 'vw', not {config.policy!r}")
    return vw_arguments(config.exploration, config.interactions, config.seed, config.vw_extra)


class DecisionService:
    """The service. Build it, :meth:`start` it, call it from any thread, :meth:`stop` it.

    A facade over its parts: the Choose pipeline (:mod:`bandit.choose`) with its decider and
    catalogue table, the decision log (injected, or SQLite by default), and the learning
    path (:mod:`bandit.learn`: the closer and the learner)."""

    def __init__(
        self,
        config: ServiceConfig,
        clock: Clock | None = None,
        decision_log: DecisionLog | None = None,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        """``decision_log``: the decision log to use (by default the one ``config.log``
        names, the SQLite log at ``config.log_path`` when empty); the service closes it when
        it stops. ``checkpoints``: where
        models are checkpointed (by default ``config.checkpoint_dir``)."""
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self._ready = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.log: DecisionLog = decision_log or open_decision_log(
            config.log,
            config.log_path,
            windows=config.windows,
            reward_rule=config.reward_rule,
            synchronous=config.synchronous,
        )
        self.checkpoints = checkpoints or CheckpointStore(
            config.checkpoint_dir, keep=config.checkpoints_kept
        )
        start = starting_point(
            self.checkpoints.latest(),
            policy_arguments(config),
            config.initial_model,
            config.initial_vw_args,
            lambda kind: policy_arguments(replace(config, policy=kind)),
        )
        self.vw_args = start.args
        self.policy_id = describe_policy(start.args)
        self.decider = Decider(
            make_policy(start.args, start.model), f"v{start.version}", self.policy_id
        )
        self.learning = Learning(
            log=self.log,
            checkpoints=self.checkpoints,
            publisher=self.decider,
            clock=self.clock,
            args=start.args,
            model=start.model,
            version=start.version,
            position=start.position,
            learned=start.learned,
            reward_rule=config.reward_rule,
            batch=config.learn_batch,
            checkpoint_every_learns=config.checkpoint_every_learns,
            checkpoint_every_seconds=config.checkpoint_every_seconds,
        )
        """The learner (:class:`bandit.learn.Learning`)."""
        self.closer = Closer(self.log, self.clock, config.close_interval_seconds)
        if config.role not in ("all", "decider"):
            raise ValueError(f"role must be 'all' or 'decider', not {config.role!r}")
        self.watcher = ModelWatcher(
            self.checkpoints, self.decider, start.version, config.model_poll_seconds
        )
        """A decider's model reloader (:mod:`bandit.learn.watch`)."""
        self._duplicates = 0
        self._counter_lock = threading.Lock()
        # Event ids: a random 64-bit prefix per process start (unless configured), then a
        # counter.
        event_ids = EventIds(config.event_id_prefix or uuid.uuid4().hex[:16])
        self._control_floor = ControlFloorStep(config.control_share)
        self.contact: ContactGate | None = None
        """The contact policy's gate (:mod:`bandit.contact.gate`); None without a policy."""
        if config.contact_policy is not None:
            self.contact = ContactGate(
                config.contact_policy,
                self.log,
                self.clock.now,
                cache_customers=config.contact_cache_customers,
            )
        self.retention: Retention | None = None
        """Deletes what is older than ``retention_days`` (None: retention is off)."""
        if config.retention_days is not None:
            days, gate, ckpts = config.retention_days, self.contact, self.checkpoints
            if not isinstance(self.log, SqliteDecisionLog):
                raise ValueError("retention_days: this decision log has no retention")
            self.retention = Retention(
                self.log,
                lambda now: bounds_for(
                    days, now, ckpts.oldest_position(), None if gate is None else gate.keeps(now)
                ),
                self.clock.now,
                batch=config.retention_batch,
                duty=config.retention_duty,
                export_dir=config.retention_export_dir,
            )
        self.catalogues = Catalogues()
        """The catalogues of Choose requests, interned by content (:mod:`bandit.catalogue`);
        a transport asks it for a request's catalogue."""
        holdout = HoldoutStep(
            event_ids,
            config.seed,
            config.holdout_share,
            config.holdout_key,
            lambda: self.decider.version,
        )
        steps = standard_steps(
            limits=config.limits,
            catalogues=self.catalogues,
            log=self.log,
            decider=self.decider,
            holdout=holdout,
            control_floor=self._control_floor,
            clock=self.clock,
            contact=None if self.contact is None else ContactStep(self.contact),
        )
        self.choose_pipeline = Pipeline(steps)
        """The Choose path's steps (:mod:`bandit.choose`)."""
        self.batches = BatchChooser(
            limits=config.limits,
            catalogues=self.catalogues,
            log=self.log,
            decider=self.decider,
            holdout=holdout,
            control_floor=self._control_floor,
            clock=self.clock,
            gate=self.contact,
            pipeline=self.choose_pipeline,
        )
        """The batch path (:mod:`bandit.choose_batch`): the same parts, many customers a pass."""
        log.info(
            "decision service ready: model %s, learned up to log position %d, policy %s",
            self.decider.version,
            start.position,
            self.policy_id,
        )

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.config.background:
            loops: list[tuple[str, Callable[..., None], tuple[float, ...]]] = [
                ("closer", self.closer.run, ()),
                ("learner", self.learning.run, ()),
            ]
            if self.config.role == "decider":  # the trainer closes and learns
                loops = [("model-watcher", self.watcher.run, ())]
            if self.retention is not None:
                every = self.config.retention_every_seconds
                loops.append(("retention", self.retention.run, (every,)))
            for name, target, more in loops:
                t = threading.Thread(
                    target=target, args=(self._stop, *more), name=name, daemon=True
                )
                t.start()
                self._threads.append(t)
        self._ready = True

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def healthy(self) -> bool:
        """Serving, and the decision log can be written (False while the disk is full or
        failing; True again once a write succeeds)."""
        return self._ready and self.log.writable

    def stop(self) -> None:
        """Stop background tasks, learn what is closed, checkpoint, flush the log."""
        if not self._ready and self._stop.is_set():
            return
        self._ready = False
        self._stop.set()
        for t in self._threads:
            t.join()
        self._threads.clear()
        if self.config.role != "decider":  # a decider never learns: the trainer does
            self.learning.learn_pending()
            if self.learning.unsaved:
                self.learning.checkpoint()
        if self.retention is not None:
            self.retention.close()
        self.log.close()

    # ---- choose ------------------------------------------------------------------------------

    @property
    def model_version(self) -> str:
        return self.decider.version

    def choose(self, req: ChooseInput) -> Decision:
        """Decide, log durably, answer. A retried ``request_id`` returns the logged decision."""
        decision, commit = self.submit_choice(req)
        return decision if commit is None else commit.wait()

    def submit_choice(
        self, req: ChooseInput, on_done: OnDone | None = None, hold: bool = False
    ) -> tuple[Decision, Commit[Decision] | None]:
        """Decide and queue the decision's log write; nothing waits for it here.

        Returns the decision and the handle of its queued write, or (for a retried
        ``request_id`` already logged) the logged decision and ``None``. The handle's answer
        is the decision, or the one logged before it under the same ``request_id`` (a
        concurrent retry); it raises what the write raised.

        ``on_done``: nobody will :meth:`~bandit.commit.Commit.wait`; the log's writer commits
        the write and calls it once durable. ``hold``: do not wake the writer; the caller
        will say who commits (:meth:`~bandit.commit.Commit.commit_here` or
        :meth:`~bandit.commit.Commit.hand_off`).
        """
        if not self._ready:
            raise NotReady("the decision service is not serving")
        return self.choose_pipeline.run(req, on_done, hold)

    def submit_batch(
        self,
        template: ChooseInput,
        customers: Sequence[BatchCustomer],
        on_done: OnDone | None = None,
    ) -> BatchResult:
        """Decide many customers under one request template and queue their decisions as one
        log write (:mod:`bandit.choose_batch`); nothing waits for it here.

        Each customer's result is its decision with the handle of its write (``None`` for a
        retried request id: the logged decision), or the error that refused it (nothing is
        written for it; the others are decided). ``on_done`` is called once per queued write
        (:attr:`BatchResult.writes`) once durable. Raises what is wrong with the template.
        """
        if not self._ready:
            raise NotReady("the decision service is not serving")
        if len(customers) > self.config.max_batch_customers:
            raise TooLarge(
                "customers",
                f"has {len(customers)} customers; the limit is {self.config.max_batch_customers}",
            )
        return self.batches.submit(template, customers, on_done)

    def choose_batch(
        self, template: ChooseInput, customers: Sequence[BatchCustomer]
    ) -> list[Decision | OfferBanditError]:
        """:meth:`submit_batch` and wait: each customer's durable decision (or the logged one
        of a retried request id), or the error that refused it."""
        out: list[Decision | OfferBanditError] = []
        for r in self.submit_batch(template, customers).results:
            if isinstance(r, OfferBanditError):
                out.append(r)
                continue
            decision, commit = r
            try:
                out.append(decision if commit is None else commit.wait())
            except OfferBanditError as exc:
                out.append(exc)
        return out

    def reload_contact_policy(self, policy: ContactPolicy) -> None:
        """Apply ``policy`` from the next Choose on. A service started without a policy has
        no contact step: it refuses (:class:`~bandit.errors.InvalidState`)."""
        if self.contact is None:
            raise InvalidState("contact_policy", "the service was started without one")
        old = self.contact.policy.digest
        self.contact.reload(policy)
        log.info("contact policy %s replaced by %s", old, policy.digest)

    def get_decision(self, event_id: str) -> StoredDecision:
        if not event_id:
            raise InvalidRequest("event_id", "is required")
        return self.log.get(event_id)

    def rederive(self, d: Decision) -> int:
        """Re-sample a logged decision from its pmf and the server seed (an audit check)."""
        return sample_index(d.pmf, uniform_from_seed(derive_seed(self.config.seed, d.event_id)))

    # ---- outcomes and activation --------------------------------------------------------------

    def check_outcome(self, o: OutcomeInput) -> None:
        if not o.outcome_id:
            raise InvalidRequest("outcome_id", "is required")
        lim = self.config.limits.max_id_length
        for name, value in (
            ("outcome_id", o.outcome_id),
            ("event_id", o.event_id),
            ("customer_id", o.customer_id),
            ("type", o.type),
        ):
            if len(value) > lim:
                raise InvalidRequest(name, f"is longer than {lim} characters")
        if not o.event_id and not o.customer_id:
            raise InvalidRequest("event_id", "an outcome names an event_id or a customer_id")
        check_number(o.revenue, "revenue")
        if o.revenue < 0:
            raise InvalidRequest("revenue", f"must not be negative, got {o.revenue:.6g}")
        cap = self.config.max_revenue_per_outcome
        if o.revenue > cap:
            raise InvalidRequest(
                "revenue", f"is {o.revenue:.6g}; one outcome may carry at most {cap:.6g}"
            )
        if o.occurred_at is not None:
            check_time(o.occurred_at, "occurred_at")

    def record_outcome(self, o: OutcomeInput) -> OutcomeResult:
        return self.submit_outcome(o).wait()

    def submit_outcome(
        self,
        o: OutcomeInput,
        on_done: OnDone | None = None,
        hold: bool = False,
        now: float | None = None,
    ) -> Commit[OutcomeResult]:
        """Check ``o`` (raising what is wrong with it) and queue its write; see
        :meth:`submit_choice` for ``on_done`` and ``hold``. The handle's answer is the
        outcome's result; it raises what the write raised."""
        if not self._ready:
            raise NotReady("the decision service is not serving")
        self.check_outcome(o)
        if self.contact is not None:
            self.contact.outcome(o.type, o.customer_id, o.event_id)
        notify = None if on_done is None else call_on_done
        item = self.log.submit_outcome(
            o,
            self.clock.now() if now is None else now,
            self.config.max_future_skew_seconds,
            notify,
            on_done,
            not hold,
        )
        return Commit(self.log, item, self._outcome_answer)

    def _outcome_answer(self, result: OutcomeResult) -> OutcomeResult:
        self._count([result])
        return result

    def _count(self, results: Sequence[OutcomeResult | OfferBanditError]) -> None:
        n = sum(1 for r in results if isinstance(r, OutcomeResult) and r.status == "duplicate")
        if n:
            with self._counter_lock:
                self._duplicates += n

    def record_outcomes(
        self, outcomes: Sequence[OutcomeInput], start_index: int = 0
    ) -> list[OutcomeResult | OfferBanditError]:
        """Record a chunk of a stream: per-item results, bad items never drop good ones."""
        if not self._ready:
            raise NotReady("the decision service is not serving")
        if start_index + len(outcomes) > self.config.max_stream_outcomes:
            raise TooLarge(
                "outcomes",
                f"a stream may carry at most {self.config.max_stream_outcomes} outcomes",
            )
        now = self.clock.now()  # all received at one time
        queued: list[Commit[OutcomeResult] | OfferBanditError] = []
        for o in outcomes:
            try:
                queued.append(self.submit_outcome(o, now=now))
            except OfferBanditError as exc:  # a bad outcome never stops the others
                queued.append(exc)
        out: list[OutcomeResult | OfferBanditError] = []
        for it in queued:
            if isinstance(it, OfferBanditError):
                out.append(it)
                continue
            try:
                out.append(it.wait())
            except OfferBanditError as exc:
                out.append(exc)
        return out

    def check_activation(self, a: ActivationInput, now: float) -> float:
        """Check what an activation can be checked for without the log (raising what is
        wrong with it) and return its time: ``activated_at``, or ``now`` when it has none."""
        if not a.event_id:
            raise InvalidRequest("event_id", "is required")
        if a.activated_at is None:
            return now
        check_time(a.activated_at, "activated_at")
        if a.activated_at > now + self.config.max_future_skew_seconds:
            raise InvalidRequest("activated_at", "is too far in the future")
        return a.activated_at

    def activate(self, event_id: str, at: float | None = None) -> float:
        """Open deferred decision ``event_id``'s attribution window at ``at`` (None: now),
        durably; returns when it closes. Raises what is wrong: :class:`InvalidRequest`
        (``event_id``, ``activated_at``), :class:`~bandit.errors.UnknownEvent`,
        :class:`~bandit.errors.NotDeferred`, :class:`~bandit.errors.AlreadyActivated`."""
        return self.submit_activation(ActivationInput(event_id, at)).wait().window_closes_at

    def submit_activation(
        self,
        a: ActivationInput,
        on_done: OnDone | None = None,
        hold: bool = False,
        now: float | None = None,
    ) -> Commit[Activation]:
        """Check ``a`` (raising what is wrong with it) and queue its write; see
        :meth:`submit_choice` for ``on_done`` and ``hold``. The handle's answer is the
        :class:`~bandit.records.Activation` (once it is durable, the contact policy's cached
        contacts of its customer are dropped); it raises what the write raised."""
        if not self._ready:
            raise NotReady("the decision service is not serving")
        when = self.check_activation(a, self.clock.now() if now is None else now)
        notify = None if on_done is None else call_on_done
        item = self.log.submit_activation(a.event_id, when, notify, on_done, not hold)
        return Commit(self.log, item, self._activation_answer)

    def _activation_answer(self, a: Activation) -> Activation:
        gate = self.contact
        if gate is not None and gate.cache_customers:  # its contact counts from now on
            gate.activated(a.customer_id)
        return a

    def activate_many(
        self, activations: Sequence[ActivationInput]
    ) -> list[Activation | OfferBanditError]:
        """Activate many deferred decisions at once: one result per item, in order.

        Each item is checked exactly as :meth:`activate` checks one; a refused item gets its
        error (:class:`InvalidRequest`, :class:`~bandit.errors.UnknownEvent`,
        :class:`~bandit.errors.NotDeferred`, :class:`~bandit.errors.AlreadyActivated` — a
        second activation of one event id in the same batch included) and writes nothing,
        and never stops the others. The accepted ones are queued together and committed by
        the log's group commit (one transaction per batch of up to the log's ``max_batch``
        writes) before this returns."""
        if not self._ready:
            raise NotReady("the decision service is not serving")
        now = self.clock.now()  # all received at one time
        queued: list[Commit[Activation] | OfferBanditError] = []
        for a in activations:
            try:
                queued.append(self.submit_activation(a, now=now))
            except OfferBanditError as exc:  # a bad item never stops the others
                queued.append(exc)
        out: list[Activation | OfferBanditError] = []
        for it in queued:  # the first wait commits what is queued (the rest with it)
            if isinstance(it, OfferBanditError):
                out.append(it)
                continue
            try:
                out.append(it.wait())
            except OfferBanditError as exc:
                out.append(exc)
        return out

    # ---- closing and learning (:mod:`bandit.learn`) ------------------------------------------

    def close_due_windows(self) -> int:
        return self.closer.close_due()

    def learn_pending(self, max_decisions: int | None = None) -> int:
        """Learn closed, not yet learned decisions in log order; returns how many."""
        return self.learning.learn_pending(max_decisions)

    def checkpoint(self) -> Checkpoint:
        """Save the learner's model with its log position and publish it to the decider."""
        return self.learning.checkpoint()

    @property
    def learned(self) -> int:
        return self.learning.learned

    @property
    def position(self) -> int:
        return self.learning.position

    # ---- stats -------------------------------------------------------------------------------

    def stats(self, recent_seconds: float = 3600.0) -> Stats:
        return Stats(
            log=self.log.stats(self.clock.now(), recent_seconds),
            learned=self.learned,
            model_version=self.decider.version,
            duplicates=self._duplicates,
            score_fallbacks=self._control_floor.fallbacks,
            learn_skipped=self.learning.skipped,
            removals=self.log.removal_counts(),
            contact_policy="" if self.contact is None else self.contact.policy.digest,
        )


__all__ = [
    "FALLBACK_POLICY",
    "HOLDOUT_POLICY",
    "Clock",
    "DecisionService",
    "ManualClock",
    "ServiceConfig",
    "Stats",
    "SystemClock",
    "in_holdout",
    "learnable",
    "request_fingerprint",
]
