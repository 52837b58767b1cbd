"""Pod networking for the process kubelet: one network namespace per pod, a veth pair into a
host bridge that owns the pod range, and nothing else.

Layout of one platform instance ``N`` (several can run side by side, e.g. ``make platform``
and a test session)::

    host                                     pod netns  ms<N>-<8 hex>
    bridge ms<N>br  10.244.<16N>.1/20   <--veth-->  eth0 10.244.<16N>.x/20, lo
    route 10.244.<16N>.0/20 dev ms<N>br      (connected route only, no default route)

* Pods get addresses from the lower half of the /20; KWOK (which only fakes pods) gets the
  last /24 (``kwok_cidr``), where no namespace exists: a packet there is answered by nobody
  and never leaves the bridge.
* Fail closed: :meth:`PodNetwork.verify_contained` checks, before any pod starts and again
  for every pod, that the host routes the whole pod range into the bridge (no more specific
  route, in any table, sends part of it elsewhere) and that a pod's namespace has no route
  outside the range. A pod has no default route, so it can reach the bridge's address (where
  the platform's MLflow listens) and other pods, nothing else.
* Everything created is named with the instance prefix; :meth:`PodNetwork.teardown` removes
  it and :meth:`PodNetwork.leftovers` lists what is still there (the platform's teardown
  check).

Needs root (``ip netns``, veth, bridge). Standard library only.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test-cluster"))
from testcluster import _pid_alive  # noqa: E402  (one liveness rule: zombies are dead)

#: The range all platform instances carve their /20 from. Checked free before use.
PLATFORM_RANGE = ipaddress.ip_network("10.244.0.0/16")
INSTANCE_PREFIX_LEN = 20
MAX_INSTANCES = 16
PREFIX = "ms"
#: Marker file per instance (in /run): the pid of the process that owns it, for reaping.
STATE_DIR = Path("/run/modelship-podnet")


class NetworkError(RuntimeError):
    """Pod networking could not be set up, or would not be contained to this machine."""


def ip(*args: str, check: bool = True, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetworkError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc


def ip_json(*args: str, netns: str | None = None) -> list[dict]:
    out = ip("-j", *args, netns=netns).stdout.strip()
    return json.loads(out) if out else []


def _route_net(route: dict) -> ipaddress.IPv4Network | None:
    dst = route.get("dst", "")
    if dst == "default":
        return ipaddress.ip_network("0.0.0.0/0")
    try:
        net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
    except ValueError:
        return None
    return net if net.version == 4 else None


def uncontained_routes(routes: list[dict], cidr: ipaddress.IPv4Network, bridge: str) -> list[str]:
    """Host routes (``ip -j route show table all``) that would send part of ``cidr`` anywhere
    but ``bridge``: a pure function, so the rule is tested on tables of routes.

    A route inside ``cidr`` must go to the bridge (or drop: blackhole/unreachable/prohibit);
    and ``cidr`` itself must be covered by a route to the bridge or a drop, so the routes that
    contain it (the default route) never apply."""
    problems = []
    covered = False
    drop = {"blackhole", "unreachable", "prohibit"}
    for route in routes:
        net = _route_net(route)
        if net is None or not net.overlaps(cidr):
            continue
        to_bridge = route.get("dev") == bridge
        dropped = route.get("type") in drop
        if net.subnet_of(cidr):
            if not (to_bridge or dropped):
                problems.append(f"{route.get('dst')} dev {route.get('dev')} (table {route.get('table', 'main')})")
            if net == cidr and (to_bridge or dropped) and route.get("type", "unicast") in ("unicast", *drop):
                covered = True
    if not covered:
        problems.append(f"no route sends all of {cidr} to {bridge} (or drops it)")
    return problems


@dataclass
class PodAddress:
    netns: str
    ip: str
    host_veth: str


@dataclass
class PodNetwork:
    """The bridge and the per-pod namespaces of one platform instance."""

    index: int
    cidr: ipaddress.IPv4Network = field(init=False)
    _free: list[ipaddress.IPv4Address] = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.cidr = list(PLATFORM_RANGE.subnets(new_prefix=INSTANCE_PREFIX_LEN))[self.index]
        hosts = list(self.pod_range.hosts())
        self._free = [a for a in hosts if a != self.gateway]

    # --- names and ranges ---------------------------------------------------------------

    @property
    def tag(self) -> str:
        return f"{PREFIX}{self.index}"

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The bridge's address: where pods reach host services (MLflow)."""
        return self.cidr.network_address + 1

    @property
    def pod_range(self) -> ipaddress.IPv4Network:
        """Addresses handed to pods (the lower half of the instance's range)."""
        return list(self.cidr.subnets(prefixlen_diff=1))[0]

    @property
    def kwok_cidr(self) -> ipaddress.IPv4Network:
        """For KWOK's faked pods: inside the bridge's range, where no namespace exists."""
        return list(self.cidr.subnets(new_prefix=24))[-1]

    def netns_name(self, uid: str) -> str:
        return f"{self.tag}-{hashlib.sha1(uid.encode()).hexdigest()[:8]}"

    @property
    def state_file(self) -> Path:
        return STATE_DIR / self.tag

    # --- instances ----------------------------------------------------------------------

    @classmethod
    def claim(cls) -> PodNetwork:
        """The first free instance (no bridge, range unrouted, or its owner dead: reaped)."""
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        links = {link["ifname"] for link in ip_json("link", "show")}
        routes = ip_json("route", "show", "table", "all")
        for index in range(MAX_INSTANCES):
            net = cls(index)
            try:
                owner = int(net.state_file.read_text())
            except (OSError, ValueError):
                owner = None
            if owner is not None and owner != os.getpid() and _pid_alive(owner):
                continue
            if owner is not None or net.bridge in links:
                net.teardown()  # a dead session's leftovers
                links = {link["ifname"] for link in ip_json("link", "show")}
                routes = ip_json("route", "show", "table", "all")
            if any((n := _route_net(r)) is not None and n.overlaps(net.cidr) and n.prefixlen > 0 for r in routes):
                continue  # someone else routes this range
            addrs = [a for link in ip_json("addr", "show") for a in link.get("addr_info", []) if a.get("family") == "inet"]
            if any(ipaddress.ip_address(a["local"]) in net.cidr for a in addrs):
                continue
            net.state_file.write_text(str(os.getpid()))
            return net
        raise NetworkError(f"no free /{INSTANCE_PREFIX_LEN} for pods in {PLATFORM_RANGE}")

    # --- the bridge ---------------------------------------------------------------------

    def setup(self) -> PodNetwork:
        """Create the bridge owning the range, then check the host keeps the range local."""
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/{self.cidr.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        self.verify_contained()
        return self

    def verify_contained(self) -> None:
        """Fail closed: raise unless every address of the range is routed into the bridge."""
        problems = uncontained_routes(ip_json("route", "show", "table", "all"), self.cidr, self.bridge)
        for probe in (self.cidr.network_address + 1, self.cidr.network_address + 2, self.kwok_cidr.network_address + 1, self.cidr.broadcast_address - 1):
            [route] = ip_json("route", "get", str(probe))
            if route.get("dev") != self.bridge and route.get("type") not in ("blackhole", "unreachable", "prohibit", "local"):
                problems.append(f"ip route get {probe} -> {route.get('dev')}")
        if problems:
            raise NetworkError(f"pod range {self.cidr} is not contained to bridge {self.bridge}: " + "; ".join(problems))

    # --- pods ---------------------------------------------------------------------------

    def add_pod(self, uid: str) -> PodAddress:
        """A namespace with ``lo`` and ``eth0`` (an address from the pod range) on the bridge."""
        self.verify_contained()
        with self._lock:
            if not self._free:
                raise NetworkError(f"pod range {self.pod_range} exhausted")
            address = self._free.pop(0)
        netns = self.netns_name(uid)
        host_veth = f"{netns.replace('-', 'v')}"[:15]
        try:
            ip("netns", "add", netns)
            ip("link", "add", host_veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            ip("link", "set", host_veth, "master", self.bridge, "up")
            ip("addr", "add", f"{address}/{self.cidr.prefixlen}", "dev", "eth0", netns=netns)
            ip("link", "set", "lo", "up", netns=netns)
            ip("link", "set", "eth0", "up", netns=netns)
            outside = [r for r in ip_json("route", "show", "table", "all", netns=netns)
                       if (n := _route_net(r)) is not None and not n.subnet_of(self.cidr) and not n.is_loopback and r.get("dev") != "lo"]
            if outside:
                raise NetworkError(f"netns {netns} routes outside {self.cidr}: {outside}")
        except Exception:
            self.remove_pod(PodAddress(netns, str(address), host_veth))
            raise
        return PodAddress(netns, str(address), host_veth)

    def remove_pod(self, pod: PodAddress) -> None:
        kill_netns_processes(pod.netns)
        ip("netns", "del", pod.netns, check=False)  # takes the veth pair with it
        ip("link", "del", pod.host_veth, check=False)
        with self._lock:
            address = ipaddress.ip_address(pod.ip)
            if address not in self._free:
                self._free.append(address)

    # --- teardown and checks ------------------------------------------------------------

    def namespaces(self) -> list[str]:
        return [n["name"] for n in ip_json("netns", "list") if n["name"].startswith(f"{self.tag}-")]

    def teardown(self) -> None:
        for netns in self.namespaces():
            kill_netns_processes(netns)
            ip("netns", "del", netns, check=False)
        for link in ip_json("link", "show"):
            name = link["ifname"].split("@")[0]
            if name == self.bridge or name.startswith(f"{self.tag}v"):
                ip("link", "del", name, check=False)
        self.state_file.unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """Namespaces, links and processes of this instance still there (should be none)."""
        found = [f"netns {n}" for n in self.namespaces()]
        found += [f"link {link['ifname']}" for link in ip_json("link", "show")
                  if link["ifname"] == self.bridge or link["ifname"].startswith(f"{self.tag}v")]
        return found


def netns_pids(netns: str) -> list[int]:
    proc = ip("netns", "pids", netns, check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def kill_netns_processes(netns: str, grace: float = 3.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = netns_pids(netns)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_pid_alive(p) for p in netns_pids(netns)):
            time.sleep(0.1)
