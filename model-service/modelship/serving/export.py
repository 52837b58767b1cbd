"""``modelship predictions export``: recent predictions from the prediction store, joined with
their feedback, as CSV or Parquet: one row per record, the model's input features as columns,
then the prediction and the ground truth (the data a retraining on recent traffic needs)."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from modelship.api.base import parse_duration
from modelship.api.names import ENV_PREDICTION_STORE_DSN

predictions = typer.Typer(help="The prediction store (spec.monitoring.feedback): stored predictions and their feedback.", no_args_is_help=True)


class Format(str, Enum):
    csv = "csv"
    parquet = "parquet"


#: Columns after the features, in order.
META_COLUMNS = ["record_id", "request_id", "ts", "version", "variant", "prediction", "label", "value", "feedback_ts"]


def query(model: str, since_seconds: float, version: str | None, labelled_only: bool, limit: int) -> tuple[str, tuple[Any, ...]]:
    """The SQL (and its parameters) of an export: newest first, at most ``limit`` rows."""
    from modelship.serving.store import FEEDBACK_TABLE, PREDICTIONS_TABLE

    where = ["p.model = %s", "p.ts >= now() - make_interval(secs => %s)"]
    params: list[Any] = [model, since_seconds]
    if version:
        where.append("p.version = %s")
        params.append(version)
    if labelled_only:
        where.append("f.record_id IS NOT NULL")
    statement = (
        "SELECT p.record_id, p.request_id, p.ts, p.version, p.variant, p.inputs, p.prediction, f.label, f.value, f.ts "
        f"FROM {PREDICTIONS_TABLE} p LEFT JOIN {FEEDBACK_TABLE} f USING (model, record_id) "
        f"WHERE {' AND '.join(where)} ORDER BY p.ts DESC LIMIT %s"
    )
    return statement, (*params, limit)


def to_frame(rows: list[tuple[Any, ...]], target: str | None = None) -> Any:
    """Rows of :func:`query` → a DataFrame: features first, then :data:`META_COLUMNS`; with
    ``target`` the ground truth (label or value) is one column of that name instead."""
    import pandas as pd

    features = pd.DataFrame([row[5] for row in rows])
    meta = pd.DataFrame([(*row[:5], *row[6:]) for row in rows], columns=META_COLUMNS)
    frame = pd.concat([features, meta], axis=1) if len(rows) else pd.DataFrame(columns=META_COLUMNS)
    if target:
        frame[target] = frame["label"].where(frame["label"].notna(), frame["value"])
        frame = frame.drop(columns=["label", "value"])
    return frame


@predictions.command("export")
def export(
    model: str = typer.Option(..., "--model", help="Registered model name (the ModelDeployment's model name)."),
    output: Path = typer.Option(..., "--output", "-o", help="File to write."),
    file_format: Format = typer.Option(Format.csv, "--format", help="csv or parquet."),
    since: str = typer.Option("24h", "--since", help="Predictions newer than this duration (e.g. 30m, 24h)."),
    version: Optional[str] = typer.Option(None, "--version", help="Only this model version."),
    labelled_only: bool = typer.Option(False, "--labelled-only", help="Only predictions that received feedback."),
    target: Optional[str] = typer.Option(None, "--target", help="Name the ground-truth column like the training target (one column instead of label and value)."),
    limit: int = typer.Option(1_000_000, "--limit", min=1, help="At most this many rows, newest first."),
    dsn_env: str = typer.Option(ENV_PREDICTION_STORE_DSN, "--dsn-env", help="Environment variable that holds the PostgreSQL DSN (never a flag: it holds a password)."),
) -> None:
    """Export recent predictions joined with their feedback as CSV or Parquet."""
    dsn = os.environ.get(dsn_env)
    if not dsn:
        typer.echo(f"error: --dsn-env: {dsn_env} is not set (the prediction store's PostgreSQL DSN)", err=True)
        raise typer.Exit(2)
    try:
        since_seconds = parse_duration(since)
    except ValueError as error:
        typer.echo(f"error: --since: {error}", err=True)
        raise typer.Exit(2) from None
    import psycopg

    statement, params = query(model, since_seconds, version, labelled_only, limit)
    try:
        with psycopg.connect(dsn, connect_timeout=10) as connection:
            rows = connection.execute(statement, params).fetchall()
    except psycopg.Error as error:
        typer.echo(f"error: the prediction store: {type(error).__name__}: {str(error).strip()}", err=True)
        raise typer.Exit(1) from None
    frame = to_frame(rows, target)
    output.parent.mkdir(parents=True, exist_ok=True)
    if file_format == Format.parquet:
        frame.to_parquet(output, index=False)
    else:
        frame.to_csv(output, index=False)
    labelled = int(frame["feedback_ts"].notna().sum()) if len(frame) else 0
    typer.echo(f"wrote {len(frame)} predictions ({labelled} with feedback) of model {model} to {output}")
