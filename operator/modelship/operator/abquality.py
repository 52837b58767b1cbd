"""Live quality of an A/B test's variants, compared for a person: is the difference between a
variant and the baseline real, or noise of too few labels? Pure: the counts Prometheus gave (a
:class:`QualitySample`), the variants, the previous status in; per-variant status fields, a
comparison and Events out. Nothing here promotes: an A/B test waits for ``modelship promote``.

* Baseline: the variant serving the champion (``modelVersion: champion``), else the first one;
  every other variant is compared with it (control against each treatment, as experiment
  platforms do), never variants with each other.
* Window: the whole A/B test so far (``status.rollout.abStartedAt`` to now). Labels trickle in
  long after the predictions, so a sliding window would forget most of them; and a test over
  everything collected is the one whose labelled counts a person can check against what was sent.
* The test (:mod:`modelship.monitoring.significance`), two-sided, at ``abTest.alpha``, once both
  variants have ``abTest.minLabels`` labels, on accuracy for classification and on the mean
  absolute error for regression:
  - ``abTest.test: sequential`` (the default): the mixture SPRT's always-valid p-value. The
    operator reads it at every analysis interval, and may: the chance that two equally good
    variants are EVER called significant in an A/B test, however long it runs, is at most alpha.
    The status keeps the running minimum over the looks (``comparison.pValue``, from the
    previous status; a new A/B test or a variant's new version starts afresh), so once
    significant it stays significant, and the Event marks that moment.
  - ``abTest.test: fixedHorizon``: the two-proportion z-test or Welch's t-test, for a person who
    fixed the number of labels up front and reads the verdict once, then. Read at every
    interval, it is peeking: a no-difference test crosses alpha far more often than alpha; the
    status says whether it is significant at this look, and the Event when it first was.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from modelship.api.v1alpha1 import AbTestSpec, AbVariant, QualityComparison, QualityVerdict, VariantStatus
from modelship.monitoring import significance
from modelship.monitoring.significance import VariantAccuracy, VariantErrors
from modelship.operator.events import Event

CLASSIFICATION = "classification"
#: ``comparison.test`` values.
TEST_SEQUENTIAL = "mSPRT"
TEST_ACCURACY = "twoProportionZ"
TEST_ERROR = "welchT"
#: Event reason when a comparison first becomes significant.
SIGNIFICANT = "ABTestSignificant"

_VERDICTS = {
    significance.B_BETTER: QualityVerdict.better,
    significance.A_BETTER: QualityVerdict.worse,
    significance.NO_DIFFERENCE: QualityVerdict.no_difference,
    significance.TOO_FEW_LABELS: QualityVerdict.too_few_labels,
}


@dataclass(frozen=True)
class QualitySample:
    """Labelled predictions per variant since the A/B test began, as Prometheus counted them."""

    at: dt.datetime
    task: str
    #: Classification: variant → correct and labelled predictions.
    accuracy: dict[str, VariantAccuracy] = field(default_factory=dict)
    #: Regression: variant → count, sum and sum of squares of the absolute error.
    errors: dict[str, VariantErrors] = field(default_factory=dict)
    #: Prometheus unreachable or refusing a query: nothing measured.
    error: str | None = None


def baseline(resolved: list[tuple[AbVariant, str]]) -> str:
    """The variant the others are compared with: the champion's, else the first."""
    return next((v.name for v, _ in resolved if v.model_version == "champion"), resolved[0][0].name)


def figures(sample: QualitySample, variant: str) -> dict[str, float | int | None]:
    """A variant's labelled count and live accuracy, or MAE and RMSE (None without labels)."""
    if sample.task == CLASSIFICATION:
        counts = sample.accuracy.get(variant, VariantAccuracy(variant, 0, 0))
        return {"labelled": int(counts.labelled), "accuracy": counts.accuracy}
    errors = sample.errors.get(variant, VariantErrors(variant, 0, 0, 0))
    rmse = math.sqrt(errors.total_squares / errors.count) if errors.count > 0 else None
    return {"labelled": int(errors.count), "mae": errors.mean, "rmse": rmse}


@dataclass(frozen=True)
class Settings:
    """The comparison's knobs, from ``spec.rollout.abTest`` (:func:`settings_from`; the spec
    is the one home of their defaults)."""

    alpha: float
    min_labels: int
    test: str
    min_detectable_effect: float


def settings_from(spec: AbTestSpec) -> Settings:
    return Settings(spec.alpha, spec.min_labels, spec.test, spec.min_detectable_effect)


def compare(sample: QualitySample, base: str, variant: str, settings: Settings) -> significance.Comparison:
    """One look at the counts so far (for the sequential test, before the running minimum)."""
    knobs = (settings.alpha, settings.min_labels, settings.test, settings.min_detectable_effect)
    if sample.task == CLASSIFICATION:
        a = sample.accuracy.get(base, VariantAccuracy(base, 0, 0))
        b = sample.accuracy.get(variant, VariantAccuracy(variant, 0, 0))
        return significance.compare_accuracy(a, b, *knobs)
    a = sample.errors.get(base, VariantErrors(base, 0, 0, 0))
    b = sample.errors.get(variant, VariantErrors(variant, 0, 0, 0))
    return significance.compare_errors(a, b, *knobs)


def named_test(result: significance.Comparison) -> str:
    if result.test == significance.SEQUENTIAL:
        return TEST_SEQUENTIAL
    return TEST_ACCURACY if result.metric == "accuracy" else TEST_ERROR


