"""A/B significance on live quality from ground-truth feedback: is the difference between two
variants real, or noise of too few labels? Pure functions over plain numbers (standard library
only, so the operator can call them without SciPy), and the PromQL that feeds them.

The difference θ̂ (``b − a``: accuracy, or mean absolute error) and its variance ``V`` come from
the classic tests' standard error:

* Accuracy (classification): two proportions, pooled, on correct / labelled predictions per
  variant (:data:`metrics.LABELLED_PREDICTIONS_TOTAL`).
* Error (regression): Welch's unpooled variance of the absolute errors per variant, from their
  count, sum and sum of squares (the absolute-error histogram's ``_count`` and ``_sum`` and
  :data:`metrics.PREDICTION_SQUARED_ERROR_TOTAL`; ``|e|² = e²``).

Two ways to turn them into a p-value (``test``):

* :data:`SEQUENTIAL` (the default): the mixture sequential probability ratio test (mSPRT; Johari,
  Koomen, Pekelis & Walsh, "Always valid inference", Operations Research 2022) with a normal
  mixture of variance ``τ²`` over the true difference: the likelihood ratio
  ``Λ = sqrt(V/(V+τ²)) · exp(τ² θ̂² / (2 V (V+τ²)))`` and the always-valid p-value ``min(1, 1/Λ)``.
  Λ is a nonnegative martingale under no difference, so (Ville's inequality) the chance that
  1/Λ EVER drops below alpha, however often it is read, is at most alpha: the operator may
  look at every analysis interval and stop whenever. The running minimum over the looks
  (:func:`running_minimum`) is the p-value to report; it only goes down. The price: at a
  single look it is larger than the fixed-horizon p-value of the same data.
* :data:`FIXED_HORIZON`: the two-proportion z-test or Welch's t-test, two-sided, valid only when
  read once, at a sample size fixed up front: read at every interval (peeking), a test of two
  equally good variants crosses alpha far more often than alpha.

``τ`` is :func:`mixture_scale`: the minimum detectable effect a person cares about (relative,
``abTest.minDetectableEffect``) times the overall value of the metric, so one default fits an
accuracy and an error of any unit; the mixture is most powerful for differences around τ.

For the rollout's A/B status the operator's Prometheus client runs the PromQL of
:mod:`modelship.monitoring.analysis` (``accuracy_queries`` / ``error_queries``), turns the
answers into counts with :func:`accuracy_from_vectors` / :func:`errors_from_vectors`, and
``modelship.operator.abquality`` compares them with :func:`compare_accuracy` /
:func:`compare_errors`. The :class:`Comparison` says which variant is better, by how much, on
how many labels, and whether that is significant at ``alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from modelship.monitoring import metrics as m

#: Verdicts of a :class:`Comparison`.
B_BETTER = "BBetter"
A_BETTER = "ABetter"
NO_DIFFERENCE = "NoSignificantDifference"
TOO_FEW_LABELS = "TooFewLabels"

#: ``test`` values: always-valid p-values (read at every look), or the classic tests (read once).
SEQUENTIAL = "sequential"
FIXED_HORIZON = "fixedHorizon"
#: The difference worth detecting, relative to the metric's value: 5% (Statsig's and Eppo's
#: examples use lifts of this size); it sets the mixture's scale τ.
MIN_DETECTABLE_EFFECT = 0.05


@dataclass(frozen=True)
class VariantAccuracy:
    variant: str
    correct: float
    labelled: float

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled > 0 else None


@dataclass(frozen=True)
class VariantErrors:
    """Absolute errors of one variant's labelled predictions."""

    variant: str
    count: float
    total: float  #: sum of absolute errors
    total_squares: float  #: sum of squared errors

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count > 0 else None

    @property
    def variance(self) -> float | None:
        """Sample variance of the absolute error (n − 1)."""
        if self.count < 2:
            return None
        return max(0.0, (self.total_squares - self.total * self.total / self.count) / (self.count - 1))


@dataclass(frozen=True)
class Comparison:
    metric: str  #: accuracy, or mae
    a: str
    b: str
    value_a: float | None
    value_b: float | None
    labelled_a: int
    labelled_b: int
    difference: float | None  #: value_b − value_a
    statistic: float | None  #: z or t
    p_value: float | None
    significant: bool
    verdict: str  #: one of B_BETTER, A_BETTER, NO_DIFFERENCE, TOO_FEW_LABELS
    test: str = SEQUENTIAL  #: SEQUENTIAL or FIXED_HORIZON

    @property
    def b_better(self) -> bool:
        """The estimate favours b: higher accuracy, or lower error."""
        return self.difference is not None and (self.difference > 0 if self.metric == "accuracy" else self.difference < 0)


