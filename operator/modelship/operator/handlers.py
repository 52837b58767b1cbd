"""kopf wiring: start-up settings and one-line handlers that hand keys to the controller."""

from __future__ import annotations

import asyncio
import logging
import os

import kopf

from modelship.api.v1alpha1 import GROUP, PLURAL, VERSION
from modelship.operator import http
from modelship.operator.alerts import AlertReceiver
from modelship.api.names import DEPLOYMENT_LABEL, MANAGED_BY_LABEL
from modelship.operator.config import OperatorConfig
from modelship.operator.controller import Controller
from modelship.operator.kube import Kube, load_kube_config

OWNED = {MANAGED_BY_LABEL: "modelship"}


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    # Only watch-event handlers: nothing of kopf's own state is stored on the resources.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="modelship.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="modelship.io")
    # No cluster-wide watch of namespaces and CRDs: the operator needs no RBAC beyond the
    # resources it manages. The chart installs the CRD first; a new CRD version comes with a restart.
    settings.scanning.disabled = True
    settings.posting.level = logging.WARNING
    # One line per watch event ("Handler ... succeeded") drowns the decisions worth reading.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # httpx logs every request at INFO: every analysis query and MLflow call would be a line.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    config = OperatorConfig.from_env()
    load_kube_config()
    watched = [ns for ns in os.environ.get("MODELSHIP_WATCH_NAMESPACES", "").split(",") if ns]
    controller = Controller(Kube(), config, namespaces=watched)
    await controller.start()
    memo.controller = controller
    receiver = AlertReceiver(controller.kube, controller.enqueue, namespaces=watched)
    app = http.build_app(controller.alive, receiver, config.alert_token_file, config.alert_max_body_bytes)
    web = http.server(app, host=os.environ.get("MODELSHIP_HTTP_HOST", "0.0.0.0"), port=config.http_port)
    memo.web = web
    memo.web_task = asyncio.create_task(web.serve(), name="http")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_) -> None:
    memo.web.should_exit = True
    await memo.controller.stop()
    await asyncio.wait_for(memo.web_task, timeout=5)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def model_deployment_event(event: dict, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    if event.get("type") == "DELETED":
        model_name = body.get("spec", {}).get("modelName") or f"{body.metadata.namespace}-{body.metadata.name}"
        asyncio.create_task(memo.controller.forget(model_name))
        return
    if memo.controller.own_status_write(body.metadata.namespace, body.metadata.name, body.metadata.get("resourceVersion")):
        return
    memo.controller.enqueue(body.metadata.namespace, body.metadata.name)


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
async def training_job_event(event: dict, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    memo.controller.owned.seen(event.get("type"), "Job", event["object"])
    memo.controller.enqueue(body.metadata.namespace, body.metadata.labels[DEPLOYMENT_LABEL])


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
async def serving_deployment_event(event: dict, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    memo.controller.owned.seen(event.get("type"), "Deployment", event["object"])
    memo.controller.owned_object_event(event.get("type"), event["object"])
    memo.controller.enqueue(body.metadata.namespace, body.metadata.labels[DEPLOYMENT_LABEL])


@kopf.on.event("", "v1", "services", labels=OWNED)
@kopf.on.event("gateway.networking.k8s.io", "v1", "httproutes", labels=OWNED)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=OWNED)
async def serving_object_event(event: dict, memo: kopf.Memo, **_) -> None:
    memo.controller.owned_object_event(event.get("type"), event["object"])
