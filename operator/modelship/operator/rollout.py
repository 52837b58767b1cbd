"""The rollout of a candidate version: analysis verdicts and the canary step machine. Pure: no
API, no Prometheus, no clock; status in, decision out (Flagger's step arithmetic, Argo's four
verdicts).

A canary walks ``rollout.canary.steps``: the candidate takes each step's weight for the step's
pause; every ``analysis.interval`` the controller measures the candidate in Prometheus and hands
the :class:`AnalysisSample` to :func:`decide`. A step ends when its pause is over and its latest
analysis passed every check. Failed analyses count toward ``failureThreshold`` (→ roll back);
Inconclusive or Error never advance, and a step that stays so for ``inconclusiveTimeout`` fails.
After the last step the candidate is promoted, or waits for an approval when ``approval`` is
manual. ``immediate`` promotes a ready candidate at once. An ``abTest`` serves its variants side
by side (header matches first, then the weights) until a person promotes one; its figures per
variant come from Prometheus like a canary's. With ``mirror`` a canary starts with a shadow phase.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from modelship.api import parse_duration
from modelship.api.names import ABORT_ANNOTATION
from modelship.api.v1alpha1 import (
    AbVariant,
    AnalysisSpec,
    Approval,
    CheckResult,
    RolloutPhase,
    RolloutSpec,
    RolloutStatus,
    RolloutStrategy,
    VariantStatus,
    Verdict,
)
from modelship.monitoring.analysis import CHECK_ERROR_RATE, CHECK_LATENCY_P95, CHECK_REQUESTS
from modelship.monitoring.metrics import TRAFFIC_LIVE, TRAFFIC_SHADOW
from modelship.operator import abquality
from modelship.operator.abquality import QualitySample
from modelship.operator.events import Event
from modelship.operator.traffic import HeaderRoute, Mirror

#: ``status.rollout.mirrorPhase``: the candidate is shadowing the champion, or has done so.
MIRRORING = "Mirroring"
MIRROR_DONE = "Done"
#: Phases in which a candidate takes part in traffic (or is about to).
IN_FLIGHT = (RolloutPhase.waiting.value, RolloutPhase.progressing.value, RolloutPhase.awaiting_approval.value, RolloutPhase.ab_testing.value)


def timestamp(moment: dt.datetime, precise: bool = False) -> str:
    """RFC 3339 in UTC, whole seconds; ``precise`` keeps milliseconds (when there are any), so a
    step's pause is timed from when it really began, not from the second before."""
    moment = moment.astimezone(dt.timezone.utc)
    spec = "milliseconds" if precise and moment.microsecond >= 1000 else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# --- analysis ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One query's answer: a value, no data (``value`` None), or a failure to ask (``error``)."""

    name: str
    value: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class AnalysisSample:
    """What the controller measured for the candidate, and when."""

    at: dt.datetime
    measurements: tuple[Measurement, ...] = ()

    def get(self, name: str) -> Measurement:
        return next((m for m in self.measurements if m.name == name), Measurement(name))


def _bounded(name: str, measured: Measurement, low: float | None, high: float | None, enough: bool, unit: str = "") -> CheckResult:
    bound = " and ".join(part for part in (f">= {low:g}" if low is not None else "", f"<= {high:g}" if high is not None else "") if part)
    if measured.error:
        return CheckResult(name=name, verdict=Verdict.error, threshold=bound, message=measured.error)
    if not enough:
        return CheckResult(name=name, verdict=Verdict.inconclusive, value=_finite(measured.value), threshold=bound, message="too few requests to judge")
    value = _finite(measured.value)
    if value is None:
        return CheckResult(name=name, verdict=Verdict.error, threshold=bound, message="no data")
    if (low is not None and value < low) or (high is not None and value > high):
        return CheckResult(name=name, verdict=Verdict.failed, value=value, threshold=bound, message=f"{name} {value:.4g}{unit} is outside {bound}{unit}")
    return CheckResult(name=name, verdict=Verdict.successful, value=value, threshold=bound)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else (math.inf if value == math.inf else None)


