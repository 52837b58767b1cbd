"""Optional prediction log: one JSON line per request (request id, inputs, outputs, version,
variant), written by a background thread so the request path only enqueues."""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from typing import Any


class PredictionLog:
    def __init__(self, target: str) -> None:
        self.target = target
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._stream = sys.stdout if target == "-" else open(target, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._thread = threading.Thread(target=self._write, name="prediction-log", daemon=True)
        self._thread.start()

    def record(self, request_id: str, inputs: list[dict[str, Any]], outputs: dict[str, Any]) -> None:
        self._queue.put({"ts": time.time(), "requestId": request_id, "inputs": inputs, **outputs})

    def _write(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                break
            try:
                self._stream.write(json.dumps(entry, default=str) + "\n")
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
        if self._stream is not sys.stdout:
            self._stream.close()
