"""A process kubelet: runs the pods it is handed as local processes, the way a kubelet runs
containers, and reports their status to the real API server.

Which pods (one of):

* ``node_name``: every pod the scheduler binds to that node. :class:`ProcessNode` registers the
  node and keeps its lease renewed, like a kubelet; KWOK leaves it alone (it only manages nodes
  annotated ``kwok.x-k8s.io/node: fake``). This is the platform's mode (``make platform``).
* ``label_selector``: pods with that label on KWOK nodes (the integration tier's
  ``modelship.io/test-pod-runner=local``: hack/test-cluster/kwok-stages.yaml hands them over).

Networking (``network``):

* :class:`BridgeNetwork` (platform): each pod gets its own network namespace with an address
  of the bridge's range (hack/platform/podnet.py); the process runs inside it
  (``ip netns exec``) and binds ``0.0.0.0`` as in a container; ``podIP`` is that address, so
  the real EndpointSlice controller publishes it and Envoy/Prometheus reach it.
* :class:`HostNetwork` (integration tier): processes on the host, ``podIP`` 127.0.0.1 (the API
  server refuses loopback addresses in EndpointSlices, so such pods are never endpoints).

What runs, from the pod spec as a cluster gets it:

* the first container's ``command`` + ``args`` with ``$(VAR)`` expansion (``$$`` escapes);
  a container without ``command`` (an image's entrypoint) runs only when an
  :data:`ImageCommand` hook maps its image to a local command (the extension point for
  third-party images: MLflow, PostgreSQL, ...);
* ``env`` (values, configMapKeyRef, secretKeyRef, fieldRef), ``envFrom``, ``workingDir``;
* volumes materialised as files under the pod's directory: emptyDir, configMap, secret,
  downwardAPI, and ``projected`` (the same plus serviceAccountToken: a bound token from the
  TokenRequest API, not rotated). Processes share the host's file
  system, so a mount path cannot be mounted; instead every env value and argument that is a
  mount path, or lies under one, is rewritten to the volume's directory (longest mount path
  first), ``TMPDIR`` points at the volume mounted at ``/tmp`` (when there is one), and the
  ``terminationMessagePath`` is rewritten to a per-pod file. A program that opens a mount path
  it did not get through env or args sees the host's path: that is the limit of this kubelet;
* ``restartPolicy``: Never; OnFailure and Always restart the process with exponential
  back-off (``restart_backoff`` … ``max_backoff``; a real kubelet starts at 10 s) and count
  ``restartCount``, with ``lastState.terminated``;
* probes (HTTP GET; port by number or name): startup, then readiness (``Ready`` only while it
  passes: the EndpointSlice controller drops a pod that is not ready) and liveness (the
  process is killed and restarted after ``failureThreshold`` failures);
* delete: SIGTERM to the process group, SIGKILL after the grace period, then the pod is
  removed for good (``grace_period_seconds=0``), the namespace and address released;
* the termination message: the file at ``terminationMessagePath`` (first 4096 bytes), or with
  ``FallbackToLogsOnError`` and a non-zero exit, the tail of the output.

Not done: more than one container per pod (the rest are reported with the first one's state),
init containers, exec/TCP probes, resource limits, ``kubectl logs``/``exec`` (there is no
kubelet server: read :meth:`ProcessKubelet.output`), in-cluster API credentials for pods.
"""

from __future__ import annotations

import base64
import fnmatch
import logging
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

#: The integration tier's label (hack/test-cluster/kwok-stages.yaml skips such pods).
LABEL = "modelship.io/test-pod-runner"
LABEL_VALUE = "local"
MAX_MESSAGE_BYTES = 4096  # kubelet: MaxContainerTerminationMessageLength
MAX_LOG_BYTES = 2048  # kubelet: MaxContainerTerminationMessageLogLength
MAX_LOG_LINES = 80  # kubelet: MaxContainerTerminationMessageLogLines
CONTAINER_ID_SCHEME = "process://"