def judge(analysis: AnalysisSpec, sample: AnalysisSample) -> list[CheckResult]:
    """Every check's verdict for one analysis of the candidate."""
    requests = sample.get(CHECK_REQUESTS)
    count = _finite(requests.value)
    if requests.error:
        first = CheckResult(name=CHECK_REQUESTS, verdict=Verdict.error, message=requests.error, threshold=f">= {analysis.min_requests}")
    elif count is None:
        first = CheckResult(name=CHECK_REQUESTS, verdict=Verdict.error, message="no data", threshold=f">= {analysis.min_requests}")
    elif count < analysis.min_requests:
        first = CheckResult(name=CHECK_REQUESTS, verdict=Verdict.inconclusive, value=count, threshold=f">= {analysis.min_requests}", message=f"{count:.0f} requests, fewer than {analysis.min_requests}")
    else:
        first = CheckResult(name=CHECK_REQUESTS, verdict=Verdict.successful, value=count, threshold=f">= {analysis.min_requests}")
    enough = first.verdict == Verdict.successful
    checks = [
        first,
        _bounded(CHECK_ERROR_RATE, sample.get(CHECK_ERROR_RATE), None, analysis.max_error_rate, enough),
        _bounded(CHECK_LATENCY_P95, sample.get(CHECK_LATENCY_P95), None, analysis.max_latency_p95_ms / 1000, enough, "s"),
    ]
    checks += [_bounded(metric.name, sample.get(metric.name), metric.min, metric.max, enough) for metric in analysis.metrics or ()]
    return checks


def overall(checks: list[CheckResult]) -> Verdict:
    """Failed beats Error beats Inconclusive beats Successful."""
    verdicts = {Verdict(c.verdict) for c in checks}
    for verdict in (Verdict.failed, Verdict.error, Verdict.inconclusive):
        if verdict in verdicts:
            return verdict
    return Verdict.successful


# --- the step machine --------------------------------------------------------------------


@dataclass(frozen=True)
class UserRequests:
    """What people asked for through the annotations (each names the version it is about)."""

    approve: str | None = None
    abort: str | None = None
    rollback: str | None = None
    #: ``<variant>:<version>``: end the A/B test with that variant's version as champion.
    promote: str | None = None


@dataclass
class RolloutDecision:
    #: Model version → percent of requests.
    weights: dict[str, int]
    #: The champion after this decision.
    champion: str | None
    #: Version whose MLflow alias ``champion`` must be moved before the status says so.
    promote: str | None = None
    rollout: RolloutStatus | None = None
    #: Versions whose serving objects must exist → replica override (None: the spec's).
    keep: dict[str, int | None] = field(default_factory=dict)
    notices: list[Event] = field(default_factory=list)
    #: The Promoted condition to set: (status, reason, message).
    promoted: tuple[bool, str, str] | None = None
    #: Set when the latest candidate failed (the resource is Degraded).
    failure: str | None = None
    #: Seconds until something is due (a pause's end, the next analysis, a retirement).
    requeue_after: float | None = None
    #: Requests pinned to one version by a header (A/B tests), before the weighted split.
    header_routes: tuple[HeaderRoute, ...] = ()
    #: Version → the variant name its pods carry (A/B tests).
    variants: dict[str, str] = field(default_factory=dict)
    #: A copy of a share of the requests to the candidate (shadow phase).
    mirror: Mirror | None = None

    @property
    def candidate(self) -> str | None:
        rollout = self.rollout
        return rollout.candidate if rollout and rollout.phase in IN_FLIGHT else None


@dataclass(frozen=True)
class Settings:
    """Operator-wide knobs of the machine."""

    #: How long a rolled-back candidate keeps its pods (no traffic) for inspection.
    retain_rolled_back: float = 600.0


#: The shortest wait before looking again: a wake-up never lands later than this after what it
#: waits for (a pause ending 0.3 s from now is looked at in 0.3 s, not at a coarser tick), and a
#: moment already past cannot spin the reconcile loop.
MIN_REQUEUE_SECONDS = 0.1


def _seconds(until: dt.datetime | None, now: dt.datetime) -> float | None:
    return None if until is None else max((until - now).total_seconds(), MIN_REQUEUE_SECONDS)


