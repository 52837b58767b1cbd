"""What a training Job reports back, and where its artifacts sit: shared by the training
entrypoint (writer), the operator (reader of the pod's termination message) and the model
server (reader of the reference sample)."""

from __future__ import annotations

from enum import Enum, IntEnum

from pydantic import Field

from modelship.api.base import ApiModel

#: Artifact path, inside the MLflow run of a version, of the training features sample that
#: drift detection compares live inputs against.
REFERENCE_ARTIFACT = "reference/reference_sample.parquet"
#: Artifact path of the data validation report.
VALIDATION_REPORT_ARTIFACT = "validation/report.json"
#: Name under which the model is logged inside its run.
MODEL_ARTIFACT = "model"
#: Artifact path, in the run of a version, of the feature schema serving validates inputs
#: against (also in the MLmodel file as metadata["feature_schema"]).
FEATURE_SCHEMA_ARTIFACT = "feature_schema.json"
#: Registry aliases: training sets CHALLENGER when the gate passes; the operator moves CHAMPION.
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
#: Prefix of the lineage tags on runs and model versions.
LINEAGE_TAG_PREFIX = "modelship.io/"
#: The kubelet keeps at most this much of a termination message.
TERMINATION_MESSAGE_LIMIT = 4096


class ExitCode(IntEnum):
    """Exit codes of ``modelship train``; the operator tells them apart without parsing logs."""

    ok = 0
    error = 1  #: unexpected failure (a bug, MLflow down): worth a retry
    invalid_input = 2  #: the spec or the data is wrong: the user must fix it
    gate_failed = 3  #: trained fine, but the quality gate said no


class TrainingOutcome(str, Enum):
    succeeded = "Succeeded"
    gate_failed = "GateFailed"
    invalid_input = "InvalidInput"
    error = "Error"
    #: A retraining found the very data bytes the champion was trained on and did not train.
    unchanged = "Unchanged"


class TrainingResult(ApiModel):
    """The JSON a training Job writes to its termination message (at most 4 KiB)."""

    outcome: TrainingOutcome
    reason: str = Field("", description="One line: why it failed, or the gate verdict.")
    model_name: str | None = None
    version: str | None = None
    run_id: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    gate_passed: bool | None = None
    dataset_hash: str | None = None
