"""What a command did with each item: one line per item, counts per outcome, and the summary and exit code they give."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from shared.ops.progress import say, warn


@dataclass
class ItemReport:
    """Outcome -> items, split into those done (or, in a dry run, that would be) and those left for the operator.

    Each item is counted with its line: done items on stdout, items left behind on stderr. Anything left makes
    the command's exit code 1, so a script running it sees that something needs a look.
    """

    done: Counter[str] = field(default_factory=Counter)
    left: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    """Items looked at and deliberately not acted on (outside the prefix, say): counted, no line of their own."""

    def did(self, outcome: str, line: str) -> None:
        self.done[outcome] += 1
        say(line)

    def left_behind(self, outcome: str, line: str) -> None:
        self.left[outcome] += 1
        warn(line)

    def skip(self, outcome: str) -> None:
        self.skipped[outcome] += 1

    def summary(self, command: str) -> str:
        """One line: every outcome with its count, those skipped next, those left behind last."""
        parts = [
            f"{count} {outcome}" for counts in (self.done, self.skipped, self.left) for outcome, count in sorted(counts.items())
        ]
        return f"{command}: {', '.join(parts) if parts else 'nothing to do'}"

    @property
    def exit_code(self) -> int:
        return 1 if self.left else 0
