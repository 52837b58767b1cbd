"""The ``ModelDeployment`` contract, ``modelship.io/v1alpha1``.

This module is the one home of the schema. The CRD YAML is generated from it
(``modelship crd``), defaults live here, and every cross-field rule is written twice on
purpose, side by side: a pydantic validator (CLI, training Job, operator) and its CEL twin in
``json_schema_extra`` (the API server). ``tests/unit/test_api_models.py`` runs one table of
invalid specs through both.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from pydantic import Field, field_validator, model_validator

from modelship.api.base import (
    PRESERVE_UNKNOWN,
    ApiModel,
    Duration,
    Quantity,
    cel,
    rule_error,
)

GROUP = "modelship.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["mdep"]

#: Serving objects are named ``<name>-v<version>`` and Kubernetes caps names at 63 characters.
MAX_NAME_LENGTH = 45


class Task(str, Enum):
    regression = "regression"
    classification = "classification"


class Framework(str, Enum):
    xgboost = "xgboost"
    sklearn = "sklearn"


#: Estimators known by short name. ``module:Class`` names any other scikit-learn compatible
#: estimator, which the training image must have installed.
BUILTIN_ESTIMATORS: dict[str, dict[str, Any]] = {
    "xgboost": {"framework": "xgboost", "tasks": {"regression", "classification"}},
    "randomForest": {"framework": "sklearn", "tasks": {"regression", "classification"}},
    "extraTrees": {"framework": "sklearn", "tasks": {"regression", "classification"}},
    "gradientBoosting": {"framework": "sklearn", "tasks": {"regression", "classification"}},
    "histGradientBoosting": {"framework": "sklearn", "tasks": {"regression", "classification"}},
    "ridge": {"framework": "sklearn", "tasks": {"regression"}},
    "linearRegression": {"framework": "sklearn", "tasks": {"regression"}},
    "logisticRegression": {"framework": "sklearn", "tasks": {"classification"}},
}
DEFAULT_ESTIMATOR = {"xgboost": "xgboost", "sklearn": "randomForest"}
CUSTOM_ESTIMATOR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"

REGRESSION_METRICS = ["r2", "rmse", "mae"]
CLASSIFICATION_METRICS = ["accuracy", "f1Macro", "rocAuc"]
#: Metrics where a smaller value is better; the quality gate compares the other way round.
LOWER_IS_BETTER = {"rmse", "mae"}


# --- dataset ---------------------------------------------------------------------------


class OutlierMethod(str, Enum):
    iqr = "iqr"
    zscore = "zscore"


class OutlierAction(str, Enum):
    flag = "flag"
    clip = "clip"
    drop = "drop"


class OutlierPolicy(ApiModel):
    """How numeric outliers are found and what is done with them before training."""

    method: OutlierMethod = Field(OutlierMethod.iqr, description="iqr: beyond k×IQR of the quartiles; zscore: beyond k standard deviations.")
    threshold: float | None = Field(None, gt=0, description="k; defaults to 1.5 for iqr and 3 for zscore.")
    action: OutlierAction = Field(OutlierAction.flag, description="flag: report only; clip: clip to the bounds; drop: drop the rows.")
    columns: list[str] | None = Field(None, description="Numeric columns to check; all numeric features when unset.")

    @property
    def k(self) -> float:
        return self.threshold or (1.5 if self.method == OutlierMethod.iqr else 3.0)


class DataValidation(ApiModel):
    """Checks run on the data before training; a failed check stops the Job and names the column."""

    required_columns: list[str] = Field(default_factory=list, description="Columns that must be present besides the target and features.")
    max_missing_share: float = Field(0.5, ge=0, le=1, description="Largest share of missing values allowed in any feature column.")
    min_rows: int = Field(50, ge=2, description="Fewest rows the data set may have after cleaning.")
    min_rows_per_class: int = Field(10, ge=1, description="Fewest rows each target class must have (classification).")
    drop_duplicates: bool = Field(False, description="Drop duplicate rows instead of only reporting them.")
    outliers: OutlierPolicy | None = Field(None, description="Outlier handling for numeric features; none when unset.")


class DataFormat(str, Enum):
    auto = "auto"
    csv = "csv"
    parquet = "parquet"


class DatasetSpec(ApiModel):
    """Where the training data comes from and which column is predicted."""

    uri: str = Field(
        ...,
        min_length=1,
        pattern=r"^(file://|https?://|s3://|gs://|builtin:)",
        description="file://, https://, s3:// or gs:// (through fsspec), or builtin:<name> for a data set shipped by a dependency (e.g. builtin:sklearn/diabetes).",
    )
    format: DataFormat = Field(DataFormat.auto, description="File format; auto picks by extension.")
    target: str = Field(..., min_length=1, description="Column to predict.")
    features: list[str] | None = Field(None, description="Feature columns; every other column when unset.")
    test_size: float = Field(0.2, gt=0, lt=1, description="Share of rows held out for evaluation.")
    seed: int = Field(42, ge=0, description="Seed of the split and of the estimators.")
    validation: DataValidation = Field(default_factory=DataValidation, description="Data checks before training.")

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "!has(self.features) || !(self.target in self.features)",
                    "the target must not be one of the features",
                    ".features",
                ),
            ]
        }
    }

    @model_validator(mode="after")
    def _target_not_a_feature(self) -> DatasetSpec:
        if self.features and self.target in self.features:
            index = self.features.index(self.target)
            raise rule_error("DatasetSpec", (("features", index), "the target must not be one of the features", self.target))
        return self


# --- training --------------------------------------------------------------------------


class SearchStrategy(str, Enum):
    grid = "grid"
    random = "random"


class SearchSpec(ApiModel):
    """Hyperparameter search with k-fold cross-validation; the best candidate is refit."""

    strategy: SearchStrategy = Field(SearchStrategy.grid, description="grid: every combination; random: maxTrials samples.")
    space: dict[str, Any] = Field(
        ...,
        description="Parameter → list of candidate values; with random search also {distribution: uniform|loguniform|randint, low, high}.",
        json_schema_extra={**PRESERVE_UNKNOWN, "minProperties": 1},
    )
    cv_folds: int = Field(3, ge=2, le=20, description="Folds of the cross-validation.")
    max_trials: int | None = Field(None, ge=1, le=1000, description="Candidates sampled by random search.")
    scoring: str | None = Field(None, description="scikit-learn scorer; the quality gate's metric when unset.")

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("!has(self.maxTrials) || self.strategy == 'random'", "maxTrials is only allowed with random search", ".maxTrials"),
            ]
        }
    }

    @model_validator(mode="after")
    def _rules(self) -> SearchSpec:
        failures = []
        if self.max_trials is not None and self.strategy != SearchStrategy.random:
            failures.append((("maxTrials",), "maxTrials is only allowed with random search", self.max_trials))
        if not self.space:
            failures.append((("space",), "the search space needs at least one parameter", self.space))
        for name, candidates in self.space.items():
            if isinstance(candidates, list):
                if not candidates:
                    failures.append((("space", name), "needs at least one candidate value", candidates))
            elif isinstance(candidates, dict) and self.strategy == SearchStrategy.random:
                if candidates.get("distribution") not in {"uniform", "loguniform", "randint"} or not {"low", "high"} <= candidates.keys():
                    failures.append((("space", name), "a distribution needs distribution (uniform|loguniform|randint), low and high", candidates))
                elif not candidates["low"] < candidates["high"]:
                    failures.append((("space", name), "low must be smaller than high", candidates))
            else:
                failures.append((("space", name), "must be a list of candidate values" + (" or a distribution" if self.strategy == SearchStrategy.random else ""), candidates))
        if failures:
            raise rule_error("SearchSpec", *failures)
        return self


class QualityGate(ApiModel):
    """A version is handed to serving only when it passes this gate."""

    metric: str = Field(
        ...,
        description="r2, rmse or mae (regression); accuracy, f1Macro or rocAuc (classification).",
        json_schema_extra={"enum": REGRESSION_METRICS + CLASSIFICATION_METRICS},
    )
    threshold: float = Field(..., description="Lowest acceptable value, or highest for rmse and mae.")
    must_beat_champion: bool = Field(False, description="Also require a better held-out score than the version serving as champion.")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in REGRESSION_METRICS + CLASSIFICATION_METRICS:
            raise ValueError(f"unknown metric {metric!r}; one of {', '.join(REGRESSION_METRICS + CLASSIFICATION_METRICS)}")
        return metric

    def passes(self, value: float) -> bool:
        return value <= self.threshold if self.metric in LOWER_IS_BETTER else value >= self.threshold


class ResourceRequirements(ApiModel):
    """Kubernetes compute resources, as in a container spec."""

    requests: dict[str, Quantity] | None = Field(None, description="Minimum resources, e.g. {cpu: 500m, memory: 1Gi}.")
    limits: dict[str, Quantity] | None = Field(None, description="Maximum resources.")


class TrainingSpec(ApiModel):
    """How the model is trained, searched and judged."""

    framework: Framework = Field(Framework.sklearn, description="xgboost or sklearn.")
    estimator: str | None = Field(
        None,
        description="xgboost, randomForest, extraTrees, gradientBoosting, histGradientBoosting, ridge, linearRegression, logisticRegression, or module:Class; the framework's default when unset.",
    )
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="Estimator keyword arguments.", json_schema_extra=PRESERVE_UNKNOWN)
    search: SearchSpec | None = Field(None, description="Hyperparameter search; hyperparameters are the fixed base.")
    quality_gate: QualityGate | None = Field(None, description="Gate a new version must pass before it is served.")
    resources: ResourceRequirements | None = Field(None, description="Resources of the training container.")
    schedule: str | None = Field(None, pattern=r"^(@(hourly|daily|weekly|monthly)|(\S+\s+){4}\S+)$", description="Cron schedule (UTC) for periodic retraining, e.g. '0 3 * * 1'; each slot retrains at most once.")
    timeout: Duration = Field("1h", description="Deadline of the training Job (activeDeadlineSeconds).")
    image: str | None = Field(None, description="Training image override.")

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "!has(self.estimator) || self.estimator.contains(':') || (self.framework == 'xgboost') == (self.estimator == 'xgboost')",
                    "estimator xgboost goes with framework xgboost, the other short names with framework sklearn",
                    ".estimator",
                ),
            ]
        }
    }

    @field_validator("estimator")
    @classmethod
    def _known_estimator(cls, estimator: str | None) -> str | None:
        if estimator is None or estimator in BUILTIN_ESTIMATORS or re.match(CUSTOM_ESTIMATOR_PATTERN, estimator):
            return estimator
        raise ValueError(f"unknown estimator {estimator!r}; one of {', '.join(BUILTIN_ESTIMATORS)} or module:Class")

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, schedule: str | None) -> str | None:
        if schedule is not None:
            from modelship.api import cron

            try:
                cron.parse(schedule)
            except cron.CronError as error:
                raise ValueError(str(error)) from None
        return schedule

    @model_validator(mode="after")
    def _estimator_matches_framework(self) -> TrainingSpec:
        known = BUILTIN_ESTIMATORS.get(self.estimator or "")
        if known and known["framework"] != self.framework:
            raise rule_error(
                "TrainingSpec",
                (("estimator",), "estimator xgboost goes with framework xgboost, the other short names with framework sklearn", self.estimator),
            )
        return self

    @property
    def estimator_name(self) -> str:
        return self.estimator or DEFAULT_ESTIMATOR[self.framework]


# --- serving ---------------------------------------------------------------------------


class AutoscalingSpec(ApiModel):
    """A HorizontalPodAutoscaler for each serving Deployment."""

    min_replicas: int = Field(1, ge=1, description="Fewest replicas.")
    max_replicas: int = Field(3, ge=1, le=100, description="Most replicas.")
    target_cpu_utilization: int = Field(70, ge=1, le=100, description="Average CPU utilization (percent of requests) to aim for.")

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("self.maxReplicas >= self.minReplicas", "maxReplicas must be at least minReplicas", ".maxReplicas"),
            ]
        }
    }

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.max_replicas < self.min_replicas:
            raise rule_error("AutoscalingSpec", (("maxReplicas",), f"must be at least minReplicas ({self.min_replicas})", self.max_replicas))
        return self


class BatchingSpec(ApiModel):
    """Adaptive batching of single predictions inside the model server."""

    enabled: bool = Field(True, description="Group concurrent requests into one model call.")
    max_batch_size: int = Field(64, ge=1, le=10000, description="Most rows in one model call.")
    max_latency_ms: int = Field(20, ge=1, le=60000, description="Longest a request may wait for its batch, in milliseconds.")


class ServingSpec(ApiModel):
    """How each model version is served."""

    replicas: int | None = Field(None, ge=0, le=100, description="Fixed replica count (1 when neither this nor autoscaling is set).")
    autoscaling: AutoscalingSpec | None = Field(None, description="Scale on CPU instead of a fixed replica count.")
    resources: ResourceRequirements | None = Field(None, description="Resources of each serving container.")
    batching: BatchingSpec = Field(default_factory=BatchingSpec, description="Adaptive batching.")
    max_records_per_request: int = Field(1000, ge=1, le=100000, description="Largest list of records one request may carry.")
    image: str | None = Field(None, description="Serving image override.")

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("!(has(self.replicas) && has(self.autoscaling))", "set replicas or autoscaling, not both", ".autoscaling"),
            ]
        }
    }

    @model_validator(mode="after")
    def _one_scaling(self) -> ServingSpec:
        if self.replicas is not None and self.autoscaling is not None:
            raise rule_error("ServingSpec", (("autoscaling",), "set replicas or autoscaling, not both", None))
        return self


# --- rollout ---------------------------------------------------------------------------


class RolloutStrategy(str, Enum):
    canary = "canary"
    ab_test = "abTest"
    immediate = "immediate"


class Approval(str, Enum):
    auto = "auto"
    manual = "manual"


class CanaryStep(ApiModel):
    """One step of a canary: send this share of traffic to the new version, then wait and judge."""

    weight: int = Field(..., ge=1, le=100, description="Percent of requests sent to the canary.")
    pause: Duration = Field("1m", description="How long the step runs before it is analysed.")


def _default_steps() -> list[CanaryStep]:
    return [CanaryStep(weight=10), CanaryStep(weight=50), CanaryStep(weight=100)]


class CanarySpec(ApiModel):
    """Traffic steps of a canary rollout."""

    steps: list[CanaryStep] = Field(
        default_factory=_default_steps,
        min_length=1,
        max_length=20,
        description="Weights that strictly increase and end at 100.",
        json_schema_extra={"default": [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "1m"}, {"weight": 100, "pause": "1m"}]},
    )

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "self.steps.map(s, s.weight).isSorted() && self.steps.all(a, self.steps.exists_one(b, b.weight == a.weight))",
                    "canary step weights must strictly increase",
                    ".steps",
                ),
                cel("self.steps[size(self.steps) - 1].weight == 100", "the last canary step must have weight 100", ".steps"),
            ]
        }
    }

    @model_validator(mode="after")
    def _increasing_to_100(self) -> CanarySpec:
        failures = []
        for index in range(1, len(self.steps)):
            previous = self.steps[index - 1].weight
            if self.steps[index].weight <= previous:
                failures.append((("steps", index, "weight"), f"must be greater than previous step ({previous})", self.steps[index].weight))
        if self.steps and self.steps[-1].weight != 100:
            last = len(self.steps) - 1
            failures.append((("steps", last, "weight"), "the last canary step must have weight 100", self.steps[-1].weight))
        if failures:
            raise rule_error("CanarySpec", *failures)
        return self


#: Placeholders a custom analysis query may use; the operator fills them in for each check.
QUERY_PLACEHOLDERS = ("namespace", "model", "version", "window", "traffic")
_PLACEHOLDER_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def query_template_problem(template: str) -> str | None:
    """Why a PromQL template cannot be right, judged without a Prometheus: unknown placeholders,
    unbalanced brackets or quotes. Prometheus itself has the last word (a query it rejects is an
    Error verdict naming the metric)."""
    unknown = sorted({m for m in _PLACEHOLDER_RE.findall(template) if m not in QUERY_PLACEHOLDERS})
    if unknown:
        return f"unknown placeholder {{{{{unknown[0]}}}}}; one of " + ", ".join(f"{{{{{p}}}}}" for p in QUERY_PLACEHOLDERS)
    text = _PLACEHOLDER_RE.sub("x", template)
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for char in text:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            stack.append(char)
        elif char in closing:
            if not stack or stack.pop() != closing[char]:
                return f"unbalanced {char!r}"
    if quote:
        return f"unterminated string ({quote})"
    if stack:
        return f"unclosed {stack[-1]!r}"
    return None


class AnalysisMetric(ApiModel):
    """A custom check: a PromQL query whose single value must stay within min and max (Flagger's MetricTemplate)."""

    name: str = Field(..., min_length=1, max_length=63, pattern=r"^[a-zA-Z][a-zA-Z0-9_-]*$", description="Name of the check in status, events and conditions.")
    query: str = Field(
        ...,
        min_length=1,
        max_length=4096,
        description="PromQL returning one value; {{namespace}}, {{model}} (registered model name), {{version}} and {{window}} (the step so far, e.g. 90s) are filled in, and {{traffic}}: live, or shadow in the shadow phase (select traffic=\"{{traffic}}\" to judge the requests the built-in checks judge).",
    )
    min: float | None = Field(None, description="Smallest acceptable value.")
    max: float | None = Field(None, description="Largest acceptable value.")

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("has(self.min) || has(self.max)", "a custom metric needs min or max", ".max"),
                cel("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not exceed max", ".min"),
            ]
        }
    }

    @model_validator(mode="after")
    def _rules(self) -> AnalysisMetric:
        failures = []
        if self.min is None and self.max is None:
            failures.append((("max",), "a custom metric needs min or max", None))
        if self.min is not None and self.max is not None and self.min > self.max:
            failures.append((("min",), f"min must not exceed max ({self.max})", self.min))
        problem = query_template_problem(self.query)
        if problem:
            failures.append((("query",), f"not a usable PromQL template for metric {self.name}: {problem}", self.query))
        if failures:
            raise rule_error("AnalysisMetric", *failures)
        return self


