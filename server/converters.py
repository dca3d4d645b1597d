"""Protobuf ↔ domain conversion: the only module that knows both. Typed pure functions."""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from bandit.caching import IdentityCache
from bandit.catalogue import Catalogue, Catalogues
from bandit.choose_batch import BatchCustomer, Decided
from bandit.commit import Commit
from bandit.eligibility import ChooseInput
from bandit.errors import (
    AlreadyActivated,
    InvalidRequest,
    NotDeferred,
    OfferBanditError,
    UnknownEvent,
    quote,
)
from bandit.logcodec import pack_pmf
from bandit.numbers import MAX_TIME, MIN_TIME, flush
from bandit.records import (
    Activation,
    ActivationInput,
    DecisionState,
    OutcomeInput,
    OutcomeResult,
    OutcomeStatus,
    StoredDecision,
)
from bandit.service import Stats
from bandit.types import (
    Channel,
    Customer,
    Decision,
    Features,
    FeatureValue,
    Offer,
    Treatment,
    TreatmentRef,
    Trigger,
)
from server.errors import code_name, short_message
from server.pb.offerbandit.v1 import decision_service_pb2 as pb

M = TypeVar("M", bound=Message)

# ---- features ---------------------------------------------------------------------------


def feature_from_pb(value: pb.FeatureValue, where: str, name: str) -> FeatureValue:
    """One feature; errors name ``<where>.features['<name>']``. Numbers go through the number
    policy (:mod:`bandit.numbers`): tiny magnitudes are flushed to 0 here, the range is
    checked with the rest of the request."""
    kind = value.WhichOneof("kind")
    if kind == "number":
        number = value.number
        if not math.isfinite(number):
            raise InvalidRequest(
                f"{where}.features[{quote(name)}]", f"must be a finite number, not {number}"
            )
        return flush(number)
    if kind == "text":
        return value.text
    if kind == "flag":
        return value.flag
    if kind == "tags":
        return tuple(value.tags.values)
    raise InvalidRequest(
        f"{where}.features[{quote(name)}]", "has no value (set number, text, flag or tags)"
    )


def features_from_pb(features: Mapping[str, pb.FeatureValue], where: str) -> Features:
    return MappingProxyType({k: feature_from_pb(v, where, k) for k, v in features.items()})


def feature_to_pb(value: FeatureValue) -> pb.FeatureValue:
    if isinstance(value, bool):
        return pb.FeatureValue(flag=value)
    if isinstance(value, int | float):
        return pb.FeatureValue(number=float(value))
    if isinstance(value, str):
        return pb.FeatureValue(text=value)
    return pb.FeatureValue(tags=pb.StringList(values=list(value)))


def _fill_features(target: Mapping[str, pb.FeatureValue], features: Features) -> None:
    for k, v in features.items():
        target[k].CopyFrom(feature_to_pb(v))


# ---- entities ---------------------------------------------------------------------------


def customer_from_pb(c: pb.Customer) -> Customer:
    return Customer(c.id, features_from_pb(c.features, "customer"))


def customer_to_pb(c: Customer) -> pb.Customer:
    out = pb.Customer(id=c.id)
    _fill_features(out.features, c.features)
    return out


def trigger_from_pb(t: pb.Trigger) -> Trigger:
    return Trigger(t.type, features_from_pb(t.features, "trigger"))


def trigger_to_pb(t: Trigger) -> pb.Trigger:
    out = pb.Trigger(type=t.type)
    _fill_features(out.features, t.features)
    return out


def offer_from_pb(o: pb.Offer, i: int) -> Offer:
    return Offer(
        o.id,
        features_from_pb(o.features, f"offers[{i}]"),
        flush(o.fixed_cost),
        flush(o.discount_rate),
    )


def offer_to_pb(o: Offer) -> pb.Offer:
    out = pb.Offer(id=o.id, fixed_cost=o.fixed_cost, discount_rate=o.discount_rate)
    _fill_features(out.features, o.features)
    return out


def channel_from_pb(c: pb.Channel, i: int) -> Channel:
    return Channel(c.id, features_from_pb(c.features, f"channels[{i}]"), flush(c.contact_cost))


