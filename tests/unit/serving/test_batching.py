"""The micro-batcher: alone when idle, grouped under load, bounded by maxBatchSize, errors to every waiter."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from modelship.serving.batching import MicroBatcher


def _doubler(calls: list[list[int]], delay: float = 0.0):
    def run(items: list[list[int]]) -> list[list[int]]:
        calls.append([len(item) for item in items])
        time.sleep(delay)
        return [[2 * v for v in item] for item in items]

    return run


def test_idle_request_runs_alone_at_once() -> None:
    calls: list[list[int]] = []
    batcher = MicroBatcher(_doubler(calls), max_batch_size=64, max_latency_ms=20)
    assert asyncio.run(batcher.submit([1, 2])) == [2, 4]
    assert calls == [[2]]
    batcher.close()


def test_concurrent_requests_share_calls_and_keep_their_answers() -> None:
    calls: list[list[int]] = []
    sizes: list[int] = []
    batcher = MicroBatcher(_doubler(calls, delay=0.02), max_batch_size=8, max_latency_ms=20, on_batch=sizes.append)

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(batcher.submit([i]) for i in range(20)))

    results = asyncio.run(main())
    assert results == [[2 * i] for i in range(20)]
    assert len(calls) < 20  # grouped
    assert all(sum(call) <= 8 for call in calls)
    assert sum(sizes) == 20
    batcher.close()


def test_a_large_item_runs_in_its_own_call() -> None:
    calls: list[list[int]] = []
    batcher = MicroBatcher(_doubler(calls, delay=0.01), max_batch_size=4, max_latency_ms=20)

    async def main() -> list[list[int]]:
        return await asyncio.gather(batcher.submit([1]), batcher.submit(list(range(10))), batcher.submit([3]))

    results = asyncio.run(main())
    assert results[1] == [2 * v for v in range(10)]
    assert [10] in calls
    batcher.close()


def test_errors_reach_every_waiter_and_the_batcher_keeps_going() -> None:
    fail = threading.Event()
    fail.set()

    def run(items: list[list[int]]) -> list[list[int]]:
        time.sleep(0.01)
        if fail.is_set():
            raise RuntimeError("boom")
        return items

    batcher = MicroBatcher(run, max_batch_size=8, max_latency_ms=20)

    async def main() -> None:
        results = await asyncio.gather(*(batcher.submit([i]) for i in range(5)), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        fail.clear()
        assert await batcher.submit([7]) == [7]

    asyncio.run(main())
    batcher.close()


def test_disabled_batching_calls_once_per_request() -> None:
    calls: list[list[int]] = []
    batcher = MicroBatcher(_doubler(calls, delay=0.005), max_batch_size=8, max_latency_ms=20, enabled=False)

    async def main() -> None:
        await asyncio.gather(*(batcher.submit([i]) for i in range(6)))

    asyncio.run(main())
    assert calls == [[1]] * 6
    batcher.close()


@pytest.mark.parametrize("size", [1, 3])
def test_run_direct(size: int) -> None:
    calls: list[list[int]] = []
    batcher = MicroBatcher(_doubler(calls), max_batch_size=2, max_latency_ms=20)
    assert asyncio.run(batcher.run_direct(list(range(size)))) == [2 * v for v in range(size)]
    batcher.close()


def test_inline_calls_group_requests_read_together() -> None:
    calls: list[list[int]] = []
    batcher = MicroBatcher(_doubler(calls), max_batch_size=8, max_latency_ms=20, inline=True)

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(batcher.submit([i]) for i in range(5)))

    assert asyncio.run(main()) == [[2 * i] for i in range(5)]
    assert sum(sum(call) for call in calls) == 5 and len(calls) < 5
    batcher.close()
