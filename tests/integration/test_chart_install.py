"""`helm install`, `helm upgrade` and `helm uninstall` of the chart on the real control plane, and
the chart's MLflow and PostgreSQL run for real from what the API server stores.

KWOK fakes the pods' containers on the control plane; this test starts the chart's pods itself:
PostgreSQL (Debian's postgresql-15), MLflow and the operator (the venv's) with exactly the
command, args, env, mounted Secrets and volumes of the installed StatefulSet and Deployments,
mapped to local commands by tests/support/images.py, the operator with a token of the chart's
ServiceAccount (so with the chart's RBAC). The diabetes sample applied after the install is
trained by the operator's Job (run by the test pod runner) through the chart's MLflow and
becomes Ready; the run, the model and its artifacts land in PostgreSQL and the artifact volume.

Processes on the host cannot resolve Service names, so the release is installed with
`mlflow.trackingUri` set to the loopback address the chart's MLflow process listens on.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from helmchart import CHART, helm
from images import local_command
from servers import free_port, stop_process, wait_http, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SAMPLE = CHART.parents[1] / "manifests" / "samples" / "diabetes-builtin.yaml"


class Release:
    def __init__(self, cluster, namespace: str, name: str) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name

    def helm(self, *args: str, check: bool = True):
        return helm(*args, "--namespace", self.namespace, kubeconfig=self.cluster.kubeconfig, check=check)

    def get(self, kind: str, name: str) -> dict:
        return self.cluster.kubectl_json("get", kind, name, "-n", self.namespace)

    def secret(self, name: str) -> dict[str, str]:
        return {k: base64.b64decode(v).decode() for k, v in self.get("secret", name)["data"].items()}

    def owned(self, kind: str) -> list[dict]:
        return self.cluster.kubectl_json("get", kind, "-n", self.namespace, "-l", f"app.kubernetes.io/instance={self.name}")["items"]


@pytest.fixture(scope="module")
def release(cluster, tmp_path_factory):
    namespace = f"ms-{uuid.uuid4().hex[:6]}"
    cluster.create_namespace(namespace)
    rel = Release(cluster, namespace, f"chart-{uuid.uuid4().hex[:6]}")
    rel.apps = cluster.create_namespace(f"apps-{uuid.uuid4().hex[:6]}")
    rel.mlflow_port = free_port()
    values = tmp_path_factory.mktemp("values") / "values.yaml"
    values.write_text(yaml.safe_dump({
        "operator": {
            "watchNamespaces": [rel.apps],
            "resyncInterval": 15,
            # Training pods go to the test pod runner (KWOK fakes every other pod).
            "extraEnv": [{"name": "MODELSHIP_TRAINING_POD_LABELS", "value": '{"modelship.io/test-pod-runner": "local"}'}],
        },
        "mlflow": {"trackingUri": f"http://127.0.0.1:{rel.mlflow_port}"},
    }))
    rel.values = ["-f", str(values)]
    rel.helm("install", rel.name, str(CHART), *rel.values, "--set", "operator.workers=3")
    try:
        yield rel
    finally:
        rel.helm("uninstall", rel.name, "--wait", check=False)
        for name in (namespace, rel.apps):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# --- a pod's process, from the stored object --------------------------------------------------

def resolved_env(rel: Release, container: dict) -> dict[str, str]:
    """The container's env as the kubelet would give it: literal values, secretKeyRefs read from
    the API server."""
    env = {}
    for entry in container.get("env", []):
        if "valueFrom" not in entry:
            env[entry["name"]] = entry.get("value", "")  # the API server drops empty values
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = rel.secret(ref["name"])[ref["key"]]
    return env


def host_paths(rel: Release, pod_spec: dict, container: dict, root: Path, claims: dict[str, Path]) -> dict[str, Path]:
    """Each volume mount → a host directory: Secret volumes written from the API server's Secret
    (their items), emptyDirs fresh, claims (PVC or volumeClaimTemplate) the given persistent dirs."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    paths = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if "secret" in volume:
            directory = root / f"secret-{mount['name']}"
            directory.mkdir(parents=True, exist_ok=True)
            data = rel.secret(volume["secret"]["secretName"])
            for item in volume["secret"].get("items") or [{"key": k, "path": k} for k in data]:
                (directory / item["path"]).write_text(data[item["key"]])
        elif mount["name"] in claims:
            directory = claims[mount["name"]]
        else:
            directory = root / f"empty-{mount['name']}"
        directory.mkdir(parents=True, exist_ok=True)
        paths[mount["mountPath"]] = directory
    return paths