def _soonest(*delays: float | None) -> float | None:
    present = [d for d in delays if d is not None]
    return min(present) if present else None


def _remember_warm(state: RolloutStatus, now: dt.datetime, keep: dict[str, int | None]) -> float | None:
    """Keep the previous champion (1 replica) and a rolled-back candidate until their time is up."""
    delays = []
    warm_until = parse_time(state.warm_until)
    if state.previous_champion and warm_until and warm_until > now:
        keep.setdefault(state.previous_champion, 1)
        delays.append(_seconds(warm_until, now))
    retire_at = parse_time(state.retire_at)
    if state.phase == RolloutPhase.rolled_back.value and state.candidate and retire_at and retire_at > now:
        keep.setdefault(state.candidate, 1)
        delays.append(_seconds(retire_at, now))
    return _soonest(*delays)


def decide(
    spec: RolloutSpec,
    state: RolloutStatus | None,
    champion: str | None,
    candidate: str | None,
    candidate_ready: bool,
    now: dt.datetime,
    sample: AnalysisSample | None = None,
    requests: UserRequests = UserRequests(),
    settings: Settings = Settings(),
    ready_versions: frozenset[str] = frozenset(),
    variant_samples: dict[str, AnalysisSample] | None = None,
    quality: QualitySample | None = None,
) -> RolloutDecision:
    """The traffic split and the rollout's next state; ``ready_versions`` are the versions whose
    pods are ready (a rollback waits for the previous champion's); ``quality`` the A/B variants'
    live quality when feedback is on and it was measured."""
    state = state.model_copy(deep=True) if state else RolloutStatus()
    if champion and requests.rollback == champion and state.previous_champion and state.previous_champion != champion:
        return _roll_back_promotion(spec, state, champion, now, settings, state.previous_champion in ready_versions)
    if spec.strategy == RolloutStrategy.ab_test.value and spec.ab_test is not None and champion:
        resolved = resolve_variants(spec, champion, candidate)
        if any(version != champion for _, version in resolved):
            return _ab_test(spec, state, champion, candidate, resolved, now, requests, ready_versions, variant_samples or {}, quality)
    if candidate is None:
        return _steady(state, champion, now)
    if state.candidate != candidate or state.phase not in IN_FLIGHT:
        state = _start(spec, state, candidate)
        how = _describe(spec) if champion else "the first version: it serves once ready"
        started = [Event("Normal", "RolloutStarted", f"version {candidate} rolls out ({how})")]
    else:
        started = []
    if champion is None or spec.strategy != RolloutStrategy.canary.value:
        decision = _immediate(spec, state, champion, candidate, candidate_ready, now)
    else:
        decision = _canary(spec, state, champion, candidate, candidate_ready, now, sample, requests, settings)
    decision.notices[:0] = started
    return decision


def _describe(spec: RolloutSpec) -> str:
    if spec.strategy != RolloutStrategy.canary.value:
        return spec.strategy
    steps = " → ".join(f"{s.weight}%" for s in spec.canary.steps)
    return f"canary {steps}" + (", manual approval" if spec.approval == Approval.manual.value else "")


def _start(spec: RolloutSpec, state: RolloutStatus, candidate: str) -> RolloutStatus:
    # The previous promotion's warm champion survives a new rollout; everything else starts over.
    return RolloutStatus(
        candidate=candidate,
        phase=RolloutPhase.waiting,
        previous_champion=state.previous_champion,
        warm_until=state.warm_until,
        message=f"waiting for the pods of version {candidate}",
    )


def _steady(state: RolloutStatus, champion: str | None, now: dt.datetime) -> RolloutDecision:
    keep: dict[str, int | None] = {champion: None} if champion else {}
    delay = _remember_warm(state, now, keep)
    if state.phase in IN_FLIGHT:  # the candidate vanished (a new training is on its way)
        state.phase = None
    return RolloutDecision(weights={champion: 100} if champion else {}, champion=champion, rollout=state if state.candidate or state.previous_champion else None, keep=keep, requeue_after=delay)


