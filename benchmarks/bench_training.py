"""Training benchmark: the real entrypoint (load → validate → fit → evaluate → log → register)
against a throwaway sqlite MLflow, on the shared data sets.

    .venv/bin/python benchmarks/bench_training.py [--datasets ../shared/datasets] [--quick]

Prints, for California housing with XGBoost (600 trees, depth 7: the DESIGN.md settings and
a tuned learning rate / subsampling), rows, fit time, the wall time of the whole run
(train + log + register; in-process, then as a fresh ``modelship train`` process like a
Job), and held-out R² and RMSE; then personality classification accuracy
at the spec's seed and across other split seeds. Targets: R² ≥ 0.84 and the whole run
≤ 60 s; accuracy ≥ 0.92. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
for key, value in {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "GIT_PYTHON_REFRESH": "quiet"}.items():
    os.environ.setdefault(key, value)

REPO = Path(__file__).resolve().parents[1]
DESIGN = {"n_estimators": 600, "max_depth": 7}
TUNED = {"n_estimators": 600, "max_depth": 7, "learning_rate": 0.05, "subsample": 0.8, "colsample_bytree": 0.7, "min_child_weight": 5, "reg_lambda": 5}
PERSONALITY = {"n_estimators": 100, "max_depth": 2, "learning_rate": 0.1}


def train(spec: dict, model_name: str, root: Path) -> tuple[dict, float]:
    from modelship.api.v1alpha1 import ModelDeploymentSpec
    from modelship.training.entrypoint import Settings, run

    settings = Settings(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_location=str(root / "artifacts"),
        model_name=model_name,
        deployment=model_name,
        namespace="bench",
        trigger="spec",
    )
    started = time.perf_counter()
    result = run(ModelDeploymentSpec.model_validate(spec), settings, echo=lambda line: None)
    return result.model_dump(), time.perf_counter() - started


def california(datasets: Path, root: Path, hyperparameters: dict, label: str) -> None:
    spec = {
        "task": "regression",
        "dataset": {"uri": (datasets / "california_housing.csv").as_uri(), "target": "median_house_value"},
        "training": {"framework": "xgboost", "hyperparameters": hyperparameters, "qualityGate": {"metric": "r2", "threshold": 0.84}},
    }
    result, wall = train(spec, f"california-{label}", root)
    metrics = result["metrics"]
    print(
        f"california housing, xgboost {label} {hyperparameters}: rows 20640 (16512 train / 4128 test), "
        f"fit {metrics['fitSeconds']:.1f} s, whole run (load+validate+fit+evaluate+log+register) {wall:.1f} s, "
        f"R² {metrics['r2']:.4f}, RMSE {metrics['rmse']:,.0f}, gate {'passed' if result['gate_passed'] else 'failed'}",
        flush=True,
    )


def california_process(datasets: Path, root: Path, hyperparameters: dict) -> None:
    """The same as a training Job: a fresh ``modelship train`` process, imports included."""
    import json
    import subprocess

    spec = {
        "task": "regression",
        "dataset": {"uri": (datasets / "california_housing.csv").as_uri(), "target": "median_house_value"},
        "training": {"framework": "xgboost", "hyperparameters": hyperparameters, "qualityGate": {"metric": "r2", "threshold": 0.84}},
    }
    command = [
        str(Path(sys.executable).parent / "modelship"), "train",
        "--tracking-uri", f"sqlite:///{root / 'process.db'}", "--artifact-location", str(root / "process-artifacts"),
        "--model-name", "california-process", "--result-path", str(root / "result.json"),
    ]
    started = time.perf_counter()
    completed = subprocess.run(command, env={**os.environ, "MODELSHIP_SPEC": json.dumps(spec)}, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    metrics = result.get("metrics", {})
    print(
        f"california housing, `modelship train` process (tuned): exit {completed.returncode}, wall {wall:.1f} s "
        f"(process start, imports, load, validate, fit {metrics.get('fitSeconds', float('nan')):.1f} s, evaluate, log, register), "
        f"R² {metrics.get('r2', float('nan')):.4f}, RMSE {metrics.get('rmse', float('nan')):,.0f}, version {result.get('version')}",
        flush=True,
    )


def personality(datasets: Path, root: Path, seeds: list[int]) -> None:
    from modelship.api.v1alpha1 import DatasetSpec
    from modelship.training import evaluation, validation
    from modelship.training.estimators import resolve_estimator
    from modelship.training.preprocessing import build_pipeline

    uri = (datasets / "personality.csv").as_uri()
    spec = {
        "task": "classification",
        "dataset": {"uri": uri, "target": "Personality"},
        "training": {"framework": "xgboost", "hyperparameters": PERSONALITY, "qualityGate": {"metric": "accuracy", "threshold": 0.9}},
    }
    result, wall = train(spec, "personality", root)
    metrics = result["metrics"]
    print(
        f"personality, xgboost {PERSONALITY}: rows 2900 (2320 train / 580 test, seed 42), fit {metrics['fitSeconds']:.1f} s, "
        f"whole run {wall:.1f} s, accuracy {metrics['accuracy']:.4f}, f1Macro {metrics['f1Macro']:.4f}, rocAuc {metrics['rocAuc']:.4f}",
        flush=True,
    )
    if not seeds:
        return
    import pandas as pd

    frame = pd.read_csv(datasets / "personality.csv")
    data = validation.validate(frame, DatasetSpec(uri=uri, target="Personality"), "classification")
    scores = []
    for seed in seeds:
        X_train, X_test, y_train, y_test = evaluation.split(data.frame, data.features, data.target, "classification", 0.2, seed)
        resolved = resolve_estimator("xgboost", "classification", PERSONALITY, seed)
        pipeline = build_pipeline(resolved.estimator, data.features, data.kinds, lean=True).fit(X_train, y_train)
        scores.append(evaluation.evaluate(pipeline, X_test, y_test, "classification")[0]["accuracy"])
    print(f"personality accuracy by split seed {dict(zip(seeds, (round(s, 4) for s in scores)))}: mean {statistics.mean(scores):.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=(REPO / ".." / "shared" / "datasets").resolve(), help="Folder with california_housing.csv and personality.csv.")
    parser.add_argument("--quick", action="store_true", help="Only the tuned California run and personality at seed 42.")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if not args.quick:
            california(args.datasets, root, DESIGN, "design")
        california(args.datasets, root, TUNED, "tuned")
        california_process(args.datasets, root, TUNED)
        personality(args.datasets, root, [] if args.quick else [0, 1, 2, 3, 4])


if __name__ == "__main__":
    main()
