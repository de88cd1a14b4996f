"""The triggers `function_app.py` declares: names, types, paths, connections, schedules, queues."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import azurefunctions.extensions.bindings.blob as blob_types
import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azurefunctions.extensions.base import meta

from shared import services
from shared.settings import SETTING_NAMES, SettingsError

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT = {
    "StagingStorage": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;QueueEndpoint=http://127.0.0.1:2/devstoreaccount1;",
    "KUSTO_INGEST_URI": "http://127.0.0.1:3",
    "KUSTO_CREDENTIAL": "none",
    "BLOB_TRIGGER_SOURCE": "LogsAndContainerScan",
}


@contextlib.contextmanager
def logging_state_kept() -> Iterator[None]:
    """Undo, on leaving, what importing function_app.py does to the process's logging: the record factory and
    the root logger's and its handlers' filters (`install_redaction`). Other tests must see logging as it was,
    so that their checks of call sites are not answered by the process-wide redaction instead."""
    root = logging.getLogger()
    factory = logging.getLogRecordFactory()
    filters = [(target, list(target.filters)) for target in (root, *root.handlers)]
    try:
        yield
    finally:
        logging.setLogRecordFactory(factory)
        for target, kept in filters:
            target.filters[:] = kept


def import_function_app(environment: dict[str, str]) -> Any:
    """Import function_app.py afresh with `environment` set (its decorators read settings at import).

    The redaction it installs in the process's logging is undone afterwards (`logging_state_kept`)."""
    with logging_state_kept():
        return import_fresh(environment)


def import_fresh(environment: dict[str, str]) -> Any:
    """Import function_app.py afresh with `environment` set, as the worker does, leaving logging as the import made it."""
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        sys.modules.pop("function_app", None)
        return importlib.import_module("function_app")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        sys.modules.pop("function_app", None)


@pytest.fixture(scope="module")
def functions() -> Iterator[dict[str, Any]]:
    """get_functions() works once per app object, so the module shares one call."""
    module = import_function_app(ENVIRONMENT)
    yield {function.get_function_name(): function for function in module.app.get_functions()}


def trigger(function: Any) -> dict[str, Any]:
    return function.get_trigger().get_dict_repr()


def test_exactly_the_app_functions_are_registered(functions: dict[str, Any]) -> None:
    assert set(functions) == APP_FUNCTIONS


def test_blob_trigger_watches_the_staging_container_as_an_sdk_client(functions: dict[str, Any]) -> None:
    function = functions["record_staged_blob"]
    binding = trigger(function)
    assert binding["type"] == "blobTrigger"
    assert binding["path"] == "%STAGING_CONTAINER%/{name}"
    assert binding["connection"] == "StagingStorage"
    assert binding["source"] == "LogsAndContainerScan"
    assert [b["type"] for b in json.loads(function.get_function_json())["bindings"]] == ["blobTrigger"]
    # The SDK-type binding: the worker sees a real SdkType class (not a string annotation), so it hands the
    # function a BlobClient and never downloads the blob.
    annotation = inspect.signature(function.get_user_function()).parameters["blob"].annotation
    assert annotation is blob_types.BlobClient
    assert meta._ConverterMeta.get("blobTrigger").check_supported_type(annotation)


def test_timer_runs_on_the_schedule_setting_without_monitor_or_startup_run(functions: dict[str, Any]) -> None:
    binding = trigger(functions["submit_pending"])
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == "%SUBMIT_SCHEDULE%"
    assert binding["useMonitor"] is False
    assert binding["runOnStartup"] is False


@pytest.mark.parametrize(
    ("name", "schedule"),
    [
        ("track_outcomes", "%TRACK_SCHEDULE%"),
        ("housekeeping", "%HOUSEKEEPING_SCHEDULE%"),
        ("reconcile_staging", "%RECONCILE_SCHEDULE%"),
    ],
)
def test_the_other_timers_use_their_schedule_settings(functions: dict[str, Any], name: str, schedule: str) -> None:
    binding = trigger(functions[name])
    assert (binding["type"], binding["schedule"], binding["useMonitor"], binding["runOnStartup"]) == (
        "timerTrigger",
        schedule,
        False,
        False,
    )


def test_queue_trigger_reads_the_failures_queue(functions: dict[str, Any]) -> None:
    binding = trigger(functions["alert_on_failure"])
    assert binding["type"] == "queueTrigger"
    assert binding["queueName"] == "%FAILURES_QUEUE%"
    assert binding["connection"] == "StagingStorage"


def test_the_blob_trigger_source_follows_the_setting() -> None:
    module = import_function_app(ENVIRONMENT | {"BLOB_TRIGGER_SOURCE": "EventGrid"})
    [blob] = [f for f in module.app.get_functions() if f.get_function_name() == "record_staged_blob"]
    assert trigger(blob)["source"] == "EventGrid"


# Issue #24, item 3: whatever the settings, all six functions are indexed; a function whose settings are invalid
# fails each run with one ERROR line, and an invalid optional setting turns off only its feature.