def start(local, log: Path) -> subprocess.Popen:
    return subprocess.Popen(local.argv, env=local.env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


class Platform:
    """The release's PostgreSQL and MLflow as local processes, from the stored objects."""

    def __init__(self, rel: Release, root: Path) -> None:
        self.rel, self.root = rel, root
        # The persistent volumes: they outlive the processes (and the release's upgrades).
        self.pg_data = root / "pvc-postgresql"
        self.artifacts = root / "pvc-mlflow"
        self.pg_port, self.mlflow_port = free_port(), rel.mlflow_port
        self.processes: list[subprocess.Popen] = []

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def hosts(self) -> dict[str, str]:
        """The PostgreSQL Service's address, as MLflow's pod would resolve it, → the local process."""
        return {f"{self.rel.name}-postgresql:5432": f"127.0.0.1:{self.pg_port}"}

    def start(self, run: int) -> None:
        begin = time.monotonic()
        statefulset = self.rel.get("statefulset", f"{self.rel.name}-postgresql")
        pod = statefulset["spec"]["template"]["spec"]
        container = pod["containers"][0]
        paths = host_paths(self.rel, pod, container, self.root / f"pg-{run}", {"data": self.pg_data})
        local = local_command(container, resolved_env(self.rel, container), paths=paths, listen=("127.0.0.1", self.pg_port))
        self.processes.append(start(local, self.root / "postgresql.log"))
        wait_until("PostgreSQL accepting connections", lambda: self._pg_ready(local.env), timeout=60)
        pg_ready = time.monotonic()

        deployment = self.rel.get("deployment", f"{self.rel.name}-mlflow")
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        paths = host_paths(self.rel, pod, container, self.root / f"mlflow-{run}", {"artifacts": self.artifacts})
        local = local_command(container, resolved_env(self.rel, container), paths=paths, hosts=self.hosts, listen=("127.0.0.1", self.mlflow_port))
        self.mlflow_command = local
        process = start(local, self.root / "mlflow.log")
        self.processes.append(process)
        wait_http(f"{self.mlflow_url}/health", timeout=180, process=process)
        print(f"run {run}: PostgreSQL ready in {pg_ready - begin:.1f}s, MLflow in {time.monotonic() - pg_ready:.1f}s")

    def start_operator(self, run: int, kubeconfig: Path) -> None:
        """The operator Deployment's container, with the chart's ServiceAccount for identity."""
        deployment = self.rel.get("deployment", f"{self.rel.name}-operator")
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        paths = host_paths(self.rel, pod, container, self.root / f"operator-{run}", {})
        self.operator_port = free_port()
        local = local_command(container, resolved_env(self.rel, container), paths=paths, listen=("127.0.0.1", self.operator_port),
                              base_env={**os.environ, "KUBECONFIG": str(kubeconfig)})
        self.operator_command = local
        process = start(local, self.root / "operator.log")
        self.processes.append(process)
        wait_http(f"http://127.0.0.1:{self.operator_port}/readyz", timeout=120, process=process)

    def reconciles(self) -> float:
        """The operator's own count of finished reconciles (its /metrics)."""
        from modelship.monitoring.metrics import OPERATOR_RECONCILES_TOTAL

        with urllib.request.urlopen(f"http://127.0.0.1:{self.operator_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(OPERATOR_RECONCILES_TOTAL + "{") or line.startswith(OPERATOR_RECONCILES_TOTAL + " "))

    def _pg_ready(self, env: dict[str, str]) -> bool:
        result = subprocess.run(["/usr/lib/postgresql/15/bin/pg_isready", "-h", "127.0.0.1", "-p", str(self.pg_port)], capture_output=True)
        return result.returncode == 0

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process)
        self.processes.clear()

    def query(self, sql: str) -> list[tuple]:
        import psycopg2

        password = self.rel.secret(f"{self.rel.name}-postgresql")["password"]
        connection = psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="mlflow", password=password, dbname="mlflow")
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()
        finally:
            connection.close()  # an open session would hold PostgreSQL's shutdown


def service_account_kubeconfig(rel: Release, path: Path) -> Path:
    """What the operator pod would authenticate as: a token of the chart's ServiceAccount."""
    token = rel.cluster.kubectl("create", "token", f"{rel.name}-operator", "-n", rel.namespace, "--duration=2h").stdout.strip()
    admin = yaml.safe_load(rel.cluster.kubeconfig.read_text())
    cluster_entry = admin["clusters"][0]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster_entry],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster_entry["name"], "user": "operator"}}],
        "current-context": "operator",
    }))
    return path


