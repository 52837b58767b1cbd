"""The ``modelship`` command: one entry point for the operator, the training Job, the model
server and local runs. Each component keeps its own options in a light ``cli`` module and
imports its heavy dependencies only when its command runs, so ``--help`` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
import yaml
from pydantic import ValidationError

from modelship.api import ModelDeployment, format_errors
from modelship.api.crd import crd_yaml, stale_outputs, write_crd

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


@app.command()
def crd(
    write: bool = typer.Option(False, "--write", help="Write manifests/crds/ and charts/modelship/crds/ instead of printing."),
    check: bool = typer.Option(False, "--check", help="Exit 1 when the committed CRD files differ from the models."),
    root: Path = typer.Option(Path("."), "--root", help="Repository root for --write and --check."),
) -> None:
    """Print (or write, or check) the ModelDeployment CRD generated from the pydantic models."""
    if check:
        stale = stale_outputs(root)
        for path in stale:
            typer.echo(f"stale: {path} (run `modelship crd --write`)", err=True)
        raise typer.Exit(1 if stale else 0)
    if write:
        for path in write_crd(root):
            typer.echo(f"wrote {path}")
        return
    sys.stdout.write(crd_yaml())


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

    app.command(help=train.__doc__)(train)
    app.command(help=serve.__doc__)(serve)
    app.command(help=run.__doc__)(run)
    app.command(help=operator.__doc__)(operator)


_register_components()


def main() -> None:
    app()
