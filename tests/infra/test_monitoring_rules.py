"""The log alert rules: all skip query validation (first-deploy race); a failing function and an invalid setting alert.

The function-failure rule's query is run with duckdb-kql over a `requests` table shaped like Application
Insights' (one row per function execution, `success` false when it raised), and counted the way the rule
counts: per function.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb_kql
import pytest
from tree_sitter import Node

from shared import services
from shared.settings import SETTING_NAMES, SettingsError
from tests.infra.bicep import (
    INFRA_DIR,
    BicepFile,
    Resource,
    call_arguments,
    called_functions,
    identifiers,
    infra_files,
    literal,
    object_properties,
    parse_file,
    string_literal,
)
from tests.infra.rules import ACTION_GROUP, ALERTING_RULES, SCHEDULED_QUERY_RULE


def _query_file(parsed: BicepFile, rule: Resource) -> Path | None:
    """The .kql file a rule's criteria query is loaded from (`query: someVar`, `var someVar = loadTextContent(...)`)."""
    criteria = rule.property_path("properties", "criteria", "allOf")
    if criteria is None or not criteria.named_children:
        return None
    query = object_properties(criteria.named_children[0]).get("query")
    if query is None:
        return None
    for name in identifiers(query):
        value = parsed.variables.get(name)
        for function, call in called_functions(value) if value is not None else ():
            if function == "loadTextContent":
                target = string_literal(call_arguments(call)[0])
                if target is not None:
                    return INFRA_DIR / target
    return None


def _criterion(rule: Resource) -> dict[str, Node]:
    criteria = rule.property_path("properties", "criteria", "allOf")
    assert criteria is not None and len(criteria.named_children) == 1
    return object_properties(criteria.named_children[0])


def _table(query: str) -> str:
    """The table a query starts from: its first line that is not a comment."""
    return next(line.strip() for line in query.splitlines() if line.strip() and not line.lstrip().startswith("//"))


def _function_failure_rule(alerting: BicepFile) -> tuple[Resource, str]:
    """The rule whose query reads App Insights `requests` (function executions), with that query."""
    found = []
    for rule in alerting.resources_of_type(SCHEDULED_QUERY_RULE):
        path = _query_file(alerting, rule)
        query = path.read_text(encoding="utf-8") if path is not None else ""
        if query and _table(query) == "requests":
            found.append((rule, query))
    assert len(found) == 1, "alerting.bicep needs exactly one log alert rule on App Insights requests"
    return found[0]


def test_every_log_alert_rule_skips_query_validation_and_notifies_the_action_group() -> None:
    problems = [problem for path in infra_files() for rule in ALERTING_RULES for problem in rule(parse_file(path))]
    assert problems == []
    alerting = parse_file(INFRA_DIR / "alerting.bicep")
    assert len(alerting.resources_of_type(SCHEDULED_QUERY_RULE)) >= 3, (
        "the ingestion-failure, function-failure and settings rules"
    )


def test_function_failure_rule_watches_failed_executions_per_function() -> None:
    alerting = parse_file(INFRA_DIR / "alerting.bicep")
    rule, _ = _function_failure_rule(alerting)
    assert string_literal(rule.properties.get("kind")) == "LogAlert"
    scopes = rule.property_path("properties", "scopes")
    assert scopes is not None and "appInsights" in identifiers(scopes)
    criterion = _criterion(rule)
    assert string_literal(criterion["timeAggregation"]) == "Count"
    assert string_literal(criterion["operator"]) in ("GreaterThan", "GreaterThanOrEqual")
    threshold = criterion["threshold"]
    threshold_default = literal(threshold)
    if threshold_default is None:  # a parameter: its default
        (name,) = identifiers(threshold)
        threshold_default = literal(alerting.parameters[name].node.named_children[-1])
    assert isinstance(threshold_default, int) and threshold_default > 1, "one failed run is not a function that keeps failing"
    dimensions = [string_literal(object_properties(d)["name"]) for d in criterion["dimensions"].named_children]
    assert dimensions == ["functionName"]
    # The same action group as the ingestion-failure rule.
    groups = {g.symbol for g in alerting.resources_of_type(ACTION_GROUP)}
    for symbol in ("failureAlert", rule.symbol):
        resource = alerting.resource(symbol)
        assert resource is not None
        actions = resource.property_path("properties", "actions", "actionGroups")
        assert actions is not None and identifiers(actions) & groups, symbol


