"""``offerbandit campaign``: decide for a whole audience in one job, through a running server.

    offerbandit campaign run --campaign xmas.toml --audience customers.parquet \\
        --out sendlist.csv [--server 127.0.0.1:50051]
    offerbandit campaign activate --sent sent.csv [--server 127.0.0.1:50051]

``run`` streams the audience (Parquet or CSV: a ``customer_id`` column, every other column a
customer feature; empty cells are left out) through one ``ChooseBatchStream`` to the server
(chunks of 1,024 customers under one request template, each chunk decided in one pass and one
log write), so every decision goes through the live policy, the contact policies and the log
exactly as a Choose does (the same decisions; a test checks it), and each is **deferred**:
its attribution window opens when the send platform confirms the send (``activate``). The
send list (CSV or Parquet) has one row per customer: ``customer_id, event_id, action``
(``send``; ``control``: the policy leaves this customer alone; ``holdout``: the campaign's
holdout, left alone on purpose), ``offer_id, channel_id, propensity, model_version,
planned_send_at`` and ``error`` (the reason, for a customer the server refused; the rest
goes on). A row is written only once its decision is durable.

Resumable: each request's id is ``<campaign id>:<customer id>``, so a re-run after a crash
(or of a grown audience) answers already-decided customers with their logged decision and
decides nobody twice.

The campaign file (TOML)::

    id = "xmas-2026"                  # names the campaign's request ids
    trigger = "campaign_xmas"         # the trigger type of its decisions
    planned_send_at = 2026-12-20T09:00:00+01:00   # optional, copied to the send list
    trigger_features = {season = "xmas"}           # optional
    holdout = 0.1                     # optional: the campaign's holdout share

    [[offer]]
    id = "d10"
    discount_rate = 0.1               # or fixed_cost = 4.0
    features = {kind = "discount"}

    [[channel]]
    id = "email"
    contact_cost = 0.01

``activate`` reads a file with an ``event_id`` column (and optionally ``sent_at``, seconds or
ISO 8601) and activates each decision through one ``ActivateStream`` (a progress bar on the
way); with ``--send-list`` also the send list's control and holdout rows, at the first send,
so their windows run alongside the sends (``offerbandit uplift --campaign ID`` compares
them). It prints how many were activated, already activated (a re-run: nothing changed),
unknown, not deferred, invalid or failed, and exits 1 when any were not deferred, invalid or
failed.
The server address and a bearer token come from ``--server`` and ``--token`` (or
``OFFERBANDIT_TOKEN``).
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime as dt
import math
import sys
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from bandit.choose import HOLDOUT_POLICY
from bandit.records import ActivationInput
from bandit.types import Channel, Customer, FeatureValue, Offer, Trigger
from server.client import OfferBanditClient
from server.converters import batch_template_to_pb
from server.pb.offerbandit.v1 import decision_service_pb2 as pb

SEND_LIST_COLUMNS = [
    "customer_id",
    "event_id",
    "action",
    "offer_id",
    "channel_id",
    "propensity",
    "model_version",
    "planned_send_at",
    "error",
]


class CampaignError(ValueError):
    """A campaign file or audience that cannot be used; the message says where."""


@dataclass(frozen=True)
class Campaign:
    id: str
    trigger: Trigger
    offers: list[Offer]
    channels: list[Channel]
    planned_send_at: str = ""
    holdout: float = 0.0
    """The campaign's holdout share: customers left out on purpose (control, logged as
    holdout decisions), the comparison ``offerbandit uplift --campaign`` reports."""
    source: str = field(default="", compare=False)

    @classmethod
    def load(cls, path: Path) -> Campaign:
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CampaignError(f"campaign file {path}: {exc}") from exc
        unknown = set(doc) - {
            "id",
            "trigger",
            "planned_send_at",
            "trigger_features",
            "offer",
            "channel",
            "holdout",
        }
        if unknown:
            raise CampaignError(f"campaign file {path}: unknown key(s) {sorted(unknown)}")
        cid, trigger = doc.get("id"), doc.get("trigger")
        if not isinstance(cid, str) or not cid or ":" in cid:
            raise CampaignError("id: a non-empty string without ':'")
        if not isinstance(trigger, str) or not trigger:
            raise CampaignError("trigger: a non-empty string (the trigger type)")
        offers = [_offer(i, o) for i, o in enumerate(doc.get("offer", []))]
        channels = [_channel(i, c) for i, c in enumerate(doc.get("channel", []))]
        if not offers or not channels:
            raise CampaignError("a campaign needs at least one [[offer]] and one [[channel]]")
        send_at = doc.get("planned_send_at", "")
        if isinstance(send_at, dt.datetime):
            send_at = send_at.isoformat()
        features = doc.get("trigger_features", {})
        if not isinstance(features, dict):
            raise CampaignError("trigger_features: a table")
        holdout = doc.get("holdout", 0.0)
        if isinstance(holdout, bool) or not isinstance(holdout, int | float):
            raise CampaignError("holdout: a share between 0 and 1 (e.g. 0.1)")
        if not 0.0 <= holdout < 1.0:
            raise CampaignError(f"holdout: a share in [0, 1), not {holdout}")
        return cls(
            cid,
            Trigger(trigger, features),
            offers,
            channels,
            str(send_at),
            float(holdout),
            str(path),
        )


def _offer(i: int, o: Any) -> Offer:
    if not isinstance(o, dict) or not isinstance(o.get("id"), str):
        raise CampaignError(f"offer[{i}]: a table with an id")
    extra = set(o) - {"id", "features", "fixed_cost", "discount_rate"}
    if extra:
        raise CampaignError(f"offer[{i}]: unknown key(s) {sorted(extra)}")
    return Offer(
        o["id"],
        dict(o.get("features", {})),
        fixed_cost=float(o.get("fixed_cost", 0.0)),
        discount_rate=float(o.get("discount_rate", 0.0)),
    )


def _channel(i: int, c: Any) -> Channel:
    if not isinstance(c, dict) or not isinstance(c.get("id"), str):
        raise CampaignError(f"channel[{i}]: a table with an id")
    extra = set(c) - {"id", "features", "contact_cost"}
    if extra:
        raise CampaignError(f"channel[{i}]: unknown key(s) {sorted(extra)}")
    return Channel(
        c["id"], dict(c.get("features", {})), contact_cost=float(c.get("contact_cost", 0.0))
    )


def audience(path: Path, batch_rows: int = 10_000) -> Iterator[Customer]:
    """The audience's customers, streamed (Parquet by row groups, CSV in chunks)."""
    if path.suffix.lower() == ".parquet":
        frames: Iterator[pd.DataFrame] = (
            b.to_pandas() for b in pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
        )
    else:
        frames = iter(pd.read_csv(path, chunksize=batch_rows, keep_default_na=True))
    for frame in frames:
        if "customer_id" not in frame.columns:
            raise CampaignError(f"{path}: no customer_id column")
        names = [c for c in frame.columns if c != "customer_id"]
        for row in frame.itertuples(index=False, name=None):
            values = dict(zip(frame.columns, row, strict=True))
            cid = values["customer_id"]
            if cid is None or (isinstance(cid, float) and math.isnan(cid)):
                continue
            features: dict[str, FeatureValue] = {}
            for n in names:
                v = values[n]
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                features[n] = v.item() if hasattr(v, "item") else v
            yield Customer(str(cid), features)


