"""Run reports whose counters add up field by field: a misspelt counter is a type error, not a new key.

A timer run counts what it did from several threads, then logs and returns the totals. Each part of the run
counts into a report of its own kind (`DrainReport(deferred=1)`), and the run adds it to its total: the
counter names are the dataclass's fields, so the type checker and the constructor refuse one that does not
exist, where a string key or `setattr` would count it somewhere nobody reads.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import fields
from typing import Self


class Tally:
    """Mixin for a dataclass report: `add` sums the int fields and Counters of another report of the same kind.

    Other fields (flags, lists) are the run's own and are left as they are.
    """

    def add(self, more: Self) -> None:
        for item in fields(self):  # type: ignore[arg-type]
            mine, theirs = getattr(self, item.name), getattr(more, item.name)
            if isinstance(mine, Counter):
                mine.update(theirs)
            elif isinstance(mine, int) and not isinstance(mine, bool):
                setattr(self, item.name, mine + theirs)
