"""What an offline command can use of a decision log, said before it runs or instead of it.

Offline estimates use *closed* decisions only: a decision's reward is final when its
attribution window closes. A log whose decisions are all still open (a server started
minutes ago, a simulation cut short) has nothing to evaluate yet; :func:`check_closed` says
how many decisions there are, how many are open or waiting for ``Activate``, and when their
windows close, on stderr, and tells the command whether to go on.

>>> from bandit.log.reader import WindowCounts
>>> print(describe(WindowCounts(10, 0, 8, 2, 1.7e9, 1.7e9 + 3600), now=1.7e9 - 60))
10 decisions, none closed yet: 8 with their attribution window open (they close from \
2023-11-14 22:13 UTC, in 1 min, to 2023-11-14 23:13 UTC, in 1 h 1 min); 2 deferred, \
waiting for Activate (never closed without it)
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from bandit.log.reader import Selection, WindowCounts

_EXPORT_SUFFIXES = (".parquet", ".json", ".dsjson", ".csv")


def window_counts(
    log: str | Path, *, since: float | None = None, until: float | None = None
) -> WindowCounts:
    """Closed, open and waiting decisions of the log ``log`` (a SQLite data folder or its
    ``decisions.sqlite``, or a ``postgresql://`` URL) decided in ``[since, until)``; voided
    decisions left out."""
    from offline_eval.io.logs import open_log

    reader = open_log(log)
    try:
        return reader.window_counts(Selection(closed_only=False, since=since, until=until))
    finally:
        reader.close()


def _when(t: float, now: float) -> str:
    """``2023-11-14 22:13 UTC, in 1 h 5 min`` (or ``… ago``)."""
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")
    delta = t - now
    s = abs(delta)
    if s < 60:
        span = f"{s:.0f} s"
    elif s < 3600:
        span = f"{s // 60:.0f} min"
    elif s < 86400:
        span = f"{s // 3600:.0f} h {s % 3600 // 60:.0f} min"
    else:
        span = f"{s // 86400:.0f} d {s % 86400 // 3600:.0f} h"
    return f"{stamp}, {'in ' + span if delta >= 0 else span + ' ago'}"


def describe(counts: WindowCounts, now: float | None = None) -> str:
    """The counts in words: how many decisions, closed, open (and when they close), waiting."""
    now = time.time() if now is None else now
    c = counts
    if c.decisions == 0:
        return "no decisions"
    head = f"{c.decisions:,} decisions, " + (
        "none closed yet" if c.closed == 0 else f"{c.closed:,} closed"
    )
    parts = []
    if c.open:
        text = f"{c.open:,} with their attribution window open"
        if c.first_close is not None and c.last_close is not None:
            if c.first_close == c.last_close:
                text += f" (it closes {_when(c.first_close, now)})"
            else:
                text += (
                    f" (they close from {_when(c.first_close, now)}, to {_when(c.last_close, now)})"
                )
        parts.append(text)
    if c.awaiting_activation:
        parts.append(
            f"{c.awaiting_activation:,} deferred, waiting for Activate (never closed without it)"
        )
    text = head + (": " + "; ".join(parts) if parts else "")
    if c.open and c.first_close is not None and c.first_close <= now:
        text += (
            ". Windows that have ended close when the server runs (offerbandit serve with this "
            "data folder closes them within a second)"
        )
    return text


def check_closed(
    log: str | Path,
    *,
    since: float | None = None,
    until: float | None = None,
    prog: str,
    loaded: int | None = None,
    stream: TextIO | None = None,
    now: float | None = None,
) -> bool:
    """Whether ``log`` has closed decisions to evaluate or export; says why not on
    ``stream`` (stderr), and notes the open decisions left out when there are some.

    ``log`` is a SQLite log (data folder or ``decisions.sqlite``), or an export file: then
    only ``loaded`` (the rows read from it) is known. Call it with the rows a command loaded;
    a command goes on only when it returns true (and otherwise exits non-zero).
    """
    out = sys.stderr if stream is None else stream
    period = "" if since is None and until is None else " in the period asked for"
    if Path(log).suffix.lower() in _EXPORT_SUFFIXES:
        if loaded:
            return True
        print(f"{prog}: nothing to evaluate: {log} holds no closed decisions{period}", file=out)
        return False
    counts = window_counts(log, since=since, until=until)
    closed = counts.closed if loaded is None else loaded
    if closed > 0:
        if counts.open or counts.awaiting_activation:
            print(
                f"{prog}: note: using the {closed:,} closed decisions of {log}{period}; "
                f"the others are left out: {describe(counts, now)}",
                file=out,
            )
        return True
    if counts.decisions == 0:
        print(f"{prog}: nothing to evaluate: {log} has no decisions{period}", file=out)
        return False
    print(
        f"{prog}: nothing to evaluate yet: {log} has {describe(counts, now)}. Offline "
        "estimates need closed decisions (their reward is final when the attribution window "
        "closes); run again once windows have closed",
        file=out,
    )
    return False


__all__ = ["check_closed", "describe", "window_counts"]