#: image → argv for containers without ``command``: ``fn(container) -> list[str]``. Keys are
#: fnmatch patterns over the image reference (``docker.io/library/postgres:*``).
ImageCommand = Callable[[dict[str, Any]], list[str]]
#: ``fn(pod, env) -> dict`` of variables to set in that pod's process (``{}`` for pods it leaves
#: alone); ``env`` is what the process would get otherwise.
PodEnv = Callable[[dict[str, Any], dict[str, str]], dict[str, str]]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names substituted, ``$$`` escapes ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, text)


def tail_log(data: bytes) -> str:
    """The kubelet's FallbackToLogsOnError message: last 80 lines, at most 2048 bytes."""
    data = data[-MAX_LOG_BYTES:]
    lines = data.splitlines(keepends=True)[-MAX_LOG_LINES:]
    return b"".join(lines).decode(errors="replace")


def rewrite_path(value: str, mounts: dict[str, str]) -> str:
    """``value`` with a leading mount path replaced by its local directory (longest first);
    anything else unchanged. Pure: ``mounts`` maps mountPath → local dir."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        root = mount_path.rstrip("/") or "/"
        if value == root or value.startswith(root.rstrip("/") + "/"):
            return mounts[mount_path] + value[len(root):]
    return value


def restart_delay(restarts: int, initial: float, maximum: float) -> float:
    """Crash-loop back-off before restart number ``restarts`` (1, 2, ...): doubling, capped."""
    return min(initial * 2 ** max(restarts - 1, 0), maximum)


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


# --- networks -------------------------------------------------------------------------


class HostNetwork:
    """Processes on the host network: ``podIP`` 127.0.0.1 (integration tier)."""

    host_ip = "127.0.0.1"

    def attach(self, uid: str) -> tuple[str, str | None]:
        return "127.0.0.1", None

    def release(self, uid: str) -> None:
        pass

    def command(self, argv: list[str], uid: str) -> list[str]:
        return argv


class BridgeNetwork:
    """One network namespace per pod on the platform's bridge (podnet.PodNetwork)."""

    def __init__(self, network) -> None:
        self.network = network
        self._pods: dict[str, Any] = {}
        self.host_ip = str(network.gateway)

    def attach(self, uid: str) -> tuple[str, str | None]:
        pod = self.network.add_pod(uid)
        self._pods[uid] = pod
        return pod.ip, pod.netns

    def release(self, uid: str) -> None:
        pod = self._pods.pop(uid, None)
        if pod is not None:
            self.network.remove_pod(pod)

    def command(self, argv: list[str], uid: str) -> list[str]:
        return ["ip", "netns", "exec", self._pods[uid].netns, *argv]


# --- one pod --------------------------------------------------------------------------


class ContainerConfigError(Exception):
    """The pod spec cannot be run here (CreateContainerConfigError)."""


@dataclass
class _Pod:
    uid: str
    namespace: str
    name: str
    workdir: Path
    spec: dict[str, Any]
    process: subprocess.Popen[bytes] | None = None
    deleted: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    grace_seconds: float = 30
    pod_ip: str | None = None
    netns: str | None = None
    started_at: str | None = None
    restart_count: int = 0
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    phase: str = "Pending"
    container_id: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def container(self) -> dict[str, Any]:
        return self.spec["containers"][0]


def _resolve_port(port: int | str, container: dict[str, Any]) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ContainerConfigError(f"probe port {port!r} is not a port name of container {container['name']!r}")


def http_probe(probe: dict[str, Any], container: dict[str, Any], pod_ip: str) -> bool:
    """One HTTP GET probe: 200–399 within ``timeoutSeconds`` is a success."""
    get = probe.get("httpGet")
    if get is None:
        raise ContainerConfigError("only httpGet probes are supported")
    url = f"{get.get('scheme', 'HTTP').lower()}://{pod_ip}:{_resolve_port(get['port'], container)}{get.get('path', '/')}"
    request = urllib.request.Request(url, headers={h["name"]: h["value"] for h in get.get("httpHeaders") or []})
    try:
        with urllib.request.urlopen(request, timeout=probe.get("timeoutSeconds", 1)) as response:
            return 200 <= response.status < 400
    except urllib.error.HTTPError as err:
        return 200 <= err.code < 400
    except (urllib.error.URLError, OSError):
        return False


