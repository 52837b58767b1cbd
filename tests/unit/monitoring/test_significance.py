"""A/B significance: the fixed-horizon tests against SciPy's (the oracle here; the module itself
uses the standard library only), the always-valid p-value of the mixture SPRT against
hand-computed likelihood ratios, the verdict rules, table-driven, and a seeded Monte-Carlo of
repeated looks: what the sequential test is for."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats

from modelship.monitoring import metrics as m
from modelship.monitoring.analysis import accuracy_queries, error_queries
from modelship.monitoring.significance import (
    A_BETTER,
    B_BETTER,
    FIXED_HORIZON,
    NO_DIFFERENCE,
    SEQUENTIAL,
    TOO_FEW_LABELS,
    VariantAccuracy,
    VariantErrors,
    accuracy_from_vectors,
    always_valid_p_value,
    compare_accuracy,
    compare_errors,
    errors_from_vectors,
    mixture_scale,
    running_minimum,
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
    result = compare_accuracy(VariantAccuracy("champion", *a), VariantAccuracy("challenger", *b), test=FIXED_HORIZON)
    assert result.test == FIXED_HORIZON and result.verdict == verdict and result.significant is (verdict in (A_BETTER, B_BETTER))
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
    result = compare_errors(_errors("champion", sample_a), _errors("challenger", sample_b), test=FIXED_HORIZON)
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


@pytest.mark.parametrize("test", [SEQUENTIAL, FIXED_HORIZON])
def test_no_spread_at_all(test: str) -> None:
    same = VariantErrors("a", 50, 100.0, 200.0)  # every error 2.0
    assert compare_errors(same, VariantErrors("b", 50, 100.0, 200.0), test=test).verdict == NO_DIFFERENCE
    assert compare_errors(same, VariantErrors("b", 50, 50.0, 50.0), test=test).verdict == B_BETTER  # every error 1.0
    assert compare_accuracy(VariantAccuracy("a", 40, 40), VariantAccuracy("b", 50, 50), test=test).p_value == 1.0  # both perfect


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
    assert compare_accuracy(accuracy["champion"], accuracy["challenger"], test=FIXED_HORIZON).p_value == pytest.approx(0.0477, abs=1e-4)  # z = 1.98
    errors = errors_from_vectors(_vector(a=10, b=20), _vector(a=50, b=60), _vector(a=300, b=400))
    assert errors["b"] == VariantErrors("b", 20.0, 60.0, 400.0)


def test_queries_read_the_recorded_and_exported_series() -> None:
    assert m.LABELLED_PREDICTIONS_TOTAL in accuracy_queries("team-a", "iris")["byOutcome"] and "increase(" not in accuracy_queries("team-a", "iris")["byOutcome"]
    queries = error_queries("team-a", "housing")
    assert f"{m.PREDICTION_ABSOLUTE_ERROR}_count" in queries["count"] and m.PREDICTION_SQUARED_ERROR_TOTAL in queries["squares"]
    assert all('namespace="team-a", model="housing"' in q and "by (variant)" in q for q in queries.values())


def test_the_operators_comparison_reads_the_counts_prometheus_gave() -> None:
    """Prometheus's answers → counts → the operator's comparison (abquality.compare), per task;
    a variant without labelled predictions counts as zero."""
    import datetime as dt

    from modelship.operator.abquality import QualitySample, Settings, compare

    at = dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)
    by_outcome = _vector(champion__correct=400, champion__incorrect=100, challenger__correct=450, challenger__incorrect=50)
    labelled = QualitySample(at, "classification", accuracy=accuracy_from_vectors(by_outcome))
    errors = QualitySample(at, "regression", errors=errors_from_vectors(_vector(champion=100, challenger=100), _vector(champion=1000, challenger=900), _vector(champion=10900, challenger=8200)))
    sequential = Settings(0.05, 30, SEQUENTIAL, 0.05)

    accuracy = compare(labelled, "champion", "challenger", sequential)
    assert accuracy.metric == "accuracy" and accuracy.test == SEQUENTIAL and accuracy.verdict == B_BETTER and accuracy.labelled_b == 500
    mae = compare(errors, "champion", "challenger", sequential)
    assert mae.metric == "mae" and mae.value_a == 10.0 and mae.value_b == 9.0
    missing = compare(labelled, "champion", "nobody", sequential)
    assert missing.verdict == TOO_FEW_LABELS and missing.labelled_b == 0
    fixed = compare(labelled, "champion", "challenger", Settings(0.05, 30, FIXED_HORIZON, 0.2))
    assert fixed.test == FIXED_HORIZON and fixed.p_value < accuracy.p_value
    with pytest.raises(ValueError, match="test must be sequential or fixedHorizon, not 'bayes'"):
        compare(labelled, "champion", "challenger", Settings(0.05, 30, "bayes", 0.05))


# --- the always-valid p-value (mSPRT) ---------------------------------------------------------


@pytest.mark.parametrize(
    "difference, variance, tau2, expected",
    [
        # Λ = sqrt(V/(V+τ²)) · exp(τ² θ² / (2 V (V+τ²))), by hand:
        (2.0, 1.0, 3.0, 0.4462603931),  # Λ = ½ · e^1.5 = 2.2408
        (-2.0, 1.0, 3.0, 0.4462603931),  # two-sided: the sign does not matter
        (1.0, 0.25, 0.75, 0.4462603931),  # the same ratios τ²/V and θ²/V: the same Λ
        (3.0, 1.0, 1.0, 0.1490600286),  # Λ = √½ · e^2.25 = 6.7087
        (0.1, 1e-4, 3e-4, 1.0351e-16),  # Λ = ½ · e^37.5, p = 2 e^-37.5: tiny, no overflow
        (1.0, 1e-9, 1.0, 0.0),  # Λ = e^(5e8): past a float, p = 0
        (0.0, 1.0, 3.0, 1.0),  # Λ = ½: no evidence, p capped at 1
        (0.5, 1.0, 1.0, 1.0),  # Λ = √½ · e^(1/16) = 0.75 < 1
        (0.0, 0.0, 1.0, 1.0),  # no spread, no difference
        (0.2, 0.0, 1.0, 0.0),  # no spread: any difference is certain
        (5.0, 1.0, 0.0, 1.0),  # a mixture all on no difference: Λ = 1
    ],
)
def test_always_valid_p_value_is_one_over_the_mixture_likelihood_ratio(difference, variance, tau2, expected):
    assert always_valid_p_value(difference, variance, tau2) == pytest.approx(expected, rel=1e-4, abs=1e-300)


@pytest.mark.parametrize("overall, effect, tau2", [(0.8, 0.05, 0.0016), (0.5, 0.1, 0.0025), (12.0, 0.05, 0.36), (-2.0, 0.5, 1.0), (0.0, 0.05, 0.0)])
def test_the_mixture_scale_is_the_relative_effect_of_the_overall_value(overall, effect, tau2):
    assert mixture_scale(overall, effect) == pytest.approx(tau2)


@pytest.mark.parametrize(
    "a, b",
    [((45, 100), (60, 100)), ((60, 100), (45, 100)), ((800, 1000), (850, 1000)), ((900, 1000), (915, 1000)), ((66, 120), (114, 120)), ((40, 40), (39, 40)), ((5000, 10000), (5100, 10000))],
)
def test_sequential_accuracy_uses_the_z_tests_variance_and_is_more_conservative_at_one_look(a, b):
    fixed = compare_accuracy(VariantAccuracy("a", *a), VariantAccuracy("b", *b), test=FIXED_HORIZON)
    sequential = compare_accuracy(VariantAccuracy("a", *a), VariantAccuracy("b", *b))
    assert sequential.test == SEQUENTIAL and (sequential.difference, sequential.statistic) == (fixed.difference, fixed.statistic)
    pooled = (a[0] + b[0]) / (a[1] + b[1])
    variance = pooled * (1 - pooled) * (1 / a[1] + 1 / b[1])
    tau2 = (0.05 * pooled) ** 2
    ratio = math.sqrt(variance / (variance + tau2)) * math.exp(tau2 * fixed.difference**2 / (2 * variance * (variance + tau2)))
    assert sequential.p_value == pytest.approx(min(1.0, 1 / ratio), rel=1e-9)
    assert sequential.p_value >= fixed.p_value
    assert not sequential.significant or fixed.significant, "significant sequentially but not at a single fixed look"


@pytest.mark.parametrize("mean_a, sd_a, n_a, mean_b, sd_b, n_b", [(10.0, 3.0, 200, 9.0, 3.0, 200), (9.0, 1.0, 200, 10.0, 6.0, 400), (10.0, 3.0, 40, 10.0, 3.0, 40), (5.0, 2.0, 2000, 4.8, 2.0, 2000)])
def test_sequential_errors_are_more_conservative_at_one_look(mean_a, sd_a, n_a, mean_b, sd_b, n_b):
    rng = np.random.default_rng(2)
    a, b = _errors("a", np.abs(rng.normal(mean_a, sd_a, n_a))), _errors("b", np.abs(rng.normal(mean_b, sd_b, n_b)))
    fixed, sequential = compare_errors(a, b, test=FIXED_HORIZON), compare_errors(a, b)
    assert sequential.statistic == fixed.statistic and sequential.p_value >= fixed.p_value
    variance = a.variance / a.count + b.variance / b.count
    tau2 = (0.05 * (a.total + b.total) / (a.count + b.count)) ** 2
    assert sequential.p_value == pytest.approx(always_valid_p_value(b.mean - a.mean, variance, tau2), rel=1e-12)


def test_a_larger_detectable_effect_finds_a_large_difference_sooner():
    a, b = VariantAccuracy("a", 33, 60), VariantAccuracy("b", 57, 60)
    assert not compare_accuracy(a, b, min_detectable_effect=0.05).significant
    assert compare_accuracy(a, b, min_detectable_effect=0.3).significant


def _looks(counts: list[tuple[tuple[int, int], tuple[int, int]]], test: str = SEQUENTIAL) -> list:
    results, running = [], None
    for a, b in counts:
        result = running_minimum(compare_accuracy(VariantAccuracy("a", *a), VariantAccuracy("b", *b), test=test), running, 0.05)
        running = result.p_value if result.p_value is not None else running
        results.append(result)
    return results


#: Looks at one A/B test as labels arrive: b runs ahead early, then the gap closes.
LOOKS = [((10, 20), (15, 20)), ((60, 100), (85, 100)), ((120, 200), (170, 200)), ((330, 500), (390, 500)), ((700, 1000), (740, 1000)), ((1400, 2000), (1430, 2000))]


def test_the_running_minimum_never_rises_and_significance_stays():
    single = [compare_accuracy(VariantAccuracy("a", *a), VariantAccuracy("b", *b)) for a, b in LOOKS]
    results = _looks(LOOKS)
    assert results[0].verdict == TOO_FEW_LABELS and results[0].p_value is None
    p_values = [r.p_value for r in results[1:]]
    assert p_values == [min(s.p_value for s in single[1:i + 1]) for i in range(1, len(single))]
    assert all(later <= earlier for earlier, later in zip(p_values, p_values[1:]))
    assert p_values[-1] < single[-1].p_value, "a single late look would forget the early evidence"
    first = next(i for i, r in enumerate(results) if r.significant)
    assert all(r.significant and r.verdict == B_BETTER for r in results[first:])
    assert not single[-1].significant, "the last look alone is not significant; the running minimum is"


def test_the_running_minimum_leaves_a_fixed_horizon_test_alone():
    results = _looks(LOOKS, FIXED_HORIZON)
    assert [r.p_value for r in results[1:]] == [compare_accuracy(VariantAccuracy("a", *a), VariantAccuracy("b", *b), test=FIXED_HORIZON).p_value for a, b in LOOKS[1:]]
    assert results[2].significant and not results[-1].significant, "peeking: significant, then not"


# --- repeated looks, simulated ------------------------------------------------------------------

ALPHA = 0.05
TESTS = 400
#: Three standard errors of a share estimated from TESTS simulated A/B tests whose true chance of
#: a false "significant" were alpha (sqrt(0.05 · 0.95 / 400) = 0.011): a bound the seeded run
#: could exceed only if the test's real error rate were above alpha, not by Monte-Carlo luck.
MARGIN = 3 * math.sqrt(ALPHA * (1 - ALPHA) / TESTS)


def _ever_significant(draw_a, draw_b, tests: int, every: int, looks: int, seed: int, classification: bool) -> dict[str, float]:
    """The share of simulated A/B tests that are called significant at ANY of ``looks`` looks,
    one every ``every`` labels per variant, by each test (the sequential one through its
    running minimum, as the operator keeps it)."""
    rng = random.Random(seed)
    ever = {SEQUENTIAL: 0, FIXED_HORIZON: 0}
    compare = compare_accuracy if classification else compare_errors
    for _ in range(tests):
        sums = {"a": [0, 0.0, 0.0], "b": [0, 0.0, 0.0]}
        hit = {SEQUENTIAL: False, FIXED_HORIZON: False}
        running = None
        for _ in range(looks):
            for name, draw in (("a", draw_a), ("b", draw_b)):
                for _ in range(every):
                    value = draw(rng)
                    counts = sums[name]
                    counts[0] += 1
                    counts[1] += value
                    counts[2] += value * value
            if classification:
                a, b = (VariantAccuracy(n, sums[n][1], sums[n][0]) for n in "ab")
            else:
                a, b = (VariantErrors(n, *sums[n]) for n in "ab")
            hit[FIXED_HORIZON] |= compare(a, b, ALPHA, 100, FIXED_HORIZON).significant
            result = running_minimum(compare(a, b, ALPHA, 100, SEQUENTIAL), running, ALPHA)
            running = result.p_value if result.p_value is not None else running
            hit[SEQUENTIAL] |= result.significant
        for test in ever:
            ever[test] += hit[test]
    return {test: count / tests for test, count in ever.items()}


def _correct(accuracy: float):
    return lambda rng: 1.0 if rng.random() < accuracy else 0.0


def _absolute_error(scale: float):
    return lambda rng: abs(rng.gauss(0.0, scale))


@pytest.mark.parametrize(
    "classification, draw, every, looks, seed",
    # Welch's t tail is the slow part: the error case looks half as often, over as many labels.
    [(True, _correct(0.8), 20, 50, 11), (True, _correct(0.5), 20, 50, 12), (False, _absolute_error(2.0), 40, 25, 13)],
    ids=["accuracy-0.8", "accuracy-0.5", "absolute-error"],
)
def test_repeated_looks_at_equal_variants(classification, draw, every, looks, seed):
    """Two equally good variants, looked at every 20 (40) labels for 50 (25) looks, 1,000 labels
    each: peeking at the fixed-horizon test calls a difference far more often than alpha; the
    always-valid test stays within alpha."""
    ever = _ever_significant(draw, draw, TESTS, every, looks, seed, classification)
    print(f"ever significant over {looks} looks, {TESTS} A/B tests of equal variants: {ever}")
    assert ever[FIXED_HORIZON] > 3 * ALPHA, ever
    assert ever[SEQUENTIAL] <= ALPHA + MARGIN, ever


@pytest.mark.parametrize(
    "classification, draw_a, draw_b, seed",
    [(True, _correct(0.8), _correct(0.9), 21), (False, _absolute_error(2.0), _absolute_error(1.7), 22)],
    ids=["accuracy-0.8-vs-0.9", "error-15%-lower"],
)
def test_repeated_looks_find_a_real_difference(classification, draw_a, draw_b, seed):
    """Power: a real difference (10 accuracy points; a 15% lower error) is found, by the last
    of 50 looks, in nearly every simulated A/B test, sequential looks and all."""
    ever = _ever_significant(draw_a, draw_b, 100, 20, 50, seed, classification)
    print(f"ever significant over 50 looks, 100 A/B tests with a real difference: {ever}")
    assert ever[SEQUENTIAL] >= 0.9, ever
