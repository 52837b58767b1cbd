"""tests/support/images.py: the Kubernetes rules for a container's argv and env, applied to the
local commands that stand in for the chart's images."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from images import IMAGES, VENV_BIN, UnknownImage, expand, image_name, local_command


@pytest.mark.parametrize(
    "image, name",
    [
        ("ghcr.io/modelship/modelship-mlflow:0.1.0", "modelship-mlflow"),
        ("docker.io/library/postgres:15.18-bookworm", "postgres"),
        ("postgres@sha256:abc", "postgres"),
        ("localhost:5000/modelship-operator", "modelship-operator"),
        ("modelship-training-jobs:dev", "modelship-training-jobs"),
    ],
)
def test_image_name(image, name):
    assert image_name(image) == name


@pytest.mark.parametrize(
    "text, expanded",
    [
        ("$(A)-x", "1-x"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("no refs", "no refs"),
    ],
)
def test_kubernetes_variable_expansion(text, expanded):
    assert expand(text, {"A": "1"}) == expanded


MLFLOW = "ghcr.io/modelship/modelship-mlflow:0.1.0"


@pytest.mark.parametrize(
    "container, argv",
    [
        # command replaces ENTRYPOINT and drops CMD; args replace CMD.
        ({"image": MLFLOW, "command": ["mlflow", "server"], "args": ["--port=1"]}, [str(VENV_BIN / "mlflow"), "server", "--port=1"]),
        ({"image": MLFLOW, "args": ["ui"]}, [str(VENV_BIN / "mlflow"), "ui"]),
        ({"image": MLFLOW}, [str(VENV_BIN / "mlflow"), *IMAGES["modelship-mlflow"].cmd]),
        ({"image": MLFLOW, "command": ["mlflow", "server"]}, [str(VENV_BIN / "mlflow"), "server"]),
        ({"image": "ghcr.io/modelship/modelship-operator:1", "args": ["--http-port=8080"]}, [str(VENV_BIN / "modelship"), "operator", "--http-port=8080"]),
    ],
)
def test_argv_follows_the_kubernetes_rules(container, argv):
    assert local_command(container).argv == argv


def test_env_paths_hosts_and_listen():
    container = {
        "image": MLFLOW,
        "command": ["mlflow", "server"],
        "args": ["--artifacts-destination=/mlflow/artifacts", "--host=0.0.0.0"],
        "env": [{"name": "USER", "value": "u"}, {"name": "URI", "value": "postgresql://$(USER)@db:5432/x"}, {"name": "HOME", "value": "/tmp"}],
    }
    local = local_command(container, paths={"/mlflow/artifacts": Path("/srv/a"), "/tmp": Path("/srv/tmp")}, hosts={"db:5432": "127.0.0.1:6000"}, listen=("127.0.0.1", 7000), base_env={})
    assert local.argv[1:] == ["server", "--artifacts-destination=/srv/a", "--host=0.0.0.0", "--host=127.0.0.1", "--port=7000"]
    assert local.env["URI"] == "postgresql://u@127.0.0.1:6000/x" and local.env["HOME"] == "/srv/tmp"
    # The image's ENV is there under the container's.
    assert local.env["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_a_replacement_is_not_rewritten_again():
    container = {"image": "postgres:15", "env": [{"name": "POSTGRES_PASSWORD_FILE", "value": "/etc/secret/password"}]}
    local = local_command(container, paths={"/etc/secret": Path("/tmp/x/secret"), "/tmp": Path("/tmp/x/tmp")})
    assert local.env["POSTGRES_PASSWORD_FILE"] == "/tmp/x/secret/password"
    # The postgres image's entrypoint is the local stand-in, run by the system Python.
    assert local.argv[1:4] == [str(Path(sys.modules["images"].__file__).resolve()), "postgres-entrypoint", "postgres"]


def test_unknown_image_and_unresolved_env_are_errors_naming_them():
    with pytest.raises(UnknownImage, match="busybox"):
        local_command({"name": "c", "image": "busybox:1"})
    with pytest.raises(ValueError, match="PGPASSWORD"):
        local_command({"name": "c", "image": MLFLOW, "env": [{"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]})