def _immediate(spec: RolloutSpec, state: RolloutStatus, champion: str | None, candidate: str, ready: bool, now: dt.datetime) -> RolloutDecision:
    if ready:
        return _promote(spec, state, champion, candidate, now, "ready")
    keep: dict[str, int | None] = {candidate: None}
    if champion:
        keep[champion] = None
    delay = _remember_warm(state, now, keep)
    # The first version: the route already points at it, so it serves as soon as it is ready.
    weights = {champion: 100} if champion else {candidate: 100}
    return RolloutDecision(weights=weights, champion=champion, rollout=state, keep=keep, requeue_after=delay)


def _promote(spec: RolloutSpec, state: RolloutStatus, champion: str | None, candidate: str, now: dt.datetime, why: str) -> RolloutDecision:
    message = f"version {candidate} is champion" + (f", replacing version {champion}" if champion else "") + f" ({why})"
    state.phase = RolloutPhase.promoted
    state.awaiting_approval = False
    state.step = None
    state.message = message
    state.step_started_at = None
    keep: dict[str, int | None] = {candidate: None}
    if champion:
        state.previous_champion = champion
        warm_until = now + dt.timedelta(seconds=parse_duration(spec.rollback_window))
        state.warm_until = timestamp(warm_until)
    delay = _remember_warm(state, now, keep)
    return RolloutDecision(
        weights={candidate: 100},
        champion=candidate,
        promote=candidate,
        rollout=state,
        keep=keep,
        notices=[Event("Normal", "Promoted", message)],
        promoted=(True, "Promoted", message),
        requeue_after=delay,
    )


def _roll_back(state: RolloutStatus, champion: str, candidate: str, now: dt.datetime, settings: Settings, reason: str, message: str) -> RolloutDecision:
    state.phase = RolloutPhase.rolled_back
    state.awaiting_approval = False
    state.step = None
    state.message = message
    state.retire_at = timestamp(now + dt.timedelta(seconds=settings.retain_rolled_back))
    keep: dict[str, int | None] = {champion: None}
    delay = _remember_warm(state, now, keep)
    return RolloutDecision(
        weights={champion: 100},
        champion=champion,
        rollout=state,
        keep=keep,
        notices=[Event("Warning", reason, message)],
        promoted=(False, reason, message),
        failure=reason,
        requeue_after=delay,
    )


def _roll_back_promotion(spec: RolloutSpec, state: RolloutStatus, champion: str, now: dt.datetime, settings: Settings, previous_ready: bool) -> RolloutDecision:
    """``modelship rollback``: all traffic back to the previous champion, at once while it is warm;
    after the window its Deployment is made again and traffic moves once its pods are ready (the
    request stays on the resource until then, so this is level-triggered like the rest)."""
    previous = state.previous_champion
    assert previous is not None
    warm_until = parse_time(state.warm_until)
    warm = bool(warm_until and warm_until > now)
    if not previous_ready:
        state.message = f"rolling back from version {champion}: waiting for the pods of version {previous}"
        keep: dict[str, int | None] = {champion: None, previous: None}
        return RolloutDecision(weights={champion: 100}, champion=champion, rollout=state, keep=keep, requeue_after=_remember_warm(state, now, {}))
    message = f"rolled back from version {champion} to version {previous} ({'still warm' if warm else 'redeployed from MLflow'})"
    state = RolloutStatus(
        candidate=champion,
        phase=RolloutPhase.rolled_back,
        message=message,
        retire_at=timestamp(now + dt.timedelta(seconds=settings.retain_rolled_back)),
    )
    keep: dict[str, int | None] = {previous: None}
    delay = _remember_warm(state, now, keep)
    return RolloutDecision(
        weights={previous: 100},
        champion=previous,
        promote=previous,
        rollout=state,
        keep=keep,
        notices=[Event("Warning", "RolledBack", message)],
        promoted=(False, "RolledBack", message),
        requeue_after=delay,
    )


