"""Pure parts of the e2e platform (hack/platform): the fail-closed route rule, the kubelet's
path rewriting and restart arithmetic, and the PodMonitor → scrape config translation."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest
import yaml

import kubelet
import podmonitor
import podnet

REPO = Path(__file__).resolve().parents[3]
CIDR = ipaddress.ip_network("10.244.0.0/20")


@pytest.mark.parametrize(
    ("routes", "problems"),
    [
        ([{"dst": "default", "dev": "eth0"}, {"dst": "10.244.0.0/20", "dev": "ms0br"}], []),
        ([{"dst": "10.244.0.0/20", "type": "blackhole"}], []),
        # Without a route for the range, the default route would carry it out.
        ([{"dst": "default", "dev": "eth0"}], ["no route sends all of 10.244.0.0/20 to ms0br (or drops it)"]),
        # A more specific route inside the range leaks part of it.
        ([{"dst": "10.244.0.0/20", "dev": "ms0br"}, {"dst": "10.244.3.0/24", "dev": "eth0", "table": "main"}], ["10.244.3.0/24 dev eth0 (table main)"]),
        ([{"dst": "10.244.0.0/20", "dev": "ms0br"}, {"dst": "10.244.0.9", "dev": "eth0", "table": "local"}], ["10.244.0.9 dev eth0 (table local)"]),
        # Only covering the range in part is not enough.
        ([{"dst": "10.244.0.0/21", "dev": "ms0br"}], ["no route sends all of 10.244.0.0/20 to ms0br (or drops it)"]),
        # Routes of other ranges do not matter.
        ([{"dst": "10.244.0.0/20", "dev": "ms0br"}, {"dst": "192.0.2.0/24", "dev": "eth0"}], []),
    ],
)
def test_uncontained_routes(routes: list[dict], problems: list[str]) -> None:
    assert podnet.uncontained_routes(routes, CIDR, "ms0br") == problems


def test_instance_ranges_nest_inside_the_platform_range() -> None:
    net = podnet.PodNetwork(1)
    assert net.cidr == ipaddress.ip_network("10.244.16.0/20")
    assert str(net.gateway) == "10.244.16.1"
    assert net.pod_range.subnet_of(net.cidr) and net.kwok_cidr.subnet_of(net.cidr)
    assert not net.pod_range.overlaps(net.kwok_cidr)  # KWOK's faked pods never collide with a namespace
    assert net.bridge == "ms1br" and len(net.netns_name("uid")) <= 15


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/tmp", "/w/tmp"),
        ("/tmp/x/y", "/w/tmp/x/y"),
        ("/tmpfoo", "/tmpfoo"),  # a prefix of a name is not a path under the mount
        ("/cache/models", "/w/cache/models"),
        ("/cache/deep/file", "/w/deep/file"),  # the longest mount path wins
        ("/dev/termination-log", "/w/termination-log"),
        ("relative/tmp", "relative/tmp"),
        ("http://x/tmp", "http://x/tmp"),
    ],
)
def test_rewrite_path(value: str, expected: str) -> None:
    mounts = {"/tmp": "/w/tmp", "/cache": "/w/cache", "/cache/deep": "/w/deep", "/dev/termination-log": "/w/termination-log"}
    assert kubelet.rewrite_path(value, mounts) == expected


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("$(A)-$(B)", {"A": "1", "B": "2"}, "1-2"),
        ("$(MISSING)", {}, "$(MISSING)"),
        ("$$(A)", {"A": "1"}, "$(A)"),
        ("$$", {}, "$"),
    ],
)
def test_expand(text: str, env: dict[str, str], expected: str) -> None:
    assert kubelet.expand(text, env) == expected


@pytest.mark.parametrize(("restarts", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (20, 30.0)])
def test_restart_delay_doubles_up_to_the_cap(restarts: int, delay: float) -> None:
    assert kubelet.restart_delay(restarts, 1.0, 30.0) == delay


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False), ("OnFailure", 137, True), ("Never", 1, False)],
)
def test_should_restart(policy: str, code: int, restart: bool) -> None:
    assert kubelet.should_restart(policy, code) is restart


def _chart_podmonitor(*sets: str) -> dict:
    from testcluster import Toolchain

    helm = Toolchain.from_cache().helm
    if not helm.exists():
        pytest.fail(f"helm is missing ({helm}): run hack/test-cluster/build.sh")
    args = [str(helm), "template", "ms", str(REPO / "charts/modelship"), "--namespace", "ops", "--kube-version", "1.36.0",
            "--set", "monitoring.podMonitor.enabled=true", "--show-only", "templates/podmonitor.yaml"]
    for value in sets:
        args += ["--set", value]
    return yaml.safe_load(subprocess.run(args, capture_output=True, text=True, check=True).stdout)


def _kept(config: dict, labels: dict[str, str], port: str = "http", phase: str = "Running") -> bool:
    """Run the keep/drop relabel steps over one pod's meta labels, as Prometheus does."""
    import re

    meta = {"__meta_kubernetes_pod_phase": phase, "__meta_kubernetes_pod_container_port_name": port}
    for key, value in labels.items():
        meta[f"__meta_kubernetes_pod_label_{podmonitor.sanitize(key)}"] = value
        meta[f"__meta_kubernetes_pod_labelpresent_{podmonitor.sanitize(key)}"] = "true"
    for step in config["relabel_configs"]:
        if step.get("action") not in ("keep", "drop"):
            continue
        value = ";".join(meta.get(s, "") for s in step["source_labels"])
        matched = re.fullmatch(step["regex"], value) is not None
        if matched != (step["action"] == "keep"):
            return False
    return True


