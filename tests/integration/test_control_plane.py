"""The integration control plane itself: real API server, controllers and scheduler, KWOK
nodes, third-party CRDs, and the local pod runner. No mocks: every assertion reads the API."""

from __future__ import annotations

import json
import os
import textwrap
import time

import pytest

pytestmark = pytest.mark.integration

RUNNER_LABEL = {"modelship.io/test-pod-runner": "local"}
FAKE_IMAGE = "registry.invalid/modelship/never-pulled:0"


def _job(name: str, *, labels: dict | None = None, command: list[str] | None = None,
         policy: str = "File", backoff_limit: int = 0) -> str:
    container = {"name": "main", "image": FAKE_IMAGE, "terminationMessagePolicy": policy}
    if command:
        container["command"] = command
    return json.dumps({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "metadata": {"labels": {"app": name, **(labels or {})}},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    })


def _condition(obj: dict, type_: str) -> str | None:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == type_:
            return cond["status"]
    return None


def _job_pods(cluster, namespace: str, job: str) -> list[dict]:
    return cluster.kubectl_json("get", "pods", "-n", namespace, "-l", f"job-name={job}")["items"]


def test_api_server_runs_the_pinned_version_with_kwok_nodes(cluster):
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == cluster.toolchain.versions["KUBE_VERSION"]
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    assert len(nodes) == 2
    for node in nodes:
        assert _condition(node, "Ready") == "True"
        assert node["status"]["allocatable"]["pods"] == "110"


def test_third_party_crds_are_established(cluster):
    for crd in ("httproutes.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io",
                "servicemonitors.monitoring.coreos.com", "podmonitors.monitoring.coreos.com",
                "prometheusrules.monitoring.coreos.com",
                "alertmanagerconfigs.monitoring.coreos.com"):
        assert _condition(cluster.kubectl_json("get", "crd", crd), "Established") == "True", crd


def test_deployment_pods_become_ready_on_kwok_nodes(cluster, namespace):
    cluster.apply(json.dumps({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": FAKE_IMAGE,
                                         "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]},
            },
        },
    }))
    cluster.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=90s",
                    timeout=100)
    deployment = cluster.kubectl_json("get", "deployment", "web", "-n", namespace)
    assert deployment["status"]["readyReplicas"] == 3
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "app=web")["items"]
    assert {p["spec"]["nodeName"] for p in pods} <= {"kwok-node-0", "kwok-node-1"}
    assert all(_condition(p, "Ready") == "True" for p in pods)


def _wait_for_job(cluster, namespace: str, name: str, condition: str, timeout: float) -> dict:
    """The Job once its ``condition`` is True."""
    return cluster.wait_until(
        f"Job {name} {condition}",
        lambda: (j := cluster.kubectl_json("get", "job", name, "-n", namespace)) and _condition(j, condition) == "True" and j,
        timeout=timeout,
    )


def test_job_completes_through_kwok(cluster, namespace):
    cluster.apply(_job("faked"), namespace=namespace)
    job = _wait_for_job(cluster, namespace, "faked", "Complete", timeout=90)
    assert job["status"]["succeeded"] == 1
    [pod] = _job_pods(cluster, namespace, "faked")
    assert pod["status"]["phase"] == "Succeeded"


def test_labelled_job_runs_a_local_process_and_reports_its_result(cluster, namespace, pod_runner):
    script = textwrap.dedent("""
        import json, os
        result = {"version": "3", "metrics": {"r2": 0.84}, "pid": os.getpid(),
                  "pod": os.environ["POD_NAME"], "greeting": os.environ["GREETING"],
                  "token": os.environ["TOKEN"]}
        with open(os.environ["MODELSHIP_RESULT_PATH"], "w") as f:
            json.dump(result, f)
        print("trained")
    """)
    job = json.loads(_job("train", labels=RUNNER_LABEL, command=["python", "-c", script]))
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [
        # The kubelet maps the terminationMessagePath (default /dev/termination-log) to a file of the pod's.
        {"name": "MODELSHIP_RESULT_PATH", "value": "/dev/termination-log"},
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    cluster.kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=greeting=hi")
    cluster.kubectl("create", "secret", "generic", "creds", "-n", namespace, "--from-literal=token=s3cr3t")
    cluster.apply(json.dumps(job), namespace=namespace)

    done = _wait_for_job(cluster, namespace, "train", "Complete", timeout=120)
    assert done["status"]["succeeded"] == 1
    [pod] = _job_pods(cluster, namespace, "train")
    assert pod["status"]["phase"] == "Succeeded"
    status = pod["status"]["containerStatuses"][0]
    assert status["containerID"].startswith("process://")  # the runner ran it, not KWOK
    terminated = status["state"]["terminated"]
    assert terminated["exitCode"] == 0
    assert terminated["reason"] == "Completed"
    result = json.loads(terminated["message"])
    assert result["metrics"] == {"r2": 0.84}
    assert result["pod"] == pod["metadata"]["name"]
    assert result["greeting"] == "hi"
    assert result["token"] == "s3cr3t"
    assert result["pid"] != os.getpid()  # it really ran as its own process
    assert "trained" in pod_runner.output(pod["metadata"]["uid"])


def test_failing_labelled_pod_fails_the_job_with_its_exit_code(cluster, namespace, pod_runner):
    script = "import sys; print('loading data'); print('boom: bad column', file=sys.stderr); sys.exit(3)"
    cluster.apply(_job("broken", labels=RUNNER_LABEL, command=["python", "-c", script],
                       policy="FallbackToLogsOnError"), namespace=namespace)

    pod = cluster.wait_until(
        "pod of Job broken Failed",
        lambda: (pods := _job_pods(cluster, namespace, "broken"))
        and pods[0]["status"].get("phase") == "Failed" and pods[0],
        timeout=120,
    )
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    assert "boom: bad column" in terminated["message"]  # tail of the output, no result file
    _wait_for_job(cluster, namespace, "broken", "Failed", timeout=60)


def test_deleting_a_labelled_pod_kills_its_process(cluster, namespace, pod_runner, tmp_path):
    pid_file = tmp_path / "pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    cluster.apply(json.dumps({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sleeper", "namespace": namespace, "labels": RUNNER_LABEL},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
                 "containers": [{"name": "main", "image": FAKE_IMAGE,
                                 "command": ["python", "-c", script]}]},
    }))
    cluster.wait_until(
        "pod sleeper Running",
        lambda: cluster.kubectl_json("get", "pod", "sleeper", "-n", namespace)["status"].get("phase")
        == "Running",
        timeout=60,
    )
    pid = int(cluster.wait_until("pid file", lambda: pid_file.exists() and pid_file.read_text(),
                                 timeout=30))
    assert os.path.exists(f"/proc/{pid}")

    cluster.kubectl("delete", "pod", "sleeper", "-n", namespace, "--wait=true", "--timeout=60s",
                    timeout=70)

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
