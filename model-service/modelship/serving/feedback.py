"""Ground-truth feedback: the body of ``POST /feedback`` checked against the served model, and
each label judged against the stored prediction. Pure functions; the route is in
:meth:`modelship.serving.runtime.ModelRuntime.feedback`.

A body is one item, an array of items, or ``{"feedback": [...]}``; an item is
``{"requestId": "<record id>", "label": "<class>"}`` (classification) or
``{"requestId": "<record id>", "value": <number>}`` (regression). The record id of a
one-record request is its ``requestId``; in a request of n > 1 records, record i is
``<requestId>-<i>`` (the prediction response lists them as ``recordIds``).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

from modelship.serving.errors import InvalidInput, MalformedRequest, TooManyRecords

#: Items one ``POST /feedback`` may carry.
MAX_FEEDBACK_ITEMS = 10_000
#: Longest request id taken from a caller's ``x-request-id``; a longer one is replaced.
MAX_REQUEST_ID_LENGTH = 200


@dataclass(frozen=True)
class Feedback:
    record_id: str
    label: str | None = None  #: classification: the true class
    value: float | None = None  #: regression: the true value


def request_id_of(header: str | None) -> str:
    """The caller's ``x-request-id`` when usable, else a new one."""
    if header and len(header) <= MAX_REQUEST_ID_LENGTH and header.isprintable():
        return header
    return uuid.uuid4().hex


def record_ids(request_id: str, count: int) -> list[str]:
    """The id of each record of a request: the request id itself for one record."""
    if count == 1:
        return [request_id]
    return [f"{request_id}-{index}" for index in range(count)]


def parse_feedback(body: bytes, task: str, classes: tuple[Any, ...] | list[Any] | None) -> list[Feedback]:
    """The feedback items of a request body; every problem of every item in one 422."""
    from pydantic_core import from_json

    try:
        document = from_json(body or b"null")
    except ValueError as error:
        raise MalformedRequest(f"the body is not valid JSON: {error}") from None
    root = "feedback"
    if isinstance(document, dict) and set(document) == {"feedback"} and isinstance(document["feedback"], list):
        items = document["feedback"]
    elif isinstance(document, dict):
        items, root = [document], "item"
    elif isinstance(document, list):
        items = document
    else:
        raise MalformedRequest('the body must be a feedback object {"requestId": ..., "label"|"value": ...} or an array of them')
    if not items:
        raise InvalidInput("no feedback: send one item or a non-empty array", [{"loc": [root], "msg": "at least one item is required", "type": "too_short"}])
    if len(items) > MAX_FEEDBACK_ITEMS:
        raise TooManyRecords(f"{len(items)} feedback items is more than {MAX_FEEDBACK_ITEMS}", [{"loc": [root], "msg": f"at most {MAX_FEEDBACK_ITEMS} items per request", "type": "too_long"}])
    classification = task == "classification"
    known = {str(c): c for c in classes} if classes else {}
    expected, other = ("label", "value") if classification else ("value", "label")
    detail: list[dict[str, Any]] = []
    parsed: list[Feedback] = []
    seen: set[str] = set()

    def problem(loc: list[Any], msg: str, kind: str) -> None:
        detail.append({"loc": loc, "msg": msg, "type": kind})

    for index, item in enumerate(items):
        where: list[Any] = [root] if root == "item" else [root, index]
        if not isinstance(item, dict):
            problem(where, "must be an object with requestId and " + expected, "dict_type")
            continue
        record_id = item.get("requestId")
        if not isinstance(record_id, str) or not record_id:
            problem([*where, "requestId"], "required: the requestId (or record id) of the prediction", "missing" if "requestId" not in item else "string_type")
        elif record_id in seen:
            problem([*where, "requestId"], f"{record_id!r} appears more than once in this request", "duplicate")
        else:
            seen.add(record_id)
        for key in item:
            if key == other:
                problem([*where, key], f"not for a {task} model: send {expected!r}", "extra_forbidden")
            elif key not in ("requestId", expected):
                problem([*where, key], "unknown field", "extra_forbidden")
        if expected not in item:
            problem([*where, expected], f"required: the true {'class' if classification else 'value'}", "missing")
            continue
        raw = item[expected]
        if classification:
            if isinstance(raw, bool) or not isinstance(raw, str | int):
                problem([*where, "label"], f"must be a class label (a string), got {type(raw).__name__}", "string_type")
                continue
            if known and str(raw) not in known:
                problem([*where, "label"], f"unknown class {raw!r}: one of {', '.join(sorted(known))}", "enum")
                continue
            if isinstance(record_id, str):
                parsed.append(Feedback(record_id, label=str(raw)))
        else:
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
                problem([*where, "value"], "must be a finite number", "float_type")
                continue
            if isinstance(record_id, str):
                parsed.append(Feedback(record_id, value=float(raw)))
    if detail:
        raise InvalidInput(f"{len(detail)} invalid field(s) in the feedback", detail)
    return parsed


def is_correct(prediction: Any, label: str) -> bool:
    """A stored class prediction against its true label (compared as text, as the label arrived)."""
    return str(prediction) == label


def absolute_error(prediction: Any, value: float) -> float:
    return abs(float(prediction) - value)
