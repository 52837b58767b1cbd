"""Live-quality series under BentoML's multiprocess registry: whichever process takes the
feedback, ``/metrics`` (the service's exposition) shows the sum, labelled with the version and
variant of the PREDICTION (not of the process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from servingkit import metric, parse_metrics

from modelship.monitoring import metrics as names

pytestmark = pytest.mark.slow

_WORKER = """
import sys
from modelship.serving.telemetry import ServingMetrics
metrics = ServingMetrics("iris", sys.argv[1], "champion")
metrics.store_ready(["setosa", "virginica"], None)
for correct in sys.argv[2]:
    metrics.labelled("3", "canary", correct == "1", "setosa")
metrics.error("3", "canary", 2.0)
"""
_EXPOSE = """
from modelship.serving.telemetry import exposition
print(exposition()[0].decode())
"""


def test_counters_from_every_process_are_summed(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    # Two server processes (say, versions 3 and 4 behind one route) each take part of the
    # feedback for predictions of version 3 / canary.
    for served, outcomes in (("3", "1101"), ("4", "10")):
        subprocess.run([sys.executable, "-c", _WORKER, served, outcomes], env=env, check=True)
    text = subprocess.run([sys.executable, "-c", _EXPOSE], env=env, check=True, capture_output=True, text=True).stdout
    samples = parse_metrics(text)
    canary = {"model": "iris", "version": "3", "variant": "canary"}
    assert metric(samples, names.LABELLED_PREDICTIONS_TOTAL, outcome="correct", **canary) == 4
    assert metric(samples, names.LABELLED_PREDICTIONS_TOTAL, outcome="incorrect", **canary) == 2
    assert metric(samples, names.PREDICTION_ABSOLUTE_ERROR + "_count", **canary) == 2
    assert metric(samples, names.PREDICTION_SQUARED_ERROR_TOTAL, **canary) == 8.0
    # The eager zero series of each process's own version exist before any feedback for it.
    assert metric(samples, names.LABELLED_PREDICTIONS_TOTAL, version="4", variant="champion", outcome="incorrect", **{"class": "virginica"}) == 0