@dataclass
class RunSummary:
    decided: int = 0
    sent: int = 0
    control: int = 0
    holdout: int = 0
    refused: int = 0


class Chooser(Protocol):
    """What decides a campaign's chunks: a client of a server
    (:meth:`server.client.OfferBanditClient.choose_batches`, one ChooseBatchStream), or
    :class:`offerbandit.campaign_local.LocalChooser` in this process."""

    def choose_batches(
        self,
        template: pb.ChooseRequest,
        chunks: Iterable[Sequence[tuple[Customer, str]]],
        timeout: float | None = None,
    ) -> Iterator[pb.ChooseBatchResult]: ...


CHUNK = 1024
"""Customers per ChooseBatch message (1,024 measured faster than 512 or 2,048 over the stream:
docs/campaigns.md)."""


def run(
    client: Chooser,
    campaign: Campaign,
    customers: Iterator[Customer],
    out: Path,
    *,
    progress: bool = True,
    limit: int | None = None,
    chunk: int = CHUNK,
) -> RunSummary:
    """Decide for every customer through one ChooseBatchStream (``chunk`` customers a
    message, each decided in one pass) and write the send list."""
    pending: collections.deque[list[str]] = collections.deque()
    """Chunks sent and not yet answered (answers come in order): memory bounded by what is
    in flight, not by the audience."""
    template = batch_template_to_pb(
        campaign.trigger,
        campaign.offers,
        campaign.channels,
        defer_activation=True,
        campaign_id=campaign.id,
        campaign_holdout_share=campaign.holdout,
    )

    def chunks() -> Iterator[list[tuple[Customer, str]]]:
        batch: list[tuple[Customer, str]] = []
        for n, customer in enumerate(customers):
            if limit is not None and n >= limit:
                break
            batch.append((customer, f"{campaign.id}:{customer.id}"))
            if len(batch) >= chunk:
                pending.append([c.id for c, _ in batch])
                yield batch
                batch = []
        if batch:
            pending.append([c.id for c, _ in batch])
            yield batch

    summary = RunSummary()
    with (
        _SendList(out) as sink,
        tqdm(desc=f"campaign {campaign.id}", unit="dec", disable=not progress) as bar,
    ):
        for message in client.choose_batches(template, chunks(), timeout=None):
            ids = pending.popleft()
            if len(message.results) != len(ids):
                raise CampaignError(
                    f"{len(message.results)} answers arrived for a chunk of {len(ids)} customers"
                )
            for customer_id, result in zip(ids, message.results, strict=True):
                if result.index != summary.decided:
                    raise CampaignError(
                        f"answer {result.index} arrived in place of {summary.decided}: out of order"
                    )
                sink.write(_row(customer_id, result, campaign, summary))
                summary.decided += 1
            bar.update(len(ids))
    return summary


