"""`helm install`, `helm upgrade` and `helm uninstall` of the chart on the real control plane, and
the chart's MLflow and PostgreSQL run for real from what the API server stores.

KWOK fakes the pods' containers on the control plane; this test starts the processes itself:
PostgreSQL (Debian's postgresql-15) and MLflow (the venv's) with exactly the command, args,
env, mounted Secrets and volumes of the installed StatefulSet and Deployment, mapped to local
commands by tests/support/images.py. The diabetes sample is trained by the operator's own
training Job container (built with the config the chart gives the operator) against that
MLflow, and the run, the model and its artifacts land in PostgreSQL and the artifact volume.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
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
def release(cluster):
    namespace = f"ms-{uuid.uuid4().hex[:6]}"
    cluster.create_namespace(namespace)
    rel = Release(cluster, namespace, f"chart-{uuid.uuid4().hex[:6]}")
    rel.helm("install", rel.name, str(CHART), "--set", "operator.workers=3")
    try:
        yield rel
    finally:
        rel.helm("uninstall", rel.name, "--wait", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# --- a pod's process, from the stored object --------------------------------------------------

def resolved_env(rel: Release, container: dict) -> dict[str, str]:
    """The container's env as the kubelet would give it: literal values, secretKeyRefs read from
    the API server."""
    env = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
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
        self.pg_port, self.mlflow_port = free_port(), free_port()
        self.processes: list[subprocess.Popen] = []

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def hosts(self) -> dict[str, str]:
        """The Services' addresses, as a pod would resolve them, → the local processes."""
        mlflow = f"{self.rel.name}-mlflow"
        return {f"{self.rel.name}-postgresql:5432": f"127.0.0.1:{self.pg_port}",
                f"{mlflow}.{self.rel.namespace}.svc:5000": f"127.0.0.1:{self.mlflow_port}"}

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


def train_as_the_operator_would(rel: Release, platform: Platform, root: Path) -> dict:
    """The training Job container the operator builds with the chart's config, run locally."""
    from modelship.api import ModelDeployment
    from modelship.operator import builders
    from modelship.operator.config import OperatorConfig

    operator = rel.get("deployment", f"{rel.name}-operator")["spec"]["template"]["spec"]["containers"][0]
    config = OperatorConfig.from_env({e["name"]: e["value"] for e in operator["env"] if "value" in e})
    resource = ModelDeployment.model_validate(yaml.safe_load(SAMPLE.read_text()))
    resource.metadata.namespace = rel.namespace
    resource.metadata.uid = "uid-1"
    job = builders.training_job(resource, config, builders.training_hash(resource))
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    work = root / "training"
    paths = host_paths(rel, pod, container, work, {})
    paths["/dev/termination-log"] = work / "termination-log"
    local = local_command(container, paths=paths, hosts=platform.hosts)
    begin = time.monotonic()
    completed = subprocess.run(local.argv, env=local.env, capture_output=True, text=True, timeout=600, cwd=work)
    print(f"training Job container: {time.monotonic() - begin:.1f}s")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads((work / "termination-log").read_text())


# --- the tests --------------------------------------------------------------------------------

def test_install_creates_every_object_and_the_crd(release, cluster):
    kinds = {"deployment": {f"{release.name}-operator", f"{release.name}-mlflow"}, "statefulset": {f"{release.name}-postgresql"},
             "service": {f"{release.name}-operator", f"{release.name}-mlflow", f"{release.name}-postgresql"},
             "secret": {f"{release.name}-webhook-token", f"{release.name}-postgresql"}, "serviceaccount": {f"{release.name}-operator"}}
    for kind, names in kinds.items():
        assert {o["metadata"]["name"] for o in release.owned(kind)} == names, kind
    assert f"{release.name}-mlflow" in {o["metadata"]["name"] for o in release.owned("persistentvolumeclaim")}
    assert cluster.kubectl("get", "crd", "modeldeployments.modelship.io", check=False).returncode == 0
    assert cluster.kubectl("get", "clusterrole", f"{release.name}-operator", check=False).returncode == 0
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


def test_mlflow_on_postgresql_as_installed_trains_the_sample_and_survives_an_upgrade(release, shared_dir):
    tmp_path = shared_dir
    platform = Platform(release, tmp_path)
    password = release.secret(f"{release.name}-postgresql")["password"]
    token = release.secret(f"{release.name}-webhook-token")["token"]
    try:
        platform.start(run=1)
        # No secret on MLflow's command line; the database URL it was given names no password.
        assert password not in " ".join(platform.mlflow_command.argv)
        assert platform.mlflow_command.env["MLFLOW_BACKEND_STORE_URI"] == f"postgresql://mlflow@127.0.0.1:{platform.pg_port}/mlflow"

        result = train_as_the_operator_would(release, platform, tmp_path)
        assert result["outcome"] == "Succeeded" and result["version"] == "1", result
        model = result["modelName"]
        # In PostgreSQL: the registered model, its version, the finished run with its metrics.
        assert platform.query("select name from registered_models") == [(model,)]
        assert platform.query("select version, run_id from model_versions") == [(1, result["runId"])]
        assert platform.query(f"select status from runs where run_uuid = '{result['runId']}'") == [("FINISHED",)]
        assert platform.query(f"select count(*) from metrics where run_uuid = '{result['runId']}' and key = 'r2'")[0][0] >= 1
        # Password authentication is on: the generated password opens the database, another does not.
        import psycopg2

        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(host="127.0.0.1", port=platform.pg_port, user="mlflow", password="not-" + password, dbname="mlflow")
        # The model's files went through the MLflow server onto its artifact volume.
        assert list(platform.artifacts.rglob("MLmodel")), sorted(str(p) for p in platform.artifacts.rglob("*"))[:20]
    finally:
        platform.stop()

    operator_before = release.get("deployment", f"{release.name}-operator")
    release.helm("upgrade", release.name, str(CHART), "--set", "operator.workers=5", "--set", "mlflow.workers=1")
    # The generated secrets are the live ones (lookup), not new random values.
    assert release.secret(f"{release.name}-postgresql")["password"] == password
    assert release.secret(f"{release.name}-webhook-token")["token"] == token
    operator_after = release.get("deployment", f"{release.name}-operator")
    env = {e["name"]: e.get("value") for e in operator_after["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELSHIP_WORKERS"] == "5" and operator_after["metadata"]["generation"] == operator_before["metadata"]["generation"] + 1
    # The operator rolls: the Deployment controller makes a ReplicaSet for the new pod template.
    wait_until("a second operator ReplicaSet", lambda: len([r for r in release.owned("replicaset") if r["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]) == 2, timeout=60)

    # The upgraded MLflow (one worker now) on the same volumes opens the same database with the
    # kept password and still has the model.
    try:
        platform.start(run=2)
        assert "--workers=1" in platform.mlflow_command.argv
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=platform.mlflow_url)
        assert [m.name for m in client.search_registered_models()] == [model]
        assert client.get_model_version(model, "1").run_id == result["runId"]
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
    assert cluster.kubectl("get", "clusterrole", f"{release.name}-operator", check=False).returncode != 0
    # A reinstall under the same name adopts the kept Secret: the kept database opens with it.
    release.helm("install", release.name, str(CHART))
    assert release.secret(f"{release.name}-postgresql")["password"] == password
