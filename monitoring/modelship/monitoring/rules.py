"""The Prometheus rules of a Modelship installation, generated from the metric names in
:mod:`modelship.monitoring.metrics` so a renamed metric cannot leave a rule behind.

Recording rules give every served version its request rate, error ratio and p95 latency (what
a canary analysis compares) and its live quality from ground-truth feedback (accuracy, MAE,
RMSE and the labelled counts an A/B test compares); alerts cover drift (``ModelshipDataDrift``, the one that triggers a
retraining when the ModelDeployment asks for it), live quality past the spec's threshold
(``ModelshipQualityDrop``), a model that does not become ready, errors,
and a drift evaluator that keeps failing. Every series is kept per ``namespace``,
``modelship_io_deployment``, ``model``, ``version`` and ``variant``: ``namespace`` is the target
label Prometheus adds when it scrapes a pod, ``modelship_io_deployment`` the ModelDeployment's
name that the chart's PodMonitor copies from the pod (so an alert leads back to its resource,
which is what the operator's alert webhook acts on), the rest come from the model server.

``modelship monitoring rules --write`` writes :data:`RULES_OUTPUTS`, which the chart's
PrometheusRule template includes; a test fails when it differs from this module's output, and
``promtool test rules`` exercises the alerts on synthetic series (tests/monitoring).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelship import generated
from modelship.monitoring import metrics as m
from modelship.monitoring.dashboards import DASHBOARD_UID

#: Where ``modelship monitoring rules --write`` puts the rule groups, relative to the repository root.
RULES_OUTPUTS = (Path("charts/modelship/files/prometheus-rules.yaml"),)

DRIFT_ALERT = "ModelshipDataDrift"
NOT_READY_ALERT = "ModelshipModelNotReady"
ERROR_RATE_ALERT = "ModelshipHighErrorRate"
DRIFT_EVALUATION_FAILING_ALERT = "ModelshipDriftEvaluationFailing"
QUALITY_DROP_ALERT = "ModelshipQualityDrop"
#: Notifications of the operator's milestones (its timestamp gauges), for people only.
RETRAIN_STARTED_ALERT = "ModelshipRetrainStarted"
PROMOTED_ALERT = "ModelshipRolloutPromoted"
ROLLED_BACK_ALERT = "ModelshipRolloutRolledBack"
NOTIFICATION_ALERTS = (RETRAIN_STARTED_ALERT, PROMOTED_ALERT, ROLLED_BACK_ALERT)

#: How long the drift gauge must stay at 1 before the alert fires: one drifted evaluation of a
#: small window is not a reason to retrain.
DRIFT_FOR = "5m"
NOT_READY_FOR = "10m"
ERROR_RATIO_THRESHOLD = 0.05
ERROR_RATE_FOR = "5m"
#: How long live quality must stay past the threshold: a handful of unlucky labels is noise.
QUALITY_DROP_FOR = "10m"

#: How long a notification alert fires after its milestone: one notification per milestone as
#: long as Alertmanager's repeat_interval is longer (its default and the chart's: 1h), and long
#: enough to survive a few missed scrapes and the group_wait.
NOTIFICATION_WINDOW_SECONDS = 600

#: Where each alert's ``runbook_url`` points (a section per alert, anchored by its name).
RUNBOOK_BASE = "https://github.com/modelship/modelship/blob/main/docs/runbooks.md"
#: Annotation of ModelshipDataDrift listing ``feature=score`` of each drifted feature, from the
#: per-feature gauges at the time the alert fires; the operator copies it into DriftDetected.
DRIFTED_FEATURES_ANNOTATION = "drifted_features"
#: Annotation with the Grafana path of the model serving dashboard, set to the alert's resource
#: (relative: prefix it with your Grafana URL, e.g. in a notification template).
DASHBOARD_ANNOTATION = "dashboard"

#: The labels every rule keeps.
SERIES = ("namespace", m.LABEL_DEPLOYMENT, *m.LABELS)
_BY = ", ".join(SERIES)
_WHO = f"{{{{ $labels.namespace }}}}/{{{{ $labels.{m.LABEL_DEPLOYMENT} }}}} (model {{{{ $labels.model }}}} version {{{{ $labels.version }}}}, {{{{ $labels.variant }}}})"
_DASHBOARD = f"/d/{DASHBOARD_UID}?var-namespace={{{{ $labels.namespace }}}}&var-model={{{{ $labels.model }}}}"


def _drifted_features_template() -> str:
    """Prometheus template: ``feature=score`` of every drifted feature of the alert's version,
    highest score per feature over the version's replicas, sorted by feature name."""
    match = ", ".join(f"{label}='%s'" for label in SERIES)
    selector = "{" + match + "}"
    expr = (
        f"max by (feature) ({m.FEATURE_DRIFT_SCORE}{selector} "
        f"and on (pod, feature) ({m.FEATURE_DRIFTED}{selector} == 1))"
    )
    args = " ".join(f"$labels.{label}" for label in SERIES)
    return (
        f'{{{{ with printf "{expr}" {args} {args} | query | sortByLabel "feature" }}}}'
        '{{ range $i, $s := . }}{{ if $i }}, {{ end }}{{ $s.Labels.feature }}={{ printf "%.3g" $s.Value }}{{ end }}'
        "{{ end }}"
    )


