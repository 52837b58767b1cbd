"""Placeholder: the local train-and-serve run replaces this."""

import typer


def run() -> None:
    """Train and serve a ModelDeployment locally with the pods' entrypoints, then print a prediction."""
    typer.echo("not implemented yet", err=True)
    raise typer.Exit(1)