class AnalysisSpec(ApiModel):
    """Metric checks run on every canary step, against live Prometheus data."""

    max_error_rate: float = Field(0.05, ge=0, le=1, description="Largest share of failed predictions.")
    max_latency_p95_ms: float = Field(250, gt=0, description="Largest 95th-percentile latency, in milliseconds.")
    min_requests: int = Field(20, ge=0, description="Fewest requests a step must see before it can pass.")
    interval: Duration = Field("30s", description="How often the metrics are checked.")
    failure_threshold: int = Field(2, ge=1, le=100, description="Failed checks that roll the canary back.")
    inconclusive_timeout: Duration = Field(
        "10m", description="Longest a step may go without a successful check (too few requests, no data, Prometheus unreachable) before the canary fails."
    )
    metrics: list[AnalysisMetric] | None = Field(None, max_length=10, description="Custom checks: PromQL templates with bounds, run beside the built-in ones.")


class HeaderMatch(ApiModel):
    """An HTTP header that pins a request to a variant."""

    name: str = Field(..., min_length=1, max_length=256, pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$", description="Header name.")
    value: str = Field(..., min_length=1, max_length=4096, description="Exact header value.")


class AbVariant(ApiModel):
    """One arm of an A/B test."""

    name: str = Field(..., min_length=1, max_length=20, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", description="Variant name, reported in every response.")
    model_version: str = Field(
        ...,
        pattern=r"^([0-9]+|champion|challenger)$",
        description="Registered model version, or the alias champion or challenger.",
    )
    weight: int = Field(..., ge=0, le=100, description="Percent of unpinned requests.")
    header_match: HeaderMatch | None = Field(None, description="Requests with this header always reach this variant.")


class SignificanceTest(str, Enum):
    """How the A/B live-quality comparison turns a difference into a p-value."""

    sequential = "sequential"  #: always-valid p-values (mSPRT): read at every analysis, stop any time
    fixed_horizon = "fixedHorizon"  #: z-test / Welch's t-test: valid read once, at a sample size fixed up front


class AbTestSpec(ApiModel):
    """Weighted variants served side by side."""

    variants: list[AbVariant] = Field(..., max_length=10, description="At least two variants whose weights sum to 100.")
    # Read only with monitoring.feedback enabled: live quality needs ground-truth labels.
    alpha: float = Field(
        0.05, gt=0, lt=1,
        description="Significance level of the live-quality comparison (with monitoring.feedback): a difference is significant when its p-value is below it.",
    )
    min_labels: int = Field(
        100, ge=2,
        description="Labelled predictions each variant needs before its live quality is compared (with monitoring.feedback).",
    )
    test: SignificanceTest = Field(
        SignificanceTest.sequential,
        description=(
            "sequential: always-valid p-values (mixture SPRT), the chance a no-difference test is ever called significant stays below alpha "
            "however long it runs and however often it is read. fixedHorizon: the classic two-proportion z-test or Welch's t-test, valid only "
            "if you read the verdict once, after a number of labels you chose up front; read at every analysis it crosses alpha far more often."
        ),
    )
    min_detectable_effect: float = Field(
        0.05, gt=0, le=1,
        description=(
            "sequential test only: the smallest difference worth detecting, as a share of the metric's value over both variants (0.05: "
            "0.04 of accuracy at 0.8, or 0.5 of mean absolute error at 10). It tunes the test's power: differences near it are found soonest; "
            "the guarantee on false verdicts holds whatever it is."
        ),
    )

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("size(self.variants) >= 2", "an A/B test needs at least 2 variants", ".variants"),
                cel("self.variants.map(v, v.weight).sum() == 100", "A/B variant weights must sum to 100", ".variants"),
                cel("self.variants.all(a, self.variants.exists_one(b, b.name == a.name))", "A/B variant names must be unique", ".variants"),
            ]
        }
    }

    @model_validator(mode="after")
    def _variants(self) -> AbTestSpec:
        failures = []
        if len(self.variants) < 2:
            failures.append((("variants",), "an A/B test needs at least 2 variants", len(self.variants)))
        total = sum(v.weight for v in self.variants)
        if total != 100:
            failures.append((("variants",), f"A/B variant weights must sum to 100 (got {total})", total))
        seen: set[str] = set()
        for index, variant in enumerate(self.variants):
            if variant.name in seen:
                failures.append((("variants", index, "name"), f"A/B variant names must be unique ({variant.name!r} repeats)", variant.name))
            seen.add(variant.name)
        if failures:
            raise rule_error("AbTestSpec", *failures)
        return self


