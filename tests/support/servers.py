"""Real local servers for tests: an MLflow tracking server and the operator, each a process on
127.0.0.1 that the fixture which started it also stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 60, process: subprocess.Popen | None = None, expect: int = 200) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == expect:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            last = error
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer {expect} within {timeout}s ({last})")


def stop_process(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``grace``; the whole process group when the process leads one
    (servers started with ``start_new_session`` fork workers that must go too)."""
    if process.poll() is not None:
        return
    try:
        leads_group = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        return

    def send(sig: int) -> None:
        try:
            os.killpg(process.pid, sig) if leads_group else process.send_signal(sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(10)


class MlflowServer:
    """``mlflow server`` with a sqlite backend and a local artifact store under ``root``."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "mlflow-server.log"

    def start(self, timeout: float = 120) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                str(VENV_BIN / "mlflow"), "server",
                "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination", str(self.root / "artifacts"),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            ],
            stdout=log, stderr=subprocess.STDOUT,
            cwd=self.root,  # nothing of the server's lands in the checkout
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "GIT_PYTHON_REFRESH": "quiet"},
            start_new_session=True,
        )
        try:
            wait_http(f"{self.url}/health", timeout, self.process)
            time.sleep(0.5)
            if self.process.poll() is not None:
                raise RuntimeError("it exited; another process answers on its port")
        except (RuntimeError, TimeoutError) as error:
            self.stop()
            raise RuntimeError(f"mlflow server did not start: {error}\n{self.log_path.read_text()[-2000:]}") from None
        return self

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)  # its own session: the forked workers go too
            self.process = None


class OperatorProcess:
    """``modelship operator`` against a kubeconfig, as the Deployment would run it."""

    def __init__(self, kubeconfig: Path, namespace: str, env: dict[str, str], log_path: Path) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> OperatorProcess:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "modelship"), "operator", "--namespace", self.namespace, "--http-host", "127.0.0.1", "--http-port", str(self.port), "--log-format", "plain"],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.env},
        )
        wait_http(f"http://127.0.0.1:{self.port}/readyz", timeout, self.process)
        return self

    def kill(self) -> None:
        """SIGKILL: a crash, no clean-up."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            return response.read().decode()
