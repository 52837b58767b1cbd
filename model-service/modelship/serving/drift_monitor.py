"""The drift window of a model server and its periodic evaluation, off the request path.

The request path only appends validated records to a bounded deque (``windowSize``); invalid
requests never reach it. A daemon thread wakes every ``interval`` and, when the window holds at
least ``minRows`` rows and has changed since the last evaluation, copies it and compares it with the training reference sample through
:func:`modelship.monitoring.drift.compute_drift`, then exports the gauges. The evaluator also
writes the Evidently report of each evaluation as HTML to :attr:`DriftMonitor.report_path`
(replaced atomically), which ``GET /drift/report`` serves as a file: nothing is rendered on a
request.

Evidently is slow (seconds for a few thousand rows) and mostly pure Python, so in the same
process it would hold the GIL and stall requests. By default the evaluation runs in one child
process (spawned once, reference loaded once, ``nice`` 10 so the kernel favours the server);
``MODELSHIP_DRIFT_EXECUTOR=thread`` keeps it in-process (for comparison, or where a child
process is not wanted).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from modelship.monitoring.drift import DriftResult, DriftSettings, drift_report

log = logging.getLogger(__name__)

#: Niceness of the drift child process.
DRIFT_NICENESS = 10

_reference: Any = None
_categorical: list[str] | None = None


def _exit_with_parent(parent: int) -> None:
    """Leave as soon as the server is gone, whatever this process is busy with."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def _init_child(reference_path: str, categorical: list[str], columns: list[str], niceness: int) -> None:
    global _reference, _categorical
    import signal

    import pandas as pd

    # The server owns this process's lifetime: a shutdown signal sent to the whole group must
    # not kill it mid-task (the server then reports a broken pool); it exits when the server
    # shuts the pool down or goes away.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    if niceness:
        try:
            os.nice(niceness)
        except OSError:
            pass
    _reference = pd.read_parquet(reference_path, columns=columns)
    _categorical = categorical
    import evidently.presets  # noqa: F401 - pay the import once, before the first evaluation


def evaluate_and_save(current: Any, reference: Any, settings: DriftSettings, categorical: list[str] | None, report_path: str | None) -> DriftResult:
    """One evaluation; its HTML report replaces the one at ``report_path`` (readers never see half a file)."""
    result, snapshot = drift_report(current, reference, settings, categorical)
    if report_path:
        partial = f"{report_path}.{os.getpid()}.partial"
        snapshot.save_html(partial)
        os.replace(partial, report_path)
    return result


def _evaluate_in_child(columns: list[str], rows: list[dict[str, Any]], settings: DriftSettings, report_path: str | None = None) -> DriftResult:
    import pandas as pd

    current = pd.DataFrame.from_records(rows, columns=columns)
    return evaluate_and_save(current, _reference, settings, _categorical, report_path)


def _warm() -> bool:
    return True


def _shut_down(executor: Executor) -> None:
    """Stop the evaluator now. The child may be seconds into an evaluation or into importing
    Evidently, and ignores SIGTERM (see ``_init_child``); waiting for it outlasted the server's
    shutdown, which then ended the server with the pool's queues open ("leaked semaphore
    objects" at exit). An interrupted evaluation loses nothing: the next one starts afresh."""
    if not isinstance(executor, ProcessPoolExecutor):
        executor.shutdown(wait=False, cancel_futures=True)  # a thread cannot be stopped; it ends with the process
        return
    kill_workers = getattr(executor, "kill_workers", None)  # Python 3.14
    if kill_workers is not None:
        kill_workers()
    else:
        for process in list((getattr(executor, "_processes", None) or {}).values()):
            process.kill()
    executor.shutdown(wait=True, cancel_futures=True)


