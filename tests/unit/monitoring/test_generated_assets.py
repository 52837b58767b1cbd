"""The Prometheus rules and the Grafana dashboards are generated from the metric names: the
committed files are current, and every metric they read is one the model server exports (or a
recording rule the rules define)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modelship.generated import GeneratedFile
from modelship.monitoring import metrics
from modelship.monitoring.dashboards import DASHBOARD_FILE, panel_queries, quality_panel_queries, rollout_queries, stat_queries
from modelship.monitoring.alertmanager import CHART_FILE as ALERTMANAGER_FILE
from modelship.monitoring.dashboards import DASHBOARD_FILE, panel_queries, stat_queries
from modelship.monitoring.rules import RULES_FILE, RULES_OUTPUTS, rule_groups

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("generated", [RULES_FILE, DASHBOARD_FILE, ALERTMANAGER_FILE], ids=["rules", "dashboards", "alertmanager"])
def test_committed_files_match_the_generator(generated: GeneratedFile) -> None:
    assert generated.stale(REPO) == [], f"run `{generated.command} --write` and commit the result"


def test_check_command_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / RULES_OUTPUTS[0]
    stale.parent.mkdir(parents=True)
    stale.write_text("groups: []\n")
    result = subprocess.run([sys.executable, "-m", "modelship.cli_main", "monitoring", "rules", "--check", "--root", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1 and "stale" in result.stderr and "modelship monitoring rules --write" in result.stderr


def _exported() -> set[str]:
    names = {value for name, value in vars(metrics).items() if name.isupper() and isinstance(value, str) and value.startswith("modelship")}
    histograms = {metrics.PREDICTION_LATENCY_SECONDS, metrics.BATCH_SIZE, metrics.PREDICTION_VALUE, metrics.DRIFT_EVALUATION_SECONDS, metrics.PREDICTION_ABSOLUTE_ERROR}
    return names | {f"{name}_{suffix}" for name in histograms for suffix in ("bucket", "sum", "count")}


def _read(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in re.findall(r"\bmodelship[a-z0-9_:]*", expr)}


def test_every_metric_a_rule_reads_exists() -> None:
    read = _read([rule["expr"] for group in rule_groups()["groups"] for rule in group["rules"]])
    assert read and read <= _exported(), read - _exported()


def test_every_metric_a_dashboard_reads_exists() -> None:
    committed = json.loads((REPO / DASHBOARD_FILE.outputs[0]).read_text())
    expressions = [target["expr"] for panel in committed["panels"] for target in panel.get("targets", [])]  # rows have none
    assert len(expressions) == len(panel_queries()) + len(stat_queries()) + len(quality_panel_queries()) + len(rollout_queries())
    read = _read(expressions)
    assert read and read <= _exported(), read - _exported()
