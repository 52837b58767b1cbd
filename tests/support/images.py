"""Run a container's process without a container runtime: the chart's images (and the operator's
workloads) mapped to local commands.

Our images map to the venv's entry points (``modelship``, ``mlflow``: the venv has every extra,
and the MLflow image pins the venv's mlflow version, see mlflow-server/requirements.txt);
the official PostgreSQL image maps to Debian's PostgreSQL 15 (``postgresql-15``: the chart pins
the image's major version to it), with this module standing in for the image's entrypoint
script (initdb with the role, password and database from the environment, then ``postgres``).

The Kubernetes rules are kept: ``command`` replaces the image's ENTRYPOINT, ``args`` its CMD;
the image's ENV comes first, the container's env over it; ``$(VAR)`` references are expanded.
What a pod's isolation gives it (its own filesystem and network) is given back explicitly:

    local = local_command(container, env,                       # env: valueFrom already resolved
                          paths={"/var/lib/postgresql/data": tmp / "data"},  # mounts → host dirs
                          hosts={"ms-postgresql:5432": "127.0.0.1:54321"},   # Service → address
                          listen=("127.0.0.1", 54321))                       # bind here instead
    process = subprocess.Popen(local.argv, env=local.env)

``listen`` and ``hosts`` are for processes sharing the host's network; a pod in its own network
namespace (the platform's process kubelet) passes neither and keeps the pod's ports.

Also a command: ``python images.py postgres-entrypoint ARGS`` is the local PostgreSQL entrypoint.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
#: Debian's PostgreSQL 15 (package postgresql-15; hack/setup.sh --test installs it).
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
#: PostgreSQL refuses to run as root; this Debian account (from the package) runs it instead.
POSTGRES_ACCOUNT = "postgres"


class UnknownImage(LookupError):
    """No local command is known for this image."""


@dataclass(frozen=True)
class Image:
    """What the image itself declares (ENTRYPOINT, CMD, ENV) and how its server is told where to listen."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    #: Arguments appended to bind (host, port) instead of the image's own address.
    listen_args: Callable[[str, int], list[str]] | None = None