def _row(
    customer_id: str, result: pb.ChooseStreamResult, campaign: Campaign, summary: RunSummary
) -> list[Any]:
    """The send list's row of one customer's result (counted in ``summary``)."""
    if result.error_code:
        summary.refused += 1
        return [customer_id, "", "", "", "", None, "", "", f"{result.error_code}: {result.error}"]
    d = result.decision
    chosen = d.chosen
    send = bool(chosen.offer_id)
    held = d.policy == HOLDOUT_POLICY
    summary.sent += send
    summary.control += not send and not held
    summary.holdout += held
    return [
        customer_id,
        d.event_id,
        "send" if send else "holdout" if held else "control",
        chosen.offer_id,
        chosen.channel_id,
        d.propensity,
        d.model_version,
        campaign.planned_send_at,
        "",
    ]


class _SendList:
    """Rows appended to a CSV or Parquet file as they come (Parquet in row groups)."""

    def __init__(self, path: Path, group_rows: int = 10_000) -> None:
        self.path = path
        self.parquet = path.suffix.lower() == ".parquet"
        self.group_rows = group_rows
        self.rows: list[list[Any]] = []
        self.tmp = path.with_name(path.name + ".partial")

    def __enter__(self) -> _SendList:
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        if self.parquet:
            schema = pa.schema(
                [(c, pa.float64() if c == "propensity" else pa.string()) for c in SEND_LIST_COLUMNS]
            )
            self.writer: Any = pq.ParquetWriter(self.tmp, schema)
        else:
            self.file = self.tmp.open("w", newline="", encoding="utf-8")
            self.writer = csv.writer(self.file)
            self.writer.writerow(SEND_LIST_COLUMNS)
        return self

    def write(self, row: list[Any]) -> None:
        if self.parquet:
            self.rows.append(row)
            if len(self.rows) >= self.group_rows:
                self._flush()
        else:
            self.writer.writerow(row)

    def _flush(self) -> None:
        if self.rows:
            columns = list(zip(*self.rows, strict=True))
            self.writer.write_table(
                pa.table(
                    {c: list(v) for c, v in zip(SEND_LIST_COLUMNS, columns, strict=True)},
                    schema=self.writer.schema,
                )
            )
            self.rows = []

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self.parquet:
            self._flush()
            self.writer.close()
        else:
            self.file.close()
        if exc_type is None:
            self.tmp.replace(self.path)  # a complete send list, or none: never half of one


