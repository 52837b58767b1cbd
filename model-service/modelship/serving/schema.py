"""The feature schema a model version is served with, and the request validator built from it.

Source, best first: the ``feature_schema`` the training Job stores in the MLmodel metadata (and
as ``feature_schema.json`` in the run); else the MLflow model signature (``string`` columns are
categorical, numeric types numeric) with categories taken from the reference sample. Either way
the reference sample adds nullability: a feature that has missing values in training accepts
``null`` (the pipeline imputes it, XGBoost takes NaN natively).

Validation is one pydantic pass over the records: every offending field is reported, with its
location ``["records", i, name]`` (``["record", name]`` for a single object).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

import pydantic
from pydantic import ConfigDict, Field, Strict, TypeAdapter
from typing_extensions import Annotated, TypedDict

from modelship.serving.errors import InvalidInput

NUMERIC = "numeric"
CATEGORICAL = "categorical"
_NUMERIC_MLFLOW_TYPES = {"double", "float", "long", "integer", "boolean"}


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  #: ``numeric`` or ``categorical``
    categories: tuple[Any, ...] | None = None  #: values seen in training, when known
    nullable: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "categories": list(self.categories) if self.categories is not None else None, "nullable": self.nullable}


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[Feature, ...]
    task: str = "regression"
    classes: tuple[Any, ...] | None = None
    target: str | None = None
    source: str = "feature_schema"

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == CATEGORICAL]

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "target": self.target,
            "features": [f.to_json() for f in self.features],
            "classes": list(self.classes) if self.classes is not None else None,
            "source": self.source,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any], nullable: set[str] | None = None) -> FeatureSchema:
        """From the training Job's ``feature_schema`` (``{"features": [...], "classes", "task"}``)."""
        nullable = nullable or set()
        features = []
        for item in document["features"]:
            kind = item.get("kind", NUMERIC)
            if kind not in (NUMERIC, CATEGORICAL):
                raise ValueError(f"feature {item.get('name')!r} has unknown kind {kind!r}")
            categories = item.get("categories")
            features.append(
                Feature(
                    name=str(item["name"]),
                    kind=kind,
                    categories=tuple(categories) if kind == CATEGORICAL and categories else None,
                    nullable=bool(item.get("nullable", False)) or item["name"] in nullable,
                )
            )
        classes = document.get("classes")
        task = document.get("task") or ("classification" if classes else "regression")
        return cls(tuple(features), task=task, classes=tuple(classes) if classes else None, target=document.get("target"), source="feature_schema")

    @classmethod
    def from_signature(cls, inputs: list[dict[str, Any]], reference: Any = None, classes: list[Any] | None = None) -> FeatureSchema:
        """From an MLflow signature's input columns (``[{"name", "type", "required"}]``) and the reference sample."""
        features = []
        for column in inputs:
            name = column.get("name")
            if name is None:
                raise ValueError("the model signature has unnamed input columns; serving needs named features")
            numeric = column.get("type") in _NUMERIC_MLFLOW_TYPES
            categories = None
            if not numeric and reference is not None and name in reference.columns:
                categories = tuple(sorted({str(v) for v in reference[name].dropna()}))
            nullable = column.get("required") is False or (reference is not None and name in reference.columns and bool(reference[name].isna().any()))
            features.append(Feature(str(name), NUMERIC if numeric else CATEGORICAL, categories or None, nullable))
        return cls(tuple(features), task="classification" if classes else "regression", classes=tuple(classes) if classes else None, source="signature")


def nullable_columns(reference: Any) -> set[str]:
    """Columns of the reference sample that hold missing values."""
    if reference is None:
        return set()
    return {str(c) for c in reference.columns if bool(reference[c].isna().any())}


FiniteNumber = Annotated[float, Strict(), Field(allow_inf_nan=False)]


class RecordValidator:
    """Validates one record or a list of records against a :class:`FeatureSchema`.

    Numbers must be JSON numbers (not strings, not booleans) and finite; categorical values must
    be strings and, when the training categories are known, one of them; unknown fields are
    rejected; every feature must be present; ``null`` only where the feature had missing values
    in training (the pipeline imputes them, XGBoost takes NaN).
    """

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        fields: dict[str, Any] = {}
        for feature in schema.features:
            if feature.kind == NUMERIC:
                typ: Any = FiniteNumber
            elif feature.categories:
                typ = Literal[tuple(str(c) for c in feature.categories)]  # type: ignore[misc]
            else:
                typ = Annotated[str, Strict()]
            fields[feature.name] = Optional[typ] if feature.nullable else typ
        record = TypedDict("Record", fields)  # type: ignore[misc]
        record.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
        self._one = TypeAdapter(record)
        self._many = TypeAdapter(list[record])  # type: ignore[valid-type]

    def validate(self, records: list[Any], root: str = "records") -> list[dict[str, Any]]:
        """The validated records (dicts keyed by feature name); :class:`InvalidInput` lists every problem."""
        try:
            return self._many.validate_python(records)
        except pydantic.ValidationError as error:
            raise InvalidInput(f"{error.error_count()} invalid field(s) in the records", _details(error, root)) from None

    def validate_one(self, record: Any) -> dict[str, Any]:
        try:
            return self._one.validate_python(record)
        except pydantic.ValidationError as error:
            raise InvalidInput(f"{error.error_count()} invalid field(s) in the record", _details(error, "record")) from None

    def json_schema(self) -> dict[str, Any]:
        return self._one.json_schema()


def _details(error: pydantic.ValidationError, root: str) -> list[dict[str, Any]]:
    out = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        loc = list(item["loc"])
        message = item["msg"]
        kind = item["type"]
        if kind == "extra_forbidden":
            message = "unknown field: not a feature of this model"
        elif kind == "missing":
            message = "field required (send null for a missing value where the feature allows it)"
        elif kind == "finite_number":
            message = "must be a finite number (not NaN or infinity)"
        elif kind in ("float_type", "float_parsing"):
            message = "must be a number"
        elif kind == "literal_error":
            message = message.replace("Input should be", "must be one of the categories seen in training:")
        elif kind == "string_type":
            message = "must be a string (a category)"
        elif kind in ("dict_type", "typed_dict_type"):
            message = "must be a JSON object keyed by feature name"
        elif kind == "list_type":
            message = "must be a JSON array of records"
        out.append({"loc": [root, *loc], "msg": message, "type": kind})
    return _dedupe(out)


def _dedupe(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for item in items:
        key = (tuple(item["loc"]), item["type"])
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out
