"""A/B live quality in status: the comparison result → status fields → the message a person
reads, the sequential test's running minimum kept across looks in the status, and the Event
when a difference first becomes significant. Tables of situations."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from modelship.api.v1alpha1 import AbTestSpec, AbVariant, ModelDeploymentStatus, QualityComparison, RolloutSpec, SignificanceTest, VariantStatus
from modelship.monitoring import significance
from modelship.monitoring.significance import VariantAccuracy, VariantErrors
from modelship.operator.abquality import SIGNIFICANT, QualitySample, Settings, assess, baseline, settings_from
from modelship.operator.requests import describe
from modelship.operator.rollout import UserRequests, decide

T0 = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.timezone.utc)
NOW = "2026-11-22T08:00:10Z"
SEQUENTIAL = Settings(0.05, 100, significance.SEQUENTIAL, significance.MIN_DETECTABLE_EFFECT)
FIXED = Settings(0.05, 100, significance.FIXED_HORIZON, significance.MIN_DETECTABLE_EFFECT)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def arms(*names_versions: tuple[str, str]) -> list[VariantStatus]:
    return [VariantStatus(name=name, version=version, weight=100 // len(names_versions)) for name, version in names_versions]


def accuracy(**counts: tuple[int, int]) -> QualitySample:
    """variant=(correct, labelled)."""
    return QualitySample(T0, "classification", accuracy={v: VariantAccuracy(v, c, n) for v, (c, n) in counts.items()})


def errors(**counts: tuple[int, float, float]) -> QualitySample:
    """variant=(count, sum of |e|, sum of e²)."""
    return QualitySample(T0, "regression", errors={v: VariantErrors(v, n, s, q) for v, (n, s, q) in counts.items()})


@pytest.mark.parametrize(
    "variants, expected",
    [
        ([("a", "1"), ("b", "challenger")], "a"),
        ([("a", "challenger"), ("b", "champion")], "b"),  # the champion's variant, wherever it is
        ([("a", "3"), ("b", "4")], "a"),  # no champion among them: the first
    ],
)
def test_the_baseline_is_the_champions_variant_else_the_first(variants, expected):
    resolved = [(AbVariant(name=n, model_version=v, weight=50), v) for n, v in variants]
    assert baseline(resolved) == expected


@pytest.mark.parametrize(
    "sample, knobs, verdict, significant, test, message",
    [
        (accuracy(a=(700, 1000), b=(912, 1000)), SEQUENTIAL, "Better", True, "mSPRT", "b better than a: accuracy 0.912 vs 0.7, significant at 0.05 with 2,000 labels (always-valid p = "),
        (accuracy(a=(912, 1000), b=(700, 1000)), SEQUENTIAL, "Worse", True, "mSPRT", "b worse than a: accuracy 0.7 vs 0.912, significant at 0.05 with 2,000 labels"),
        (accuracy(a=(450, 1000), b=(460, 1000)), SEQUENTIAL, "NoSignificantDifference", False, "mSPRT", "no significant difference between b and a: accuracy 0.46 vs 0.45, always-valid p = 1 at alpha 0.05 with 2,000 labels"),
        # 100 labels each, 0.6 against 0.9: z = 4.9, significant even sequentially (p = 0.044).
        (accuracy(a=(60, 100), b=(90, 100)), SEQUENTIAL, "Better", True, "mSPRT", "b better than a: accuracy 0.9 vs 0.6, significant at 0.05 with 200 labels (always-valid p = 0.044)"),
        (accuracy(a=(30, 37), b=(90, 120)), SEQUENTIAL, "TooFewLabels", False, None, "not enough labels: 37 of 100 on a (accuracy 0.75 vs 0.8108 so far)"),
        (accuracy(a=(80, 150)), SEQUENTIAL, "TooFewLabels", False, None, "not enough labels: 0 of 100 on b (accuracy - vs 0.5333 so far)"),
        (accuracy(), SEQUENTIAL, "TooFewLabels", False, None, "not enough labels: 0 of 100 on a"),
        (errors(a=(200, 2000.0, 30000.0), b=(200, 1000.0, 8000.0)), SEQUENTIAL, "Better", True, "mSPRT", "b better than a: mae 5 vs 10, significant at 0.05 with 400 labels (always-valid p = 1.2e-05)"),
        (errors(a=(200, 2000.0, 30000.0), b=(200, 2020.0, 30500.0)), SEQUENTIAL, "NoSignificantDifference", False, "mSPRT", "no significant difference between b and a: mae 10.1 vs 10"),
        (accuracy(a=(700, 1000), b=(912, 1000)), FIXED, "Better", True, "twoProportionZ", "b better than a: accuracy 0.912 vs 0.7, significant at 0.05 with 2,000 labels (p = "),
        (accuracy(a=(450, 1000), b=(460, 1000)), FIXED, "NoSignificantDifference", False, "twoProportionZ", "no significant difference between b and a: accuracy 0.46 vs 0.45, p = 0.65 at alpha 0.05 with 2,000 labels"),
        (errors(a=(200, 2000.0, 30000.0), b=(200, 1000.0, 8000.0)), FIXED, "Better", True, "welchT", "b better than a: mae 5 vs 10, significant at 0.05 with 400 labels (p = "),
        (errors(a=(200, 2000.0, 30000.0), b=(200, 2020.0, 30500.0)), FIXED, "NoSignificantDifference", False, "welchT", "no significant difference between b and a: mae 10.1 vs 10, p = 0.89"),
    ],
)
def test_comparison_to_status_and_message(sample, knobs, verdict, significant, test, message):
    variants, events = assess(arms(("a", "1"), ("b", "2")), "a", sample, [], knobs, NOW)
    base, other = variants
    assert base.comparison is None, "the baseline is not compared with itself"
    comparison = other.comparison
    assert (comparison.verdict, comparison.significant, comparison.test, comparison.baseline) == (verdict, significant, test, "a")
    assert comparison.message.startswith(message), comparison.message
    assert (comparison.alpha, comparison.min_labels) == (0.05, 100)
    assert comparison.min_detectable_effect == (knobs.min_detectable_effect if test == "mSPRT" else None)  # what the test was tuned to
    assert comparison.significant_since == (NOW if significant else None)
    assert [e.reason for e in events] == ([SIGNIFICANT] if significant else [])
    if significant:
        assert events[0].message == f"A/B test: {comparison.message}"
        assert 0 <= comparison.p_value < 0.05 and comparison.statistic is not None
    # Every field lands in the typed status (the API server drops undeclared ones).
    ModelDeploymentStatus.model_validate({"rollout": {"phase": "ABTesting", "variants": [v.to_wire() for v in variants]}})


def test_per_variant_figures_classification_and_regression():
    variants, _ = assess(arms(("a", "1"), ("b", "2")), "a", accuracy(a=(70, 100), b=(91, 130)), [], SEQUENTIAL, NOW)
    assert [(v.labelled, v.accuracy, v.mae, v.rmse) for v in variants] == [(100, 0.7, None, None), (130, 0.7, None, None)]
    assert variants[1].comparison.difference == pytest.approx(0.0)
    variants, _ = assess(arms(("a", "1"), ("b", "2")), "a", errors(a=(4, 8.0, 20.0)), [], dataclasses.replace(SEQUENTIAL, min_labels=2), NOW)
    assert [(v.labelled, v.accuracy, v.mae, v.rmse) for v in variants] == [(4, None, 2.0, pytest.approx(5**0.5)), (0, None, None, None)]


def test_each_challenger_is_compared_with_the_baseline():
    variants, events = assess(arms(("a", "1"), ("b", "2"), ("c", "3")), "a", accuracy(a=(500, 1000), b=(700, 1000), c=(510, 1000)), [], SEQUENTIAL, NOW)
    assert [(v.name, v.comparison and v.comparison.verdict) for v in variants] == [("a", None), ("b", "Better"), ("c", "NoSignificantDifference")]
    assert len(events) == 1 and events[0].message.startswith("A/B test: b better than a")


def test_the_event_comes_once_and_the_first_moment_stays():
    first, events = assess(arms(("a", "1"), ("b", "2")), "a", accuracy(a=(700, 1000), b=(900, 1000)), [], FIXED, NOW)
    assert len(events) == 1
    later = "2026-11-22T08:05:00Z"
    again, events = assess(arms(("a", "1"), ("b", "2")), "a", accuracy(a=(1400, 2000), b=(1800, 2000)), first, FIXED, later)
    assert events == [] and again[1].comparison.significant_since == NOW and again[1].labelled == 2000
    # A fixed-horizon test read at every look may drift back under significance (peeking): the
    # status says so, no Event.
    faded, events = assess(arms(("a", "1"), ("b", "2")), "a", accuracy(a=(1500, 2100), b=(1520, 2100)), again, FIXED, later)
    assert events == [] and faded[1].comparison.verdict == "NoSignificantDifference" and not faded[1].comparison.significant
    assert faded[1].comparison.significant_since == NOW


#: Looks at one A/B test, as (a, b) = (correct, labelled): b well ahead at 100 labels each, then
#: the gap closes so that the last look alone is not significant (always-valid p = 1).
GAP_CLOSES = [accuracy(a=(60, 100), b=(90, 100)), accuracy(a=(120, 200), b=(170, 200)), accuracy(a=(700, 1000), b=(740, 1000)), accuracy(a=(1500, 2100), b=(1520, 2100))]


def test_the_sequential_p_value_is_the_running_minimum_in_status():
    status, p_values, all_events = [], [], []
    for look, sample in enumerate(GAP_CLOSES):
        status, events = assess(arms(("a", "1"), ("b", "2")), "a", sample, status, SEQUENTIAL, f"2026-11-22T08:0{look}:00Z")
        comparison = status[1].comparison
        p_values.append(comparison.p_value)
        all_events += events
        assert (comparison.test, comparison.verdict, comparison.significant) == ("mSPRT", "Better", True), comparison
        assert comparison.significant_since == "2026-11-22T08:00:00Z"
    single = [significance.compare_accuracy(s.accuracy["a"], s.accuracy["b"]).p_value for s in GAP_CLOSES]
    assert p_values == [min(single[: i + 1]) for i in range(len(single))] and p_values[-1] < single[-1] == 1.0
    assert [e.reason for e in all_events] == [SIGNIFICANT]
    assert status[1].comparison.message.startswith(f"b better than a: accuracy 0.7238 vs 0.7143, significant at 0.05 with 4,200 labels (always-valid p = {p_values[-1]:.2g})")


def test_once_significant_the_sequential_verdict_keeps_its_direction():
    # b well ahead at 100 labels each (significant: Better), then a far ahead: the estimate turns,
    # the evidence for b seen so far does not go away, and a "Worse" at the old p-value would be
    # a claim no look supported. The verdict stays Better and the message says the estimate turned.
    looks = [accuracy(a=(60, 100), b=(90, 100)), accuracy(a=(700, 1000), b=(640, 1000))]
    status, _ = assess(arms(("a", "1"), ("b", "2")), "a", looks[0], [], SEQUENTIAL, NOW)
    first = status[1].comparison
    assert (first.verdict, first.significant_verdict, first.significant_since) == ("Better", "Better", NOW)
    status, events = assess(arms(("a", "1"), ("b", "2")), "a", looks[1], status, SEQUENTIAL, "2026-11-22T08:05:00Z")
    later = status[1].comparison
    assert (later.verdict, later.significant, later.significant_verdict, later.significant_since) == ("Better", True, "Better", NOW)
    assert later.difference < 0 and later.p_value == first.p_value and events == []
    assert later.message.startswith("b better than a: accuracy 0.64 vs 0.7, significant at 0.05 with 2,000 labels (always-valid p = ")
    assert later.message.endswith("; the estimate has turned since then: the variants may have changed, consider a new test")
    # The fixed-horizon test reads each look on its own: the direction is the current estimate's.
    fixed, _ = assess(arms(("a", "1"), ("b", "2")), "a", accuracy(a=(700, 1000), b=(600, 1000)), status, FIXED, NOW)
    assert fixed[1].comparison.verdict == "Worse" and "turned" not in fixed[1].comparison.message


def test_a_comparison_started_afresh_forgets_its_first_significant_moment():
    status, _ = assess(arms(("a", "1"), ("b", "2")), "a", accuracy(a=(60, 100), b=(90, 100)), [], SEQUENTIAL, NOW)
    retuned = dataclasses.replace(SEQUENTIAL, min_detectable_effect=0.2)
    later = "2026-11-22T08:05:00Z"
    again, events = assess(arms(("a", "1"), ("b", "2")), "a", accuracy(a=(120, 200), b=(180, 200)), status, retuned, later)
    assert again[1].comparison.significant_since == later and [e.reason for e in events] == [SIGNIFICANT]
    assert again[1].comparison.min_detectable_effect == 0.2


@pytest.mark.parametrize(
    "earlier, knobs, version, carried",
    [
        (dict(test="mSPRT", baseline="a", metric="accuracy"), SEQUENTIAL, "2", True),
        (dict(test="mSPRT", baseline="a", metric="accuracy", verdict="Error"), SEQUENTIAL, "2", True),  # Prometheus failed once: the minimum stays
        (dict(test="mSPRT", baseline="a", metric="accuracy"), SEQUENTIAL, "3", False),  # b serves a new version: a new test
        (dict(test="mSPRT", baseline="c", metric="accuracy"), SEQUENTIAL, "2", False),  # another baseline
        (dict(test="twoProportionZ", baseline="a", metric="accuracy"), SEQUENTIAL, "2", False),  # switched from fixedHorizon
        (dict(test="mSPRT", baseline="a", metric="accuracy"), FIXED, "2", False),  # switched to fixedHorizon
        (dict(test="mSPRT", baseline="a", metric="accuracy", min_detectable_effect=SEQUENTIAL.min_detectable_effect), SEQUENTIAL, "2", True),
        (dict(test="mSPRT", baseline="a", metric="accuracy", min_detectable_effect=0.2), SEQUENTIAL, "2", False),  # retuned: another test
    ],
)
def test_what_carries_the_running_minimum_over(earlier, knobs, version, carried):
    low = 1e-4
    previous = [VariantStatus(name="a", version="1", weight=50), VariantStatus(
        name="b", version="2", weight=50, comparison=QualityComparison(**{"alpha": 0.05, "min_labels": 100, "verdict": "Better", "significant": True, "p_value": low, **earlier}),
    )]
    sample = accuracy(a=(1500, 2100), b=(1520, 2100))  # alone: no difference
    variants, _ = assess(arms(("a", "1"), ("b", version)), "a", sample, previous, knobs, NOW)
    comparison = variants[1].comparison
    assert (comparison.p_value == low) is carried and comparison.significant is carried


def test_the_spec_sets_the_test():
    default = AbTestSpec.model_validate({"variants": [{"name": "a", "modelVersion": "champion", "weight": 50}, {"name": "b", "modelVersion": "challenger", "weight": 50}]})
    assert settings_from(default) == Settings(0.05, 100, significance.SEQUENTIAL, significance.MIN_DETECTABLE_EFFECT) == SEQUENTIAL
    chosen = default.model_copy(update={"test": "fixedHorizon", "min_detectable_effect": 0.1, "alpha": 0.01})
    assert settings_from(chosen) == Settings(0.01, 100, significance.FIXED_HORIZON, 0.1)
    # The spec's enum and the pure module's names are one set of values.
    assert {t.value for t in SignificanceTest} == {significance.SEQUENTIAL, significance.FIXED_HORIZON}
    with pytest.raises(ValueError, match="test"):
        AbTestSpec.model_validate({**default.to_wire(), "test": "bayesian"})
    with pytest.raises(ValueError, match="minDetectableEffect|min_detectable_effect"):
        AbTestSpec.model_validate({**default.to_wire(), "minDetectableEffect": 0})


def test_without_a_sample_the_figures_of_the_same_variant_and_version_stay():
    measured, _ = assess(arms(("a", "1"), ("b", "2")), "a", accuracy(a=(70, 100), b=(90, 100)), [], SEQUENTIAL, NOW)
    kept, events = assess(arms(("a", "1"), ("b", "2")), "a", None, measured, SEQUENTIAL, NOW)
    assert kept == measured and events == []
    # b now serves another version: its old figures are not its own.
    moved, _ = assess(arms(("a", "1"), ("b", "3")), "a", None, measured, SEQUENTIAL, NOW)
    assert moved[0] == measured[0] and (moved[1].labelled, moved[1].comparison) == (None, None)


def test_prometheus_failing_keeps_the_last_figures_and_says_so():
    measured, _ = assess(arms(("a", "1"), ("b", "2")), "a", accuracy(a=(700, 1000), b=(900, 1000)), [], SEQUENTIAL, NOW)
    failed = QualitySample(T0, "classification", error="Prometheus unreachable: ConnectError")
    variants, events = assess(arms(("a", "1"), ("b", "2")), "a", failed, measured, SEQUENTIAL, "2026-11-22T08:01:00Z")
    comparison = variants[1].comparison
    assert events == [] and variants[1].labelled == 1000 and variants[1].accuracy == 0.9
    assert (comparison.verdict, comparison.significant, comparison.significant_since) == ("Error", False, NOW)
    assert comparison.message == "live quality not read: Prometheus unreachable: ConnectError"
    # Failing before any figures: an Error verdict, nothing made up.
    variants, _ = assess(arms(("a", "1"), ("b", "2")), "a", failed, [], SEQUENTIAL, NOW)
    assert variants[1].labelled is None and variants[1].comparison == QualityComparison(
        baseline="a", metric="accuracy", alpha=0.05, min_labels=100, verdict="Error", message="live quality not read: Prometheus unreachable: ConnectError"
    )


AB = RolloutSpec.model_validate(
    {
        "strategy": "abTest",
        "analysis": {"interval": "10s"},
        "abTest": {
            "alpha": 0.01,
            "minLabels": 50,
            "variants": [{"name": "challenger", "modelVersion": "challenger", "weight": 50}, {"name": "champion", "modelVersion": "champion", "weight": 50}],
        },
    }
)
READY = frozenset({"1", "2"})


def test_the_rollout_records_the_comparison_and_never_promotes_on_it():
    started = decide(AB, None, "1", "2", True, at(0), ready_versions=READY)
    assert started.rollout.ab_started_at == "2026-11-22T08:00:00Z" and started.rollout.quality_checked_at is None
    assert all(v.labelled is None for v in started.rollout.variants), "no feedback measured: no quality fields"
    sample = QualitySample(at(10), "classification", accuracy={"champion": VariantAccuracy("champion", 600, 1000), "challenger": VariantAccuracy("challenger", 900, 1000)})
    d = decide(AB, started.rollout, "1", "2", True, at(10), ready_versions=READY, quality=sample)
    challenger, champion = d.rollout.variants
    assert champion.comparison is None and champion.labelled == 1000 and champion.accuracy == 0.6
    assert (challenger.comparison.baseline, challenger.comparison.verdict, challenger.comparison.alpha, challenger.comparison.min_labels) == ("champion", "Better", 0.01, 50)
    assert d.rollout.ab_started_at == "2026-11-22T08:00:00Z" and d.rollout.quality_checked_at == "2026-11-22T08:00:10Z"
    assert d.promote is None and d.weights == {"1": 50, "2": 50} and [n.reason for n in d.notices] == [SIGNIFICANT]
    ModelDeploymentStatus.model_validate({"rollout": d.rollout.to_wire()})
    # A person promotes; the test's window and figures go with it.
    promoted = decide(AB, d.rollout, "1", "2", True, at(20), ready_versions=READY, requests=UserRequests(promote="challenger:2"))
    assert promoted.promote == "2" and promoted.rollout.variants is None and promoted.rollout.ab_started_at is None


def test_a_new_challenger_starts_a_new_test_window():
    first = decide(AB, None, "1", "2", True, at(0), ready_versions=READY)
    sample = QualitySample(at(10), "classification", accuracy={"champion": VariantAccuracy("champion", 60, 100), "challenger": VariantAccuracy("challenger", 90, 100)})
    measured = decide(AB, first.rollout, "1", "2", True, at(10), ready_versions=READY, quality=sample)
    retrained = decide(AB, measured.rollout, "1", "3", True, at(30), ready_versions=frozenset({"1", "3"}))
    assert retrained.rollout.ab_started_at == "2026-11-22T08:00:30Z"
    assert all(v.labelled is None and v.comparison is None for v in retrained.rollout.variants)


def test_status_print_shows_the_comparison():
    status = {
        "phase": "Progressing",
        "championVersion": "1",
        "rollout": {"phase": "ABTesting", "candidate": "2", "variants": [
            {"name": "a", "version": "1", "weight": 50, "labelled": 1204, "accuracy": 0.7},
            {"name": "b", "version": "2", "weight": 50, "labelled": 1190, "accuracy": 0.9, "comparison": {
                "baseline": "a", "metric": "accuracy", "alpha": 0.05, "minLabels": 100, "significant": True, "verdict": "Better",
                "message": "b better than a: accuracy 0.9 vs 0.7, significant at 0.05 with 2,394 labels (p = 1e-30)",
            }},
        ]},
    }
    text = describe({"metadata": {"name": "iris", "namespace": "team-a"}, "spec": {"rollout": {"strategy": "abTest"}}, "status": status})
    assert "live quality: 1,204 labelled, accuracy 0.7\n" in text + "\n"
    assert "live quality: 1,190 labelled, accuracy 0.9; vs a: Better: b better than a: accuracy 0.9 vs 0.7, significant at 0.05 with 2,394 labels (p = 1e-30)" in text


@pytest.mark.parametrize(
    "feedback, started, asked",
    [
        (False, "2026-11-22T08:00:00Z", False),  # no feedback: no labels to read
        (True, None, False),  # the test has not begun yet
        (True, "2026-11-22T08:00:00Z", True),
    ],
)
def test_the_controller_reads_quality_only_with_feedback_over_the_whole_test(feedback, started, asked):
    """Which versions, from when (the real reading is tests/serving/test_quality_prometheus.py and
    tests/integration/test_ab_quality.py)."""
    import asyncio

    from resources import model_deployment

    from modelship.api.v1alpha1 import ModelDeployment, RolloutStatus
    from modelship.operator.config import OperatorConfig
    from modelship.operator.controller import Controller

    calls = []

    class Recorder:
        async def quality(self, resource, versions, since, now):
            calls.append((versions, since))
            return QualitySample(now, "classification")

    resource = ModelDeployment.model_validate(model_deployment("iris", "team-a", task="classification", rollout=AB.to_wire(), monitoring={"feedback": {"enabled": feedback}}))
    status = {"championVersion": "1", "lastTraining": {"modelVersion": "2", "finishedAt": "2026-11-22T07:59:00Z", "gate": {"passed": True}}}
    controller = Controller(kube=None, config=OperatorConfig())
    controller.prometheus = Recorder()
    measured = asyncio.run(controller._measure_quality(resource, status, RolloutStatus(phase="ABTesting", ab_started_at=started), at(30)))
    assert (measured is not None) == asked
    assert calls == ([(("1", "2"), T0)] if asked else [])
