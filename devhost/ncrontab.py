"""NCRONTAB schedules (the timer trigger's format) on top of croniter.

NCRONTAB has six fields, `{second} {minute} {hour} {day} {month} {day-of-week}`, or the classic five without
seconds. croniter reads the seconds field first when told to (`second_at_beginning`). NCrontab, the .NET
library behind the timer trigger, picks a day only when it matches BOTH day-of-month and day-of-week, so
`day_or=False`. Times are UTC, as on Flex Consumption.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import CroniterError, croniter

from devhost.config import ConfigError


class NcrontabSchedule:
    """Next occurrences of one NCRONTAB expression, in UTC."""

    def __init__(self, expression: str) -> None:
        fields = expression.split()
        if len(fields) not in (5, 6):
            raise ConfigError(
                f"timer schedule {expression!r}: NCRONTAB needs 6 fields (second minute hour day month day-of-week) or 5"
            )
        self.expression = expression
        self._six_fields = len(fields) == 6
        try:
            self._next_after(datetime.now(UTC))
        except (CroniterError, ValueError, KeyError) as error:
            raise ConfigError(f"timer schedule {expression!r}: {error}") from None

    def _next_after(self, moment: datetime) -> datetime:
        iterator = croniter(self.expression, moment, day_or=False, second_at_beginning=self._six_fields)
        return iterator.get_next(datetime)

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (an aware datetime)."""
        return self._next_after(moment.astimezone(UTC))