def _when(text: Any) -> float | None:
    if text is None or (isinstance(text, float) and math.isnan(text)) or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        t = dt.datetime.fromisoformat(str(text))
        return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


def _read(path: Path) -> pd.DataFrame:
    frame = (
        pq.read_table(path).to_pandas() if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    )
    if "event_id" not in frame.columns:
        raise CampaignError(f"{path}: no event_id column")
    return frame


ACTIVATION_COUNTS = {
    pb.ACTIVATION_STATUS_ACTIVATED: "activated",
    pb.ACTIVATION_STATUS_ALREADY_ACTIVATED: "already activated",
    pb.ACTIVATION_STATUS_UNKNOWN_EVENT: "unknown",
    pb.ACTIVATION_STATUS_NOT_DEFERRED: "not deferred",
    pb.ACTIVATION_STATUS_INVALID: "invalid",
    pb.ACTIVATION_STATUS_FAILED: "failed",
}
"""The count each ActivateStream result goes to (``activate`` returns them in this order)."""

ACTIVATION_FAILURES = ("not deferred", "invalid", "failed")
"""Counts that make ``campaign activate`` exit 1: a row the file should not have had, or
one the server could not write. Unknown event ids and resent confirmations (already
activated: a re-run after a crash) do not."""


def activate(
    client: OfferBanditClient,
    sent: Path,
    send_list: Path | None = None,
    *,
    progress: bool = True,
    first_errors: dict[str, str] | None = None,
) -> dict[str, int]:
    """Activate every event id in ``sent`` through one ActivateStream; counts by result
    (:data:`ACTIVATION_COUNTS`), each row counted once its activation is durable or refused.

    With ``send_list`` (the campaign's), its ``control`` and ``holdout`` rows are activated
    too — nothing is sent to them, but their attribution windows must run alongside the sends
    for the campaign's uplift to compare like with like: they open at the earliest
    ``sent_at`` in ``sent`` (now, when it has none). Every ``sent_at`` is read before anything
    is sent: one that is not a time refuses the file (:class:`CampaignError`), nothing
    activated. Re-running on the same files is safe: what was activated counts as ``already
    activated``. ``first_errors`` (when given) receives, per count other than ``activated``,
    where its first row is and its error (``FILE, row N: CODE: message``)."""
    frame = _read(sent)
    raw = list(frame["sent_at"]) if "sent_at" in frame.columns else [None] * len(frame)
    at = [_sent_at(x, sent, row) for row, x in enumerate(raw, start=2)]
    events = [str(e) for e in frame["event_id"]]
    left_rows: list[int] = []
    if send_list is not None:
        rows = _read(send_list)
        if "action" not in rows.columns:
            raise CampaignError(f"{send_list}: no action column (not a send list)")
        chosen = rows["action"].isin(["control", "holdout"]).to_numpy()
        left = rows[chosen]
        left_rows = [int(i) + 2 for i in chosen.nonzero()[0]]
        times = [t for t in at if t is not None]
        start = min(times) if times else None
        events += [str(e) for e in left["event_id"]]
        at += [start] * len(left)
    counts = dict.fromkeys(ACTIVATION_COUNTS.values(), 0)
    items = (ActivationInput(e, t) for e, t in zip(events, at, strict=True))
    with tqdm(
        total=len(events), desc="activate", unit="act", disable=not progress or not events
    ) as bar:
        for n, result in enumerate(client.activate_stream(items)):
            if result.index != n:
                raise CampaignError(f"answer {result.index} arrived in place of {n}: out of order")
            name = ACTIVATION_COUNTS.get(result.status, "failed")
            counts[name] += 1
            if first_errors is not None and result.error_code and name not in first_errors:
                where = f"{sent}, row {n + 2}"
                if n >= len(frame):
                    where = f"{send_list}, row {left_rows[n - len(frame)]}"
                first_errors[name] = f"{where}: {result.error_code}: {result.error}"
            bar.update(1)
    return counts


