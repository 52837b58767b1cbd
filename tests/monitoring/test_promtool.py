"""The generated Prometheus rules on Prometheus's own rule engine (``promtool test rules``):
synthetic series of two replicas of a served version, and what each rule must make of them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelship.monitoring import metrics as m
from modelship.monitoring import rules

REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / rules.RULES_OUTPUTS[0]
SERVED = {"namespace": "team-a", m.LABEL_DEPLOYMENT: "housing-prices", "model": "housing", "version": "3", "variant": "canary"}
ALERT_LABELS = {"severity": "warning", "component": "model"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise FileNotFoundError("promtool not found: `hack/setup.sh --test` installs the Debian package prometheus")
    return path


def _selector(name: str, labels: dict[str, str]) -> str:
    body = ", ".join(f'{key}="{value}"' for key, value in labels.items())
    return f"{name}{{{body}}}"


def _series(name: str, values: str, pod: str = "housing-v3-a", served: dict[str, str] = SERVED, **extra: str) -> dict[str, str]:
    return {"series": _selector(name, {**served, "pod": pod, **extra}), "values": values}


def _annotations(alert: str, value: str = "", labels: dict[str, str] = SERVED, **expanded: str) -> dict[str, str]:
    """The alert's annotations with Prometheus's templating done by hand for ``labels``
    (``expanded`` gives the expected text of annotations that query Prometheus)."""
    rule = next(r for g in rules.rule_groups()["groups"] for r in g["rules"] if r.get("alert") == alert)
    out = dict(expanded)
    for key, text in rule["annotations"].items():
        if key in expanded:
            continue
        for label, label_value in labels.items():
            text = text.replace(f"{{{{ $labels.{label} }}}}", label_value)
        out[key] = text.replace("{{ $value | humanizePercentage }}", value).replace('{{ $value | printf "%.4g" }}', value)
    return out


def _run(tmp_path: Path, tests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    document = {"rule_files": [str(RULES_FILE)], "evaluation_interval": "15s", "tests": tests}
    path = tmp_path / "rules_test.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return subprocess.run([_promtool(), "test", "rules", str(path)], capture_output=True, text=True)


def _passes(tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    result = _run(tmp_path, tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rule_file_is_valid() -> None:
    result = subprocess.run([_promtool(), "check", "rules", str(RULES_FILE)], capture_output=True, text=True)
    assert result.returncode == 0 and "SUCCESS: 16 rules found" in result.stdout, result.stdout + result.stderr


def test_drift_alerts_after_it_holds_once_per_version(tmp_path: Path) -> None:
    other_resource = {**SERVED, m.LABEL_DEPLOYMENT: "other"}
    _passes(tmp_path, [{
        "interval": "1m",
        "input_series": [
            # Two replicas of the same version; drift from minute 2 on one, from minute 3 on the other.
            _series(m.DATA_DRIFT_DETECTED, "0 0 1x20", pod="housing-v3-a"),
            _series(m.DATA_DRIFT_DETECTED, "0 0 0 1x20", pod="housing-v3-b"),
            # Per-feature gauges: the annotation names the drifted ones with the higher replica's
            # score, and leaves out a feature that did not drift and another resource's features.
            _series(m.FEATURE_DRIFT_SCORE, "0.812x20", pod="housing-v3-a", feature="median_income"),
            _series(m.FEATURE_DRIFT_SCORE, "0.5x20", pod="housing-v3-b", feature="median_income"),
            _series(m.FEATURE_DRIFTED, "1x20", pod="housing-v3-a", feature="median_income"),
            _series(m.FEATURE_DRIFTED, "1x20", pod="housing-v3-b", feature="median_income"),
            _series(m.FEATURE_DRIFT_SCORE, "0.3x20", pod="housing-v3-a", feature="households"),
            _series(m.FEATURE_DRIFTED, "1x20", pod="housing-v3-a", feature="households"),
            _series(m.FEATURE_DRIFT_SCORE, "0.05x20", pod="housing-v3-a", feature="latitude"),
            _series(m.FEATURE_DRIFTED, "0x20", pod="housing-v3-a", feature="latitude"),
            _series(m.FEATURE_DRIFT_SCORE, "0.9x20", pod="other-v3-a", served=other_resource, feature="population"),
            _series(m.FEATURE_DRIFTED, "1x20", pod="other-v3-a", served=other_resource, feature="population"),
        ],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": rules.DRIFT_ALERT, "exp_alerts": []},  # pending, not yet 5m
            {"eval_time": "8m", "alertname": rules.DRIFT_ALERT, "exp_alerts": [{
                "exp_labels": {**ALERT_LABELS, **SERVED},
                "exp_annotations": _annotations(rules.DRIFT_ALERT, **{rules.DRIFTED_FEATURES_ANNOTATION: "households=0.3, median_income=0.812"}),
            }]},
        ],
    }])


def test_every_alert_links_its_runbook_and_the_dashboard_of_its_resource() -> None:
    for rule in [*rules.alerting_rules(), *rules.notification_rules()]:
        annotations = rule["annotations"]
        assert annotations["runbook_url"].endswith("#" + rule["alert"].lower())
        assert annotations[rules.DASHBOARD_ANNOTATION].startswith("/d/modelship-model-serving?var-namespace={{ $labels.namespace }}")
        assert f"$labels.{m.LABEL_DEPLOYMENT}" in annotations["summary"]
        assert m.LABEL_DEPLOYMENT in rule["expr"] or rule["expr"].startswith("modelship:")


def test_a_short_drift_does_not_alert(tmp_path: Path) -> None:
    _passes(tmp_path, [{
        "interval": "1m",
        "input_series": [_series(m.DATA_DRIFT_DETECTED, "0 1 1 1 0x20")],
        "alert_rule_test": [{"eval_time": t, "alertname": rules.DRIFT_ALERT, "exp_alerts": []} for t in ("4m", "6m", "10m")],
    }])


def test_the_alert_engine_really_checks_expectations(tmp_path: Path) -> None:
    """The harness can fail: expecting no alert where drift held for 10 minutes is refused."""
    result = _run(tmp_path, [{
        "interval": "1m",
        "input_series": [_series(m.DATA_DRIFT_DETECTED, "1x20")],
        "alert_rule_test": [{"eval_time": "10m", "alertname": rules.DRIFT_ALERT, "exp_alerts": []}],
    }])
    assert result.returncode != 0 and rules.DRIFT_ALERT in result.stdout + result.stderr


def test_error_ratio_latency_and_an_idle_version(tmp_path: Path) -> None:
    idle = {**SERVED, "version": "2", "variant": "champion"}
    _passes(tmp_path, [{
        "interval": "15s",
        "input_series": [
            # 90 successes and 10 errors every 15 s: an error ratio of exactly 0.1.
            _series(m.PREDICTIONS_TOTAL, "0+90x60", outcome="success", endpoint="predict"),
            _series(m.PREDICTIONS_TOTAL, "0+10x60", outcome="error", endpoint="predict"),
            _series(m.PREDICTIONS_TOTAL, "0+0x60", outcome="invalid", endpoint="predict"),
            # Every request between 10 and 25 ms: p95 interpolates to 0.01 + 0.95 × 0.015.
            _series(f"{m.PREDICTION_LATENCY_SECONDS}_bucket", "0+0x60", le="0.01", endpoint="predict"),
            _series(f"{m.PREDICTION_LATENCY_SECONDS}_bucket", "0+100x60", le="0.025", endpoint="predict"),
            _series(f"{m.PREDICTION_LATENCY_SECONDS}_bucket", "0+100x60", le="+Inf", endpoint="predict"),
            # An idle version: counters exist but never move.
            _series(m.PREDICTIONS_TOTAL, "5x60", pod="housing-v2-a", served=idle, outcome="success", endpoint="predict"),
            _series(m.PREDICTIONS_TOTAL, "0x60", pod="housing-v2-a", served=idle, outcome="error", endpoint="predict"),
        ],
        "promql_expr_test": [
            # Scaled and rounded: the engine's floating point gives 0.09999999999999999.
            {"expr": f"round({m.RECORD_ERROR_RATIO} * 1000)", "eval_time": "10m", "exp_samples": [{"labels": _selector("", SERVED), "value": 100}]},
            {"expr": f'{m.RECORD_REQUEST_RATE}{{outcome="success", version="3"}}', "eval_time": "10m", "exp_samples": [{"labels": _selector(m.RECORD_REQUEST_RATE, {**SERVED, "outcome": "success"}), "value": 6}]},
            {"expr": f'round({m.RECORD_LATENCY_P95}{{version="3"}} * 100000)', "eval_time": "10m", "exp_samples": [{"labels": _selector("", SERVED), "value": 2425}]},
            # No traffic gives no error ratio: an idle canary is neither good nor bad.
            {"expr": f'{m.RECORD_ERROR_RATIO}{{version="2"}}', "eval_time": "10m", "exp_samples": []},
        ],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": rules.ERROR_RATE_ALERT, "exp_alerts": []},
            {"eval_time": "10m", "alertname": rules.ERROR_RATE_ALERT, "exp_alerts": [
                {"exp_labels": {"severity": "critical", "component": "model", **SERVED}, "exp_annotations": _annotations(rules.ERROR_RATE_ALERT, "10%")},
            ]},
        ],
    }])


def test_mirrored_copies_count_in_no_user_figure(tmp_path: Path) -> None:
    """A candidate in a shadow phase: its user requests all succeed fast; the gateway's mirrored
    copies (``traffic="shadow"``) all fail slowly, and neither the rules nor the alert see them."""
    live, shadow = {"traffic": m.TRAFFIC_LIVE, "endpoint": "predict"}, {"traffic": m.TRAFFIC_SHADOW, "endpoint": "predict"}
    _passes(tmp_path, [{
        "interval": "15s",
        "input_series": [
            _series(m.PREDICTIONS_TOTAL, "0+30x60", outcome="success", **live),
            _series(m.PREDICTIONS_TOTAL, "0+0x60", outcome="error", **live),
            _series(m.PREDICTIONS_TOTAL, "0+0x60", outcome="success", **shadow),
            _series(m.PREDICTIONS_TOTAL, "0+90x60", outcome="error", **shadow),
            _series(f"{m.PREDICTION_LATENCY_SECONDS}_bucket", "0+30x60", le="0.01", **live),
            _series(f"{m.PREDICTION_LATENCY_SECONDS}_bucket", "0+30x60", le="+Inf", **live),
            _series(f"{m.PREDICTION_LATENCY_SECONDS}_bucket", "0+0x60", le="0.01", **shadow),
            _series(f"{m.PREDICTION_LATENCY_SECONDS}_bucket", "0+90x60", le="+Inf", **shadow),
        ],
        "promql_expr_test": [
            {"expr": f'{m.RECORD_REQUEST_RATE}{{outcome="success"}}', "eval_time": "10m", "exp_samples": [{"labels": _selector(m.RECORD_REQUEST_RATE, {**SERVED, "outcome": "success"}), "value": 2}]},
            {"expr": f'{m.RECORD_REQUEST_RATE}{{outcome="error"}}', "eval_time": "10m", "exp_samples": [{"labels": _selector(m.RECORD_REQUEST_RATE, {**SERVED, "outcome": "error"}), "value": 0}]},
            {"expr": m.RECORD_ERROR_RATIO, "eval_time": "10m", "exp_samples": [{"labels": _selector(m.RECORD_ERROR_RATIO, SERVED), "value": 0}]},
            {"expr": f"{m.RECORD_LATENCY_P95} <= 0.01", "eval_time": "10m", "exp_samples": [{"labels": _selector(m.RECORD_LATENCY_P95, SERVED), "value": 0.0095}]},
        ],
        "alert_rule_test": [{"eval_time": "10m", "alertname": rules.ERROR_RATE_ALERT, "exp_alerts": []}],
    }])


def test_a_model_that_never_loads_alerts_and_a_loaded_one_does_not(tmp_path: Path) -> None:
    loaded = {**SERVED, "version": "2"}
    _passes(tmp_path, [{
        "interval": "1m",
        "input_series": [
            _series(m.MODEL_READY, "0x20"),
            _series(m.MODEL_READY, "0 0 1x20", pod="housing-v2-a", served=loaded),
        ],
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": rules.NOT_READY_ALERT, "exp_alerts": []},
            {"eval_time": "12m", "alertname": rules.NOT_READY_ALERT, "exp_alerts": [{"exp_labels": {**ALERT_LABELS, **SERVED}, "exp_annotations": _annotations(rules.NOT_READY_ALERT)}]},
        ],
    }])


@pytest.mark.parametrize(("successes", "expected"), [("0+0x30", 1), ("0+1x30", 0)])
def test_drift_evaluation_failing_only_without_a_success(tmp_path: Path, successes: str, expected: int) -> None:
    alerts = [{"exp_labels": {**ALERT_LABELS, **SERVED}, "exp_annotations": _annotations(rules.DRIFT_EVALUATION_FAILING_ALERT)}] * expected
    _passes(tmp_path, [{
        "interval": "1m",
        "input_series": [
            _series(m.DRIFT_EVALUATIONS_TOTAL, "0+1x30", outcome="error"),
            _series(m.DRIFT_EVALUATIONS_TOTAL, successes, outcome="success"),
        ],
        "alert_rule_test": [{"eval_time": "20m", "alertname": rules.DRIFT_EVALUATION_FAILING_ALERT, "exp_alerts": alerts}],
    }])


def test_quality_drop_on_live_accuracy_below_the_threshold(tmp_path: Path) -> None:
    """60 % live accuracy against a threshold of 0.8 alerts after 10 minutes; 90 % does not, nor
    does a version with fewer labelled predictions than minLabels in the window."""
    good = {**SERVED, "version": "2", "variant": "champion"}
    few = {**SERVED, "version": "4", "variant": "challenger"}
    labelled = m.LABELLED_PREDICTIONS_TOTAL
    series = []
    for served, pod, correct, incorrect in ((SERVED, "a", "0+6x40", "0+4x40"), (good, "b", "0+9x40", "0+1x40"), (few, "c", "0+0x40", "0+1x40")):
        series += [
            _series(labelled, correct, pod=pod, served=served, outcome="correct", **{"class": "Introvert"}),
            _series(labelled, incorrect, pod=pod, served=served, outcome="incorrect", **{"class": "Extrovert"}),
            _series(m.QUALITY_THRESHOLD, "0.8x40", pod=pod, served=served, metric="accuracy"),
            _series(m.QUALITY_MIN_LABELS, "20x40", pod=pod, served=served),
        ]
    _passes(tmp_path, [{
        "interval": "1m",
        "input_series": series,
        "promql_expr_test": [
            {"expr": f'round({m.RECORD_LIVE_ACCURACY}{{version="3"}} * 1000)', "eval_time": "15m", "exp_samples": [{"labels": _selector("", SERVED), "value": 600}]},
            {"expr": f'round({m.RECORD_LABELLED_BY_OUTCOME}{{version="2", outcome="incorrect"}})', "eval_time": "15m", "exp_samples": [{"labels": _selector("", {**good, "outcome": "incorrect"}), "value": 15}]},
        ],
        "alert_rule_test": [
            {"eval_time": "8m", "alertname": rules.QUALITY_DROP_ALERT, "exp_alerts": []},  # pending: not yet 10m
            {"eval_time": "15m", "alertname": rules.QUALITY_DROP_ALERT, "exp_alerts": [
                {"exp_labels": {**ALERT_LABELS, **SERVED, "metric": "accuracy"}, "exp_annotations": _annotations(rules.QUALITY_DROP_ALERT, "0.6", {**SERVED, "metric": "accuracy"})},
            ]},
        ],
    }])


def test_quality_drop_on_live_mae_above_the_threshold(tmp_path: Path) -> None:
    """MAE 60 against a threshold of 50 alerts; the same errors give RMSE 63.2, under a 70 threshold."""
    rmse_ok = {**SERVED, "version": "5"}
    series = []
    for served, pod, metric, threshold in ((SERVED, "a", "mae", "50x40"), (rmse_ok, "b", "rmse", "70x40")):
        series += [
            _series(f"{m.PREDICTION_ABSOLUTE_ERROR}_sum", "0+600x40", pod=pod, served=served),
            _series(f"{m.PREDICTION_ABSOLUTE_ERROR}_count", "0+10x40", pod=pod, served=served),
            _series(m.PREDICTION_SQUARED_ERROR_TOTAL, "0+40000x40", pod=pod, served=served),
            _series(m.QUALITY_THRESHOLD, threshold, pod=pod, served=served, metric=metric),
            _series(m.QUALITY_MIN_LABELS, "20x40", pod=pod, served=served),
        ]
    _passes(tmp_path, [{
        "interval": "1m",
        "input_series": series,
        "promql_expr_test": [
            {"expr": f'round({m.RECORD_LIVE_MAE}{{version="3"}})', "eval_time": "15m", "exp_samples": [{"labels": _selector("", SERVED), "value": 60}]},
            {"expr": f'round({m.RECORD_LIVE_RMSE}{{version="5"}} * 10)', "eval_time": "15m", "exp_samples": [{"labels": _selector("", rmse_ok), "value": 632}]},
        ],
        "alert_rule_test": [
            {"eval_time": "15m", "alertname": rules.QUALITY_DROP_ALERT, "exp_alerts": [
                {"exp_labels": {**ALERT_LABELS, **SERVED, "metric": "mae"}, "exp_annotations": _annotations(rules.QUALITY_DROP_ALERT, "60", {**SERVED, "metric": "mae"})},
            ]},
        ],
    }])


OPERATOR = {"namespace": "team-a", m.LABEL_DEPLOYMENT: "housing-prices", "model": "team-a-housing-prices"}
#: What the operator's own scrape adds, and what the alerts must not keep.
OPERATOR_TARGET = {"pod": "modelship-operator-abc", "instance": "10.0.0.9:8080"}


def test_milestone_notifications_fire_for_their_window_then_resolve(tmp_path: Path) -> None:
    """Each milestone of the operator's timestamp gauges alerts from the first scrape that shows
    it until NOTIFICATION_WINDOW_SECONDS after it (once: the labels do not change meanwhile),
    then resolves by itself; a promotion with no previous champion and a retraining with no
    champion read without the clause about it."""
    window = rules.NOTIFICATION_WINDOW_SECONDS
    promoted = {**OPERATOR, "version": "3", m.LABEL_PREVIOUS_VERSION: "2"}
    first = {**OPERATOR, m.LABEL_DEPLOYMENT: "first", "model": "team-a-first", "version": "1", m.LABEL_PREVIOUS_VERSION: ""}
    rolled_back = {**OPERATOR, "version": "4", m.LABEL_REASON: "AnalysisFailed", m.LABEL_CHAMPION_VERSION: "3"}
    retrain = {**OPERATOR, "version": "3", m.LABEL_TRIGGER: "drift", m.LABEL_TRAINING_JOB: "housing-prices-train-ab12-2"}
    unchampioned = {**OPERATOR, m.LABEL_DEPLOYMENT: "first", "model": "team-a-first", "version": "", m.LABEL_TRIGGER: "schedule", m.LABEL_TRAINING_JOB: "first-train-cd34-1"}

    def series(name: str, labels: dict[str, str], minute: int, gap: bool = False) -> dict[str, str]:
        # Absent until the milestone, then its Unix time (the rule engine's clock starts at 0);
        # ``gap``: a failed scrape (a staleness marker) and an operator restart that forgot it.
        after = f"{minute * 60} stale _ _ {minute * 60}x30" if gap else f"{minute * 60}x30"
        return {"series": _selector(name, {**labels, **OPERATOR_TARGET}), "values": "_ " * minute + after}

    def expected(alert: str, labels: dict[str, str], summary: str, severity: str = "info") -> dict:
        present = {k: v for k, v in labels.items() if v}
        return {"exp_labels": {"severity": severity, "component": "operator", **present}, "exp_annotations": _annotations(alert, labels=present, summary=summary)}

    promoted_alert = expected(rules.PROMOTED_ALERT, promoted, "Version 3 of team-a/housing-prices is champion, replacing version 2")
    first_alert = expected(rules.PROMOTED_ALERT, first, "Version 1 of team-a/first is champion")
    rolled_back_alert = expected(rules.ROLLED_BACK_ALERT, rolled_back, "Version 4 of team-a/housing-prices was rolled back (AnalysisFailed); version 3 serves", "warning")
    retrain_alert = expected(rules.RETRAIN_STARTED_ALERT, retrain, "Retraining of team-a/housing-prices started (trigger drift, job housing-prices-train-ab12-2); version 3 serves meanwhile")
    unchampioned_alert = expected(rules.RETRAIN_STARTED_ALERT, unchampioned, "Retraining of team-a/first started (trigger schedule, job first-train-cd34-1)")
    last_minute = window // 60  # still firing at 600 - 60 s of age, resolved at 600 s
    _passes(tmp_path, [{
        "interval": "1m",
        "input_series": [
            series(m.OPERATOR_PROMOTED_TIME, promoted, 2),
            series(m.OPERATOR_PROMOTED_TIME, first, 1),
            series(m.OPERATOR_ROLLED_BACK_TIME, rolled_back, 5, gap=True),
            series(m.OPERATOR_RETRAIN_STARTED_TIME, retrain, 2),
            series(m.OPERATOR_RETRAIN_STARTED_TIME, unchampioned, 3),
        ],
        "alert_rule_test": [
            {"eval_time": "30s", "alertname": rules.PROMOTED_ALERT, "exp_alerts": []},
            {"eval_time": "1m", "alertname": rules.PROMOTED_ALERT, "exp_alerts": [first_alert]},
            {"eval_time": "3m", "alertname": rules.PROMOTED_ALERT, "exp_alerts": [promoted_alert, first_alert]},
            {"eval_time": f"{1 + last_minute}m", "alertname": rules.PROMOTED_ALERT, "exp_alerts": [promoted_alert]},
            {"eval_time": f"{1 + last_minute}m", "alertname": rules.RETRAIN_STARTED_ALERT, "exp_alerts": [retrain_alert, unchampioned_alert]},
            {"eval_time": f"{2 + last_minute}m", "alertname": rules.PROMOTED_ALERT, "exp_alerts": []},
            {"eval_time": f"{2 + last_minute}m", "alertname": rules.RETRAIN_STARTED_ALERT, "exp_alerts": [unchampioned_alert]},
            {"eval_time": "4m", "alertname": rules.ROLLED_BACK_ALERT, "exp_alerts": []},
            {"eval_time": "5m", "alertname": rules.ROLLED_BACK_ALERT, "exp_alerts": [rolled_back_alert]},
            # Through the stale sample and the minutes without the series: still the one alert.
            *({"eval_time": f"{minute}m", "alertname": rules.ROLLED_BACK_ALERT, "exp_alerts": [rolled_back_alert]} for minute in (6, 7, 8, 9)),
            {"eval_time": f"{4 + last_minute}m", "alertname": rules.ROLLED_BACK_ALERT, "exp_alerts": [rolled_back_alert]},
            {"eval_time": f"{5 + last_minute}m", "alertname": rules.ROLLED_BACK_ALERT, "exp_alerts": []},
        ],
    }])
