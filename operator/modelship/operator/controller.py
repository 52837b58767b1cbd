"""The reconcile loop: a keyed work queue fed by kopf's watch events and a periodic resync.

One key at a time per ModelDeployment (events of its Jobs and Deployments coalesce), a fixed
number of workers, and retries with backoff for ``kopf.TemporaryError`` — kopf itself does not
retry event handlers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import time
from typing import Any

import kopf
from pydantic import ValidationError

from modelship.api import ModelDeployment, format_errors, parse_duration
from modelship.api.names import DEPLOYMENT_LABEL, TRIGGER_ANNOTATION
from modelship.api.v1alpha1 import RolloutStatus
from modelship.operator import failpoints, metrics, registry, retrain, rollout
from modelship.operator.abquality import QualitySample
from modelship.operator.conditions import PROGRESSING, READY, set_condition
from modelship.operator.config import OperatorConfig
from modelship.operator.kube import AFTERWARDS, Kube, in_thread, run
from modelship.operator.observe import OwnedObjects
from modelship.operator.prometheus import PrometheusClient
from modelship.operator.reconcile import candidate_version, plan, rollout_state

log = logging.getLogger("modelship.operator")
Key = tuple[str, str]


def utcnow() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) from ``old`` to ``new``.

    Merge patches merge nested objects, so a key that is gone from a nested object needs an
    explicit null too, or the API server keeps the old value beside the new ones.
    """
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = status_patch(before, value)
            if nested:
                patch[key] = nested
        elif before != value:
            patch[key] = value
    patch.update({key: None for key in old if key not in new})
    return patch


