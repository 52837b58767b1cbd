"""Kubernetes I/O of the operator: observe owned objects, apply a plan, patch status, post events.

Blocking client calls run in threads (:func:`in_thread`) so the kopf event loop stays free.
Objects are written with server-side apply, so a repeated reconcile is a no-op for the API server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import logging
import os
from typing import Any

import kopf
from kubernetes import client, config as kube_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from modelship.api.v1alpha1 import GROUP, PLURAL, VERSION
from modelship.api.names import DEPLOYMENT_LABEL, MANAGED_BY_LABEL
from modelship.operator.observe import Observed, job_finished, job_state, serving_state

log = logging.getLogger(__name__)
FIELD_MANAGER = "modelship-operator"
#: HTTP statuses worth a retry: conflicts, throttling and a struggling API server.
TRANSIENT = {409, 429, 500, 502, 503, 504}


def load_kube_config() -> None:
    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config()


class Kube:
    """One API client shared by every reconcile."""

    def __init__(self) -> None:
        self.api_client = client.ApiClient()
        self.dynamic = DynamicClient(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self._resources: dict[tuple[str, str], Any] = {}

    def _resource(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        if key not in self._resources:
            self._resources[key] = self.dynamic.resources.get(api_version=api_version, kind=kind)
        return self._resources[key]

    # --- reads ------------------------------------------------------------------------
    def get_model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def list_model_deployments(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace:
            items = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        else:
            items = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        return items.get("items", [])

    def _list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self._resource(api_version, kind).get(namespace=namespace, label_selector=selector).to_dict().get("items", [])

    def observe(self, namespace: str, name: str, known_results: set[str]) -> Observed:
        """Owned Jobs and serving Deployments, listed; pods only for finished Jobs not yet recorded."""
        selector = f"{MANAGED_BY_LABEL}=modelship,{DEPLOYMENT_LABEL}={name}"
        return self.observe_from(namespace, self._list("batch/v1", "Job", namespace, selector), self._list("apps/v1", "Deployment", namespace, selector), known_results)

    def observe_from(self, namespace: str, jobs: list[dict[str, Any]], deployments: list[dict[str, Any]], known_results: set[str]) -> Observed:
        """What the given Jobs and Deployments say; lists pods only for finished Jobs not yet recorded."""
        observed = Observed()
        for job in jobs:
            job_name = job["metadata"]["name"]
            pods = []
            if job_finished(job) and job_name not in known_results:
                pods = self._list("v1", "Pod", namespace, f"batch.kubernetes.io/job-name={job_name}")
            observed.jobs[job_name] = job_state(job, pods)
        for deployment in deployments:
            state = serving_state(deployment)
            observed.serving[state.version] = state
        return observed

    def list_owned(self, namespace: str | None) -> dict[str, list[dict[str, Any]]]:
        """Every Job and Deployment the operator made, in ``namespace`` (None: all), by kind."""
        selector = f"{MANAGED_BY_LABEL}=modelship"
        return {kind: self._list(api_version, kind, namespace, selector) for api_version, kind in (("batch/v1", "Job"), ("apps/v1", "Deployment"))}

    # --- writes -----------------------------------------------------------------------
    def create_if_missing(self, obj: dict[str, Any]) -> bool:
        resource = self._resource(obj["apiVersion"], obj["kind"])
        try:
            resource.create(body=obj, namespace=obj["metadata"]["namespace"])
            return True
        except ApiException as error:
            if error.status == 409:
                return False
            raise

    def apply(self, obj: dict[str, Any]) -> None:
        resource = self._resource(obj["apiVersion"], obj["kind"])
        resource.server_side_apply(body=obj, name=obj["metadata"]["name"], namespace=obj["metadata"]["namespace"], field_manager=FIELD_MANAGER, force_conflicts=True)

    def delete(self, namespace: str, api_version: str, kind: str, name: str) -> None:
        try:
            self._resource(api_version, kind).delete(name=name, namespace=namespace, body={"propagationPolicy": "Background"})
        except ApiException as error:
            if error.status != 404:
                raise

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any], resource_version: str | None = None) -> str | None:
        """A merge patch of the status; with ``resource_version``, only if nothing changed since
        (else 409). Returns the resourceVersion the write made."""
        body: dict[str, Any] = {"status": patch}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        written = self.custom.api_client.call_api(
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status",
            "PATCH",
            header_params={"Content-Type": "application/merge-patch+json", "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
            response_type="object",
            _return_http_data_only=True,
        )
        return ((written or {}).get("metadata") or {}).get("resourceVersion")

    def post_event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the ModelDeployment (what `kubectl describe mdep` shows)."""
        now = dt.datetime.now(dt.timezone.utc)
        metadata = body["metadata"]
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{metadata['name']}.", namespace=metadata["namespace"]),
            involved_object=client.V1ObjectReference(
                api_version=body["apiVersion"], kind=body["kind"], name=metadata["name"], namespace=metadata["namespace"], uid=metadata.get("uid")
            ),
            reason=reason,
            message=message[:1024],
            type=type_,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component=FIELD_MANAGER),
            reporting_component=FIELD_MANAGER,
            reporting_instance=FIELD_MANAGER,
        )
        try:
            self.core.create_namespaced_event(metadata["namespace"], event)
        except ApiException as error:  # an event is best effort; never fail a reconcile on it
            log.warning("could not post event %s: %s", reason, error.reason)


