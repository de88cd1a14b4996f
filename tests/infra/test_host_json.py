"""No alert record is ever sampled away or filtered out by host.json, whatever the load.

An alert is one log record of `shared.alerts` (no exception attached), which the Functions host sends to
Application Insights as a `Trace` item, i.e. a row of `traces`, the table the alert rule queries. Adaptive
sampling (`samplingSettings`) drops items of the types it samples once the app sends more than
`maxTelemetryItemsPerSecond`, so `Trace` must not be one of them: the sampled types are `includedTypes` (all
types when empty or absent) minus `excludedTypes`, which win over `includedTypes`.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from shared import alerts
from shared.notifications import PERMANENT, failure_notification

ROOT = Path(__file__).resolve().parents[2]
HOST = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
QUERIES = ROOT / "infra" / "queries"
QUERY = (QUERIES / "ingestion-failures.kql").read_text(encoding="utf-8")

# Application Insights telemetry types (the values samplingSettings takes) and the table each one lands in.
TABLE_OF_TYPE = {
    "Dependency": "dependencies",
    "Event": "customEvents",
    "Exception": "exceptions",
    "PageView": "pageViews",
    "Request": "requests",
    "Trace": "traces",
}
HOST_LEVELS = ["Trace", "Debug", "Information", "Warning", "Error", "Critical", "None"]


def sampled_types(sampling: dict[str, object]) -> set[str]:
    """The telemetry types the host's adaptive sampling may drop, per the documented meaning of the options."""
    if sampling.get("isEnabled") is False:
        return set()

    def types(key: str) -> set[str]:
        value = sampling.get(key) or ""
        assert isinstance(value, str), f"{key} is a ';'-separated string"
        names = {name.strip() for name in value.split(";") if name.strip()}
        assert names <= set(TABLE_OF_TYPE), f"{key} names unknown types: {names - set(TABLE_OF_TYPE)}"
        return names

    return (types("includedTypes") or set(TABLE_OF_TYPE)) - types("excludedTypes")


def queried_table(query: str) -> str:
    """The table the alert query reads: its first statement that is not a comment."""
    lines = [line.strip() for line in query.splitlines() if line.strip() and not line.strip().startswith("//")]
    match = re.fullmatch(r"[A-Za-z]+", lines[0])
    assert match, f"the query does not start with a table: {lines[0]!r}"
    return match.group(0)


def alert_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Real alert records of shared.alerts: one for a Transient failure (WARNING), one for a Permanent one (ERROR)."""
    with caplog.at_level(logging.INFO, logger=alerts.__name__):
        for status, blob in (("Transient", "a.csv"), (PERMANENT, "b.csv")):
            notification = failure_notification(
                error_code="BadRequest_InvalidBlob", details="row 3", origin="ingestion", failure_status=status, blob_name=blob
            )
            alerts.raise_alert(json.dumps(notification), queue_name="ingest-failures", message_id="m", dequeue_count=1)
    return [record for record in caplog.records if record.name == alerts.__name__]


def test_every_alert_record_reaches_the_table_the_alert_rule_queries_unsampled(caplog: pytest.LogCaptureFixture) -> None:
    # An alert is a record with no exception attached (one with an exception would be an `exceptions` item): a Trace.
    records = alert_records(caplog)
    assert [record.levelno for record in records] == [logging.WARNING, logging.ERROR]
    assert all(record.exc_info is None and record.getMessage().startswith(alerts.ALERT_KEY) for record in records)
    table = queried_table(QUERY)
    assert table == TABLE_OF_TYPE["Trace"]

    sampling = HOST["logging"]["applicationInsights"]["samplingSettings"]
    sampled = sampled_types(sampling)
    assert "Trace" not in sampled, f"host.json samples {sorted(sampled)}: alert records ({table}) can be dropped under load"
    # Every alert rule's query reads an unsampled table; sampling still covers the high-volume type no rule reads
    # (the host's storage and Kusto calls).
    tables = {path.name: queried_table(path.read_text(encoding="utf-8")) for path in sorted(QUERIES.glob("*.kql"))}
    sampled_tables = {TABLE_OF_TYPE[name] for name in sampled}
    assert not {name: t for name, t in tables.items() if t in sampled_tables}, f"alert queries on sampled tables: {tables}"
    assert "Dependency" in sampled

    # The worker's records reach the host under category `Function.<name>.User`: no level on the way may drop WARNING.
    levels = HOST["logging"]["logLevel"]
    governing = {key: value for key, value in levels.items() if key in ("default", "Function") or key.startswith("Function.")}
    too_high = {key: value for key, value in governing.items() if HOST_LEVELS.index(value) > HOST_LEVELS.index("Warning")}
    assert "default" in governing and not too_high, f"these host.json levels drop WARNING alert records: {too_high}"
