"""The one exception hierarchy of offerbandit. No transport codes live here.

::

    OfferBanditError
    ├── InvalidRequest        a field of a request is missing, malformed or out of bounds
    │   └── TooLarge          more treatments / features / items than the configured limits
    ├── UnknownEvent          no decision has that event id
    ├── Conflict              the id exists already with a different payload
    ├── InvalidState          the request is well formed but the record is in the wrong state
    │   ├── NotDeferred       activating a decision that was not deferred
    │   └── AlreadyActivated  activating a decision activated before
    ├── NotReady              the service is starting or stopping
    ├── Overloaded            more calls or work in flight than the configured limits
    └── StorageError          the decision log could not be read or written

``server`` maps each class to one gRPC status code in a single table.
"""

from __future__ import annotations

QUOTE_LIMIT = 64
"""Longest part of a request value an error message quotes: a status must fit its trailer."""


def quote(value: str, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)``, truncated to ``limit`` characters of the value (errors quote input).

    >>> quote("abc")
    "'abc'"
    >>> quote("x" * 100, limit=4)
    "'xxxx'… (100 characters)"
    """
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


class OfferBanditError(Exception):
    """Base of every error offerbandit raises on purpose."""


class InvalidRequest(OfferBanditError):
    """A request field is missing, malformed or out of bounds. ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class TooLarge(InvalidRequest):
    """More items than a configured limit allows."""


class UnknownEvent(OfferBanditError):
    """No decision has this event id."""

    def __init__(self, event_id: str, field: str = "event_id") -> None:
        self.event_id = event_id
        self.field = field
        super().__init__(f"{field}: no decision with event id {quote(event_id)}")


class Conflict(OfferBanditError):
    """The idempotency key exists already, with a different payload."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


class InvalidState(OfferBanditError):
    """The record exists but is in a state that does not allow this request."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


class NotDeferred(InvalidState):
    """Activating a decision that was not deferred (its window opened when it was made)."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__("event_id", f"decision {quote(event_id)} was not deferred")


class AlreadyActivated(InvalidState):
    """Activating a decision that is activated already (a retried activation: nothing is
    written, its window stays as the first activation opened it)."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__("event_id", f"decision {quote(event_id)} is already activated")


class NotReady(OfferBanditError):
    """The service is not serving (starting, or shutting down)."""


class Overloaded(OfferBanditError):
    """Too much in flight (calls, queued writes): try again later."""


class StorageError(OfferBanditError):
    """The decision log failed."""
