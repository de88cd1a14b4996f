"""Pipeline event lines and the alerts file are derived from the app's own log records."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from devhost.events import AlertFileHandler, EventLineHandler, describe


def record(name: str, level: int, msg: str, *args: object, dimensions: dict | None = None) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    if dimensions is not None:
        made.custom_dimensions = dimensions
    return made


def test_app_records_become_event_lines() -> None:
    pending = record(
        "shared.recorder", logging.INFO, "blob pending %r -> %s.%s (%s, %s)", "staging/a.csv", "Db", "T", "csv", "rule"
    )
    submitted = record("shared.submission", logging.INFO, "submitted %d blobs to %s.%s as operation %s", 2, "Db", "T", "op1")
    alert = record(
        "shared.alerts", logging.ERROR, "KUSTO_INGESTION_FAILURE %s", "x", dimensions={"errorCode": "E1", "blobName": "a.csv"}
    )
    assert describe(pending) == "pending    'staging/a.csv' -> Db.T (csv, rule)"
    assert describe(submitted) == "submitted  2 blobs to Db.T as operation op1"
    assert describe(alert) == "ALERT      E1  blob a.csv"
    assert describe(record("shared.submission", logging.INFO, "drain finished: received %d", 0)) is None
    assert describe(record("devhost.invocation", logging.INFO, "blob pending %s", "x")) is None


def test_event_lines_are_redacted() -> None:
    stream = io.StringIO()
    handler = EventLineHandler(None, stream)
    handler.handle(record("shared.recorder", logging.WARNING, "blob rejected %s", "http://h/c/b?sv=1&sig=SECRET"))
    assert "SECRET" not in stream.getvalue()
    assert "rejected" in stream.getvalue()


def test_alert_records_are_written_as_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    handler = AlertFileHandler(path)
    handler.handle(
        record(
            "shared.alerts",
            logging.ERROR,
            "alert %s",
            "x",
            dimensions={"errorCode": "E1", "details": "read https://a.blob/c/b?sv=1&sig=SECRET failed"},
        )
    )
    handler.handle(record("shared.alerts", logging.WARNING, "alert %s", "y", dimensions={"errorCode": "E2"}))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["errorCode"] for line in lines] == ["E1", "E2"]
    assert "SECRET" not in path.read_text()
