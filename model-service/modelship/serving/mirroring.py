"""Telling a gateway's mirrored copy of a request (shadow traffic) from a user's request.

Envoy, and so Contour and Envoy Gateway behind a Gateway API ``RequestMirror`` filter, sends the
mirror target a copy whose Host (``:authority``) has ``-shadow`` appended to the host name, and
throws its answer away. The model server counts such a copy under ``traffic="shadow"`` and keeps
it out of everything that stands for user traffic: the ``live`` series, the drift window, and the
prediction store (the copy carries the user's ``x-request-id``, so a stored shadow prediction
could take the feedback meant for the answer the user really got).
"""

from __future__ import annotations

import logging

from modelship.api.names import SHADOW_HOST_SUFFIX
from modelship.monitoring.metrics import TRAFFIC_LIVE, TRAFFIC_SHADOW

log = logging.getLogger(__name__)


def host_name(host: str) -> str:
    """The host name of a Host header value, without its port (``[v6]:port`` included)."""
    host = host.strip()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    name, _, port = host.rpartition(":")
    return name if name and port.isdigit() else host


def traffic_kind(host: str | None) -> str:
    """``shadow`` when the Host header marks a mirrored copy, else ``live``. The suffix is looked
    for on the host name (``svc-shadow:8080``, what Envoy writes) and, for proxies that append it
    to the whole value, at the very end (``svc:8080-shadow``)."""
    if not host:
        return TRAFFIC_LIVE
    value = host.strip().lower()
    if value.endswith(SHADOW_HOST_SUFFIX) or host_name(value).endswith(SHADOW_HOST_SUFFIX):
        return TRAFFIC_SHADOW
    return TRAFFIC_LIVE


_first_seen = False


def request_traffic(host: str | None) -> str:
    """:func:`traffic_kind`, logging the Host of the first mirrored copy a server gets (once:
    what a person checks when a shadow phase shows no shadow requests)."""
    global _first_seen
    kind = traffic_kind(host)
    if kind == TRAFFIC_SHADOW and not _first_seen:
        _first_seen = True
        log.info("first mirrored request (Host %r): counted as traffic=%r, kept out of the drift window and the prediction store", host, kind)
    return kind