def channel_to_pb(c: Channel) -> pb.Channel:
    out = pb.Channel(id=c.id, contact_cost=c.contact_cost)
    _fill_features(out.features, c.features)
    return out


def ref_from_pb(r: pb.TreatmentRef) -> TreatmentRef:
    return TreatmentRef(r.offer_id, r.channel_id)


def ref_to_pb(r: TreatmentRef) -> pb.TreatmentRef:
    return pb.TreatmentRef(offer_id=r.offer_id, channel_id=r.channel_id)


# ---- time -------------------------------------------------------------------------------


def seconds_to_pb(t: float) -> Timestamp:
    ts = Timestamp()
    whole = math.floor(t)
    ts.seconds = int(whole)
    ts.nanos = min(round((t - whole) * 1e9), 999_999_999)
    return ts


def seconds_from_pb(ts: Timestamp, field: str = "timestamp") -> float:
    """Seconds since the epoch; a Timestamp outside 1970–9999 (or with nanos outside
    [0, 1e9)) is an :class:`InvalidRequest` naming ``field`` (:mod:`bandit.numbers`)."""
    if not (MIN_TIME <= ts.seconds <= MAX_TIME and 0 <= ts.nanos <= 999_999_999):
        raise InvalidRequest(field, f"is not a valid time (seconds {ts.seconds}, nanos {ts.nanos})")
    return ts.seconds + ts.nanos / 1e9


# ---- Choose -----------------------------------------------------------------------------


def catalogue_from_pb(req: pb.ChooseRequest) -> tuple[tuple[Offer, ...], tuple[Channel, ...]]:
    """The request's offers and channels, converted."""
    return (
        tuple([offer_from_pb(o, i) for i, o in enumerate(req.offers)]),
        tuple([channel_from_pb(c, i) for i, c in enumerate(req.channels)]),
    )


def choose_from_pb(req: pb.ChooseRequest, catalogue: Catalogue | None = None) -> ChooseInput:
    """The request as the service takes it; ``catalogue``: its offers and channels, when
    already interned (:func:`choose_from_wire`)."""
    if catalogue is None:
        offers, channels = catalogue_from_pb(req)
    else:
        offers, channels = catalogue.offers, catalogue.channels
    return ChooseInput(
        customer=customer_from_pb(req.customer) if req.HasField("customer") else None,
        trigger=trigger_from_pb(req.trigger) if req.HasField("trigger") else None,
        offers=offers,
        channels=channels,
        treatments=[ref_from_pb(r) for r in req.treatments],
        excluded=[ref_from_pb(r) for r in req.excluded],
        defer_activation=req.defer_activation,
        request_id=req.request_id,
        campaign_id=req.campaign_id,
        campaign_holdout_share=req.campaign_holdout_share,
        catalogue=catalogue,
    )


# ---- Choose on the wire -------------------------------------------------------------------
#
# Choose is the hot path. Its request arrives as bytes: one extra parse through a *view* of
# the same message (offers and channels as raw bytes) interns the whole catalogue with one
# dictionary lookup. Its response leaves as bytes, assembled from per-catalogue pieces.
# Round-trip tests check both against the plain protobuf construction.


def _view_classes() -> tuple[type[Message], type[Message]]:
    """``ChooseRequest`` seen as fields 3 and 4 only, each element kept as raw bytes; and
    ``ChooseBatch`` seen as its field 1 (the template) only, kept as raw bytes."""
    fd = descriptor_pb2.FileDescriptorProto(
        name="offerbandit/v1/internal_views.proto", package="offerbandit.v1.internal"
    )
    view = fd.message_type.add(name="ChooseCatalogueView")
    for name, number in (("offers", 3), ("channels", 4)):
        view.field.add(
            name=name,
            number=number,
            type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
        )
    batch = fd.message_type.add(name="ChooseBatchTemplateView")
    batch.field.add(
        name="template",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return (
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("offerbandit.v1.internal.ChooseCatalogueView")
        ),
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("offerbandit.v1.internal.ChooseBatchTemplateView")
        ),
    )


