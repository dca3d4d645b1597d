"""Contact policies: marketing rules (caps, repeats, suppressions, quiet hours, offer validity
and budgets) applied as eligibility before scoring. Pure rules over plain records; see
:mod:`bandit.contact.policy` for the file format."""

from bandit.contact.history import (
    Budgets,
    BudgetUse,
    Contact,
    CustomerHistory,
    LoggedHistory,
    NegativeOutcome,
)
from bandit.contact.policy import ContactPolicy, PolicyError, Situation, Verdict

__all__ = [
    "BudgetUse",
    "Budgets",
    "Contact",
    "ContactPolicy",
    "CustomerHistory",
    "LoggedHistory",
    "NegativeOutcome",
    "PolicyError",
    "Situation",
    "Verdict",
]
