"""Data drift of a window of live inputs against the training reference sample, with Evidently.

Pure computation: DataFrames and settings in, a :class:`DriftResult` out; no I/O, no metrics.
The model server calls :func:`compute_drift` off its request path and exports the result.

The spec names one method for every feature. Some tests only suit one kind of column (ks and
wasserstein numeric, chisquare categorical); for the other kind the closest test with the same
reading of the threshold is used, so one threshold keeps one meaning:

========== ====================== ======================= ===========================
method     numeric features       categorical features    drifted when
========== ====================== ======================= ===========================
psi        psi                    psi                     score ≥ threshold
jensenshannon jensenshannon       jensenshannon           score ≥ threshold
wasserstein wasserstein (normed)  jensenshannon           score ≥ threshold
ks         ks                     chisquare               p-value ≤ threshold
chisquare  ks                     chisquare               p-value ≤ threshold
========== ====================== ======================= ===========================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

METHODS = ("psi", "ks", "wasserstein", "jensenshannon", "chisquare")
#: Methods whose score is a p-value: small means drift.
P_VALUE_METHODS = frozenset({"ks", "chisquare"})
_NUMERIC_METHOD = {"psi": "psi", "jensenshannon": "jensenshannon", "wasserstein": "wasserstein", "ks": "ks", "chisquare": "ks"}
_CATEGORICAL_METHOD = {"psi": "psi", "jensenshannon": "jensenshannon", "wasserstein": "jensenshannon", "ks": "chisquare", "chisquare": "chisquare"}


@dataclass(frozen=True)
class DriftSettings:
    """What counts as drift; mirrors ``spec.monitoring.drift``."""

    method: str = "psi"
    threshold: float = 0.2
    drift_share: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown drift method {self.method!r}; one of {', '.join(METHODS)}")

    def method_for(self, categorical: bool) -> str:
        return (_CATEGORICAL_METHOD if categorical else _NUMERIC_METHOD)[self.method]

    def is_drifted(self, method: str, score: float) -> bool:
        if math.isnan(score):
            return False
        return score <= self.threshold if method in P_VALUE_METHODS else score >= self.threshold


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    method: str
    score: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """One evaluation: per-feature scores, the share that drifted and the verdict."""

    features: dict[str, FeatureDrift] = field(default_factory=dict)
    drifted_share: float = 0.0
    drift_detected: bool = False
    rows: int = 0

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, item in self.features.items() if item.drifted]


def split_features(reference: pd.DataFrame, categorical: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """Numeric and categorical feature names: the given categoricals, else non-numeric dtypes."""
    if categorical is None:
        categorical = [c for c in reference.columns if not pd.api.types.is_numeric_dtype(reference[c]) or pd.api.types.is_bool_dtype(reference[c])]
    cats = [c for c in reference.columns if c in set(categorical)]
    nums = [c for c in reference.columns if c not in set(cats)]
    return nums, cats


def _prepare(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(index=range(len(frame)))
    for name in numeric:
        out[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64").to_numpy()
    for name in categorical:
        out[name] = frame[name].astype("object").where(frame[name].notna(), None).to_numpy()
    return out


def compute_drift(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    settings: DriftSettings,
    categorical: Sequence[str] | None = None,
) -> DriftResult:
    """Compare ``current`` (the live window) with ``reference`` (the training sample), feature by feature.

    Columns are the reference's columns; ``categorical`` names the categorical ones (else taken
    from the reference dtypes). Features whose score cannot be computed (e.g. all values missing)
    count as not drifted and report NaN.
    """
    return drift_report(current, reference, settings, categorical)[0]


def drift_report(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    settings: DriftSettings,
    categorical: Sequence[str] | None = None,
) -> tuple[DriftResult, Any]:
    """:func:`compute_drift`, and the Evidently snapshot it read the scores from (``save_html``)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric, cats = split_features(reference, categorical)
    columns = numeric + cats
    if not columns:
        raise ValueError("the reference sample has no feature columns")
    missing = [c for c in columns if c not in current.columns]
    if missing:
        raise ValueError(f"the current window lacks reference columns: {', '.join(missing)}")
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=cats)
    methods = {name: settings.method_for(name in cats) for name in columns}
    report = Report(
        [
            DataDriftPreset(
                columns=columns,
                per_column_method=methods,
                threshold=settings.threshold,
                drift_share=settings.drift_share,
            )
        ]
    )
    # A constant window column (one value repeated) divides by zero inside some tests: the score
    # is still defined (or NaN, read as not drifted); numpy's warning is noise.
    with np.errstate(divide="ignore", invalid="ignore"):
        snapshot = report.run(
            Dataset.from_pandas(_prepare(current, numeric, cats), data_definition=definition),
            Dataset.from_pandas(_prepare(reference, numeric, cats), data_definition=definition),
        )
    scores: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift") and config.get("column") in methods:
            value = metric.get("value")
            scores[config["column"]] = float(value) if isinstance(value, (int, float)) else float("nan")
    features = {
        name: FeatureDrift(name, methods[name], scores.get(name, float("nan")), settings.is_drifted(methods[name], scores.get(name, float("nan"))))
        for name in columns
    }
    share = sum(item.drifted for item in features.values()) / len(features)
    return DriftResult(features=features, drifted_share=share, drift_detected=share >= settings.drift_share, rows=len(current)), snapshot