def _canary(
    spec: RolloutSpec,
    state: RolloutStatus,
    champion: str,
    candidate: str,
    ready: bool,
    now: dt.datetime,
    sample: AnalysisSample | None,
    requests: UserRequests,
    settings: Settings,
) -> RolloutDecision:
    analysis = spec.analysis
    steps = spec.canary.steps
    interval = parse_duration(analysis.interval)
    notices: list[Event] = []

    if requests.abort == candidate:
        message = f"version {candidate} was aborted by a person (`modelship abort` or the {ABORT_ANNOTATION} annotation); version {champion} serves all traffic"
        return _roll_back(state, champion, candidate, now, settings, "Aborted", message)

    if state.phase == RolloutPhase.waiting.value:
        if not ready:
            keep = {champion: None, candidate: None}
            delay = _remember_warm(state, now, keep)
            return RolloutDecision(weights={champion: 100}, champion=champion, rollout=state, keep=keep, requeue_after=delay)
        state = _enter_mirror(state, spec, now) if spec.mirror else _enter_step(state, spec, 0, now)
        notices.append(Event("Normal", "Mirroring" if spec.mirror else "CanaryStep", state.message or ""))

    if sample is not None and state.phase in (RolloutPhase.progressing.value, RolloutPhase.awaiting_approval.value):
        checks = judge(analysis, sample)
        verdict = overall(checks)
        state.checks = checks
        state.last_analysis_at = timestamp(sample.at, precise=True)
        state.step_passed = verdict == Verdict.successful
        if verdict == Verdict.failed:
            state.failed_checks += 1
            failed = "; ".join(c.message for c in checks if c.verdict == Verdict.failed.value)
            if state.failed_checks >= analysis.failure_threshold:
                message = f"version {candidate} rolled back after {state.failed_checks} failed analyses (failureThreshold {analysis.failure_threshold}): {failed}"
                return _roll_back(state, champion, candidate, now, settings, "AnalysisFailed", message)
            notices.append(Event("Warning", "AnalysisFailed", f"version {candidate}: {failed} ({state.failed_checks}/{analysis.failure_threshold} failed analyses)"))
        elif verdict == Verdict.successful:
            state.inconclusive_since = None
        else:
            state.inconclusive_checks += 1
            since = parse_time(state.inconclusive_since) or sample.at
            state.inconclusive_since = timestamp(since)
            timeout = parse_duration(analysis.inconclusive_timeout)
            why = "; ".join(f"{c.name}: {c.message}" for c in checks if c.verdict in (Verdict.error.value, Verdict.inconclusive.value))
            if (now - since).total_seconds() >= timeout:
                message = f"version {candidate} rolled back: no conclusive analysis for {analysis.inconclusive_timeout} ({why})"
                return _roll_back(state, champion, candidate, now, settings, "AnalysisInconclusive", message)

    if state.phase == RolloutPhase.progressing.value:
        index = state.step_index or 0
        started = parse_time(state.step_started_at) or now
        pause_end = started + dt.timedelta(seconds=parse_duration(steps[index].pause))
        if now >= pause_end and state.step_passed:
            if state.mirror_phase == MIRRORING:
                state = _enter_step(state, spec, 0, now)
                state.mirror_phase = MIRROR_DONE
                notices.append(Event("Normal", "CanaryStep", state.message or ""))
            elif index + 1 < len(steps):
                state = _enter_step(state, spec, index + 1, now)
                notices.append(Event("Normal", "CanaryStep", state.message or ""))
            elif spec.approval == Approval.manual.value:
                state.phase = RolloutPhase.awaiting_approval
                state.awaiting_approval = True
                state.message = f"every step passed; run `modelship approve` to make version {candidate} champion, or `modelship abort`"
                notices.append(Event("Normal", "AwaitingApproval", state.message))
            else:
                decision = _promote(spec, state, champion, candidate, now, "every canary step passed")
                decision.notices[:0] = notices
                return decision

    if state.phase == RolloutPhase.awaiting_approval.value and requests.approve == candidate:
        decision = _promote(spec, state, champion, candidate, now, "approved")
        decision.notices[:0] = notices
        return decision

    index = state.step_index or 0
    mirroring = state.mirror_phase == MIRRORING and state.phase == RolloutPhase.progressing.value
    weight = 0 if mirroring else steps[index].weight
    keep = {champion: None, candidate: None}
    delay = _remember_warm(state, now, keep)
    started = parse_time(state.step_started_at) or now
    last = parse_time(state.last_analysis_at)
    next_analysis = max(last, started) + dt.timedelta(seconds=interval) if last else started + dt.timedelta(seconds=interval)
    pause_end = started + dt.timedelta(seconds=parse_duration(steps[index].pause))
    due = [_seconds(next_analysis, now)]
    if state.phase == RolloutPhase.progressing.value and now < pause_end:
        due.append(_seconds(pause_end, now))
    return RolloutDecision(
        weights={champion: 100 - weight, candidate: weight},
        champion=champion,
        rollout=state,
        keep=keep,
        notices=notices,
        requeue_after=_soonest(delay, *due),
        mirror=Mirror(candidate, spec.mirror.percent) if mirroring and spec.mirror else None,
    )


