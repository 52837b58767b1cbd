"""Domain errors of the model server, each mapped to ONE HTTP status in ONE place (:data:`STATUS`).

Every error answers with the same body shape::

    {"error": "<code>", "message": "<one line>", "detail": [{"loc": [...], "msg": "...", "type": "..."}]}

``detail`` lists every offending field for input errors and is empty otherwise.
"""

from __future__ import annotations

from typing import Any


class ServingError(Exception):
    """Base of the model server's errors."""

    code = "internal_error"

    def __init__(self, message: str, detail: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or []

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "detail": self.detail}


class MalformedRequest(ServingError):
    """The body is not JSON, or not a JSON object / array of objects."""

    code = "malformed_request"


class InvalidInput(ServingError):
    """Records do not match the model's feature schema (every offending field is listed)."""

    code = "invalid_input"


class TooManyRecords(ServingError):
    """More records than ``serving.maxRecordsPerRequest`` (or none at all)."""

    code = "too_many_records"


class ModelNotReady(ServingError):
    """The model is still loading (or failed to load and is retrying)."""

    code = "model_not_ready"


class ModelLoadError(ServingError):
    """The model version or its artifacts cannot be fetched or understood."""

    code = "model_load_error"


class PredictionError(ServingError):
    """The model raised while predicting valid input: a bug or a broken model."""

    code = "prediction_error"


class UnknownPrediction(ServingError):
    """Feedback names a request (record) id the prediction store does not hold."""

    code = "unknown_request_id"


class FeedbackDisabled(ServingError):
    """``POST /feedback`` on a model without a prediction store (``spec.monitoring.feedback``)."""

    code = "feedback_disabled"


class StoreUnavailable(ServingError):
    """The prediction store's database does not answer (feedback only; predictions never wait for it)."""

    code = "store_unavailable"


#: The one mapping from error class to HTTP status.
STATUS: dict[type[ServingError], int] = {
    MalformedRequest: 400,
    TooManyRecords: 413,
    InvalidInput: 422,
    ModelNotReady: 503,
    ModelLoadError: 503,
    UnknownPrediction: 404,
    FeedbackDisabled: 404,
    StoreUnavailable: 503,
    PredictionError: 500,
    ServingError: 500,
}


def status_of(error: ServingError) -> int:
    """HTTP status of an error: the entry of its closest class in :data:`STATUS`."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def is_client_error(error: ServingError) -> bool:
    return 400 <= status_of(error) < 500
