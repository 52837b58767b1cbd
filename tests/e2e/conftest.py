"""Fixtures for the e2e tier: the whole platform on this machine (hack/platform/localplatform.py).

``platform`` (session)
    a started :class:`localplatform.LocalPlatform`: ``.gateway_url``, ``.kubeconfig``,
    ``.kubectl(...)``, ``.cluster`` (apply, wait_until, kubectl_json), ``.kubelet`` (the process
    kubelet: ``.pod(namespace, name)``, ``.output(uid)``), ``.network`` (bridge, pod range,
    namespaces), ``.mlflow``, ``.prometheus``, ``.alertmanager``, ``.operator``.
    Teardown FAILS the session when any process, network namespace or link is left over.
``e2e_namespace`` (function)
    a fresh namespace on the platform.

Needs root (network namespaces) and the binaries of ``hack/test-cluster/build.sh``; without
them the fixture fails with the command to run, it never skips.
"""

from __future__ import annotations

import os
import uuid

import pytest

import localplatform
import testcluster


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the e2e platform needs root: it creates a network namespace per pod", pytrace=False)
    local = localplatform.LocalPlatform(tmp_path_factory.mktemp("platform"))
    try:
        local.start()
    except testcluster.MissingBinaries as err:
        pytest.fail(str(err), pytrace=False)
    print(f"\n{local.summary()}")
    yield local
    local.stop(check=True)  # raises when anything is left over


@pytest.fixture
def e2e_namespace(platform):
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    platform.cluster.create_namespace(name)
    yield name
    platform.kubectl("delete", "namespace", name, "--wait=false", check=False)
