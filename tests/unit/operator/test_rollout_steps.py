"""The canary step machine and the analysis verdicts, as tables of situations."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from modelship.api.v1alpha1 import AnalysisSpec, RolloutSpec, RolloutStatus, Verdict
from modelship.operator.rollout import AnalysisSample, Measurement, Settings, UserRequests, analysis_due, decide, judge, overall

T0 = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


SPEC = RolloutSpec.model_validate(
    {
        "strategy": "canary",
        "canary": {"steps": [{"weight": 10, "pause": "20s"}, {"weight": 50, "pause": "20s"}, {"weight": 100, "pause": "20s"}]},
        "analysis": {"maxErrorRate": 0.05, "maxLatencyP95Ms": 100, "minRequests": 20, "interval": "10s", "failureThreshold": 2, "inconclusiveTimeout": "30s"},
    }
)
MANUAL = SPEC.model_copy(update={"approval": "manual"})


def sample(when: float, requests: float | None = 100, errors: float | None = 0.0, p95: float | None = 0.02, error: str | None = None, **custom: float) -> AnalysisSample:
    if error:
        return AnalysisSample(at(when), tuple(Measurement(n, error=error) for n in ("requests", "errorRate", "latencyP95")))
    values = {"requests": requests, "errorRate": errors, "latencyP95": p95, **custom}
    return AnalysisSample(at(when), tuple(Measurement(n, v) for n, v in values.items()))


HEALTHY = dict()


# --- verdicts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "measured, expected, overall_verdict",
    [
        (sample(0), ["Successful", "Successful", "Successful"], "Successful"),
        (sample(0, errors=0.2), ["Successful", "Failed", "Successful"], "Failed"),
        (sample(0, p95=0.5), ["Successful", "Successful", "Failed"], "Failed"),
        (sample(0, p95=math.inf), ["Successful", "Successful", "Failed"], "Failed"),
        # Fewer than minRequests: nothing can be judged, however bad it looks.
        (sample(0, requests=5, errors=1.0), ["Inconclusive", "Inconclusive", "Inconclusive"], "Inconclusive"),
        # No series at all (the candidate never answered, or Prometheus never scraped it).
        (sample(0, requests=None, errors=None, p95=None), ["Error", "Inconclusive", "Inconclusive"], "Error"),
        # Requests but no latency histogram: an Error, not a pass.
        (sample(0, p95=None), ["Successful", "Successful", "Error"], "Error"),
        (sample(0, error="Prometheus unreachable: ConnectError"), ["Error", "Error", "Error"], "Error"),
    ],
)
def test_verdicts(measured, expected, overall_verdict):
    checks = judge(SPEC.analysis, measured)
    assert [c.verdict for c in checks] == expected
    assert overall(checks) == overall_verdict


def test_failed_check_names_the_metric_value_and_threshold():
    failed = judge(SPEC.analysis, sample(0, errors=0.25))[1]
    assert failed.name == "errorRate" and failed.value == 0.25 and failed.threshold == "<= 0.05"
    assert failed.message == "errorRate 0.25 is outside <= 0.05"


@pytest.mark.parametrize(
    "bounds, value, verdict",
    [({"min": 0.8}, 0.9, "Successful"), ({"min": 0.8}, 0.7, "Failed"), ({"max": 3}, 3, "Successful"), ({"min": 1, "max": 2}, 2.5, "Failed"), ({"max": 1}, None, "Error")],
)
def test_custom_metric_verdicts(bounds, value, verdict):
    analysis = AnalysisSpec.model_validate({"minRequests": 1, "metrics": [{"name": "accuracy", "query": "vector(1)", **bounds}]})
    extra = {"accuracy": value}
    checks = judge(analysis, sample(0, **extra))
    assert checks[-1].name == "accuracy" and checks[-1].verdict == verdict


# --- the step machine --------------------------------------------------------------------


def run(spec, state, seconds, ready=True, measured=None, requests=UserRequests(), champion="1", candidate="2"):
    return decide(spec, state, champion, candidate, ready, at(seconds), measured, requests, Settings(retain_rolled_back=60))


def test_waits_for_the_candidate_pods_without_giving_it_traffic():
    d = run(SPEC, None, 0, ready=False)
    assert d.weights == {"1": 100} and d.rollout.phase == "Waiting" and d.candidate == "2"
    assert d.keep == {"1": None, "2": None} and [n.reason for n in d.notices] == ["RolloutStarted"]


def test_ready_candidate_enters_the_first_step():
    d = run(SPEC, run(SPEC, None, 0, ready=False).rollout, 1)
    assert d.weights == {"1": 90, "2": 10}
    assert d.rollout.step_index == 0 and d.rollout.step_started_at == "2026-11-22T08:00:01Z"
    assert [n.reason for n in d.notices] == ["CanaryStep"] and d.requeue_after == 10  # the first analysis
    assert d.promote is None


def in_step(index: int, started: float = 0, **extra) -> RolloutStatus:
    weights = [10, 50, 100]
    return RolloutStatus(candidate="2", phase="Progressing", step_index=index, step_weight=weights[index], step_started_at=at(started).isoformat().replace("+00:00", "Z"), **extra)


def test_pause_not_over_keeps_the_step_even_when_healthy():
    d = run(SPEC, in_step(0), 10, measured=sample(10))
    assert d.weights == {"1": 90, "2": 10} and d.rollout.step_passed and d.rollout.last_analysis_at == "2026-11-22T08:00:10Z"
    assert d.requeue_after == 10  # the pause ends at 20s, the next analysis is due at 20s


def test_pause_over_and_passed_advances_to_the_next_weight():
    state = run(SPEC, in_step(0), 10, measured=sample(10)).rollout
    d = run(SPEC, state, 20, measured=sample(20))
    assert d.weights == {"1": 50, "2": 50} and d.rollout.step_index == 1 and d.rollout.checks == []
    assert d.notices[-1].message == "step 2/3: version 2 takes 50% for 20s"


@pytest.mark.parametrize(
    ("seconds", "requeue_after"),
    [
        (10.5, 9.5),  # the pause ends at 20 s; the next analysis (due 10 s after the last, at 20.2 s) later
        (19.7, 0.3),  # a pause ending within a fraction of a second is looked at right then, not later
        (19.95, 0.1),  # no shorter than MIN_REQUEUE_SECONDS: a moment already due cannot spin the loop
    ],
)
def test_looks_again_exactly_when_the_pause_ends(seconds, requeue_after):
    state = in_step(0, step_passed=True, last_analysis_at="2026-11-22T08:00:10.200Z")
    assert run(SPEC, state, seconds).requeue_after == pytest.approx(requeue_after)


def test_wake_at_the_pause_end_advances_on_the_last_passed_analysis():
    # The analysis before the pause's end passed; the next is not due yet: the step ends on time.
    state = in_step(0, step_passed=True, last_analysis_at="2026-11-22T08:00:10.200Z")
    assert analysis_due(SPEC, state, at(20)) is None
    d = run(SPEC, state, 20)
    assert d.weights == {"1": 50, "2": 50} and d.rollout.step_index == 1


def test_pause_over_without_a_passed_analysis_waits():
    d = run(SPEC, in_step(0), 25)
    assert d.weights == {"1": 90, "2": 10} and d.rollout.step_index == 0


def test_last_step_passed_promotes_with_alias_first():
    d = run(SPEC, in_step(2), 20, measured=sample(20))
    assert d.promote == "2" and d.champion == "2" and d.weights == {"2": 100}
    assert d.rollout.phase == "Promoted" and d.rollout.previous_champion == "1"
    assert d.promoted[0] is True and d.keep == {"2": None, "1": 1}


def test_failed_checks_reaching_the_threshold_roll_back():
    first = run(SPEC, in_step(1), 10, measured=sample(10, errors=0.3))
    assert first.weights == {"1": 50, "2": 50} and first.rollout.failed_checks == 1
    assert [n.reason for n in first.notices] == ["AnalysisFailed"]
    second = run(SPEC, first.rollout, 20, measured=sample(20, errors=0.4))
    assert second.weights == {"1": 100} and second.champion == "1" and second.promote is None
    assert second.rollout.phase == "RolledBack" and second.failure == "AnalysisFailed"
    status, reason, message = second.promoted
    assert status is False and reason == "AnalysisFailed" and "errorRate 0.4 is outside <= 0.05" in message
    # The candidate keeps its pods (no traffic) for inspection, then goes.
    assert second.keep == {"1": None, "2": 1} and second.requeue_after == 60
    later = decide(SPEC, second.rollout, "1", None, False, at(90))
    assert later.keep == {"1": None} and later.weights == {"1": 100}


def test_failed_checks_count_across_steps():
    state = in_step(1, failed_checks=1)
    d = run(SPEC, state, 10, measured=sample(10, p95=0.4))
    assert d.rollout.phase == "RolledBack" and "latencyP95 0.4s is outside <= 0.1s" in d.promoted[2]


@pytest.mark.parametrize("measured", [sample(10, requests=3), sample(10, error="Prometheus unreachable")])
def test_inconclusive_never_advances_and_times_out(measured):
    d = run(SPEC, in_step(0), 10, measured=measured)
    assert d.rollout.inconclusive_since == "2026-11-22T08:00:10Z" and d.rollout.failed_checks == 0
    stuck = run(SPEC, d.rollout, 30, measured=AnalysisSample(at(30), measured.measurements))
    assert stuck.weights == {"1": 90, "2": 10} and stuck.rollout.inconclusive_checks == 2
    gone = run(SPEC, stuck.rollout, 40, measured=AnalysisSample(at(40), measured.measurements))
    assert gone.rollout.phase == "RolledBack" and gone.failure == "AnalysisInconclusive"


def test_a_successful_analysis_resets_the_inconclusive_run():
    state = run(SPEC, in_step(0), 10, measured=sample(10, requests=3)).rollout
    d = run(SPEC, state, 15, measured=sample(15))
    assert d.rollout.inconclusive_since is None and d.rollout.step_passed


def test_manual_approval_waits_then_promotes_on_approve():
    waiting = run(MANUAL, in_step(2), 20, measured=sample(20))
    assert waiting.rollout.phase == "AwaitingApproval" and waiting.rollout.awaiting_approval and waiting.promote is None
    assert waiting.weights == {"1": 0, "2": 100} and waiting.notices[-1].reason == "AwaitingApproval"
    still = run(MANUAL, waiting.rollout, 300)
    assert still.promote is None and still.rollout.phase == "AwaitingApproval"
    # An approval of another version is stale and ignored.
    assert run(MANUAL, waiting.rollout, 301, requests=UserRequests(approve="7")).promote is None
    approved = run(MANUAL, waiting.rollout, 302, requests=UserRequests(approve="2"))
    assert approved.promote == "2" and approved.rollout.phase == "Promoted"


def test_an_approval_set_early_skips_no_step_and_counts_once_the_last_step_passes():
    # `kubectl annotate` can set it during any step (the CLI refuses before AwaitingApproval):
    # it is a pre-approval, read when the gate is reached, like Flagger's confirm-promotion hook.
    early = run(MANUAL, in_step(0), 10, measured=sample(10), requests=UserRequests(approve="2"))
    assert early.promote is None and early.rollout.phase == "Progressing" and early.rollout.step_index == 0
    failing = run(MANUAL, in_step(2), 20, measured=sample(20, errors=0.5), requests=UserRequests(approve="2"))
    assert failing.promote is None  # an approval never overrides a failed check
    last = run(MANUAL, in_step(2), 20, measured=sample(20), requests=UserRequests(approve="2"))
    assert last.promote == "2" and last.rollout.phase == "Promoted"


def test_abort_rolls_back_the_candidate():
    d = run(MANUAL, in_step(1), 5, requests=UserRequests(abort="2"))
    assert d.weights == {"1": 100} and d.failure == "Aborted" and d.rollout.phase == "RolledBack"
    assert d.promote is None and d.champion == "1" and d.keep == {"1": None, "2": 1}  # kept for inspection
    assert d.promoted == (False, "Aborted", "version 2 was aborted by a person (`modelship abort` or the modelship.io/abort annotation); version 1 serves all traffic")
    assert [(e.type, e.reason) for e in d.notices] == [("Warning", "Aborted")]


def test_rollback_after_promotion_is_instant_while_warm():
    promoted = run(SPEC, in_step(2), 20, measured=sample(20)).rollout
    d = decide(SPEC, promoted, "2", None, False, at(60), requests=UserRequests(rollback="2"), ready_versions=frozenset({"1", "2"}))
    assert d.weights == {"1": 100} and d.champion == "1" and d.promote == "1"
    assert d.rollout.phase == "RolledBack" and d.rollout.candidate == "2" and "still warm" in d.rollout.message
    # Stale: once version 1 is champion, the same annotation asks nothing.
    again = decide(SPEC, d.rollout, "1", None, False, at(61), requests=UserRequests(rollback="2"))
    assert again.promote is None and again.champion == "1"


def test_rollback_after_the_window_redeploys_the_previous_version():
    promoted = run(SPEC, in_step(2), 20, measured=sample(20)).rollout
    later = at(20 + 1800 + 1)
    steady = decide(SPEC, promoted, "2", None, False, later)
    assert steady.keep == {"2": None}  # the warm copy is gone
    # Its Deployment is made again; traffic stays on version 2 until its pods are ready.
    waiting = decide(SPEC, promoted, "2", None, False, later, requests=UserRequests(rollback="2"), ready_versions=frozenset({"2"}))
    assert waiting.champion == "2" and waiting.weights == {"2": 100} and waiting.keep == {"2": None, "1": None} and waiting.promote is None
    assert waiting.rollout.message == "rolling back from version 2: waiting for the pods of version 1"
    d = decide(SPEC, waiting.rollout, "2", None, False, later, requests=UserRequests(rollback="2"), ready_versions=frozenset({"1", "2"}))
    assert d.champion == "1" and d.promote == "1" and d.weights == {"1": 100} and "redeployed from MLflow" in d.rollout.message


def test_rolled_back_candidate_is_not_rolled_out_again():
    # reconcile.candidate_version filters it; the machine with no candidate keeps the champion.
    rolled = run(SPEC, in_step(1, failed_checks=1), 10, measured=sample(10, errors=0.5)).rollout
    d = decide(SPEC, rolled, "1", None, False, at(11))
    assert d.weights == {"1": 100} and d.rollout.phase == "RolledBack"


def test_immediate_and_first_version_promote_once_ready():
    immediate = SPEC.model_copy(update={"strategy": "immediate"})
    assert run(immediate, None, 0, ready=False).weights == {"1": 100}
    assert run(immediate, None, 0).promote == "2"
    first = decide(SPEC, None, None, "1", False, at(0))
    assert first.weights == {"1": 100} and first.promote is None
    assert decide(SPEC, first.rollout, None, "1", True, at(1)).promote == "1"


MIRRORED = SPEC.model_copy(update={"mirror": RolloutSpec.model_validate({"mirror": {"percent": 30}}).mirror})


def test_shadow_phase_comes_before_any_real_traffic():
    d = run(MIRRORED, RolloutStatus(candidate="2", phase="Waiting"), 0)
    assert d.weights == {"1": 100, "2": 0} and d.mirror.version == "2" and d.mirror.percent == 30
    assert d.rollout.mirror_phase == "Mirroring" and d.rollout.step == "shadow" and d.notices[0].reason == "Mirroring"
    # Analysed like a step; once its pause is over and it passed, the first real step begins.
    checked = run(MIRRORED, d.rollout, 10, measured=sample(10))
    assert checked.weights == {"1": 100, "2": 0} and checked.mirror is not None
    first = run(MIRRORED, checked.rollout, 20, measured=sample(20))
    assert first.weights == {"1": 90, "2": 10} and first.mirror is None
    assert first.rollout.mirror_phase == "Done" and first.rollout.step == "1/3"


def test_a_failing_shadow_never_takes_real_traffic():
    d = run(MIRRORED, RolloutStatus(candidate="2", phase="Waiting"), 0)
    d = run(MIRRORED, d.rollout, 10, measured=sample(10, errors=1.0))
    d = run(MIRRORED, d.rollout, 20, measured=sample(20, errors=1.0))
    assert d.rollout.phase == "RolledBack" and d.weights == {"1": 100} and d.mirror is None


def test_the_shadow_phase_is_judged_on_mirrored_copies_and_steps_on_user_requests():
    from modelship.operator.rollout import analysed_traffic

    shadow = run(MIRRORED, RolloutStatus(candidate="2", phase="Waiting"), 0).rollout
    first = run(MIRRORED, run(MIRRORED, shadow, 10, measured=sample(10)).rollout, 20, measured=sample(20)).rollout
    plain = run(SPEC, RolloutStatus(candidate="2", phase="Waiting"), 0).rollout
    cases = [
        (None, "live"),
        (shadow, "shadow"),
        (first, "live"),  # mirrorPhase Done: the first weighted step
        (plain, "live"),
        (shadow.model_copy(update={"phase": "RolledBack"}), "live"),
    ]
    assert [analysed_traffic(state) for state, _ in cases] == [kind for _, kind in cases]


@pytest.mark.parametrize(
    "state, now, due",
    [
        (None, 0, False),
        (RolloutStatus(candidate="2", phase="Waiting"), 100, False),
        (in_step(0), 5, False),
        (in_step(0), 10, True),
        (in_step(0, last_analysis_at="2026-11-22T08:00:10Z"), 15, False),
        (in_step(0, last_analysis_at="2026-11-22T08:00:10Z"), 20, True),
        (RolloutStatus(candidate="2", phase="RolledBack", step_started_at="2026-11-22T08:00:00Z"), 100, False),
    ],
)
def test_analysis_due(state, now, due):
    assert (analysis_due(SPEC, state, at(now)) is not None) == due


# --- the analysis queries and templates --------------------------------------------------


@pytest.mark.parametrize(
    "build",
    ["requests_query", "error_ratio_query", "latency_p95_query"],
)
def test_queries_count_user_requests_or_mirrored_copies_never_both(build):
    from modelship.monitoring import analysis

    query = getattr(analysis, build)
    live, shadow = query("ns", "m", "2", "60s"), query("ns", "m", "2", "60s", "shadow")
    # Every series selector of the query carries the one traffic matcher (the error ratio has two).
    assert live.count('traffic!="shadow"') == live.count("{") and 'traffic="shadow"' not in live
    assert shadow.count('traffic="shadow"') == shadow.count("{") and "traffic!=" not in shadow
    with pytest.raises(ValueError, match="traffic must be one of live, shadow, not 'mirror'"):
        query("ns", "m", "2", "60s", "mirror")


def test_queries_select_one_version_of_one_model_in_one_namespace():
    from modelship.monitoring import analysis

    assert analysis.requests_query("team-a", "m", "2", "90s") == 'sum(increase(modelship_predictions_total{namespace="team-a",model="m",version="2",traffic!="shadow"}[90s]))'
    assert 'outcome="error"' in analysis.error_ratio_query("team-a", "m", "2", "90s")
    assert analysis.selector("a", 'we"ird', "1") == '{namespace="a",model="we\\"ird",version="1"}'
    assert analysis.render_template("x{version=\"{{ version }}\"}[{{window}}]", "a", "m", "3", "30s") == 'x{version="3"}[30s]'
    assert analysis.render_template('x{traffic="{{traffic}}"}', "a", "m", "3", "30s") == 'x{traffic="live"}'
    assert analysis.render_template('x{traffic="{{traffic}}"}', "a", "m", "3", "30s", "shadow") == 'x{traffic="shadow"}'
    from modelship.api.v1alpha1 import query_template_problem

    assert query_template_problem('sum(rate(x{version="{{version}}",traffic="{{traffic}}"}[{{window}}]))') is None
    assert analysis.window_of(3.7) == "10s" and analysis.window_of(95.2) == "95s"


@pytest.mark.parametrize(
    "metric, problem",
    [
        ({"name": "acc", "query": "sum(rate(x[{{window}}])", "min": 1}, "spec.rollout.analysis.metrics[0].query: not a usable PromQL template for metric acc: unclosed '('"),
        ({"name": "acc", "query": "x{a=\"{{namespace}}}", "min": 1}, "unterminated string"),
        ({"name": "acc", "query": "x{v=\"{{ver}}\"}", "min": 1}, "unknown placeholder {{ver}}"),
        ({"name": "acc", "query": "vector(1)"}, "spec.rollout.analysis.metrics[0].max: a custom metric needs min or max"),
        ({"name": "acc", "query": "vector(1)", "min": 2, "max": 1}, "spec.rollout.analysis.metrics[0].min: min must not exceed max"),
    ],
)
def test_bad_custom_metrics_are_rejected_naming_the_field(metric, problem):
    from pydantic import ValidationError

    from modelship.api import ModelDeployment, format_errors
    from spec_cases import base_resource

    raw = base_resource()
    raw["spec"]["rollout"]["analysis"]["metrics"] = [metric]
    with pytest.raises(ValidationError) as error:
        ModelDeployment.model_validate(raw)
    assert any(problem in line for line in format_errors(error.value)), format_errors(error.value)


def test_rollout_gauges_follow_the_status():
    from prometheus_client import REGISTRY

    from modelship.operator import metrics

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels)

    in_step = {
        "traffic": [{"version": "1", "weight": 80, "role": "champion"}, {"version": "2", "weight": 20, "role": "canary"}],
        "rollout": {"candidate": "2", "phase": "Progressing", "stepIndex": 1, "checks": [{"name": "errorRate", "verdict": "Failed", "value": 0.3}]},
    }
    metrics.record_rollout("gauged", in_step)
    assert value("modelship_operator_rollout_step", model="gauged") == 2
    assert value("modelship_operator_rollout_phase", model="gauged", phase="Progressing") == 1
    assert value("modelship_operator_traffic_weight", model="gauged", version="2") == 20
    assert value("modelship_operator_analysis_verdict", model="gauged", check="errorRate", verdict="Failed") == 1
    assert value("modelship_operator_analysis_verdict", model="gauged", check="errorRate", verdict="Successful") == 0
    metrics.record_rollout("gauged", {"traffic": [{"version": "2", "weight": 100, "role": "champion"}], "rollout": {"candidate": "2", "phase": "Promoted"}})
    assert value("modelship_operator_traffic_weight", model="gauged", version="1") is None  # gone, not frozen
    assert value("modelship_operator_rollout_step", model="gauged") == 0
    assert value("modelship_operator_analysis_value", model="gauged", check="errorRate") is None
    metrics.forget_rollout("gauged")
    assert value("modelship_operator_traffic_weight", model="gauged", version="2") is None
    assert value("modelship_operator_rollout_phase", model="gauged", phase="Promoted") is None


def test_a_step_is_timed_from_when_it_really_began():
    begun = T0 + dt.timedelta(seconds=1, milliseconds=750)
    d = decide(SPEC, RolloutStatus(candidate="2", phase="Waiting"), "1", "2", True, begun)
    assert d.rollout.step_started_at == "2026-11-22T08:00:01.750Z"
    assert analysis_due(SPEC, d.rollout, at(11.7)) is None and analysis_due(SPEC, d.rollout, at(11.75)) is not None


# --- A/B tests ---------------------------------------------------------------------------

AB = RolloutSpec.model_validate(
    {
        "strategy": "abTest",
        "analysis": {"interval": "10s"},
        "abTest": {"variants": [{"name": "champion", "modelVersion": "champion", "weight": 80}, {"name": "challenger", "modelVersion": "challenger", "weight": 20, "headerMatch": {"name": "x-variant", "value": "challenger"}}]},
    }
)


def test_ab_variants_resolve_and_route_with_header_rules_first():
    d = decide(AB, None, "1", "2", True, at(0), ready_versions=frozenset({"1", "2"}))
    assert d.weights == {"1": 80, "2": 20} and d.promote is None
    assert [(h.name, h.value, h.version) for h in d.header_routes] == [("x-variant", "challenger", "2")]
    assert d.variants == {"1": "champion", "2": "challenger"} and d.keep == {"1": None, "2": None}
    assert d.rollout.phase == "ABTesting" and [n.reason for n in d.notices] == ["ABTestStarted"]
    assert [(v.name, v.version, v.weight, v.header) for v in d.rollout.variants] == [("champion", "1", 80, None), ("challenger", "2", 20, "x-variant=challenger")]


def test_ab_waits_for_the_variants_pods():
    d = decide(AB, None, "1", "2", False, at(0), ready_versions=frozenset({"1"}))
    assert d.weights == {"1": 100} and d.header_routes == () and "waiting for the pods of version 2" in d.rollout.message


def test_ab_status_carries_each_variants_live_metrics():
    samples = {"1": sample(10, requests=400, errors=0.01, p95=0.02), "2": sample(10, requests=100, errors=0.0, p95=0.03)}
    d = decide(AB, None, "1", "2", True, at(10), ready_versions=frozenset({"1", "2"}), variant_samples=samples)
    assert [(v.name, v.requests, v.error_rate, v.latency_p95) for v in d.rollout.variants] == [("champion", 400, 0.01, 0.02), ("challenger", 100, 0.0, 0.03)]
    assert d.rollout.last_analysis_at == "2026-11-22T08:00:10Z" and d.requeue_after == 10
    # Between analyses the last figures stay.
    again = decide(AB, d.rollout, "1", "2", True, at(15), ready_versions=frozenset({"1", "2"}))
    assert again.rollout.variants == d.rollout.variants and again.notices == []


def test_ab_runs_until_a_person_promotes_a_variant():
    state = decide(AB, None, "1", "2", True, at(0), ready_versions=frozenset({"1", "2"})).rollout
    assert decide(AB, state, "1", "2", True, at(3600), ready_versions=frozenset({"1", "2"})).promote is None
    # A request naming another version (stale) is ignored.
    assert decide(AB, state, "1", "2", True, at(1), requests=UserRequests(promote="challenger:7"), ready_versions=frozenset({"1", "2"})).promote is None
    d = decide(AB, state, "1", "2", True, at(2), requests=UserRequests(promote="challenger:2"), ready_versions=frozenset({"1", "2"}))
    assert d.promote == "2" and d.weights == {"2": 100} and d.rollout.phase == "Promoted" and d.rollout.previous_champion == "1"
    # Every variant now resolves to the champion: nothing to test, nothing in flight.
    after = decide(AB, d.rollout, "2", None, False, at(3), requests=UserRequests(promote="challenger:2"))
    assert after.weights == {"2": 100} and after.promote is None and after.header_routes == ()


# --- milestones: what people are notified of ---------------------------------------------

_PROMOTED_STATE = RolloutStatus(candidate="2", phase="Promoted", previous_champion="1", warm_until="2026-11-22T08:30:00Z")


@pytest.mark.parametrize(
    "champion, decision, expected",
    [
        # The last step passed: a promotion, naming the champion it replaced.
        ("1", lambda: run(SPEC, in_step(2), 20, measured=sample(20)), [("Promoted", "2", {"previous_version": "1"})]),
        # The very first version has no champion to replace.
        (None, lambda: decide(SPEC, RolloutStatus(candidate="1", phase="Waiting"), None, "1", True, at(1)), [("Promoted", "1", {"previous_version": ""})]),
        # An approval promotes too.
        ("1", lambda: run(MANUAL, run(MANUAL, in_step(2), 20, measured=sample(20)).rollout, 30, requests=UserRequests(approve="2")), [("Promoted", "2", {"previous_version": "1"})]),
        # Failed analyses, an inconclusive timeout and an abort roll the candidate back.
        ("1", lambda: run(SPEC, in_step(1, failed_checks=1), 10, measured=sample(10, errors=0.4)), [("RolledBack", "2", {"reason": "AnalysisFailed", "champion_version": "1"})]),
        ("1", lambda: run(SPEC, in_step(0, inconclusive_since="2026-11-22T08:00:00Z"), 40, measured=sample(40, requests=1)), [("RolledBack", "2", {"reason": "AnalysisInconclusive", "champion_version": "1"})]),
        ("1", lambda: run(SPEC, in_step(1), 5, requests=UserRequests(abort="2")), [("RolledBack", "2", {"reason": "Aborted", "champion_version": "1"})]),
        # `modelship rollback` of a promotion: the champion goes, the previous one serves again (its
        # alias is moved back, which is not a promotion).
        ("2", lambda: decide(SPEC, _PROMOTED_STATE, "2", None, False, at(60), requests=UserRequests(rollback="2"), ready_versions=frozenset({"1", "2"})), [("RolledBack", "2", {"reason": "RolledBack", "champion_version": "1"})]),
        # Nothing happens: waiting, a step, a pause, a steady champion, an A/B test running.
        ("1", lambda: run(SPEC, None, 0, ready=False), []),
        ("1", lambda: run(SPEC, run(SPEC, in_step(0), 10, measured=sample(10)).rollout, 20, measured=sample(20)), []),
        ("1", lambda: run(SPEC, in_step(1), 10, measured=sample(10, errors=0.3)), []),
        ("2", lambda: decide(SPEC, _PROMOTED_STATE, "2", None, False, at(60)), []),
        ("1", lambda: decide(AB, None, "1", "2", True, at(0), ready_versions=frozenset({"1", "2"})), []),
    ],
)
def test_milestones_of_the_step_machine(champion, decision, expected):
    from modelship.operator.reconcile import rollout_milestones

    found = [(m.kind, m.version, dict(m.details)) for m in rollout_milestones(decision(), champion)]
    assert found == expected


def test_milestone_gauges_keep_each_event_for_the_retention_then_drop_it():
    from prometheus_client import REGISTRY

    from modelship.operator import metrics
    from modelship.operator.events import PROMOTED, ROLLED_BACK, Milestone

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, {"namespace": "team-a", "modelship_io_deployment": "gauged", "model": "team-a-gauged", **labels})

    rollbacks = REGISTRY.get_sample_value("modelship_operator_rollbacks_total", {"reason": "AnalysisFailed"}) or 0
    promotions = REGISTRY.get_sample_value("modelship_operator_promotions_total") or 0
    metrics.record_milestone("team-a", "gauged", "team-a-gauged", Milestone(PROMOTED, "2", (("previous_version", "1"),)), at=1000.0)
    assert REGISTRY.get_sample_value("modelship_operator_promotions_total") == promotions + 1
    metrics.record_milestone("team-a", "gauged", "team-a-gauged", Milestone(ROLLED_BACK, "3", (("reason", "AnalysisFailed"), ("champion_version", "2"))), at=1500.0)
    assert REGISTRY.get_sample_value("modelship_operator_promotions_total") == promotions + 1  # a rollback is no promotion
    assert value("modelship_operator_promoted_timestamp_seconds", version="2", previous_version="1") == 1000.0
    assert value("modelship_operator_rolled_back_timestamp_seconds", version="3", reason="AnalysisFailed", champion_version="2") == 1500.0
    assert REGISTRY.get_sample_value("modelship_operator_rollbacks_total", {"reason": "AnalysisFailed"}) == rollbacks + 1
    # A later milestone past the retention drops the old series; the newer one stays.
    metrics.record_milestone("team-a", "gauged", "team-a-gauged", Milestone(PROMOTED, "4", (("previous_version", "2"),)), at=1000.0 + metrics.MILESTONE_RETENTION_SECONDS + 1)
    assert value("modelship_operator_promoted_timestamp_seconds", version="2", previous_version="1") is None
    assert value("modelship_operator_rolled_back_timestamp_seconds", version="3", reason="AnalysisFailed", champion_version="2") == 1500.0
    metrics.forget_rollout("team-a-gauged")
    assert value("modelship_operator_promoted_timestamp_seconds", version="4", previous_version="2") is None
    assert value("modelship_operator_rolled_back_timestamp_seconds", version="3", reason="AnalysisFailed", champion_version="2") is None
