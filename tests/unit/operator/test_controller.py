"""The work queue's retry semantics: TemporaryError retries with backoff, PermanentError does
not, and events for a key being reconciled coalesce into one more pass."""

from __future__ import annotations

import asyncio

import kopf
import pytest

from modelship.operator.config import OperatorConfig
from modelship.operator.controller import Controller


class Scripted(Controller):
    """A controller whose reconcile plays a script of outcomes (no cluster needed)."""

    def __init__(self, outcomes, hold: asyncio.Event | None = None):
        super().__init__(kube=None, config=OperatorConfig(workers=1, resync_interval=3600))
        self.outcomes = list(outcomes)
        self.calls = 0
        self.hold = hold

    async def reconcile(self, namespace, name):
        self.calls += 1
        if self.hold is not None:
            await self.hold.wait()
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome


async def _settle(controller, calls, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while controller.calls < calls and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    "outcomes, calls, failures_left",
    [
        ([kopf.TemporaryError("api down", delay=0.01), kopf.TemporaryError("api down", delay=0.01)], 3, 0),
        ([kopf.PermanentError("invalid spec")], 1, 0),
        ([RuntimeError("bug")], 1, 1),
        ([], 1, 0),
    ],
)
def test_retry_semantics(outcomes, calls, failures_left):
    async def scenario():
        controller = Scripted(outcomes)
        await controller.start()
        controller.enqueue("ns", "md")
        await _settle(controller, calls)
        await controller.stop()
        return controller

    controller = asyncio.run(scenario())
    assert controller.calls == calls
    assert len(controller.failures) == failures_left


def test_events_during_a_reconcile_coalesce_into_one_more_pass():
    async def scenario():
        hold = asyncio.Event()
        controller = Scripted([], hold)
        await controller.start()
        controller.enqueue("ns", "md")
        await asyncio.sleep(0.05)
        for _ in range(5):
            controller.enqueue("ns", "md")
        hold.set()
        await _settle(controller, 2)
        await controller.stop()
        return controller

    assert asyncio.run(scenario()).calls == 2


class ListingKube:
    """Records which namespaces the resync lists; one is forbidden, as under per-namespace Roles."""

    def __init__(self):
        self.listed = []

    def list_model_deployments(self, namespace):
        self.listed.append(namespace)
        if namespace == "forbidden":
            raise PermissionError("403")
        return [{"metadata": {"namespace": namespace or "any", "name": "md"}}]


@pytest.mark.parametrize("namespaces, listed", [([], [None]), (["a", "forbidden", "b"], ["a", "forbidden", "b"])])
def test_resync_lists_each_watched_namespace(namespaces, listed):
    async def scenario():
        kube = ListingKube()
        controller = Controller(kube, OperatorConfig(workers=1, resync_interval=0.05), namespaces=namespaces)
        controller.reconcile = lambda namespace, name: asyncio.sleep(0)
        await controller.start()
        await asyncio.sleep(0.12)
        await controller.stop()
        return kube

    kube = asyncio.run(scenario())
    assert kube.listed[: len(listed)] == listed  # a forbidden namespace does not stop the others


def test_look_again_keeps_one_timer_per_key_the_latest():
    # A plan's requeue_after replaces the key's previous timer: a pause that was shortened (or
    # an analysis that came due sooner) wins, and timers never pile up.
    async def scenario():
        controller = Scripted([])
        await controller.start()
        controller.look_again("ns", "md", 30)
        controller.look_again("ns", "md", 0.05)
        assert len(controller.timers) == 1
        await _settle(controller, 1)
        await asyncio.sleep(0.1)
        left = dict(controller.timers)
        await controller.stop()
        return controller, left

    controller, left = asyncio.run(scenario())
    assert controller.calls == 1 and left == {}
def test_running_retrainings_are_counted_at_start_from_status():
    class Statuses(ListingKube):
        def list_model_deployments(self, namespace):
            running = {"trigger": "drift", "job": "a-train-1"}
            return [
                {"metadata": {"namespace": "ns", "name": "retraining"}, "status": {"lastTraining": running}},
                {"metadata": {"namespace": "ns", "name": "done"}, "status": {"lastTraining": {**running, "finishedAt": "t"}}},
                {"metadata": {"namespace": "ns", "name": "spec"}, "status": {"lastTraining": {"trigger": "spec", "job": "s"}}},
                {"metadata": {"namespace": "ns", "name": "new"}},
            ]

    async def scenario():
        controller = Controller(Statuses(), OperatorConfig(workers=1, resync_interval=3600))
        await controller.start()
        await controller.stop()
        return controller

    assert asyncio.run(scenario()).retraining == {("ns", "retraining")}


def test_applied_cache_skips_only_identical_recent_applies():
    from modelship.operator.controller import AppliedCache

    cache = AppliedCache(ttl=60)
    route = {"kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "ns"}, "spec": {"rules": [{"backendRefs": [{"name": "a", "weight": 100}]}]}}
    assert cache.changed(route) and not cache.stale(route)  # never applied: apply now
    cache.remember(route)
    assert not cache.changed(route) and not cache.stale(route)
    changed = {**route, "spec": {"rules": [{"backendRefs": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}]}]}}
    assert cache.changed(changed)
    cache.forget("ns", "HTTPRoute", "r")
    assert cache.changed(route)
    stale = AppliedCache(ttl=0)
    stale.remember(route)
    assert stale.stale(route) and not stale.changed(route)  # past its time: applied again, undoing any hand edit


