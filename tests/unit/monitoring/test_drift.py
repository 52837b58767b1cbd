"""Drift statistics on real data: a resample of the training data does not drift, a shifted copy does."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import testdata

from modelship.monitoring.drift import METHODS, DriftSettings, compute_drift


@pytest.fixture(scope="module")
def housing() -> pd.DataFrame:
    return pd.read_csv(testdata.require(testdata.CALIFORNIA_HOUSING)).drop(columns=["median_house_value"])


def _shift(frame: pd.DataFrame) -> pd.DataFrame:
    shifted = frame.copy()
    for name in ["median_income", "housing_median_age", "total_rooms", "population", "households", "total_bedrooms"]:
        shifted[name] = shifted[name] * 1.8 + shifted[name].std()
    shifted["ocean_proximity"] = "INLAND"
    return shifted


@pytest.mark.parametrize("method", METHODS)
def test_resample_does_not_drift_and_shift_does(housing: pd.DataFrame, method: str) -> None:
    reference = housing.sample(2000, random_state=0)
    threshold = 0.05 if method in ("ks", "chisquare") else 0.2 if method == "psi" else 0.1
    settings = DriftSettings(method=method, threshold=threshold, drift_share=0.5)

    same = compute_drift(housing.sample(1000, random_state=1), reference, settings)
    assert not same.drift_detected, same
    assert same.drifted_share < 0.5
    assert set(same.features) == set(housing.columns)
    assert same.rows == 1000

    shifted = compute_drift(_shift(housing.sample(1000, random_state=2)), reference, settings)
    assert shifted.drift_detected, shifted
    assert shifted.drifted_share >= 0.5
    assert {"median_income", "ocean_proximity"} <= set(shifted.drifted_features)
    assert "longitude" not in shifted.drifted_features


def test_methods_per_column_kind(housing: pd.DataFrame) -> None:
    reference = housing.sample(500, random_state=0)
    result = compute_drift(housing.sample(300, random_state=3), reference, DriftSettings(method="ks", threshold=0.05))
    assert result.features["median_income"].method == "ks"
    assert result.features["ocean_proximity"].method == "chisquare"
    result = compute_drift(housing.sample(300, random_state=3), reference, DriftSettings(method="wasserstein", threshold=0.1))
    assert result.features["ocean_proximity"].method == "jensenshannon"


def test_missing_values_and_unseen_categories_do_not_break_it(housing: pd.DataFrame) -> None:
    reference = housing.sample(500, random_state=0)
    current = housing.sample(300, random_state=4).copy()
    current.loc[current.index[:100], "total_bedrooms"] = np.nan
    current.loc[current.index[:10], "ocean_proximity"] = "ATLANTIS"
    result = compute_drift(current, reference, DriftSettings())
    assert all(not math.isnan(item.score) for item in result.features.values())


def test_bad_settings_and_columns(housing: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown drift method"):
        DriftSettings(method="magic")
    with pytest.raises(ValueError, match="lacks reference columns"):
        compute_drift(housing[["longitude"]].head(50), housing.head(50), DriftSettings())


def test_threshold_reading() -> None:
    assert DriftSettings(method="ks", threshold=0.05).is_drifted("ks", 0.01)
    assert not DriftSettings(method="ks", threshold=0.05).is_drifted("ks", 0.5)
    assert DriftSettings(method="psi", threshold=0.2).is_drifted("psi", 0.3)
    assert not DriftSettings(method="psi", threshold=0.2).is_drifted("psi", float("nan"))
