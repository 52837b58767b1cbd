"""The one domain error of the training Job: input the user must fix (exit code 2)."""

from __future__ import annotations


class InvalidInput(Exception):
    """The spec or the data is wrong; the message is one line naming what and why."""

    def __init__(self, message: str, report: dict | None = None) -> None:
        super().__init__(message)
        #: The validation report when the data failed validation (logged nowhere: no run exists).
        self.report = report