def _verdict(p_value: float | None, alpha: float, b_better: bool) -> tuple[bool, str]:
    significant = p_value is not None and p_value < alpha
    if not significant:
        return False, NO_DIFFERENCE
    return True, B_BETTER if b_better else A_BETTER


def _check_test(test: str) -> None:
    if test not in (SEQUENTIAL, FIXED_HORIZON):
        raise ValueError(f"test must be {SEQUENTIAL} or {FIXED_HORIZON}, not {test!r}")


def mixture_scale(overall: float, min_detectable_effect: float = MIN_DETECTABLE_EFFECT) -> float:
    """τ², the variance of the normal mixture over the true difference: ``(effect × overall)²``.

    The mSPRT is most powerful against differences near τ, and Johari et al. advise matching τ
    to the effects one expects; a person states the smallest one worth acting on, relative to
    the metric's overall value (both arms together: under no difference, their common value, and
    the steadiest estimate of it), so the same default suits accuracy and an error in any unit.
    Strictly, Ville's bound is for a τ chosen before the data; the overall value is a plug-in
    estimate, like V, that settles within the first labels (``minLabels``): the seeded
    simulations in the unit tests measure the error rate with it."""
    return (min_detectable_effect * abs(overall)) ** 2


def always_valid_p_value(difference: float, variance: float, tau2: float) -> float:
    """``min(1, 1/Λ)`` for the mSPRT with a normal mixture N(0, τ²) over the true difference,
    given the estimate θ̂ = ``difference`` and its variance V:
    ``Λ = sqrt(V/(V+τ²)) · exp(τ² θ̂² / (2 V (V+τ²)))``, computed in logs (Λ overflows a float
    long before the p-value stops being representable as 0)."""
    if variance <= 0:
        return 1.0 if difference == 0 else 0.0  # no spread at all: any difference is certain
    if tau2 <= 0:
        return 1.0  # a mixture that puts all its weight on no difference: Λ = 1
    total = variance + tau2
    log_ratio = tau2 * difference * difference / (2 * variance * total) - 0.5 * math.log(total / variance)
    return 1.0 if log_ratio <= 0 else math.exp(-log_ratio)


def running_minimum(result: Comparison, previous_p_value: float | None, alpha: float, decided_b_better: bool | None = None) -> Comparison:
    """The always-valid p-value of this look, or an earlier look's if lower, with the verdict it
    gives: that is the sequence whose crossing of alpha is guaranteed rare (a single look's
    1/Λ may rise again as labels arrive, the evidence already seen does not go away). The
    direction is ``decided_b_better`` when given, the side the evidence was on when the test
    first became significant (the confidence sequence then excluded no difference on that side,
    and its running intersection stays there), else the current estimate's. A fixed-horizon
    result is returned as is."""
    if result.test != SEQUENTIAL or result.p_value is None:
        return result
    p_value = result.p_value if previous_p_value is None else min(previous_p_value, result.p_value)
    significant, verdict = _verdict(p_value, alpha, result.b_better if decided_b_better is None else decided_b_better)
    return replace(result, p_value=p_value, significant=significant, verdict=verdict)


def compare_accuracy(
    a: VariantAccuracy, b: VariantAccuracy, alpha: float = 0.05, min_labels: int = 30, test: str = SEQUENTIAL, min_detectable_effect: float = MIN_DETECTABLE_EFFECT
) -> Comparison:
    """Live accuracy of b against a, two-sided; higher is better. The variance of pb − pa is
    the pooled one of the two-proportion z-test, for both tests: the guarantee is about no
    difference, where both arms share one accuracy and pooling estimates it best (and, unlike
    the unpooled variance, it is not 0 when one arm is all right and the other all wrong); and
    with one V for both tests, the always-valid p-value is never below the fixed one."""
    _check_test(test)
    base = dict(metric="accuracy", test=test, a=a.variant, b=b.variant, value_a=a.accuracy, value_b=b.accuracy, labelled_a=int(a.labelled), labelled_b=int(b.labelled))
    if a.labelled < min_labels or b.labelled < min_labels:
        difference = None if a.accuracy is None or b.accuracy is None else b.accuracy - a.accuracy
        return Comparison(**base, difference=difference, statistic=None, p_value=None, significant=False, verdict=TOO_FEW_LABELS)
    pa, pb = a.correct / a.labelled, b.correct / b.labelled
    pooled = (a.correct + b.correct) / (a.labelled + b.labelled)
    variance = pooled * (1 - pooled) * (1 / a.labelled + 1 / b.labelled)
    if variance == 0:  # both all right or both all wrong: the same accuracy, nothing to test
        return Comparison(**base, difference=pb - pa, statistic=0.0, p_value=1.0, significant=False, verdict=NO_DIFFERENCE)
    z = (pb - pa) / math.sqrt(variance)
    if test == SEQUENTIAL:
        p_value = always_valid_p_value(pb - pa, variance, mixture_scale(pooled, min_detectable_effect))
    else:
        p_value = math.erfc(abs(z) / math.sqrt(2))
    significant, verdict = _verdict(p_value, alpha, pb > pa)
    return Comparison(**base, difference=pb - pa, statistic=z, p_value=p_value, significant=significant, verdict=verdict)