def _enter_mirror(state: RolloutStatus, spec: RolloutSpec, now: dt.datetime) -> RolloutStatus:
    """Shadow phase: the candidate gets copies of ``mirror.percent`` of the requests (answers
    discarded by the gateway) for the first step's pause, analysed like a step, before any real
    traffic."""
    assert spec.mirror is not None
    state = _enter_step(state, spec, 0, now)
    state.mirror_phase = MIRRORING
    state.step = "shadow"
    state.step_weight = 0
    state.message = f"shadow: version {state.candidate} gets a copy of {spec.mirror.percent}% of the requests for {spec.canary.steps[0].pause}; its answers are discarded"
    return state


def _enter_step(state: RolloutStatus, spec: RolloutSpec, index: int, now: dt.datetime) -> RolloutStatus:
    steps = spec.canary.steps
    state.phase = RolloutPhase.progressing
    state.step_index = index
    state.step = f"{index + 1}/{len(steps)}"
    state.step_weight = steps[index].weight
    state.step_started_at = timestamp(now, precise=True)
    state.checks = []
    state.step_passed = None
    state.inconclusive_checks = 0
    state.inconclusive_since = None
    state.message = f"step {index + 1}/{len(steps)}: version {state.candidate} takes {steps[index].weight}% for {steps[index].pause}"
    return state


def analysed_traffic(state: RolloutStatus | None) -> str:
    """Which of the candidate's requests an analysis judges: in the shadow phase the gateway's
    mirrored copies (it takes no user request then), in every weighted step user requests only."""
    shadowing = state is not None and state.mirror_phase == MIRRORING and state.phase == RolloutPhase.progressing.value
    return TRAFFIC_SHADOW if shadowing else TRAFFIC_LIVE


def analysis_due(spec: RolloutSpec, state: RolloutStatus | None, now: dt.datetime) -> dt.datetime | None:
    """When the step under analysis started, if an analysis of the candidate is due now, else None.
    The controller then measures the candidate over the step so far."""
    if spec.strategy != RolloutStrategy.canary.value or state is None or state.phase not in (RolloutPhase.progressing.value, RolloutPhase.awaiting_approval.value):
        return None
    started = parse_time(state.step_started_at)
    if started is None:
        return None
    interval = dt.timedelta(seconds=parse_duration(spec.analysis.interval))
    last = parse_time(state.last_analysis_at)
    since = max(last, started) if last else started
    return started if now >= since + interval else None


# --- A/B tests ---------------------------------------------------------------------------


def resolve_variants(spec: RolloutSpec, champion: str | None, candidate: str | None) -> list[tuple[AbVariant, str]]:
    """Each variant with the version it serves: ``champion``, ``challenger`` (the newest version
    that passed its gate, the champion while there is none) or a version number."""
    assert spec.ab_test is not None
    resolved = []
    for variant in spec.ab_test.variants:
        if variant.model_version == "champion":
            version = champion
        elif variant.model_version == "challenger":
            version = candidate or champion
        else:
            version = variant.model_version
        if version:
            resolved.append((variant, version))
    return resolved


def ab_analysis_due(spec: RolloutSpec, state: RolloutStatus | None, now: dt.datetime) -> bool:
    """Whether the variants' metrics should be measured now."""
    if spec.strategy != RolloutStrategy.ab_test.value or state is None or state.phase != RolloutPhase.ab_testing.value:
        return False
    last = parse_time(state.last_analysis_at)
    return last is None or now >= last + dt.timedelta(seconds=parse_duration(spec.analysis.interval))


