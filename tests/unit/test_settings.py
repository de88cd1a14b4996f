"""Settings: defaults, the identity and connection-string forms, and a clear error for every bad value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.settings import SETTING_NAMES, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
LOCAL = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
)
BASE = {"StagingStorage": LOCAL, "KUSTO_INGEST_URI": "http://127.0.0.1:2", "KUSTO_CREDENTIAL": "none"}
AZURE = {
    "StagingStorage__blobServiceUri": "https://acct.blob.core.windows.net",
    "StagingStorage__queueServiceUri": "https://acct.queue.core.windows.net",
    "StagingStorage__credential": "managedidentity",
    "KUSTO_INGEST_URI": "https://ingest-c.westeurope.kusto.windows.net",
}


def test_defaults() -> None:
    settings = load_settings(AZURE)
    assert settings.staging.uses_identity
    assert (settings.pending_queue, settings.failures_queue, settings.tracking_queue) == (
        "ingest-pending",
        "ingest-failures",
        "ingest-tracking",
    )
    assert settings.pending_poison_queue == "ingest-pending-poison"
    assert settings.kusto_token_scope == "https://ingest-c.westeurope.kusto.windows.net/.default"
    assert (settings.kusto_credential, settings.blob_access, settings.blob_trigger_source) == (
        "managedidentity",
        "managed_identity",
        "EventGrid",
    )
    assert (settings.max_blobs_per_batch, settings.submit_concurrency, settings.submit_schedule) == (20, 8, "*/10 * * * * *")


def test_choices_are_case_insensitive_and_come_back_canonical() -> None:
    settings = load_settings(BASE | {"BLOB_TRIGGER_SOURCE": "logsandcontainerscan", "BLOB_ACCESS": "ACCOUNT_KEY_SAS"})
    assert (settings.blob_trigger_source, settings.blob_access) == ("LogsAndContainerScan", "account_key_sas")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KUSTO_INGEST_URI", "ingest-c.kusto.windows.net"),
        ("KUSTO_INGEST_URI", "http://ingest-c.kusto.windows.net"),
        ("KUSTO_INGEST_URI", "https://ingest-c.kusto.windows.net/?x=1"),
        ("STAGING_CONTAINER", "Staging_Container"),
        ("BLOB_TRIGGER_SOURCE", "Polling"),
        ("PENDING_QUEUE", "Ingest_Pending"),
        ("FAILURES_QUEUE", "a" * 60),
        ("TRACKING_QUEUE", "ab"),
        ("SUBMIT_SCHEDULE", "every 10 seconds please"),
        ("DRAIN_TIME_BUDGET_SECONDS", "soon"),
        ("DRAIN_TIME_BUDGET_SECONDS", "0"),
        ("SUBMIT_CONCURRENCY", "2.5"),
        ("SUBMIT_CONCURRENCY", "65"),
        ("MAX_BLOBS_PER_BATCH", "0"),
        ("PENDING_VISIBILITY_TIMEOUT_SECONDS", "1"),
        ("PENDING_MAX_DEQUEUE_COUNT", "-1"),
        ("KUSTO_CREDENTIAL", "password"),
        ("MANAGED_IDENTITY_CLIENT_ID", "not-a-guid"),
        ("KUSTO_REQUEST_TIMEOUT_SECONDS", "9999"),
        ("BLOB_ACCESS", "anonymous"),
        ("BLOB_ACCESS_IDENTITY", "my-identity"),
        ("SAS_LIFETIME_MINUTES", "1"),
        ("ROUTING_RULES", "[{"),
        ("ROUTING_RULES", "/no/such/rules.json"),
        ("ROUTING_RULES", '{"rule": 1}'),
        ("ALLOWED_TARGETS", "Telemetry"),
        ("SUBMISSION_MODE", "ftp"),
        ("REPORT_LEVEL", "All"),
        ("REPORT_METHOD", "Email"),
        ("DUPLICATE_WINDOW_SECONDS", "60"),
    ],
)
def test_every_invalid_value_names_its_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(BASE | {name: value})
    assert str(caught.value).startswith(f"{name}:")


def test_missing_kusto_uri_and_missing_staging_connection_are_named() -> None:
    with pytest.raises(SettingsError, match=r"^KUSTO_INGEST_URI: missing"):
        load_settings({"StagingStorage": LOCAL})
    with pytest.raises(SettingsError, match=r"^StagingStorage: set StagingStorage__blobServiceUri"):
        load_settings({"KUSTO_INGEST_URI": "http://127.0.0.1:2"})
    with pytest.raises(SettingsError, match=r"^StagingStorage: not a storage connection string"):
        load_settings({"StagingStorage": "just-a-name", "KUSTO_INGEST_URI": "http://127.0.0.1:2"})


def test_identity_service_uris_must_be_https_urls() -> None:
    with pytest.raises(SettingsError, match=r"^StagingStorage__blobServiceUri:"):
        load_settings(AZURE | {"StagingStorage__blobServiceUri": "http://acct.blob.core.windows.net"})
    with pytest.raises(SettingsError, match=r"^StagingStorage__queueServiceUri:"):
        load_settings(AZURE | {"StagingStorage__queueServiceUri": "acct.queue"})


def test_no_credential_is_only_for_a_local_emulator() -> None:
    with pytest.raises(SettingsError, match=r"^KUSTO_CREDENTIAL: 'none' is only allowed"):
        load_settings(AZURE | {"KUSTO_CREDENTIAL": "none"})


def test_account_key_sas_needs_a_local_connection_string_with_a_key() -> None:
    with pytest.raises(SettingsError, match=r"^BLOB_ACCESS: 'account_key_sas' needs"):
        load_settings(AZURE | {"BLOB_ACCESS": "account_key_sas"})
    assert load_settings(BASE | {"BLOB_ACCESS": "account_key_sas"}).staging.account_key() == "a2V5"


def test_the_three_queues_must_differ() -> None:
    with pytest.raises(SettingsError, match="PENDING_QUEUE, FAILURES_QUEUE and TRACKING_QUEUE"):
        load_settings(BASE | {"PENDING_QUEUE": "same-queue", "TRACKING_QUEUE": "same-queue"})


def test_the_duplicate_window_must_outlast_the_pending_visibility_timeout() -> None:
    below = r"^DUPLICATE_WINDOW_SECONDS: 600 is below PENDING_VISIBILITY_TIMEOUT_SECONDS \(900\)"
    with pytest.raises(SettingsError, match=below):
        load_settings(BASE | {"DUPLICATE_WINDOW_SECONDS": "600", "PENDING_VISIBILITY_TIMEOUT_SECONDS": "900"})
    assert load_settings(BASE | {"DUPLICATE_WINDOW_SECONDS": "900", "PENDING_VISIBILITY_TIMEOUT_SECONDS": "900"})


def test_the_duplicate_window_must_outlast_a_senders_lease() -> None:
    # A chunk a dead run was sending is judged once the lease (budget + 60 s) has passed; the ledger must still know it.
    below = r"^DUPLICATE_WINDOW_SECONDS: 600 is below DRAIN_TIME_BUDGET_SECONDS \+ 60 \(660\)"
    with pytest.raises(SettingsError, match=below):
        load_settings(BASE | {"DUPLICATE_WINDOW_SECONDS": "600", "DRAIN_TIME_BUDGET_SECONDS": "600"})
    settings = load_settings(BASE | {"DUPLICATE_WINDOW_SECONDS": "660", "DRAIN_TIME_BUDGET_SECONDS": "600"})
    assert settings.sending_lease_seconds == 660


def test_the_local_settings_example_loads_and_names_every_local_setting() -> None:
    values = json.loads((ROOT / "local.settings.example.json").read_text(encoding="utf-8"))["Values"]
    identity_only = {name for name in SETTING_NAMES if name.startswith("StagingStorage__")}
    assert set(SETTING_NAMES) - identity_only <= set(values)
    settings = load_settings(values)
    assert (settings.kusto_ingest_uri, settings.kusto_credential, settings.blob_access) == (
        "http://127.0.0.1:8082",
        "none",
        "account_key_sas",
    )
    assert settings.blob_trigger_source == "LogsAndContainerScan"
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