def _sent_at(text: Any, path: Path, row: int) -> float | None:
    try:
        return _when(text)
    except ValueError as exc:
        raise CampaignError(f"{path}, row {row}: sent_at {text!r} is not a time ({exc})") from exc


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="offerbandit campaign",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="action", required=True)
    r = sub.add_parser("run", help="decide for an audience and write the send list")
    r.add_argument("--campaign", type=Path, required=True)
    r.add_argument("--audience", type=Path, required=True, help="Parquet or CSV")
    r.add_argument("--out", type=Path, required=True, help="the send list (.csv or .parquet)")
    r.add_argument(
        "--data-dir",
        type=Path,
        help="decide in this process on this data folder instead of through --server (stop "
        "the server first: the log has one writer)",
    )
    r.add_argument("--config", type=Path, help="with --data-dir: the settings file serve uses")
    a = sub.add_parser("activate", help="activate the decisions the platform has sent")
    a.add_argument("--sent", type=Path, required=True, help="a file with an event_id column")
    a.add_argument(
        "--send-list",
        type=Path,
        help="the campaign's send list: also activate its control and holdout rows (at the "
        "first send), so the campaign's uplift can be measured",
    )
    for q in (r, a):
        q.add_argument("--server", default="127.0.0.1:50051")
        q.add_argument("--token", help="bearer token (default: OFFERBANDIT_TOKEN)")
    ns = p.parse_args(argv)
    try:
        if ns.action == "run":
            campaign = Campaign.load(ns.campaign)  # a bad file is refused before anything opens
            if ns.data_dir is not None:
                return _run_here(campaign, ns)
            with OfferBanditClient(ns.server, token=ns.token, timeout=30) as client:
                s = run(client, campaign, audience(ns.audience), ns.out)
            _print_summary(campaign, s, ns.out)
            return 0
        errors: dict[str, str] = {}
        with OfferBanditClient(ns.server, token=ns.token, timeout=30) as client:
            counts = activate(client, ns.sent, send_list=ns.send_list, first_errors=errors)
        print(", ".join(f"{v} {k}" for k, v in counts.items()))
        for name, error in errors.items():
            print(f"{name}: {counts[name]}, the first at {error}", file=sys.stderr)
        return 1 if any(counts[k] for k in ACTIVATION_FAILURES) else 0
    except (CampaignError, OSError) as exc:
        print(f"offerbandit campaign: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(
            f"offerbandit campaign: the server answered {exc.code().name}: {exc.details()}",
            file=sys.stderr,
        )
        return 1


def _print_summary(campaign: Campaign, s: RunSummary, out: Path) -> None:
    print(
        f"campaign {campaign.id}: {s.decided} customers, {s.sent} to send, "
        f"{s.control} left alone (control), {s.holdout} in the campaign's holdout, "
        f"{s.refused} refused; send list {out}"
    )


def _run_here(campaign: Campaign, ns: argparse.Namespace) -> int:
    """``run --data-dir``: the decision service in this process (the server stopped)."""
    from offerbandit.campaign_local import LocalChooser, open_local

    service = open_local(ns.data_dir, ns.config)
    try:
        s = run(LocalChooser(service), campaign, audience(ns.audience), ns.out)
    finally:
        service.stop()
    _print_summary(campaign, s, ns.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