def test_function_failure_query_counts_failed_requests_per_function() -> None:
    _, query = _function_failure_rule(parse_file(INFRA_DIR / "alerting.bicep"))
    con = duckdb_kql.connect()
    con.execute(
        "CREATE TABLE requests (timestamp TIMESTAMP, name VARCHAR, operation_Name VARCHAR, success BOOLEAN, "
        "resultCode VARCHAR, operation_Id VARCHAR, duration DOUBLE)"
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    runs = [("submit_pending", False)] * 12 + [("submit_pending", True)] * 3 + [("record_staged_blob", False)] * 2
    runs += [("track_outcomes", True)] * 5
    for index, (name, success) in enumerate(runs):
        con.execute(
            "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, 12.5)",
            [now - timedelta(seconds=index), name, name, success, "0" if success else "1", f"op-{index}"],
        )
    rows = duckdb_kql.kql(con, query + "\n| summarize failures = count() by functionName").fetchall()
    assert sorted(rows) == [("record_staged_blob", 2), ("submit_pending", 12)]


def _settings_error_rule(alerting: BicepFile) -> tuple[Resource, str]:
    """The rule whose query reads the app's APP_SETTING_INVALID traces, with that query."""
    found = []
    for rule in alerting.resources_of_type(SCHEDULED_QUERY_RULE):
        path = _query_file(alerting, rule)
        query = path.read_text(encoding="utf-8") if path is not None else ""
        if query and _table(query) == "traces" and services.LOG_KEY in query:
            found.append((rule, query))
    assert len(found) == 1, "alerting.bicep needs exactly one log alert rule on the app's APP_SETTING_INVALID records"
    return found[0]


def test_an_invalid_setting_alerts_once_per_setting_even_when_it_only_turns_a_feature_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rule, query = _settings_error_rule(parse_file(INFRA_DIR / "alerting.bicep"))
    criterion = _criterion(rule)
    assert (string_literal(criterion["operator"]), literal(criterion["threshold"])) == ("GreaterThan", 0)
    assert [string_literal(object_properties(d)["name"]) for d in criterion["dimensions"].named_children] == ["setting"]
    # The records as the app writes them: a feature turned off by an unresolved Key Vault reference and an invalid
    # blob trigger source, both reported when the settings are read, then the blob trigger's failed run.
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("StagingStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("KUSTO_INGEST_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("BLOB_TRIGGER_SOURCE", "Polling")
    monkeypatch.setenv("ALERT_WEBHOOK_URL", "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/hook/)")
    services.forget_process_services()
    with caplog.at_level(logging.ERROR, logger="shared.services"), pytest.raises(SettingsError):
        services.get_services("record_staged_blob")
    services.forget_process_services()
    messages = [record.getMessage() for record in caplog.records]
    con = duckdb_kql.connect()
    con.execute("CREATE TABLE traces (timestamp TIMESTAMP, message VARCHAR, severityLevel INTEGER)")
    now = datetime.now(UTC).replace(tzinfo=None)
    for message in [*messages, 'KUSTO_INGESTION_FAILURE errorCode="x"', "drain finished: received 3"]:
        con.execute("INSERT INTO traces VALUES (?, ?, 3)", [now, message])
    rows = duckdb_kql.kql(con, query + "\n| summarize records = count() by setting").fetchall()
    assert sorted(rows) == [("ALERT_WEBHOOK_URL", 1), ("BLOB_TRIGGER_SOURCE", 2)]
