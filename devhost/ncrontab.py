"""NCRONTAB schedules (the timer trigger's format) on top of croniter.

NCRONTAB has six fields, `{second} {minute} {hour} {day} {month} {day-of-week}`, or the classic five without
seconds. Which expressions are valid, and which values each field names, is decided by
`shared.ncrontab.parse_ncrontab`, the check the app's own settings use, so the local host refuses exactly the
schedules the app refuses. croniter's dialect differs from NCrontab's (it takes `L`, `#` or day-of-week 7, and
croniter 7 reads a one-value range such as `1-1` as `*`), so it is handed each field as the plain list of values
that parser returned, and only computes the occurrences. NCrontab, the .NET library behind the timer trigger,
picks a day only when it matches BOTH day-of-month and day-of-week, so `day_or=False`. Times are UTC, as on
Flex Consumption.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import CroniterError, croniter

from devhost.config import ConfigError
from shared.ncrontab import NcrontabError, parse_ncrontab

_FULL = (range(60), range(60), range(24), range(1, 32), range(1, 13), range(7))


def _croniter_expression(fields: tuple[frozenset[int], ...]) -> str:
    """Six croniter fields, seconds first, each `*` or the comma list of its values."""
    return " ".join(
        "*" if values == frozenset(full) else ",".join(map(str, sorted(values)))
        for values, full in zip(fields, _FULL, strict=True)
    )


class NcrontabSchedule:
    """Next occurrences of one NCRONTAB expression, in UTC."""

    def __init__(self, expression: str) -> None:
        try:
            fields = parse_ncrontab(expression)
        except NcrontabError as error:
            raise ConfigError(f"timer schedule {expression!r}: {error}") from None
        self.expression = expression.strip(" ")
        self._croniter_expression = _croniter_expression(fields)
        try:
            self._next_after(datetime.now(UTC))
        except (CroniterError, ValueError, KeyError) as error:
            raise ConfigError(f"timer schedule {expression!r}: {error}") from None

    def _next_after(self, moment: datetime) -> datetime:
        iterator = croniter(self._croniter_expression, moment, day_or=False, second_at_beginning=True)
        return iterator.get_next(datetime)

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (an aware datetime)."""
        return self._next_after(moment.astimezone(UTC))
