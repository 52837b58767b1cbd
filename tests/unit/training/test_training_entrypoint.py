"""The result JSON, the spec sources and the model name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelship.api.results import TERMINATION_MESSAGE_LIMIT, TrainingOutcome, TrainingResult
from modelship.training.entrypoint import DEFAULT_RESULT_PATH, Identity, exit_code, load_spec, model_name_for, render_result, scrub, write_result
from modelship.training.errors import InvalidInput

SPEC = {"task": "regression", "dataset": {"uri": "builtin:sklearn/diabetes", "target": "target"}}


def test_small_result_is_compact_camel_case_json():
    result = TrainingResult(outcome=TrainingOutcome.succeeded, reason="ok", model_name="m", version="3", metrics={"r2": 0.9}, gate_passed=True)
    assert render_result(result) == '{"outcome":"Succeeded","reason":"ok","modelName":"m","version":"3","metrics":{"r2":0.9},"gatePassed":true}'


def test_truncation_drops_extra_metrics_first_then_cuts_the_reason():
    extra = {f"m{i}": 0.123456789 for i in range(400)}
    result = TrainingResult(outcome=TrainingOutcome.succeeded, reason="short", metrics={"r2": 0.8, **extra})
    text = render_result(result)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert json.loads(text)["metrics"] == {"r2": 0.8}
    long = TrainingResult(outcome=TrainingOutcome.invalid_input, reason="é" * 5000 + "\nsecond line", metrics={"r2": 0.8})
    text = render_result(long)
    parsed = json.loads(text)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert parsed["reason"].endswith("…") and parsed["metrics"] == {"r2": 0.8} and "\n" not in parsed["reason"]


def test_reason_is_one_line():
    text = render_result(TrainingResult(outcome=TrainingOutcome.error, reason="a\n  b\tc"))
    assert json.loads(text)["reason"] == "a b c"


@pytest.mark.parametrize(
    ("text", "secrets", "shown"),
    [
        ("cannot reach https://alice:s3cret@mlflow.example/api", [], "cannot reach https://***@mlflow.example/api"),
        ("cannot reach postgresql://u:p@db/mlflow", ["postgresql://u:p@db/mlflow"], "cannot reach postgresql://***@db/mlflow"),
        ("plain", ["http://mlflow:5000"], "plain"),
    ],
)
def test_scrub(text, secrets, shown):
    assert scrub(text, secrets) == shown


@pytest.mark.parametrize(("outcome", "code"), [("Succeeded", 0), ("InvalidInput", 2), ("GateFailed", 3), ("Error", 1)])
def test_exit_codes(outcome, code):
    assert exit_code(TrainingResult(outcome=outcome)) == code


def test_write_result(tmp_path: Path):
    notes: list[str] = []
    write_result("{}", str(tmp_path / "r.json"), notes.append)
    assert (tmp_path / "r.json").read_text() == "{}" and not notes
    write_result("{}", str(tmp_path / "no" / "r.json"), notes.append)
    assert "does not exist" in notes[-1]
    if not Path(DEFAULT_RESULT_PATH).exists():
        write_result("{}", DEFAULT_RESULT_PATH, notes.append)
        assert "not in a pod" in notes[-1] and not Path(DEFAULT_RESULT_PATH).exists()


def test_load_spec_from_yaml_and_json(tmp_path: Path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(json.dumps({"apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "diab", "namespace": "ml", "generation": 4}, "spec": SPEC}))
    spec, identity = load_spec(manifest, None)
    assert spec.dataset.target == "target"
    assert identity == Identity("diab", "ml", "4", "ml-diab")
    spec, identity = load_spec(None, json.dumps(SPEC))
    assert str(spec.task) == "regression" and identity.model_name is None


@pytest.mark.parametrize(
    ("file_text", "spec_json", "message"),
    [
        (None, None, "give exactly one of --file and --spec-json"),
        (None, "{not json", "--spec-json is not JSON"),
        (None, json.dumps({**SPEC, "task": "ranking"}), r"^invalid spec: spec.task: "),
        (None, json.dumps({**SPEC, "training": {"estimator": "ridge", "framework": "sklearn", "hyperparameters": {}, "qualityGate": {"metric": "accuracy", "threshold": 1}}}), r"invalid spec: .*accuracy does not suit task regression"),
        ("[1, 2]", None, "does not hold a ModelDeployment object"),
    ],
)
def test_load_spec_rejects(tmp_path: Path, file_text, spec_json, message):
    file = None
    if file_text is not None:
        file = tmp_path / "m.yaml"
        file.write_text(file_text)
    with pytest.raises(InvalidInput, match=message):
        load_spec(file, spec_json)


@pytest.mark.parametrize(
    ("explicit", "spec_name", "deployment", "namespace", "identity", "name"),
    [
        ("given", "in-spec", "d", "ns", None, "given"),
        (None, "in-spec", "d", "ns", None, "in-spec"),
        (None, None, "d", "ns", None, "ns-d"),
        (None, None, "d", None, None, "default-d"),
        (None, None, None, None, "ml-diab", "ml-diab"),
    ],
)
def test_model_name(explicit, spec_name, deployment, namespace, identity, name):
    spec, _ = load_spec(None, json.dumps({**SPEC, "modelName": spec_name} if spec_name else SPEC))
    assert model_name_for(explicit, Identity(model_name=identity), spec, deployment, namespace) == name


def test_model_name_required():
    spec, _ = load_spec(None, json.dumps(SPEC))
    with pytest.raises(InvalidInput, match="no model name"):
        model_name_for(None, Identity(), spec, None, None)


def test_cli_module_stays_light():
    import subprocess
    import sys

    code = "import sys, modelship.training.cli; heavy = {'pandas', 'sklearn', 'mlflow', 'xgboost'} & set(sys.modules); assert not heavy, heavy"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_trigger_is_invalid_input(tmp_path: Path, capsys):
    from modelship.training.entrypoint import main

    code = main(file=None, spec_json=json.dumps(SPEC), tracking_uri="sqlite:///unused.db", model_name="m", trigger="cron", result_path=str(tmp_path / "r.json"))
    assert code == 2
    assert json.loads((tmp_path / "r.json").read_text())["reason"] == "--trigger (MODELSHIP_TRIGGER) 'cron' is not one of spec, schedule, drift, quality, manual"
    assert capsys.readouterr().out.strip().splitlines()[-1] == (tmp_path / "r.json").read_text()


def test_lineage_tags_and_reference_sample():
    import pandas as pd

    from modelship.training.registry import Lineage, reference_sample

    tags = Lineage("d", "ns", "3", None, "drift", "file:///x.csv", "sha256:ab").tags(gate_passed=False)
    assert tags == {
        "modelship.io/deployment": "d",
        "modelship.io/namespace": "ns",
        "modelship.io/generation": "3",
        "modelship.io/trigger": "drift",
        "modelship.io/dataset-uri": "file:///x.csv",
        "modelship.io/dataset-hash": "sha256:ab",
        "modelship.io/gate": "failed",
    }
    frame = pd.DataFrame({"a": range(12000)})
    sample = reference_sample(frame, seed=1)
    assert len(sample) == 5000 and sample.equals(reference_sample(frame, seed=1))
    assert len(reference_sample(frame.head(10), seed=1)) == 10
