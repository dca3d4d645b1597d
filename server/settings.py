"""The one settings object, read once at the entry point.

Every field can be set by an environment variable ``OFFERBANDIT_<NAME>`` (for example
``OFFERBANDIT_PORT=6000``; dicts and lists as JSON) or in a TOML file passed with
``offerbandit serve --config FILE`` (keys are the field names). Environment variables win
over the file; command-line flags win over both.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bandit.checkpoint import Checkpoint
from bandit.contact import ContactPolicy
from bandit.eligibility import Limits
from bandit.learner import DEFAULT_EXPLORATION, DEFAULT_INTERACTIONS
from bandit.records import Windows
from bandit.rewards import RewardRule
from bandit.service import ServiceConfig
from bandit.types import RewardMode

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
"""Hosts only this machine can reach: plaintext without tokens is allowed there."""


class Settings(BaseSettings):
    """offerbandit server settings. Embedded defaults run everything from ``./data``."""

    model_config = SettingsConfigDict(env_prefix="OFFERBANDIT_", extra="forbid")

    host: str = "127.0.0.1"
    """Interface to listen on. Use 0.0.0.0 only behind a trusted network boundary."""
    port: int = Field(50051, ge=0, le=65535)
    """gRPC port; 0 picks a free one (printed at start)."""
    data_dir: Path = Path("data")
    """Folder of the decision log (decisions.sqlite) and model checkpoints."""
    log: str = ""
    """The decision log: empty (the default), the embedded SQLite log in ``data_dir``; a
    ``postgresql://user@host:5432/db`` URL, a PostgreSQL log that several deciders and one
    trainer share (docs/scale-out.md; needs the ``postgres`` extra)."""
    role: Literal["all", "decider"] = "all"
    """all: decide, close windows, learn and checkpoint in this process. decider: decide
    only (any number of them on one PostgreSQL log), loading each model version that
    ``offerbandit trainer`` publishes to ``model_store``."""
    model_store: Path | None = None
    """Folder of model checkpoints (the model store); default ``data_dir/checkpoints``.
    Deciders and trainers of one log share it."""
    model_poll_seconds: float = Field(1.0, gt=0)
    """How often a decider looks for a new model version in the model store."""
    workers: int = Field(4, ge=1, le=256)
    """Threads for the calls that wait on the database directly (GetDecision, Activate,
    GetStats), and for ChooseBatchStream's passes (one thread per stream at a time, a few
    tens of milliseconds a message). Choose and outcomes run on the server's event loop and
    never wait on a thread: the log's writer commits them in groups."""
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Largest request accepted; larger ones get RESOURCE_EXHAUSTED."""
    max_concurrent_calls: int = Field(1000, ge=1)
    """Most calls in flight at once (every method, health checks included); calls beyond it
    are answered RESOURCE_EXHAUSTED at once (backpressure instead of memory growth)."""
    durability: Literal["full", "normal"] = "full"
    """full: every answered call is fsynced (survives power loss). normal: survives process
    crashes (kill -9) but an OS crash or power loss may lose the last commits; cheaper."""
    seed: int = 0
    """Server seed: with the event id it determines each decision's sampling."""
    event_id_prefix: str = Field("", pattern="^([0-9a-f]{16})?$")
    """The key event ids are made with (bandit.choose.EventIds). Empty (the default): a random
    one drawn at each start. Sixteen lowercase hex digits: that key, which makes a run on a
    fresh log reproducible — for tests and simulations only (a restart on the same log would
    draw the same event ids again)."""

    policy: Literal["uplift", "vw"] = "uplift"
    """The live policy's kind: "uplift" (a conservative uplift model: control unless a
    treatment is confidently better) or "vw" (a VW --cb_explore_adf policy configured by
    exploration, interactions and vw_extra). A checkpoint's own kind wins over this."""
    uplift_options: str = ""
    """Options string of the uplift policy (e.g. "--kappa 1 --explore 0.1"); ignored by vw."""
    exploration: str = DEFAULT_EXPLORATION
    """VW exploration arguments for --cb_explore_adf (e.g. "--squarecb", "--epsilon 0.1")."""
    interactions: list[str] = Field(default_factory=lambda: list(DEFAULT_INTERACTIONS))
    """Quadratic interactions between namespaces: c customer, t trigger, o offer, h channel."""
    vw_extra: str = ""
    """More VW arguments, appended as they are (e.g. "-b 20 -l 0.5")."""
    model: str = ""
    """Start from this model when the data folder has no checkpoint: a checkpoint file path,
    or an MLflow model URI such as models:/offerbandit@champion."""
    control_share: float = Field(0.05, ge=0.0, le=1.0)
    """Floor on the control treatment's probability, mixed in before sampling."""

    holdout_share: float = Field(0.0, ge=0.0, le=1.0)
    """Persistent customer holdout: this share of customers (by a keyed hash of their id)
    always gets control, logged as holdout. Costs that share of the treatments' uplift; buys
    a clean, policy-independent control group. Default off."""
    holdout_key: str = "offerbandit-holdout"
    """Key of the holdout hash; changing it redraws the holdout."""
    max_treatments: int = Field(1000, ge=1)
    """Most candidate treatments one Choose may carry (offers × channels or explicit)."""
    max_offers: int = Field(1000, ge=1)
    max_channels: int = Field(100, ge=1)
    max_features: int = Field(200, ge=1)
    """Most features per customer, trigger, offer or channel."""
    max_feature_name_length: int = Field(128, ge=1)
    max_text_length: int = Field(1024, ge=1)
    max_id_length: int = Field(256, ge=1)

    attribution_window_seconds: float = Field(7 * 24 * 3600.0, gt=0)
    """Default attribution window (and control's)."""
    channel_windows: dict[str, float] = Field(default_factory=dict)
    """Per-channel attribution windows in seconds, e.g. {"web_banner": 1800, "email": 604800}."""
    reward_mode: RewardMode = RewardMode.WINDOW_SUM
    """window_sum: reward at window close; first_outcome: learn at the first outcome."""
    default_reward: float = 0.0
    """Reward (money) of a decision with nothing attributed, before contact costs."""
    reward_scale: float = Field(0.01, gt=0)
    """Money → VW cost units: cost = −reward × scale."""
    outcome_values: dict[str, float] = Field(default_factory=dict)
    """Money values of outcome types added to the reward of the decision an outcome of that
    type is attributed to, e.g. {"unsubscribe": -20, "complaint": -50}: the learner learns
    to avoid treatments that annoy (docs/contact-policies.md). Within ±max_learned_revenue."""
    max_clock_skew_seconds: float = Field(300.0, ge=0)
    """How far in the future an outcome's occurred_at may be."""
    max_stream_outcomes: int = Field(100_000, ge=1)
    """Most outcomes one RecordOutcomes stream may carry (StreamOutcomes has no limit)."""
    max_batch_customers: int = Field(4096, ge=1, le=65_536)
    """Most customers one ChooseBatchStream message may carry (more: INVALID_ARGUMENT)."""
    max_revenue_per_outcome: float = Field(1e9, gt=0, le=1e15)
    """Largest revenue one outcome may report; more is rejected (INVALID_ARGUMENT). Every
    number a request carries is also bounded by the number policy (bandit/numbers.py:
    |x| ≤ 1e15, magnitudes below 1e-30 flushed to 0)."""
    max_learned_revenue: float = Field(10_000.0, gt=0, le=1e15)
    """A decision's attributed revenue is clipped to this before its reward is computed
    (the log keeps the raw revenue; the reward column holds the clipped reward), and net
    rewards are kept within ± this. Raise it above any real basket to make it a pure
    safety net."""

    tls_cert_file: Path | None = None
    """Server certificate chain (PEM). With ``tls_key_file``, the server speaks TLS only."""
    tls_key_file: Path | None = None
    """The certificate's private key (PEM)."""
    tls_client_ca_file: Path | None = None
    """CA certificates (PEM) that client certificates must chain to: mutual TLS, a client
    without such a certificate cannot connect. Needs ``tls_cert_file``."""
    tokens_file: Path | None = None
    """Bearer tokens with roles (TOML, SHA-256 of each token only; ``offerbandit token add``
    makes entries; read again when it changes). Set: every call but health checks needs a
    token (server/auth.py). Unset: no authentication."""
    reflection: bool | None = None
    """Server reflection. Default: on without authentication, off with it (on with it, it
    needs the ``read`` role)."""
    allow_insecure: bool = False
    """Listening on anything but a loopback address without TLS or without tokens is refused
    at start unless this is true (say, behind a mesh that does both)."""

    metrics_port: int | None = Field(None, ge=0, le=65535)
    """Serve Prometheus metrics over HTTP on this port (0: any free one); unset: no metrics
    (and no per-call cost). See server/metrics.py for what is measured."""
    metrics_host: str = "127.0.0.1"
    """Interface of the metrics endpoint."""

    contact_policy: Path | None = None
    """A contact-policy file (TOML: caps, repeats, suppressions, quiet hours, offer validity,
    budgets; docs/contact-policies.md) applied to every Choose before scoring. Unset or
    empty (the default): none. Checked at start (a bad file refuses to start) and re-read on
    SIGHUP (a bad file is refused and the running policy stays)."""

    @field_validator("contact_policy", mode="before")
    @classmethod
    def _no_policy(cls, v: Any) -> Any:
        return None if v == "" else v

    retention_days: float | None = Field(None, gt=0)
    """Delete closed decisions and their outcomes decided more than this many days ago, in
    small background batches, and give the space back (docs/operations.md, Retention).
    Kept whatever their age: what the learner's oldest kept checkpoint has not learned,
    open attribution windows, the contacts caps and repeats look back over, today's
    decisions under per-day budgets; negative outcomes suppressions act on and coupon
    counts survive in small tables. Must exceed every attribution window. Unset (the
    default): keep everything."""
    retention_export_dir: Path | None = None
    """With retention: write what it deletes to Parquet files in this folder first."""
    retention_batch: int = Field(256, ge=1, le=10_000)
    """Decisions deleted per write (each batch holds the log's writer a few ms)."""
    retention_every_seconds: float = Field(60.0, gt=0)
    """Pause between retention passes."""
    retention_duty: float = Field(0.1, gt=0, le=1)
    """Most of the log writer's time retention takes: after a batch that held the writer
    t seconds it pauses t × (1 / duty − 1). Raise it if retention falls behind."""

    checkpoint_every_learns: int = Field(1000, ge=1)
    checkpoint_every_seconds: float = Field(30.0, gt=0)
    checkpoints_kept: int = Field(5, ge=1)
    """How many of the newest model checkpoints are kept: the ones `offerbandit rollback`
    can return to."""
    close_interval_seconds: float = Field(1.0, gt=0)
    """How often the closer looks for ended attribution windows."""
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    """"json": one JSON object a line (server/logs.py), for log collectors."""
    access_log: bool = False
    """One log line per call (method, status, ms, request id) on ``offerbandit.access``, and
    the call's request id on every line logged meanwhile. Off by default: it costs every
    call."""

    @field_validator("interactions")
    @classmethod
    def _pairs(cls, v: list[str]) -> list[str]:
        for pair in v:
            if len(pair) < 2 or not pair.isalpha():
                raise ValueError(f"an interaction is two or more namespace letters, not {pair!r}")
        return v

    @model_validator(mode="after")
    def _security(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file: give both, or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file: mutual TLS needs tls_cert_file and tls_key_file")
        exposed = self.host not in LOOPBACK_HOSTS
        if exposed and not self.allow_insecure and (not self.tls or self.tokens_file is None):
            missing = " and ".join(
                what
                for what, absent in (
                    ("TLS (tls_cert_file, tls_key_file)", not self.tls),
                    ("authentication (tokens_file)", self.tokens_file is None),
                )
                if absent
            )
            raise ValueError(
                f"host: listening on {self.host!r}, beyond this machine, without {missing} is "
                "refused; set them, or allow_insecure = true if something in front does both"
            )
        return self

    @model_validator(mode="after")
    def _retention(self) -> Settings:
        if self.retention_days is not None:
            longest = max([self.attribution_window_seconds, *self.channel_windows.values()])
            if self.retention_days * 86_400.0 <= longest:
                raise ValueError(
                    f"retention_days: {self.retention_days:g} days is not longer than the "
                    f"longest attribution window ({longest / 86_400.0:g} days)"
                )
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def reflection_on(self) -> bool:
        return self.reflection if self.reflection is not None else self.tokens_file is None

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Settings from defaults < TOML file < environment < ``overrides``."""
        file_values: dict[str, Any] = {}
        if config_file is not None:
            with open(config_file, "rb") as f:
                file_values = tomllib.load(f)
        env = cls()
        merged = {**file_values, **env.model_dump(exclude_unset=True), **overrides}
        return cls.model_validate(merged)

    def service_config(self, initial: Checkpoint | None = None) -> ServiceConfig:
        return ServiceConfig(
            data_dir=self.data_dir,
            seed=self.seed,
            policy=self.policy,
            uplift_options=self.uplift_options,
            exploration=self.exploration,
            interactions=tuple(self.interactions),
            vw_extra=self.vw_extra,
            control_share=self.control_share,
            limits=Limits(
                max_treatments=self.max_treatments,
                max_offers=self.max_offers,
                max_channels=self.max_channels,
                max_features=self.max_features,
                max_feature_name_length=self.max_feature_name_length,
                max_text_length=self.max_text_length,
                max_id_length=self.max_id_length,
            ),
            windows=Windows(
                default=self.attribution_window_seconds,
                per_channel=tuple(sorted(self.channel_windows.items())),
            ),
            reward_rule=RewardRule(
                default_reward=self.default_reward,
                scale=self.reward_scale,
                mode=self.reward_mode,
                max_learned_revenue=self.max_learned_revenue,
                outcome_values=tuple(sorted(self.outcome_values.items())),
            ),
            max_revenue_per_outcome=self.max_revenue_per_outcome,
            checkpoint_every_learns=self.checkpoint_every_learns,
            checkpoint_every_seconds=self.checkpoint_every_seconds,
            checkpoints_kept=self.checkpoints_kept,
            close_interval_seconds=self.close_interval_seconds,
            max_future_skew_seconds=self.max_clock_skew_seconds,
            max_stream_outcomes=self.max_stream_outcomes,
            max_batch_customers=self.max_batch_customers,
            initial_model=initial.model if initial else None,
            initial_vw_args=tuple(initial.vw_args) if initial else (),
            synchronous=self.durability.upper(),
            holdout_share=self.holdout_share,
            holdout_key=self.holdout_key,
            contact_policy=self.load_contact_policy(),
            event_id_prefix=self.event_id_prefix,
            retention_days=self.retention_days,
            retention_export_dir=self.retention_export_dir,
            retention_batch=self.retention_batch,
            retention_every_seconds=self.retention_every_seconds,
            retention_duty=self.retention_duty,
            log=self.log,
            role=self.role,
            model_store=self.model_store,
            model_poll_seconds=self.model_poll_seconds,
        )

    def load_contact_policy(self) -> ContactPolicy | None:
        """The contact policy the settings name (:class:`~bandit.contact.PolicyError` naming
        what is wrong with it), or None."""
        if self.contact_policy is None:
            return None
        return ContactPolicy.load(self.contact_policy)
