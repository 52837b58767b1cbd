"""Hyperparameter search: grid or random with k-fold cross-validation, progress on stdout.

The space names the estimator's own parameters; they are prefixed for the pipeline step
here. The best candidate is refit on the whole training split. Folds run one after the other
(the estimator itself uses the CPUs), so progress lines appear as each candidate finishes.
"""

from __future__ import annotations

from typing import Any, Callable

from modelship.training.errors import InvalidInput

#: Gate metric → scikit-learn scorer (greater is better, hence the neg_ ones).
SCORERS = {
    "r2": "r2",
    "rmse": "neg_root_mean_squared_error",
    "mae": "neg_mean_absolute_error",
    "accuracy": "accuracy",
    "f1Macro": "f1_macro",
    "rocAuc": "roc_auc",
}
DEFAULT_METRIC = {"regression": "r2", "classification": "accuracy"}
DEFAULT_RANDOM_TRIALS = 10


def scoring_for(task: str, gate_metric: str | None, explicit: str | None, n_classes: int | None = None) -> str:
    """The scorer name: the spec's, else the gate metric's, else r2 / accuracy; checked to exist."""
    if explicit:
        from sklearn.metrics import get_scorer_names

        if explicit not in get_scorer_names():
            raise InvalidInput(f"search.scoring {explicit!r} is not a scikit-learn scorer")
        return explicit
    scorer = SCORERS[gate_metric or DEFAULT_METRIC[task]]
    if scorer == "roc_auc" and n_classes and n_classes > 2:
        scorer = "roc_auc_ovr"
    return scorer


def distributions(space: dict[str, Any]) -> dict[str, Any]:
    """Lists stay lists; {distribution, low, high} becomes a scipy.stats distribution."""
    from scipy import stats

    out: dict[str, Any] = {}
    for name, candidates in space.items():
        if isinstance(candidates, dict):
            kind, low, high = candidates["distribution"], candidates["low"], candidates["high"]
            if kind == "uniform":
                out[name] = stats.uniform(loc=low, scale=high - low)
            elif kind == "loguniform":
                if low <= 0:
                    raise InvalidInput(f"search.space.{name}: loguniform needs low > 0")
                out[name] = stats.loguniform(low, high)
            else:  # randint: low ≤ x < high, as scipy
                out[name] = stats.randint(int(low), int(high))
        else:
            out[name] = list(candidates)
    return out


def candidate_count(space: dict[str, Any], strategy: str, max_trials: int | None, seed: int) -> int:
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    if strategy == "grid":
        return len(ParameterGrid(space))
    return len(ParameterSampler(space, n_iter=max_trials or DEFAULT_RANDOM_TRIALS, random_state=seed))


class ProgressScorer:
    """Wraps a scorer; prints one line when a candidate's folds are all scored."""

    def __init__(self, scoring: str, candidates: int, folds: int, echo: Callable[[str], None] = print) -> None:
        from sklearn.metrics import get_scorer

        self.scoring, self.candidates, self.folds, self.echo = scoring, candidates, folds, echo
        self._scorer = get_scorer(scoring)
        self._calls = 0
        self._fold_scores: list[float] = []
        self.best: float | None = None

    def __call__(self, estimator: Any, X: Any, y: Any) -> float:
        score = float(self._scorer(estimator, X, y))
        self._calls += 1
        self._fold_scores.append(score)
        if len(self._fold_scores) == self.folds:
            mean = sum(self._fold_scores) / self.folds
            self.best = mean if self.best is None else max(self.best, mean)
            trial = self._calls // self.folds
            self.echo(f"search: trial {trial}/{self.candidates} cv {self.scoring}={mean:.4f} (best so far {self.best:.4f})")
            self._fold_scores = []
        return score


def build_search(pipeline: Any, search: Any, prefix: str, valid_params: list[str], estimator_name: str, scoring: str, task: str, seed: int, echo: Callable[[str], None] = print) -> Any:
    """A GridSearchCV or RandomizedSearchCV over the pipeline; space keys checked and prefixed."""
    from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, StratifiedKFold

    from modelship.training.estimators import check_params

    check_params(estimator_name, search.space, valid_params, what="search.space parameter")
    space = {prefix + name: values for name, values in distributions(search.space).items()}
    strategy = str(search.strategy)
    count = candidate_count(space, strategy, search.max_trials, seed)
    folds = search.cv_folds
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed) if task == "classification" else KFold(folds, shuffle=True, random_state=seed)
    scorer = ProgressScorer(scoring, count, folds, echo)
    echo(f"search: {strategy}, {count} candidates × {folds} folds, scoring {scoring}")
    common = dict(scoring=scorer, cv=cv, refit=True, n_jobs=1, error_score="raise")
    if strategy == "grid":
        return GridSearchCV(pipeline, space, **common)
    return RandomizedSearchCV(pipeline, space, n_iter=search.max_trials or DEFAULT_RANDOM_TRIALS, random_state=seed, **common)


def summarize(search: Any, prefix: str) -> tuple[dict[str, Any], float, list[dict[str, Any]]]:
    """Best params (unprefixed), best CV score, and one row a candidate ranked best first."""
    results = search.cv_results_
    rows = []
    for i, params in enumerate(results["params"]):
        rows.append({
            "rank": int(results["rank_test_score"][i]),
            "params": {k.removeprefix(prefix): _plain(v) for k, v in params.items()},
            "meanScore": float(results["mean_test_score"][i]),
            "stdScore": float(results["std_test_score"][i]),
            "fitSeconds": float(results["mean_fit_time"][i]),
        })
    rows.sort(key=lambda r: r["rank"])
    best = {k.removeprefix(prefix): _plain(v) for k, v in search.best_params_.items()}
    return best, float(search.best_score_), rows


def _plain(value: Any) -> Any:
    import numpy as np

    return value.item() if isinstance(value, np.generic) else value
