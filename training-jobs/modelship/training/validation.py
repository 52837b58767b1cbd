"""Data checks before training, and the report they produce.

:func:`validate` takes the loaded frame and the ``dataset`` spec and returns the cleaned data
with a report (logged as ``validation/report.json``), or raises :class:`InvalidInput` whose
one-line message names the column and the rule, e.g.
``column 'total_bedrooms': 62% missing, above maxMissingShare 0.5``.

Rules, in order: target, features and required columns present; object columns that hold
only numbers become numeric; rows without a target are dropped (a note); a regression target
must be numeric; all-missing feature columns are errors, a share of missing values above
``maxMissingShare`` is an error; constant feature columns are dropped (a warning); duplicate
rows are counted (dropped with ``dropDuplicates``); outliers per the policy (flag, clip or
drop); at least ``minRows`` rows remain; each class has at least ``minRowsPerClass`` rows.

Cleaned features have two kinds only: numeric (float64) and categorical (str, NaN missing);
the serving schema is built from the same kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelship.training.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

    from modelship.api.v1alpha1 import DatasetSpec, OutlierPolicy

NUMERIC = "numeric"
CATEGORICAL = "categorical"
#: Categorical columns with more distinct values than this (and than half the rows) get a warning.
HIGH_CARDINALITY = 100


@dataclass
class ValidatedData:
    frame: pd.DataFrame  #: features (cleaned, outliers handled) and the target
    raw_features: pd.DataFrame  #: the same rows' features before outlier clipping (the reference)
    features: list[str]
    kinds: dict[str, str]  #: feature → numeric | categorical
    target: str
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def numeric(self) -> list[str]:
        return [f for f in self.features if self.kinds[f] == NUMERIC]

    @property
    def categorical(self) -> list[str]:
        return [f for f in self.features if self.kinds[f] == CATEGORICAL]


class _Report:
    def __init__(self) -> None:
        self.issues: list[dict[str, Any]] = []

    def add(self, severity: str, rule: str, message: str, column: str | None = None) -> None:
        self.issues.append({"severity": severity, "rule": rule, "column": column, "message": message})

    def error(self, rule: str, message: str, column: str | None = None) -> None:
        self.add("error", rule, message, column)

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [i for i in self.issues if i["severity"] == "error"]


def _percent(share: float) -> str:
    value = share * 100
    return f"{value:.0f}%" if value >= 1 or value == 0 else f"{value:.2g}%"


def _example(values: pd.Series) -> str:
    sample = values.dropna()
    return repr(sample.iloc[0]) if len(sample) else "?"


def _numeric_looking(column: pd.Series) -> pd.Series | None:
    """The column as numbers when every present value parses as one; else None."""
    import pandas as pd

    present = column.dropna()
    if present.empty:
        return None
    converted = pd.to_numeric(column.where(column.notna(), None).map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
    return converted.astype("float64") if converted.notna().sum() == len(present) else None


def _is_numeric(column: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


def _as_categorical(column: pd.Series) -> pd.Series:
    import numpy as np

    return column.astype(object).where(column.notna(), np.nan).map(lambda v: v if isinstance(v, float) else str(v))


def outlier_bounds(values: pd.Series, method: str, k: float) -> tuple[float, float]:
    """Lower and upper bounds beyond which a value counts as an outlier (NaN ignored)."""
    present = values.dropna()
    if method == "iqr":
        q1, q3 = present.quantile(0.25), present.quantile(0.75)
        spread = q3 - q1
        return float(q1 - k * spread), float(q3 + k * spread)
    mean, std = present.mean(), present.std(ddof=0)
    return float(mean - k * std), float(mean + k * std)


def _columns_preview(columns: list[str], limit: int = 12) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f", … ({len(columns)} in all)" if len(columns) > limit else "")


def validate(frame: pd.DataFrame, dataset: DatasetSpec, task: str) -> ValidatedData:
    """Check and clean the data; raises InvalidInput (with the report) on the first failed rule."""
    import pandas as pd

    rules = dataset.validation
    report = _Report()
    target = dataset.target
    columns = [str(c) for c in frame.columns]
    summary: dict[str, Any] = {"rowsIn": int(len(frame)), "target": target, "task": task}

    def fail() -> None:
        errors = report.errors
        summary.update(passed=False, issues=report.issues)
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise InvalidInput(errors[0]["message"] + more, report=summary)

    # 1. Presence of the target, the features and the required columns.
    if target not in columns:
        report.error("targetPresent", f"column '{target}' (target) not found; columns: {_columns_preview(columns)}", target)
        fail()
    features = list(dataset.features) if dataset.features else [c for c in columns if c != target]
    for name in features:
        if name not in columns:
            report.error("featurePresent", f"column '{name}' (feature) not found; columns: {_columns_preview(columns)}", name)
    for name in rules.required_columns:
        if name not in columns:
            report.error("requiredColumns", f"column '{name}' (requiredColumns) not found; columns: {_columns_preview(columns)}", name)
    if not features:
        report.error("featurePresent", "no feature columns: the data set holds only the target")
    if report.errors:
        fail()
    frame = frame[features + [target]].copy()

    # 2. Object columns that hold only numbers become numeric.
    for name in features + [target]:
        if frame[name].dtype == object:
            numbers = _numeric_looking(frame[name])
            if numbers is not None and (name != target or task == "regression"):
                frame[name] = numbers
                report.add("info", "numericLooking", f"column '{name}': text values that are all numbers, read as numeric", name)

    # 3. The target: missing rows dropped, type suits the task.
    missing_target = int(frame[target].isna().sum())
    summary["targetMissingDropped"] = missing_target
    if missing_target:
        frame = frame[frame[target].notna()]
        report.add("warning", "targetMissing", f"column '{target}' (target): {missing_target} rows without a value dropped", target)
    if frame.empty:
        report.error("targetMissing", f"column '{target}' (target): every value is missing", target)
        fail()
    if task == "regression":
        if not _is_numeric(frame[target]):
            report.error("targetType", f"column '{target}' (target): not numeric (e.g. {_example(frame[target])}), but task is regression", target)
            fail()
        frame[target] = frame[target].astype("float64")
    else:
        labels = frame[target]
        if pd.api.types.is_float_dtype(labels) and bool((labels == labels.round()).all()):
            frame[target] = labels.astype("int64")
        elif not _is_numeric(labels):
            frame[target] = _as_categorical(labels)

    # 4. Per feature: kind, missing values, constant columns.
    kinds: dict[str, str] = {}
    column_report: dict[str, dict[str, Any]] = {}
    constant: list[str] = []
    for name in features:
        column = frame[name]
        share = float(column.isna().mean())
        kind = NUMERIC if _is_numeric(column) else CATEGORICAL
        unique = int(column.nunique(dropna=True))
        column_report[name] = {"kind": kind, "dtype": str(column.dtype), "missingShare": round(share, 6), "unique": unique}
        if share == 1.0:
            report.error("allMissing", f"column '{name}': all values are missing", name)
        elif share > rules.max_missing_share:
            report.error("maxMissingShare", f"column '{name}': {_percent(share)} missing, above maxMissingShare {rules.max_missing_share:g}", name)
        elif unique <= 1:
            constant.append(name)
            report.add("warning", "constant", f"column '{name}': a single value ({_example(column)}), dropped", name)
        elif share > 0:
            report.add("info", "missing", f"column '{name}': {_percent(share)} missing, imputed", name)
        if kind == CATEGORICAL and unique > HIGH_CARDINALITY and unique > len(column) / 2:
            report.add("warning", "cardinality", f"column '{name}': {unique} distinct values, looks like an identifier or free text; list features to leave it out", name)
        kinds[name] = kind
    summary["columns"] = column_report
    if report.errors:
        fail()
    features = [f for f in features if f not in constant]
    summary["droppedConstant"] = constant
    if not features:
        report.error("constant", "no feature columns left: every feature is constant")
        fail()
    for name in features:
        frame[name] = frame[name].astype("float64") if kinds[name] == NUMERIC else _as_categorical(frame[name])
    frame = frame[features + [target]]
    kinds = {f: kinds[f] for f in features}

    # 5. Duplicate rows.
    duplicates = int(frame.duplicated().sum())
    summary["duplicates"] = {"count": duplicates, "dropped": bool(rules.drop_duplicates and duplicates)}
    if duplicates:
        if rules.drop_duplicates:
            frame = frame.drop_duplicates()
            report.add("warning", "duplicates", f"{duplicates} duplicate rows dropped (dropDuplicates)")
        else:
            report.add("warning", "duplicates", f"{duplicates} duplicate rows kept (set dropDuplicates to drop them)")

    # 6. Outliers.
    raw_features = frame[features].copy()
    if rules.outliers is not None:
        frame = _handle_outliers(frame, rules.outliers, kinds, report, summary)
        if report.errors:
            fail()
        raw_features = raw_features.loc[frame.index]

    # 7. Enough rows, enough rows per class.
    rows = int(len(frame))
    summary["rowsOut"] = rows
    if rows < rules.min_rows:
        report.error("minRows", f"dataset: {rows} rows after cleaning, below minRows {rules.min_rows}")
    if task == "classification":
        counts = frame[target].value_counts()
        summary["classes"] = {str(label): int(count) for label, count in counts.items()}
        if len(counts) < 2:
            report.error("classes", f"column '{target}' (target): {len(counts)} class, classification needs at least 2", target)
        for label, count in counts.sort_values().items():
            if count < rules.min_rows_per_class:
                report.error("minRowsPerClass", f"column '{target}' (target): class {label!r} has {int(count)} rows, below minRowsPerClass {rules.min_rows_per_class}", target)
    if report.errors:
        fail()

    summary.update(passed=True, features=features, kinds=kinds, issues=report.issues)
    frame.index = range(len(frame))
    raw_features.index = frame.index
    return ValidatedData(frame=frame, raw_features=raw_features, features=features, kinds=kinds, target=target, report=summary)


def _handle_outliers(frame: pd.DataFrame, policy: OutlierPolicy, kinds: dict[str, str], report: _Report, summary: dict[str, Any]) -> pd.DataFrame:
    numeric = [f for f, kind in kinds.items() if kind == NUMERIC]
    columns = policy.columns or numeric
    for name in columns:
        if name not in kinds:
            report.error("outliers", f"column '{name}' (outliers.columns) is not a feature")
        elif kinds[name] != NUMERIC:
            report.error("outliers", f"column '{name}' (outliers.columns) is not numeric", name)
    if report.errors:
        return frame
    method, k, action = str(policy.method), policy.k, str(policy.action)
    found: dict[str, dict[str, Any]] = {}
    outside_any = None
    for name in columns:
        lower, upper = outlier_bounds(frame[name], method, k)
        outside = (frame[name] < lower) | (frame[name] > upper)
        count = int(outside.sum())
        found[name] = {"lower": lower, "upper": upper, "count": count}
        if count:
            report.add("warning", "outliers", f"column '{name}': {count} values beyond [{lower:.4g}, {upper:.4g}] ({method}, k={k:g}), {action}", name)
        if action == "clip":
            frame[name] = frame[name].clip(lower, upper)
        outside_any = outside if outside_any is None else outside_any | outside
    dropped = 0
    if action == "drop" and outside_any is not None:
        dropped = int(outside_any.sum())
        frame = frame[~outside_any]
    summary["outliers"] = {"method": method, "k": k, "action": action, "columns": found, "rowsDropped": dropped}
    return frame