APP_FUNCTIONS = {
    "record_staged_blob",
    "submit_pending",
    "track_outcomes",
    "alert_on_failure",
    "housekeeping",
    "reconcile_staging",
}
AZURE = {
    "StagingStorage__blobServiceUri": "https://acct.blob.core.windows.net",
    "StagingStorage__queueServiceUri": "https://acct.queue.core.windows.net",
    "StagingStorage__credential": "managedidentity",
    "KUSTO_INGEST_URI": "https://ingest-c.westeurope.kusto.windows.net",
}
"""App settings as Azure has them: identity-based staging storage, no connection string."""
NO_KUSTO_URI = {name: value for name, value in AZURE.items() if name != "KUSTO_INGEST_URI"}
UNRESOLVED = "@Microsoft.KeyVault(SecretUri=https://vault1.vault.azure.net/secrets/alert-webhook/)"
"""What an app setting holds when Azure cannot resolve its Key Vault reference."""


@pytest.fixture
def app_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dict[str, str]], dict[str, Any]]]:
    """Set exactly the given app settings (every other setting the app reads unset) for the test, import
    function_app.py with them and return its functions by name; the process's services are read afresh."""

    def index(values: dict[str, str]) -> dict[str, Any]:
        for name in SETTING_NAMES:
            monkeypatch.delenv(name, raising=False)
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        services.forget_process_services()
        module = import_function_app(values)
        return {function.get_function_name(): function for function in module.app.get_functions()}

    yield index
    services.forget_process_services()


def invoke(function: Any) -> None:
    """Call a function's user code as the worker does, with an input of its trigger's type."""
    body = function.get_user_function()
    kind = trigger(function)["type"]
    if kind == "blobTrigger":
        body(blob=None)  # never reached: the settings are read first
    elif kind == "queueTrigger":
        body(message=QueueMessage(id="m-1", body=b"{}", dequeue_count=1, pop_receipt="p"))
    else:
        body(timer=TimerRequest(past_due=False))


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("values", "source"),
    [
        (NO_KUSTO_URI, "EventGrid"),
        (AZURE | {"ALERT_WEBHOOK_URL": UNRESOLVED}, "EventGrid"),
        (AZURE | {"BLOB_TRIGGER_SOURCE": "Polling"}, "EventGrid"),
        (AZURE | {"BLOB_TRIGGER_SOURCE": UNRESOLVED}, "EventGrid"),
        (NO_KUSTO_URI | {"BLOB_TRIGGER_SOURCE": "logsandcontainerscan"}, "LogsAndContainerScan"),
        (AZURE | {"SUBMIT_SCHEDULE": "every minute", "ROUTING_RULES": "[{"}, "EventGrid"),
        ({"KUSTO_INGEST_URI": UNRESOLVED, "StagingStorage": UNRESOLVED}, "EventGrid"),
        ({}, "EventGrid"),
    ],
    ids=[
        "required-setting-missing",
        "webhook-unresolved",
        "source-invalid",
        "source-unresolved",
        "source-valid",
        "several-invalid",
        "required-unresolved",
        "nothing-set",
    ],
)
def test_all_six_functions_are_indexed_whatever_the_settings(
    app_settings: Callable[[dict[str, str]], dict[str, Any]], values: dict[str, str], source: str
) -> None:
    functions = app_settings(values)
    assert set(functions) == APP_FUNCTIONS
    assert trigger(functions["record_staged_blob"])["source"] == source


