"""A/B significance on live quality from ground-truth feedback: is the difference between two
variants real, or noise of too few labels? Pure functions over plain numbers (standard library
only, so the operator can call them without SciPy), and the PromQL that feeds them.

* Accuracy (classification): two-proportion z-test, pooled, two-sided, on correct / labelled
  predictions per variant (:data:`metrics.LABELLED_PREDICTIONS_TOTAL`).
* Error (regression): Welch's t-test, two-sided, on the absolute errors per variant, from their
  count, sum and sum of squares (the absolute-error histogram's ``_count`` and ``_sum`` and
  :data:`metrics.PREDICTION_SQUARED_ERROR_TOTAL`; ``|e|² = e²``).

For the rollout's A/B status: :func:`compare_variants` with a function that runs an instant
PromQL query (or the steps it takes: :func:`accuracy_queries` / :func:`error_queries`, then
:func:`accuracy_from_vectors` / :func:`errors_from_vectors`, then :func:`compare_accuracy` /
:func:`compare_errors`). The :class:`Comparison` says which variant is better, by how much, on
how many labels, and whether that is significant at ``alpha`` (``to_wire()`` for a status).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from modelship.monitoring import metrics as m
# The PromQL lives beside the canary analysis's; imported here for compare_variants and callers.
from modelship.monitoring.analysis import accuracy_queries, error_queries  # noqa: F401

#: Verdicts of a :class:`Comparison`.
B_BETTER = "BBetter"
A_BETTER = "ABetter"
NO_DIFFERENCE = "NoSignificantDifference"
TOO_FEW_LABELS = "TooFewLabels"


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

    def to_wire(self) -> dict[str, Any]:
        return {
            "metric": self.metric, "a": self.a, "b": self.b, "valueA": self.value_a, "valueB": self.value_b,
            "labelledA": self.labelled_a, "labelledB": self.labelled_b, "difference": self.difference,
            "statistic": self.statistic, "pValue": self.p_value, "significant": self.significant, "verdict": self.verdict,
        }


def _verdict(p_value: float | None, alpha: float, b_better: bool) -> tuple[bool, str]:
    significant = p_value is not None and p_value < alpha
    if not significant:
        return False, NO_DIFFERENCE
    return True, B_BETTER if b_better else A_BETTER


def compare_accuracy(a: VariantAccuracy, b: VariantAccuracy, alpha: float = 0.05, min_labels: int = 30) -> Comparison:
    """Two-proportion z-test (pooled, two-sided) of live accuracy; higher is better."""
    base = dict(metric="accuracy", a=a.variant, b=b.variant, value_a=a.accuracy, value_b=b.accuracy, labelled_a=int(a.labelled), labelled_b=int(b.labelled))
    if a.labelled < min_labels or b.labelled < min_labels:
        difference = None if a.accuracy is None or b.accuracy is None else b.accuracy - a.accuracy
        return Comparison(**base, difference=difference, statistic=None, p_value=None, significant=False, verdict=TOO_FEW_LABELS)
    pa, pb = a.correct / a.labelled, b.correct / b.labelled
    pooled = (a.correct + b.correct) / (a.labelled + b.labelled)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.labelled + 1 / b.labelled))
    if se == 0:  # both all right or both all wrong: the same accuracy, nothing to test
        return Comparison(**base, difference=pb - pa, statistic=0.0, p_value=1.0, significant=False, verdict=NO_DIFFERENCE)
    z = (pb - pa) / se
    p_value = math.erfc(abs(z) / math.sqrt(2))
    significant, verdict = _verdict(p_value, alpha, pb > pa)
    return Comparison(**base, difference=pb - pa, statistic=z, p_value=p_value, significant=significant, verdict=verdict)


def compare_errors(a: VariantErrors, b: VariantErrors, alpha: float = 0.05, min_labels: int = 30) -> Comparison:
    """Welch's t-test (two-sided) of the mean absolute error; lower is better."""
    base = dict(metric="mae", a=a.variant, b=b.variant, value_a=a.mean, value_b=b.mean, labelled_a=int(a.count), labelled_b=int(b.count))
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


def compare_variants(
    query: Callable[[str], list[dict[str, Any]]],
    namespace: str,
    model: str,
    task: str,
    a: str,
    b: str,
    alpha: float = 0.05,
    min_labels: int = 30,
    window: str = m.QUALITY_WINDOW,
) -> Comparison:
    """Variant ``b`` against ``a`` of one model on live quality, for the A/B status.

    ``query`` runs an instant PromQL query and returns Prometheus's result vector (the
    operator's Prometheus client); a variant without labelled predictions counts as zero, so
    the verdict is ``TooFewLabels`` rather than an error."""
    if task == "classification":
        accuracy = accuracy_from_vectors(query(accuracy_queries(namespace, model, window)["byOutcome"]))
        return compare_accuracy(accuracy.get(a, VariantAccuracy(a, 0, 0)), accuracy.get(b, VariantAccuracy(b, 0, 0)), alpha, min_labels)
    queries = error_queries(namespace, model, window)
    errors = errors_from_vectors(query(queries["count"]), query(queries["sum"]), query(queries["squares"]))
    return compare_errors(errors.get(a, VariantErrors(a, 0, 0, 0)), errors.get(b, VariantErrors(b, 0, 0, 0)), alpha, min_labels)