def test_applied_cache_spreads_the_refreshes_of_objects_made_together():
    from modelship.operator.controller import AppliedCache

    cache = AppliedCache(ttl=60)
    after = [cache.refresh_after(("ns", kind, f"md-{i:03d}-v2")) for i in range(200) for kind in ("Deployment", "Service")]
    assert all(30 <= seconds <= 60 for seconds in after)
    assert max(after) - min(after) > 25 and len({round(s) for s in after}) > 20  # not one burst
    assert cache.refresh_after(("ns", "Service", "a")) == cache.refresh_after(("ns", "Service", "a"))


def test_look_again_counts_from_when_the_plan_was_made():
    # A plan made 2 s ago (its reconcile then waited on the API server) that asks to look again
    # in 2 s is due now, not 2 s after the reconcile finished.
    async def scenario():
        controller = Scripted([])
        await controller.start()
        loop = asyncio.get_running_loop()
        asked = loop.time()
        controller.look_again("ns", "md", 2.0, since=asked - 2.0)
        await _settle(controller, 1)
        waited = loop.time() - asked
        await controller.stop()
        return controller.calls, waited

    calls, waited = asyncio.run(scenario())
    assert calls == 1 and waited < 1.5


def test_only_the_event_of_the_operators_own_status_write_is_skipped():
    controller = Scripted([])
    controller.status_written[("ns", "md")] = "42"
    assert not controller.own_status_write("ns", "md", "41")  # someone else's write: reconciled
    controller.status_written[("ns", "md")] = "42"
    assert controller.own_status_write("ns", "md", "42")
    assert not controller.own_status_write("ns", "md", "42")  # once: a later event is another write
    assert not controller.own_status_write("ns", "other", "42")


@pytest.mark.parametrize(
    "event_type, labels, reapplied, enqueued",
    [
        # A route or Service deleted by hand is put back by the next reconcile, not at its refresh.
        ("DELETED", {"modelship.io/deployment": "md"}, True, [("ns", "md")]),
        # The echo of the operator's own apply (and the initial listing) changes nothing.
        ("MODIFIED", {"modelship.io/deployment": "md"}, False, []),
        ("ADDED", {"modelship.io/deployment": "md"}, False, []),
        (None, {"modelship.io/deployment": "md"}, False, []),
        # Without the owner's label there is nobody to reconcile, but the cache still forgets it.
        ("DELETED", {}, True, []),
    ],
)
def test_a_deleted_owned_object_is_applied_again_at_once(event_type, labels, reapplied, enqueued):
    route = {"kind": "HTTPRoute", "metadata": {"name": "md", "namespace": "ns", "labels": labels}, "spec": {"rules": []}}

    async def scenario():
        controller = Scripted([])
        controller.applied.remember(route)
        controller.owned_object_event(event_type, route)
        return controller.applied.changed(route), sorted(controller.queued)

    assert asyncio.run(scenario()) == (reapplied, enqueued)


def test_call_gate_serves_waiting_calls_by_priority_then_arrival():
    from modelship.operator.kube import CallGate

    async def scenario():
        gate = CallGate(1)
        await gate.acquire(2)  # one call in flight; the others wait
        order = []

        async def call(label, priority):
            await gate.acquire(priority)
            order.append(label)
            await asyncio.sleep(0)
            gate.release()

        tasks = [asyncio.create_task(call(label, priority)) for label, priority in (("event", 1), ("route-a", 0), ("refresh", 1), ("route-b", 0), ("gone", 0))]
        await asyncio.sleep(0.01)
        tasks[-1].cancel()  # a cancelled waiter neither runs nor keeps a slot
        await asyncio.sleep(0.01)
        gate.release()
        await asyncio.gather(*tasks, return_exceptions=True)
        return order, gate.busy

    assert asyncio.run(scenario()) == (["route-a", "route-b", "event", "refresh"], 0)


def test_mlflow_calls_wait_at_the_call_gate_like_api_calls(monkeypatch):
    # The gate has as many slots as asyncio's pool has threads; a call around it would take a
    # thread the gate counts as free.
    from modelship.operator import kube, registry

    calls = []
    monkeypatch.setattr(registry, "forget", lambda uri, model: calls.append(f"forget {model}"))

    async def scenario():
        gate = kube.CallGate(1)
        monkeypatch.setattr(kube, "GATE", gate)
        await gate.acquire(kube.URGENT)  # every thread busy
        controller = Scripted([])
        promote = asyncio.create_task(controller._registry(calls.append, "promote"))
        forget = asyncio.create_task(controller.forget("m"))
        await asyncio.sleep(0.05)
        before = list(calls)
        gate.release()
        await asyncio.gather(promote, forget)
        return before, calls, gate.busy

    before, done, busy = asyncio.run(scenario())
    assert before == [] and sorted(done) == ["forget m", "promote"] and busy == 0