def _links(alert: str) -> dict[str, str]:
    return {"runbook_url": f"{RUNBOOK_BASE}#{alert.lower()}", DASHBOARD_ANNOTATION: _DASHBOARD}


def recording_rules() -> list[dict[str, Any]]:
    """User traffic only: a gateway's mirrored copies (``traffic="shadow"``) are no one's requests,
    so they count in no rate, ratio, latency or alert built on these."""
    live = m.LIVE_TRAFFIC_MATCHER
    requests = f"sum by ({_BY}) (rate({m.PREDICTIONS_TOTAL}{{{live}}}[1m]))"
    errors = f'sum by ({_BY}) (rate({m.PREDICTIONS_TOTAL}{{{live}, {m.LABEL_OUTCOME}="{m.OUTCOME_ERROR}"}}[1m]))'
    return [
        {"record": m.RECORD_REQUEST_RATE, "expr": f"sum by ({_BY}, {m.LABEL_OUTCOME}) (rate({m.PREDICTIONS_TOTAL}{{{live}}}[1m]))"},
        # No traffic gives no ratio (not 0/0): an idle canary is neither good nor bad.
        {"record": m.RECORD_ERROR_RATIO, "expr": f"{errors} / ({requests} > 0)"},
        {"record": m.RECORD_LATENCY_P95, "expr": f"histogram_quantile(0.95, sum by ({_BY}, le) (rate({m.PREDICTION_LATENCY_SECONDS}_bucket{{{live}}}[1m])))"},
    ]


def quality_recording_rules() -> list[dict[str, Any]]:
    """Live quality from ground-truth feedback over :data:`metrics.QUALITY_WINDOW`, per version."""
    window = m.QUALITY_WINDOW
    labelled = f"sum by ({_BY}) (increase({m.LABELLED_PREDICTIONS_TOTAL}[{window}]))"
    correct = f'sum by ({_BY}) (increase({m.LABELLED_PREDICTIONS_TOTAL}{{{m.LABEL_OUTCOME}="{m.OUTCOME_CORRECT}"}}[{window}]))'
    errors = f"sum by ({_BY}) (increase({m.PREDICTION_ABSOLUTE_ERROR}_count[{window}]))"
    return [
        {"record": m.RECORD_LABELLED_COUNT, "expr": f"{labelled} or {errors}"},
        {"record": m.RECORD_LABELLED_BY_OUTCOME, "expr": f"sum by ({_BY}, {m.LABEL_OUTCOME}) (increase({m.LABELLED_PREDICTIONS_TOTAL}[{window}]))"},
        # No labels give no accuracy (not 0/0): an unlabelled version is neither good nor bad.
        {"record": m.RECORD_LIVE_ACCURACY, "expr": f"{correct} / ({labelled} > 0)"},
        {"record": m.RECORD_LIVE_MAE, "expr": f"sum by ({_BY}) (increase({m.PREDICTION_ABSOLUTE_ERROR}_sum[{window}])) / ({errors} > 0)"},
        {"record": m.RECORD_LIVE_RMSE, "expr": f"sqrt(sum by ({_BY}) (increase({m.PREDICTION_SQUARED_ERROR_TOTAL}[{window}])) / ({errors} > 0))"},
    ]


def _quality_drop_expr() -> str:
    """Live quality past the threshold the model server exports from its spec (one generic rule
    for every ModelDeployment: no per-resource rules to keep in step with the specs), judged
    only with at least ``minLabels`` labelled predictions in the window."""
    on = f"on ({_BY})"

    def threshold(metric: str) -> str:
        return f'group_left ({m.LABEL_METRIC}) max by ({_BY}, {m.LABEL_METRIC}) ({m.QUALITY_THRESHOLD}{{{m.LABEL_METRIC}="{metric}"}})'

    crossed = (
        f"({m.RECORD_LIVE_ACCURACY} < {on} {threshold('accuracy')}) "
        f"or ({m.RECORD_LIVE_MAE} > {on} {threshold('mae')}) "
        f"or ({m.RECORD_LIVE_RMSE} > {on} {threshold('rmse')})"
    )
    enough = f"{m.RECORD_LABELLED_COUNT} >= {on} max by ({_BY}) ({m.QUALITY_MIN_LABELS})"
    return f"({crossed}) and {on} ({enough})"


