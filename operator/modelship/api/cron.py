"""Five-field cron expressions (minute hour day-of-month month day-of-week, UTC), as
``spec.training.schedule`` takes them: ``*``, lists, ranges, steps, month and weekday names,
and ``@hourly``/``@daily``/``@weekly``/``@monthly``. Pure; no dependency.

Day-of-month and day-of-week follow cron's rule: when both are restricted, a day matching
either one matches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *"}
_MONTHS = {name: i + 1 for i, name in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
#: (name, lowest, highest, names) of the five fields.
_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}), ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))


class CronError(ValueError):
    """The expression is not a valid cron schedule; the message names the field."""


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  #: 0 = Sunday
    any_day: bool
    any_weekday: bool

    def _day_matches(self, day: dt.date) -> bool:
        weekday = (day.weekday() + 1) % 7
        if self.any_day or self.any_weekday:
            return day.day in self.days and weekday in self.weekdays
        return day.day in self.days or weekday in self.weekdays

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first slot strictly after ``moment`` (timezone-aware, UTC)."""
        start = moment.astimezone(dt.timezone.utc).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        day = start.date()
        for _ in range(366 * 5):  # 29 February on a Monday can be years away
            if day.month in self.months and self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        slot = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.timezone.utc)
                        if slot >= start:
                            return slot
            day += dt.timedelta(days=1)
        raise CronError("the schedule never fires")


def _value(text: str, field: str, low: int, high: int, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise CronError(f"{field}: {text!r} is not a number" + (f" or a name ({', '.join(names)})" if names else ""))
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{field}: {value} is outside {low}-{high}")
    return value


def _field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            first, last = low, high
        elif "-" in body:
            first_text, _, last_text = body.partition("-")
            first, last = _value(first_text, field, low, high, names), _value(last_text, field, low, high, names)
            if first > last:
                raise CronError(f"{field}: range {body!r} runs backwards")
        else:
            first = _value(body, field, low, high, names)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def parse(expression: str) -> Cron:
    """A :class:`Cron`, or :class:`CronError` naming the field that is wrong."""
    text = ALIASES.get(expression.strip(), expression.strip())
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"{expression!r} has {len(parts)} fields; a schedule has 5 (minute hour day-of-month month day-of-week) or is one of {', '.join(ALIASES)}")
    fields = [_field(part, name, low, high, names) for part, (name, low, high, names) in zip(parts, _FIELDS)]
    weekdays = frozenset(day % 7 for day in fields[4])  # 7 is Sunday too
    return Cron(fields[0], fields[1], fields[2], fields[3], weekdays, any_day=parts[2] == "*", any_weekday=parts[4] == "*")
