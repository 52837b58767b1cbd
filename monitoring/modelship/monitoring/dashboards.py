"""The Grafana dashboards, generated with grafana-foundation-sdk from the metric and recording
rule names in :mod:`modelship.monitoring.metrics` (never hand-edited JSON).

``modelship monitoring dashboards --write`` writes :data:`DASHBOARD_OUTPUTS`; the chart ships
them as ConfigMaps labelled for Grafana's dashboard sidecar (kube-prometheus-stack's
convention). A test runs every panel's query against a real Prometheus scraping a real model
server (tests/serving/test_prometheus.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelship import generated
from modelship.monitoring import metrics as m

DASHBOARD_OUTPUTS = (Path("charts/modelship/files/dashboards/modelship-model-serving.json"),)
DASHBOARD_UID = "modelship-model-serving"

#: The selector every panel query applies, driven by the dashboard's variables.
SELECTED = 'namespace=~"$namespace", model=~"$model"'
_PER_VERSION = "version, variant"
_VERSION_LEGEND = "v{{version}} {{variant}}"


def panel_queries() -> list[tuple[str, str, str, str]]:
    """(title, unit, PromQL, legend) of every time series panel, in order."""
    rate = "$__rate_interval"
    return [
        ("Requests per second", "reqps", f'sum by ({_PER_VERSION}) ({m.RECORD_REQUEST_RATE}{{{SELECTED}, outcome="{m.OUTCOME_SUCCESS}"}})', _VERSION_LEGEND),
        ("Server error ratio", "percentunit", f"max by ({_PER_VERSION}) ({m.RECORD_ERROR_RATIO}{{{SELECTED}}})", _VERSION_LEGEND),
        ("p95 latency", "s", f"max by ({_PER_VERSION}) ({m.RECORD_LATENCY_P95}{{{SELECTED}}})", _VERSION_LEGEND),
        ("Rejected requests per second (invalid input)", "reqps", f'sum by ({_PER_VERSION}) ({m.RECORD_REQUEST_RATE}{{{SELECTED}, outcome="{m.OUTCOME_INVALID}"}})', _VERSION_LEGEND),
        (
            "Rows per model call (adaptive batching)",
            "short",
            f"sum by ({_PER_VERSION}) (rate({m.BATCH_SIZE}_sum{{{SELECTED}}}[{rate}])) / sum by ({_PER_VERSION}) (rate({m.BATCH_SIZE}_count{{{SELECTED}}}[{rate}]))",
            _VERSION_LEGEND,
        ),
        ("Share of drifted features", "percentunit", f"max by ({_PER_VERSION}) ({m.DRIFTED_FEATURES_SHARE}{{{SELECTED}}})", _VERSION_LEGEND),
        ("Drift score per feature", "short", f"max by (feature) ({m.FEATURE_DRIFT_SCORE}{{{SELECTED}}})", "{{feature}}"),
        ("Rows in the drift window", "short", f"max by ({_PER_VERSION}) ({m.DRIFT_WINDOW_ROWS}{{{SELECTED}}})", _VERSION_LEGEND),
    ]


def quality_panel_queries() -> list[tuple[str, str, str, str]]:
    """(title, unit, PromQL, legend) of the "Quality (ground-truth feedback)" row."""
    rate = "$__rate_interval"
    window = m.QUALITY_WINDOW
    return [
        (f"Live accuracy ({window}, classification)", "percentunit", f"max by ({_PER_VERSION}) ({m.RECORD_LIVE_ACCURACY}{{{SELECTED}}})", _VERSION_LEGEND),
        (f"Labelled predictions ({window}) by outcome", "short", f"sum by ({_PER_VERSION}, outcome) ({m.RECORD_LABELLED_BY_OUTCOME}{{{SELECTED}}})", "v{{version}} {{variant}} {{outcome}}"),
        (f"Live MAE ({window}, regression)", "short", f"max by ({_PER_VERSION}) ({m.RECORD_LIVE_MAE}{{{SELECTED}}})", _VERSION_LEGEND),
        (f"Live RMSE ({window}, regression)", "short", f"max by ({_PER_VERSION}) ({m.RECORD_LIVE_RMSE}{{{SELECTED}}})", _VERSION_LEGEND),
        ("Quality threshold (spec)", "short", f"max by ({_PER_VERSION}, {m.LABEL_METRIC}) ({m.QUALITY_THRESHOLD}{{{SELECTED}}})", "v{{version}} {{variant}} {{metric}}"),
        ("Prediction store: records written per second", "short", f"sum by ({_PER_VERSION}) (rate({m.PREDICTION_STORE_WRITTEN_TOTAL}{{{SELECTED}}}[{rate}]))", _VERSION_LEGEND),
        ("Prediction store: records dropped per second", "short", f"sum by ({_PER_VERSION}) (rate({m.PREDICTION_STORE_DROPPED_TOTAL}{{{SELECTED}}}[{rate}]))", _VERSION_LEGEND),
    ]


def stat_queries() -> list[tuple[str, str]]:
    """(title, PromQL) of the stat panels across the top."""
    return [
        ("Ready replicas", f"sum by ({_PER_VERSION}) ({m.MODEL_READY}{{{SELECTED}}})"),
        ("Drift detected", f"max by ({_PER_VERSION}) ({m.DATA_DRIFT_DETECTED}{{{SELECTED}}})"),
    ]


def rollout_queries() -> list[tuple[str, str, str, str]]:
    """(title, unit, PromQL, legend) of the rollout row: the operator's gauges (scraped from the
    operator, so only ``model`` selects) beside each version's error ratio and p95. A test runs
    them against a real Prometheus scraping a real operator in a rollout (tests/integration/test_rollout.py)."""
    model = 'model=~"$model"'
    return [
        ("Rollout: traffic weight per version", "percent", f"max by (model, version) ({m.OPERATOR_TRAFFIC_WEIGHT}{{{model}}})", "{{model}} v{{version}}"),
        ("Rollout: canary step", "short", f"max by (model) ({m.OPERATOR_ROLLOUT_STEP}{{{model}}})", "{{model}}"),
        ("Rollout: analysis verdicts", "short", f"max by (model, check, verdict) ({m.OPERATOR_ANALYSIS_VERDICT}{{{model}}}) == 1", "{{check}}: {{verdict}}"),
        ("Rollout: error ratio, candidate vs champion", "percentunit", f"max by ({_PER_VERSION}) ({m.RECORD_ERROR_RATIO}{{{SELECTED}}})", _VERSION_LEGEND),
        ("Rollout: p95 latency, candidate vs champion", "s", f"max by ({_PER_VERSION}) ({m.RECORD_LATENCY_P95}{{{SELECTED}}})", _VERSION_LEGEND),
        # The recording rules above are user traffic only; a shadow phase shows here.
        (
            "Rollout: shadow (mirrored) requests per second by outcome",
            "reqps",
            f"sum by ({_PER_VERSION}, {m.LABEL_OUTCOME}) (rate({m.PREDICTIONS_TOTAL}{{{SELECTED}, {m.SHADOW_TRAFFIC_MATCHER}}}[$__rate_interval]))",
            "v{{version}} {{variant}} {{outcome}}",
        ),
    ]


def model_serving_dashboard() -> dict[str, Any]:
    from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    source = DataSourceRef(type_val="prometheus", uid="${datasource}")

    def query(expr: str, legend: str) -> Any:
        return prometheus.Dataquery().ref_id("A").expr(expr).legend_format(legend).datasource(source)

    board = (
        dashboard.Dashboard("Modelship / Model serving")
        .uid(DASHBOARD_UID)
        .tags(["modelship", "generated"])
        .description("Traffic, errors, latency, batching, input drift and live quality from feedback of every served model version (generated by `modelship monitoring dashboards`).")
        .refresh("30s")
        .time("now-1h", "now")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            dashboard.QueryVariable("namespace").label("Namespace").datasource(source)
            .query(f"label_values({m.MODEL_INFO}, namespace)").multi(True).include_all(True)
        )
        .with_variable(
            dashboard.QueryVariable("model").label("Model").datasource(source)
            .query(f'label_values({m.MODEL_INFO}{{namespace=~"$namespace"}}, model)').multi(True).include_all(True)
        )
    )
    for title, expr in stat_queries():
        board = board.with_panel(stat.Panel().title(title).datasource(source).span(12).height(4).with_target(query(expr, _VERSION_LEGEND)))
    for title, unit, expr, legend in panel_queries():
        board = board.with_panel(timeseries.Panel().title(title).unit(unit).datasource(source).span(12).height(8).with_target(query(expr, legend)))
    for row, queries in (("Quality (ground-truth feedback)", quality_panel_queries()), ("Rollout", rollout_queries())):
        board = board.with_row(dashboard.Row(row))
        for title, unit, expr, legend in queries:
            board = board.with_panel(timeseries.Panel().title(title).unit(unit).datasource(source).span(12).height(8).with_target(query(expr, legend)))
    return json.loads(JSONEncoder(sort_keys=True).encode(board.build()))


DASHBOARD_FILE = generated.GeneratedFile("modelship monitoring dashboards", "modelship.monitoring.dashboards", DASHBOARD_OUTPUTS, model_serving_dashboard, json=True)
