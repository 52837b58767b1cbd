"""``modelship approve | abort | rollback | status NAME``: what people ask of a rollout.

Each request is an annotation on the ModelDeployment whose value names the version it is about
(:mod:`modelship.api.names`), so ``kubectl annotate`` does the same and a request is acted on
once. The checks and the readable print are pure functions over the resource's body; the
commands only read and patch it.
"""

from __future__ import annotations

from typing import Any

import typer

from modelship.api import names
from modelship.api.v1alpha1 import GROUP, PLURAL, VERSION, RolloutPhase

IN_FLIGHT = (RolloutPhase.waiting.value, RolloutPhase.progressing.value, RolloutPhase.awaiting_approval.value)


class RequestRefused(Exception):
    """The resource is not in a state where the request means anything; nothing was changed."""


def approve_request(body: dict[str, Any]) -> tuple[str, str]:
    name = body["metadata"]["name"]
    rollout = (body.get("status") or {}).get("rollout") or {}
    if rollout.get("phase") != RolloutPhase.awaiting_approval.value or not rollout.get("candidate"):
        raise RequestRefused(f"{name} is not waiting for an approval (rollout phase: {rollout.get('phase') or 'none'})")
    return names.APPROVE_ANNOTATION, rollout["candidate"]


def abort_request(body: dict[str, Any]) -> tuple[str, str]:
    name = body["metadata"]["name"]
    rollout = (body.get("status") or {}).get("rollout") or {}
    if rollout.get("phase") not in IN_FLIGHT or not rollout.get("candidate"):
        raise RequestRefused(f"{name} has no rollout in flight to abort (rollout phase: {rollout.get('phase') or 'none'})")
    return names.ABORT_ANNOTATION, rollout["candidate"]


def rollback_request(body: dict[str, Any]) -> tuple[str, str]:
    name = body["metadata"]["name"]
    status = body.get("status") or {}
    champion = status.get("championVersion")
    previous = (status.get("rollout") or {}).get("previousChampion")
    if not champion or not previous or previous == champion:
        raise RequestRefused(f"{name} has no previous version to roll back to")
    return names.ROLLBACK_ANNOTATION, champion


def promote_request(body: dict[str, Any], variant: str) -> tuple[str, str]:
    name = body["metadata"]["name"]
    rollout = (body.get("status") or {}).get("rollout") or {}
    if rollout.get("phase") != RolloutPhase.ab_testing.value:
        raise RequestRefused(f"{name} runs no A/B test (rollout phase: {rollout.get('phase') or 'none'})")
    arms = {v["name"]: v["version"] for v in rollout.get("variants") or []}
    if variant not in arms:
        raise RequestRefused(f"{name} has no variant {variant!r}; one of {', '.join(arms)}")
    if arms[variant] == (body.get("status") or {}).get("championVersion"):
        raise RequestRefused(f"variant {variant} serves version {arms[variant]}, the champion already")
    return names.PROMOTE_ANNOTATION, f"{variant}:{arms[variant]}"


def live_quality(arm: dict[str, Any]) -> str:
    """A variant's labelled predictions, their accuracy or errors, and its comparison with the
    baseline variant (status.rollout.variants[]), for people; empty without feedback."""
    if arm.get("labelled") is None:
        return ""
    figures = [f"{arm['labelled']:,} labelled"] + [f"{label} {arm[key]:.4g}" for key, label in (("accuracy", "accuracy"), ("mae", "MAE"), ("rmse", "RMSE")) if arm.get(key) is not None]
    text = ", ".join(figures)
    comparison = arm.get("comparison")
    if comparison:
        text += f"; vs {comparison['baseline']}: {comparison['verdict']}: {comparison.get('message') or ''}".rstrip(": ")
    return text


