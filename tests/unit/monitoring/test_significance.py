"""A/B significance: the pure tests against SciPy's (the oracle here; the module itself uses the
standard library only), and the verdict rules, table-driven."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from modelship.monitoring import metrics as m
from modelship.monitoring.significance import (
    A_BETTER,
    B_BETTER,
    NO_DIFFERENCE,
    TOO_FEW_LABELS,
    VariantAccuracy,
    VariantErrors,
    accuracy_from_vectors,
    accuracy_queries,
    compare_accuracy,
    compare_errors,
    compare_variants,
    error_queries,
    errors_from_vectors,
    student_t_two_sided,
)


@pytest.mark.parametrize(
    "a, b, verdict",
    [
        ((45, 100), (60, 100), B_BETTER),  # z = 2.12, p = 0.034
        ((60, 100), (45, 100), A_BETTER),
        ((45, 100), (52, 100), NO_DIFFERENCE),  # p = 0.32
        ((900, 1000), (915, 1000), NO_DIFFERENCE),
        ((800, 1000), (850, 1000), B_BETTER),
        ((10, 20), (20, 20), TOO_FEW_LABELS),  # min_labels 30
        ((30, 30), (40, 40), NO_DIFFERENCE),  # both perfect: nothing to test
    ],
)
def test_two_proportion_z_test(a: tuple[int, int], b: tuple[int, int], verdict: str) -> None:
    result = compare_accuracy(VariantAccuracy("champion", *a), VariantAccuracy("challenger", *b))
    assert result.verdict == verdict and result.significant is (verdict in (A_BETTER, B_BETTER))
    assert result.labelled_a == a[1] and result.value_b == pytest.approx(b[0] / b[1])
    if verdict != TOO_FEW_LABELS and result.statistic:
        pa, pb, pooled = a[0] / a[1], b[0] / b[1], (a[0] + b[0]) / (a[1] + b[1])
        z = (pb - pa) / math.sqrt(pooled * (1 - pooled) * (1 / a[1] + 1 / b[1]))
        assert result.statistic == pytest.approx(z)
        assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)


def _errors(name: str, sample: np.ndarray) -> VariantErrors:
    return VariantErrors(name, float(len(sample)), float(sample.sum()), float((sample**2).sum()))


@pytest.mark.parametrize(
    "mean_a, sd_a, n_a, mean_b, sd_b, n_b, verdict",
    [
        (10.0, 3.0, 200, 9.0, 3.0, 200, B_BETTER),  # lower error is better
        (9.0, 3.0, 200, 10.0, 6.0, 50, NO_DIFFERENCE),
        (9.0, 1.0, 200, 10.0, 6.0, 400, A_BETTER),  # unequal variances and sizes: Welch's df
        (10.0, 3.0, 40, 10.0, 3.0, 40, NO_DIFFERENCE),
        (10.0, 3.0, 10, 5.0, 3.0, 40, TOO_FEW_LABELS),
    ],
)
def test_welch_t_test_matches_scipy(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int, verdict: str) -> None:
    rng = np.random.default_rng(1)
    sample_a = np.abs(rng.normal(mean_a, sd_a, n_a))
    sample_b = np.abs(rng.normal(mean_b, sd_b, n_b))
    result = compare_errors(_errors("champion", sample_a), _errors("challenger", sample_b))
    assert result.verdict == verdict
    if verdict == TOO_FEW_LABELS:
        assert result.p_value is None
        return
    oracle = stats.ttest_ind(sample_b, sample_a, equal_var=False)
    assert result.statistic == pytest.approx(oracle.statistic, rel=1e-9)
    assert result.p_value == pytest.approx(oracle.pvalue, rel=1e-7, abs=1e-12)
    assert result.value_a == pytest.approx(sample_a.mean()) and result.difference == pytest.approx(sample_b.mean() - sample_a.mean())


@pytest.mark.parametrize("t, df", [(0.0, 5.0), (1.5, 3.0), (2.2, 17.4), (-3.1, 120.0), (8.0, 2.5), (0.3, 1.0), (4.0, 1e6)])
def test_student_t_tail_matches_scipy(t: float, df: float) -> None:
    assert student_t_two_sided(t, df) == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9, abs=1e-15)


def test_no_spread_at_all() -> None:
    same = VariantErrors("a", 50, 100.0, 200.0)  # every error 2.0
    assert compare_errors(same, VariantErrors("b", 50, 100.0, 200.0)).verdict == NO_DIFFERENCE
    assert compare_errors(same, VariantErrors("b", 50, 50.0, 50.0)).verdict == B_BETTER  # every error 1.0


def _vector(**series: float) -> list[dict]:
    out = []
    for key, value in series.items():
        variant, _, outcome = key.partition("__")
        labels = {"variant": variant, **({"outcome": outcome} if outcome else {})}
        out.append({"metric": labels, "value": [0, str(value)]})
    return out


def test_from_prometheus_vectors_to_a_comparison() -> None:
    accuracy = accuracy_from_vectors(_vector(champion__correct=80, champion__incorrect=20, challenger__correct=90, challenger__incorrect=10))
    assert accuracy["champion"] == VariantAccuracy("champion", 80.0, 100.0)
    assert compare_accuracy(accuracy["champion"], accuracy["challenger"]).p_value == pytest.approx(0.0477, abs=1e-4)  # z = 1.98
    errors = errors_from_vectors(_vector(a=10, b=20), _vector(a=50, b=60), _vector(a=300, b=400))
    assert errors["b"] == VariantErrors("b", 20.0, 60.0, 400.0)


def test_queries_read_the_recorded_and_exported_series() -> None:
    assert m.LABELLED_PREDICTIONS_TOTAL in accuracy_queries("team-a", "iris")["byOutcome"] and "increase(" not in accuracy_queries("team-a", "iris")["byOutcome"]
    queries = error_queries("team-a", "housing")
    assert f"{m.PREDICTION_ABSOLUTE_ERROR}_count" in queries["count"] and m.PREDICTION_SQUARED_ERROR_TOTAL in queries["squares"]
    assert all('namespace="team-a", model="housing"' in q and "by (variant)" in q for q in queries.values())


def test_compare_variants_runs_the_queries_for_the_task() -> None:
    asked: list[str] = []
    answers = {
        "byOutcome": _vector(champion__correct=400, champion__incorrect=100, challenger__correct=450, challenger__incorrect=50),
        "count": _vector(champion=100, challenger=100),
        "sum": _vector(champion=1000, challenger=900),
        "squares": _vector(champion=10900, challenger=8200),
    }

    def query(expr: str) -> list[dict]:
        asked.append(expr)
        key = "byOutcome" if m.LABELLED_PREDICTIONS_TOTAL in expr else "squares" if m.PREDICTION_SQUARED_ERROR_TOTAL in expr else "count" if "_count" in expr else "sum"
        return answers[key]

    accuracy = compare_variants(query, "team-a", "iris", "classification", "champion", "challenger")
    assert accuracy.metric == "accuracy" and accuracy.verdict == B_BETTER and accuracy.labelled_b == 500
    assert len(asked) == 1
    errors = compare_variants(query, "team-a", "housing", "regression", "champion", "challenger")
    assert errors.metric == "mae" and errors.value_a == 10.0 and errors.value_b == 9.0 and len(asked) == 4
    missing = compare_variants(query, "team-a", "iris", "classification", "champion", "nobody")
    assert missing.verdict == TOO_FEW_LABELS and missing.labelled_b == 0
    assert missing.to_wire()["verdict"] == TOO_FEW_LABELS