def _ab_test(
    spec: RolloutSpec,
    state: RolloutStatus,
    champion: str,
    candidate: str | None,
    resolved: list[tuple[AbVariant, str]],
    now: dt.datetime,
    requests: UserRequests,
    ready_versions: frozenset[str],
    samples: dict[str, AnalysisSample],
    quality: QualitySample | None = None,
) -> RolloutDecision:
    """Variants side by side: header matches pin requests, the rest split by weight; live
    metrics per variant in status, and live quality compared with the baseline variant
    (:mod:`abquality`); nothing is promoted until a person promotes a variant."""
    notices: list[Event] = []
    arms = ", ".join(f"{v.name} → version {version} ({v.weight}%)" for v, version in resolved)
    if state.phase != RolloutPhase.ab_testing.value or state.candidate != candidate:
        state = RolloutStatus(candidate=candidate, phase=RolloutPhase.ab_testing, previous_champion=state.previous_champion, warm_until=state.warm_until)
        notices.append(Event("Normal", "ABTestStarted", f"A/B test: {arms}"))
    if not state.ab_started_at:
        state.ab_started_at = timestamp(now)
    if requests.promote:
        name, _, version = requests.promote.partition(":")
        chosen = next((ver for v, ver in resolved if v.name == name and ver == version), None)
        if chosen and chosen != champion:
            decision = _promote(spec, state, champion, chosen, now, f"variant {name} promoted by request")
            decision.rollout.variants = decision.rollout.ab_started_at = decision.rollout.quality_checked_at = None
            decision.notices[:0] = notices
            return decision
    previous = {(v.name, v.version): v for v in state.variants or []}
    variants = []
    for variant, version in resolved:
        sample = samples.get(version)
        if sample is None:
            kept = previous.get((variant.name, version))
            measured = (kept.requests, kept.error_rate, kept.latency_p95) if kept else (None, None, None)
        else:
            measured = (sample.get(CHECK_REQUESTS).value, sample.get(CHECK_ERROR_RATE).value, sample.get(CHECK_LATENCY_P95).value)
        header = f"{variant.header_match.name}={variant.header_match.value}" if variant.header_match else None
        variants.append(VariantStatus(name=variant.name, version=version, weight=variant.weight, header=header, requests=_finite(measured[0]), error_rate=_finite(measured[1]), latency_p95=_finite(measured[2])))
    stamp = timestamp(now)
    assert spec.ab_test is not None
    state.variants, significant = abquality.assess(variants, abquality.baseline(resolved), quality, state.variants or [], abquality.settings_from(spec.ab_test), stamp)
    notices += significant
    if quality is not None:
        state.quality_checked_at = stamp
    if samples:
        state.last_analysis_at = timestamp(now, precise=True)
    keep: dict[str, int | None] = {version: None for _, version in resolved}
    keep.setdefault(champion, None)
    delay = _remember_warm(state, now, keep)
    labels: dict[str, str] = {}
    for variant, version in resolved:
        labels.setdefault(version, variant.name)
    waiting = sorted(version for version in keep if version not in ready_versions and version != champion)
    interval = parse_duration(spec.analysis.interval)
    last = parse_time(state.last_analysis_at)
    next_analysis = _seconds(last + dt.timedelta(seconds=interval), now) if last else interval
    if waiting:
        state.message = f"waiting for the pods of version {', '.join(waiting)}; version {champion} serves all traffic meanwhile"
        return RolloutDecision(weights={champion: 100}, champion=champion, rollout=state, keep=keep, notices=notices, variants=labels, requeue_after=_soonest(delay, next_analysis))
    state.message = f"A/B test until a variant is promoted (`modelship promote NAME --variant X`): {arms}"
    weights: dict[str, int] = {}
    for variant, version in resolved:
        weights[version] = weights.get(version, 0) + variant.weight
    headers = tuple(HeaderRoute(v.header_match.name, v.header_match.value, version) for v, version in resolved if v.header_match)
    return RolloutDecision(
        weights=weights, champion=champion, rollout=state, keep=keep, notices=notices, header_routes=headers, variants=labels, requeue_after=_soonest(delay, next_analysis)
    )
