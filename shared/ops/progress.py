"""What the operator command shows: result lines on stdout, problems and log records on stderr, a progress bar.

The bar (tqdm) is drawn on stderr only when stderr is a terminal, so a run piped to a file or started by a script
prints exactly its lines and nothing else. Every line goes through `tqdm.write`, which lifts a bar off the
terminal while the line is printed and draws it again below, and through `shared.redaction.clean`, so no line
carries a credential or a control character a blob name smuggled in.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

from shared.redaction import clean


def say(text: str) -> None:
    """One result line on stdout."""
    tqdm.write(clean(text), file=sys.stdout)


def warn(text: str) -> None:
    """One line on stderr: something left undone, or an error."""
    tqdm.write(clean(text), file=sys.stderr)


@contextmanager
def progress_bar(description: str, *, unit: str, total: int | None = None) -> Iterator[tqdm]:
    """A progress bar on stderr while the block runs (`bar.update(n)`); on anything but a terminal it draws nothing."""
    bar = tqdm(total=total, desc=description, unit=unit, file=sys.stderr, disable=not sys.stderr.isatty(), leave=False)
    try:
        yield bar
    finally:
        bar.close()


class BarSafeHandler(logging.Handler):
    """Writes each log record to stderr through `tqdm.write`, so records and a bar do not overwrite each other."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging never raises into the caller
            self.handleError(record)
