"""Small pieces shared by the offline command lines (export, eval, uplift)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime


def time_arg(text: str) -> float:
    """An argparse type: seconds since the epoch, or ISO 8601 (UTC unless it says otherwise).

    >>> time_arg("1700000000.25"), time_arg("2023-11-14T22:13:20Z")
    (1700000000.25, 1700000000.0)
    """
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (ISO 8601 or epoch seconds)"
        ) from None
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()
