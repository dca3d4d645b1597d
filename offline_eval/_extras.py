"""The ``offline`` extra: MLflow and matplotlib are installed with ``offerbandit[offline]``
(the development install has them); serving, exports and the estimators do without.

>>> require("json", "reading JSON")
>>> require("no_such_module_here", "doing X")
Traceback (most recent call last):
ModuleNotFoundError: doing X needs no_such_module_here: pip install 'offerbandit[offline]'
"""

from __future__ import annotations

import importlib.util


def require(module: str, what: str) -> None:
    """Raise a clear ``ModuleNotFoundError`` when ``module`` (of the extra) is missing."""
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(
            f"{what} needs {module}: pip install 'offerbandit[offline]'", name=module
        )