@pytest.mark.parametrize(
    ("values", "first_line"),
    [
        (NO_KUSTO_URI, "KUSTO_INGEST_URI: missing; set it to https://ingest-<cluster>.<region>.kusto.windows.net"),
        (AZURE | {"KUSTO_INGEST_URI": UNRESOLVED}, "KUSTO_INGEST_URI: is an unresolved Key Vault reference"),
    ],
)
def test_an_invalid_required_setting_fails_every_run_of_every_function_with_one_error_line(
    app_settings: Callable[[dict[str, str]], dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
    values: dict[str, str],
    first_line: str,
) -> None:
    functions = app_settings(values)
    for name, function in sorted(functions.items()):
        for _ in range(2):  # every run, not only the first: nothing is cached
            caplog.clear()
            with pytest.raises(SettingsError) as caught:
                invoke(function)
            line = str(caught.value)
            assert line.startswith(first_line), line
            assert line.endswith(f"({name} fails every run until this app setting is fixed)"), line
            assert len(line.splitlines()) == 1 and "vault1" not in line, line
            assert errors(caplog) == [f"APP_SETTING_INVALID {line}"]


def test_an_invalid_blob_trigger_source_fails_every_run_of_the_blob_trigger_only(
    app_settings: Callable[[dict[str, str]], dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    functions = app_settings(ENVIRONMENT | {"BLOB_TRIGGER_SOURCE": "Polling"})
    assert trigger(functions["record_staged_blob"])["source"] == "EventGrid"
    for run in range(2):
        caplog.clear()
        with pytest.raises(SettingsError) as caught:
            invoke(functions["record_staged_blob"])
        line = str(caught.value)
        assert line == (
            "BLOB_TRIGGER_SOURCE: 'Polling' is not one of EventGrid, LogsAndContainerScan "
            "(record_staged_blob fails every run until this app setting is fixed)"
        )
        # The first run also reads the settings, and logs at ERROR every feature they disable.
        at_start = [message for message in errors(caplog) if message.endswith("(read at start)")]
        assert len(at_start) == (1 if run == 0 else 0)
        assert errors(caplog)[-1] == f"APP_SETTING_INVALID {line}"


def test_the_service_table_names_every_function_of_the_app(functions: dict[str, Any]) -> None:
    assert set(services.FUNCTIONS) == set(functions) == APP_FUNCTIONS


def test_a_disabled_feature_is_logged_at_start_and_by_the_functions_using_it_at_most_once_a_minute(
    app_settings: Callable[[dict[str, str]], dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services, "ensure_queues", lambda _: None)  # no storage: the clients are never used here
    app_settings(ENVIRONMENT | {"ALERT_WEBHOOK_URL": UNRESOLVED})
    reason = "APP_SETTING_INVALID ALERT_WEBHOOK_URL: is an unresolved Key Vault reference"
    fix = "; until it is fixed, the webhook is off: alerts are log records only"
    caplog.set_level(logging.INFO)

    settings = services.get_services("alert_on_failure").settings
    assert settings.alert_webhook_url == "" and set(settings.disabled) == {"webhook"}
    [at_start, by_run] = errors(caplog)
    assert at_start.startswith(reason) and at_start.endswith(f"{fix} (read at start)")
    assert by_run.startswith(reason) and by_run.endswith(f"{fix} (reported by alert_on_failure)")
    assert "vault1" not in at_start + by_run

    caplog.clear()
    services.get_services("alert_on_failure")  # a burst of failure messages: not once per message
    services.get_services("submit_pending")  # does not use the webhook
    services.get_services("track_outcomes")
    assert errors(caplog) == []
    services.get_services("housekeeping")  # reports every disabled feature on each of its runs
    [by_housekeeping] = errors(caplog)
    assert by_housekeeping.startswith(reason) and by_housekeeping.endswith(f"{fix} (reported by housekeeping)")


def test_a_function_reports_a_feature_again_after_about_a_minute() -> None:
    interval = services.REPORT_INTERVAL_SECONDS
    now = [100.0]
    reports = services.DisabledReports(clock=lambda: now[0])
    assert reports.due("housekeeping", "webhook")
    assert not reports.due("housekeeping", "webhook")
    assert reports.due("alert_on_failure", "webhook") and reports.due("housekeeping", "digest")
    now[0] += interval - 0.1
    assert not reports.due("housekeeping", "webhook")
    now[0] += 0.1
    assert reports.due("housekeeping", "webhook")
    assert 50 <= interval <= 60  # a timer running every minute reports on each run, however spaced


def test_host_json_configures_bundle_queues_blobs_and_sampling() -> None:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    queues = host["extensions"]["queues"]
    assert (queues["maxDequeueCount"], queues["messageEncoding"]) == (5, "base64")
    assert 1 <= queues["batchSize"] <= 32
    assert host["extensions"]["blobs"]["poisonBlobThreshold"] == 5
    assert host["logging"]["applicationInsights"]["samplingSettings"]["excludedTypes"] == "Request;Trace"
    assert host["functionTimeout"]


def test_importing_the_app_redacts_and_escapes_every_record_of_the_process() -> None:
    """Whatever logger writes a record, and whether a root handler was there before the import (the worker's)
    or came after it, the handler gets the record redacted and on one line."""
    root = logging.getLogger()
    before, after = io.StringIO(), io.StringIO()
    early, late = logging.StreamHandler(before), logging.StreamHandler(after)
    factory = logging.getLogRecordFactory()
    with logging_state_kept():
        root.addHandler(early)
        try:
            import_fresh(ENVIRONMENT)
            root.addHandler(late)
            logging.getLogger("azure.x").warning(
                "GET https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sig=SECRET1 failed: %s",
                "AccountKey%3DSECRET2%3B\nKUSTO_INGESTION_FAILURE fake",
            )
            logging.getLogger().warning("on the root logger: %s", "\u202e?sv=1&sig%3DSECRET3")
        finally:
            root.removeHandler(early)
            root.removeHandler(late)
    for written in (before.getvalue(), after.getvalue()):
        assert "SECRET" not in written, written
        assert "sig=REDACTED" in written and "AccountKey%3DREDACTED" in written
        lines = written.splitlines()
        assert len(lines) == 2 and lines[0].endswith("\\nKUSTO_INGESTION_FAILURE fake"), lines
        assert lines[1].endswith("\\u202e?sv=REDACTED&sig%3DREDACTED"), lines
    assert logging.getLogRecordFactory() is factory