def earlier_look(previous: QualityComparison | None, base: str, result: significance.Comparison, settings: Settings) -> QualityComparison | None:
    """The earlier look of the same comparison, whose running minimum, first significant moment
    and verdict carry over: same baseline, metric, test and (sequential) tuning; the caller passes
    only the same variant's same version. Else None: the comparison starts afresh. (A status
    written before the tuning was recorded counts as the same tuning.)"""
    if previous is None or (previous.baseline, previous.metric, previous.test) != (base, result.metric, named_test(result)):
        return None
    if result.test == significance.SEQUENTIAL and previous.min_detectable_effect not in (None, settings.min_detectable_effect):
        return None
    return previous


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def message(result: significance.Comparison, alpha: float, min_labels: int) -> str:
    """The verdict for people, e.g. ``b better than a: accuracy 0.9 vs 0.6, significant at 0.05
    with 1,204 labels (always-valid p = 2.1e-05)`` (``p =`` for a fixed-horizon test)."""
    base, variant = result.a, result.b
    labels = result.labelled_a + result.labelled_b
    values = f"{result.metric} {_value(result.value_b)} vs {_value(result.value_a)}"
    if result.verdict == significance.TOO_FEW_LABELS:
        fewest, who = min((result.labelled_a, base), (result.labelled_b, variant))
        return f"not enough labels: {fewest:,} of {min_labels:,} on {who} ({values} so far)"
    p_value = ("always-valid p = " if result.test == significance.SEQUENTIAL else "p = ") + ("-" if result.p_value is None else f"{result.p_value:.2g}")
    if result.verdict == significance.NO_DIFFERENCE:
        return f"no significant difference between {variant} and {base}: {values}, {p_value} at alpha {alpha:g} with {labels:,} labels"
    better = result.verdict == significance.B_BETTER
    text = f"{variant} {'better' if better else 'worse'} than {base}: {values}, significant at {alpha:g} with {labels:,} labels ({p_value})"
    if result.difference and better != result.b_better:
        text += "; the estimate has turned since then: the variants may have changed, consider a new test"
    return text


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def comparison_status(result: significance.Comparison, base: str, settings: Settings, earlier: QualityComparison | None, now: str) -> QualityComparison:
    """``earlier``: the earlier look of the same comparison (:func:`earlier_look`), or None."""
    alpha, min_labels = settings.alpha, settings.min_labels
    since = earlier.significant_since if earlier else None
    first_verdict = earlier.significant_verdict if earlier else None  # written with significantSince, never without
    test = None if result.verdict == significance.TOO_FEW_LABELS else named_test(result)
    return QualityComparison(
        baseline=base,
        metric=result.metric,
        test=test,
        difference=_finite(result.difference),
        statistic=_finite(result.statistic),
        p_value=_finite(result.p_value),
        alpha=alpha,
        min_labels=min_labels,
        min_detectable_effect=settings.min_detectable_effect if test == TEST_SEQUENTIAL else None,
        significant=result.significant,
        verdict=_VERDICTS[result.verdict],
        significant_since=since or (now if result.significant else None),
        significant_verdict=first_verdict or (_VERDICTS[result.verdict] if result.significant else None),
        message=message(result, alpha, min_labels),
    )


def _failed(previous: QualityComparison | None, base: str, metric: str, alpha: float, min_labels: int, error: str) -> QualityComparison:
    """Prometheus could not answer: the last figures stay, the verdict says it is stale."""
    kept = previous.model_dump() if previous else {"baseline": base, "metric": metric}
    kept.update(alpha=alpha, min_labels=min_labels, significant=False, verdict=QualityVerdict.error, message=f"live quality not read: {error}")
    return QualityComparison.model_validate(kept)


def assess(
    variants: list[VariantStatus],
    base: str,
    sample: QualitySample | None,
    previous: list[VariantStatus],
    settings: Settings,
    now: str,
) -> tuple[list[VariantStatus], list[Event]]:
    """``variants`` (their traffic figures filled in) with live quality and, on every variant but
    the baseline, its comparison with the baseline. Without a new ``sample`` the previous
    figures of the same variant and version stay. The sequential test's p-value is the running
    minimum with the previous status's. An Event when a comparison first becomes significant in
    this A/B test."""
    alpha, min_labels = settings.alpha, settings.min_labels
    before = {(v.name, v.version): v for v in previous}
    events: list[Event] = []
    assessed = []
    for variant in variants:
        kept = before.get((variant.name, variant.version))
        quality = {key: getattr(kept, key) for key in ("labelled", "accuracy", "mae", "rmse", "comparison")} if kept else {}
        if sample is not None and sample.error is None:
            quality.update(figures(sample, variant.name))
            if variant.name != base:
                result = compare(sample, base, variant.name, settings)
                earlier = earlier_look(kept.comparison if kept else None, base, result, settings)
                decided = earlier.significant_verdict if earlier else None
                result = significance.running_minimum(result, earlier.p_value if earlier else None, alpha, None if decided is None else decided == QualityVerdict.better)
                quality["comparison"] = comparison_status(result, base, settings, earlier, now)
                if result.significant and not (earlier and earlier.significant_since):
                    events.append(Event("Normal", SIGNIFICANT, f"A/B test: {quality['comparison'].message}"))
        elif sample is not None and variant.name != base:
            metric = "accuracy" if sample.task == CLASSIFICATION else "mae"
            quality["comparison"] = _failed(kept.comparison if kept else None, base, metric, alpha, min_labels, sample.error or "")
        assessed.append(variant.model_copy(update=quality))
    return assessed, events
