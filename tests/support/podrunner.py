"""A tiny kubelet for integration tests: runs labelled pods as local processes.

KWOK fakes every pod's lifecycle except those labelled ``modelship.io/test-pod-runner: local``
(see hack/test-cluster/kwok-stages.yaml). For those, once the scheduler has bound them to a
(KWOK) node, :class:`PodRunner`

* runs the first container's ``command`` + ``args`` (``$(VAR)`` expanded like the kubelet) as
  a subprocess on the host, with the runner's environment plus the container's ``env`` /
  ``envFrom`` (plain values, ``configMapKeyRef``, ``secretKeyRef``, ``fieldRef`` to
  metadata.name/namespace/uid and spec.nodeName) and ``workingDir`` when it exists;
* passes ``MODELSHIP_RESULT_PATH`` = a fresh temp file, which stands in for the container's
  ``terminationMessagePath`` (``/dev/termination-log`` in a real pod);
* reports status through the ``pods/status`` subresource: Running + ready container, then
  Succeeded/Failed with ``state.terminated`` (exitCode, reason Completed/Error, message);
* message = the result file (first 4096 bytes, like the kubelet), or, when that is empty,
  the policy is ``FallbackToLogsOnError`` and the exit code is not 0, the tail of the output
  (2048 bytes / 80 lines, like the kubelet);
* kills the process (SIGTERM, then SIGKILL after the grace period) when the pod is deleted.

Limits (it is test infrastructure): only the first container runs (others are reported with
the same state), ``restartPolicy`` is treated as ``Never``, no probes, no volumes.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

LABEL = "modelship.io/test-pod-runner"
LABEL_VALUE = "local"
RESULT_ENV = "MODELSHIP_RESULT_PATH"
MAX_MESSAGE_BYTES = 4096  # kubelet: MaxContainerTerminationMessageLength
MAX_LOG_BYTES = 2048  # kubelet: MaxContainerTerminationMessageLogLength
MAX_LOG_LINES = 80  # kubelet: MaxContainerTerminationMessageLogLines


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


class _RunningPod:
    def __init__(self, uid: str, namespace: str, name: str, workdir: Path) -> None:
        self.uid, self.namespace, self.name, self.workdir = uid, namespace, name, workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.deleted = threading.Event()
        self.thread: threading.Thread | None = None
        self.grace_seconds = 30


class PodRunner:
    """Watch labelled pods and run them locally. Use as a context manager or start()/stop()."""

    def __init__(self, kubeconfig: str | os.PathLike[str], *, namespace: str | None = None,
                 extra_env: dict[str, str] | None = None,
                 workdir: str | os.PathLike[str] | None = None) -> None:
        self.api = client.CoreV1Api(config.new_client_from_config(config_file=os.fspath(kubeconfig)))
        self.namespace = namespace
        self.extra_env = dict(extra_env or {})
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="modelship-podrunner-"))
        self._pods: dict[str, _RunningPod] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> PodRunner:
        self._thread = threading.Thread(target=self._watch_loop, name="podrunner", daemon=True)
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
        if self._own_workdir:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PodRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- watching ----------------------------------------------------------------------

    def _list_and_watch_args(self) -> tuple:
        selector = f"{LABEL}={LABEL_VALUE}"
        if self.namespace:
            return self.api.list_namespaced_pod, {"namespace": self.namespace,
                                                   "label_selector": selector}
        return self.api.list_pod_for_all_namespaces, {"label_selector": selector}

    def _watch_loop(self) -> None:
        list_fn, kwargs = self._list_and_watch_args()
        while not self._stop.is_set():
            try:
                pods = list_fn(**kwargs)
                for pod in pods.items:
                    self._handle("ADDED", pod)
                self._watch = watch.Watch()
                for event in self._watch.stream(list_fn, resource_version=pods.metadata.resource_version,
                                                timeout_seconds=30, **kwargs):
                    if self._stop.is_set():
                        break
                    self._handle(event["type"], event["object"])
            except ApiException as err:
                if self._stop.is_set():
                    break
                log.warning("pod runner watch: %s; relisting", err.reason)
                time.sleep(0.5)
            except Exception:  # keep the runner alive across transient client errors
                if self._stop.is_set():
                    break
                log.exception("pod runner watch failed; relisting")
                time.sleep(0.5)

    def _handle(self, event_type: str, pod: client.V1Pod) -> None:
        uid = pod.metadata.uid
        with self._lock:
            running = self._pods.get(uid)
        if event_type == "DELETED" or pod.metadata.deletion_timestamp is not None:
            if running is not None and not running.deleted.is_set():
                running.grace_seconds = pod.metadata.deletion_grace_period_seconds or 0
                running.deleted.set()
                self._kill(running, grace=running.grace_seconds)
            if event_type != "DELETED":
                self._finalize_deletion(pod)
            return
        if running is not None or not pod.spec.node_name:
            return  # already ours, or not scheduled yet
        if pod.status and pod.status.phase in ("Succeeded", "Failed"):
            return  # finished before this runner started
        if pod.status and pod.status.container_statuses:
            return  # started by another runner (or an earlier one of ours)
        running = _RunningPod(uid, pod.metadata.namespace, pod.metadata.name,
                              self.workdir / uid)
        with self._lock:
            self._pods[uid] = running
        running.thread = threading.Thread(target=self._run, args=(running, pod),
                                          name=f"pod-{pod.metadata.name}", daemon=True)
        running.thread.start()

    def _finalize_deletion(self, pod: client.V1Pod) -> None:
        """Like the kubelet: once the process is gone, remove the pod for good."""
        with self._lock:
            running = self._pods.get(pod.metadata.uid)
        if running is not None and running.process is not None and running.process.poll() is None:
            return  # the run thread finalizes after the process exits
        try:
            self.api.delete_namespaced_pod(
                pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0,
                body=client.V1DeleteOptions(grace_period_seconds=0,
                                            preconditions=client.V1Preconditions(uid=pod.metadata.uid)))
        except ApiException as err:
            if err.status not in (404, 409):
                log.warning("deleting pod %s/%s: %s", pod.metadata.namespace, pod.metadata.name, err.reason)

    # --- running -----------------------------------------------------------------------

    def _kill(self, running: _RunningPod, grace: float) -> None:
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

    def _resolve_env(self, pod: client.V1Pod, container: client.V1Container) -> dict[str, str]:
        ns = pod.metadata.namespace
        env: dict[str, str] = {}

        def config_map(name: str) -> dict[str, str]:
            return self.api.read_namespaced_config_map(name, ns).data or {}

        def secret(name: str) -> dict[str, str]:
            data = self.api.read_namespaced_secret(name, ns).data or {}
            return {k: base64.b64decode(v).decode() for k, v in data.items()}

        for source in container.env_from or []:
            prefix = source.prefix or ""
            try:
                if source.config_map_ref is not None:
                    values = config_map(source.config_map_ref.name)
                elif source.secret_ref is not None:
                    values = secret(source.secret_ref.name)
                else:
                    continue
            except ApiException:
                ref = source.config_map_ref or source.secret_ref
                if ref.optional:
                    continue
                raise
            env.update({prefix + k: v for k, v in values.items()})
        fields = {
            "metadata.name": pod.metadata.name,
            "metadata.namespace": ns,
            "metadata.uid": pod.metadata.uid,
            "spec.nodeName": pod.spec.node_name,
            "spec.serviceAccountName": pod.spec.service_account_name or "default",
        }
        for var in container.env or []:
            if var.value_from is None:
                env[var.name] = expand(var.value or "", env)
                continue
            src = var.value_from
            try:
                if src.config_map_key_ref is not None:
                    env[var.name] = config_map(src.config_map_key_ref.name)[src.config_map_key_ref.key]
                elif src.secret_key_ref is not None:
                    env[var.name] = secret(src.secret_key_ref.name)[src.secret_key_ref.key]
                elif src.field_ref is not None and src.field_ref.field_path in fields:
                    env[var.name] = fields[src.field_ref.field_path]
            except (ApiException, KeyError):
                ref = src.config_map_key_ref or src.secret_key_ref
                if ref is None or not ref.optional:
                    raise
        return env

    def _patch_status(self, running: _RunningPod, status: dict) -> None:
        ops = [{"op": "add", "path": f"/status/{key}", "value": value}
               for key, value in status.items()]
        try:
            self.api.patch_namespaced_pod_status(running.name, running.namespace, ops)
        except ApiException as err:
            if err.status != 404:  # a deleted pod needs no status
                log.warning("status of %s/%s: %s %s", running.namespace, running.name,
                            err.reason, err.body)

    @staticmethod
    def _conditions(pod: client.V1Pod, ready: bool, reason: str | None = None) -> list[dict]:
        now = _now()
        own = {
            "PodScheduled": ("True", None),
            "Initialized": ("True", None),
            "ContainersReady": ("True" if ready else "False", reason),
            "Ready": ("True" if ready else "False", reason),
        }
        out = []
        for cond in (pod.status.conditions if pod.status and pod.status.conditions else []):
            if cond.type not in own:  # keep conditions other components own
                out.append({"type": cond.type, "status": cond.status,
                            "reason": cond.reason, "message": cond.message,
                            "lastTransitionTime": cond.last_transition_time.strftime("%Y-%m-%dT%H:%M:%SZ")
                            if cond.last_transition_time else now})
        for type_, (status, why) in own.items():
            cond = {"type": type_, "status": status, "lastTransitionTime": now}
            if why:
                cond["reason"] = why
            out.append(cond)
        return out

    def _container_statuses(self, pod: client.V1Pod, state: dict, ready: bool,
                            container_id: str) -> list[dict]:
        return [{
            "name": c.name,
            "image": c.image or "",
            "imageID": "",
            "containerID": container_id,
            "ready": ready,
            "started": "running" in state,
            "restartCount": 0,
            "state": state,
        } for c in pod.spec.containers]

    def _run(self, running: _RunningPod, pod: client.V1Pod) -> None:
        container = pod.spec.containers[0]
        running.workdir.mkdir(parents=True, exist_ok=True)
        result_path = running.workdir / "termination-log"
        result_path.write_bytes(b"")
        log_path = running.workdir / "output.log"
        started = _now()
        try:
            pod_env = self._resolve_env(pod, container)
            argv = [expand(a, pod_env) for a in (container.command or []) + (container.args or [])]
            if not container.command:
                raise ValueError(f"container {container.name!r} has no command: the pod runner "
                                 "cannot run an image's entrypoint")
        except Exception as err:  # config errors fail the pod like CreateContainerConfigError
            self._finish(running, pod, started, 128, "ContainerCannotRun", str(err)[:MAX_MESSAGE_BYTES],
                         container_id="")
            return
        env = {**os.environ, **self.extra_env, **pod_env, RESULT_ENV: str(result_path)}
        cwd = container.working_dir if container.working_dir and Path(container.working_dir).is_dir() \
            else str(running.workdir)
        with open(log_path, "wb") as out:
            try:
                running.process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out,
                                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                   start_new_session=True)
            except OSError as err:
                self._finish(running, pod, started, 127, "StartError", str(err), container_id="")
                return
            container_id = f"podrunner://{running.process.pid}"
            if running.deleted.is_set():
                self._kill(running, grace=0)
            else:
                self._patch_status(running, {
                    "phase": "Running",
                    "startTime": started,
                    "hostIP": "127.0.0.1",
                    "podIP": "127.0.0.1",
                    "podIPs": [{"ip": "127.0.0.1"}],
                    "conditions": self._conditions(pod, ready=True),
                    "containerStatuses": self._container_statuses(
                        pod, {"running": {"startedAt": started}}, True, container_id),
                })
            code = running.process.wait()
        message = result_path.read_bytes()[:MAX_MESSAGE_BYTES].decode(errors="replace")
        if not message.strip() and code != 0 and \
                container.termination_message_policy == "FallbackToLogsOnError":
            message = tail_log(log_path.read_bytes())
        if code < 0:  # killed by a signal: report like a container runtime does
            code = 128 - code
        self._finish(running, pod, started, code, "Completed" if code == 0 else "Error", message,
                     container_id)

    def _finish(self, running: _RunningPod, pod: client.V1Pod, started: str, code: int,
                reason: str, message: str, container_id: str) -> None:
        if self._stop.is_set():
            return  # the runner is shutting down: leave the pod as it is
        if running.deleted.is_set():
            self._finalize_deletion(pod)
            return
        terminated = {"exitCode": code, "reason": reason, "startedAt": started,
                      "finishedAt": _now(), "containerID": container_id}
        if message:
            terminated["message"] = message
        self._patch_status(running, {
            "phase": "Succeeded" if code == 0 else "Failed",
            "startTime": started,
            "conditions": self._conditions(pod, ready=False, reason="PodCompleted"),
            "containerStatuses": self._container_statuses(pod, {"terminated": terminated},
                                                          False, container_id),
        })

    # --- helpers for tests -------------------------------------------------------------

    def output(self, uid: str) -> str:
        """Combined stdout/stderr of a pod this runner ran (by pod uid)."""
        path = self.workdir / uid / "output.log"
        return path.read_text(errors="replace") if path.exists() else ""
