"""Preprocessing saved WITH the model, and the feature schema serving builds its input checks from.

This module is unpickled by the model server: it imports only numpy, pandas and scikit-learn.

The contract with serving (stable; additive changes only)
----------------------------------------------------------
Every model version is ONE scikit-learn ``Pipeline`` logged with ``mlflow.sklearn.log_model``
under the name ``model``. It takes RAW features: a ``pandas.DataFrame`` with one column per
feature name (extra columns are ignored; a missing column raises ``ValueError``), or a dict
(one row) or a list of dicts keyed by feature name. Numeric features accept numbers or
``None``/NaN (missing is fine: imputed or handled natively); categorical features accept
strings or ``None`` (a category not seen in training is treated as missing, or ignored by the
one-hot encoder). ``pipeline.predict`` returns the target in its original form: numbers for
regression, the ORIGINAL class labels for classification (e.g. ``"Extrovert"``), and
``pipeline.predict_proba`` (classifiers) has one column per entry of ``classes``, in order.

Steps: ``prepare`` (:class:`FramePreparer`), then for scikit-learn estimators ``encode`` (a
``ColumnTransformer``: median impute (+ scale for linear models) / most-frequent impute +
one-hot), then ``model``. XGBoost skips ``encode`` (the lean path: it takes NaN and
``pd.Categorical`` natively), and an XGBoost classifier is wrapped in
:class:`LabelEncodedClassifier` so labels stay as in the data.

:func:`feature_schema` (also logged as ``feature_schema.json`` in the run, and as
``metadata["feature_schema"]`` in the MLmodel file) returns::

    {
      "schemaVersion": 1,
      "task": "regression" | "classification",
      "target": "median_house_value",
      "features": [                                  # in training order
        {"name": "longitude", "kind": "numeric", "categories": None},
        {"name": "ocean_proximity", "kind": "categorical",
         "categories": ["<1H OCEAN", "INLAND", "ISLAND", "NEAR BAY", "NEAR OCEAN"]},
      ],
      "classes": None | ["Extrovert", "Introvert"],  # order of predict_proba's columns
    }

Together with the MLflow signature (numeric → ``double``, categorical → ``string``) this is
what the model server validates requests against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone

PREPARE_STEP = "prepare"
ENCODE_STEP = "encode"
MODEL_STEP = "model"
SCHEMA_VERSION = 1
NUMERIC = "numeric"
CATEGORICAL = "categorical"


def as_frame(rows: Any) -> pd.DataFrame:
    """A DataFrame from a DataFrame, one record (dict) or a list of records."""
    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, dict):
        return pd.DataFrame([rows])
    if isinstance(rows, list) and (not rows or isinstance(rows[0], dict)):
        return pd.DataFrame(rows)
    raise TypeError(f"expected a DataFrame, a dict or a list of dicts, got {type(rows).__name__}")


class FramePreparer(TransformerMixin, BaseEstimator):
    """Select the features in training order and give each its training type.

    Numeric features become float64. Categorical features become ``pd.Categorical`` with the
    categories seen in training (unknown → NaN) when ``categorical_output="category"`` (the
    XGBoost path), or plain strings with NaN for missing when ``"object"`` (the one-hot path).

    ``kinds`` maps feature → ``numeric`` | ``categorical``; unset, it is inferred in ``fit``.
    """

    def __init__(self, features: list[str] | None = None, kinds: dict[str, str] | None = None, categorical_output: str = "category", target: str | None = None) -> None:
        self.features = features
        self.kinds = kinds
        self.categorical_output = categorical_output
        self.target = target

    def fit(self, X: Any, y: Any = None) -> FramePreparer:
        frame = as_frame(X)
        names = list(self.features) if self.features is not None else [str(c) for c in frame.columns]
        kinds = dict(self.kinds or {})
        for name in names:
            if name not in kinds:
                column = frame[name]
                kinds[name] = NUMERIC if (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)) else CATEGORICAL
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        self.kinds_ = {name: kinds[name] for name in names}
        self.categories_: dict[str, list[str]] = {}
        for name in names:
            if self.kinds_[name] == CATEGORICAL:
                values = frame[name].dropna()
                self.categories_[name] = sorted({str(v) for v in values})
        self._dtypes = {name: pd.CategoricalDtype(categories) for name, categories in self.categories_.items()}
        return self

    def transform(self, X: Any) -> pd.DataFrame:
        frame = as_frame(X)
        missing = [name for name in self.feature_names_in_ if name not in frame.columns]
        if missing:
            raise ValueError(f"missing feature column(s): {', '.join(missing)}")
        columns: dict[str, Any] = {}
        as_category = self.categorical_output == "category"
        for name in self.feature_names_in_:
            values = frame[name]
            if self.kinds_[name] == NUMERIC:
                columns[name] = values.astype("float64") if values.dtype != np.float64 else values
            else:
                if values.dtype != object and not pd.api.types.is_string_dtype(values) and not isinstance(values.dtype, pd.CategoricalDtype):
                    values = values.map(lambda v: v if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
                if as_category:
                    columns[name] = pd.Categorical(values, dtype=self._dtypes[name])
                else:
                    columns[name] = values.astype(object).where(values.notna(), np.nan)
        return pd.DataFrame(columns, index=frame.index)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.feature_names_in_, dtype=object)


class LabelEncodedClassifier(ClassifierMixin, BaseEstimator):
    """Fit a classifier on label codes 0..n-1 (XGBoost needs them) and answer with the labels.

    ``classes_`` holds the original labels (sorted); ``predict`` returns them;
    ``predict_proba`` columns follow ``classes_``. The fitted inner model is ``estimator_``.
    """

    def __init__(self, estimator: Any = None) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any, **fit_params: Any) -> LabelEncodedClassifier:
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self.estimator_ = clone(self.estimator).fit(X, codes, **fit_params)
        return self

    def predict(self, X: Any) -> np.ndarray:
        codes = np.asarray(self.estimator_.predict(X)).astype(np.int64).ravel()
        return self.classes_[codes]

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.estimator_.predict_proba(X)

    @property
    def feature_importances_(self) -> np.ndarray:
        return self.estimator_.feature_importances_


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def feature_schema(pipeline: Any) -> dict[str, Any]:
    """What serving needs to validate inputs and label outputs; see the module docstring."""
    prepare: FramePreparer = pipeline.named_steps[PREPARE_STEP]
    model = pipeline.steps[-1][1]
    classes = getattr(model, "classes_", None)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "task": "classification" if classes is not None else "regression",
        "target": prepare.target,
        "features": [
            {"name": str(name), "kind": prepare.kinds_[name], "categories": list(prepare.categories_[name]) if prepare.kinds_[name] == CATEGORICAL else None}
            for name in prepare.feature_names_in_
        ],
        "classes": [_plain(c) for c in classes] if classes is not None else None,
    }


def build_pipeline(estimator: Any, features: list[str], kinds: dict[str, str], *, lean: bool, scale: bool = False, target: str | None = None) -> Any:
    """``prepare → [encode →] model``: the lean path for XGBoost, one-hot and impute otherwise."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    prepare = FramePreparer(features=list(features), kinds=dict(kinds), categorical_output="category" if lean else "object", target=target)
    if lean:
        return Pipeline([(PREPARE_STEP, prepare), (MODEL_STEP, estimator)])
    numeric = [f for f in features if kinds[f] == NUMERIC]
    categorical = [f for f in features if kinds[f] == CATEGORICAL]
    transformers = []
    if numeric:
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
        if scale:
            steps.append(("scale", StandardScaler()))
        transformers.append((NUMERIC, Pipeline(steps), numeric))
    if categorical:
        transformers.append(
            (
                CATEGORICAL,
                Pipeline([
                    ("impute", SimpleImputer(strategy="most_frequent")),
                    ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                ]),
                categorical,
            )
        )
    encode = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([(PREPARE_STEP, prepare), (ENCODE_STEP, encode), (MODEL_STEP, estimator)])
