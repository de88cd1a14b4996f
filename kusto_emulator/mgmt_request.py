"""What a management-command handler receives, apart from the dispatcher so handler modules can import it.

Handlers live in `catalog_commands.py`, `policy_commands.py`, `ingest_commands.py` and `queued_protocol.py`;
each exposes a list of (compiled pattern, handler) pairs that `mgmt.py` dispatches on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequest
from .responses import V1Table
from .state import EmulatorState


@dataclass(frozen=True)
class MgmtRequest:
    """One management call: the target database (`db` of the body), the command text and its properties.

    `headers` are the request headers with lowercase names, without Authorization.
    """

    state: EmulatorState
    database: str | None
    csl: str
    properties: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def context_database(self) -> str:
        """The database the command runs in (`db` of the body), created first with `--auto-create-databases`."""
        if not self.database:
            raise BadRequest("this command needs a database: set 'db' in the request body")
        self.state.use_database(self.database)
        return self.database


MgmtHandler = Callable[[MgmtRequest, re.Match[str]], Sequence[V1Table]]
"""Runs on a worker thread (it may block on DuckDB); returns the v1 tables of the answer or raises EmulatorError."""


def command(pattern: str) -> re.Pattern[str]:
    """Compile a command pattern the way the dispatcher matches it: whole text, any case, across lines."""
    return re.compile(pattern, re.IGNORECASE | re.DOTALL)
