"""Which NCRONTAB schedules the Functions host runs, decided in one place for the app and for devhost.

A schedule the host refuses, or accepts and never fires, should fail before it is deployed: `shared.settings`
checks every schedule setting with `parse_ncrontab` at start-up, and devhost checks its timer triggers with it
and hands croniter the values it parsed. Sharing the parser keeps the local host refusing exactly what the app
refuses; keeping it out of the settings module lets devhost use it without reading any setting. Its errors name
no setting, so each caller adds which schedule was wrong.
"""

from __future__ import annotations

import re

from shared.names import quoted

# NCRONTAB, the schedule format of the timer trigger. The grammar is that of NCrontab, the .NET library the host
# parses schedules with: per field `*`, a number or a range `a-b`, each with an optional step `/n`, or a comma
# list of those; three-letter English names in the month and day-of-week fields (Sunday = 0). The host reads six
# space-separated fields with seconds first, or five without seconds. devhost runs schedules with croniter, whose
# dialect differs (L, W, #, ?, H, day-of-week 7; `1-1` read as `*`), so it hands croniter the values parsed here.
NCRONTAB_FIELDS = ("second", "minute", "hour", "day", "month", "day-of-week")
_NCRONTAB_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_LONGEST_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_NCRONTAB_ITEM = re.compile(r"(?:(\*)|([0-9]+|[A-Za-z]+)(?:-([0-9]+|[A-Za-z]+))?)(?:/([0-9]+))?")
_TIMESPAN = re.compile(r"[0-9]+(?:\.[0-9]+)?(?::[0-9]+(?:\.[0-9]+)?)+")


class NcrontabError(ValueError):
    """Not an NCRONTAB schedule the Functions host runs; the message says why (it names no setting)."""


def parse_ncrontab(expression: str) -> tuple[frozenset[int], ...]:
    """The six value sets (second, minute, hour, day, month, day-of-week with Sunday = 0) of an NCRONTAB schedule.

    Leading and trailing spaces are ignored, as the host ignores them. Raises NcrontabError for anything else
    the host would not run or would never fire: other separators than spaces, a TimeSpan such as 00:05:00
    (the host runs those only on App Service plans, and this app deploys to Flex Consumption), values out of
    range, empty ranges such as 5-2, steps of 0, croniter-only syntax, and dates that never come (30 February).
    """
    if not expression.isascii() or not expression.isprintable():
        raise NcrontabError(
            "only ASCII digits, letters, spaces and * , - / may appear (it has a tab, line break, control or non-ASCII character)"
        )
    fields = expression.split()
    if len(fields) not in (5, 6):
        if _TIMESPAN.fullmatch(expression.strip(" ")):
            raise NcrontabError("a TimeSpan such as 00:05:00 runs only on App Service plans, not on Flex Consumption")
        raise NcrontabError(f"it has {len(fields)} field(s); write six, or five without the seconds")
    values = [] if len(fields) == 6 else [frozenset({0})]
    for index, text in enumerate(fields, start=6 - len(fields)):
        values.append(_ncrontab_field(text, index))
    days, months = values[3], values[4]
    if not any(day <= _LONGEST_MONTH[month] for month in months for day in days):
        raise NcrontabError(f"it never fires: no month in {quoted(fields[-2])} has a day in {quoted(fields[-3])}")
    return tuple(values)


def _ncrontab_field(text: str, index: int) -> frozenset[int]:
    name = NCRONTAB_FIELDS[index]
    low, high = _NCRONTAB_RANGES[index]
    chosen: set[int] = set()
    for item in text.split(","):
        match = _NCRONTAB_ITEM.fullmatch(item)
        if match is None:
            raise NcrontabError(
                f"{name} field {quoted(text)}: {quoted(item)} is not *, a number or a range a-b (each with an optional "
                "step /n), nor a comma list of them"
            )
        star, first, last, step = match.groups()
        every = 1
        if step is not None:
            every = int(step) if len(step) <= 3 else 0
            if not 1 <= every <= high - low + 1:
                raise NcrontabError(f"{name} field {quoted(text)}: step /{step[:6]} is out of range; use 1 to {high - low + 1}")
        if star:
            start, end = low, high
        else:
            start = _ncrontab_value(first, index)
            end = _ncrontab_value(last, index) if last is not None else high if step is not None else start
            if start > end:
                raise NcrontabError(
                    f"{name} field {quoted(text)}: the range {first}-{last} is empty; write the lower bound first"
                )
        chosen.update(range(start, end + 1, every))
    return frozenset(chosen)


def _ncrontab_value(token: str, index: int) -> int:
    name = NCRONTAB_FIELDS[index]
    low, high = _NCRONTAB_RANGES[index]
    names = _MONTH_NAMES if index == 4 else _DAY_NAMES if index == 5 else ()
    if token.isdigit():
        value = int(token) if len(token) <= 3 else high + 1
    elif token.lower() in names:
        value = names.index(token.lower()) + low
    else:
        hint = f" or a three-letter name like {names[1]!r}" if names else ""
        raise NcrontabError(f"{name} field: {quoted(token)} is not a number{hint}")
    if not low <= value <= high:
        sunday = " (Sunday = 0)" if index == 5 else ""
        raise NcrontabError(f"{name} field: {token[:6]} is out of range; use {low} to {high}{sunday}")
    return value
