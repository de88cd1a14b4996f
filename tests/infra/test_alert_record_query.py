"""The alert query and the workbook read database, table and error code back exactly from the app's own records.

Kusto names may hold dots, spaces and dashes (`My.Db` + `T` must not read as `My` + `Db.T`). The records here
are made by the app's own code (`build_alert` + `log_alert`, caught by a handler and cleaned by the same
redaction every record of the worker goes through), turned into `traces` rows, and the deployed queries are
run over them with duckdb-kql: once with the custom dimensions forwarded, once with the message alone (the
built-in Python worker logging forwards only the message).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import duckdb
import duckdb_kql
import pytest

from shared import alerts
from shared.notifications import failure_notification
from shared.redaction import clean_record
from tests.infra.bicep import INFRA_DIR

QUERY = (INFRA_DIR / "queries" / "ingestion-failures.kql").read_text(encoding="utf-8")
WORKBOOK = json.loads((INFRA_DIR / "workbook.json").read_text(encoding="utf-8"))

# (database, table, error code): names as Kusto allows them, and as an invalid-name alert may carry them.
CASES = [
    ("My.Db", "T", "BadRequest_MappingReferenceWasNotFound"),
    ("Sales", "Orders.2024.eu", "BadRequest_InvalidBlob"),
    ("My Db", "Order Lines", "Routing_TargetNotAllowed"),
    ("my-db.v2", "order-lines v.1", "Stream_WrongNumberOfFields"),
    ('a"b\\c', 'x" table="y', "Routing_InvalidName"),
]

# How the dimensions reach App Insights: forwarded, or not at all (only the host's own fields, or nothing).
FORWARDED = "forwarded"
DIMENSIONS = (FORWARDED, "host-fields-only", "null")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    handler = _Records()
    logger = logging.getLogger(alerts.__name__)
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def _log(records: list[logging.LogRecord], database: str, table: str, error_code: str) -> logging.LogRecord:
    notification = failure_notification(
        error_code=error_code,
        details="row 3: bad value",
        origin="ingestion",
        database=database,
        table=table,
        blob_name=f"{database}/{table}/a b.csv",
    )
    alert = alerts.build_alert(json.dumps(notification), queue_name="ingest-failures", message_id="m1", dequeue_count=1)
    before = len(records)
    alerts.log_alert(alert)
    (record,) = records[before:]
    # What the worker forwards: the record after the redaction filter every record of the process goes through.
    return clean_record(record)


def _traces(records: list[logging.LogRecord], dimensions: str) -> duckdb.DuckDBPyConnection:
    con = duckdb_kql.connect()
    con.execute("CREATE TABLE traces (timestamp TIMESTAMP, message VARCHAR, customDimensions JSON, severityLevel INTEGER)")
    for record in records:
        if dimensions == FORWARDED:
            custom = json.dumps({"Category": "Function", **record.custom_dimensions})
        elif dimensions == "host-fields-only":
            custom = json.dumps({"Category": "Function", "LogLevel": record.levelname})
        else:
            custom = None
        con.execute("INSERT INTO traces VALUES (now(), ?, ?, 3)", [record.getMessage(), custom])
    # A record of another kind, which the queries must leave out.
    con.execute("INSERT INTO traces VALUES (now(), 'blob pending ''staging/x.csv'' -> Sales.Orders (csv, path)', NULL, 1)")
    return con


def _expected() -> list[tuple[str, str, str]]:
    return sorted((database, table, code) for database, table, code in CASES)


def test_alert_query_reads_dotted_and_spaced_names_back_exactly(records: list[logging.LogRecord]) -> None:
    logged = [_log(records, *case) for case in CASES]
    found = {
        dimensions: sorted(
            duckdb_kql.kql(_traces(logged, dimensions), QUERY + "\n| project database, ['table'], errorCode").fetchall()
        )
        for dimensions in DIMENSIONS
    }
    assert found == dict.fromkeys(DIMENSIONS, _expected())


def test_each_alert_field_is_one_quoted_value_in_the_message(records: list[logging.LogRecord]) -> None:
    """The text a person reads: separate database= and table= fields, each a JSON string (quotes as \\u0022)."""
    message = _log(records, "My.Db", 'x" table="y', "E1").getMessage()
    assert message.startswith('KUSTO_INGESTION_FAILURE errorCode="E1" failureStatus=Permanent database="My.Db" ')
    assert ' table="x\\u0022 table=\\u0022y" blob=' in message
    assert "target=" not in message


def _workbook_query(name: str) -> str:
    (item,) = [item for item in WORKBOOK["items"] if item.get("name") == name]
    query: str = item["content"]["query"]
    # The workbook's own time grain parameter, and a render that only the portal draws.
    return query.replace("{TimeRange:grain}", "5m").replace("| render timechart", "")


def test_workbook_failure_queries_read_the_names_back_exactly(records: list[logging.LogRecord]) -> None:
    logged = [_log(records, *case) for case in CASES]
    series_expected = sorted(f"['{database}'].['{table}'] {code}" for database, table, code in CASES)
    for dimensions in DIMENSIONS:
        con = _traces(logged, dimensions)
        rows = duckdb_kql.kql(con, _workbook_query("failures-table") + "\n| project database, tableName, errorCode").fetchall()
        assert sorted(rows) == _expected(), dimensions
        series = duckdb_kql.kql(con, _workbook_query("failures-over-time") + "\n| project series").fetchall()
        assert sorted(s for (s,) in series) == series_expected, dimensions
