"""``POST /feedback`` bodies against the served model (pure parsing), request and record ids."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelship.serving.errors import InvalidInput, MalformedRequest, TooManyRecords, status_of
from modelship.serving.feedback import MAX_FEEDBACK_ITEMS, Feedback, absolute_error, is_correct, parse_feedback, record_ids, request_id_of

CLASSES = ("Extrovert", "Introvert")


def _parse(body: Any, task: str = "classification", classes: Any = CLASSES) -> list[Feedback]:
    return parse_feedback(json.dumps(body).encode(), task, classes)


@pytest.mark.parametrize(
    "body, task, expected",
    [
        ({"requestId": "a", "label": "Introvert"}, "classification", [Feedback("a", label="Introvert")]),
        ([{"requestId": "a", "label": "Introvert"}, {"requestId": "b-1", "label": "Extrovert"}], "classification", [Feedback("a", label="Introvert"), Feedback("b-1", label="Extrovert")]),
        ({"feedback": [{"requestId": "a", "value": 3}]}, "regression", [Feedback("a", value=3.0)]),
        ([{"requestId": "a", "value": -2.5}], "regression", [Feedback("a", value=-2.5)]),
    ],
)
def test_valid_feedback(body: Any, task: str, expected: list[Feedback]) -> None:
    assert _parse(body, task, CLASSES if task == "classification" else None) == expected


def test_integer_class_labels_match_integer_classes() -> None:
    assert _parse({"requestId": "a", "label": 1}, classes=(0, 1)) == [Feedback("a", label="1")]


@pytest.mark.parametrize(
    "body, task, loc, kind",
    [
        ({"requestId": "a", "label": 1.5}, "classification", ["item", "label"], "string_type"),
        ({"requestId": "a", "label": True}, "classification", ["item", "label"], "string_type"),
        ({"requestId": "a", "label": None}, "classification", ["item", "label"], "string_type"),
        ({"requestId": "a", "label": "Ambivert"}, "classification", ["item", "label"], "enum"),
        ({"requestId": "a"}, "classification", ["item", "label"], "missing"),
        ({"requestId": "a", "value": 1.0}, "classification", ["item", "value"], "extra_forbidden"),
        ({"label": "Introvert"}, "classification", ["item", "requestId"], "missing"),
        ({"requestId": 7, "label": "Introvert"}, "classification", ["item", "requestId"], "string_type"),
        ({"requestId": "a", "label": "Introvert", "score": 1}, "classification", ["item", "score"], "extra_forbidden"),
        ([{"requestId": "a", "label": "Introvert"}, {"requestId": "a", "label": "Extrovert"}], "classification", ["feedback", 1, "requestId"], "duplicate"),
        ([{"requestId": "a", "label": "Introvert"}, "a"], "classification", ["feedback", 1], "dict_type"),
        ({"requestId": "a", "value": "12"}, "regression", ["item", "value"], "float_type"),
        ({"requestId": "a", "value": False}, "regression", ["item", "value"], "float_type"),
        ({"requestId": "a", "label": "high"}, "regression", ["item", "label"], "extra_forbidden"),
        ([], "regression", ["feedback"], "too_short"),
    ],
)
def test_invalid_feedback_names_the_field(body: Any, task: str, loc: list[Any], kind: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        _parse(body, task, CLASSES if task == "classification" else None)
    assert {"loc": loc, "type": kind} in [{"loc": d["loc"], "type": d["type"]} for d in raised.value.detail], raised.value.detail
    assert status_of(raised.value) == 422


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidInput) as raised:
        _parse([{"requestId": "a", "label": 2}, {"requestId": "b", "label": "Nobody"}])
    assert [d["loc"] for d in raised.value.detail] == [["feedback", 0, "label"], ["feedback", 1, "label"]]


def test_nan_is_not_a_value() -> None:
    with pytest.raises(InvalidInput):
        parse_feedback(b'{"requestId": "a", "value": NaN}', "regression", None)


def test_malformed_and_too_many() -> None:
    with pytest.raises(MalformedRequest):
        parse_feedback(b"{nope", "regression", None)
    with pytest.raises(MalformedRequest):
        parse_feedback(b'"a"', "regression", None)
    with pytest.raises(TooManyRecords):
        _parse([{"requestId": str(i), "value": 1} for i in range(MAX_FEEDBACK_ITEMS + 1)], "regression", None)


@pytest.mark.parametrize(
    "header, kept",
    [("req-42", True), ("", False), (None, False), ("x" * 201, False), ("bad\nid", False), ("x" * 200, True)],
)
def test_request_id_of(header: str | None, kept: bool) -> None:
    chosen = request_id_of(header)
    assert (chosen == header) is kept and chosen


def test_record_ids() -> None:
    assert record_ids("r", 1) == ["r"]
    assert record_ids("r", 3) == ["r-0", "r-1", "r-2"]


@pytest.mark.parametrize("prediction, label, correct", [("Introvert", "Introvert", True), ("Introvert", "Extrovert", False), (1, "1", True), (0, "1", False)])
def test_is_correct(prediction: Any, label: str, correct: bool) -> None:
    assert is_correct(prediction, label) is correct


def test_absolute_error() -> None:
    assert absolute_error(10.0, 12.5) == 2.5 and absolute_error(10, 7.0) == 3.0
