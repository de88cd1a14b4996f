"""The app's one way to write and read a time: ISO 8601 in UTC with a `Z`, as every message and state blob holds it."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(moment: datetime) -> str:
    """`moment` (time zone aware) as ISO 8601 in UTC with a Z suffix."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def utc_now_iso() -> str:
    """The current time as ISO 8601 in UTC with a Z suffix."""
    return iso_utc(datetime.now(UTC))


def parse_time(text: str) -> datetime:
    """A time the app wrote, or a message's `date-time` (the schemas accept only what this reads), in UTC.

    ValueError for what `datetime.fromisoformat` cannot read (a lowercase `z`, which RFC 3339 allows) and
    OverflowError for a time that does not exist in UTC (`0001-01-01T00:00:00+14:00`, `9999-12-31T23:59:59-14:00`).
    """
    return datetime.fromisoformat(text).astimezone(UTC)
