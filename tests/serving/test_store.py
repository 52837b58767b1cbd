"""The prediction store's own behaviour against a real PostgreSQL, in-process: migrations,
retention, idempotent writes, the bounded buffer with no database at all."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from servers import PostgresServer, free_port

from modelship.serving.errors import StoreUnavailable
from modelship.serving.store import FEEDBACK_TABLE, MIGRATIONS, PREDICTIONS_TABLE, SCHEMA_TABLE, PredictionStore, StoreSettings, migrate

pytestmark = pytest.mark.slow


def _row(record_id: str, ts: float | None = None, prediction: Any = 1.5) -> tuple[Any, ...]:
    return (record_id, record_id, ts or time.time(), "3", "canary", {"x": 1.0, "colour": "red", "gap": None}, prediction, None)


def test_migrations_are_idempotent_and_concurrent(postgres: PostgresServer) -> None:
    import psycopg

    async def run() -> list[int]:
        connections = [await psycopg.AsyncConnection.connect(postgres.dsn, autocommit=True) for _ in range(3)]
        try:
            return list(await asyncio.gather(*(migrate(c) for c in connections)))
        finally:
            for connection in connections:
                await connection.close()

    latest = MIGRATIONS[-1][0]
    assert asyncio.run(run()) == [latest] * 3
    assert postgres.query(f"SELECT count(*) FROM {SCHEMA_TABLE}")[0][0] == len(MIGRATIONS)


def test_writes_expire_and_duplicates(postgres: PostgresServer) -> None:
    settings = StoreSettings(dsn=postgres.dsn, model="store-test", retention_seconds=3600, flush_seconds=0.05)
    written: list[int] = []

    async def run() -> tuple[int, set[str]]:
        store = PredictionStore(settings, on_written=written.append)
        store.start()
        old = time.time() - 7200
        store.record([_row("old-1", old), _row("old-2", old), _row("new-1"), _row("new-1"), _row("nan", prediction=float("nan"))])
        await store.flush()
        new = await store.add_feedback([("new-1", None, 2.0), ("old-1", None, 1.0)])
        again = await store.add_feedback([("new-1", None, 9.0)])
        assert again == set()
        postgres.query(f"UPDATE {FEEDBACK_TABLE} SET ts = now() - interval '2 hours' WHERE model = 'store-test' AND record_id = 'old-1'")
        deleted = await store.expire()
        await store.close()
        return deleted, new

    deleted, new = asyncio.run(run())
    assert new == {"new-1", "old-1"}
    assert deleted >= 1  # the old feedback at least (the store's own first expiry pass may have taken the old predictions)
    assert postgres.query(f"SELECT count(*) FROM {FEEDBACK_TABLE} WHERE model = 'store-test' AND record_id = 'old-1'")[0][0] == 0
    rows = dict(postgres.query(f"SELECT record_id, prediction FROM {PREDICTIONS_TABLE} WHERE model = 'store-test'"))
    assert rows == {"new-1": 1.5, "nan": None}  # a repeated record id is kept once; NaN is stored as null
    assert postgres.query(f"SELECT value FROM {FEEDBACK_TABLE} WHERE model = 'store-test'") == [(2.0,)]  # the first feedback wins
    assert sum(written) == 5  # rows handed to the database (the duplicate was sent and ignored there)


def test_no_database_drops_beyond_the_buffer_and_never_blocks() -> None:
    settings = StoreSettings(dsn=f"postgresql://nobody@127.0.0.1:{free_port()}/none", model="m", buffer_rows=100, batch_rows=10, flush_seconds=0.01, connect_timeout_seconds=1)
    dropped: list[int] = []
    connected: list[bool] = []

    async def run() -> float:
        store = PredictionStore(settings, on_dropped=dropped.append, on_connected=connected.append)
        store.start()
        started = time.perf_counter()
        for i in range(50):
            store.record([_row(f"r{i}-{j}") for j in range(4)])
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - started
        assert store.buffered == 100
        await store.close(flush_seconds=0.2)
        return elapsed

    elapsed = asyncio.run(run())
    assert sum(dropped) == 100 and connected[:1] == [False]
    assert elapsed < 5  # generous: recording is an append, whatever the database does


def _signal_all(postmaster: int, sig: int) -> None:
    """The postmaster and every backend (each runs in its own session, so not killpg)."""
    import psutil

    for process in [psutil.Process(postmaster), *psutil.Process(postmaster).children(recursive=True)]:
        os.kill(process.pid, sig)


def test_a_hung_database_times_out_and_writing_resumes(postgres: PostgresServer) -> None:
    """PostgreSQL frozen (SIGSTOP: connections open, nothing answers) is the slow case: records
    keep being accepted without waiting, the overflow is dropped and counted, the writer and a
    feedback call give up on their open connections while the database is still frozen (psycopg
    alone would wait for the thaw), and once it thaws the writer reconnects and writes what the
    buffer kept."""
    settings = StoreSettings(dsn=postgres.dsn, model="hung", buffer_rows=200, batch_rows=50, flush_seconds=0.02, write_timeout_seconds=1.0, connect_timeout_seconds=1, retry_max_seconds=1.0)
    dropped: list[int] = []
    connected: list[bool] = []
    assert postgres.process is not None

    async def run() -> tuple[float, int, list[bool], BaseException | None]:
        store = PredictionStore(settings, on_dropped=dropped.append, on_connected=connected.append)
        store.start()
        store.record([_row("before")])
        await store.flush()
        await store.add_feedback([("before", None, 1.0)])  # the feedback connection is open too
        _signal_all(postgres.process.pid, signal.SIGSTOP)
        try:
            slowest = 0.0
            for i in range(100):
                started = time.perf_counter()
                store.record([_row(f"frozen-{i}-{j}") for j in range(4)])
                slowest = max(slowest, time.perf_counter() - started)
                await asyncio.sleep(0.03)
            # Still frozen: the writer must notice by itself (a hang here was the bug).
            deadline = time.monotonic() + 20
            while False not in connected and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            seen_while_frozen = list(connected)
            feedback_error: BaseException | None = None
            try:
                await asyncio.wait_for(store.add_feedback([("frozen-0-0", None, 1.0)]), 30)
            except StoreUnavailable as error:
                feedback_error = error
        finally:
            _signal_all(postgres.process.pid, signal.SIGCONT)
        await store.flush(timeout=30)
        written = store.written
        await store.close()
        return slowest, written, seen_while_frozen, feedback_error

    slowest, written, seen_while_frozen, feedback_error = asyncio.run(run())
    assert seen_while_frozen == [True, False]  # connected, then unavailable, before the thaw
    assert feedback_error is not None  # a clear failure, not a wait for the thaw
    assert sum(dropped) > 0 and connected[-1] is True
    assert written + sum(dropped) == 401  # every record is either written or counted as dropped
    stored = postgres.query("SELECT count(*) FROM modelship_predictions WHERE model = 'hung'")[0][0]
    assert stored == written
    print(f"\nslowest record() while the database was frozen: {slowest * 1e6:.0f} us; {sum(dropped)} dropped, {written} written; feedback: {feedback_error}")
