"""Placeholder: the operator (issue 6) replaces this."""

import typer


def operator() -> None:
    """Run the Kubernetes operator that reconciles ModelDeployments."""
    typer.echo("not implemented yet", err=True)
    raise typer.Exit(1)