def test_chart_podmonitor_selects_serving_pods_only() -> None:
    [config] = podmonitor.scrape_configs(_chart_podmonitor(), {"kubeconfig_file": "/k"}, namespace="ops")
    assert config["kubernetes_sd_configs"] == [{"role": "pod", "kubeconfig_file": "/k"}]  # namespaceSelector any
    assert config["metrics_path"] == "/metrics"
    serving = {"app.kubernetes.io/managed-by": "modelship", "app.kubernetes.io/component": "serving", "modelship.io/deployment": "d"}
    assert _kept(config, serving)
    assert not _kept(config, {**serving, "app.kubernetes.io/component": "training"})
    assert not _kept(config, {k: v for k, v in serving.items() if k != "app.kubernetes.io/managed-by"})
    assert not _kept(config, serving, port="metrics")
    assert not _kept(config, serving, phase="Succeeded")
    targets = {step["target_label"]: step for step in config["relabel_configs"] if "target_label" in step}
    assert targets["modelship_io_deployment"]["source_labels"] == ["__meta_kubernetes_pod_label_modelship_io_deployment"]
    assert targets["job"]["replacement"] == "ops/ms-model-servers"


def test_chart_podmonitor_watch_namespaces_limit_discovery() -> None:
    [config] = podmonitor.scrape_configs(_chart_podmonitor("operator.watchNamespaces={a,b}", "monitoring.podMonitor.interval=5s"), {})
    assert config["kubernetes_sd_configs"][0]["namespaces"] == {"names": ["a", "b"]}
    assert config["scrape_interval"] == "5s"


def test_unsupported_podmonitor_fields_are_named() -> None:
    monitor = {"kind": "PodMonitor", "metadata": {"name": "m"}, "spec": {"podMetricsEndpoints": [{"port": "http", "tlsConfig": {}}]}}
    with pytest.raises(ValueError, match=r"podMetricsEndpoints\[0\]: \['tlsConfig'\]"):
        podmonitor.scrape_configs(monitor, {})


def test_test_cluster_service_range_fits_200_canaries_and_overlaps_no_pod_range() -> None:
    import testcluster

    services = ipaddress.ip_network(testcluster.SERVICE_CIDR)
    assert services.num_addresses - 3 >= 2 * 200 + 50  # two Services per canary, some spare
    assert not services.overlaps(podnet.PLATFORM_RANGE)
    # KWOK's pool starts at its default range and walks past it when it runs out.
    assert not services.overlaps(ipaddress.ip_network(testcluster.KWOK_DEFAULT_POD_CIDR).supernet(new_prefix=16))


def test_test_cluster_config_widens_the_service_range_beside_kwok_flags(tmp_path: Path) -> None:
    import testcluster

    cluster = testcluster.TestCluster(name="t", workdir=tmp_path, toolchain=None, kwok_args={"cidr": "10.244.15.0/24"})
    config, _ = yaml.safe_load_all(cluster._write_config().read_text().split("---\n", 1)[0] + "---\n{}")
    patches = {p["name"]: {a["key"]: a["value"] for a in p["extraArgs"]} for p in config["componentsPatches"]}
    assert patches == {"kube-apiserver": {"service-cluster-ip-range": testcluster.SERVICE_CIDR}, "kwok-controller": {"cidr": "10.244.15.0/24"}}
