"""The PromQL of a canary analysis, built from the metric names in
:mod:`modelship.monitoring.metrics` beside the recording rules of :mod:`modelship.monitoring.rules`.

The recording rules look back one minute; a canary step is judged over the step so far, so these
queries read the raw series over ``window`` (e.g. ``90s``) for one ``version`` of one model in
one namespace. The ``variant`` label is not selected on: a promoted candidate keeps the pods
(and the variant label) it was canaried with. ``traffic`` picks the requests judged: ``live``
(user requests, every weighted step and A/B test) or ``shadow`` (the gateway's mirrored copies,
all a candidate gets in a canary's shadow phase).
"""

from __future__ import annotations

import re

from modelship.monitoring import metrics as m

#: Names of the built-in checks, as they appear in status, events and conditions.
CHECK_REQUESTS = "requests"
CHECK_ERROR_RATE = "errorRate"
CHECK_LATENCY_P95 = "latencyP95"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def selector(namespace: str, model: str, version: str, traffic: str | None = None, **extra: str) -> str:
    """``{namespace="…",model="…",version="…"}`` with values escaped for PromQL, and with a
    ``traffic`` kind its matcher (``live`` matches every series that is not shadow)."""
    labels = {"namespace": namespace, m.LABEL_MODEL: model, m.LABEL_VERSION: version, **extra}
    matchers = [f"{key}={_quote(value)}" for key, value in labels.items()]
    if traffic is not None:
        matchers.append(traffic_matcher(traffic))
    return "{" + ",".join(matchers) + "}"


def traffic_matcher(traffic: str) -> str:
    if traffic not in m.TRAFFIC_KINDS:
        raise ValueError(f"traffic must be one of {', '.join(m.TRAFFIC_KINDS)}, not {traffic!r}")
    return m.SHADOW_TRAFFIC_MATCHER if traffic == m.TRAFFIC_SHADOW else m.LIVE_TRAFFIC_MATCHER


def requests_query(namespace: str, model: str, version: str, window: str, traffic: str = m.TRAFFIC_LIVE) -> str:
    """Prediction requests the version answered (any outcome) over ``window``."""
    return f"sum(increase({m.PREDICTIONS_TOTAL}{selector(namespace, model, version, traffic)}[{window}]))"


def error_ratio_query(namespace: str, model: str, version: str, window: str, traffic: str = m.TRAFFIC_LIVE) -> str:
    """Share of requests that ended in a server error; rejected bad input is the client's fault and
    does not count (as in :data:`metrics.RECORD_ERROR_RATIO`). No requests: no value."""
    errors = f"sum(increase({m.PREDICTIONS_TOTAL}{selector(namespace, model, version, traffic, **{m.LABEL_OUTCOME: m.OUTCOME_ERROR})}[{window}]))"
    return f"({errors} or vector(0)) / ({requests_query(namespace, model, version, window, traffic)} > 0)"


def latency_p95_query(namespace: str, model: str, version: str, window: str, traffic: str = m.TRAFFIC_LIVE) -> str:
    """95th-percentile request latency in seconds over ``window``."""
    return f"histogram_quantile(0.95, sum by (le) (rate({m.PREDICTION_LATENCY_SECONDS}_bucket{selector(namespace, model, version, traffic)}[{window}])))"


_PLACEHOLDER = re.compile(r"\{\{\s*(namespace|model|version|window|traffic)\s*\}\}")


def render_template(template: str, namespace: str, model: str, version: str, window: str, traffic: str = m.TRAFFIC_LIVE) -> str:
    """A custom analysis metric's query with its placeholders filled in (``{{traffic}}``: the
    traffic kind the step is judged on, for ``traffic="{{traffic}}"``)."""
    values = {"namespace": namespace, "model": model, "version": version, "window": window, "traffic": traffic}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def window_of(seconds: float) -> str:
    """A PromQL range for a step that has run ``seconds`` (whole seconds, at least 10)."""
    return f"{max(int(seconds), 10)}s"
