"""Real local servers for tests and the e2e platform (hack/platform): an MLflow tracking server,
Prometheus, Alertmanager, PostgreSQL and the operator, each a process on 127.0.0.1 (MLflow may
bind the platform bridge's address instead, so pods in their network namespaces reach it) that
whoever started it also stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
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


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 60, interval: float = 0.5) -> Any:
    """Poll ``probe()`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(interval)
    raise TimeoutError(f"no {what} within {timeout}s")


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


def pids_under(path: Path) -> list[int]:
    """Live processes whose working directory or command line is inside ``path``."""
    me, found, prefix = os.getpid(), [], str(path)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X") and (cwd == prefix or cwd.startswith(prefix + "/") or prefix + "/" in cmdline):
            found.append(int(entry.name))
    return found


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class MlflowServer:
    """``mlflow server`` with a sqlite backend and a local artifact store under ``root``."""

    def __init__(self, root: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.root = root
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
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
                "--host", self.host, "--port", str(self.port), "--workers", "1",
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
            # MLflow 3's job consumers (huey) leave the server's process group: reap them by
            # their working directory, the server's root.
            time.sleep(0.2)
            kill_pids(pids_under(self.root))


def start_logged(server: Any, name: str, argv: list[str], timeout: float) -> None:
    """Start ``argv`` as ``server.process`` (its own session, output in ``server.log_path``)
    and wait for ``server.url``/-/ready; on failure stop it and say why with the log's tail."""
    log = open(server.log_path, "ab")
    server.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=server.root, start_new_session=True)
    try:
        wait_http(f"{server.url}/-/ready", timeout, server.process)
    except (RuntimeError, TimeoutError) as error:
        server.stop()
        raise RuntimeError(f"{name} did not start: {error}\n{server.log_path.read_text()[-2000:]}") from None


class PrometheusServer:
    """The real ``prometheus`` (Debian package) on 127.0.0.1, scraping ``targets`` every second
    and evaluating ``rule_files`` every second; ``target_labels`` stand in for the labels the
    Prometheus Operator adds to a scraped pod (``namespace``, ``pod``)."""

    def __init__(
        self, root: Path, targets: list[str], rule_files: list[Path], target_labels: dict[str, str],
        groups: list[tuple[list[str], dict[str, str]]] | None = None,
        scrape_configs: list[dict[str, Any]] | None = None, alertmanagers: list[str] | None = None,
        binary: Path | None = None,
    ) -> None:
        """``groups`` are more (targets, labels) pairs, one per simulated pod; ``scrape_configs``
        (e.g. kubernetes_sd_configs derived from a PodMonitor) replace the static targets;
        ``alertmanagers`` are host:port addresses alerts are sent to; ``binary`` another
        prometheus than Debian's (whose build has no Kubernetes discovery)."""
        self.binary = binary
        self.root = root
        self.targets = targets
        self.rule_files = rule_files
        self.target_labels = target_labels
        self.groups = groups or []
        #: (targets, labels) scraped with honor_labels: true (the operator, whose milestone gauges
        #: carry the ModelDeployment's ``namespace``, as the chart's ServiceMonitor keeps it).
        self.honoring_groups: list[tuple[list[str], dict[str, str]]] = []
        self.scrape_configs = scrape_configs
        #: host:port of Alertmanagers that firing alerts are sent to (every second).
        self.alertmanagers = alertmanagers or []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "prometheus.log"

    def _write_targets(self) -> None:
        """The static targets as file-based discovery reads them: a new target is picked up
        without a configuration reload. (After each SIGHUP reload, the Debian Prometheus 2.42
        with these 1 s intervals had Alertmanager resolve every firing alert and, as it kept
        firing, notify it again: a test of "one notification" cannot reload.)"""
        import json

        for name, groups in (("targets.json", [(self.targets, self.target_labels), *self.groups]), ("targets-honor.json", self.honoring_groups)):
            path = self.root / name
            path.with_suffix(".tmp").write_text(json.dumps([{"targets": targets, "labels": labels} for targets, labels in groups if targets]))
            path.with_suffix(".tmp").rename(path)  # whole, or not at all, when Prometheus reads it

    def _write_config(self) -> None:
        import yaml

        self._write_targets()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": self.scrape_configs if self.scrape_configs is not None else [
                {"job_name": "modelship", "file_sd_configs": [{"files": [str(self.root / "targets.json")], "refresh_interval": "1s"}]},
                # Targets whose own labels win (the operator's milestone gauges carry `namespace`).
                {"job_name": "modelship-honor", "honor_labels": True, "file_sd_configs": [{"files": [str(self.root / "targets-honor.json")], "refresh_interval": "1s"}]},
            ],
        }
        if self.alertmanagers:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": self.alertmanagers}]}]}
        (self.root / "prometheus.yml").write_text(yaml.safe_dump(config))

    def start(self, timeout: float = 60) -> PrometheusServer:
        import shutil

        binary = str(self.binary) if self.binary else shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus not found: `hack/setup.sh --test` installs the Debian package")
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_config()
        start_logged(self, "prometheus", [
            binary, f"--config.file={self.root / 'prometheus.yml'}", f"--storage.tsdb.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # Firing alerts go to Alertmanager every second (default: every minute).
            "--rules.alert.resend-delay=1s",
        ], timeout)
        return self

    def add_group(self, targets: list[str], labels: dict[str, str], timeout: float = 30, honor_labels: bool = False) -> None:
        """Scrape more targets, as a service discovery would add a new pod (file-based discovery:
        no reload); ``honor_labels``: the targets' own labels win over ``labels``."""
        import httpx

        (self.honoring_groups if honor_labels else self.groups).append((targets, labels))
        self._write_targets()

        def scraped() -> bool:
            active = httpx.get(f"{self.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
            return set(targets) <= {t["labels"].get("instance") for t in active}

        wait_until(f"Prometheus to scrape {targets}", scraped, timeout=timeout)

    def query(self, expr: str) -> list[dict]:
        import httpx

        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def alerts(self) -> list[dict]:
        import httpx

        return httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]

    def targets_active(self) -> list[dict]:
        """``/api/v1/targets`` active targets (labels, scrapeUrl, health)."""
        import httpx

        return httpx.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=10).json()["data"]["activeTargets"]

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)
            self.process = None


class PostgresServer:
    """Debian's PostgreSQL (``initdb`` in a temporary directory, ``postgres`` on 127.0.0.1 and a
    free port, trust authentication for the one user ``modelship``). :meth:`stop` and
    :meth:`start` again keep the data: tests take the database away and bring it back.

    PostgreSQL refuses to run as root; under root (containers, CI) it runs as ``nobody``."""

    BIN = Path(os.environ.get("MODELSHIP_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
    USER = "modelship"

    def __init__(self, port: int | None = None) -> None:
        import tempfile

        # Not under pytest's tmp_path: that is private to root, and the server may run as nobody.
        self.root = Path(tempfile.mkdtemp(prefix="modelship-postgres-"))
        self.port = port or free_port()
        self.dsn = f"postgresql://{self.USER}@127.0.0.1:{self.port}/postgres"
        self.process: subprocess.Popen | None = None
        self._initialised = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def _as_owner(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]

    def _initdb(self) -> None:
        if not (self.BIN / "initdb").exists():
            raise FileNotFoundError(f"{self.BIN / 'initdb'} not found: `hack/setup.sh --test` installs Debian's postgresql")
        if os.geteuid() == 0:
            import pwd

            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
        done = subprocess.run(
            [*self._as_owner(), str(self.BIN / "initdb"), "-D", str(self.data), "-U", self.USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
            capture_output=True, text=True, timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        self._initialised = True

    def start(self, timeout: float = 60) -> PostgresServer:
        if not self._initialised:
            self._initdb()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                *self._as_owner(), str(self.BIN / "postgres"), "-D", str(self.data),
                "-c", "listen_addresses=127.0.0.1", "-p", str(self.port), "-k", str(self.root),
            ],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited {self.process.returncode}:\n{self.log_path.read_text()[-2000:]}")
            if self.accepts():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postgres did not start within {timeout}s:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.2)

    def accepts(self) -> bool:
        done = subprocess.run([str(self.BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER, "-t", "2"], capture_output=True)
        return done.returncode == 0

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as connection:
            cursor = connection.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, the data stays."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def remove(self) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class AlertmanagerServer:
    """The real ``prometheus-alertmanager`` (Debian package) on 127.0.0.1, with ``config`` as its
    alertmanager.yml (by default one receiver that sends nowhere) and no cluster listener (it
    would bind every interface)."""

    def __init__(self, root: Path, config: dict[str, Any] | None = None) -> None:
        self.root = root
        self.config = config or {"route": {"receiver": "null", "group_wait": "1s", "group_interval": "1s"}, "receivers": [{"name": "null"}]}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "alertmanager.log"

    def start(self, timeout: float = 60) -> AlertmanagerServer:
        import shutil

        import yaml

        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            raise FileNotFoundError("alertmanager not found: `hack/setup.sh --test` installs the Debian package prometheus-alertmanager")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "alertmanager.yml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        start_logged(self, "alertmanager", [
            binary, f"--config.file={self.root / 'alertmanager.yml'}", f"--storage.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
        ], timeout)
        return self

    def alerts(self) -> list[dict]:
        import httpx

        return httpx.get(f"{self.url}/api/v2/alerts", timeout=10).json()

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)
            self.process = None


class OperatorProcess:
    """``modelship operator`` against a kubeconfig, as the Deployment would run it."""

    def __init__(self, kubeconfig: Path, namespace: str | None, env: dict[str, str], log_path: Path) -> None:
        """``namespace`` None: every namespace."""
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> OperatorProcess:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "modelship"), "operator", *(["--namespace", self.namespace] if self.namespace else []),
             "--http-host", "127.0.0.1", "--http-port", str(self.port), "--log-format", "plain"],
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


class WebhookSink:
    """An HTTP server on 127.0.0.1 that answers every POST with 200 and keeps its JSON body: it
    stands in for a chat service's incoming-webhook endpoint (Slack's ``api_url``)."""

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        self.received: list[dict[str, Any]] = []
        lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server hook
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    sink.received.append({"path": self.path, "body": json.loads(body or b"null")})
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/XXXX"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> WebhookSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpSink:
    """An SMTP server on 127.0.0.1 (aiosmtpd) that accepts every message and keeps it parsed
    (:class:`email.message.EmailMessage`): Alertmanager's e-mail receiver delivers to it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Any] = []
        self._controller: Any = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SmtpSink:
        import email
        import email.policy

        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                sink.messages.append(message)
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def texts(self) -> list[str]:
        """The plain-text body of every message received."""
        return [message.get_body(preferencelist=("plain",)).get_content() for message in list(self.messages)]

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
