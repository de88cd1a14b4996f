"""NCRONTAB: the first of six fields is seconds; five fields are classic cron; day-of-month AND day-of-week."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from devhost.config import ConfigError
from devhost.ncrontab import NcrontabSchedule

START = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)  # a Thursday


def occurrences(expression: str, count: int = 3) -> list[datetime]:
    schedule, moment, result = NcrontabSchedule(expression), START, []
    for _ in range(count):
        moment = schedule.next_after(moment)
        result.append(moment)
    return result


def test_six_fields_start_with_seconds() -> None:
    assert occurrences("*/10 * * * * *") == [START.replace(second=s) for s in (10, 20, 30)]
    assert occurrences("30 0 9 * * 1", 1) == [datetime(2026, 1, 5, 9, 0, 30, tzinfo=UTC)]  # Monday 09:00:30


def test_five_fields_are_minutes_first() -> None:
    assert occurrences("*/5 * * * *", 2) == [START.replace(minute=5), START.replace(minute=10)]


def test_day_of_month_and_day_of_week_must_both_match() -> None:
    # Friday the 13th: February and March 2026.
    assert occurrences("0 0 0 13 * 5", 2) == [datetime(2026, 2, 13, tzinfo=UTC), datetime(2026, 3, 13, tzinfo=UTC)]


def test_times_are_utc_whatever_the_input_zone() -> None:

    local = START.astimezone(timezone(timedelta(hours=2)))
    assert NcrontabSchedule("0 0 * * * *").next_after(local) == START.replace(hour=1)


def test_a_one_value_range_is_that_value() -> None:
    # croniter 7 reads `1-1` as `*`; the host's NCrontab reads it as 1. The local host follows the host.
    assert occurrences("0 0 0 1-1 * *", 2) == [datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)]
    assert occurrences("0 0 0 * * 0-0", 2) == [datetime(2026, 1, 4, tzinfo=UTC), datetime(2026, 1, 11, tzinfo=UTC)]


def test_names_and_a_start_with_a_step() -> None:
    assert occurrences("0 0 9 * * MON-wed", 3) == [datetime(2026, 1, d, 9, tzinfo=UTC) for d in (5, 6, 7)]
    assert occurrences("50/5 * * * * *", 3) == [START.replace(second=s) for s in (50, 55)] + [START.replace(minute=1, second=50)]


@pytest.mark.parametrize(
    "expression",
    ["* * * *", "61 * * * * *", "0 0 0 32 * *", "every minute", "0 0 0 * * 7", "0 0 0 L * *", "0 0 0 * * 5#2", "0 0 0 30 2 *"],
)
def test_invalid_schedules_are_refused_with_the_expression(expression: str) -> None:
    with pytest.raises(ConfigError, match="timer schedule"):
        NcrontabSchedule(expression)
