"""An estimator for rollout tests whose served copy can be made to fail or to be slow: a real
ridge regression, trained and registered like any ``module:Class`` estimator, whose ``predict``
reads the model server's environment. Training never sets these variables, so the version passes
its quality gate; the test then starts its model server with one of them, and the server answers
500 (counted as ``outcome="error"``) or slowly, as a broken or slow candidate would.

The training and serving processes import this module, so they need ``tests/support`` on their
``PYTHONPATH`` (:data:`PYTHONPATH_ENTRY`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge

#: Set to ``error`` to make every prediction raise, after the first: the model server's load-time
#: warm-up prediction must pass, or the server would never become ready (a candidate that is
#: never ready gets no traffic, which is not the failure under test).
FAULT_ENV = "MODELSHIP_TEST_FAULT"
#: Seconds every prediction sleeps.
DELAY_ENV = "MODELSHIP_TEST_DELAY_SECONDS"
ESTIMATOR = "faultymodels:FaultInjectingRegressor"
PYTHONPATH_ENTRY = str(Path(__file__).resolve().parent)
#: Predictions made in this process (not on the instance: the trained instance is pickled).
_calls = 0


class FaultInjectingRegressor(RegressorMixin, BaseEstimator):
    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, X, y):
        self.model_ = Ridge(alpha=self.alpha).fit(X, y)
        return self

    def predict(self, X):
        global _calls
        _calls += 1
        if os.environ.get(FAULT_ENV) == "error" and _calls > 1:
            raise RuntimeError("injected fault: this version fails every prediction")
        delay = float(os.environ.get(DELAY_ENV) or 0)
        if delay:
            time.sleep(delay)
        return self.model_.predict(X)


def with_pythonpath(env: dict[str, str]) -> dict[str, str]:
    """``env`` with this module importable."""
    paths = [PYTHONPATH_ENTRY, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {**env, "PYTHONPATH": os.pathsep.join(paths)}
