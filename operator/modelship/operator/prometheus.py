"""The canary analysis's Prometheus client: instant queries over the HTTP API, async (httpx),
with a timeout. Every failure becomes a :class:`~modelship.operator.rollout.Measurement` with an
``error`` (an Error verdict), never an exception into the reconcile loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import math

import httpx

from modelship.api.v1alpha1 import ModelDeployment, Task
from modelship.monitoring import analysis as queries
from modelship.monitoring import significance
from modelship.monitoring.metrics import TRAFFIC_LIVE
from modelship.operator.abquality import QualitySample
from modelship.operator.rollout import AnalysisSample, Measurement


class PrometheusClient:
    def __init__(self, url: str | None, timeout: float = 5.0, client: httpx.AsyncClient | None = None) -> None:
        self.url = url.rstrip("/") if url else None
        self.timeout = timeout
        self._client = client

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _query(self, name: str, expr: str) -> tuple[dict, str | None]:
        """The ``data`` of Prometheus's answer to the instant query ``expr``, or why there is none."""
        if not self.url:
            return {}, "no Prometheus configured (MODELSHIP_PROMETHEUS_URL)"
        try:
            response = await self._http().get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=self.timeout)
        except httpx.HTTPError as error:
            return {}, f"Prometheus unreachable: {type(error).__name__}: {error}"[:300]
        try:
            answer = response.json()
        except ValueError:
            return {}, f"Prometheus answered {response.status_code} without JSON"
        if answer.get("status") != "success":
            return {}, f"Prometheus refused the query of {name}: {answer.get('error', response.status_code)}"[:300]
        return answer.get("data") or {}, None

    async def vector(self, name: str, expr: str) -> tuple[list[dict], str | None]:
        """The instant vector ``expr`` yields now, or why there is none."""
        data, error = await self._query(name, expr)
        if error:
            return [], error
        if data.get("resultType") != "vector":
            return [], f"the query of {name} returned a {data.get('resultType')}, not a vector"
        return data.get("result") or [], None

    async def quality(self, resource: ModelDeployment, versions: tuple[str, ...], since: dt.datetime, now: dt.datetime) -> QualitySample:
        """Each A/B variant's labelled predictions (their outcomes, or absolute errors) since the
        A/B test began; no series is zero labels, not an error."""
        namespace = resource.metadata.namespace or "default"
        model = resource.registered_model_name
        task = Task(resource.spec.task).value
        window = queries.window_of((now - since).total_seconds())
        if task == Task.classification.value:
            by_outcome, error = await self.vector("labelled predictions", queries.accuracy_queries(namespace, model, window, versions)["byOutcome"])
            return QualitySample(now, task, accuracy=significance.accuracy_from_vectors(by_outcome), error=error)
        wanted = queries.error_queries(namespace, model, window, versions)
        answers = await asyncio.gather(*(self.vector(f"absolute errors ({key})", wanted[key]) for key in ("count", "sum", "squares")))
        error = next((e for _, e in answers if e), None)
        errors = {} if error else significance.errors_from_vectors(*(vector for vector, _ in answers))
        return QualitySample(now, task, errors=errors, error=error)

    async def value(self, name: str, expr: str) -> Measurement:
        """The single value ``expr`` yields now; no series → no value; more than one → an error."""
        data, error = await self._query(name, expr)
        if error:
            return Measurement(name, error=error)
        result = data.get("result")
        if data.get("resultType") == "scalar":
            return Measurement(name, float(result[1]))
        if not result:
            return Measurement(name)
        if len(result) > 1:
            return Measurement(name, error=f"the query of {name} returned {len(result)} series; it must return one value")
        value = float(result[0]["value"][1])
        return Measurement(name, None if math.isnan(value) else value)

    async def measure(self, resource: ModelDeployment, version: str, step_started: dt.datetime, now: dt.datetime, traffic: str = TRAFFIC_LIVE) -> AnalysisSample:
        """The candidate's requests, error ratio, p95 latency and custom metrics over the step so
        far, counting only ``traffic`` (user requests, or the mirrored copies of a shadow phase)."""
        namespace = resource.metadata.namespace or "default"
        model = resource.registered_model_name
        window = queries.window_of((now - step_started).total_seconds())
        wanted = {
            queries.CHECK_REQUESTS: queries.requests_query(namespace, model, version, window, traffic),
            queries.CHECK_ERROR_RATE: queries.error_ratio_query(namespace, model, version, window, traffic),
            queries.CHECK_LATENCY_P95: queries.latency_p95_query(namespace, model, version, window, traffic),
        }
        for metric in resource.spec.rollout.analysis.metrics or ():
            wanted[metric.name] = queries.render_template(metric.query, namespace, model, version, window, traffic)
        measured = await asyncio.gather(*(self.value(name, expr) for name, expr in wanted.items()))
        return AnalysisSample(at=now, measurements=tuple(measured))
