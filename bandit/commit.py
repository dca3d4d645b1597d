"""One handle per queued log write: what a transport holds between submitting and answering.

The service queues a write on the decision log and hands back a :class:`Commit`. Its holder
either blocks on :meth:`Commit.wait` (group commit with the other waiters), or gives an
``on_done`` callback at submission and is called once the write is durable — on whichever
thread committed it. A holder that submitted with ``hold=True`` promised to say who commits:
:meth:`Commit.commit_here` (on its own thread, now) or :meth:`Commit.hand_off` (the log's
writer thread). How the log batches and schedules its commits stays inside the log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")

OnDone = Callable[[], None]
"""Called once on the committing thread when a write is durable (or failed); must be quick
and must not block."""


class Scheduler(Protocol):
    """What a log offers its handles (every :class:`bandit.log.DecisionLog` does)."""

    def wait(self, item: Any) -> Any:
        """Until ``item`` is committed; its value, or raises what its write raised."""

    def commit_queued(self) -> bool:
        """Commit what is queued on the calling thread, unless a commit is under way."""

    def wake_writer(self) -> None:
        """Leave what is queued to the log's writer thread."""


class Queued(Protocol):
    """A queued write as the log keeps it."""

    @property
    def done(self) -> bool: ...

    def result(self) -> Any: ...


class Commit(Generic[T]):
    """A write queued on the decision log, and the answer it gives once committed.

    ``answer`` turns the write's value into what the holder is told (for a Choose, the
    decision or the one an earlier retry logged).
    """

    __slots__ = ("_answer", "_item", "_log")

    def __init__(self, log: Scheduler, item: Queued, answer: Callable[[Any], T]) -> None:
        self._log = log
        self._item = item
        self._answer = answer

    @property
    def done(self) -> bool:
        """Whether the write is committed (or failed)."""
        return self._item.done

    def wait(self) -> T:
        """Block until the write is durable (committing it, and what else waits, if nobody
        does) and give the answer; raises what the write raised."""
        return self._answer(self._log.wait(self._item))

    def result(self) -> T:
        """The answer once :attr:`done` (after ``on_done`` was called); raises what the write
        raised."""
        return self._answer(self._item.result())

    def commit_here(self) -> None:
        """Commit what is queued on this thread now (unless a commit is already under way,
        which then takes this write too)."""
        self._log.commit_queued()

    def hand_off(self) -> None:
        """Leave the write to the log's writer thread."""
        self._log.wake_writer()


__all__ = ["Commit", "OnDone", "Scheduler"]