class DriftMonitor:
    def __init__(
        self,
        reference_path: str,
        reference: Any,
        columns: list[str],
        categorical: list[str],
        settings: DriftSettings,
        window_size: int,
        min_rows: int,
        interval_seconds: float,
        on_result: Callable[[DriftResult, float], None],
        on_failure: Callable[[], None] | None = None,
        on_window: Callable[[int], None] | None = None,
        executor: str = "process",
    ) -> None:
        self.columns = list(columns)
        self.categorical = list(categorical)
        self.settings = settings
        self.window: deque[dict[str, Any]] = deque(maxlen=window_size)
        self.min_rows = min_rows
        self.interval = interval_seconds
        self._on_result = on_result
        self._on_failure = on_failure
        self._on_window = on_window
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: DriftResult | None = None
        self.last_seconds: float | None = None
        self.evaluations = 0
        self.added = 0  #: rows appended since start
        self._evaluated_at_added = -1
        self._reference = reference[self.columns] if reference is not None else None
        self._executor_kind = executor
        self._executor: Executor | None = None
        self._reference_path = reference_path
        #: The latest evaluation's Evidently report (HTML); absent until the first evaluation.
        self.report_path = os.path.join(tempfile.mkdtemp(prefix="modelship-drift-"), "report.html")

    # --- request path -------------------------------------------------------------------

    def add(self, records: list[dict[str, Any]]) -> None:
        """Append validated records (cheap; the deque drops the oldest beyond ``windowSize``)."""
        self.window.extend(records)
        self.added += len(records)
        if self._on_window is not None:
            self._on_window(len(self.window))

    # --- background ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="drift", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._drop_executor()

    def _drop_executor(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            _shut_down(executor)

    def _start_executor(self) -> Executor:
        if self._executor_kind == "thread":
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drift-eval")
            return self._executor
        import multiprocessing

        executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_child,
            initargs=(self._reference_path, self.categorical, self.columns, DRIFT_NICENESS),
        )
        self._executor = executor  # stop() reaches the child while it warms up (importing Evidently takes seconds)
        try:
            if self._stop.is_set():
                raise RuntimeError("the drift monitor stopped")
            executor.submit(_warm).result(timeout=300)
        except BaseException:
            self._drop_executor()  # a pool that never warmed up is not kept
            raise
        return executor

    def evaluate_now(self, force: bool = True) -> DriftResult | None:
        """One evaluation of the current window (None when it holds fewer than ``minRows``, or,
        unless ``force``, when no row arrived since the last evaluation: same window, same result)."""
        added = self.added
        rows = list(self.window)
        if len(rows) < self.min_rows or (not force and added == self._evaluated_at_added):
            return None
        executor = self._executor or self._start_executor()
        started = time.perf_counter()
        if self._executor_kind == "thread":
            import pandas as pd

            current = pd.DataFrame.from_records(rows, columns=self.columns)
            result = executor.submit(evaluate_and_save, current, self._reference, self.settings, self.categorical, self.report_path).result()
        else:
            result = executor.submit(_evaluate_in_child, self.columns, rows, self.settings, self.report_path).result()
        seconds = time.perf_counter() - started
        self.last, self.last_seconds = result, seconds
        self._evaluated_at_added = added
        self.evaluations += 1
        self._on_result(result, seconds)
        log.info(
            "drift over %d rows in %.2fs: share %.2f (%s)%s",
            result.rows, seconds, result.drifted_share, ", ".join(result.drifted_features) or "none",
            " — DRIFT DETECTED" if result.drift_detected else "",
        )
        return result

    def _loop(self) -> None:
        try:
            self._start_executor()
        except Exception:  # noqa: BLE001
            if self._stop.is_set():  # the server stopped while the child was still warming up
                return
            log.exception("cannot start the drift evaluator; retrying at the next interval")
        while not self._stop.wait(self.interval):
            try:
                self.evaluate_now(force=False)
            except Exception:  # noqa: BLE001 - drift must never take the server down
                if self._stop.is_set():
                    return
                log.exception("drift evaluation failed")
                if self._on_failure is not None:
                    self._on_failure()
                if self._executor_kind == "process":  # a fresh child at the next interval
                    self._drop_executor()
