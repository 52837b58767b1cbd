"""Estimator resolution, hyperparameter checks, scorer mapping and search set-up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelship.api.v1alpha1 import BUILTIN_ESTIMATORS, SearchSpec
from modelship.training.errors import InvalidInput
from modelship.training.estimators import BUILTIN_CLASSES, class_path, resolve_estimator
from modelship.training.preprocessing import LabelEncodedClassifier, build_pipeline
from modelship.training.search import build_search, candidate_count, distributions, scoring_for


def test_every_contract_short_name_is_known():
    assert set(BUILTIN_CLASSES) == set(BUILTIN_ESTIMATORS)
    for name, info in BUILTIN_ESTIMATORS.items():
        for task in info["tasks"]:
            assert class_path(name, task)


@pytest.mark.parametrize(
    ("name", "task", "cls", "lean", "scale", "prefix"),
    [
        ("xgboost", "regression", "XGBRegressor", True, False, "model__"),
        ("xgboost", "classification", "XGBClassifier", True, False, "model__estimator__"),
        ("randomForest", "classification", "RandomForestClassifier", False, False, "model__"),
        ("histGradientBoosting", "regression", "HistGradientBoostingRegressor", False, False, "model__"),
        ("ridge", "regression", "Ridge", False, True, "model__"),
        ("logisticRegression", "classification", "LogisticRegression", False, True, "model__"),
        ("sklearn.svm:SVR", "regression", "SVR", False, True, "model__"),
        ("sklearn.tree:DecisionTreeClassifier", "classification", "DecisionTreeClassifier", False, False, "model__"),
    ],
)
def test_resolve(name, task, cls, lean, scale, prefix):
    resolved = resolve_estimator(name, task, {}, seed=7, cpus=2)
    inner = resolved.estimator.estimator if isinstance(resolved.estimator, LabelEncodedClassifier) else resolved.estimator
    assert type(inner).__name__ == cls
    assert (resolved.lean, resolved.scale, resolved.param_prefix) == (lean, scale, prefix)
    if "random_state" in resolved.valid_params:
        assert inner.get_params()["random_state"] == 7
    if lean:
        assert inner.get_params()["enable_categorical"] is True and inner.get_params()["tree_method"] == "hist"


@pytest.mark.parametrize(
    ("name", "task", "hyperparameters", "message"),
    [
        ("lightgbm:LGBMRegressor", "regression", {}, r"^estimator 'lightgbm:LGBMRegressor': module lightgbm is not installed in the training image$"),
        ("sklearn.ensemble:NoSuchForest", "regression", {}, r"^estimator 'sklearn.ensemble:NoSuchForest': module sklearn.ensemble has no attribute NoSuchForest$"),
        ("sklearn.metrics:r2_score", "regression", {}, r"is not a scikit-learn compatible estimator"),
        ("ridge", "classification", {}, r"^estimator 'ridge' does not support task classification$"),
        ("randomForest", "regression", {"n_trees": 10}, r"^hyperparameter 'n_trees' is not a parameter of estimator 'randomForest'; valid: .*n_estimators"),
        ("xgboost", "regression", {"colour": 1}, r"^hyperparameter 'colour' is not a parameter of estimator 'xgboost'; valid: "),
        ("randomForest", "regression", {"n_estimators": -3}, r"^estimator 'randomForest': The 'n_estimators' parameter"),
    ],
)
def test_resolve_rejects(name, task, hyperparameters, message):
    with pytest.raises(InvalidInput, match=message):
        resolve_estimator(name, task, hyperparameters, seed=0, cpus=2)


@pytest.mark.parametrize(("requested", "bounded"), [(None, 2), (-1, 2), (1, 1), (64, 2)])
def test_n_jobs_bounded_by_cpus(requested, bounded):
    hyperparameters = {} if requested is None else {"n_jobs": requested}
    resolved = resolve_estimator("randomForest", "regression", hyperparameters, seed=0, cpus=2)
    assert resolved.estimator.n_jobs == bounded


@pytest.mark.parametrize(
    ("task", "gate", "explicit", "classes", "scorer"),
    [
        ("regression", None, None, None, "r2"),
        ("regression", "r2", None, None, "r2"),
        ("regression", "rmse", None, None, "neg_root_mean_squared_error"),
        ("regression", "mae", None, None, "neg_mean_absolute_error"),
        ("classification", None, None, 2, "accuracy"),
        ("classification", "f1Macro", None, 3, "f1_macro"),
        ("classification", "rocAuc", None, 2, "roc_auc"),
        ("classification", "rocAuc", None, 3, "roc_auc_ovr"),
        ("classification", "accuracy", "balanced_accuracy", 2, "balanced_accuracy"),
    ],
)
def test_scoring_for(task, gate, explicit, classes, scorer):
    assert scoring_for(task, gate, explicit, classes) == scorer


def test_unknown_scorer_is_invalid_input():
    with pytest.raises(InvalidInput, match="'accurate' is not a scikit-learn scorer"):
        scoring_for("classification", None, "accurate")


def test_distributions_and_candidate_counts():
    space = distributions({"a": [1, 2], "lr": {"distribution": "loguniform", "low": 0.01, "high": 0.3}, "d": {"distribution": "randint", "low": 2, "high": 5}})
    assert space["a"] == [1, 2]
    lr = space["lr"].rvs(200, random_state=0)
    assert 0.01 <= lr.min() and lr.max() <= 0.3
    assert set(space["d"].rvs(200, random_state=0)) == {2, 3, 4}
    assert candidate_count({"a": [1, 2], "b": [1, 2, 3]}, "grid", None, 0) == 6
    assert candidate_count(space, "random", 4, 0) == 4
    assert candidate_count({"a": [1, 2]}, "random", 10, 0) == 2


def test_search_space_keys_are_checked_and_progress_is_printed():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=80), "c": rng.choice(["p", "q"], size=80)})
    y = pd.Series(np.where(X["x"] > 0, "yes", "no"))
    resolved = resolve_estimator("xgboost", "classification", {"n_estimators": 5}, seed=0, cpus=1)
    pipeline = build_pipeline(resolved.estimator, ["x", "c"], {"x": "numeric", "c": "categorical"}, lean=True)
    bad = SearchSpec.model_validate({"space": {"depth": [2, 3]}})
    with pytest.raises(InvalidInput, match=r"^search.space parameter 'depth' is not a parameter of estimator 'xgboost'"):
        build_search(pipeline, bad, resolved.param_prefix, resolved.valid_params, "xgboost", "accuracy", "classification", 0)
    lines: list[str] = []
    good = SearchSpec.model_validate({"strategy": "grid", "space": {"max_depth": [1, 2]}, "cvFolds": 2})
    search = build_search(pipeline, good, resolved.param_prefix, resolved.valid_params, "xgboost", "accuracy", "classification", 0, lines.append)
    search.fit(X, y)
    assert lines[0] == "search: grid, 2 candidates × 2 folds, scoring accuracy"
    assert [line.split(" cv ")[0] for line in lines[1:]] == ["search: trial 1/2", "search: trial 2/2"]
    assert set(search.best_estimator_.predict(X)) <= {"yes", "no"}
