"""The pipeline serving unpickles: raw features in, original labels out, and its schema."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from modelship.training.estimators import resolve_estimator
from modelship.training.preprocessing import ENCODE_STEP, FramePreparer, build_pipeline, feature_schema

KINDS = {"size": "numeric", "city": "categorical"}


def data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"size": rng.uniform(0, 10, n), "city": rng.choice(["Oslo", "Rome", "Lima"], n), "noise": rng.normal(size=n)})
    X.loc[::10, "size"] = np.nan
    X.loc[::7, "city"] = np.nan
    y_reg = X["size"].fillna(5) * 3 + (X["city"] == "Rome") * 10
    y_cls = np.where(y_reg > 20, "Extrovert", "Introvert")
    return X, y_reg, pd.Series(y_cls)


def test_preparer_orders_features_and_types_them():
    X, _, _ = data()
    prep = FramePreparer(features=["city", "size"], kinds=KINDS).fit(X)
    out = prep.transform({"size": 3, "city": "Paris", "extra": 1})
    assert list(out.columns) == ["city", "size"]
    assert out["size"].dtype == np.float64
    assert list(out["city"].cat.categories) == ["Lima", "Oslo", "Rome"]
    assert pd.isna(out["city"].iloc[0])  # unknown category → missing
    assert prep.transform([{"size": None, "city": "Rome"}])["city"].iloc[0] == "Rome"
    with pytest.raises(ValueError, match="missing feature column"):
        prep.transform({"size": 1.0})


@pytest.mark.parametrize(
    ("estimator", "task"),
    [("xgboost", "regression"), ("xgboost", "classification"), ("ridge", "regression"), ("randomForest", "classification")],
)
def test_pipeline_takes_raw_records_and_survives_pickle(estimator, task):
    X, y_reg, y_cls = data()
    y = y_reg if task == "regression" else y_cls
    hyper = {"n_estimators": 10} if estimator in {"xgboost", "randomForest"} else {}
    resolved = resolve_estimator(estimator, task, hyper, seed=0, cpus=1)
    pipeline = build_pipeline(resolved.estimator, ["size", "city"], KINDS, lean=resolved.lean, scale=resolved.scale, target="t")
    assert (ENCODE_STEP in pipeline.named_steps) is not resolved.lean
    pipeline.fit(X, y)
    restored = pickle.loads(pickle.dumps(pipeline))
    record = {"size": 8.0, "city": "Atlantis", "noise": 0.0}
    prediction = restored.predict(pd.DataFrame([record]))
    schema = feature_schema(restored)
    assert schema["features"] == [
        {"name": "size", "kind": "numeric", "categories": None},
        {"name": "city", "kind": "categorical", "categories": ["Lima", "Oslo", "Rome"]},
    ]
    assert schema["task"] == task and schema["target"] == "t" and schema["schemaVersion"] == 1
    if task == "classification":
        assert schema["classes"] == ["Extrovert", "Introvert"]
        assert prediction[0] in {"Extrovert", "Introvert"}
        proba = restored.predict_proba(pd.DataFrame([record, {"size": None, "city": None}]))
        assert proba.shape == (2, 2) and np.allclose(proba.sum(axis=1), 1)
        assert list(restored.classes_) == schema["classes"]
    else:
        assert schema["classes"] is None and np.isfinite(prediction[0])