def alerting_rules(drift_for: str = DRIFT_FOR) -> list[dict[str, Any]]:
    return [
        {
            "alert": DRIFT_ALERT,
            "expr": f"max by ({_BY}) ({m.DATA_DRIFT_DETECTED}) == 1",
            "for": drift_for,
            "labels": {"severity": "warning", "component": "model"},
            "annotations": {
                "summary": f"Input drift on {_WHO}",
                "description": (
                    f"The share of drifted features has reached the ModelDeployment's driftShare for {drift_for}. "
                    "With monitoring.retrainOnDrift the operator retrains on this alert."
                ),
                DRIFTED_FEATURES_ANNOTATION: _drifted_features_template(),
                **_links(DRIFT_ALERT),
            },
        },
        {
            "alert": NOT_READY_ALERT,
            "expr": f"max by ({_BY}) ({m.MODEL_READY}) == 0",
            "for": NOT_READY_FOR,
            "labels": {"severity": "warning", "component": "model"},
            "annotations": {
                "summary": f"{_WHO} has not loaded its model for {NOT_READY_FOR}",
                "description": "The model server answers 503: its log says why loading failed (often MLflow unreachable or the version missing).",
                **_links(NOT_READY_ALERT),
            },
        },
        {
            "alert": ERROR_RATE_ALERT,
            "expr": f"{m.RECORD_ERROR_RATIO} > {ERROR_RATIO_THRESHOLD}",
            "for": ERROR_RATE_FOR,
            "labels": {"severity": "critical", "component": "model"},
            "annotations": {
                "summary": f"{_WHO} fails {{{{ $value | humanizePercentage }}}} of its requests",
                "description": f"More than {ERROR_RATIO_THRESHOLD:.0%} of prediction requests end in a server error (invalid input does not count).",
                **_links(ERROR_RATE_ALERT),
            },
        },
        {
            "alert": QUALITY_DROP_ALERT,
            "expr": _quality_drop_expr(),
            "for": QUALITY_DROP_FOR,
            "labels": {"severity": "warning", "component": "model"},
            "annotations": {
                "summary": f"Live {{{{ $labels.{m.LABEL_METRIC} }}}} of {_WHO} is {{{{ $value | printf \"%.4g\" }}}}, past its threshold",
                "description": (
                    f"Ground-truth feedback over the last {m.QUALITY_WINDOW} puts the version's live {{{{ $labels.{m.LABEL_METRIC} }}}} past "
                    f"spec.monitoring.feedback.qualityThreshold for {QUALITY_DROP_FOR} ({m.RECORD_LABELLED_COUNT} counts the labels behind it). "
                    "The model got worse on today's data even if the inputs look alike."
                ),
                **_links(QUALITY_DROP_ALERT),
            },
        },
        {
            "alert": DRIFT_EVALUATION_FAILING_ALERT,
            "expr": (
                f'sum by ({_BY}) (increase({m.DRIFT_EVALUATIONS_TOTAL}{{{m.LABEL_OUTCOME}="error"}}[15m])) > 0 '
                f'unless sum by ({_BY}) (increase({m.DRIFT_EVALUATIONS_TOTAL}{{{m.LABEL_OUTCOME}="success"}}[15m])) > 0'
            ),
            "labels": {"severity": "warning", "component": "model"},
            "annotations": {
                "summary": f"Drift evaluation keeps failing on {_WHO}",
                "description": "No drift evaluation succeeded in 15 minutes, so drift would go unnoticed: see the model server's log.",
                **_links(DRIFT_EVALUATION_FAILING_ALERT),
            },
        },
    ]