def ready_status(rel: Release) -> dict | None:
    status = rel.cluster.kubectl_json("get", "mdep", "diabetes", "-n", rel.apps).get("status", {})
    ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
    return status if ready.get("status") == "True" else None


# --- the tests --------------------------------------------------------------------------------

def test_install_creates_every_object_and_the_crd(release, cluster):
    kinds = {"deployment": {f"{release.name}-operator", f"{release.name}-mlflow"}, "statefulset": {f"{release.name}-postgresql"},
             "service": {f"{release.name}-operator", f"{release.name}-mlflow", f"{release.name}-postgresql"},
             "secret": {f"{release.name}-webhook-token", f"{release.name}-postgresql"}, "serviceaccount": {f"{release.name}-operator"}}
    for kind, names in kinds.items():
        assert {o["metadata"]["name"] for o in release.owned(kind)} == names, kind
    assert f"{release.name}-mlflow" in {o["metadata"]["name"] for o in release.owned("persistentvolumeclaim")}
    assert cluster.kubectl("get", "crd", "modeldeployments.modelship.io", check=False).returncode == 0
    # Namespaced RBAC: a Role in the watched namespace, nothing cluster-wide.
    assert cluster.kubectl("get", "role", f"{release.name}-operator", "-n", release.apps, check=False).returncode == 0
    assert cluster.kubectl("get", "clusterrole", f"{release.name}-operator", check=False).returncode != 0
    # The controllers act on them: the Deployments and the StatefulSet get their pods.
    wait_until("a pod for each workload", lambda: {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in release.owned("pod")} >= {"operator", "mlflow", "postgresql"}, timeout=60)