class MirrorSpec(ApiModel):
    """Copy a share of live traffic to the new version; mirrored answers are discarded."""

    percent: int = Field(..., ge=1, le=100, description="Percent of requests mirrored.")


class RolloutSpec(ApiModel):
    """How a new version replaces the champion."""

    strategy: RolloutStrategy = Field(RolloutStrategy.canary, description="canary, abTest or immediate.")
    canary: CanarySpec = Field(default_factory=CanarySpec, description="Steps of a canary rollout.")
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec, description="Checks that promote or roll back.")
    approval: Approval = Field(Approval.auto, description="manual: wait for an approval before promoting.")
    ab_test: AbTestSpec | None = Field(None, description="Variants of an A/B test (strategy abTest).")
    mirror: MirrorSpec | None = Field(
        None, description="Shadow phase before the first canary step: a copy of this share of the requests, for the first step's pause, analysed like a step."
    )
    rollback_window: Duration = Field(
        "30m", description="How long the previous champion stays warm (1 replica, no traffic) after a promotion, so a rollback is instant."
    )

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("self.strategy != 'abTest' || has(self.abTest)", "strategy abTest needs abTest.variants", ".abTest"),
            ]
        }
    }

    @model_validator(mode="after")
    def _ab_needs_variants(self) -> RolloutSpec:
        if self.strategy == RolloutStrategy.ab_test and self.ab_test is None:
            raise rule_error("RolloutSpec", (("abTest",), "strategy abTest needs abTest.variants", None))
        return self


