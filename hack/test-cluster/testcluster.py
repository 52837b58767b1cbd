"""A real Kubernetes control plane with KWOK nodes, for tests and for people.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kwok controller run as
local processes (kwokctl's ``binary`` runtime), all from the binaries
``hack/test-cluster/build.sh`` builds and caches. Nothing is downloaded here, every port is on
127.0.0.1, and all state lives in one work directory that is removed on ``stop()``.

Standard library only, so ``make dev-cluster`` works with any python3::

    python3 hack/test-cluster/testcluster.py up      # dev cluster, prints the kubeconfig
    python3 hack/test-cluster/testcluster.py down

Tests use it through the ``cluster`` fixture in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
BUILD_SCRIPT = "hack/test-cluster/build.sh"
STAGES_FILE = HERE / "kwok-stages.yaml"

#: Label that hands a pod to hack/platform/kubelet.py instead of KWOK (see kwok-stages.yaml).
POD_RUNNER_LABEL = "modelship.io/test-pod-runner"

#: Prefix of per-session work directories; leftovers of dead sessions are reaped on start.
WORKDIR_PREFIX = "modelship-kwok-"
OWNER_FILE = "owner.pid"

DEV_CLUSTER_NAME = "modelship-dev"

#: ClusterIP range of the API server. Its default (10.0.0.0/24) holds about 250 Services and is
#: also KWOK's default pod range; a resource in canary rollout has two Services, so 200 of them
#: (benchmarks/bench_operator.py --rollout) need more. Kubernetes' usual range, outside the e2e
#: platform's pod ranges (hack/platform/podnet.py, 10.244.0.0/16). Nothing routes ClusterIPs
#: here (no kube-proxy): they are names for Endpoints, never addresses traffic is sent to.
SERVICE_CIDR = "10.96.0.0/16"
#: KWOK's pod range when a cluster gives none (kwok's own default).
KWOK_DEFAULT_POD_CIDR = "10.0.0.0/24"


class ClusterError(RuntimeError):
    """The test cluster could not be started or used."""


class MissingBinaries(ClusterError):
    """The cached control-plane binaries are not there: build.sh has not been run."""


def load_versions(path: Path = HERE / "versions.env") -> dict[str, str]:
    """Parse versions.env (KEY=VALUE lines, # comments), shared with build.sh."""
    versions = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


def cache_dir() -> Path:
    """Same rule as build.sh: $MODELSHIP_CACHE or ~/.cache/modelship."""
    return Path(os.environ.get("MODELSHIP_CACHE") or Path.home() / ".cache" / "modelship")


@dataclass(frozen=True)
class Toolchain:
    """Paths of the cached binaries and CRDs for the pinned versions (layout of build.sh)."""

    versions: dict[str, str]
    kube_dir: Path
    etcd: Path
    kwok_dir: Path
    helm: Path
    crd_dirs: tuple[Path, ...]
    #: Contour (its CRDs in contour-crds.yaml beside it) and Prometheus with Kubernetes service
    #: discovery: only the e2e platform needs them.
    contour: Path | None = None
    prometheus: Path | None = None

    @classmethod
    def from_cache(cls, cache: Path | None = None) -> Toolchain:
        """The cache layout of build.sh; the variables ``build.sh --print-env`` exports
        (MODELSHIP_K8S_BIN_DIR, MODELSHIP_ETCD_BIN, ...) override single paths."""
        v = load_versions()
        root = cache or cache_dir()

        def path(env: str, default: Path) -> Path:
            return Path(os.environ[env]) if os.environ.get(env) else default

        return cls(
            versions=v,
            kube_dir=path("MODELSHIP_K8S_BIN_DIR", root / "bin" / f"kube-{v['KUBE_VERSION']}"),
            etcd=path("MODELSHIP_ETCD_BIN", root / "bin" / f"etcd-{v['ETCD_VERSION']}" / "etcd"),
            kwok_dir=path("MODELSHIP_KWOK_BIN_DIR", root / "bin" / f"kwok-{v['KWOK_VERSION']}"),
            helm=path("MODELSHIP_HELM_BIN", root / "bin" / f"helm-{v['HELM_VERSION']}" / "helm"),
            contour=path("MODELSHIP_CONTOUR_BIN", root / "bin" / f"contour-{v['CONTOUR_VERSION']}" / "contour"),
            prometheus=path("MODELSHIP_PROMETHEUS_BIN", root / "bin" / f"prometheus-{v['PROMETHEUS_VERSION']}" / "prometheus"),
            crd_dirs=(
                path("MODELSHIP_GATEWAY_API_CRDS",
                     root / "crds" / f"gateway-api-{v['GATEWAY_API_VERSION']}"),
                path("MODELSHIP_PROMETHEUS_OPERATOR_CRDS",
                     root / "crds" / f"prometheus-operator-{v['PROMETHEUS_OPERATOR_VERSION']}"),
            ),
        )

    def bin(self, name: str) -> Path:
        if name in ("kwok", "kwokctl"):
            return self.kwok_dir / name
        if name == "etcd":
            return self.etcd
        if name == "helm":
            return self.helm
        return self.kube_dir / name

    @property
    def kubectl(self) -> Path:
        return self.bin("kubectl")

    def missing(self) -> list[Path]:
        names = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                 "kubectl", "kwok", "kwokctl"]
        gone = [self.bin(n) for n in names if not os.access(self.bin(n), os.X_OK)]
        gone += [d for d in self.crd_dirs if not any(d.glob("*.yaml"))]
        return gone

    def require(self) -> Toolchain:
        gone = self.missing()
        if gone:
            listing = "\n  ".join(str(p) for p in gone)
            raise MissingBinaries(
                f"test cluster binaries/CRDs are missing:\n  {listing}\n"
                f"Build them (cold ~11 min on 2 cores, then cached) with:\n"
                f"  {BUILD_SCRIPT}\n"
                f"(cache dir: {cache_dir()}; set MODELSHIP_CACHE to use another one)"
            )
        return self


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pids_mentioning(text: str) -> list[int]:
    """Pids of processes whose command line contains ``text`` (a unique work dir path)."""
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me and text in _cmdline(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def _kill_pids(pids: list[int], grace: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_pid_alive(p) for p in alive):
            time.sleep(0.1)
        pids = alive


def _pid_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie, waiting for a parent that may never reap it, is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def reap_stale_workdirs(parent: Path | None = None) -> None:
    """Stop and remove clusters whose owning process died without tearing them down."""
    parent = parent or Path(tempfile.gettempdir())
    for d in parent.glob(WORKDIR_PREFIX + "*"):
        owner = d / OWNER_FILE
        try:
            pid = int(owner.read_text().strip())
        except (OSError, ValueError):
            continue
        if not _pid_alive(pid):
            _kill_pids(_pids_mentioning(f"{d}/"))
            shutil.rmtree(d, ignore_errors=True)


@dataclass
class TestCluster:
    """One kwokctl cluster. ``start()`` returns when it is usable; ``stop()`` always cleans up."""

    __test__ = False  # not a pytest test class

    name: str
    workdir: Path
    nodes: int = 2
    node_capacity: dict[str, str] = field(
        default_factory=lambda: {"cpu": "32", "memory": "256Gi", "pods": "110"}
    )
    toolchain: Toolchain = field(default_factory=Toolchain.from_cache)
    #: Extra kwok-controller flags (name → value, after kwokctl's own, so they win), e.g. the
    #: platform's ``cidr`` inside its bridge's range, so no faked pod address leads outside.
    kwok_args: dict[str, str] = field(default_factory=dict)
    service_cidr: str = SERVICE_CIDR
    start_seconds: float | None = None

    # --- paths -------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def kubectl_bin(self) -> Path:
        """kubectl of the same version as the API server (built by build.sh)."""
        return self.toolchain.kubectl

    def _kwok_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            # kwokctl keeps its clusters, pki, logs and pids under KWOK_WORKDIR.
            "KWOK_WORKDIR": str(self.workdir / "kwok"),
            "KWOK_KUBE_VERSION": self.toolchain.versions["KUBE_VERSION"],
            "KWOK_KUBECTL_BINARY": str(self.kubectl_bin),
            "KUBECONFIG": str(self.kubeconfig),
        })
        return env

    # --- commands ----------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raises ClusterError with stderr when check fails."""
        cmd = [str(self.kubectl_bin), "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.strip()}"
            )
        return proc

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def apply(self, path_or_yaml: str | os.PathLike[str], *, namespace: str | None = None,
              server_side: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``kubectl apply`` a file, a directory, or a YAML/JSON string."""
        extra = ["--server-side", "--force-conflicts"] if server_side else []
        if namespace:
            extra += ["--namespace", namespace]
        text = os.fspath(path_or_yaml)
        if "\n" not in text and Path(text).exists():
            return self.kubectl("apply", *extra, "-f", text, check=check)
        return self.kubectl("apply", *extra, "-f", "-", input=text, check=check)

    def wait_crds_established(self, timeout: float = 120) -> None:
        """Every CRD Established. Retried: right after an apply, a CRD without status yet makes
        ``kubectl wait`` fail instead of wait."""
        self.wait_until("CRDs Established", lambda: self.kubectl(
            "wait", "--for=condition=Established", "crd", "--all", "--timeout=30s", check=False, timeout=45).returncode == 0,
            timeout=timeout, interval=1)

    def create_namespace(self, name: str) -> str:
        self.kubectl("create", "namespace", name)
        return name

    def wait_until(self, what: str, predicate, timeout: float = 60, interval: float = 0.5):
        """Poll ``predicate()`` until truthy; returns its value or raises with ``what``."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = predicate()
                if value:
                    return value
            except (ClusterError, subprocess.TimeoutExpired, ValueError, KeyError) as err:
                last_error = err
            time.sleep(interval)
        raise ClusterError(f"timed out after {timeout}s waiting for {what}"
                           + (f" (last error: {last_error})" if last_error else ""))

    def _kwokctl(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.toolchain.bin("kwokctl")), "--name", self.name, *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=self._kwok_env(),
                              timeout=timeout)

    # --- lifecycle ---------------------------------------------------------------------

    def _write_config(self) -> Path:
        """kwokctl config: bind everything to 127.0.0.1, plus our Stages (kwok-stages.yaml)."""
        config = self.workdir / "kwokctl.yaml"
        config.write_text(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\n"
            "kind: KwokctlConfiguration\n"
            "options:\n"
            "  bindAddress: 127.0.0.1\n"
            + self._kwok_patches()
            + "---\n" + STAGES_FILE.read_text()
        )
        return config

    def _kwok_patches(self) -> str:
        patches = {"kube-apiserver": {"service-cluster-ip-range": self.service_cidr}}
        if self.kwok_args:
            patches["kwok-controller"] = self.kwok_args
        text = "componentsPatches:\n"
        for component, flags in patches.items():
            text += f"- name: {component}\n  extraArgs:\n"
            text += "".join(f"  - key: {key}\n    value: {json.dumps(value)}\n" for key, value in flags.items())
        return text

    def _node_manifest(self, index: int) -> dict:
        name = f"kwok-node-{index}"
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {"capacity": self.node_capacity, "allocatable": self.node_capacity},
        }

    def start(self, timeout: float = 300) -> TestCluster:
        """Create the cluster, its nodes and the third-party CRDs; wait until all are usable.

        On failure the error carries the tail of every component log (``stop()`` removes
        the work dir, logs included)."""
        self.toolchain.require()
        try:
            return self._start(timeout)
        except (ClusterError, subprocess.TimeoutExpired) as err:
            raise ClusterError(f"{err}\n{self.log_tails()}") from err

    def log_tails(self, lines: int = 15) -> str:
        out = []
        for log_file in sorted(self.logs_dir().glob("*.log")):
            tail = log_file.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log_file.name} (last {lines} lines)\n" + "\n".join(tail))
        return "\n".join(out) or f"(no component logs in {self.logs_dir()})"

    def _start(self, timeout: float) -> TestCluster:
        begin = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / OWNER_FILE).write_text(str(os.getpid()))
        config = self._write_config()
        tc = self.toolchain
        proc = self._kwokctl(
            "create", "cluster",
            "--runtime", "binary",
            "--config", str(config),
            "--kubeconfig", str(self.kubeconfig),
            "--etcd-binary", str(tc.bin("etcd")),
            "--kube-apiserver-binary", str(tc.bin("kube-apiserver")),
            "--kube-controller-manager-binary", str(tc.bin("kube-controller-manager")),
            "--kube-scheduler-binary", str(tc.bin("kube-scheduler")),
            "--kwok-controller-binary", str(tc.bin("kwok")),
            "--wait", f"{int(timeout)}s",
            timeout=timeout + 30,
        )
        if proc.returncode != 0:
            raise ClusterError(
                f"kwokctl create cluster failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
                f"\nlogs: {self.workdir / 'kwok' / 'clusters' / self.name / 'logs'}"
            )
        self.wait_until("API server /readyz",
                        lambda: self.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok",
                        timeout=timeout)
        self.wait_until("ServiceAccount default/default",
                        lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default",
                                             check=False).returncode == 0,
                        timeout=timeout)
        nodes = "\n---\n".join(json.dumps(self._node_manifest(i)) for i in range(self.nodes))
        if nodes:
            self.apply(nodes)
        for crd_dir in tc.crd_dirs:
            # Server-side: some CRDs are too large for the last-applied annotation.
            self.apply(crd_dir, server_side=True)
        self.wait_crds_established()
        if self.nodes:
            self.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=120s",
                         timeout=150)
        self.start_seconds = time.monotonic() - begin
        return self

    def stop(self) -> None:
        """Delete the cluster, kill any process still using the work dir, remove the dir."""
        try:
            if (self.workdir / "kwok").exists():
                self._kwokctl("delete", "cluster", timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            _kill_pids(_pids_mentioning(f"{self.workdir}/"))
            shutil.rmtree(self.workdir, ignore_errors=True)

    def logs_dir(self) -> Path:
        return self.workdir / "kwok" / "clusters" / self.name / "logs"


def new_test_cluster(**kwargs) -> TestCluster:
    """A cluster with a unique name and a fresh work dir under $TMPDIR."""
    reap_stale_workdirs()
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    name = "mship-" + workdir.name.removeprefix(WORKDIR_PREFIX).lower().replace("_", "")
    return TestCluster(name=name, workdir=workdir, **kwargs)


def dev_cluster() -> TestCluster:
    return TestCluster(name=DEV_CLUSTER_NAME, workdir=cache_dir() / "dev-cluster")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Modelship dev cluster (etcd + kube-* + KWOK).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start the dev cluster (replaces a running one)")
    sub.add_parser("down", help="stop the dev cluster and remove its state")
    sub.add_parser("kubeconfig", help="print the dev cluster's kubeconfig path")
    args = parser.parse_args(argv)

    cluster = dev_cluster()
    if args.cmd == "kubeconfig":
        print(cluster.kubeconfig)
        return 0
    if args.cmd == "down":
        cluster.stop()
        print(f"dev cluster {cluster.name} removed")
        return 0
    cluster.stop()  # start from a clean slate
    try:
        cluster.start()
    except MissingBinaries as err:
        print(err, file=sys.stderr)
        return 1
    except BaseException:
        print(f"start failed; logs were in {cluster.logs_dir()}", file=sys.stderr)
        cluster.stop()
        raise
    # The dev cluster outlives this process: don't let the stale-dir reaper take it.
    (cluster.workdir / OWNER_FILE).unlink(missing_ok=True)
    print(f"dev cluster {cluster.name} is up in {cluster.start_seconds:.1f}s")
    print(f"kubeconfig: {cluster.kubeconfig}")
    print(f"  export KUBECONFIG={cluster.kubeconfig}")
    print(f"  {cluster.kubectl_bin} get nodes      # kubectl {cluster.toolchain.versions['KUBE_VERSION']}")
    print("  (/usr/bin/kubectl works too, with a version-skew warning)")
    print(f"logs: {cluster.logs_dir()}")
    print("stop it with: make dev-cluster-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
