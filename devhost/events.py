"""Turns the app's own log records into pipeline events: readable lines for `make run`, JSON lines for tests.

Nothing is duplicated from the app: the events are recognised by the logger names and messages that
`shared.recorder`, `shared.submission` and `shared.alerts` emit. Two opt-in sinks, both set by environment
variable so `make run` and the end-to-end tests can ask for them without touching the app:

* `DEVHOST_EVENTS=1`: print one readable line per event on stdout (blob pending or rejected, batch submitted,
  operation finished with the table's row count from the emulator, dead-lettered blob recovered, alert raised).
* `DEVHOST_ALERTS_FILE=path`: append every alert record as one JSON object per line (tests read it).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from azure.core.exceptions import AzureError

from devhost.emulator_client import EmulatorClient, EmulatorRequestError
from shared.redaction import RedactingFilter
from shared.url_checks import is_loopback_url

EVENTS_SETTING = "DEVHOST_EVENTS"
ALERTS_FILE_SETTING = "DEVHOST_ALERTS_FILE"
ALERTS_LOGGER = "shared.alerts"

# LogRecord attributes that every record has; anything else on a record is structured data the app added.
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields an app record carries (its `extra`, flattened with `custom_dimensions`)."""
    fields = {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES}
    dimensions = fields.pop("custom_dimensions", None)
    if isinstance(dimensions, Mapping):
        fields.update(dimensions)
    return fields


class AlertFileHandler(logging.Handler):
    """Appends each alert record as a JSON line: the message, level and the fields the app attached."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.WARNING)
        self._path = path
        self._lock_file = threading.Lock()
        self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        line = {"level": record.levelname, "message": record.getMessage(), **record_fields(record)}
        with self._lock_file, self._path.open("a", encoding="utf-8") as sink:
            sink.write(json.dumps(line, default=str) + "\n")


class EventLineHandler(logging.Handler):
    """Prints one readable line per pipeline event recognised in the app's records.

    For a finished operation it also asks the emulator how many rows the table now holds, since no app
    record says how many rows Kusto ingested.
    """

    def __init__(self, kusto: EmulatorClient | None, stream: TextIO = sys.stdout) -> None:
        super().__init__(logging.INFO)
        self._kusto = kusto
        self._stream = stream
        self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        line = describe(record)
        if line is None:
            return
        fields = record_fields(record)
        if line.startswith("finished") and self._kusto is not None and fields.get("database") and fields.get("table"):
            try:
                rows = self._kusto.count(fields["database"], fields["table"])
                line += f"; {fields['database']}.{fields['table']} now holds {rows} rows"
            except (AzureError, EmulatorRequestError, ValueError) as error:
                line += f"; row count unavailable ({type(error).__name__})"
        self._stream.write(time.strftime("%H:%M:%S ") + line + "\n")
        self._stream.flush()


# (logger, start of the message format) -> event label. The formats are the app's own log messages.
_EVENTS = (
    ("shared.recorder", "blob pending", "pending"),
    ("shared.recorder", "blob rejected", "rejected"),
    ("shared.submission", "submitted ", "submitted"),
    ("shared.tracking", "operation ", "finished"),
    ("shared.dead_letters", "DeadLetter_Recovered blob ", "recovered"),
)


def describe(record: logging.LogRecord) -> str | None:
    """A readable event line for a pipeline record of the app (see `_EVENTS`, plus every alert), else None."""
    if record.name == ALERTS_LOGGER and record.levelno >= logging.WARNING:
        fields = record_fields(record)
        return f"ALERT      {fields.get('errorCode') or '?'}  blob {fields.get('blobName') or fields.get('blobPath') or '?'}"
    template = record.msg if isinstance(record.msg, str) else ""
    for logger_name, start, label in _EVENTS:
        if record.name == logger_name and template.startswith(start) and (label != "finished" or " finished " in template):
            return f"{label:<10} {record.getMessage().removeprefix(start).strip()}"
    return None


def install_event_handlers(values: Mapping[str, str]) -> None:
    """Attach the sinks the environment asks for to the root logger."""
    root = logging.getLogger()
    if values.get(EVENTS_SETTING) == "1":
        ingest_uri = values.get("KUSTO_INGEST_URI", "")
        root.addHandler(EventLineHandler(EmulatorClient(ingest_uri, timeout=5) if is_loopback_url(ingest_uri) else None))
    alerts_file = values.get(ALERTS_FILE_SETTING)
    if alerts_file:
        logging.getLogger(ALERTS_LOGGER).addHandler(AlertFileHandler(Path(alerts_file)))
