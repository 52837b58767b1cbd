"""The contract: samples parse, defaults live in the models, each invalid spec is rejected
with the field path a user can act on."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from modelship.api import ModelDeployment, format_errors, parse_duration
from modelship.api.v1alpha1 import CanarySpec, ModelDeploymentSpec, QualityGate, SearchSpec
from spec_cases import INVALID, SAMPLES, base_resource


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_every_sample_is_valid(path):
    resource = ModelDeployment.model_validate(yaml.safe_load(path.read_text()))
    assert resource.metadata.name
    assert resource.spec.dataset.target


def test_defaults_fill_every_section_of_a_minimal_spec():
    spec = ModelDeploymentSpec.model_validate({"task": "regression", "dataset": {"uri": "builtin:sklearn/diabetes", "target": "target"}})
    assert spec.training.framework == "sklearn" and spec.training.estimator_name == "randomForest"
    assert [step.weight for step in spec.rollout.canary.steps] == [10, 50, 100]
    assert spec.rollout.strategy == "canary" and spec.rollout.approval == "auto"
    assert spec.serving.batching.max_batch_size == 64 and spec.serving.replicas is None
    assert spec.monitoring.drift.enabled and not spec.monitoring.retrain_on_drift
    assert spec.dataset.test_size == 0.2 and spec.dataset.seed == 42


def test_wire_form_is_camel_case_and_round_trips():
    resource = ModelDeployment.model_validate(base_resource())
    wire = resource.spec.to_wire()
    assert "qualityGate" in wire["training"] and "maxLatencyP95Ms" in wire["rollout"]["analysis"]
    assert ModelDeploymentSpec.model_validate(wire) == resource.spec


def test_registered_model_name_defaults_to_namespace_and_name():
    resource = ModelDeployment.model_validate(base_resource())
    assert resource.registered_model_name == "default-california-housing"
    named = base_resource()
    named["spec"]["modelName"] = "housing"
    assert ModelDeployment.model_validate(named).registered_model_name == "housing"


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_spec_is_rejected_naming_the_field(case):
    resource = case.base()
    case.mutate(resource)
    with pytest.raises(ValidationError) as raised:
        ModelDeployment.model_validate(resource)
    lines = format_errors(raised.value, root="")
    matching = [line for line in lines if line.startswith(case.path + ":")]
    assert matching, f"no error at {case.path}: {lines}"
    assert any(case.message in line for line in matching), lines


def test_all_rule_failures_are_reported_together():
    with pytest.raises(ValidationError) as raised:
        CanarySpec.model_validate({"steps": [{"weight": 50}, {"weight": 20}, {"weight": 30}]})
    lines = format_errors(raised.value, root="spec.rollout.canary")
    assert lines == [
        "spec.rollout.canary.steps[1].weight: must be greater than previous step (50)",
        "spec.rollout.canary.steps[2].weight: the last canary step must have weight 100",
    ]


@pytest.mark.parametrize(
    "space, problem",
    [
        ({}, "needs at least one parameter"),
        ({"max_depth": []}, "at least one candidate"),
        ({"max_depth": 3}, "must be a list of candidate values"),
        ({"lr": {"distribution": "normal", "low": 0, "high": 1}}, "needs distribution"),
        ({"lr": {"distribution": "uniform", "low": 1, "high": 0.5}}, "low must be smaller than high"),
    ],
)
def test_search_space_shapes(space, problem):
    with pytest.raises(ValidationError, match=problem):
        SearchSpec.model_validate({"strategy": "random", "space": space, "maxTrials": 3})


def test_grid_search_rejects_distributions():
    with pytest.raises(ValidationError, match="must be a list of candidate values"):
        SearchSpec.model_validate({"strategy": "grid", "space": {"lr": {"distribution": "uniform", "low": 0, "high": 1}}})


@pytest.mark.parametrize(
    "metric, threshold, value, passes",
    [("r2", 0.8, 0.85, True), ("r2", 0.8, 0.79, False), ("rmse", 50000, 48000, True), ("rmse", 50000, 51000, False), ("mae", 1.0, 1.0, True)],
)
def test_quality_gate_direction(metric, threshold, value, passes):
    assert QualityGate(metric=metric, threshold=threshold).passes(value) is passes


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("2h", 7200)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "m", "1d"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    "document, expected",
    [
        ({"apiVersion": "modelship.io/v1alpha1", "spec": {"task": "regression"}}, {"task": "regression"}),
        ({"task": "regression", "dataset": {}}, {"task": "regression", "dataset": {}}),
        ({"task": "regression", "spec": {"x": 1}}, {"task": "regression", "spec": {"x": 1}}),
        ({"spec": "not an object"}, {"spec": "not an object"}),
        ([1, 2], [1, 2]),
    ],
)
def test_unwrap_spec_takes_a_resource_or_a_spec(document, expected):
    from modelship.api.v1alpha1 import unwrap_spec

    assert unwrap_spec(document) == expected
