"""The tier of every test is the folder it sits in (tests/README.md): the marker is added here,
so ``pytest -m unit`` / ``component`` / ``integration`` / ``e2e`` selects a tier."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
#: First folder under tests/ → tier; every other folder holds component tests.
TIER_OF_FOLDER = {"unit": "unit", "integration": "integration", "e2e": "e2e"}


def tier(path: Path) -> str:
    first = path.resolve().relative_to(TESTS).parts[0]
    return TIER_OF_FOLDER.get(first, "component")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(tier(Path(item.fspath)))