_CatalogueView, _BatchTemplateView = _view_classes()


def parse(cls: type[M], raw: bytes) -> M:
    """``cls.FromString(raw)``; bytes that are not a valid message (garbage, truncated,
    strings that are not UTF-8) are an :class:`InvalidRequest` ("malformed ChooseRequest …")."""
    try:
        return cls.FromString(raw)
    except (DecodeError, UnicodeDecodeError, ValueError) as exc:
        name = cls.DESCRIPTOR.name
        raise InvalidRequest(
            "request", f"malformed {name}: not a valid serialized {name} ({_short(exc)})"
        ) from None


def _short(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return text if len(text) <= 80 else text[:80] + "…"


def choose_from_wire(raw: bytes, catalogues: Catalogues) -> ChooseInput:
    """:func:`choose_from_pb` of the serialized request, its catalogue interned whole in
    ``catalogues`` (the service's) by its wire bytes, and each new offer and channel by its
    own: a stable catalogue converts once."""
    req = parse(pb.ChooseRequest, raw)
    view: Any = _CatalogueView.FromString(raw)
    offers: list[bytes] = view.offers
    channels: list[bytes] = view.channels

    def convert() -> tuple[list[Offer], list[Channel]]:
        return (
            [
                catalogues.entity((_OFFER, b), functools.partial(offer_from_pb, o, i))
                for i, (b, o) in enumerate(zip(offers, req.offers, strict=True))
            ],
            [
                catalogues.entity((_CHANNEL, b), functools.partial(channel_from_pb, c, i))
                for i, (b, c) in enumerate(zip(channels, req.channels, strict=True))
            ],
        )

    catalogue = catalogues.get((_WIRE, tuple(offers), tuple(channels)), convert)
    return choose_from_pb(req, catalogue)


_WIRE, _OFFER, _CHANNEL = "wire", "wire offer", "wire channel"
"""The kinds of wire keys in the service's catalogue table."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _text_field(tag: int, text: str) -> bytes:
    if not text:
        return b""
    data = text.encode()
    return bytes([tag]) + _varint(len(data)) + data


@dataclass(frozen=True, slots=True)
class _ResponsePieces:
    heads: tuple[bytes, ...]
    """Per candidate: ranking entry tag and length, its treatment, the probability's tag."""
    tails: tuple[bytes, ...]
    """Per candidate: the control flag (or nothing)."""
    chosen: tuple[bytes, ...]
    """Per candidate: ``chosen`` and ``control`` fields as the response carries them."""


def _response_pieces(treatments: tuple[Treatment, ...]) -> _ResponsePieces:
    heads, tails, chosen = [], [], []
    for t in treatments:
        ref = ref_to_pb(t.ref).SerializeToString()
        treatment = b"\x0a" + _varint(len(ref)) + ref  # ScoredTreatment.treatment = 1
        tail = b"\x18\x01" if t.is_control else b""  # ScoredTreatment.control = 3
        body_len = len(treatment) + 9 + len(tail)  # probability = 2: tag + 8-byte double
        heads.append(b"\x2a" + _varint(body_len) + treatment + b"\x11")  # ranking = 5
        tails.append(tail)
        chosen.append(b"\x12" + _varint(len(ref)) + ref + tail)  # chosen = 2, control = 3
    return _ResponsePieces(tuple(heads), tuple(tails), tuple(chosen))


_response_pieces_of = IdentityCache(_response_pieces, size=1024)
_PACK_DOUBLE = struct.Struct("<d").pack


def choose_to_wire(
    d: Decision, rankings: dict[tuple[int, tuple[float, ...]], bytes] | None = None
) -> bytes:
    """:func:`choose_to_pb` serialized, assembled from cached per-catalogue pieces.

    ``rankings``: a memo of ranking bytes by (candidates' identity, pmf) the caller keeps
    for many decisions at once (a batch's decisions share a few pmfs)."""
    pieces = _response_pieces_of(d.treatments)
    pmf = d.pmf
    ranking = None
    if rankings is not None:
        key = (id(d.treatments), pmf)
        ranking = rankings.get(key)
    if ranking is None:
        packed = pack_pmf(pmf)  # the probabilities' wire bytes (little-endian doubles)
        heads, tails = pieces.heads, pieces.tails
        order = sorted(range(len(pmf)), key=pmf.__getitem__, reverse=True)  # stable for ties
        ranking = b"".join(
            [b for i in order for b in (heads[i], packed[8 * i : 8 * i + 8], tails[i])]
        )
        if rankings is not None:
            rankings[key] = ranking
    return b"".join(
        [
            _text_field(0x0A, d.event_id),
            pieces.chosen[d.chosen],
            b"\x21" + _PACK_DOUBLE(d.propensity),
            ranking,
            _text_field(0x32, d.model_version),
            _text_field(0x3A, d.policy),
        ]
    )


def choose_to_pb(d: Decision) -> pb.ChooseResponse:
    """The answer, ranking highest probability first (ties in candidate order).

    The plain construction: the server sends :func:`choose_to_wire`, which a test checks
    against this.
    """
    order = sorted(range(len(d.pmf)), key=d.pmf.__getitem__, reverse=True)  # stable for ties
    chosen = d.chosen_treatment
    return pb.ChooseResponse(
        event_id=d.event_id,
        chosen=ref_to_pb(chosen.ref),
        control=chosen.is_control,
        propensity=d.propensity,
        ranking=[
            pb.ScoredTreatment(
                treatment=ref_to_pb(d.treatments[i].ref),
                probability=d.pmf[i],
                control=d.treatments[i].is_control,
            )
            for i in order
        ],
        model_version=d.model_version,
        policy=d.policy,
    )


# ---- ChooseBatchStream on the wire ---------------------------------------------------------
#
# A batch arrives as bytes: its template (when it carries one) is converted as a Choose
# request is (its catalogue interned by its wire bytes), each customer as Choose converts its
# customer; a customer that does not convert is refused alone. The answer leaves as bytes:
# each result is ChooseStreamResult{index, decision} around choose_to_wire's bytes.


def batch_from_wire(
    raw: bytes, catalogues: Catalogues
) -> tuple[ChooseInput | None, list[BatchCustomer]]:
    """A ChooseBatch's template (None when the message carries none) and its customers, each
    converted or carrying the error that refuses it (:attr:`BatchCustomer.refused`). A
    template naming a customer or a request id is refused whole."""
    msg = parse(pb.ChooseBatch, raw)
    template: ChooseInput | None = None
    if msg.HasField("template"):
        if msg.template.HasField("customer"):
            raise InvalidRequest(
                "template.customer", "must be empty: a batch lists its customers in customers"
            )
        if msg.template.request_id:
            raise InvalidRequest(
                "template.request_id", "must be empty: each customer carries its request_id"
            )
        view: Any = _BatchTemplateView.FromString(raw)
        template = choose_from_wire(view.template, catalogues)
    customers: list[BatchCustomer] = []
    for c in msg.customers:
        if not c.HasField("customer"):
            customers.append(BatchCustomer(None, c.request_id))
            continue
        try:
            customers.append(BatchCustomer(customer_from_pb(c.customer), c.request_id))
        except InvalidRequest as exc:
            customers.append(BatchCustomer(None, c.request_id, exc.with_traceback(None)))
    return template, customers


def customer_as_sent(c: Customer) -> Customer:
    """``customer_from_pb(customer_to_pb(c))`` without the messages: the customer as a
    server would read it — numbers as floats with tiny magnitudes flushed to 0, tags as a
    tuple — so a batch decided in process logs (and fingerprints) what one decided through
    a server would. A number that is not finite is refused as the server refuses it."""
    features: dict[str, FeatureValue] = {}
    for name, value in c.features.items():
        if value.__class__ is bool or isinstance(value, str):
            features[name] = value
        elif isinstance(value, int | float):
            number = float(value)
            if not math.isfinite(number):
                raise InvalidRequest(
                    f"customer.features[{quote(name)}]", f"must be a finite number, not {number}"
                )
            features[name] = flush(number)
        else:
            features[name] = tuple(str(t) for t in value)
    return Customer(c.id, MappingProxyType(features))


def batch_template_to_pb(
    trigger: Trigger,
    offers: Sequence[Offer] = (),
    channels: Sequence[Channel] = (),
    *,
    treatments: Sequence[TreatmentRef] = (),
    excluded: Sequence[TreatmentRef] = (),
    defer_activation: bool = False,
    campaign_id: str = "",
    campaign_holdout_share: float = 0.0,
) -> pb.ChooseRequest:
    """A ChooseBatchStream's template: a ChooseRequest without customer and request id."""
    return pb.ChooseRequest(
        trigger=trigger_to_pb(trigger),
        offers=[offer_to_pb(o) for o in offers],
        channels=[channel_to_pb(c) for c in channels],
        treatments=[ref_to_pb(t) for t in treatments],
        excluded=[ref_to_pb(t) for t in excluded],
        defer_activation=defer_activation,
        campaign_id=campaign_id,
        campaign_holdout_share=campaign_holdout_share,
    )


def _feature_to_wire(value: FeatureValue) -> bytes:
    """A FeatureValue message's bytes (its oneof set, so even a zero or False is sent)."""
    if value.__class__ is bool:
        return b"\x18\x01" if value else b"\x18\x00"
    if isinstance(value, int | float):
        return b"\x09" + _PACK_DOUBLE(float(value))
    if isinstance(value, str):
        data = value.encode()
        return b"\x12" + _varint(len(data)) + data
    tags = b"".join(_text_field(0x0A, t) if t else b"\x0a\x00" for t in value)
    return b"\x22" + _varint(len(tags)) + tags


def customer_to_wire(c: Customer) -> bytes:
    """``customer_to_pb(c).SerializeToString()`` written directly (a client sends one per
    customer of a batch; a test checks they parse alike)."""
    parts = [_text_field(0x0A, c.id)]
    for name, value in c.features.items():
        key = name.encode()
        fv = _feature_to_wire(value)
        entry = b"\x0a" + _varint(len(key)) + key + b"\x12" + _varint(len(fv)) + fv
        parts.append(b"\x12" + _varint(len(entry)) + entry)
    return b"".join(parts)


def batch_to_wire(
    template: pb.ChooseRequest | None, customers: Sequence[tuple[Customer, str]]
) -> bytes:
    """A ChooseBatch's bytes: the template (when given) and each (customer, request id)."""
    parts = []
    if template is not None:
        t = template.SerializeToString()
        parts.append(b"\x0a" + _varint(len(t)) + t)
    for customer, request_id in customers:
        body = customer_to_wire(customer)
        item = b"\x0a" + _varint(len(body)) + body + _text_field(0x12, request_id)
        parts.append(b"\x12" + _varint(len(item)) + item)
    return b"".join(parts)


def stream_result_to_wire(
    index: int, d: Decision, rankings: dict[tuple[int, tuple[float, ...]], bytes] | None = None
) -> bytes:
    """ChooseStreamResult{index, decision: choose_to_wire(d)}'s bytes (``rankings``: see
    :func:`choose_to_wire`)."""
    return stream_response_to_wire(index, choose_to_wire(d, rankings))


def stream_response_to_wire(index: int, response: bytes) -> bytes:
    """ChooseStreamResult{index, decision} from the ChooseResponse's own bytes (field 1 a
    varint, field 2 length-delimited: no message objects on the way)."""
    head = b"\x08" + _varint(index) if index else b""
    return head + b"\x12" + _varint(len(response)) + response


def stream_error_to_wire(index: int, code: str, message: str) -> bytes:
    """ChooseStreamResult{index, error_code, error}'s bytes."""
    return pb.ChooseStreamResult(index=index, error_code=code, error=message).SerializeToString()


def batch_result_to_wire(results: Sequence[bytes]) -> bytes:
    """ChooseBatchResult{results}'s bytes from each result's own."""
    return b"".join(b"\x0a" + _varint(len(r)) + r for r in results)


def batch_answers_to_wire(
    start: int,
    results: Sequence[Decided],
    settle: Callable[[Commit[Decision]], Decision],
) -> bytes:
    """A batch's ChooseBatchResult bytes, its results numbered from ``start``: each decision
    as ``settle`` answers its write's handle (the decision itself, or the one logged before
    under its request id; ``None`` handle: a retry, answered with the decision), or the
    error that refused it (also one ``settle`` raises)."""
    items: list[bytes] = []
    rankings: dict[tuple[int, tuple[float, ...]], bytes] = {}
    for k, r in enumerate(results):
        if not isinstance(r, OfferBanditError):
            decision, commit = r
            try:
                answer = decision if commit is None else settle(commit)
            except OfferBanditError as exc:
                r = exc
            else:
                items.append(stream_result_to_wire(start + k, answer, rankings))
                continue
        items.append(stream_error_to_wire(start + k, code_name(r), short_message(r)))
    return batch_result_to_wire(items)


def logged_treatment_to_pb(t: Treatment) -> pb.LoggedTreatment:
    if t.offer is None or t.channel is None:
        return pb.LoggedTreatment(control=True)
    return pb.LoggedTreatment(offer=offer_to_pb(t.offer), channel=channel_to_pb(t.channel))


_STATE = {
    DecisionState.PENDING_ACTIVATION: pb.DECISION_STATE_PENDING_ACTIVATION,
    DecisionState.OPEN: pb.DECISION_STATE_OPEN,
    DecisionState.CLOSED: pb.DECISION_STATE_CLOSED,
}


def decision_to_pb(s: StoredDecision, schema_version: int) -> pb.Decision:
    d = s.decision
    out = pb.Decision(
        event_id=d.event_id,
        request_id=d.request_id,
        decided_at=seconds_to_pb(d.decided_at),
        customer=customer_to_pb(d.context.customer),
        trigger=trigger_to_pb(d.context.trigger),
        treatments=[logged_treatment_to_pb(t) for t in d.treatments],
        pmf=list(d.pmf),
        chosen_index=d.chosen,
        propensity=d.propensity,
        control=d.is_control,
        model_version=d.model_version,
        policy=d.policy,
        deferred=d.deferred,
        state=_STATE[s.state],
        reward=s.reward or 0.0,
        schema_version=schema_version,
        contact_policy=d.contact_policy,
        removed=[pb.Removal(treatment=ref_to_pb(t), rule=rule) for t, rule in d.removed],
    )
    if s.activated_at is not None:
        out.activated_at.CopyFrom(seconds_to_pb(s.activated_at))
    return out


# ---- outcomes ---------------------------------------------------------------------------


def outcome_from_pb(o: pb.Outcome) -> OutcomeInput:
    return OutcomeInput(
        outcome_id=o.outcome_id,
        event_id=o.event_id,
        customer_id=o.customer_id,
        type=o.type,
        revenue=flush(o.revenue),
        occurred_at=(
            seconds_from_pb(o.occurred_at, "occurred_at") if o.HasField("occurred_at") else None
        ),
    )


def outcome_to_pb(o: OutcomeInput) -> pb.Outcome:
    out = pb.Outcome(
        outcome_id=o.outcome_id,
        event_id=o.event_id,
        customer_id=o.customer_id,
        type=o.type,
        revenue=o.revenue,
    )
    if o.occurred_at is not None:
        out.occurred_at.CopyFrom(seconds_to_pb(o.occurred_at))
    return out


OUTCOME_STATUS = {
    OutcomeStatus.ATTRIBUTED: pb.OUTCOME_STATUS_ATTRIBUTED,
    OutcomeStatus.UNATTRIBUTED: pb.OUTCOME_STATUS_UNATTRIBUTED,
    OutcomeStatus.LATE: pb.OUTCOME_STATUS_LATE,
    OutcomeStatus.DUPLICATE: pb.OUTCOME_STATUS_DUPLICATE,
}


def outcome_result_to_pb(r: OutcomeResult) -> pb.RecordOutcomeResponse:
    return pb.RecordOutcomeResponse(
        outcome_id=r.outcome_id, status=OUTCOME_STATUS[r.status], event_id=r.event_id
    )


# ---- activation -------------------------------------------------------------------------


def activation_from_pb(req: pb.ActivateRequest) -> ActivationInput:
    at = seconds_from_pb(req.activated_at, "activated_at") if req.HasField("activated_at") else None
    return ActivationInput(req.event_id, at)


def activation_to_pb(a: ActivationInput) -> pb.ActivateRequest:
    req = pb.ActivateRequest(event_id=a.event_id)
    if a.activated_at is not None:
        req.activated_at.CopyFrom(seconds_to_pb(a.activated_at))
    return req


ACTIVATION_STATUS_OF: tuple[tuple[type[OfferBanditError], pb.ActivationStatus.ValueType], ...] = (
    (AlreadyActivated, pb.ACTIVATION_STATUS_ALREADY_ACTIVATED),
    (NotDeferred, pb.ACTIVATION_STATUS_NOT_DEFERRED),
    (UnknownEvent, pb.ACTIVATION_STATUS_UNKNOWN_EVENT),
    (InvalidRequest, pb.ACTIVATION_STATUS_INVALID),
)
"""A refused activation's status, by its error (first match; anything else: FAILED)."""


def activation_result_to_pb(
    index: int, event_id: str, result: Activation | OfferBanditError
) -> pb.ActivateResult:
    """One item's result in an ActivateStream: activated, or refused with the status, code
    and message Activate would have answered it with."""
    if isinstance(result, Activation):
        return pb.ActivateResult(
            index=index,
            event_id=event_id,
            status=pb.ACTIVATION_STATUS_ACTIVATED,
            window_closes_at=seconds_to_pb(result.window_closes_at),
        )
    status = next(
        (s for cls, s in ACTIVATION_STATUS_OF if isinstance(result, cls)),
        pb.ACTIVATION_STATUS_FAILED,
    )
    return pb.ActivateResult(
        index=index,
        event_id=event_id,
        status=status,
        error_code=code_name(result),
        error=short_message(result),
    )


def _finite(x: float) -> float:
    """GetStats never carries NaN or ±inf (a sum over absurd inputs): those become 0."""
    return x if math.isfinite(x) else 0.0


def stats_to_pb(s: Stats) -> pb.Stats:
    """The stats; the incremental estimate is set once two decisions have closed (it has an
    interval from then on), so no field is ever NaN."""
    o = s.log.outcomes
    inc = s.log.incremental
    out = pb.Stats(
        decisions=s.log.decisions,
        activations=s.log.activations,
        outcomes_attributed=o.get(OutcomeStatus.ATTRIBUTED.value, 0),
        outcomes_unattributed=o.get(OutcomeStatus.UNATTRIBUTED.value, 0),
        outcomes_late=o.get(OutcomeStatus.LATE.value, 0),
        outcomes_duplicate=s.duplicates,
        attributed_revenue=_finite(s.log.attributed_revenue),
        learned_decisions=s.learned,
        pending_windows=s.log.pending_windows,
        model_version=s.model_version,
        recent=[
            pb.TreatmentStats(
                treatment=ref_to_pb(ref),
                control=ref.is_control,
                learned=n,
                mean_reward=_finite(mean),
            )
            for ref, n, mean in s.log.recent
        ],
        pending_activation=s.log.pending_activation,
        closed_decisions=s.log.closed,
        score_fallbacks=s.score_fallbacks,
        learn_skipped=s.learn_skipped,
        removals=s.removals,
        contact_policy=s.contact_policy,
    )
    values = (inc.per_decision, inc.ci_low, inc.ci_high, inc.total)
    if inc.decisions >= 2 and all(math.isfinite(v) for v in values):
        out.incremental.CopyFrom(
            pb.IncrementalEstimate(
                decisions=inc.decisions,
                per_decision=inc.per_decision,
                ci_low=inc.ci_low,
                ci_high=inc.ci_high,
                total=inc.total,
                method=inc.method,
                detectable_per_decision=_finite(inc.detectable()),
            )
        )
    return out
