"""Validation rules, one table of small frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelship.api.v1alpha1 import DatasetSpec
from modelship.training.errors import InvalidInput
from modelship.training.validation import outlier_bounds, validate

N = 60


def frame(**overrides) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    data = {
        "x": rng.normal(size=N),
        "size": rng.uniform(1, 10, size=N),
        "color": rng.choice(["red", "green", "blue"], size=N),
        "y": rng.normal(size=N),
        "label": ["a"] * (N // 2) + ["b"] * (N - N // 2),
    }
    data.update(overrides)
    return pd.DataFrame(data)


def spec(target="y", **validation) -> DatasetSpec:
    features = validation.pop("features", None)
    return DatasetSpec.model_validate({"uri": "file:///d.csv", "target": target, "features": features, "validation": validation})


ERRORS = [
    ("missing target", frame(), dict(target="price"), "regression", r"^column 'price' \(target\) not found; columns: x, size, color, y, label$"),
    ("missing feature", frame(), dict(features=["x", "weight"]), "regression", r"^column 'weight' \(feature\) not found"),
    ("missing required column", frame(), dict(requiredColumns=["id"]), "regression", r"^column 'id' \(requiredColumns\) not found"),
    ("all-NaN column", frame(x=[np.nan] * N), {}, "regression", r"^column 'x': all values are missing$"),
    ("missing share", frame(x=[np.nan] * 38 + [1.0] * 22), dict(maxMissingShare=0.5), "regression", r"^column 'x': 63% missing, above maxMissingShare 0.5$"),
    ("non-numeric regression target", frame(y=["cheap", "dear"] * (N // 2)), {}, "regression", r"^column 'y' \(target\): not numeric \(e.g. 'cheap'\), but task is regression$"),
    ("min rows", frame(), dict(minRows=100), "regression", r"^dataset: 60 rows after cleaning, below minRows 100$"),
    ("rows per class", frame(label=["a"] * 55 + ["b"] * 5), dict(target="label"), "classification", r"^column 'label' \(target\): class 'b' has 5 rows, below minRowsPerClass 10$"),
    ("single class", frame(label=["a"] * N), dict(target="label"), "classification", r"^column 'label' \(target\): 1 class, classification needs at least 2$"),
    ("every feature constant", frame(x=[1.0] * N, size=[2.0] * N, color=["c"] * N), dict(features=["x", "size", "color"]), "regression", r"^no feature columns left"),
    ("outlier column not numeric", frame(), dict(outliers={"columns": ["color"]}), "regression", r"^column 'color' \(outliers.columns\) is not numeric$"),
    ("two problems", frame(x=[np.nan] * N, size=[np.nan] * N), {}, "regression", r"^column 'x': all values are missing \(and 1 more problem\)$"),
]


@pytest.mark.parametrize(("case", "df", "rules", "task", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_failures_name_the_column_and_rule(case, df, rules, task, message):
    target = rules.pop("target", "y")
    if target == "y" and task == "regression":
        df = df.drop(columns=["label"])
    with pytest.raises(InvalidInput, match=message) as raised:
        validate(df, spec(target, **rules), task)
    assert raised.value.report["passed"] is False
    assert any(issue["severity"] == "error" for issue in raised.value.report["issues"])


def test_clean_data_passes_with_kinds_and_report():
    data = validate(frame().drop(columns=["label"]), spec(), "regression")
    assert data.features == ["x", "size", "color"]
    assert data.kinds == {"x": "numeric", "size": "numeric", "color": "categorical"}
    assert data.frame["x"].dtype == np.float64 and data.frame["color"].dtype == object
    assert data.report["passed"] is True and data.report["rowsIn"] == N == data.report["rowsOut"]


def test_constant_column_dropped_with_a_warning():
    data = validate(frame(k=[7] * N).drop(columns=["label"]), spec(), "regression")
    assert "k" not in data.features
    assert data.report["droppedConstant"] == ["k"]
    assert any(i["rule"] == "constant" and i["severity"] == "warning" for i in data.report["issues"])


def test_numeric_looking_text_becomes_numeric():
    df = frame(size=[str(v) for v in range(N)]).drop(columns=["label"])
    data = validate(df, spec(), "regression")
    assert data.kinds["size"] == "numeric" and data.frame["size"].iloc[3] == 3.0


def test_rows_without_target_dropped_with_a_note():
    df = frame(y=[np.nan] * 5 + list(range(N - 5))).drop(columns=["label"])
    data = validate(df, spec(), "regression")
    assert len(data.frame) == N - 5 and data.report["targetMissingDropped"] == 5


@pytest.mark.parametrize(("drop", "rows"), [(False, N + 5), (True, N)])
def test_duplicates_counted_and_dropped_on_request(drop, rows):
    df = frame().drop(columns=["label"])
    df = pd.concat([df, df.head(5)])
    data = validate(df, spec(dropDuplicates=drop), "regression")
    assert data.report["duplicates"] == {"count": 5, "dropped": drop}
    assert len(data.frame) == rows


@pytest.mark.parametrize(
    ("action", "rows", "max_x"),
    [("flag", N, 1000.0), ("clip", N, None), ("drop", N - 1, None)],
)
def test_outlier_policy(action, rows, max_x):
    x = np.linspace(-1, 1, N)
    x[0] = 1000.0
    data = validate(frame(x=x).drop(columns=["label"]), spec(outliers={"method": "iqr", "action": action, "columns": ["x"]}), "regression")
    assert len(data.frame) == rows
    assert data.report["outliers"]["columns"]["x"]["count"] == 1
    if max_x is not None:
        assert data.frame["x"].max() == max_x
    else:
        assert data.frame["x"].max() < 10
    assert data.raw_features["x"].max() == (1000.0 if action != "drop" else data.frame["x"].max())


@pytest.mark.parametrize(
    ("values", "method", "k", "bounds"),
    [
        ([1, 2, 3, 4, 5], "iqr", 1.5, (-1.0, 7.0)),
        ([1, 2, 3, 4, 5, np.nan], "iqr", 1.0, (0.0, 6.0)),
        ([0, 0, 2, 2], "zscore", 2.0, (-1.0, 3.0)),
    ],
)
def test_outlier_bounds(values, method, k, bounds):
    assert outlier_bounds(pd.Series(values, dtype=float), method, k) == pytest.approx(bounds)


def test_classification_float_labels_become_integers():
    df = frame(label=[0.0, 1.0] * (N // 2))
    data = validate(df.drop(columns=["y"]), spec("label"), "classification")
    assert data.frame["label"].dtype == np.int64
    assert data.report["classes"] == {"0": N // 2, "1": N // 2}


def test_identifier_like_text_column_warns():
    df = frame(id=[f"row-{i}" for i in range(N)]).drop(columns=["label"])
    df = pd.concat([df] * 3, ignore_index=True)
    df["id"] = [f"row-{i}" for i in range(len(df))]
    from modelship.training import validation

    data = validation.validate(df, spec(), "regression")
    assert any(i["rule"] == "cardinality" and i["column"] == "id" for i in data.report["issues"])
