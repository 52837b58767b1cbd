"""The CLI as a user meets it: help lists the commands; a bad file gets one line a problem."""

from __future__ import annotations

import subprocess
import sys

import yaml

from spec_cases import REPO, base_resource

CLI = [sys.executable, "-m", "modelship.cli_main"]


def test_help_lists_every_command():
    out = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("crd", "validate", "train", "serve", "run", "operator"):
        assert command in out


def test_validate_accepts_a_sample():
    result = subprocess.run([*CLI, "validate", "-f", str(REPO / "manifests/samples/diabetes-builtin.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout


def test_validate_names_the_field_without_a_traceback(tmp_path):
    resource = base_resource()
    resource["spec"]["rollout"]["canary"]["steps"] = [{"weight": 10}, {"weight": 5}, {"weight": 100}]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(resource))
    result = subprocess.run([*CLI, "validate", "-f", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: spec.rollout.canary.steps[1].weight: must be greater than previous step (10)"
    assert "Traceback" not in result.stderr


def test_validate_reports_unreadable_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("spec: [unclosed")
    result = subprocess.run([*CLI, "validate", "-f", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and "cannot read" in result.stderr
