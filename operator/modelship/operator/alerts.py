"""The Alertmanager webhook receiver: ``POST /alerts`` turns ModelshipDataDrift and
ModelshipQualityDrop alerts into retrain requests recorded on their ModelDeployments.

Alertmanager's webhook payload (version 4) is parsed with pydantic; each drift alert names its
resource by the labels ``namespace`` and ``modelship_io_deployment`` (the generated rules keep
them). The request is written into the resource's status (``status.drift``,
``status.retrain.pending``; a quality alert writes only the request, with trigger ``quality``,
see :func:`modelship.operator.retrain.record_alert`) before the
webhook answers 200, so a restart of the operator loses nothing, and Alertmanager re-sends
whatever was not answered. Alerts of other names, of resources that do not exist, or of
namespaces this operator does not watch are accepted and counted, nothing else.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, Field

from modelship.monitoring import metrics as metric_names
from modelship.monitoring.rules import DRIFT_ALERT, DRIFTED_FEATURES_ANNOTATION, QUALITY_DROP_ALERT
from modelship.operator import metrics, retrain
from modelship.operator.kube import Kube, in_thread, run

log = logging.getLogger("modelship.operator.alerts")

# Outcomes of one alert (label ``result`` of the alerts counter).
RECORDED = "recorded"  #: written to the resource's status
DUPLICATE = "duplicate"  #: already recorded (a re-sent alert)
UNKNOWN_RESOURCE = "unknown_resource"  #: no such ModelDeployment
UNWATCHED = "unwatched"  #: a namespace this operator does not watch
UNROUTED = "unrouted"  #: no namespace or modelship_io_deployment label
IGNORED = "ignored"  #: another alert than ModelshipDataDrift or ModelshipQualityDrop

#: The alerts that ask for a retraining, and the trigger each records.
TRIGGER_OF_ALERT = {DRIFT_ALERT: retrain.TRIGGER_DRIFT, QUALITY_DROP_ALERT: retrain.TRIGGER_QUALITY}

#: Attempts at a status write that lost a race with another writer (HTTP 409).
CONFLICT_RETRIES = 5


class Alert(BaseModel):
    """One alert of the payload (fields Modelship reads; others are ignored)."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: str = Field(..., alias="startsAt", min_length=1)
    ends_at: str | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = Field(..., min_length=1)


class WebhookPayload(BaseModel):
    """Alertmanager's webhook body, version 4."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    group_key: str = Field("", alias="groupKey")
    truncated_alerts: int = Field(0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")
    alerts: list[Alert]


def drift_alert(alert: Alert) -> retrain.DriftAlert:
    trigger = TRIGGER_OF_ALERT.get(alert.labels.get("alertname", ""), retrain.TRIGGER_DRIFT)
    metric = alert.labels.get(metric_names.LABEL_METRIC)
    quality_detail = alert.annotations.get("summary") or (f"live {metric} past its threshold" if metric else "")
    return retrain.DriftAlert(
        firing=alert.status == "firing",
        fingerprint=alert.fingerprint,
        starts_at=alert.starts_at,
        ends_at=alert.ends_at if alert.status == "resolved" else None,
        version=alert.labels.get(metric_names.LABEL_VERSION),
        features=alert.annotations.get(DRIFTED_FEATURES_ANNOTATION, "")[:1000] if trigger == retrain.TRIGGER_DRIFT else "",
        trigger=trigger,
        detail=quality_detail[:300] if trigger == retrain.TRIGGER_QUALITY else "",
    )


@dataclass
class AlertReceiver:
    """Records drift and quality alerts on their resources; ``enqueue`` hands the resource to the reconciler."""

    kube: Kube
    enqueue: Callable[[str, str], None]
    #: Watched namespaces; empty means every namespace.
    namespaces: list[str] = field(default_factory=list)
    now: Callable[[], str] = field(default=lambda: retrain.format_time(dt.datetime.now(dt.timezone.utc)))
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)

    def route(self, alert: Alert) -> tuple[str, str] | str:
        """The (namespace, name) an alert is about, or the outcome that ends its handling."""
        if alert.labels.get("alertname") not in TRIGGER_OF_ALERT:
            return IGNORED
        namespace, name = alert.labels.get("namespace"), alert.labels.get(metric_names.LABEL_DEPLOYMENT)
        if not namespace or not name:
            return UNROUTED
        if self.namespaces and namespace not in self.namespaces:
            return UNWATCHED
        return namespace, name

    async def receive(self, payload: WebhookPayload) -> dict[str, int]:
        """Handle every alert of one delivery; the count of each outcome."""
        counts: dict[str, int] = {}
        for alert in payload.alerts:
            target = self.route(alert)
            outcome = target if isinstance(target, str) else await self._record(*target, drift_alert(alert))
            metrics.ALERTS.labels(outcome).inc()
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    async def _record(self, namespace: str, name: str, alert: retrain.DriftAlert) -> str:
        # One writer per resource in this process; the resourceVersion guards against the others.
        lock = self._locks.setdefault((namespace, name), asyncio.Lock())
        async with lock:
            for _ in range(CONFLICT_RETRIES):
                body = await run(self.kube.get_model_deployment, namespace, name)
                if body is None:
                    return UNKNOWN_RESOURCE
                update = retrain.record_alert(body.get("status") or {}, alert, self.now())
                if update is None:
                    return DUPLICATE
                try:
                    await in_thread(self.kube.patch_status, namespace, name, update, body["metadata"]["resourceVersion"])
                except ApiException as error:
                    if error.status == 409:
                        continue
                    if error.status == 404:
                        return UNKNOWN_RESOURCE
                    raise
                log.info("%s/%s: %s alert %s (%s) recorded", namespace, name, alert.trigger, alert.fingerprint, "firing" if alert.firing else "resolved")
                self.enqueue(namespace, name)
                return RECORDED
        raise RuntimeError(f"{namespace}/{name}: the status kept changing under {CONFLICT_RETRIES} attempts")
