"""The shared data sets the tests read in place (never copied into the repository):
``../shared/datasets`` next to the checkout, or the folder ``MODELSHIP_DATASETS`` names."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATASETS = Path(os.environ.get("MODELSHIP_DATASETS") or REPO.parent / "shared" / "datasets").resolve()
CALIFORNIA_HOUSING = DATASETS / "california_housing.csv"
PERSONALITY = DATASETS / "personality.csv"


def require(path: Path) -> Path:
    """The path, or an error that says where the tests look (a missing data set is a broken setup, not a skip)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: test data set missing; the tests read ../shared/datasets next to the repository, or the folder MODELSHIP_DATASETS names")
    return path
