"""One table of ModelDeployment specs, valid and invalid, shared by the pydantic unit tests and
the API-server tests, so the CEL twins of the pydantic rules are held to the same cases."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))


def base_resource() -> dict[str, Any]:
    """A complete, valid resource touching every part of the spec."""
    return copy.deepcopy(yaml.safe_load((REPO / "manifests/samples/california-housing-canary.yaml").read_text()))


def ab_resource() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load((REPO / "manifests/samples/personality-abtest.yaml").read_text()))


@dataclass(frozen=True)
class InvalidCase:
    id: str
    mutate: Callable[[dict[str, Any]], None]
    #: Where pydantic (and the CLI) must put the blame.
    path: str
    #: Words pydantic's message must contain.
    message: str
    #: Field the API server names, and words of its message.
    api_path: str
    api_message: str
    base: Callable[[], dict[str, Any]] = base_resource


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(resource: dict[str, Any]) -> None:
        node = resource
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        last = keys[-1]
        if value is _DELETE:
            del node[last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


_DELETE = object()

INVALID = [
    InvalidCase("canary-not-increasing", _set("spec.rollout.canary.steps", [{"weight": 50}, {"weight": 20}, {"weight": 100}]),
                "spec.rollout.canary.steps[1].weight", "must be greater than previous step (50)",
                "spec.rollout.canary.steps", "canary step weights must strictly increase"),
    InvalidCase("canary-not-ending-at-100", _set("spec.rollout.canary.steps", [{"weight": 10}, {"weight": 60}]),
                "spec.rollout.canary.steps[1].weight", "last canary step must have weight 100",
                "spec.rollout.canary.steps", "the last canary step must have weight 100"),
    InvalidCase("canary-weight-zero", _set("spec.rollout.canary.steps.0.weight", 0),
                "spec.rollout.canary.steps[0].weight", "greater than or equal to 1",
                "spec.rollout.canary.steps[0].weight", "greater than or equal to 1"),
    InvalidCase("canary-pause-not-duration", _set("spec.rollout.canary.steps.0.pause", "5 minutes"),
                "spec.rollout.canary.steps[0].pause", "not a duration",
                "spec.rollout.canary.steps[0].pause", "should match"),
    InvalidCase("ab-weights-not-100", _set("spec.rollout.abTest.variants.1.weight", 10),
                "spec.rollout.abTest.variants", "must sum to 100 (got 90)",
                "spec.rollout.abTest.variants", "A/B variant weights must sum to 100", base=ab_resource),
    InvalidCase("ab-one-variant", _set("spec.rollout.abTest.variants", [{"name": "only", "modelVersion": "1", "weight": 100}]),
                "spec.rollout.abTest.variants", "at least 2 variants",
                "spec.rollout.abTest.variants", "an A/B test needs at least 2 variants", base=ab_resource),
    InvalidCase("ab-duplicate-names", _set("spec.rollout.abTest.variants.1.name", "champion"),
                "spec.rollout.abTest.variants[1].name", "must be unique",
                "spec.rollout.abTest.variants", "A/B variant names must be unique", base=ab_resource),
    InvalidCase("ab-unknown-significance-test", _set("spec.rollout.abTest.test", "bayesian"),
                "spec.rollout.abTest.test", "'sequential' or 'fixedHorizon'",
                "spec.rollout.abTest.test", "Unsupported value", base=ab_resource),
    InvalidCase("ab-min-detectable-effect-zero", _set("spec.rollout.abTest.minDetectableEffect", 0),
                "spec.rollout.abTest.minDetectableEffect", "greater than 0",
                "spec.rollout.abTest.minDetectableEffect", "greater than 0", base=ab_resource),
    InvalidCase("ab-strategy-without-variants", _set("spec.rollout.strategy", "abTest"),
                "spec.rollout.abTest", "strategy abTest needs abTest.variants",
                "spec.rollout.abTest", "strategy abTest needs abTest.variants"),
    InvalidCase("max-trials-with-grid", _set("spec.training.search", {"strategy": "grid", "space": {"max_depth": [3, 5]}, "maxTrials": 4}),
                "spec.training.search.maxTrials", "only allowed with random search",
                "spec.training.search.maxTrials", "maxTrials is only allowed with random search"),
    InvalidCase("unknown-task", _set("spec.task", "clustering"),
                "spec.task", "'regression' or 'classification'",
                "spec.task", "Unsupported value"),
    InvalidCase("missing-target", _set("spec.dataset.target", _DELETE),
                "spec.dataset.target", "Field required",
                "spec.dataset.target", "Required value"),
    InvalidCase("unsupported-uri-scheme", _set("spec.dataset.uri", "ftp://example.org/data.csv"),
                "spec.dataset.uri", "should match pattern",
                "spec.dataset.uri", "should match"),
    InvalidCase("test-size-above-1", _set("spec.dataset.testSize", 1.5),
                "spec.dataset.testSize", "less than 1",
                "spec.dataset.testSize", "less than 1"),
    InvalidCase("target-among-features", _set("spec.dataset.features", ["longitude", "median_house_value"]),
                "spec.dataset.features[1]", "target must not be one of the features",
                "spec.dataset.features", "the target must not be one of the features"),
    InvalidCase("gate-metric-for-other-task", _set("spec.training.qualityGate.metric", "accuracy"),
                "spec.training.qualityGate.metric", "does not suit task regression",
                "spec.training.qualityGate.metric", "qualityGate.metric must suit the task"),
    InvalidCase("estimator-for-other-task", _set("spec.training", {"framework": "sklearn", "estimator": "logisticRegression"}),
                "spec.training.estimator", "does not support task regression",
                "spec.training.estimator", "the estimator does not support this task"),
    InvalidCase("estimator-framework-mismatch", _set("spec.training.framework", "sklearn"),
                "spec.training.estimator", "goes with framework xgboost",
                "spec.training.estimator", "estimator xgboost goes with framework xgboost"),
    InvalidCase("autoscaling-max-below-min", _set("spec.serving.autoscaling", {"minReplicas": 3, "maxReplicas": 2}),
                "spec.serving.autoscaling.maxReplicas", "at least minReplicas (3)",
                "spec.serving.autoscaling.maxReplicas", "maxReplicas must be at least minReplicas"),
    InvalidCase("replicas-and-autoscaling", _set("spec.serving.replicas", 2),
                "spec.serving.autoscaling", "set replicas or autoscaling, not both",
                "spec.serving.autoscaling", "set replicas or autoscaling, not both"),
    InvalidCase("retrain-without-drift", _set("spec.monitoring.drift.enabled", False),
                "spec.monitoring.retrainOnDrift", "needs drift.enabled",
                "spec.monitoring.retrainOnDrift", "retrainOnDrift needs drift.enabled"),
    InvalidCase("quality-metric-for-other-task", _set("spec.monitoring.feedback", {"enabled": True, "qualityThreshold": {"metric": "accuracy", "threshold": 0.8}}),
                "spec.monitoring.feedback.qualityThreshold.metric", "does not suit task regression",
                "spec.monitoring.feedback.qualityThreshold.metric", "qualityThreshold.metric must suit the task"),
    InvalidCase("quality-accuracy-above-1", _set("spec.monitoring.feedback", {"enabled": True, "qualityThreshold": {"metric": "accuracy", "threshold": 80}}),
                "spec.monitoring.feedback.qualityThreshold.threshold", "share between 0 and 1",
                "spec.monitoring.feedback.qualityThreshold.threshold", "share between 0 and 1", base=ab_resource),
    InvalidCase("retrain-on-quality-without-feedback", _set("spec.monitoring.feedback", {"enabled": False, "retrainOnQualityDrop": True}),
                "spec.monitoring.feedback.retrainOnQualityDrop", "needs feedback.enabled",
                "spec.monitoring.feedback.retrainOnQualityDrop", "retrainOnQualityDrop needs feedback.enabled"),
    InvalidCase("feedback-retention-not-a-duration", _set("spec.monitoring.feedback.retention", "30d"),
                "spec.monitoring.feedback.retention", "",
                "spec.monitoring.feedback.retention", ""),
    InvalidCase("error-rate-above-1", _set("spec.rollout.analysis.maxErrorRate", 2),
                "spec.rollout.analysis.maxErrorRate", "less than or equal to 1",
                "spec.rollout.analysis.maxErrorRate", "less than or equal to 1"),
    InvalidCase("quantity-typo", _set("spec.serving.resources.requests.cpu", "500 m"),
                "spec.serving.resources.requests.cpu", "not a Kubernetes quantity",
                "spec.serving.resources.requests.cpu", "should match"),
    InvalidCase("quantity-unknown-suffix", _set("spec.training.resources.limits.memory", "2GB"),
                "spec.training.resources.limits.memory", "not a Kubernetes quantity",
                "spec.training.resources.limits.memory", "should match"),
    InvalidCase("custom-metric-without-bounds", _set("spec.rollout.analysis.metrics", [{"name": "accuracy", "query": "vector(1)"}]),
                "spec.rollout.analysis.metrics[0].max", "needs min or max",
                "spec.rollout.analysis.metrics[0].max", "a custom metric needs min or max"),
    InvalidCase("unknown-field", _set("spec.training.learningRate", 0.1),
                "spec.training.learningRate", "unknown field",
                "spec.training.learningRate", "unknown field"),
    InvalidCase("name-too-long", _set("metadata.name", "a" * 50),
                "metadata.name", "at most 45 characters",
                "metadata.name", "at most 45 characters"),
]
