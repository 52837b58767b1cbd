"""The drift monitor's evaluator child process: it evaluates the window, and stop() ends it at
once, even while it is still importing Evidently (the server's shutdown used to outlast it and
end with the pool's semaphores leaked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from servers import wait_until

from modelship.monitoring.drift import DriftResult, DriftSettings
from modelship.serving.drift_monitor import DriftMonitor

pytestmark = pytest.mark.slow

COLUMNS = ["income", "rooms"]


def _pool_children() -> list[psutil.Process]:
    """Living worker processes of this process's process pools (not multiprocessing's resource tracker)."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return alive


def _monitor(tmp_path: Path, results: list[DriftResult]) -> DriftMonitor:
    rng = np.random.default_rng(7)
    reference = pd.DataFrame({"income": rng.normal(3.0, 1.0, 500), "rooms": rng.normal(5.0, 1.0, 500)})
    path = tmp_path / "reference.parquet"
    reference.to_parquet(path)
    return DriftMonitor(
        reference_path=str(path),
        reference=reference,
        columns=COLUMNS,
        categorical=[],
        settings=DriftSettings(),
        window_size=1000,
        min_rows=200,
        interval_seconds=3600,  # evaluations in these tests are explicit
        on_result=lambda result, seconds: results.append(result),
    )


def test_stop_while_the_evaluator_warms_up_ends_the_child(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path, [])
    monitor.start()
    wait_until("the evaluator child", _pool_children, timeout=120, interval=0.05)
    monitor.stop()
    assert _pool_children() == []
    assert monitor._thread is not None
    monitor._thread.join(timeout=30)
    assert not monitor._thread.is_alive()


def test_the_child_evaluates_the_window_and_stop_ends_it(tmp_path: Path) -> None:
    results: list[DriftResult] = []
    monitor = _monitor(tmp_path, results)
    rng = np.random.default_rng(8)
    monitor.add([{"income": float(v), "rooms": float(r)} for v, r in zip(rng.normal(6.0, 1.0, 300), rng.normal(5.0, 1.0, 300), strict=True)])
    result = monitor.evaluate_now()
    assert result is not None and results == [result]
    assert result.features["income"].drifted and not result.features["rooms"].drifted
    # The child left the evaluation's Evidently report where GET /drift/report reads it.
    report = Path(monitor.report_path).read_text()
    assert report.lstrip().lower().startswith("<!doctype html") or "<html" in report[:500].lower()
    assert "income" in report and not list(Path(monitor.report_path).parent.glob("*.partial"))
    assert len(_pool_children()) == 1
    monitor.stop()
    assert _pool_children() == []
