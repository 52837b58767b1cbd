"""The prediction store: every prediction in PostgreSQL, and the ground-truth feedback joined to it.

Writing never happens on the request path. A request appends its records to a bounded buffer
in memory (:meth:`PredictionStore.record`, no I/O); a writer task on the server's event loop
takes up to :attr:`StoreSettings.batch_rows` of them at a time and writes them in ONE statement
(``INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING``: one round trip per batch, and a
record id the caller sent twice is kept once). While the database is slow or down the buffer
fills; records beyond :attr:`StoreSettings.buffer_rows` are dropped and counted
(``modelship_prediction_store_dropped_total``) with ONE warning per outage, the writer retries
with a growing delay, and writing resumes by itself when the database answers again.

The server creates and migrates its tables (under an advisory lock, so the replicas of a
version and the versions of a model may start together) and expires rows older than the
retention in the background, on a connection of its own so a long expiry never holds up the
writer. Rows are indexed by time; expiry deletes by the index in bounded chunks, so one pass
never holds a long lock.

Every statement has a deadline that holds even when the database does not answer at all (a
frozen server, a network that drops packets): on expiry the connection is closed and a new one
made on the next attempt (see :func:`_within`).

Feedback (:meth:`PredictionStore.add_feedback`) runs on its own connection, so a feedback call
never waits behind a batch of predictions being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from modelship.serving.errors import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

PREDICTIONS_TABLE = "modelship_predictions"
FEEDBACK_TABLE = "modelship_feedback"
SCHEMA_TABLE = "modelship_store_schema"
#: ``pg_advisory_xact_lock`` key: one migrating server at a time.
MIGRATION_LOCK = 0x6D6F64656C73  # "models"

#: The schema, one entry per version; a server applies those above the recorded version.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            f"""CREATE TABLE IF NOT EXISTS {PREDICTIONS_TABLE} (
                model text NOT NULL,
                record_id text NOT NULL,
                request_id text NOT NULL,
                ts timestamptz NOT NULL,
                version text NOT NULL,
                variant text NOT NULL,
                inputs jsonb NOT NULL,
                prediction jsonb NOT NULL,
                probabilities jsonb,
                PRIMARY KEY (model, record_id)
            )""",
            f"CREATE INDEX IF NOT EXISTS {PREDICTIONS_TABLE}_ts ON {PREDICTIONS_TABLE} (model, ts)",
            f"""CREATE TABLE IF NOT EXISTS {FEEDBACK_TABLE} (
                model text NOT NULL,
                record_id text NOT NULL,
                ts timestamptz NOT NULL DEFAULT now(),
                label text,
                value double precision,
                PRIMARY KEY (model, record_id)
            )""",
            f"CREATE INDEX IF NOT EXISTS {FEEDBACK_TABLE}_ts ON {FEEDBACK_TABLE} (model, ts)",
        ],
    ),
]

# The arrays go in binary (%b): in text format psycopg escapes every quote of every JSON
# document into an array literal, ~12 µs a row on the serving process (0.3 µs in binary).
_INSERT_PREDICTIONS = f"""
INSERT INTO {PREDICTIONS_TABLE} (model, record_id, request_id, ts, version, variant, inputs, prediction, probabilities)
SELECT %s, r, q, to_timestamp(t), v, w, i::jsonb, p::jsonb, pr::jsonb
FROM unnest(%b::text[], %b::text[], %b::float8[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[]) AS u(r, q, t, v, w, i, p, pr)
ON CONFLICT DO NOTHING
"""
_LOOKUP = f"SELECT record_id, version, variant, prediction FROM {PREDICTIONS_TABLE} WHERE model = %s AND record_id = ANY(%s::text[])"
_INSERT_FEEDBACK = f"""
INSERT INTO {FEEDBACK_TABLE} (model, record_id, label, value)
SELECT %s, r, l, v FROM unnest(%s::text[], %s::text[], %s::float8[]) AS u(r, l, v)
ON CONFLICT DO NOTHING
RETURNING record_id
"""
#: The "buffer full" warning is logged at most this often.
DROP_WARNING_EVERY_SECONDS = 60.0
#: Expiry deletes at most this many rows per statement.
EXPIRE_CHUNK = 10_000


@dataclass(frozen=True)
class StoreSettings:
    dsn: str = field(repr=False)  #: holds a password: never printed
    model: str
    retention_seconds: float = 30 * 24 * 3600.0
    buffer_rows: int = 20_000  #: records held in memory while the database is slow or down
    batch_rows: int = 2_000  #: records per INSERT
    flush_seconds: float = 0.25  #: longest a record waits in the buffer while the database is up
    write_timeout_seconds: float = 10.0  #: a statement taking longer counts as a failure
    connect_timeout_seconds: int = 3
    retry_max_seconds: float = 5.0
    expire_every_seconds: float = 600.0  #: the first pass runs once the writer is connected


@dataclass(frozen=True)
class StoredPrediction:
    record_id: str
    version: str
    variant: str
    prediction: Any


#: One buffered record: record id, request id, epoch seconds, version, variant, inputs,
#: prediction, probabilities (or None).
Row = tuple[str, str, float, str, str, dict[str, Any], Any, "dict[str, float] | None"]


def _json(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), default=str, allow_nan=False)
    except ValueError:  # NaN or infinity: JSON (and jsonb) has no such number
        return json.dumps(_nan_to_none(value), separators=(",", ":"), default=str)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


class PredictionStore:
    """The buffer, the writer task and the feedback queries of one model server process."""

    def __init__(
        self,
        settings: StoreSettings,
        on_written: Callable[[int], None] = lambda rows: None,
        on_dropped: Callable[[int], None] = lambda rows: None,
        on_connected: Callable[[bool], None] = lambda up: None,
    ) -> None:
        self.settings = settings
        self._on_written = on_written
        self._on_dropped = on_dropped
        self._on_connected = on_connected
        self._buffer: deque[Row] = deque()
        self._enqueued = 0  #: records ever accepted into the buffer
        self._done = 0  #: records ever taken out of it (written)
        self.written = 0
        self.dropped = 0
        self._next_drop_warning = 0.0
        #: Buffered records that wake the writer before its interval: a full batch, or half the buffer.
        self._wake_rows = max(1, min(settings.batch_rows, settings.buffer_rows // 2))
        self._healthy: bool | None = None  #: None until the first attempt to connect
        self._writer: Any = None  #: psycopg.AsyncConnection of the writer task
        self._reader: Any = None  #: psycopg.AsyncConnection of the feedback queries
        self._reader_lock: asyncio.Lock | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._closing = False
        self._migrated = False
        self._retry_at = 0.0
        self._retry_delay = 0.5

    # --- request path ---------------------------------------------------------------------

    def record(self, rows: Sequence[Row]) -> None:
        """Buffer the records of one answered request (no I/O); drop and count what does not fit."""
        room = self.settings.buffer_rows - len(self._buffer)
        if room >= len(rows):
            self._buffer.extend(rows)
            self._enqueued += len(rows)
        else:
            kept = max(room, 0)
            if kept:
                self._buffer.extend(rows[:kept])
                self._enqueued += kept
            lost = len(rows) - kept
            self.dropped += lost
            self._on_dropped(lost)
            now = time.monotonic()
            if now >= self._next_drop_warning:
                # One line per episode (at most one a minute), never one per request.
                self._next_drop_warning = now + DROP_WARNING_EVERY_SECONDS
                log.warning(
                    "prediction store: buffer full (%d records), the database is slow or down: dropping predictions "
                    "(%d so far, counted in modelship_prediction_store_dropped_total) until it catches up",
                    self.settings.buffer_rows, self.dropped,
                )
        if self._wake is not None and len(self._buffer) >= self._wake_rows:
            self._wake.set()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer on the running event loop (the serving process's)."""
        if self._task is not None:
            return
        self._wake = asyncio.Event()
        self._reader_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="prediction-store-writer")
        self._expiry = loop.create_task(self._expire_periodically(), name="prediction-store-expiry")

    async def close(self, flush_seconds: float = 5.0) -> None:
        """Write what is buffered (for at most ``flush_seconds``), then disconnect."""
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        if self._task is not None:
            try:
                await self.flush(flush_seconds)
            except StoreUnavailable:
                pass
            self._closing = True
            assert self._wake is not None
            self._wake.set()
            try:
                await asyncio.wait_for(self._task, 2)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        for connection in (self._writer, self._reader):
            if connection is not None:
                try:
                    await connection.close()
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass
        self._writer = self._reader = None

    async def flush(self, timeout: float = 5.0) -> None:
        """Return once every record buffered before the call is written (feedback needs them)."""
        target = self._enqueued
        if self._done >= target:
            return
        if self._wake is None:
            raise StoreUnavailable("the prediction store's writer is not running")
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self._done < target:
            if time.monotonic() > deadline:
                raise StoreUnavailable("the prediction store did not write the buffered predictions in time")
            await asyncio.sleep(0.01)

    # --- the writer -------------------------------------------------------------------------

    async def _connect(self) -> Any:
        import psycopg

        # psycopg bounds the connection attempt itself (connect_timeout); the outer wait is a backstop.
        connection = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(
                self.settings.dsn, autocommit=True, connect_timeout=self.settings.connect_timeout_seconds, application_name="modelship-model-server"
            ),
            self.settings.connect_timeout_seconds * 3,
        )
        if not self._migrated:
            try:
                await _within(connection, migrate(connection), self.settings.write_timeout_seconds)
            except BaseException:
                await connection.close()
                raise
            self._migrated = True
        return connection

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.flush_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._closing:
                break
            try:
                await self._write_pending()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the writer must outlive any failure
                await self._failed(error)

    async def _write_pending(self) -> None:
        # Connect even with nothing to write: the tables exist and the gauge is right from the start.
        if self._writer is None:
            if time.monotonic() < self._retry_at:
                return
            self._writer = await self._connect()
            self._recovered()
        while self._buffer and not self._closing:
            # Copied, not popped: on a failure the rows stay for the next attempt.
            batch = list(itertools.islice(self._buffer, self.settings.batch_rows))
            await _within(self._writer, self._insert(self._writer, batch), self.settings.write_timeout_seconds)
            for _ in batch:
                self._buffer.popleft()
            self._done += len(batch)
            self.written += len(batch)
            self._on_written(len(batch))
            self._recovered()

    async def _insert(self, connection: Any, batch: list[Row]) -> None:
        columns: list[list[Any]] = [[], [], [], [], [], [], [], []]
        for record_id, request_id, ts, version, variant, inputs, prediction, probabilities in batch:
            columns[0].append(record_id)
            columns[1].append(request_id)
            columns[2].append(ts)
            columns[3].append(version)
            columns[4].append(variant)
            columns[5].append(_json(inputs))
            columns[6].append(_json(prediction))
            columns[7].append(None if probabilities is None else _json(probabilities))
        async with connection.cursor() as cursor:
            await cursor.execute(_INSERT_PREDICTIONS, (self.settings.model, *columns))

    def _recovered(self) -> None:
        self._retry_delay = 0.5
        if self._healthy is not True:
            if self._healthy is False:
                log.warning("prediction store: writing again (%d records written, %d dropped so far)", self.written, self.dropped)
            self._healthy = True
            self._on_connected(True)

    async def _failed(self, error: BaseException) -> None:
        if self._healthy is not False:
            self._healthy = False
            self._on_connected(False)
            log.warning("prediction store: database unavailable (%s: %s); buffering up to %d records and retrying", type(error).__name__, str(error).strip()[:300], self.settings.buffer_rows)
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                await asyncio.wait_for(writer.close(), 1)
            except Exception:  # noqa: BLE001 - the connection is gone anyway
                pass
        self._retry_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self.settings.retry_max_seconds)

    async def _expire_periodically(self) -> None:
        while True:
            if not self._healthy:  # the writer's warning already says the database is unavailable
                await asyncio.sleep(self.settings.retry_max_seconds)
                continue
            try:
                await self.expire()
            except Exception as error:  # noqa: BLE001 - the next pass tries again
                log.warning(
                    "prediction store: expiring rows older than %.0fs failed (%s: %s); next pass in %.0fs",
                    self.settings.retention_seconds, type(error).__name__, str(error).strip()[:300], self.settings.expire_every_seconds,
                )
            await asyncio.sleep(self.settings.expire_every_seconds)

    async def expire(self) -> int:
        """Delete this model's predictions and feedback older than the retention; rows deleted.

        Runs on a connection of its own, closed afterwards: a pass is rare and may be long."""
        connection = await self._connect()
        deleted = 0
        try:
            for table in (PREDICTIONS_TABLE, FEEDBACK_TABLE):
                while True:
                    async with connection.cursor() as cursor:
                        await _within(
                            connection,
                            cursor.execute(
                                f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE model = %s AND ts < now() - make_interval(secs => %s) LIMIT %s))",
                                (self.settings.model, self.settings.retention_seconds, EXPIRE_CHUNK),
                            ),
                            self.settings.write_timeout_seconds * 6,
                        )
                        deleted += cursor.rowcount
                        if cursor.rowcount < EXPIRE_CHUNK:
                            break
        finally:
            await connection.close()
        if deleted:
            log.info("prediction store: expired %d rows older than %.0fs", deleted, self.settings.retention_seconds)
        return deleted

    # --- feedback ---------------------------------------------------------------------------

    async def _query(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self._reader_lock is not None, "start() the store first"
        async with self._reader_lock:
            for attempt in (1, 2):  # a connection the database dropped is retried once on a new one
                try:
                    if self._reader is None:
                        self._reader = await self._connect()
                    async with self._reader.cursor() as cursor:
                        await _within(self._reader, cursor.execute(statement, params), self.settings.write_timeout_seconds)
                        return await cursor.fetchall() if cursor.description else []
                except Exception as error:  # noqa: BLE001 - psycopg errors, timeouts
                    reader, self._reader = self._reader, None
                    if reader is not None:
                        try:
                            await asyncio.wait_for(reader.close(), 1)
                        except Exception:  # noqa: BLE001
                            pass
                    if attempt == 2 or _is_query_bug(error):
                        raise StoreUnavailable(f"the prediction store's database did not answer: {type(error).__name__}: {str(error).strip()[:200]}") from error
        raise AssertionError("unreachable")

    async def lookup(self, record_ids: list[str]) -> dict[str, StoredPrediction]:
        """The stored predictions of these record ids (written or still buffered)."""
        await self.flush()
        rows = await self._query(_LOOKUP, (self.settings.model, record_ids))
        return {row[0]: StoredPrediction(row[0], row[1], row[2], row[3]) for row in rows}

    async def add_feedback(self, items: list[tuple[str, str | None, float | None]]) -> set[str]:
        """Store (record id, label, value) feedback; the record ids that had none before."""
        ids = [item[0] for item in items]
        labels = [item[1] for item in items]
        values = [item[2] for item in items]
        rows = await self._query(_INSERT_FEEDBACK, (self.settings.model, ids, labels, values))
        return {row[0] for row in rows}


async def _within(connection: Any, operation: Awaitable[T], timeout: float) -> T:
    """``operation`` on ``connection``, or :class:`TimeoutError` after ``timeout`` seconds with the
    connection closed.

    ``asyncio.wait_for`` alone does not bound a query: psycopg answers the cancellation by asking
    the server to cancel and then waiting for its reply, so a frozen server (or a network that
    drops packets) holds the caller for as long as it stays so (measured: a 1 s timeout returned
    after the 4 s freeze). Closing the connection first makes the cancellation immediate; the
    caller connects anew. Cancelling the caller closes the connection the same way."""
    task = asyncio.ensure_future(operation)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        await _abandon(connection, task)
        raise
    if task in done:
        return task.result()
    await _abandon(connection, task)
    raise TimeoutError(f"the database did not answer within {timeout:g}s")


async def _abandon(connection: Any, task: asyncio.Future[Any]) -> None:
    await connection.close()  # no I/O wait: the socket is closed, psycopg then skips its server-side cancel
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


def _is_query_bug(error: BaseException) -> bool:
    """A mistake in the statement itself: retrying on a new connection cannot help."""
    try:
        import psycopg

        return isinstance(error, psycopg.ProgrammingError | psycopg.DataError)
    except ImportError:  # pragma: no cover
        return False


async def migrate(connection: Any) -> int:
    """Create or upgrade the store's tables; the schema version now in the database."""
    async with connection.transaction():
        async with connection.cursor() as cursor:
            await cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await cursor.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            await cursor.execute(f"SELECT coalesce(max(version), 0) FROM {SCHEMA_TABLE}")
            row = await cursor.fetchone()
            current = int(row[0]) if row else 0
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    await cursor.execute(statement)
                await cursor.execute(f"INSERT INTO {SCHEMA_TABLE} (version) VALUES (%s)", (version,))
                log.info("prediction store: schema migrated to version %d", version)
                current = version
    return current
