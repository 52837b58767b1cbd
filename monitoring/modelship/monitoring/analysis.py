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


# --- live quality of A/B variants (ground-truth feedback; modelship.monitoring.significance) ---


def _quality_selector(namespace: str, model: str, versions: tuple[str, ...] = ()) -> str:
    """Without ``versions`` every version of the model; with them only those (an A/B test's
    variants, so a retrained challenger's predecessor, late feedback and all, stays out)."""
    selector = f"namespace={_quote(namespace)}, {m.LABEL_MODEL}={_quote(model)}"
    if versions:
        selector += f", {m.LABEL_VERSION}=~{_quote('|'.join(re.escape(v) for v in sorted(versions)))}"
    return selector


def _window_delta(series: str, window: str) -> str:
    """How much each counter series grew within ``window``, WITHOUT ``increase()``'s
    extrapolation: that scales the counts up when a series is younger than the window (a fresh
    A/B test), which would make the test overconfident. The servers create their counters at 0,
    so a young series' growth is exact; a counter reset inside the window undercounts (fewer
    labels: the test only gets more cautious)."""
    return f"(max_over_time({series}[{window}]) - min_over_time({series}[{window}]))"


def accuracy_queries(namespace: str, model: str, window: str = m.QUALITY_WINDOW, versions: tuple[str, ...] = ()) -> dict[str, str]:
    """Per-variant labelled predictions by outcome over ``window``."""
    series = f"{m.LABELLED_PREDICTIONS_TOTAL}{{{_quality_selector(namespace, model, versions)}}}"
    return {"byOutcome": f"sum by ({m.LABEL_VARIANT}, {m.LABEL_OUTCOME}) {_window_delta(series, window)}"}


def error_queries(namespace: str, model: str, window: str = m.QUALITY_WINDOW, versions: tuple[str, ...] = ()) -> dict[str, str]:
    """Per-variant count, sum and sum of squares of the absolute error over ``window``."""
    selector = _quality_selector(namespace, model, versions)
    return {
        "count": f"sum by ({m.LABEL_VARIANT}) {_window_delta(f'{m.PREDICTION_ABSOLUTE_ERROR}_count{{{selector}}}', window)}",
        "sum": f"sum by ({m.LABEL_VARIANT}) {_window_delta(f'{m.PREDICTION_ABSOLUTE_ERROR}_sum{{{selector}}}', window)}",
        "squares": f"sum by ({m.LABEL_VARIANT}) {_window_delta(f'{m.PREDICTION_SQUARED_ERROR_TOTAL}{{{selector}}}', window)}",
    }