def describe(body: dict[str, Any]) -> str:
    """The rollout for people: phase, traffic, the current step, the last checks, what it waits for."""
    meta = body["metadata"]
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    rollout = status.get("rollout") or {}
    lines = [
        f"{meta.get('namespace')}/{meta['name']}: {status.get('phase', 'Pending')}",
        f"  champion:  version {status.get('championVersion') or '-'}",
    ]
    traffic = ", ".join(f"v{t['version']} {t['weight']}% ({t['role']})" for t in status.get("traffic") or [])
    lines.append(f"  traffic:   {traffic or '-'}")
    if rollout:
        strategy = (spec.get("rollout") or {}).get("strategy", "canary")
        lines.append(f"  rollout:   version {rollout.get('candidate') or '-'} {rollout.get('phase') or ''} ({strategy})")
        steps = ((spec.get("rollout") or {}).get("canary") or {}).get("steps") or []
        if steps and rollout.get("phase") in IN_FLIGHT:
            current = rollout.get("stepIndex")
            marks = [f"[{s['weight']}%]" if i == current else f"{s['weight']}%" for i, s in enumerate(steps)]
            lines.append(f"  steps:     {' → '.join(marks)}  (step {rollout.get('step') or '-'}, since {rollout.get('stepStartedAt') or '-'})")
        if rollout.get("checks"):
            lines.append(f"  checks at {rollout.get('lastAnalysisAt')}: (failed analyses {rollout.get('failedChecks', 0)})")
            for check in rollout["checks"]:
                value = "-" if check.get("value") is None else f"{check['value']:.4g}"
                lines.append(f"    {check['name']:<12} {check['verdict']:<13} {value:>10}  {check.get('threshold') or ''}  {check.get('message') or ''}".rstrip())
        for arm in rollout.get("variants") or []:
            figures = ", ".join(
                f"{label} {arm[key]:.4g}" for key, label in (("requests", "requests"), ("errorRate", "error rate"), ("latencyP95", "p95 s")) if arm.get(key) is not None
            )
            pinned = f", header {arm['header']}" if arm.get("header") else ""
            lines.append(f"  variant:   {arm['name']} → version {arm['version']} ({arm['weight']}%{pinned}) {figures}".rstrip())
            quality = live_quality(arm)
            if quality:
                lines.append(f"             live quality: {quality}")
        if rollout.get("previousChampion"):
            lines.append(f"  previous:  version {rollout['previousChampion']} (warm until {rollout.get('warmUntil') or '-'}; `modelship rollback {meta['name']}`)")
        if rollout.get("message"):
            lines.append(f"  latest:    {rollout['message']}")
    for condition in status.get("conditions") or []:
        if condition.get("status") != "Unknown":
            lines.append(f"  {condition['type']:<13} {condition['status']:<6} {condition.get('reason', '')}: {condition.get('message', '')}".rstrip(": "))
    return "\n".join(lines)


def _custom_api():
    from kubernetes import client

    from modelship.operator.kube import load_kube_config

    load_kube_config()
    return client.CustomObjectsApi()


def _get(api: Any, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    try:
        return api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as error:
        if error.status == 404:
            typer.echo(f"error: ModelDeployment {namespace}/{name} not found", err=True)
            raise typer.Exit(1) from None
        raise


def _request(check, name: str, namespace: str, done: str) -> None:
    api = _custom_api()
    body = _get(api, namespace, name)
    try:
        annotation, value = check(body)
    except RequestRefused as refused:
        typer.echo(f"error: {refused}; nothing changed", err=True)
        raise typer.Exit(1) from None
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"annotations": {annotation: value}}})
    typer.echo(done.format(name=name, version=value))


_NAMESPACE = typer.Option("default", "--namespace", "-n", help="Namespace of the ModelDeployment.")
_NAME = typer.Argument(..., help="Name of the ModelDeployment.")


def approve(name: str = _NAME, namespace: str = _NAMESPACE) -> None:
    """Promote the candidate that waits for an approval (sets the modelship.io/approve annotation)."""
    _request(approve_request, name, namespace, "{name}: version {version} approved; the operator promotes it")


def abort(name: str = _NAME, namespace: str = _NAMESPACE) -> None:
    """Roll the candidate in flight back (sets the modelship.io/abort annotation)."""
    _request(abort_request, name, namespace, "{name}: version {version} aborted; the operator rolls it back")


def rollback(name: str = _NAME, namespace: str = _NAMESPACE) -> None:
    """Send all traffic back to the previous champion (sets the modelship.io/rollback annotation)."""
    _request(rollback_request, name, namespace, "{name}: rolling back from version {version}")


def promote(name: str = _NAME, namespace: str = _NAMESPACE, variant: str = typer.Option(..., "--variant", help="The A/B variant whose version becomes champion.")) -> None:
    """End an A/B test: make a variant's version champion (sets the modelship.io/promote annotation)."""
    _request(lambda body: promote_request(body, variant), name, namespace, "{name}: promoting " + variant + " (variant:version {version})")


def status(name: str = _NAME, namespace: str = _NAMESPACE) -> None:
    """Print the rollout of a ModelDeployment: traffic, steps, the last checks, what it waits for."""
    typer.echo(describe(_get(_custom_api(), namespace, name)))
