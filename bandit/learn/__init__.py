"""The learning path, beside the Choose path: the **closer** closes attribution windows on
schedule (fixing rewards), the **learner** learns closed decisions in log order, checkpoints
model + log position atomically and publishes each checkpoint to the decider. Where a
restarted service starts from — the newest checkpoint, or an initial model — is
:func:`~bandit.learn.start.starting_point`."""

from bandit.learn.closer import Closer
from bandit.learn.learning import Learning, learnable
from bandit.learn.start import Start, starting_point

__all__ = ["Closer", "Learning", "Start", "learnable", "starting_point"]