def compare_errors(
    a: VariantErrors, b: VariantErrors, alpha: float = 0.05, min_labels: int = 30, test: str = SEQUENTIAL, min_detectable_effect: float = MIN_DETECTABLE_EFFECT
) -> Comparison:
    """Mean absolute error of b against a, two-sided; lower is better. Welch's variance
    (unpooled: the two models' errors need not spread alike) for both tests; the fixed-horizon
    test reads it against Student's t with Welch's degrees of freedom, the sequential one
    against the normal the mSPRT assumes (``minLabels`` keeps the looks where they differ out)."""
    _check_test(test)
    base = dict(metric="mae", test=test, a=a.variant, b=b.variant, value_a=a.mean, value_b=b.mean, labelled_a=int(a.count), labelled_b=int(b.count))
    if a.count < min_labels or b.count < min_labels:
        difference = None if a.mean is None or b.mean is None else b.mean - a.mean
        return Comparison(**base, difference=difference, statistic=None, p_value=None, significant=False, verdict=TOO_FEW_LABELS)
    ma, mb = a.total / a.count, b.total / b.count
    va, vb = a.variance or 0.0, b.variance or 0.0
    sa, sb = va / a.count, vb / b.count
    se2 = sa + sb
    if se2 == 0:
        p_value = 1.0 if ma == mb else 0.0  # no spread at all: any difference is certain
        significant, verdict = _verdict(p_value, alpha, mb < ma)
        return Comparison(**base, difference=mb - ma, statistic=None, p_value=p_value, significant=significant, verdict=verdict)
    t = (mb - ma) / math.sqrt(se2)
    if test == SEQUENTIAL:
        overall = (a.total + b.total) / (a.count + b.count)
        p_value = always_valid_p_value(mb - ma, se2, mixture_scale(overall, min_detectable_effect))
    else:
        df = se2 * se2 / ((sa * sa / (a.count - 1) if sa else 0.0) + (sb * sb / (b.count - 1) if sb else 0.0))
        p_value = student_t_two_sided(t, df)
    significant, verdict = _verdict(p_value, alpha, mb < ma)
    return Comparison(**base, difference=mb - ma, statistic=t, p_value=p_value, significant=significant, verdict=verdict)


def student_t_two_sided(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with ``df`` degrees of freedom: I_{df/(df+t²)}(df/2, 1/2)."""
    if math.isinf(df):
        return math.erfc(abs(t) / math.sqrt(2))
    return _regularized_beta(df / (df + t * t), df / 2.0, 0.5)


def _regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) by its continued fraction (Lentz), the symmetric form where it converges fast."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(x, a, b) / a
    return 1.0 - front * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float, iterations: int = 300, epsilon: float = 1e-15) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m_ in range(1, iterations + 1):
        for numerator in (m_ * (b - m_) * x / ((a + 2 * m_ - 1) * (a + 2 * m_)), -(a + m_) * (a + b + m_) * x / ((a + 2 * m_) * (a + 2 * m_ + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < epsilon:
            break
    return result


def _values(vector: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(series["metric"].get(label, "") for label in labels): float(series["value"][1]) for series in vector}


def accuracy_from_vectors(by_outcome: list[dict[str, Any]]) -> dict[str, VariantAccuracy]:
    """The ``byOutcome`` query's result (Prometheus instant vector) → per-variant counts."""
    values = _values(by_outcome, m.LABEL_VARIANT, m.LABEL_OUTCOME)
    variants = sorted({variant for variant, _ in values})
    return {
        v: VariantAccuracy(v, values.get((v, m.OUTCOME_CORRECT), 0.0), values.get((v, m.OUTCOME_CORRECT), 0.0) + values.get((v, m.OUTCOME_INCORRECT), 0.0))
        for v in variants
    }


def errors_from_vectors(count: list[dict[str, Any]], total: list[dict[str, Any]], squares: list[dict[str, Any]]) -> dict[str, VariantErrors]:
    counts, sums, sq = (_values(vector, m.LABEL_VARIANT) for vector in (count, total, squares))
    return {v: VariantErrors(v, counts[(v,)], sums.get((v,), 0.0), sq.get((v,), 0.0)) for (v,) in sorted(counts)}
