"""Placeholder: the model server (issue 4) replaces this."""

import typer


def serve() -> None:
    """Serve one registered model version over HTTP (the serving pod's entrypoint)."""
    typer.echo("not implemented yet", err=True)
    raise typer.Exit(1)
