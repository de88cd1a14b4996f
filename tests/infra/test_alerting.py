"""The log alert's query finds the records shared/alerts.py really writes, and the workbook is well formed.

The query is run, not just read: duckdb-kql executes it against a `traces` table holding the message of an
alert record produced by `shared.alerts.raise_alert`, so a change to the record's text or to the query that
breaks the alert's dimensions fails here.
"""

from __future__ import annotations

import json
import logging

import duckdb_kql
import pytest

from shared import alerts
from shared.notifications import failure_notification
from tests.infra.bicep import INFRA_DIR, object_properties, parse_file, string_literal

QUERY = (INFRA_DIR / "queries" / "ingestion-failures.kql").read_text(encoding="utf-8")


def _alert_message(caplog: pytest.LogCaptureFixture, **fields: str) -> str:
    notification = failure_notification(origin="ingestion", details="row 3: bad value", blob_name="Sales/Orders/a.csv", **fields)
    with caplog.at_level(logging.INFO, logger=alerts.__name__):
        alerts.raise_alert(json.dumps(notification), queue_name="ingest-failures", message_id="m1", dequeue_count=1)
    (record,) = [r for r in caplog.records if r.name == alerts.__name__]
    return record.getMessage()


def _run(messages: list[str]) -> list[tuple[str, str, str]]:
    con = duckdb_kql.connect()
    con.execute("CREATE TABLE traces (timestamp TIMESTAMP, message VARCHAR, customDimensions JSON)")
    for message in messages:
        con.execute('INSERT INTO traces VALUES (now(), ?, \'{"Category": "Function"}\')', [message])
    rows = duckdb_kql.kql(con, QUERY + "\n| project database, ['table'], errorCode").fetchall()
    return sorted(rows)


def test_query_matches_the_alert_key_of_shared_alerts() -> None:
    assert f'startswith "{alerts.ALERT_KEY}"' in QUERY


def test_query_extracts_the_dimensions_from_a_real_alert_record(caplog: pytest.LogCaptureFixture) -> None:
    message = _alert_message(caplog, error_code="BadRequest_InvalidBlob", database="Sales", table="Order Lines")
    rows = _run([message, "blob pending 'staging/x.csv' -> Sales.Orders (csv, path)"])
    assert rows == [("Sales", "Order Lines", "BadRequest_InvalidBlob")]


def test_alert_rule_splits_by_the_query_columns() -> None:
    alerting = parse_file(INFRA_DIR / "alerting.bicep")
    rule = alerting.resource("failureAlert")
    assert rule is not None and rule.type == "Microsoft.Insights/scheduledQueryRules"
    criteria = rule.property_path("properties", "criteria", "allOf")
    assert criteria is not None
    (condition,) = criteria.named_children
    dimensions = object_properties(condition)["dimensions"]
    names = [string_literal(object_properties(d)["name"]) for d in dimensions.named_children]
    assert names == ["database", "table", "errorCode"]


def test_workbook_is_valid_json_with_a_storage_placeholder() -> None:
    text = (INFRA_DIR / "workbook.json").read_text(encoding="utf-8")
    workbook = json.loads(text)
    assert workbook["version"] == "Notebook/1.0"
    titles = " ".join(item["content"].get("title", "") for item in workbook["items"])
    for topic in ("Queued messages", "recorded", "Submissions", "Failures by table and error code"):
        assert topic in titles
    assert "__STORAGE_ACCOUNT_ID__" in text
