"""Placeholder: the training entrypoint (issue 3) replaces this."""

import typer


def train() -> None:
    """Train, evaluate and register a model version (the training Job's entrypoint)."""
    typer.echo("not implemented yet", err=True)
    raise typer.Exit(1)
