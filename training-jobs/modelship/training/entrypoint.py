"""Orchestration of one training, and its result.

``run`` goes load → validate → split → train (or search) → evaluate → gate → MLflow, and
returns a :class:`TrainingResult`; ``main`` adds the spec parsing, the exit code and the
result written to the termination message and printed as the last stdout line.

Outcomes: Succeeded (0); InvalidInput (2: the spec or the data, with a one-line reason, and
nothing written to MLflow); GateFailed (3: the version is registered, tagged
``modelship.io/gate=failed``, without alias); Error (1: anything unexpected, worth a retry).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from modelship.api.results import TERMINATION_MESSAGE_LIMIT, ExitCode, TrainingOutcome, TrainingResult
from modelship.api.v1alpha1 import CLASSIFICATION_METRICS, REGRESSION_METRICS, ModelDeployment, ModelDeploymentSpec, unwrap_spec
from modelship.training.errors import InvalidInput

DEFAULT_RESULT_PATH = "/dev/termination-log"
#: Why a training runs (lineage tag ``modelship.io/trigger``).
TRIGGERS = ("spec", "schedule", "drift", "quality", "manual")
#: Triggers that skip training when the data bytes equal the champion's (unless forced).
UNCHANGED_DATA_SKIPS = ("schedule", "drift", "quality")
CONTRACT_METRICS = set(REGRESSION_METRICS + CLASSIFICATION_METRICS)
_EXIT = {
    TrainingOutcome.succeeded.value: ExitCode.ok,
    TrainingOutcome.invalid_input.value: ExitCode.invalid_input,
    TrainingOutcome.gate_failed.value: ExitCode.gate_failed,
    TrainingOutcome.error.value: ExitCode.error,
    TrainingOutcome.unchanged.value: ExitCode.ok,
}


@dataclass
class Settings:
    """Everything a training needs besides the spec."""

    tracking_uri: str
    model_name: str
    registry_uri: str | None = None
    artifact_location: str | None = None
    deployment: str | None = None
    namespace: str | None = None
    generation: str | None = None
    job: str | None = None
    trigger: str | None = None
    #: Why a retraining runs (the drift alert's summary); logged to the run.
    retrain_reason: str | None = None
    #: Train even when the data bytes equal the champion's.
    force: bool = False
    max_dataset_bytes: int = 512 * 1024 * 1024
    secrets: list[str] = field(default_factory=list)


def quiet_threads() -> None:
    """Passive OpenMP waits, set before XGBoost or scikit-learn load libgomp.

    With the default (spinning) policy, XGBoost on 2 threads sharing busy CPUs, or under a
    CFS quota, ran 20-30x slower on this machine (300 trees: 30 s against 1.1 s on 1 thread);
    with PASSIVE it is 2.7 s. A value set by the user wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# --- the result ---------------------------------------------------------------------------


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def scrub(text: str, secrets: list[str] = ()) -> str:
    """Remove credentials: known secret strings (e.g. the tracking URI) and any user:pass@ in URLs."""
    for secret in secrets:
        if secret and len(secret) > 3:
            text = text.replace(secret, _redacted(secret))
    return re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@", r"\1***@", text)


def _redacted(uri: str) -> str:
    from modelship.training.datasets import redact_uri

    return redact_uri(uri)