# --- monitoring ------------------------------------------------------------------------


class DriftMethod(str, Enum):
    psi = "psi"
    ks = "ks"
    wasserstein = "wasserstein"
    jensenshannon = "jensenshannon"
    chisquare = "chisquare"


class DriftSpec(ApiModel):
    """Data drift of live inputs against the training reference sample (Evidently)."""

    enabled: bool = Field(True, description="Compute drift in the model server.")
    method: DriftMethod = Field(DriftMethod.psi, description="Per-feature statistical test.")
    threshold: float = Field(0.2, gt=0, description="Per-feature score above which a feature counts as drifted (p-value below, for ks and chisquare).")
    drift_share: float = Field(0.5, gt=0, le=1, description="Share of drifted features that marks the data set as drifted.")
    window_size: int = Field(1000, ge=50, le=100000, description="Recent inputs kept for comparison.")
    min_rows: int = Field(200, ge=10, description="Fewest rows in the window before drift is computed.")
    interval: Duration = Field("1m", description="How often drift is computed.")


class QualityMetric(str, Enum):
    """Live quality measured from ground-truth feedback."""

    accuracy = "accuracy"  #: classification: share of labelled predictions that were right
    mae = "mae"  #: regression: mean absolute error
    rmse = "rmse"  #: regression: root mean squared error


