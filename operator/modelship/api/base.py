"""Shared machinery of the API models: camelCase wire names, field-precise rule errors, durations."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

#: Marks a field as a Kubernetes quantity (``cpu: 1`` or ``memory: 2Gi``): the CRD generator
#: turns it into ``x-kubernetes-int-or-string``.
INT_OR_STRING = {"x-kubernetes-int-or-string": True}
#: Marks a free-form object the API server must keep as written (hyperparameters, search space).
PRESERVE_UNKNOWN = {"x-kubernetes-preserve-unknown-fields": True}

_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")
DURATION_PATTERN = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$"


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``90s``, ``5m`` or ``1h30m``."""
    match = _DURATION_RE.match(text or "")
    if not text or not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h30m")
    hours, minutes, seconds, millis = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def _check_duration(value: Any) -> Any:
    if isinstance(value, str):
        parse_duration(value)
    return value


Duration = Annotated[
    str,
    StringConstraints(pattern=DURATION_PATTERN, min_length=2),
    BeforeValidator(_check_duration),
    Field(json_schema_extra={"format": "duration"}),
]
#: A Kubernetes resource quantity (``500m``, ``1.5``, ``2Gi``, ``1e3``): the API server's own
#: pattern, checked by pydantic and by the CRD, so a typo fails when applied, not at Job creation.
QUANTITY_PATTERN = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not _QUANTITY_RE.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity like 500m, 2, 1.5Gi or 512Mi")
    return value


Quantity = Annotated[int | str, AfterValidator(_check_quantity), Field(json_schema_extra={**INT_OR_STRING, "pattern": QUANTITY_PATTERN})]


class ApiModel(BaseModel):
    """Base of every contract model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as it is written into Kubernetes: camelCase keys, unset options left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def rule_error(model: str, *failures: tuple[tuple[str | int, ...], str, Any]) -> ValidationError:
    """A ValidationError whose entries point at the exact field a cross-field rule blames.

    Raised inside a validator, pydantic prefixes each location with the path to the model, so
    the user reads ``spec.rollout.canary.steps[1].weight`` rather than the model's name.
    """
    return ValidationError.from_exception_data(
        model,
        [
            InitErrorDetails(
                type=PydanticCustomError("rule", message),
                loc=loc,
                input=value,
            )
            for loc, message, value in failures
        ],
    )


def cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry: the API server's twin of a pydantic rule."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if reason:
        entry["reason"] = reason
    return entry


def format_location(loc: tuple[str | int, ...], root: str = "") -> str:
    """``('rollout', 'canary', 'steps', 1, 'weight')`` → ``rollout.canary.steps[1].weight``."""
    text = root
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def format_errors(error: ValidationError, root: str = "spec") -> list[str]:
    """One line a problem, ``path: reason``, for people (CLI, status conditions)."""
    lines = []
    for item in error.errors(include_url=False):
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        lines.append(f"{format_location(loc, root)}: {message}")
    return lines
