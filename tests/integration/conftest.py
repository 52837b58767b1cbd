"""Fixtures for the integration tier: a real control plane (etcd + kube-apiserver +
kube-controller-manager + kube-scheduler) with KWOK nodes, and a local pod runner.

The binaries come from ``hack/test-cluster/build.sh`` (cached under
``${MODELSHIP_CACHE:-~/.cache/modelship}``). When they are missing the ``cluster`` fixture
FAILS with the command to run; it never skips.

Fixtures:

``cluster`` (session)
    a :class:`testcluster.TestCluster` that is up: ``.kubeconfig`` (Path),
    ``.kubectl(*args, input=None, check=True)`` -> CompletedProcess, ``.kubectl_json(*args)``,
    ``.apply(path_or_yaml, server_side=False)``, ``.wait_until(what, predicate, timeout)``,
    ``.kubectl_bin``, ``.toolchain`` (paths of helm, CRD dirs, ...).
``namespace`` (function)
    a fresh namespace, deleted afterwards (without waiting).
``pod_runner`` (session)
    a started :class:`kubelet.ProcessKubelet` (hack/platform/kubelet.py) in label mode: pods
    labelled ``modelship.io/test-pod-runner: local`` run as local processes on the host
    network.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# tests/support is on pytest's pythonpath (pyproject.toml); the cluster logic lives beside build.sh.
for _dir in ("test-cluster", "platform"):
    if str(REPO_ROOT / "hack" / _dir) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT / "hack" / _dir))

import testcluster  # noqa: E402  (path set up just above)


@pytest.fixture(scope="session")
def cluster():
    toolchain = testcluster.Toolchain.from_cache()
    try:
        toolchain.require()
    except testcluster.MissingBinaries as err:
        pytest.fail(str(err), pytrace=False)
    test_cluster = testcluster.new_test_cluster(toolchain=toolchain)
    try:
        test_cluster.start()
        print(f"\ntest cluster {test_cluster.name} up in {test_cluster.start_seconds:.1f}s "
              f"(kubeconfig {test_cluster.kubeconfig})")
        yield test_cluster
    finally:
        test_cluster.stop()


@pytest.fixture
def namespace(cluster):
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def pod_runner(cluster):
    import kubelet

    # The pod processes see the project venv first on PATH (python, modelship entry points).
    venv_bin = str(Path(sys.executable).parent)
    runner = kubelet.ProcessKubelet(
        cluster.kubeconfig,
        label_selector=f"{kubelet.LABEL}={kubelet.LABEL_VALUE}",
        extra_env={"PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")},
    )
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()