def transient(error: BaseException) -> bool:
    if isinstance(error, ApiException):
        return error.status in TRANSIENT or error.status is None or error.status == 0
    return isinstance(error, (ConnectionError, TimeoutError, OSError, ResourceNotFoundError))


#: Call priorities (lower first): what a reconcile waits for (reading the resource, writing its
#: route and status), then what can come last (Events, refreshing unchanged objects).
URGENT, AFTERWARDS = 0, 1


class CallGate:
    """At most ``slots`` blocking calls at once, the waiting ones in priority order (FIFO within
    one). With as many slots as asyncio's thread pool has threads, a call waits here, where its
    priority counts, instead of in the pool's FIFO queue: when many pauses end at once, their
    routes are not written after the Events and refreshes of the resources ahead of them.
    (More threads are no cure: on 2 loaded cores, 20 threads made each API call 5x slower.)"""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.busy = 0
        self.waiting: list[tuple[int, int, asyncio.Future]] = []
        self.counter = itertools.count()

    async def acquire(self, priority: int) -> None:
        if self.busy < self.slots and not self.waiting:
            self.busy += 1
            return
        granted = asyncio.get_running_loop().create_future()
        heapq.heappush(self.waiting, (priority, next(self.counter), granted))
        try:
            await granted  # the releasing call hands its slot over
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()
            else:
                self.waiting = [entry for entry in self.waiting if entry[2] is not granted]
                heapq.heapify(self.waiting)
            raise

    def release(self) -> None:
        while self.waiting:
            _, _, granted = heapq.heappop(self.waiting)
            if not granted.done():
                granted.set_result(None)
                return
        self.busy -= 1


GATE = CallGate(min(32, (os.cpu_count() or 1) + 4))  # asyncio's default thread pool size


async def in_thread(func, *args, priority: int = URGENT, **kwargs):
    """A blocking call (Kubernetes or MLflow client) off the event loop, through :data:`GATE`.

    Every thread of the operator's runs here: a call that went to the pool around the gate would
    take a thread the gate counts as free, and the calls it let through would queue in the pool
    again, where priority does not count."""
    await GATE.acquire(priority)
    try:
        return await asyncio.to_thread(func, *args, **kwargs)
    finally:
        GATE.release()


async def run(func, *args, priority: int = URGENT, **kwargs):
    """A blocking Kubernetes client call off the event loop; transient API errors become TemporaryError."""
    try:
        return await in_thread(func, *args, priority=priority, **kwargs)
    except ApiException as error:
        if transient(error):
            raise kopf.TemporaryError(f"Kubernetes API: {error.status} {error.reason}", delay=5) from error
        raise


def request_retrain(name: str, namespace: str | None) -> tuple[str, str]:
    """Set the retrain annotation (``modelship retrain``); the value is the time asked."""
    from modelship.api.names import RETRAIN_ANNOTATION

    load_kube_config()
    if namespace is None:
        try:
            namespace = kube_config.list_kube_config_contexts()[1]["context"].get("namespace") or "default"
        except (kube_config.ConfigException, KeyError, TypeError):
            namespace = "default"
    value = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    patch = {"metadata": {"annotations": {RETRAIN_ANNOTATION: value}}}
    try:
        client.CustomObjectsApi().patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
    except ApiException as error:
        if error.status == 404:
            raise LookupError(f"no ModelDeployment {name} in namespace {namespace}") from None
        raise
    return value, namespace
