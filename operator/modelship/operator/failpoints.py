"""Crash points for restart tests (etcd's gofail, reduced to one line): a point named in
``MODELSHIP_FAILPOINTS`` (comma-separated) SIGKILLs the operator when reached, so a test can
stop it exactly between two writes — e.g. after the MLflow alias moved and before the status
says so — and check that a restart reaches the same end state. Unset, a point costs one set lookup."""

from __future__ import annotations

import os
import signal

from modelship.api.names import ENV_FAILPOINTS

#: After the MLflow alias ``champion`` moved, before the status records the promotion.
AFTER_ALIAS_MOVE = "after-alias-move"

_ARMED = frozenset(p for p in os.environ.get(ENV_FAILPOINTS, "").split(",") if p)


def hit(name: str) -> None:
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