_MODELSHIP_ENV = {"HOME": "/tmp", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
_SERVING_ENV = {**_MODELSHIP_ENV, "MODELSHIP_MODEL_CACHE": "/var/cache/modelship", "MODELSHIP_PORT": "3000", "BENTOML_DO_NOT_TRACK": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "OMP_WAIT_POLICY": "PASSIVE"}

#: Image name (the repository's last path segment, without registry or tag) → what it runs; from
#: the Dockerfiles (operator/, training-jobs/, model-service/, mlflow-server/) and the official
#: postgres image. Both names the Tiltfile and the chart use for our images are listed.
IMAGES: dict[str, Image] = {
    "modelship-operator": Image(("modelship", "operator"), env=dict(_MODELSHIP_ENV), listen_args=lambda host, port: [f"--http-host={host}", f"--http-port={port}"]),
    "modelship-training": Image(("modelship", "train"), env={**_MODELSHIP_ENV, "OMP_WAIT_POLICY": "PASSIVE"}),
    "modelship-serving": Image(("modelship", "serve"), env=_SERVING_ENV),
    "modelship-mlflow": Image(("mlflow",), ("server", "--host", "0.0.0.0", "--port", "5000"), env=dict(_MODELSHIP_ENV), listen_args=lambda host, port: [f"--host={host}", f"--port={port}"]),
    "postgres": Image(("docker-entrypoint.sh",), ("postgres",), env={"PGDATA": "/var/lib/postgresql/data"}, listen_args=lambda host, port: ["-c", f"listen_addresses={host}", "-c", f"port={port}"]),
}
IMAGES["modelship-training-jobs"] = IMAGES["modelship-training"]
IMAGES["modelship-model-service"] = IMAGES["modelship-serving"]

#: Where the image's own files are, mapped like a mount when the caller maps that path.
_POSTGRES_SOCKET_DIR = "/var/run/postgresql"


def image_name(image: str) -> str:
    """``ghcr.io/modelship/modelship-mlflow:0.1.0`` → ``modelship-mlflow``; ``postgres@sha256:…`` → ``postgres``."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def executable(name: str) -> list[str]:
    """The local program for a container's argv[0]."""
    if name == "docker-entrypoint.sh":
        # The system Python: the stand-in is standard library only and may step down to the
        # postgres account, which cannot read the project venv.
        system = Path("/usr/bin/python3")
        return [str(system) if system.exists() else sys.executable, str(Path(__file__).resolve()), "postgres-entrypoint"]
    if (VENV_BIN / name).exists():
        return [str(VENV_BIN / name)]
    if (POSTGRES_BIN / name).exists():
        return [str(POSTGRES_BIN / name)]
    raise UnknownImage(f"no local program for {name!r} (looked in {VENV_BIN} and {POSTGRES_BIN})")


@dataclass(frozen=True)
class LocalCommand:
    argv: list[str]
    env: dict[str, str]


_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names replaced, unknown left as written, ``$$`` → ``$``."""
    return _REFERENCE.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def _rewrite(text: str, paths: dict[str, Path], hosts: dict[str, str]) -> str:
    """One pass, longest first, so a replacement is never rewritten again (``/tmp`` inside a
    host directory that replaced ``/etc/secret``)."""
    replacements = {p.rstrip("/"): str(d) for p, d in paths.items()}
    patterns = [r"(?<![\w./-])" + re.escape(p) + r"(?=/|$|[\s,;:])" for p in sorted(replacements, key=len, reverse=True)]
    patterns += [r"(?<![\w.-])" + re.escape(h) + r"(?![\w.-])" for h in sorted(hosts, key=len, reverse=True)]
    if not patterns:
        return text
    return re.sub("|".join(patterns), lambda m: replacements.get(m.group(0)) or hosts[m.group(0)], text)


def local_command(container: dict, env: dict[str, str] | None = None, *, paths: dict[str, Path] | None = None,
                  hosts: dict[str, str] | None = None, listen: tuple[str, int] | None = None,
                  base_env: dict[str, str] | None = None) -> LocalCommand:
    """The local command that does what ``container`` (a pod spec's container, as rendered or as
    stored by the API server) would do in its image.

    ``env``: the container's environment with every ``valueFrom``/``envFrom`` already resolved
    (default: its literal ``value`` entries; a ``valueFrom`` left unresolved is an error).
    ``paths``: container path → host directory (its volume mounts, the image's writable dirs).
    ``hosts``: ``service:port`` → ``host:port`` for addresses the pod would reach by DNS.
    ``listen``: bind the server at this (host, port) instead of the image's address.
    ``base_env``: the local process's own environment under the image's (default: os.environ,
    so PATH and the venv stay usable).
    """
    image = IMAGES.get(image_name(container["image"]))
    if image is None:
        raise UnknownImage(f"container {container.get('name')!r}: no local command for image {container['image']!r} (known: {sorted(IMAGES)})")
    if env is None:
        unresolved = [e["name"] for e in container.get("env", []) if "valueFrom" in e]
        if unresolved or container.get("envFrom"):
            raise ValueError(f"container {container.get('name')!r}: resolve {unresolved or 'envFrom'} first and pass env=")
        # The API server stores an empty value as no value.
        env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
    paths, hosts = dict(paths or {}), dict(hosts or {})

    merged = {**image.env}
    for name, value in env.items():
        merged[name] = expand(value, merged)
    command = list(container.get("command") or image.entrypoint)
    if container.get("command"):
        args = list(container.get("args") or [])
    else:
        args = list(container["args"]) if container.get("args") is not None else list(image.cmd)
    argv = [expand(a, merged) for a in command + args]
    if listen:
        if image.listen_args is None:
            raise UnknownImage(f"image {container['image']!r}: no known way to choose its listen address")
        argv += image.listen_args(*listen)
    if image_name(container["image"]) == "postgres" and _POSTGRES_SOCKET_DIR in paths:
        merged["MODELSHIP_LOCAL_PG_SOCKET_DIR"] = _POSTGRES_SOCKET_DIR
    argv = [_rewrite(a, paths, hosts) for a in argv]
    merged = {k: _rewrite(v, paths, hosts) for k, v in merged.items()}
    return LocalCommand(executable(argv[0]) + argv[1:], {**(os.environ if base_env is None else base_env), **merged})


# --- the local stand-in for the postgres image's docker-entrypoint.sh ------------------------

def postgres_entrypoint(args: list[str], env: dict[str, str]) -> list[str]:
    """What the official image's entrypoint does before ``exec postgres``, for the variables the
    chart sets: POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD(_FILE), POSTGRES_INITDB_ARGS,
    PGDATA. Started as root it hands the data to the postgres account and steps down (as the
    image does with gosu; PostgreSQL refuses to run as root). Returns the argv to exec."""
    if not args or args[0] != "postgres":
        return executable(args[0]) + args[1:] if args else []
    data = Path(env.get("PGDATA", "/var/lib/postgresql/data"))
    account = _step_down_account(data, env.get("MODELSHIP_LOCAL_PG_SOCKET_DIR"))
    user = env.get("POSTGRES_USER", "postgres")
    database = env.get("POSTGRES_DB", user)
    if not (data / "PG_VERSION").exists():
        password = env.get("POSTGRES_PASSWORD")
        if password is None and env.get("POSTGRES_PASSWORD_FILE"):
            password = Path(env["POSTGRES_PASSWORD_FILE"]).read_text()
        if not password:
            raise SystemExit("postgres-entrypoint: POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE is required (as in the image)")
        with tempfile.NamedTemporaryFile("w", dir=data.parent, delete=False) as pwfile:
            pwfile.write(password)
        if account:
            os.chown(pwfile.name, account.pw_uid, account.pw_gid)
        as_account = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []} if account else {}
        try:
            subprocess.run([str(POSTGRES_BIN / "initdb"), f"--username={user}", f"--pwfile={pwfile.name}", "-D", str(data), *env.get("POSTGRES_INITDB_ARGS", "").split()],
                           check=True, stdout=subprocess.DEVNULL, cwd=data.parent, **as_account)
        finally:
            os.unlink(pwfile.name)
        if database != "postgres":
            subprocess.run([str(POSTGRES_BIN / "postgres"), "--single", "-D", str(data), "postgres"],
                           input=f'CREATE DATABASE "{database}";\n', text=True, check=True, stdout=subprocess.DEVNULL, cwd=data.parent, **as_account)
        # As the image does: password authentication from any address.
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write("\nhost all all all scram-sha-256\n")
    argv = [str(POSTGRES_BIN / "postgres"), *args[1:]]
    if env.get("MODELSHIP_LOCAL_PG_SOCKET_DIR"):
        argv += ["-c", f"unix_socket_directories={env['MODELSHIP_LOCAL_PG_SOCKET_DIR']}"]
    if account:
        os.chdir(data.parent)
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
    return argv


def _step_down_account(data: Path, socket_dir: str | None) -> pwd.struct_passwd | None:
    """As root: the postgres account, owning the data directory's parent and the socket dir."""
    data.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        data.mkdir(mode=0o700, exist_ok=True)
        return None
    account = pwd.getpwnam(POSTGRES_ACCOUNT)
    for directory in (data.parent, data, *([Path(socket_dir)] if socket_dir else [])):
        directory.mkdir(mode=0o700, exist_ok=True)
        for root, dirs, files in os.walk(directory):
            for name in (root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)):
                os.chown(name, account.pw_uid, account.pw_gid)
    return account


def main(argv: list[str]) -> int:
    if argv[:1] != ["postgres-entrypoint"]:
        print(f"usage: {Path(__file__).name} postgres-entrypoint ARGS...", file=sys.stderr)
        return 2
    command = postgres_entrypoint(argv[1:], dict(os.environ))
    os.execv(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