def _seconds_between(start: str | None, end: str | None) -> float | None:
    try:
        return (dt.datetime.fromisoformat(end.replace("Z", "+00:00")) - dt.datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
    except (AttributeError, ValueError):
        return None


class AppliedCache:
    """What this process applied lately: an identical object applied again within its refresh
    time is skipped. During a rollout every analysis reconciles the resource, and five
    server-side applies that change nothing were most of that reconcile's cost. Each object is
    applied again after between ``ttl``/2 and ``ttl`` seconds (spread by its name, so the objects
    of resources created together do not all fall due in the same second), undoing a hand edit
    or deletion within ``ttl``."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.entries: dict[tuple[str, str, str], tuple[str, float]] = {}

    @staticmethod
    def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
        return obj["metadata"].get("namespace") or "", obj["kind"], obj["metadata"]["name"]

    @staticmethod
    def _digest(obj: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()

    def refresh_after(self, key: tuple[str, str, str]) -> float:
        """Seconds after which an unchanged object is applied again: in [ttl/2, ttl], by its key."""
        spread = int.from_bytes(hashlib.sha256("/".join(key).encode()).digest()[:2], "big") / 0xFFFF
        return self.ttl * (0.5 + 0.5 * spread)

    def changed(self, obj: dict[str, Any]) -> bool:
        """Not applied by this process yet, or different from what it applied."""
        entry = self.entries.get(self._key(obj))
        return entry is None or entry[0] != self._digest(obj)

    def stale(self, obj: dict[str, Any]) -> bool:
        """Applied unchanged, but long enough ago to apply again (a hand edit may have changed it)."""
        key = self._key(obj)
        entry = self.entries.get(key)
        return entry is not None and time.monotonic() - entry[1] > self.refresh_after(key)

    def remember(self, obj: dict[str, Any]) -> None:
        self.entries[self._key(obj)] = (self._digest(obj), time.monotonic())

    def forget(self, namespace: str, kind: str, name: str) -> None:
        self.entries.pop((namespace, kind, name), None)


class Controller:
    def __init__(self, kube: Kube, config: OperatorConfig, namespaces: list[str] | None = None) -> None:
        self.kube = kube
        self.config = config
        #: Watched namespaces; empty means every namespace (and cluster-wide RBAC).
        self.namespaces = namespaces or []
        self.queue: asyncio.Queue[Key] = asyncio.Queue()
        self.queued: set[Key] = set()
        self.active: set[Key] = set()
        self.dirty: set[Key] = set()
        self.failures: dict[Key, int] = {}
        self.tasks: list[asyncio.Task] = []
        self.started = False
        #: One pending "look again" timer per key: the latest plan's requeue_after.
        self.timers: dict[Key, asyncio.TimerHandle] = {}
        self.prometheus = PrometheusClient(config.prometheus_url, config.prometheus_timeout)
        #: Resources whose latest training is a retraining still running (the concurrency limit).
        self.retraining: set[Key] = set()
        #: When each key's earliest delayed reconcile is due (event loop time).
        self.wakeups: dict[Key, float] = {}
        self.applied = AppliedCache(config.apply_cache_seconds)
        #: Owned Jobs and Deployments as the watch shows them (the handlers feed it).
        self.owned = OwnedObjects()
        #: The resourceVersion this process's latest status write of each key made.
        self.status_written: dict[Key, str] = {}

    # --- queue ------------------------------------------------------------------------
    def enqueue(self, namespace: str, name: str, delay: float = 0) -> None:
        key = (namespace, name)
        if delay > 0:
            loop = asyncio.get_running_loop()
            due = loop.time() + delay
            # One timer per key is enough: a later wake-up is covered by the earlier one's reconcile.
            if self.wakeups.get(key, float("inf")) > due or self.wakeups.get(key, 0) < loop.time():
                self.wakeups[key] = due
                loop.call_later(delay, self._wake, namespace, name, due)
            return
        if key in self.active:
            self.dirty.add(key)
        elif key not in self.queued:
            self.queued.add(key)
            self.queue.put_nowait(key)
        metrics.QUEUE_DEPTH.set(len(self.queued))

    def own_status_write(self, namespace: str, name: str, resource_version: str | None) -> bool:
        """Whether a watch event shows the object exactly as this process's status write left it.
        Its reconcile would change nothing (a plan made from the status it wrote is settled:
        tests/unit/operator/test_reconcile.py checks every plan), and during a rollout it was
        half of all reconciles, each a GET and two LISTs on the API server."""
        written = self.status_written.pop((namespace, name), None)
        return written is not None and written == resource_version

    def owned_object_event(self, event_type: str | None, obj: dict[str, Any]) -> None:
        """A watch event of an object the operator made. Its own applies come back as events
        too, and reconciling each echo would double the work of a rollout; a deletion is
        never its own (what it deletes it forgets first), so a deleted object is put back now
        rather than at its next refresh."""
        if event_type != "DELETED":
            return
        metadata = obj["metadata"]
        self.applied.forget(metadata.get("namespace") or "", obj["kind"], metadata["name"])
        owner = (metadata.get("labels") or {}).get(DEPLOYMENT_LABEL)
        if owner:
            self.enqueue(metadata.get("namespace") or "", owner)

    def _wake(self, namespace: str, name: str, due: float) -> None:
        if self.wakeups.get((namespace, name)) == due:
            del self.wakeups[(namespace, name)]
        self.enqueue(namespace, name)

    def look_again(self, namespace: str, name: str, delay: float, since: float | None = None) -> None:
        """Reconcile the key ``delay`` seconds after ``since`` (event loop time; default now):
        replaces the key's previous timer. A plan's delay counts from the moment its ``now``
        was taken, so a pause ends on time however long the reconcile that planned it took."""
        key = (namespace, name)
        previous = self.timers.pop(key, None)
        if previous is not None:
            previous.cancel()

        def fire() -> None:
            self.timers.pop(key, None)
            self.enqueue(namespace, name)

        loop = asyncio.get_running_loop()
        self.timers[key] = loop.call_at((loop.time() if since is None else since) + delay, fire)

    async def start(self) -> None:
        await self._count_retraining()
        await self._load_owned()
        self.tasks = [asyncio.create_task(self._worker(i), name=f"reconcile-{i}") for i in range(self.config.workers)]
        self.tasks.append(asyncio.create_task(self._resync(), name="resync"))
        self.started = True

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        await self.prometheus.close()
        self.started = False

    def alive(self) -> bool:
        return self.started and all(not task.done() for task in self.tasks)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_interval)
            # One list per watched namespace: per-namespace Roles allow nothing wider.
            for namespace in self.namespaces or [None]:
                try:
                    for body in await run(self.kube.list_model_deployments, namespace):
                        self.enqueue(body["metadata"]["namespace"], body["metadata"]["name"])
                except Exception as error:  # the next resync tries again
                    log.warning("resync of %s failed: %s", namespace or "all namespaces", error)

    async def _worker(self, index: int) -> None:
        while True:
            key = await self.queue.get()
            self.queued.discard(key)
            self.active.add(key)
            metrics.QUEUE_DEPTH.set(len(self.queued))
            delay = None
            started = time.perf_counter()
            try:
                await self.reconcile(*key)
                self.failures.pop(key, None)
                metrics.RECONCILES.labels("ok").inc()
            except kopf.TemporaryError as error:
                attempts = self.failures[key] = self.failures.get(key, 0) + 1
                delay = min(float(error.delay or 5) * 2 ** (attempts - 1), 300.0)
                log.warning("%s/%s: %s; retrying in %.0fs", *key, error, delay)
                metrics.RECONCILES.labels("retry").inc()
                metrics.ERRORS.labels("temporary").inc()
            except kopf.PermanentError as error:
                log.error("%s/%s: %s", *key, error)
                metrics.RECONCILES.labels("error").inc()
                metrics.ERRORS.labels("permanent").inc()
            except Exception:
                attempts = self.failures[key] = self.failures.get(key, 0) + 1
                delay = min(10.0 * 2 ** (attempts - 1), 300.0)
                log.exception("%s/%s: unexpected error; retrying in %.0fs", *key, delay)
                metrics.RECONCILES.labels("error").inc()
                metrics.ERRORS.labels("unexpected").inc()
            finally:
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
                self.active.discard(key)
                if key in self.dirty:
                    self.dirty.discard(key)
                    self.enqueue(*key)
                if delay is not None:
                    self.enqueue(*key, delay=delay)

    # --- one reconcile ----------------------------------------------------------------
    async def reconcile(self, namespace: str, name: str) -> None:
        body = await run(self.kube.get_model_deployment, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        status = body.get("status") or {}
        try:
            resource = ModelDeployment.model_validate({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
        except ValidationError as error:
            await self._report_invalid_spec(body, status, format_errors(error, root=""))
            raise kopf.PermanentError("invalid spec") from None

        last = status.get("lastTraining") or {}
        recorded = {last["job"]} if last.get("finishedAt") and last.get("job") else set()
        if self.owned.primed:
            observed = await run(self.kube.observe_from, namespace, self.owned.of(namespace, name, "Job"), self.owned.of(namespace, name, "Deployment"), recorded)
        else:
            observed = await run(self.kube.observe, namespace, name, recorded)
        current = observed.jobs.get(last.get("job", ""))
        if current and current.finished and current.succeeded and current.result is None and not last.get("finishedAt"):
            recovered = await self._registry(registry.result_from_registry, self.config.mlflow_tracking_uri, resource.registered_model_name, current.name)
            if recovered:
                observed.jobs[current.name] = dataclasses.replace(current, result=recovered)

        now, planned_at = dt.datetime.now(dt.timezone.utc), asyncio.get_running_loop().time()
        sample = None
        state = rollout_state(status)
        step_started = rollout.analysis_due(resource.spec.rollout, state, now)
        if step_started is not None and state and state.candidate:
            sample = await self.prometheus.measure(resource, state.candidate, step_started, now, rollout.analysed_traffic(state))
        variant_samples = quality = None
        if rollout.ab_analysis_due(resource.spec.rollout, state, now):
            variant_samples, quality = await asyncio.gather(self._measure_variants(resource, status, now), self._measure_quality(resource, status, state, now))
        observed.retrains_elsewhere = len(self.retraining - {(namespace, name)})
        decision = plan(resource, status, observed, self.config, now, sample, variant_samples, quality)
        for obj in decision.create:
            if await run(self.kube.create_if_missing, obj) and obj["kind"] == "Job":
                metrics.TRAININGS_STARTED.labels(obj["metadata"].get("annotations", {}).get(TRIGGER_ANNOTATION, "spec")).inc()
        # What changes first (a step's new weight in the route); re-applying objects that only
        # fell due for a refresh waits until the status and the events are written.
        refresh = []
        for obj in decision.apply:
            if self.applied.changed(obj):
                await run(self.kube.apply, obj)
                self.applied.remember(obj)
            elif self.applied.stale(obj):
                refresh.append(obj)
        for api_version, kind, object_name in decision.delete:
            await run(self.kube.delete, namespace, api_version, kind, object_name)
            self.applied.forget(namespace, kind, object_name)
            self.owned.drop(namespace, name, kind, object_name)
        if decision.promote_version:
            await self._registry(registry.promote, self.config.mlflow_tracking_uri, resource.registered_model_name, decision.promote_version)
            failpoints.hit(failpoints.AFTER_ALIAS_MOVE)
        metrics.record_rollout(resource.registered_model_name, decision.status)
        patch = status_patch(status, decision.status)
        if patch:
            # Only over the status this plan was made from: the alert webhook writes retrain
            # requests meanwhile, and a blind merge could drop one (a conflict retries).
            written = await run(self.kube.patch_status, namespace, name, patch, body["metadata"].get("resourceVersion"))
            if written:
                self.status_written[(namespace, name)] = written
        if decision.training_outcome:
            metrics.TRAININGS_FINISHED.labels(decision.training_outcome).inc()
            last_training = decision.status.get("lastTraining", {})
            seconds = _seconds_between(last_training.get("startedAt"), last_training.get("finishedAt"))
            if seconds is not None:
                metrics.TRAINING_SECONDS.observe(seconds)
        # Once the status says so: a plan that could not be saved is made again, and told again.
        for milestone in decision.milestones:
            metrics.record_milestone(namespace, name, resource.registered_model_name, milestone)
        self._track_retraining((namespace, name), decision.status.get("lastTraining") or {})
        if decision.requeue_after is not None:
            self.look_again(namespace, name, decision.requeue_after, since=planned_at)
        for event in decision.events:
            log.info("%s/%s %s: %s", namespace, name, event.reason, event.message)
            await run(self.kube.post_event, body, event.type, event.reason, event.message, priority=AFTERWARDS)
        for obj in refresh:
            await run(self.kube.apply, obj, priority=AFTERWARDS)
            self.applied.remember(obj)

    async def _measure_variants(self, resource: ModelDeployment, status: dict[str, Any], now: dt.datetime) -> dict[str, rollout.AnalysisSample]:
        """Each A/B version over the last two analysis intervals (at least 30 s)."""
        candidate = candidate_version(status, status.get("lastTraining") or {})
        versions = {version for _, version in rollout.resolve_variants(resource.spec.rollout, status.get("championVersion"), candidate)}
        window = dt.timedelta(seconds=max(2 * parse_duration(resource.spec.rollout.analysis.interval), 30))
        samples = await asyncio.gather(*(self.prometheus.measure(resource, version, now - window, now) for version in sorted(versions)))
        return dict(zip(sorted(versions), samples))

    async def _measure_quality(self, resource: ModelDeployment, status: dict[str, Any], state: RolloutStatus | None, now: dt.datetime) -> QualitySample | None:
        """The A/B variants' live quality since the test began, when feedback gives any."""
        started = rollout.parse_time(state.ab_started_at if state else None)
        if not resource.spec.monitoring.feedback.enabled or started is None:
            return None
        candidate = candidate_version(status, status.get("lastTraining") or {})
        versions = tuple(sorted({version for _, version in rollout.resolve_variants(resource.spec.rollout, status.get("championVersion"), candidate)}))
        return await self.prometheus.quality(resource, versions, started, now)

    def _track_retraining(self, key: Key, last_training: dict[str, Any]) -> None:
        if retrain.retraining(last_training):
            self.retraining.add(key)
        else:
            self.retraining.discard(key)

    async def _count_retraining(self) -> None:
        """The retrainings already running (from status), so the limit holds across a restart
        before every resource has been reconciled once."""
        for namespace in self.namespaces or [None]:
            try:
                bodies = await run(self.kube.list_model_deployments, namespace)
            except Exception as error:  # reconciles fill the set in anyway
                log.warning("could not count running retrainings in %s: %s", namespace or "all namespaces", error)
                continue
            for body in bodies:
                self._track_retraining((body["metadata"]["namespace"], body["metadata"]["name"]), (body.get("status") or {}).get("lastTraining") or {})

    async def _load_owned(self) -> None:
        """Every owned Job and Deployment, before kopf's watches start; if the listing fails,
        reconciles list what they need on the API server instead."""
        listed: dict[str, list[dict[str, Any]]] = {}
        for namespace in self.namespaces or [None]:
            try:
                for kind, objects in (await run(self.kube.list_owned, namespace)).items():
                    listed.setdefault(kind, []).extend(objects)
            except Exception as error:
                log.warning("could not list owned objects in %s (reconciles list them instead): %s", namespace or "all namespaces", error)
                return
        self.owned.load(listed)

    async def _registry(self, func, *args):
        try:
            return await in_thread(func, *args)
        except registry.RegistryUnavailable as error:
            raise kopf.TemporaryError(str(error), delay=10) from error

    async def _report_invalid_spec(self, body: dict[str, Any], status: dict[str, Any], problems: list[str]) -> None:
        message = "; ".join(problems)[:1000]
        now = utcnow()
        generation = body["metadata"].get("generation")
        conditions = set_condition(status.get("conditions") or [], READY, False, "InvalidSpec", message, now, generation)
        conditions = set_condition(conditions, PROGRESSING, False, "InvalidSpec", message, now, generation)
        new = {**status, "conditions": conditions, "observedGeneration": generation, "phase": "Failed" if not status.get("championVersion") else "Degraded"}
        patch = status_patch(status, new)
        if patch:
            await run(self.kube.patch_status, body["metadata"]["namespace"], body["metadata"]["name"], patch)
            await run(self.kube.post_event, body, "Warning", "InvalidSpec", message)

    async def forget(self, model_name: str) -> None:
        metrics.forget_rollout(model_name)
        try:
            await in_thread(registry.forget, self.config.mlflow_tracking_uri, model_name, priority=AFTERWARDS)
        except Exception as error:  # deletion never waits on MLflow
            log.info("could not drop aliases of %s: %s", model_name, error)