#: Live quality metrics per task (``spec.monitoring.feedback.qualityThreshold.metric``).
QUALITY_METRICS: dict[str, list[str]] = {"classification": ["accuracy"], "regression": ["mae", "rmse"]}


class QualityThresholdSpec(ApiModel):
    """When live quality counts as dropped: the ``ModelshipQualityDrop`` alert's threshold."""

    metric: QualityMetric = Field(..., description="accuracy (classification; alert below the threshold), mae or rmse (regression; alert above it).")
    threshold: float = Field(..., ge=0, description="Live accuracy below it (a share, 0..1), or live MAE/RMSE above it (the target's unit), raises the alert.")
    min_labels: int = Field(20, ge=1, description="Fewest labelled predictions in the alert's window before live quality is judged.")

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("self.metric != 'accuracy' || self.threshold <= 1.0", "an accuracy threshold is a share between 0 and 1", ".threshold"),
            ]
        }
    }

    @model_validator(mode="after")
    def _accuracy_is_a_share(self) -> QualityThresholdSpec:
        if self.metric == QualityMetric.accuracy and self.threshold > 1:
            raise rule_error("QualityThresholdSpec", (("threshold",), "an accuracy threshold is a share between 0 and 1", self.threshold))
        return self


class FeedbackSpec(ApiModel):
    """The prediction store (PostgreSQL) and ground-truth feedback (``POST /feedback``)."""

    enabled: bool = Field(False, description="Store every prediction and accept feedback; the operator's prediction-store Secret gives the database.")
    retention: Duration = Field("720h", description="How long predictions and their feedback are kept.")
    quality_threshold: QualityThresholdSpec | None = Field(None, description="Live quality that raises the ModelshipQualityDrop alert.")
    retrain_on_quality_drop: bool = Field(
        False,
        description="Retrain when the ModelshipQualityDrop alert fires (same cooldown, dedupe and limits as retrainOnDrift; the cooldown is shared).",
    )

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("!self.retrainOnQualityDrop || self.enabled", "retrainOnQualityDrop needs feedback.enabled", ".retrainOnQualityDrop"),
            ]
        }
    }

    @model_validator(mode="after")
    def _retrain_needs_feedback(self) -> FeedbackSpec:
        if self.retrain_on_quality_drop and not self.enabled:
            raise rule_error("FeedbackSpec", (("retrainOnQualityDrop",), "retrainOnQualityDrop needs feedback.enabled", True))
        return self


class MonitoringSpec(ApiModel):
    """Drift detection and the retraining it triggers."""

    drift: DriftSpec = Field(default_factory=DriftSpec, description="Input drift detection.")
    feedback: FeedbackSpec = Field(default_factory=FeedbackSpec, description="Prediction store, ground-truth feedback and live quality.")
    retrain_on_drift: bool = Field(False, description="Retrain when the drift alert fires.")
    cooldown: Duration = Field("1h", description="Least time between two retrainings caused by an alert (drift or quality drop; they share it).")

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("!self.retrainOnDrift || self.drift.enabled", "retrainOnDrift needs drift.enabled", ".retrainOnDrift"),
            ]
        }
    }

    @model_validator(mode="after")
    def _retrain_needs_drift(self) -> MonitoringSpec:
        if self.retrain_on_drift and not self.drift.enabled:
            raise rule_error("MonitoringSpec", (("retrainOnDrift",), "retrainOnDrift needs drift.enabled", True))
        return self


# --- the resource ----------------------------------------------------------------------

