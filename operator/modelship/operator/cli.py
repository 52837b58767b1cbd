"""``modelship operator``: run the kopf operator."""

from __future__ import annotations

import os

import typer


def operator(
    namespace: list[str] = typer.Option([], "--namespace", "-n", help="Watch this namespace (repeatable). Default: every namespace."),
    http_port: int = typer.Option(8080, "--http-port", envvar="MODELSHIP_HTTP_PORT", help="Port of /healthz, /readyz and /metrics."),
    http_host: str = typer.Option("0.0.0.0", "--http-host", envvar="MODELSHIP_HTTP_HOST", help="Address of the HTTP endpoints."),
    log_format: str = typer.Option("json", "--log-format", help="json (structured, for log pipelines) or plain."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run the Kubernetes operator that reconciles ModelDeployments."""
    import asyncio

    import kopf

    import modelship.operator.handlers  # noqa: F401  (registers the handlers)

    os.environ["MODELSHIP_HTTP_PORT"] = str(http_port)
    os.environ["MODELSHIP_HTTP_HOST"] = http_host
    os.environ["MODELSHIP_WATCH_NAMESPACES"] = ",".join(namespace)
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.PLAIN)
    asyncio.run(
        kopf.operator(
            standalone=True,
            namespaces=namespace,  # kopf iterates it: None fails, () with clusterwide watches all
            clusterwide=not namespace,
        )
    )