@pytest.fixture
def shared_dir():
    """A work dir other local accounts can enter (pytest's tmp_path is private to root): the
    PostgreSQL process runs as Debian's postgres account."""
    root = Path(tempfile.mkdtemp(prefix="modelship-chart-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_the_installed_platform_runs_trains_the_sample_and_survives_an_upgrade(release, shared_dir, pod_runner):
    tmp_path = shared_dir
    platform = Platform(release, tmp_path)
    kubeconfig = service_account_kubeconfig(release, tmp_path / "operator-kubeconfig")
    password = release.secret(f"{release.name}-postgresql")["password"]
    token = release.secret(f"{release.name}-webhook-token")["token"]
    sample = yaml.safe_load(SAMPLE.read_text())
    sample["metadata"]["namespace"] = release.apps
    try:
        platform.start(run=1)
        # No secret on MLflow's command line; the database URL it was given names no password.
        assert password not in " ".join(platform.mlflow_command.argv)
        assert platform.mlflow_command.env["MLFLOW_BACKEND_STORE_URI"] == f"postgresql://mlflow@127.0.0.1:{platform.pg_port}/mlflow"
        platform.start_operator(run=1, kubeconfig=kubeconfig)
        # The webhook token reaches the operator as the mounted file the env names.
        assert Path(platform.operator_command.env["MODELSHIP_ALERT_TOKEN_FILE"]).read_text() == token

        begin = time.monotonic()
        release.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(sample))
        status = release.cluster.wait_until("the sample Ready", lambda: ready_status(release), timeout=600, interval=2)
        print(f"sample applied → Ready: {time.monotonic() - begin:.1f}s")
        assert status["championVersion"] == "1" and status["lastTraining"]["metrics"]["r2"] >= 0.3
        run_id = status["lastTraining"]["runId"]
        model = f"{release.apps}-diabetes"
        # In PostgreSQL: the registered model, its version, the finished run with its metrics.
        assert platform.query("select name from registered_models") == [(model,)]
        assert platform.query("select version, run_id from model_versions") == [(1, run_id)]
        assert platform.query(f"select status from runs where run_uuid = '{run_id}'") == [("FINISHED",)]
        assert platform.query(f"select count(*) from metrics where run_uuid = '{run_id}' and key = 'r2'")[0][0] >= 1
        # Password authentication is on: the generated password opens the database, another does not.
        import psycopg2

        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(host="127.0.0.1", port=platform.pg_port, user="mlflow", password="not-" + password, dbname="mlflow")
        # The model's files went through the MLflow server onto its artifact volume.
        assert list(platform.artifacts.rglob("MLmodel")), sorted(str(p) for p in platform.artifacts.rglob("*"))[:20]
    finally:
        platform.stop()

    operator_before = release.get("deployment", f"{release.name}-operator")
    release.helm("upgrade", release.name, str(CHART), *release.values, "--set", "operator.workers=5", "--set", "mlflow.workers=1")
    # The generated secrets are the live ones (lookup), not new random values.
    assert release.secret(f"{release.name}-postgresql")["password"] == password
    assert release.secret(f"{release.name}-webhook-token")["token"] == token
    operator_after = release.get("deployment", f"{release.name}-operator")
    env = {e["name"]: e.get("value") for e in operator_after["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELSHIP_WORKERS"] == "5" and operator_after["metadata"]["generation"] == operator_before["metadata"]["generation"] + 1
    # The operator rolls: the Deployment controller makes a ReplicaSet for the new pod template.
    wait_until("a second operator ReplicaSet", lambda: len([r for r in release.owned("replicaset") if r["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]) == 2, timeout=60)

    # The upgraded MLflow (one worker now) on the same volumes opens the same database with the
    # kept password and still has the model; the upgraded operator finds the sample as it was.
    try:
        platform.start(run=2)
        assert "--workers=1" in platform.mlflow_command.argv
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=platform.mlflow_url)
        assert [m.name for m in client.search_registered_models()] == [model]
        assert client.get_model_version(model, "1").run_id == run_id
        platform.start_operator(run=2, kubeconfig=kubeconfig)
        assert platform.operator_command.env["MODELSHIP_WORKERS"] == "5"
        # Once the new operator has reconciled the sample, it is as it was (no retraining).
        wait_until("a reconcile by the upgraded operator", lambda: platform.reconciles() > 0, timeout=120)
        after = ready_status(release)
        assert after and after["championVersion"] == "1" and after["lastTraining"]["runId"] == run_id
        assert release.cluster.kubectl_json("get", "jobs", "-n", release.apps)["items"].__len__() == 1, "the upgrade retrained"
    finally:
        platform.stop()


def test_uninstall_leaves_the_crd_and_the_models_volume_and_nothing_running(release, cluster):
    password = release.secret(f"{release.name}-postgresql")["password"]
    release.helm("uninstall", release.name, "--wait")
    gone = lambda: not any(release.owned(kind) for kind in ("deployment", "statefulset", "replicaset", "pod", "service"))  # noqa: E731
    wait_until("the release's workloads gone", gone, timeout=120)
    assert cluster.kubectl("get", "crd", "modeldeployments.modelship.io", check=False).returncode == 0
    # Kept on purpose (helm.sh/resource-policy: keep): the models' volume and the password that opens the database.
    assert {o["metadata"]["name"] for o in release.owned("persistentvolumeclaim")} == {f"{release.name}-mlflow", f"data-{release.name}-postgresql-0"}
    assert {o["metadata"]["name"] for o in release.owned("secret")} == {f"{release.name}-postgresql"}
    assert cluster.kubectl("get", "role", f"{release.name}-operator", "-n", release.apps, check=False).returncode != 0
    # A reinstall under the same name adopts the kept Secret: the kept database opens with it.
    release.helm("install", release.name, str(CHART), *release.values)
    assert release.secret(f"{release.name}-postgresql")["password"] == password