_GATE_METRIC_RULE = (
    "!has(self.training.qualityGate) || (self.task == 'regression' ? "
    + repr(REGRESSION_METRICS).replace('"', "'")
    + " : "
    + repr(CLASSIFICATION_METRICS).replace('"', "'")
    + ").exists(m, m == self.training.qualityGate.metric)"
)
_ESTIMATOR_TASK_RULE = (
    "!has(self.training.estimator) || "
    "!(self.training.estimator in ['ridge', 'linearRegression'] && self.task == 'classification') && "
    "!(self.training.estimator == 'logisticRegression' && self.task == 'regression')"
)

_QUALITY_METRIC_RULE = (
    "!has(self.monitoring) || !has(self.monitoring.feedback) || !has(self.monitoring.feedback.qualityThreshold) || "
    "(self.task == 'regression' ? " + repr(QUALITY_METRICS["regression"]).replace('"', "'") + " : "
    + repr(QUALITY_METRICS["classification"]).replace('"', "'") + ").exists(m, m == self.monitoring.feedback.qualityThreshold.metric)"
)


class ModelDeploymentSpec(ApiModel):
    """What model to train from which data, and how to serve, roll out and watch it."""

    task: Task = Field(..., description="regression or classification.")
    dataset: DatasetSpec = Field(..., description="Training data.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Training, search and quality gate.")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="Model server settings.")
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="Rollout of new versions.")
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec, description="Drift detection and retraining.")
    model_name: str | None = Field(
        None,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Registered model name in MLflow; <namespace>-<name> when unset.",
    )

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(_GATE_METRIC_RULE, "qualityGate.metric must suit the task (r2, rmse, mae for regression; accuracy, f1Macro, rocAuc for classification)", ".training.qualityGate.metric"),
                cel(_ESTIMATOR_TASK_RULE, "the estimator does not support this task", ".training.estimator"),
                cel(_QUALITY_METRIC_RULE, "qualityThreshold.metric must suit the task (accuracy for classification; mae, rmse for regression)", ".monitoring.feedback.qualityThreshold.metric"),
            ]
        }
    }

    @model_validator(mode="after")
    def _task_rules(self) -> ModelDeploymentSpec:
        failures = []
        gate = self.training.quality_gate
        allowed = REGRESSION_METRICS if self.task == Task.regression else CLASSIFICATION_METRICS
        if gate and gate.metric not in allowed:
            failures.append((("training", "qualityGate", "metric"), f"{gate.metric} does not suit task {self.task}; one of {', '.join(allowed)}", gate.metric))
        known = BUILTIN_ESTIMATORS.get(self.training.estimator or "")
        if known and self.task not in known["tasks"]:
            failures.append((("training", "estimator"), f"{self.training.estimator} does not support task {self.task}", self.training.estimator))
        if failures:
            raise rule_error("ModelDeploymentSpec", *failures)
        return self

    @model_validator(mode="after")
    def _quality_metric_suits_task(self) -> ModelDeploymentSpec:
        quality = self.monitoring.feedback.quality_threshold
        task = Task(self.task).value
        allowed = QUALITY_METRICS[task]
        if quality is not None and QualityMetric(quality.metric).value not in allowed:
            metric = QualityMetric(quality.metric).value
            raise rule_error(
                "ModelDeploymentSpec",
                (("monitoring", "feedback", "qualityThreshold", "metric"), f"{metric} does not suit task {task}; one of {', '.join(allowed)}", metric),
            )
        return self


class ConditionStatus(str, Enum):
    true = "True"
    false = "False"
    unknown = "Unknown"


