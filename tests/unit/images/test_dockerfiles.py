"""The Dockerfiles: hadolint-clean, multi-stage, pinned bases, non-root, each installing only its
extra; the build context leaves local state out."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
IMAGES = {
    "operator/Dockerfile": '".[operator]"',
    "training-jobs/Dockerfile": '".[training]"',
    "model-service/Dockerfile": '".[serving]"',
    "mlflow-server/Dockerfile": "-r /tmp/requirements.txt",
}
EXTRAS = {"operator", "training", "serving"}


@pytest.mark.parametrize("path", sorted(IMAGES))
def test_hadolint_clean(path):
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), "--failure-threshold", "info", str(REPO / path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", sorted(IMAGES))
def test_multi_stage_pinned_non_root_one_extra(path):
    text = (REPO / path).read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(bases) == 2 and re.search(r"^FROM \S+ AS build$", text, re.MULTILINE)
    # A full patch version of Python and the Debian release: a rebuild gets the same base.
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    assert "COPY --from=build" in text
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users == ["10001"]
    installs = re.findall(r"pip install --no-cache-dir (.+)$", text, re.MULTILINE)
    assert installs == [IMAGES[path]]
    other_extras = {e for e in EXTRAS if f"[{e}]" in text} - {IMAGES[path].strip('".[]')}
    assert not other_extras, f"{path} installs {other_extras} too"


def test_build_context_leaves_local_state_out():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "tests", "**/__pycache__", "*.db", "mlruns"} <= ignored
    # ...but keeps what the Dockerfiles copy.
    copied = {word for path in IMAGES for word in re.findall(r"^COPY (?!--from)(.+) \S+$", (REPO / path).read_text(), re.MULTILINE)}
    for sources in copied:
        for source in sources.split():
            assert source.split("/")[0] not in ignored, source


def test_mlflow_image_pins_the_mlflow_the_tests_run():
    import mlflow

    pins = dict(line.split("==") for line in (REPO / "mlflow-server/requirements.txt").read_text().splitlines() if "==" in line and not line.startswith("#"))
    assert pins["mlflow"] == mlflow.__version__ and "psycopg2-binary" in pins
