"""The ``modelship`` command: one entry point for the operator, the training Job, the model
server and local runs. Each component keeps its own options in a light ``cli`` module and
imports its heavy dependencies only when its command runs, so ``--help`` stays fast."""

from __future__ import annotations

import sys
from typing import Optional
from pathlib import Path

import typer
import yaml
from pydantic import ValidationError

from modelship.api import ModelDeployment, format_errors
from modelship.api.crd import CRD_FILE
from modelship.generated import GeneratedFile

app = typer.Typer(
    name="modelship",
    help="Train, serve, roll out and retrain models from one ModelDeployment resource.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def load_model_deployment(path: Path) -> ModelDeployment:
    """Read a ModelDeployment YAML file; a bad spec exits 2 with one ``path: reason`` line a problem."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        typer.echo(f"error: cannot read {path}: {error}", err=True)
        raise typer.Exit(2) from None
    if not isinstance(document, dict):
        typer.echo(f"error: {path} does not hold a ModelDeployment object", err=True)
        raise typer.Exit(2)
    try:
        return ModelDeployment.model_validate(document)
    except ValidationError as error:
        for line in format_errors(error, root=""):
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2) from None


_WRITE = typer.Option(False, "--write", help="Write the committed files instead of printing.")
_CHECK = typer.Option(False, "--check", help="Exit 1 when the committed files differ from what the code generates.")
_ROOT = typer.Option(Path("."), "--root", help="Repository root for --write and --check.")


def _generated(file: GeneratedFile, write: bool, check: bool, root: Path) -> None:
    if check:
        outdated = file.stale(root)
        for path in outdated:
            typer.echo(f"stale: {path} (run `{file.command} --write`)", err=True)
        raise typer.Exit(1 if outdated else 0)
    if write:
        for path in file.write(root):
            typer.echo(f"wrote {path}")
        return
    sys.stdout.write(file.text())


@app.command()
def crd(
    write: bool = _WRITE,
    check: bool = _CHECK,
    root: Path = _ROOT,
    apply: bool = typer.Option(False, "--apply", help="Server-side apply the CRD to the cluster (field manager `modelship`): how an installed CRD is upgraded, since Helm never upgrades crds/."),
    kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", help="With --apply: the kubeconfig (default: $KUBECONFIG, ~/.kube/config, or the pod's account)."),
    context: Optional[str] = typer.Option(None, "--context", help="With --apply: the kubeconfig context."),
) -> None:
    """Print (or write, or check) the ModelDeployment CRD generated from the pydantic models
    (manifests/crds/ and charts/modelship/crds/), or apply it to a cluster."""
    if apply:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config.config_exception import ConfigException

        from modelship.api.crd import apply_crd

        try:
            stored = apply_crd(kubeconfig, context)
        except ConfigException as error:
            typer.echo(f"error: no cluster to apply to (kubeconfig {kubeconfig or 'default'}): {error}", err=True)
            raise typer.Exit(1) from None
        except ApiException as error:
            typer.echo(f"error: the API server refused the CRD ({error.status} {error.reason}): {error.body}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"applied customresourcedefinition {stored['metadata']['name']} (generation {stored['metadata']['generation']})")
        return
    _generated(CRD_FILE, write, check, root)


monitoring = typer.Typer(help="Monitoring assets generated from the metric names.", no_args_is_help=True)
app.add_typer(monitoring, name="monitoring")


@monitoring.command("rules")
def monitoring_rules(write: bool = _WRITE, check: bool = _CHECK, root: Path = _ROOT) -> None:
    """Print (or write, or check) the Prometheus recording and alerting rules
    (charts/modelship/files/prometheus-rules.yaml, included by the chart's PrometheusRule)."""
    from modelship.monitoring.rules import RULES_FILE

    _generated(RULES_FILE, write, check, root)


@monitoring.command("dashboards")
def monitoring_dashboards(write: bool = _WRITE, check: bool = _CHECK, root: Path = _ROOT) -> None:
    """Print (or write, or check) the Grafana dashboards (charts/modelship/files/dashboards/,
    shipped by the chart for Grafana's dashboard sidecar). Needs the dev extra (grafana-foundation-sdk)."""
    from modelship.monitoring.dashboards import DASHBOARD_FILE

    _generated(DASHBOARD_FILE, write, check, root)


@monitoring.command("alertmanager")
def monitoring_alertmanager(
    write: bool = _WRITE,
    check: bool = _CHECK,
    root: Path = _ROOT,
    webhook_url: str = typer.Option("", "--webhook-url", help="Print a plain alertmanager.yml route and receivers for this operator URL (e.g. http://modelship-operator.modelship-system.svc:8080/alerts) instead of the chart's AlertmanagerConfig spec."),
    token_file: str = typer.Option("/etc/alertmanager/secrets/modelship-webhook-token", "--token-file", help="With --webhook-url: the file Alertmanager reads the operator's bearer token from."),
    slack_channel: str = typer.Option("", "--slack-channel", help="With --webhook-url: also notify this Slack channel."),
    slack_api_url_file: str = typer.Option("/etc/alertmanager/secrets/slack-api-url", "--slack-api-url-file", help="With --slack-channel: file holding the Slack incoming-webhook URL."),
    email_to: str = typer.Option("", "--email-to", help="With --webhook-url: also notify this address (global smtp_* settings needed)."),
) -> None:
    """Print (or write, or check) the Alertmanager routing of the Modelship alerts: the chart's
    AlertmanagerConfig spec (charts/modelship/files/alertmanagerconfig-spec.yaml), or with
    --webhook-url the equivalent plain alertmanager.yml route and receivers."""
    from modelship.monitoring import alertmanager

    if not webhook_url:
        _generated(alertmanager.CHART_FILE, write, check, root)
        return
    slack = alertmanager.Slack(slack_channel, api_url_file=slack_api_url_file) if slack_channel else None
    email = alertmanager.Email(email_to) if email_to else None
    document = alertmanager.alertmanager_yaml(alertmanager.routing(webhook_url, token_file=token_file, slack=slack, email=email))
    sys.stdout.write(yaml.safe_dump(document, sort_keys=False, width=1000))


@app.command()
def retrain(
    name: str = typer.Argument(..., help="ModelDeployment name."),
    namespace: str = typer.Option("", "--namespace", "-n", help="Its namespace; the kubeconfig context's when unset."),
) -> None:
    """Ask the operator to retrain a ModelDeployment now (trigger manual): sets its
    modelship.io/retrain annotation; `kubectl describe mdep NAME` shows the Job it starts."""
    from modelship.operator.kube import request_retrain

    try:
        value, namespace = request_retrain(name, namespace or None)
    except LookupError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"modeldeployment {namespace}/{name}: retraining requested ({value})")


@app.command()
def validate(file: Path = typer.Option(..., "-f", "--file", help="ModelDeployment YAML file.")) -> None:
    """Check a ModelDeployment file against the contract; prints every problem with its field path."""
    resource = load_model_deployment(file)
    typer.echo(f"{file}: {resource.kind} {resource.metadata.name} is valid")


def _register_components() -> None:
    from modelship.operator.cli import operator
    from modelship.serving.cli import serve
    from modelship.training.cli import train
    from modelship.local import run
    from modelship.serving.export import predictions
    from modelship.operator import requests

    app.add_typer(predictions, name="predictions")
    app.command(help=train.__doc__)(train)
    app.command(help=serve.__doc__)(serve)
    app.command(help=run.__doc__)(run)
    app.command(help=operator.__doc__)(operator)
    for command in (requests.approve, requests.abort, requests.rollback, requests.promote, requests.status):
        app.command(help=command.__doc__)(command)


_register_components()


def main() -> None:
    app()