class Condition(ApiModel):
    """The latest observation of one aspect of the resource (Kubernetes API conventions)."""

    type: str = Field(..., description="Trained, Ready, Progressing, Promoted, DriftDetected or Degraded.")
    status: ConditionStatus = Field(..., description="True, False or Unknown.")
    reason: str = Field(..., description="CamelCase reason for the last transition.")
    message: str = Field("", description="Human-readable details.")
    last_transition_time: str = Field(..., description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(None, description="Generation the condition was set for.")


class TrafficEntry(ApiModel):
    """Share of requests one model version receives."""

    version: str = Field(..., description="Registered model version.")
    weight: int = Field(..., ge=0, le=100, description="Percent of requests.")
    role: str = Field(..., description="champion, canary or the A/B variant name.")


class GateVerdict(ApiModel):
    """Outcome of the quality gate."""

    passed: bool = Field(..., description="Whether the version may be served.")
    reason: str = Field("", description="Why.")


class TrainingRecord(ApiModel):
    """The most recent training run."""

    job: str = Field(..., description="Training Job name.")
    generation: int | None = Field(None, description="Spec generation it trained.")
    spec_hash: str | None = Field(None, description="Hash of the training-relevant spec.")
    run_id: str | None = Field(None, description="MLflow run id.")
    model_version: str | None = Field(None, description="Registered model version.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Held-out metrics.")
    gate: GateVerdict | None = Field(None, description="Quality gate verdict.")
    started_at: str | None = Field(None, description="Start time (RFC 3339).")
    finished_at: str | None = Field(None, description="End time (RFC 3339).")
    trigger: str | None = Field(None, description="spec, schedule, drift, quality or manual.")


# --- the drift loop: what alerts said and which retrainings they asked for ---------------

#: At most this many alert keys (fingerprint@startsAt) are remembered to drop re-sent alerts.
HANDLED_ALERTS_LIMIT = 20


class DriftStatus(ApiModel):
    """Input drift as the latest ModelshipDataDrift alert reported it."""

    active: bool = Field(..., description="The drift alert fires.")
    features: str = Field("", description="Drifted features with their scores (feature=score, ...), from the alert.")
    since: str | None = Field(None, description="When the alert started firing (RFC 3339).")
    version: str | None = Field(None, description="Model version whose inputs drifted.")
    resolved_at: str | None = Field(None, description="When the alert resolved (RFC 3339).")


class RetrainRequest(ApiModel):
    """A retraining asked for and not started yet (kept across operator restarts)."""

    trigger: str = Field(..., description="drift, quality, schedule or manual.")
    reason: str = Field("", description="Why, in one line.")
    fingerprint: str | None = Field(None, description="Alertmanager fingerprint of the drift or quality alert.")
    starts_at: str | None = Field(None, description="Start of the drift or quality alert, or the schedule slot (RFC 3339).")
    requested_at: str = Field(..., description="When the request was recorded (RFC 3339).")
    force: bool = Field(False, description="Retrain even on the very data bytes the champion was trained on.")


class RetrainDecision(ApiModel):
    """The latest decision about a retrain request."""

    trigger: str = Field(..., description="drift, quality, schedule or manual.")
    outcome: str = Field(..., description="Started, Skipped or Deferred.")
    reason: str = Field(..., description="CamelCase reason.")
    message: str = Field("", description="Why, for people.")
    at: str = Field(..., description="When (RFC 3339).")


class RetrainStatus(ApiModel):
    """Retraining on drift, on a schedule and on demand: the operator's memory across restarts."""

    pending: RetrainRequest | None = Field(None, description="The one request waiting for a training or rollout in flight, or for a free slot.")
    attempts: int = Field(0, ge=0, description="Retraining Jobs started so far (numbers their names).")
    last_drift_retrain_at: str | None = Field(None, description="Start of the latest alert-triggered training (drift or quality); the cooldown counts from it.")
    handled_alerts: list[str] = Field(default_factory=list, max_length=HANDLED_ALERTS_LIMIT, description="fingerprint@startsAt of the latest drift and quality alerts taken, to drop re-sent ones.")
    last_decision: RetrainDecision | None = Field(None, description="The latest decision and why.")
    next_scheduled_at: str | None = Field(None, description="Next run of spec.training.schedule (RFC 3339).")
    last_schedule_slot: str | None = Field(None, description="The latest schedule slot acted on; each slot retrains at most once.")
    last_manual_request: str | None = Field(None, description="Value of the modelship.io/retrain annotation last acted on.")


class Phase(str, Enum):
    """A summary for people; machines read the conditions."""

    pending = "Pending"  #: accepted, nothing started
    training = "Training"  #: a training Job runs
    deploying = "Deploying"  #: a version is being made ready to serve
    progressing = "Progressing"  #: a canary or A/B test is in flight
    awaiting_approval = "AwaitingApproval"  #: every canary step passed; a person must approve
    serving = "Serving"  #: the champion serves all traffic
    degraded = "Degraded"  #: serving, but the latest attempt failed
    failed = "Failed"  #: nothing serves and the latest attempt failed


class Verdict(str, Enum):
    """Outcome of one analysis check (Argo Rollouts' four)."""

    successful = "Successful"  #: within bounds
    failed = "Failed"  #: out of bounds; counts toward failureThreshold
    inconclusive = "Inconclusive"  #: too few requests to judge
    error = "Error"  #: no data, or Prometheus unreachable or refusing the query


class CheckResult(ApiModel):
    """One check of the latest analysis of the current step."""

    name: str = Field(..., description="requests, errorRate, latencyP95 or a custom metric's name.")
    verdict: Verdict = Field(..., description="Successful, Failed, Inconclusive or Error.")
    value: float | None = Field(None, description="Measured value (a ratio, seconds, or requests).")
    threshold: str | None = Field(None, description="The bound it was held to, e.g. <= 0.05.")
    message: str = Field("", description="Why, for people.")


class RolloutPhase(str, Enum):
    """Where the rollout of the candidate stands."""

    waiting = "Waiting"  #: the candidate's pods are not ready yet
    progressing = "Progressing"  #: a canary step is in flight
    awaiting_approval = "AwaitingApproval"  #: every step passed; waiting for modelship approve
    ab_testing = "ABTesting"  #: variants served side by side until a person promotes one
    promoted = "Promoted"  #: the candidate became champion
    rolled_back = "RolledBack"  #: the candidate was taken out of traffic


class QualityVerdict(str, Enum):
    """How a variant's live quality compares with the baseline variant's."""

    better = "Better"  #: significantly better than the baseline
    worse = "Worse"  #: significantly worse than the baseline
    no_difference = "NoSignificantDifference"  #: enough labels, but the difference may be noise
    too_few_labels = "TooFewLabels"  #: a variant has fewer than abTest.minLabels labelled predictions
    error = "Error"  #: Prometheus unreachable or refusing the query


class QualityComparison(ApiModel):
    """A variant's live quality against the baseline variant's, over the whole A/B test so far."""

    baseline: str = Field(..., description="The variant compared with: the one serving the champion, else the first.")
    metric: str = Field(..., description="accuracy (classification; higher is better) or mae (regression; lower is better).")
    test: str | None = Field(
        None, description="mSPRT (abTest.test sequential: always-valid p-value), twoProportionZ (fixedHorizon, accuracy) or welchT (fixedHorizon, mean absolute error)."
    )
    difference: float | None = Field(None, description="This variant's value minus the baseline's.")
    statistic: float | None = Field(None, description="z (accuracy) or t (mean absolute error) of the latest look.")
    p_value: float | None = Field(
        None, description="Two-sided p-value; for mSPRT the always-valid one, the lowest of every look so far in this A/B test (it never rises)."
    )
    alpha: float = Field(..., description="Significance level (abTest.alpha).")
    min_labels: int = Field(..., description="Labelled predictions each variant needs (abTest.minLabels).")
    min_detectable_effect: float | None = Field(
        None, description="mSPRT only: the abTest.minDetectableEffect the test was tuned to; a change starts the running minimum afresh."
    )
    significant: bool = Field(False, description="p-value below alpha with enough labels on both sides.")
    verdict: QualityVerdict = Field(..., description="Better, Worse, NoSignificantDifference, TooFewLabels or Error.")
    significant_since: str | None = Field(None, description="When the difference first became significant in this A/B test (RFC 3339).")
    significant_verdict: QualityVerdict | None = Field(
        None, description="Better or Worse: the verdict at significantSince. mSPRT keeps it for the rest of the test, whatever the estimate does later."
    )
    message: str = Field("", description="The verdict for people.")


class VariantStatus(ApiModel):
    """One arm of an A/B test, with its live metrics over the last analysis window."""

    name: str = Field(..., description="Variant name.")
    version: str = Field(..., description="Model version it resolves to.")
    weight: int = Field(..., ge=0, le=100, description="Percent of the requests no header pins.")
    header: str | None = Field(None, description="name=value of the header that pins requests to it.")
    requests: float | None = Field(None, description="Requests its version answered in the window.")
    error_rate: float | None = Field(None, description="Share of those that failed with a server error.")
    latency_p95: float | None = Field(None, description="95th-percentile latency in seconds.")
    # Live quality from ground-truth feedback (monitoring.feedback), over the whole A/B test so far.
    labelled: int | None = Field(None, ge=0, description="Its predictions that received a label or true value since the A/B test began.")
    accuracy: float | None = Field(None, description="Share of those that were right (classification).")
    mae: float | None = Field(None, description="Mean absolute error of those (regression).")
    rmse: float | None = Field(None, description="Root mean squared error of those (regression).")
    comparison: QualityComparison | None = Field(None, description="Live quality against the baseline variant (absent on the baseline itself).")


class RolloutStatus(ApiModel):
    """The rollout's memory: a restart resumes from here, never from process memory."""

    candidate: str | None = Field(None, description="Version under rollout (or the last one rolled out).")
    phase: RolloutPhase | None = Field(None, description="Waiting, Progressing, AwaitingApproval, Promoted or RolledBack.")
    step_index: int | None = Field(None, ge=0, description="Index of the current canary step.")
    step: str | None = Field(None, description="The current step for people, e.g. 2/3.")
    step_weight: int | None = Field(None, ge=0, le=100, description="Percent of requests the candidate gets in this step.")
    step_started_at: str | None = Field(None, description="When the current step began (RFC 3339).")
    last_analysis_at: str | None = Field(None, description="When the metrics were last checked (RFC 3339).")
    checks: list[CheckResult] = Field(default_factory=list, description="Checks of the latest analysis of the current step.")
    step_passed: bool | None = Field(None, description="Whether the latest analysis of the current step passed every check.")
    failed_checks: int = Field(0, ge=0, description="Analyses with a failed check during this rollout.")
    inconclusive_checks: int = Field(0, ge=0, description="Analyses of the current step that were inconclusive or erred.")
    inconclusive_since: str | None = Field(None, description="Start of the current run of inconclusive analyses (RFC 3339).")
    mirror_phase: str | None = Field(None, description="Mirroring while the candidate only gets copies of requests, Done after.")
    awaiting_approval: bool = Field(False, description="The rollout waits for modelship approve (or the approve annotation).")
    message: str | None = Field(None, description="What happened last, for people.")
    previous_champion: str | None = Field(None, description="Champion before the last promotion, kept warm for an instant rollback.")
    warm_until: str | None = Field(None, description="When the previous champion is removed (RFC 3339).")
    retire_at: str | None = Field(None, description="When a rolled-back candidate's pods are removed (RFC 3339).")
    variants: list[VariantStatus] | None = Field(None, description="Arms of the A/B test in flight, with their metrics.")
    ab_started_at: str | None = Field(None, description="When the A/B test in flight began (RFC 3339); live quality is compared from then on.")
    quality_checked_at: str | None = Field(None, description="When the variants' live quality was last read from Prometheus (RFC 3339).")


class ModelDeploymentStatus(ApiModel):
    """Observed state, written by the operator."""

    observed_generation: int | None = Field(None, description="Spec generation this status reflects.")
    phase: Phase | None = Field(None, description="Summary for people.")
    conditions: list[Condition] = Field(default_factory=list, description="Trained, Ready, Progressing, Promoted, DriftDetected, Degraded.")
    model_name: str | None = Field(None, description="Registered model name in MLflow.")
    champion_version: str | None = Field(None, description="Version serving as champion.")
    canary_version: str | None = Field(None, description="Version under rollout.")
    canary_weight: int | None = Field(None, ge=0, le=100, description="Percent of traffic on the canary.")
    traffic: list[TrafficEntry] = Field(default_factory=list, description="Per-version traffic split.")
    last_training: TrainingRecord | None = Field(None, description="Most recent training.")
    endpoint: str | None = Field(None, description="URL of the inference endpoint.")
    rollout: RolloutStatus | None = Field(None, description="Progress of the current (or last) rollout.")

    # The drift loop (alerts, schedule, manual retrains): modelship.operator.retrain.
    drift: DriftStatus | None = Field(None, description="Input drift as the latest drift alert reported it.")
    retrain: RetrainStatus | None = Field(None, description="Retrain requests and decisions (drift, schedule, manual).")


def unwrap_spec(document: Any) -> Any:
    """The spec inside a whole ModelDeployment document, or the document itself when it is a
    spec already: entrypoints take either as ``MODELSHIP_SPEC``/``--spec-json``."""
    if isinstance(document, dict) and isinstance(document.get("spec"), dict) and "task" not in document:
        return document["spec"]
    return document


class ObjectMeta(ApiModel):
    """The part of Kubernetes object metadata Modelship reads."""

    model_config = {"extra": "allow"}

    name: str = Field(..., min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    namespace: str | None = None
    generation: int | None = None
    uid: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class ModelDeployment(ApiModel):
    """A model trained, served, rolled out and retrained by Modelship."""

    api_version: str = Field(API_VERSION, pattern=f"^{re.escape(API_VERSION)}$")
    kind: str = Field(KIND, pattern=f"^{KIND}$")
    metadata: ObjectMeta
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None

    @property
    def registered_model_name(self) -> str:
        return self.spec.model_name or f"{self.metadata.namespace or 'default'}-{self.metadata.name}"
