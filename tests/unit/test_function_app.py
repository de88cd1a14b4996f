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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azurefunctions.extensions.bindings.blob as blob_types
import pytest
from azurefunctions.extensions.base import meta

from shared.settings import SettingsError

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
    assert set(functions) == {"record_staged_blob", "submit_pending", "track_outcomes", "alert_on_failure", "housekeeping"}


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
    ("name", "schedule"), [("track_outcomes", "%TRACK_SCHEDULE%"), ("housekeeping", "%HOUSEKEEPING_SCHEDULE%")]
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


def test_invalid_settings_stop_the_import_with_the_settings_name() -> None:
    with pytest.raises(SettingsError, match=r"^BLOB_TRIGGER_SOURCE:"):
        import_function_app(ENVIRONMENT | {"BLOB_TRIGGER_SOURCE": "Polling"})


def test_host_json_configures_bundle_queues_blobs_and_sampling() -> None:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    queues = host["extensions"]["queues"]
    assert (queues["maxDequeueCount"], queues["messageEncoding"]) == (5, "base64")
    assert 1 <= queues["batchSize"] <= 32
    assert host["extensions"]["blobs"]["poisonBlobThreshold"] == 5
    assert host["logging"]["applicationInsights"]["samplingSettings"]["excludedTypes"] == "Request"
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