class ProcessKubelet:
    """Watch the pods it is handed and run them. ``start()``/``stop()`` or a context manager."""

    def __init__(self, kubeconfig: str | os.PathLike[str], *, node_name: str | None = None,
                 label_selector: str | None = None, network: HostNetwork | BridgeNetwork | None = None,
                 namespace: str | None = None, extra_env: dict[str, str] | None = None,
                 workdir: str | os.PathLike[str] | None = None, image_commands: dict[str, ImageCommand] | None = None,
                 restart_backoff: float = 1.0, max_backoff: float = 30.0) -> None:
        if (node_name is None) == (label_selector is None):
            raise ValueError("give exactly one of node_name, label_selector")
        self.api = client.CoreV1Api(config.new_client_from_config(config_file=os.fspath(kubeconfig)))
        self.node_name = node_name
        self.label_selector = label_selector
        self.network = network or HostNetwork()
        self.namespace = namespace
        self.extra_env = dict(extra_env or {})
        #: Test hooks (:data:`PodEnv`): each pod's env gets what they return, last, so a test can
        #: make one pod misbehave (a fault setting of the model server) without touching the spec.
        self.pod_env_hooks: list[PodEnv] = []
        self.image_commands = dict(image_commands or {})
        self.restart_backoff = restart_backoff
        self.max_backoff = max_backoff
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="modelship-kubelet-"))
        self._pods: dict[str, _Pod] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> ProcessKubelet:
        self._thread = threading.Thread(target=self._watch_loop, name="kubelet", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        with self._lock:
            pods = list(self._pods.values())
        for pod in pods:
            pod.deleted.set()
            self._kill(pod, grace=2)
        if self._thread is not None:
            self._thread.join(timeout)
        for pod in pods:
            if pod.thread is not None:
                pod.thread.join(timeout)
            self.network.release(pod.uid)
        if self._own_workdir:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ProcessKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def processes(self) -> list[int]:
        """Pids of the pod processes running now."""
        with self._lock:
            return [p.process.pid for p in self._pods.values() if p.process is not None and p.process.poll() is None]

    # --- watching ----------------------------------------------------------------------

    def _list_and_watch_args(self) -> tuple:
        kwargs: dict[str, Any] = {}
        if self.label_selector:
            kwargs["label_selector"] = self.label_selector
        if self.node_name:
            kwargs["field_selector"] = f"spec.nodeName={self.node_name}"
        if self.namespace:
            return self.api.list_namespaced_pod, {"namespace": self.namespace, **kwargs}
        return self.api.list_pod_for_all_namespaces, kwargs

    def _watch_loop(self) -> None:
        list_fn, kwargs = self._list_and_watch_args()
        while not self._stop.is_set():
            try:
                pods = list_fn(**kwargs)
                for pod in pods.items:
                    self._handle("ADDED", pod)
                self._watch = watch.Watch()
                for event in self._watch.stream(list_fn, resource_version=pods.metadata.resource_version, timeout_seconds=30, **kwargs):
                    if self._stop.is_set():
                        break
                    self._handle(event["type"], event["object"])
            except ApiException as err:
                if self._stop.is_set():
                    break
                log.warning("kubelet watch: %s; relisting", err.reason)
                time.sleep(0.5)
            except Exception:  # keep the kubelet alive across transient client errors
                if self._stop.is_set():
                    break
                log.exception("kubelet watch failed; relisting")
                time.sleep(0.5)

    def _handle(self, event_type: str, obj: client.V1Pod) -> None:
        pod = self.api.api_client.sanitize_for_serialization(obj)
        meta, status = pod["metadata"], pod.get("status") or {}
        uid = meta["uid"]
        with self._lock:
            running = self._pods.get(uid)
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            if running is not None and not running.deleted.is_set():
                running.grace_seconds = meta.get("deletionGracePeriodSeconds") or 0
                running.deleted.set()
                self._kill(running, grace=running.grace_seconds)
            if event_type != "DELETED":
                self._finalize_deletion(meta["namespace"], meta["name"], uid)
            return
        if running is not None or not pod["spec"].get("nodeName"):
            return  # already ours, or not scheduled yet
        if status.get("phase") in ("Succeeded", "Failed"):
            return  # finished before this kubelet started
        if status.get("containerStatuses"):
            return  # started by another kubelet (or an earlier one of ours)
        running = _Pod(uid, meta["namespace"], meta["name"], self.workdir / uid, pod["spec"])
        with self._lock:
            self._pods[uid] = running
        running.thread = threading.Thread(target=self._run, args=(running, pod), name=f"pod-{meta['name']}", daemon=True)
        running.thread.start()

    def _finalize_deletion(self, namespace: str, name: str, uid: str) -> None:
        """Like the kubelet: once the process is gone, remove the pod for good."""
        with self._lock:
            running = self._pods.get(uid)
        if running is not None and running.process is not None and running.process.poll() is None:
            return  # the run thread finalizes after the process exits
        try:
            self.api.delete_namespaced_pod(name, namespace, grace_period_seconds=0,
                                           body=client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)))
        except ApiException as err:
            if err.status not in (404, 409):
                log.warning("deleting pod %s/%s: %s", namespace, name, err.reason)

    # --- the spec ------------------------------------------------------------------------

    def _config_map(self, namespace: str, name: str) -> dict[str, str]:
        return self.api.read_namespaced_config_map(name, namespace).data or {}

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        data = self.api.read_namespaced_secret(name, namespace).data or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    @staticmethod
    def _field(pod: dict[str, Any], path: str, pod_ip: str | None, host_ip: str) -> str:
        meta = pod["metadata"]
        fields = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": pod["spec"].get("nodeName", ""),
            "spec.serviceAccountName": pod["spec"].get("serviceAccountName") or "default",
            "status.podIP": pod_ip or "",
            "status.hostIP": host_ip,
        }
        if path in fields:
            return fields[path]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return (meta.get(match.group(1)) or {}).get(match.group(2), "")
        if path in ("metadata.labels", "metadata.annotations"):
            values = meta.get(path.split(".")[1]) or {}
            return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
        raise ContainerConfigError(f"fieldRef {path!r} is not supported")

    def _optional(self, ref: dict[str, Any] | None, fetch: Callable[[], Any]) -> Any:
        try:
            return fetch()
        except (ApiException, KeyError) as err:
            if ref and ref.get("optional"):
                return None
            raise ContainerConfigError(f"{ref}: {getattr(err, 'reason', None) or err}") from err

    def resolve_env(self, pod: dict[str, Any], container: dict[str, Any], pod_ip: str | None = None) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                ref = source["configMapRef"]
                values = self._optional(ref, lambda: self._config_map(ns, ref["name"]))
            elif "secretRef" in source:
                ref = source["secretRef"]
                values = self._optional(ref, lambda: self._secret(ns, ref["name"]))
            else:
                continue
            env.update({prefix + k: v for k, v in (values or {}).items()})
        for var in container.get("env") or []:
            src = var.get("valueFrom")
            if src is None:
                env[var["name"]] = expand(var.get("value", ""), env)
            elif "configMapKeyRef" in src:
                ref = src["configMapKeyRef"]
                value = self._optional(ref, lambda: self._config_map(ns, ref["name"])[ref["key"]])
                if value is not None:
                    env[var["name"]] = value
            elif "secretKeyRef" in src:
                ref = src["secretKeyRef"]
                value = self._optional(ref, lambda: self._secret(ns, ref["name"])[ref["key"]])
                if value is not None:
                    env[var["name"]] = value
            elif "fieldRef" in src:
                env[var["name"]] = self._field(pod, src["fieldRef"]["fieldPath"], pod_ip, self.network.host_ip)
            else:
                raise ContainerConfigError(f"env {var['name']}: valueFrom {sorted(src)} is not supported")
        return env

    def materialise_volumes(self, pod: dict[str, Any], root: Path, pod_ip: str | None) -> dict[str, Path]:
        """Every volume of the pod as a directory under ``root``; name → directory."""
        ns = pod["metadata"]["namespace"]
        dirs: dict[str, Path] = {}

        def write(directory: Path, files: dict[str, str], items: list[dict] | None) -> None:
            chosen = {i["key"]: i["path"] for i in items} if items else {k: k for k in files}
            for key, rel in chosen.items():
                if key not in files:
                    raise ContainerConfigError(f"volume key {key!r} not found")
                target = directory / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(files[key])

        def source_files(source: dict[str, Any]) -> tuple[dict[str, str], list[dict] | None] | None:
            if "configMap" in source:
                ref = source["configMap"]
                data = self._optional(ref, lambda: self._config_map(ns, ref["name"]))
                return (data, ref.get("items")) if data is not None else None
            if "secret" in source:
                ref = {"name": source["secret"].get("secretName") or source["secret"].get("name"), **source["secret"]}
                data = self._optional(ref, lambda: self._secret(ns, ref["name"]))
                return (data, ref.get("items")) if data is not None else None
            if "downwardAPI" in source:
                files = {i["path"]: self._field(pod, i["fieldRef"]["fieldPath"], pod_ip, self.network.host_ip) for i in source["downwardAPI"].get("items", []) if "fieldRef" in i}
                return files, None
            return None

        for volume in pod["spec"].get("volumes") or []:
            directory = root / volume["name"]
            directory.mkdir(parents=True, exist_ok=True)
            dirs[volume["name"]] = directory
            if "emptyDir" in volume:
                continue
            if "projected" in volume:
                for source in volume["projected"].get("sources", []):
                    found = source_files(source)
                    if found is None and "serviceAccountToken" in source:
                        token = source["serviceAccountToken"]
                        found = ({token["path"]: self._token(pod, token)}, None)
                    if found:
                        write(directory, *found)
                continue
            found = source_files(volume)
            if found is None and not any(k in volume for k in ("configMap", "secret")):
                raise ContainerConfigError(f"volume {volume['name']}: only emptyDir, configMap, secret, downwardAPI and projected are supported")
            if found:
                write(directory, *found)
        return dirs

    def _token(self, pod: dict[str, Any], source: dict[str, Any]) -> str:
        """A bound ServiceAccount token (TokenRequest), as the kubelet projects it. Not rotated:
        it lives ``expirationSeconds`` (the default kube-api-access volume asks for ~1 h)."""
        meta = pod["metadata"]
        spec: dict[str, Any] = {"audiences": [source["audience"]] if source.get("audience") else [],
                                "expirationSeconds": source.get("expirationSeconds", 3600),
                                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}
        account = pod["spec"].get("serviceAccountName") or "default"
        try:
            answer = self.api.create_namespaced_service_account_token(account, meta["namespace"], {"spec": spec})
        except ApiException as err:
            raise ContainerConfigError(f"token of ServiceAccount {account}: {err.reason}") from err
        return answer.status.token

    def command_for(self, container: dict[str, Any]) -> list[str]:
        if container.get("command"):
            return list(container["command"])
        for pattern, hook in self.image_commands.items():
            if fnmatch.fnmatch(container.get("image", ""), pattern):
                return hook(container)
        raise ContainerConfigError(f"container {container['name']!r} has no command and no image command is registered for "
                                   f"{container.get('image')!r}: the process kubelet cannot run an image's entrypoint")

    def _prepare(self, running: _Pod, pod: dict[str, Any]) -> tuple[list[str], dict[str, str], str, Path]:
        container = running.container
        volumes = self.materialise_volumes(pod, running.workdir / "volumes", running.pod_ip)
        mounts: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in volumes:
                raise ContainerConfigError(f"volumeMount {mount['mountPath']}: no volume {mount['name']!r}")
            local = volumes[mount["name"]] / mount.get("subPath", "")
            local.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"]] = str(local)
        result_path = running.workdir / "termination-log"
        result_path.write_bytes(b"")
        mounts[container.get("terminationMessagePath", "/dev/termination-log")] = str(result_path)
        pod_env = self.resolve_env(pod, container, running.pod_ip)
        argv = [rewrite_path(expand(a, pod_env), mounts) for a in self.command_for(container) + list(container.get("args") or [])]
        env = {k: rewrite_path(v, mounts) for k, v in pod_env.items()}
        if "/tmp" in mounts and "TMPDIR" not in env:
            env["TMPDIR"] = mounts["/tmp"]
        base = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env = {**base, **self.extra_env, **env}
        for hook in list(self.pod_env_hooks):
            env.update(hook(pod, env))
        working_dir = rewrite_path(container.get("workingDir", ""), mounts)
        cwd = working_dir if working_dir and Path(working_dir).is_dir() else str(running.workdir)
        return argv, env, cwd, result_path

    # --- running -----------------------------------------------------------------------

    def _kill(self, running: _Pod, grace: float) -> None:
        proc = running.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return

        def _hard_kill() -> None:
            try:
                proc.wait(timeout=max(grace, 0.1))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        threading.Thread(target=_hard_kill, daemon=True).start()

    def _publish(self, running: _Pod, pod: dict[str, Any]) -> None:
        """The pod's status from what this kubelet knows (pods/status, JSON patch)."""
        now = _now()
        with running.lock:
            ready = running.ready and running.phase == "Running"
            reason = None if ready else ("PodCompleted" if running.phase in ("Succeeded", "Failed") else "ContainersNotReady")
            conditions = []
            for type_, ok in (("PodReadyToStartContainers", running.pod_ip is not None), ("Initialized", True), ("PodScheduled", True),
                              ("ContainersReady", ready), ("Ready", ready)):
                cond = {"type": type_, "status": "True" if ok else "False", "lastTransitionTime": now}
                if not ok and reason and type_ in ("ContainersReady", "Ready"):
                    cond["reason"] = reason
                conditions.append(cond)
            statuses = [{
                "name": c["name"], "image": c.get("image", ""), "imageID": "", "containerID": running.container_id,
                "ready": ready, "started": running.started and "running" in running.state, "restartCount": running.restart_count,
                "state": running.state, **({"lastState": running.last_state} if running.last_state else {}),
            } for c in running.spec["containers"]]
            status: dict[str, Any] = {"phase": running.phase, "conditions": conditions, "containerStatuses": statuses,
                                      "hostIP": self.network.host_ip, "hostIPs": [{"ip": self.network.host_ip}]}
            if running.started_at:
                status["startTime"] = running.started_at
            if running.pod_ip:
                status["podIP"] = running.pod_ip
                status["podIPs"] = [{"ip": running.pod_ip}]
        ops = [{"op": "add", "path": f"/status/{key}", "value": value} for key, value in status.items()]
        try:
            self.api.patch_namespaced_pod_status(running.name, running.namespace, ops)
        except ApiException as err:
            if err.status != 404:  # a deleted pod needs no status
                log.warning("status of %s/%s: %s %s", running.namespace, running.name, err.reason, err.body)

    def _run(self, running: _Pod, pod: dict[str, Any]) -> None:
        running.workdir.mkdir(parents=True, exist_ok=True)
        running.started_at = _now()
        try:
            try:
                running.pod_ip, running.netns = self.network.attach(running.uid)
                argv, env, cwd, result_path = self._prepare(running, pod)
            except Exception as err:  # config errors fail the pod like CreateContainerConfigError
                log.warning("pod %s/%s cannot run: %s", running.namespace, running.name, err)
                self._terminated(running, pod, 128, "ContainerCannotRun", str(err)[:MAX_MESSAGE_BYTES], final=True)
                return
            policy = running.spec.get("restartPolicy", "Always")
            while not (running.deleted.is_set() or self._stop.is_set()):
                code, message = self._run_once(running, pod, argv, env, cwd, result_path)
                if running.deleted.is_set() or self._stop.is_set():
                    break
                restart = should_restart(policy, code)
                self._terminated(running, pod, code, "Completed" if code == 0 else "Error", message, final=not restart)
                if not restart:
                    break
                running.restart_count += 1
                delay = restart_delay(running.restart_count, self.restart_backoff, self.max_backoff)
                with running.lock:
                    running.last_state = {"terminated": running.state["terminated"]}
                    running.state = {"waiting": {"reason": "CrashLoopBackOff", "message": f"back-off {delay:g}s restarting failed container"}}
                self._publish(running, pod)
                if running.deleted.wait(delay):
                    break
        finally:
            if running.deleted.is_set() and not self._stop.is_set():
                self._finalize_deletion(running.namespace, running.name, running.uid)
            if not self._stop.is_set():
                self.network.release(running.uid)

    def _run_once(self, running: _Pod, pod: dict[str, Any], argv: list[str], env: dict[str, str], cwd: str, result_path: Path) -> tuple[int, str]:
        container = running.container
        result_path.write_bytes(b"")
        log_path = running.workdir / "output.log"
        with open(log_path, "ab") as out:
            try:
                running.process = subprocess.Popen(self.network.command(argv, running.uid), env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as err:
                return 127, str(err)
            started = _now()
            with running.lock:
                running.container_id = f"{CONTAINER_ID_SCHEME}{running.process.pid}"
                running.state = {"running": {"startedAt": started}}
                running.phase = "Running"
                running.started = "startupProbe" not in container
                running.ready = running.started and "readinessProbe" not in container
            if running.deleted.is_set():
                self._kill(running, grace=0)
            else:
                self._publish(running, pod)
            prober = threading.Thread(target=self._probe_loop, args=(running, pod, running.process), daemon=True)
            prober.start()
            code = running.process.wait()
        with running.lock:
            running.ready = False
        message = result_path.read_bytes()[:MAX_MESSAGE_BYTES].decode(errors="replace")
        if not message.strip() and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = tail_log(log_path.read_bytes())
        if code < 0:  # killed by a signal: report like a container runtime does
            code = 128 - code
        return code, message

    def _probe_loop(self, running: _Pod, pod: dict[str, Any], process: subprocess.Popen[bytes]) -> None:
        """startup → (readiness, liveness), each on its own period, until the process exits."""
        container = running.container
        probes = {kind: container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe") if kind in container}
        if not probes:
            return
        begin = time.monotonic()
        due = {kind: begin + p.get("initialDelaySeconds", 0) for kind, p in probes.items()}
        failures = dict.fromkeys(probes, 0)
        successes = dict.fromkeys(probes, 0)
        while process.poll() is None and not running.deleted.is_set():
            active = ["startupProbe"] if not running.started else [k for k in ("readinessProbe", "livenessProbe") if k in probes]
            if not active:
                return
            kind = min(active, key=due.get)
            wait = due[kind] - time.monotonic()
            if wait > 0:
                try:
                    process.wait(wait)
                    return
                except subprocess.TimeoutExpired:
                    continue
            probe = probes[kind]
            due[kind] = time.monotonic() + probe.get("periodSeconds", 10)
            try:
                ok = http_probe(probe, container, running.pod_ip or "127.0.0.1")
            except ContainerConfigError as err:
                log.warning("pod %s/%s %s: %s", running.namespace, running.name, kind, err)
                ok = False
            if process.poll() is not None:
                return
            failures[kind] = 0 if ok else failures[kind] + 1
            successes[kind] = successes[kind] + 1 if ok else 0
            changed = False
            with running.lock:
                if kind == "startupProbe" and ok:
                    running.started, changed = True, True
                    running.ready = "readinessProbe" not in probes
                    for other in ("readinessProbe", "livenessProbe"):
                        if other in probes:
                            due[other] = time.monotonic() + probes[other].get("initialDelaySeconds", 0)
                elif kind == "readinessProbe":
                    if ok and not running.ready and successes[kind] >= probe.get("successThreshold", 1):
                        running.ready, changed = True, True
                    elif not ok and running.ready and failures[kind] >= probe.get("failureThreshold", 3):
                        running.ready, changed = False, True
            if changed:
                self._publish(running, pod)
            if not ok and kind in ("startupProbe", "livenessProbe") and failures[kind] >= probe.get("failureThreshold", 3):
                log.warning("pod %s/%s failed its %s %d times: restarting", running.namespace, running.name, kind, failures[kind])
                self._kill(running, grace=running.spec.get("terminationGracePeriodSeconds", 30))
                return

    def _terminated(self, running: _Pod, pod: dict[str, Any], code: int, reason: str, message: str, final: bool) -> None:
        if self._stop.is_set():
            return  # the kubelet is shutting down: leave the pod as it is
        terminated = {"exitCode": code, "reason": reason, "startedAt": running.state.get("running", {}).get("startedAt", running.started_at),
                      "finishedAt": _now(), "containerID": running.container_id}
        if message:
            terminated["message"] = message
        with running.lock:
            running.state = {"terminated": terminated}
            running.ready = False
            if final:
                running.phase = "Succeeded" if code == 0 else "Failed"
        if running.deleted.is_set():
            return
        self._publish(running, pod)

    # --- helpers for tests -------------------------------------------------------------

    def output(self, uid: str) -> str:
        """Combined stdout/stderr of a pod this kubelet ran (by pod uid), every restart."""
        path = self.workdir / uid / "output.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pod(self, namespace: str, name: str) -> _Pod | None:
        with self._lock:
            return next((p for p in self._pods.values() if p.namespace == namespace and p.name == name), None)


class ProcessNode:
    """The Node a :class:`ProcessKubelet` runs pods for: registered Ready, its Lease renewed
    every ``heartbeat`` seconds and its status every 4th time (as a kubelet does), so the node
    lifecycle controller never taints it."""

    def __init__(self, kubeconfig: str | os.PathLike[str], name: str, address: str,
                 capacity: dict[str, str] | None = None, heartbeat: float = 10.0) -> None:
        api_client = config.new_client_from_config(config_file=os.fspath(kubeconfig))
        self.core = client.CoreV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.name = name
        self.address = address
        self.capacity = capacity or {"cpu": "32", "memory": "256Gi", "pods": "110"}
        self.heartbeat = heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _status(self) -> dict[str, Any]:
        now = _now()
        conditions = [{"type": t, "status": "False", "reason": f"KubeletHas{r}", "lastHeartbeatTime": now, "lastTransitionTime": now}
                      for t, r in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"), ("PIDPressure", "SufficientPID"))]
        conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "process kubelet is posting ready status",
                           "lastHeartbeatTime": now, "lastTransitionTime": now})
        return {"capacity": self.capacity, "allocatable": self.capacity, "conditions": conditions,
                "addresses": [{"type": "InternalIP", "address": self.address}, {"type": "Hostname", "address": self.name}],
                "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "modelship-process-kubelet",
                             "containerRuntimeVersion": "process://", "kernelVersion": os.uname().release, "osImage": "",
                             "bootID": "", "machineID": "", "systemUUID": "", "kubeProxyVersion": ""}}

    def register(self) -> ProcessNode:
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                                                           "kubernetes.io/arch": "amd64", "modelship.io/process-kubelet": "true"}}}
        try:
            self.core.create_node(body)
        except ApiException as err:
            if err.status != 409:
                raise
        self._post_status()
        self._renew_lease()
        self._thread = threading.Thread(target=self._loop, name=f"node-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _post_status(self) -> None:
        self.core.patch_node_status(self.name, {"status": self._status()})

    def _renew_lease(self) -> None:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": now}
        try:
            self.coordination.patch_namespaced_lease(self.name, "kube-node-lease", {"spec": spec})
        except ApiException as err:
            if err.status != 404:
                raise
            self.coordination.create_namespaced_lease("kube-node-lease", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                                                          "metadata": {"name": self.name, "namespace": "kube-node-lease"}, "spec": spec})

    def _loop(self) -> None:
        beats = 0
        while not self._stop.wait(self.heartbeat):
            beats += 1
            try:
                self._renew_lease()
                if beats % 4 == 0:
                    self._post_status()
            except Exception:  # a missed beat is retried on the next one
                log.exception("node %s heartbeat", self.name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
