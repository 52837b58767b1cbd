"""The Prometheus rules are generated from the metric names: the committed file is current, and
every metric a rule reads is one the model server exports (or a recording rule defined here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from modelship.monitoring import metrics
from modelship.monitoring.rules import RULES_FILE, RULES_OUTPUTS, rule_groups

REPO = Path(__file__).resolve().parents[3]


def test_committed_rules_match_the_generator() -> None:
    assert RULES_FILE.stale(REPO) == [], "run `modelship monitoring rules --write` and commit the result"


def test_check_command_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / RULES_OUTPUTS[0]
    stale.parent.mkdir(parents=True)
    stale.write_text("groups: []\n")
    result = subprocess.run([sys.executable, "-m", "modelship.cli_main", "monitoring", "rules", "--check", "--root", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1 and "stale" in result.stderr and "modelship monitoring rules --write" in result.stderr


def test_every_metric_a_rule_reads_exists() -> None:
    exported = {value for name, value in vars(metrics).items() if name.isupper() and isinstance(value, str) and value.startswith("modelship")}
    histograms = {metrics.PREDICTION_LATENCY_SECONDS, metrics.BATCH_SIZE, metrics.PREDICTION_VALUE, metrics.DRIFT_EVALUATION_SECONDS}
    exported |= {f"{name}_{suffix}" for name in histograms for suffix in ("bucket", "sum", "count")}
    rules = [rule for group in rule_groups()["groups"] for rule in group["rules"]]
    read = {name for rule in rules for name in re.findall(r"\bmodelship[a-z0-9_:]*", rule["expr"])}
    assert read and read <= exported, read - exported