def _milestone_rule(alert: str, gauge: str, labels: tuple[str, ...], severity: str, summary: str, description: str) -> dict[str, Any]:
    """An alert that fires while the operator's timestamp gauge of a milestone is younger than
    :data:`NOTIFICATION_WINDOW_SECONDS`, then resolves by itself.

    A timestamp, not ``increase()`` of a counter: every milestone is a new label set (its
    version), and a series whose first sample is already 1 shows no increase; a restarted
    Prometheus would also take old series for new ones. ``time() - timestamp`` is right on the
    first scrape and needs no history (kube-prometheus-stack's job alerts use
    ``kube_job_status_start_time`` the same way); Alertmanager's repeat_interval, longer than
    the window, keeps it to one notification, much like Flagger's one message per canary event.
    ``max_over_time`` over the window keeps it firing through a failed scrape or an operator
    restart (which forgets the gauge): a gap would resolve it, and its return notify again."""
    by = ", ".join(("namespace", m.LABEL_DEPLOYMENT, m.LABEL_MODEL, m.LABEL_VERSION, *labels))
    window = NOTIFICATION_WINDOW_SECONDS
    return {
        "alert": alert,
        "expr": f"time() - max by ({by}) (max_over_time({gauge}[{window}s])) < {window}",
        "labels": {"severity": severity, "component": "operator"},
        "annotations": {"summary": summary, "description": description, **_links(alert)},
    }


def notification_rules() -> list[dict[str, Any]]:
    """Retrainings, promotions and rollbacks as alerts, so that Alertmanager's Slack and e-mail
    receivers carry them (never to the operator's webhook: modelship.monitoring.alertmanager)."""
    where = f"{{{{ $labels.namespace }}}}/{{{{ $labels.{m.LABEL_DEPLOYMENT} }}}}"
    version = f"{{{{ $labels.{m.LABEL_VERSION} }}}}"
    describe = f"`kubectl -n {{{{ $labels.namespace }}}} describe mdep {{{{ $labels.{m.LABEL_DEPLOYMENT} }}}}` shows its Events and conditions."
    return [
        _milestone_rule(
            RETRAIN_STARTED_ALERT, m.OPERATOR_RETRAIN_STARTED_TIME, (m.LABEL_TRIGGER, m.LABEL_TRAINING_JOB), "info",
            f"Retraining of {where} started (trigger {{{{ $labels.{m.LABEL_TRIGGER} }}}}, job {{{{ $labels.{m.LABEL_TRAINING_JOB} }}}})"
            f"{{{{ with $labels.{m.LABEL_VERSION} }}}}; version {{{{ . }}}} serves meanwhile{{{{ end }}}}",
            f"The operator started a training Job on a drift or quality alert, its schedule or `modelship retrain`. A version that passes the quality gate rolls out through spec.rollout. {describe}",
        ),
        _milestone_rule(
            PROMOTED_ALERT, m.OPERATOR_PROMOTED_TIME, (m.LABEL_PREVIOUS_VERSION,), "info",
            f"Version {version} of {where} is champion{{{{ with $labels.{m.LABEL_PREVIOUS_VERSION} }}}}, replacing version {{{{ . }}}}{{{{ end }}}}",
            f"Model {{{{ $labels.{m.LABEL_MODEL} }}}} version {version} serves all traffic; the previous champion stays warm for spec.rollout.rollbackWindow (`modelship rollback`). {describe}",
        ),
        _milestone_rule(
            ROLLED_BACK_ALERT, m.OPERATOR_ROLLED_BACK_TIME, (m.LABEL_REASON, m.LABEL_CHAMPION_VERSION), "warning",
            f"Version {version} of {where} was rolled back ({{{{ $labels.{m.LABEL_REASON} }}}})"
            f"{{{{ with $labels.{m.LABEL_CHAMPION_VERSION} }}}}; version {{{{ . }}}} serves{{{{ end }}}}",
            f"Model {{{{ $labels.{m.LABEL_MODEL} }}}} version {version} takes no traffic: its canary analysis failed or stayed inconclusive, it was aborted, or a person rolled it back. {describe}",
        ),
    ]


def rule_groups(drift_for: str = DRIFT_FOR, records_interval: str = "30s") -> dict[str, Any]:
    """The ``groups`` document: a Prometheus rule file, and the ``spec`` of a PrometheusRule.

    The parameters exist for tests that cannot wait minutes (a short ``for``); the chart gets
    the defaults."""
    return {
        "groups": [
            {"name": "modelship.serving.records", "interval": records_interval, "rules": recording_rules()},
            {"name": "modelship.quality.records", "interval": records_interval, "rules": quality_recording_rules()},
            {"name": "modelship.serving.alerts", "rules": alerting_rules(drift_for)},
            {"name": "modelship.operator.notifications", "rules": notification_rules()},
        ]
    }


RULES_FILE = generated.GeneratedFile("modelship monitoring rules", "modelship.monitoring.rules", RULES_OUTPUTS, rule_groups, width=1000)
