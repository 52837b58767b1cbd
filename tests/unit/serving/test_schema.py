"""Request validation built from a feature schema: every offending field, never an exception."""

from __future__ import annotations

import pandas as pd
import pytest

from modelship.serving.errors import InvalidInput
from modelship.serving.schema import FeatureSchema, RecordValidator

SCHEMA = FeatureSchema.from_document(
    {
        "task": "regression",
        "features": [
            {"name": "rooms", "kind": "numeric", "categories": None},
            {"name": "bedrooms", "kind": "numeric", "categories": None},
            {"name": "ocean", "kind": "categorical", "categories": ["INLAND", "NEAR BAY"]},
        ],
        "classes": None,
    },
    nullable={"bedrooms"},
)
VALID = {"rooms": 3, "bedrooms": 1.5, "ocean": "INLAND"}


def test_valid_records_pass_with_numbers_as_floats() -> None:
    validator = RecordValidator(SCHEMA)
    assert validator.validate([VALID, {**VALID, "bedrooms": None}]) == [
        {"rooms": 3.0, "bedrooms": 1.5, "ocean": "INLAND"},
        {"rooms": 3.0, "bedrooms": None, "ocean": "INLAND"},
    ]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({**VALID, "extra": 1}, [(("extra",), "extra_forbidden")]),
        ({"rooms": 3, "bedrooms": 1}, [(("ocean",), "missing")]),
        ({**VALID, "rooms": "3"}, [(("rooms",), "float_type")]),
        ({**VALID, "rooms": True}, [(("rooms",), "float_type")]),
        ({**VALID, "rooms": float("nan")}, [(("rooms",), "finite_number")]),
        ({**VALID, "bedrooms": float("inf")}, [(("bedrooms",), "finite_number")]),
        ({**VALID, "rooms": None}, [(("rooms",), "float_type")]),
        ({**VALID, "ocean": "ATLANTIS"}, [(("ocean",), "literal_error")]),
        ({**VALID, "ocean": 3}, [(("ocean",), "literal_error")]),
        ({"rooms": "x", "ocean": None, "foo": 1}, [(("rooms",), "float_type"), (("bedrooms",), "missing"), (("ocean",), "literal_error"), (("foo",), "extra_forbidden")]),
        ("not a record", [((), "dict_type")]),
    ],
)
def test_every_offending_field_is_named(record: object, expected: list[tuple[tuple[str, ...], str]]) -> None:
    validator = RecordValidator(SCHEMA)
    with pytest.raises(InvalidInput) as caught:
        validator.validate([VALID, record])
    found = sorted((tuple(item["loc"]), item["type"]) for item in caught.value.detail)
    assert found == sorted((("records", 1, *loc), kind) for loc, kind in expected)
    assert all(item["msg"] for item in caught.value.detail)


def test_single_record_location() -> None:
    with pytest.raises(InvalidInput) as caught:
        RecordValidator(SCHEMA).validate_one({**VALID, "rooms": "x"})
    assert caught.value.detail[0]["loc"] == ["record", "rooms"]


def test_schema_from_signature_and_reference() -> None:
    reference = pd.DataFrame({"a": [1.0, None], "b": ["x", "y"]})
    schema = FeatureSchema.from_signature(
        [{"name": "a", "type": "double", "required": True}, {"name": "b", "type": "string", "required": True}], reference
    )
    assert [(f.name, f.kind, f.categories, f.nullable) for f in schema.features] == [
        ("a", "numeric", None, True),
        ("b", "categorical", ("x", "y"), False),
    ]
    assert schema.task == "regression"
    with pytest.raises(ValueError, match="unnamed"):
        FeatureSchema.from_signature([{"type": "double"}])


def test_categories_unknown_accept_any_string() -> None:
    schema = FeatureSchema.from_document({"features": [{"name": "c", "kind": "categorical", "categories": None}]})
    validator = RecordValidator(schema)
    assert validator.validate([{"c": "anything"}]) == [{"c": "anything"}]
    with pytest.raises(InvalidInput):
        validator.validate([{"c": 1}])
