"""Estimator resolution: short names and ``module:Class``, hyperparameters checked, seeds and
threads set, and the pipeline that wraps it.

Short names (``BUILTIN_ESTIMATORS``) pick the regressor or the classifier by task;
``module:Class`` imports any scikit-learn compatible estimator the training image has.
Hyperparameters must be names of the estimator's ``get_params()``. ``random_state`` comes from
``dataset.seed`` unless given, ``n_jobs`` is bounded by the CPUs the container may use.
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass
from typing import Any

from modelship.training.errors import InvalidInput

#: short name → (regressor, classifier) as ``module:Class``; None where the task is not supported.
BUILTIN_CLASSES: dict[str, tuple[str | None, str | None]] = {
    "xgboost": ("xgboost:XGBRegressor", "xgboost:XGBClassifier"),
    "randomForest": ("sklearn.ensemble:RandomForestRegressor", "sklearn.ensemble:RandomForestClassifier"),
    "extraTrees": ("sklearn.ensemble:ExtraTreesRegressor", "sklearn.ensemble:ExtraTreesClassifier"),
    "gradientBoosting": ("sklearn.ensemble:GradientBoostingRegressor", "sklearn.ensemble:GradientBoostingClassifier"),
    "histGradientBoosting": ("sklearn.ensemble:HistGradientBoostingRegressor", "sklearn.ensemble:HistGradientBoostingClassifier"),
    "ridge": ("sklearn.linear_model:Ridge", None),
    "linearRegression": ("sklearn.linear_model:LinearRegression", None),
    "logisticRegression": (None, "sklearn.linear_model:LogisticRegression"),
}
#: Modules whose estimators want scaled numeric inputs.
SCALED_MODULES = ("sklearn.linear_model", "sklearn.svm", "sklearn.neighbors", "sklearn.neural_network")
#: Settings of the lean XGBoost path (native NaN and categoricals); the user may override them.
XGBOOST_DEFAULTS = {"enable_categorical": True, "tree_method": "hist"}


@dataclass
class ResolvedEstimator:
    name: str  #: as written in the spec
    target: str  #: module:Class
    estimator: Any  #: the configured, unfitted estimator (wrapped for XGBoost classifiers)
    params: dict[str, Any]  #: the estimator's own parameters as set (hyperparameters + seed + n_jobs)
    lean: bool  #: XGBoost: no one-hot, native NaN and categoricals
    scale: bool  #: linear models: scale numeric features
    param_prefix: str  #: prefix of the estimator's parameters inside the pipeline
    valid_params: list[str]


def available_cpus() -> int:
    """CPUs this process may use: affinity, bounded by a cgroup v2 quota when one is set."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def class_path(name: str, task: str) -> str:
    """``module:Class`` of a short name for the task, or the name itself when it has a colon."""
    if ":" in name:
        return name
    if name not in BUILTIN_CLASSES:
        raise InvalidInput(f"estimator {name!r} is unknown; one of {', '.join(BUILTIN_CLASSES)} or module:Class")
    regressor, classifier = BUILTIN_CLASSES[name]
    chosen = regressor if task == "regression" else classifier
    if chosen is None:
        raise InvalidInput(f"estimator {name!r} does not support task {task}")
    return chosen


def import_estimator(name: str, target: str) -> type:
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or module_name
        raise InvalidInput(f"estimator {name!r}: module {missing} is not installed in the training image") from None
    except ImportError as error:
        raise InvalidInput(f"estimator {name!r}: module {module_name} cannot be imported ({error})") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise InvalidInput(f"estimator {name!r}: module {module_name} has no attribute {class_name}")
    if not isinstance(cls, type) or not hasattr(cls, "fit") or not hasattr(cls, "get_params"):
        raise InvalidInput(f"estimator {name!r}: {target} is not a scikit-learn compatible estimator (needs fit and get_params)")
    return cls


def check_params(name: str, given: dict[str, Any], valid: list[str], what: str = "hyperparameter") -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise InvalidInput(f"{what} {unknown[0]!r} is not a parameter of estimator {name!r}; valid: {', '.join(sorted(valid))}")


def resolve_estimator(name: str, task: str, hyperparameters: dict[str, Any], seed: int, cpus: int | None = None) -> ResolvedEstimator:
    """The configured estimator for the spec; raises InvalidInput naming what is wrong."""
    target = class_path(name, task)
    cls = import_estimator(name, target)
    try:
        estimator = cls()
    except TypeError as error:
        raise InvalidInput(f"estimator {name!r}: cannot be created without arguments ({error})") from None
    valid = sorted(estimator.get_params(deep=False))
    check_params(name, hyperparameters, valid)
    lean = target.startswith("xgboost")
    params: dict[str, Any] = {}
    if lean:
        params.update({k: v for k, v in XGBOOST_DEFAULTS.items() if k in valid})
    if "random_state" in valid:
        params["random_state"] = seed
    cpus = cpus or available_cpus()
    if "n_jobs" in valid:
        params["n_jobs"] = cpus
    params.update(hyperparameters)
    if "n_jobs" in valid and params.get("n_jobs") is not None:
        requested = int(params["n_jobs"])
        params["n_jobs"] = cpus if requested <= 0 else min(requested, cpus)
    try:
        estimator.set_params(**params)
    except (ValueError, TypeError) as error:
        raise InvalidInput(f"estimator {name!r}: {error}") from None
    _check_constraints(name, estimator)
    module = target.partition(":")[0]
    scale = module.startswith(SCALED_MODULES)
    prefix = "model__"
    if lean and task == "classification":
        from modelship.training.preprocessing import LabelEncodedClassifier

        estimator = LabelEncodedClassifier(estimator)
        prefix = "model__estimator__"
    return ResolvedEstimator(name, target, estimator, params, lean, scale, prefix, valid)


def _check_constraints(name: str, estimator: Any) -> None:
    """scikit-learn's own parameter constraints, checked before any data is touched."""
    validate = getattr(estimator, "_validate_params", None)
    if validate is None or not hasattr(estimator, "_parameter_constraints"):
        return
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        validate()
    except InvalidParameterError as error:
        raise InvalidInput(f"estimator {name!r}: {str(error).splitlines()[0]}") from None