def render_result(result: TrainingResult, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """The result JSON within ``limit`` bytes: extra metrics go first, then the reason is cut."""
    result = result.model_copy(update={"reason": one_line(result.reason)})
    text = result.model_dump_json(by_alias=True, exclude_none=True)
    if len(text.encode()) <= limit:
        return text
    result = result.model_copy(update={"metrics": {k: v for k, v in result.metrics.items() if k in CONTRACT_METRICS}})
    text = result.model_dump_json(by_alias=True, exclude_none=True)
    while len(text.encode()) > limit and result.reason:
        overflow = len(text.encode()) - limit
        encoded = result.reason.encode()
        budget = len(encoded) - overflow - len("…".encode()) - 8  # JSON escapes may widen
        short = encoded[: max(0, budget)].decode(errors="ignore").rstrip()
        result = result.model_copy(update={"reason": short + "…" if short else ""})
        text = result.model_dump_json(by_alias=True, exclude_none=True)
    return text


def write_result(text: str, path: str, echo: Callable[[str], None]) -> None:
    """Write the termination message. The default path is written only when it exists (the
    kubelet creates it); another path only when its directory exists. Otherwise a note."""
    target = Path(path)
    if path == DEFAULT_RESULT_PATH and not target.exists():
        echo(f"note: {path} does not exist (not in a pod?); result not written there")
        return
    if not target.parent.is_dir():
        echo(f"note: directory {target.parent} does not exist; result not written to {path}")
        return
    try:
        target.write_text(text)
    except OSError as error:
        echo(f"note: cannot write result to {path}: {error.strerror or error}")


def exit_code(result: TrainingResult) -> int:
    return int(_EXIT[result.outcome if isinstance(result.outcome, str) else result.outcome.value])


# --- the spec -----------------------------------------------------------------------------


@dataclass
class Identity:
    """Defaults read from the manifest (``-f``); command-line values win."""

    deployment: str | None = None
    namespace: str | None = None
    generation: str | None = None
    model_name: str | None = None


def load_spec(file: Path | None, spec_json: str | None) -> tuple[ModelDeploymentSpec, Identity]:
    """The spec from a ModelDeployment YAML or from the spec's JSON; InvalidInput otherwise."""
    import yaml
    from pydantic import ValidationError

    from modelship.api import format_errors

    if bool(file) == bool(spec_json):
        raise InvalidInput("give exactly one of --file and --spec-json (MODELSHIP_SPEC)")
    try:
        if file:
            try:
                document = yaml.safe_load(Path(file).read_text())
            except (OSError, yaml.YAMLError) as error:
                raise InvalidInput(f"cannot read {file}: {one_line(str(error))}") from None
            if not isinstance(document, dict):
                raise InvalidInput(f"{file} does not hold a ModelDeployment object")
            resource = ModelDeployment.model_validate(document)
            meta = resource.metadata
            identity = Identity(meta.name, meta.namespace or "default", str(meta.generation) if meta.generation else None, resource.registered_model_name)
            return resource.spec, identity
        try:
            document = json.loads(spec_json or "")
        except json.JSONDecodeError as error:
            raise InvalidInput(f"--spec-json is not JSON: {error}") from None
        spec = ModelDeploymentSpec.model_validate(unwrap_spec(document))
        return spec, Identity(model_name=spec.model_name)
    except ValidationError as error:
        root = "" if file else "spec"
        lines = format_errors(error, root=root)
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise InvalidInput(f"invalid spec: {lines[0]}{more}") from None


def model_name_for(explicit: str | None, identity: Identity, spec: ModelDeploymentSpec, deployment: str | None, namespace: str | None) -> str:
    if explicit:
        return explicit
    if spec.model_name:
        return spec.model_name
    if deployment:
        return f"{namespace or 'default'}-{deployment}"
    if identity.model_name:
        return identity.model_name
    raise InvalidInput("no model name: pass --model-name (MODELSHIP_MODEL_NAME), set spec.modelName, or pass --deployment")


# --- the training -------------------------------------------------------------------------


def run(spec: ModelDeploymentSpec, settings: Settings, echo: Callable[[str], None] = print) -> TrainingResult:
    """One training; InvalidInput propagates (nothing written to MLflow by then)."""
    from modelship.training import datasets, estimators, evaluation, registry, validation
    from modelship.training.preprocessing import build_pipeline, feature_schema

    started = time.monotonic()
    task = str(spec.task)
    dataset = spec.dataset
    training = spec.training
    gate = training.quality_gate
    estimator_name = training.estimator_name

    echo(f"train: model {settings.model_name}, task {task}, estimator {estimator_name}, dataset {datasets.redact_uri(dataset.uri)}")
    resolved = estimators.resolve_estimator(estimator_name, task, training.hyperparameters, dataset.seed)
    if training.search:
        from modelship.training import search as searching

        estimators.check_params(estimator_name, training.search.space, resolved.valid_params, what="search.space parameter")
        searching.distributions(training.search.space)
        if training.search.scoring:
            searching.scoring_for(task, None, training.search.scoring)
    client = registry.connect(settings.tracking_uri, settings.registry_uri)

    stage = time.monotonic()
    loaded = datasets.load_dataset(dataset.uri, str(dataset.format), settings.max_dataset_bytes)
    echo(f"load: {len(loaded.frame)} rows × {loaded.frame.shape[1]} columns, {loaded.sha256[:19]}… in {time.monotonic() - stage:.1f}s")

    if settings.trigger in UNCHANGED_DATA_SKIPS and not settings.force:
        champion_version, champion_hash = registry.champion_dataset_hash(client, settings.model_name)
        if champion_hash and champion_hash == loaded.sha256:
            reason = f"the data bytes ({loaded.sha256[:19]}…) are those champion version {champion_version} was trained on; a {settings.trigger} retraining would learn nothing new (force it with modelship retrain)"
            echo(f"skip: {reason}")
            return TrainingResult(outcome=TrainingOutcome.unchanged, reason=reason, model_name=settings.model_name, dataset_hash=loaded.sha256)

    data = validation.validate(loaded.frame, dataset, task)
    report = data.report
    for issue in report["issues"]:
        if issue["severity"] != "info":
            echo(f"validate: {issue['severity']}: {issue['message']}")
    echo(f"validate: passed, {report['rowsOut']} rows, {len(data.numeric)} numeric + {len(data.categorical)} categorical features")

    X_train, X_test, y_train, y_test = evaluation.split(data.frame, data.features, data.target, task, dataset.test_size, dataset.seed)
    echo(f"split: {len(X_train)} train / {len(X_test)} test rows (seed {dataset.seed})")
    pipeline = build_pipeline(resolved.estimator, data.features, data.kinds, lean=resolved.lean, scale=resolved.scale, target=data.target)

    params: dict[str, Any] = {
        "estimator": estimator_name,
        "estimatorClass": resolved.target,
        "dataset.uri": loaded.uri,
        "dataset.hash": loaded.sha256,
        "dataset.rows": report["rowsOut"],
        "dataset.features": len(data.features),
        "trainRows": len(X_train),
        "testRows": len(X_test),
        **{f"hp.{k}": v for k, v in resolved.params.items()},
    }
    stage = time.monotonic()
    pipeline, search_params, extra_metrics, cv_rows = _fit(pipeline, spec, resolved, X_train, y_train, echo)
    params.update(search_params)
    fit_seconds = time.monotonic() - stage
    extra_metrics["fitSeconds"] = fit_seconds
    echo(f"fit: {fit_seconds:.1f}s")

    metrics, confusion = evaluation.evaluate(pipeline, X_test, y_test, task)
    echo("evaluate: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

    champion_version = champion_value = None
    if gate and gate.must_beat_champion:
        champion_version, champion_value = registry.champion_metric(client, settings.model_name, gate.metric)
    verdict = evaluation.judge(gate, metrics, champion_value, champion_version)
    echo(f"gate: {'passed' if verdict.passed else 'failed'}: {verdict.reason}")

    schema = feature_schema(pipeline)
    example = X_test.dropna().head(3)
    if example.empty:
        example = X_test.head(3)
    content = registry.RunContent(
        pipeline=pipeline,
        params=params,
        metrics=metrics,
        report=report,
        schema=schema,
        reference=registry.reference_sample(data.raw_features.loc[X_train.index], dataset.seed),
        example=example,
        confusion=confusion,
        cv_results=cv_rows,
        extra_metrics=extra_metrics,
    )
    lineage = registry.Lineage(settings.deployment, settings.namespace, settings.generation, settings.job, settings.trigger, loaded.uri, loaded.sha256, settings.retrain_reason)
    stage = time.monotonic()
    experiment_id = registry.ensure_experiment(client, settings.model_name, settings.artifact_location)
    recorded = registry.record(client, settings.model_name, experiment_id, settings.job, content, lineage, verdict.passed, resolved.lean)
    alias = f", alias {recorded.alias}" if recorded.alias else ", no alias (gate failed)"
    echo(f"mlflow: run {recorded.run_id}, registered {settings.model_name} version {recorded.version}{alias} in {time.monotonic() - stage:.1f}s")
    echo(f"done in {time.monotonic() - started:.1f}s")
    return TrainingResult(
        outcome=TrainingOutcome.succeeded if verdict.passed else TrainingOutcome.gate_failed,
        reason=verdict.reason,
        model_name=settings.model_name,
        version=recorded.version,
        run_id=recorded.run_id,
        metrics={**metrics, **extra_metrics},
        gate_passed=verdict.passed,
        dataset_hash=loaded.sha256,
    )


def _fit(pipeline: Any, spec: ModelDeploymentSpec, resolved: Any, X_train: Any, y_train: Any, echo: Callable[[str], None]) -> tuple[Any, dict[str, Any], dict[str, float], list[dict[str, Any]] | None]:
    """Fit the pipeline, or search and refit the best; returns it with params, metrics and the CV table."""
    task, training, seed = str(spec.task), spec.training, spec.dataset.seed
    gate = training.quality_gate
    try:
        if not training.search:
            return pipeline.fit(X_train, y_train), {}, {}, None
        from modelship.training import search as searching

        n_classes = y_train.nunique() if task == "classification" else None
        scoring = searching.scoring_for(task, gate.metric if gate else None, training.search.scoring, n_classes)
        searcher = searching.build_search(pipeline, training.search, resolved.param_prefix, resolved.valid_params, resolved.name, scoring, task, seed, echo)
        searcher.fit(X_train, y_train)
    except InvalidInput:
        raise
    except Exception as error:
        _reraise_as_invalid(error, resolved.name)
        raise
    best, best_score, cv_rows = searching.summarize(searcher, resolved.param_prefix)
    for row in cv_rows:
        echo(f"search: rank {row['rank']} {scoring}={row['meanScore']:.4f} ±{row['stdScore']:.4f} {json.dumps(row['params'], default=str)}")
    echo(f"search: best {scoring}={best_score:.4f} with {json.dumps(best, default=str)}; refit on the training split")
    params = {
        "search.strategy": str(training.search.strategy),
        "search.scoring": scoring,
        "search.cvFolds": training.search.cv_folds,
        "search.candidates": len(cv_rows),
        **{f"best.{k}": v for k, v in best.items()},
    }
    return searcher.best_estimator_, params, {"cvBestScore": best_score}, cv_rows


def _reraise_as_invalid(error: Exception, estimator_name: str) -> None:
    """Fit errors that mean a bad hyperparameter value become InvalidInput."""
    kind = type(error)
    if kind.__name__ == "InvalidParameterError" or (kind.__name__ == "XGBoostError"):
        lines = [line for line in str(error).splitlines() if line.strip() and not line.startswith("Stack trace")]
        message = re.sub(r"^\[[0-9:]+\] \S+: ", "", lines[0] if lines else kind.__name__)
        raise InvalidInput(f"estimator {estimator_name!r}: {message}") from None


def main(
    *,
    file: Path | None,
    spec_json: str | None,
    tracking_uri: str,
    registry_uri: str | None = None,
    model_name: str | None = None,
    deployment: str | None = None,
    namespace: str | None = None,
    generation: str | None = None,
    job: str | None = None,
    trigger: str | None = None,
    retrain_reason: str | None = None,
    force: bool = False,
    result_path: str = DEFAULT_RESULT_PATH,
    artifact_location: str | None = None,
    max_dataset_mb: int = 512,
) -> int:
    """Run one training from CLI values; print and write the result; return the exit code."""
    quiet_threads()
    secrets = [s for s in (tracking_uri, registry_uri) if s]

    def echo(line: str) -> None:
        print(line, flush=True)

    model = None
    try:
        if trigger and trigger not in TRIGGERS:
            raise InvalidInput(f"--trigger (MODELSHIP_TRIGGER) {trigger!r} is not one of {', '.join(TRIGGERS)}")
        spec, identity = load_spec(file, spec_json)
        deployment = deployment or identity.deployment
        namespace = namespace or identity.namespace
        generation = generation or identity.generation
        model = model_name_for(model_name, identity, spec, deployment, namespace)
        settings = Settings(
            tracking_uri=tracking_uri,
            registry_uri=registry_uri,
            model_name=model,
            artifact_location=artifact_location,
            deployment=deployment,
            namespace=namespace,
            generation=generation,
            job=job,
            trigger=trigger,
            retrain_reason=retrain_reason,
            force=force,
            max_dataset_bytes=max_dataset_mb * 1024 * 1024,
            secrets=secrets,
        )
        result = run(spec, settings, echo)
    except InvalidInput as error:
        for issue in (error.report or {}).get("issues", []):
            if issue["severity"] == "error":
                echo(f"validate: error: {scrub(issue['message'], secrets)}")
        echo(f"invalid input: {scrub(one_line(str(error)), secrets)}")
        result = TrainingResult(outcome=TrainingOutcome.invalid_input, reason=scrub(str(error), secrets), model_name=model)
    except Exception as error:  # noqa: BLE001 — the Job must always report
        sys.stderr.write(scrub(traceback.format_exc(), secrets))
        reason = f"{type(error).__name__}: {one_line(str(error))}"
        result = TrainingResult(outcome=TrainingOutcome.error, reason=scrub(reason, secrets), model_name=model)
    text = render_result(result)
    write_result(text, result_path, echo)
    sys.stderr.flush()
    print(text, flush=True)
    return exit_code(result)

