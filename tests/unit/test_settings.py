"""Settings: defaults, the identity and connection-string forms, and a clear error for every bad value."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shared import settings as settings_module
from shared.settings import SETTING_NAMES, Settings, SettingsError, load_settings

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


@pytest.mark.parametrize("name", ["PENDING_QUEUE", "FAILURES_QUEUE", "TRACKING_QUEUE"])
def test_a_queue_name_leaves_room_for_the_queue_the_poison_watcher_keeps_its_messages_in(name: str) -> None:
    """`<name>-poison-alerted` must be a valid queue name too (63 characters at most), or nothing poisoned alerts."""
    longest = "q" * 48
    assert len(f"{longest}-poison-alerted") == 63
    assert getattr(load_settings(BASE | {name: longest}), name.lower()) == longest
    with pytest.raises(SettingsError, match=rf"^{name}: .* is not a valid queue name \(3-48 "):
        load_settings(BASE | {name: longest + "q"})


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


# Hostile values (issue #23, finding 6): each must stop with one line that names its setting.

STAGING_AZURE = {name: value for name, value in AZURE.items() if name.startswith("StagingStorage")}
QUEUE_MODE = {"SUBMISSION_MODE": "queue"}


def refused(values: dict[str, str], name: str) -> str:
    """Load `values`; the SettingsError must be one line naming `name`. Returns its message."""
    with pytest.raises(SettingsError) as caught:
        load_settings(values)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert "\n" not in message and "\r" not in message
    assert name in message, message
    return message


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        ({"REPORT_LEVEL": "None"}, "REPORT_LEVEL"),
        ({"REPORT_LEVEL": "none"}, "REPORT_LEVEL"),
        ({"REPORT_LEVEL": "All"}, "REPORT_LEVEL"),
        ({"REPORT_METHOD": "Table"}, "REPORT_METHOD"),
        ({"REPORT_METHOD": "TABLE"}, "REPORT_METHOD"),
        ({"REPORT_METHOD": "Email"}, "REPORT_METHOD"),
    ],
)
def test_queue_mode_refuses_report_settings_that_would_hide_failures_at_load(extra: dict[str, str], name: str) -> None:
    refused(BASE | QUEUE_MODE | extra, name)


def test_queue_mode_accepts_the_report_settings_that_keep_failures_visible() -> None:
    settings = load_settings(BASE | QUEUE_MODE | {"REPORT_LEVEL": "failuresandsuccesses", "REPORT_METHOD": "queueandtable"})
    assert (settings.report_level, settings.report_method) == ("FailuresAndSuccesses", "QueueAndTable")
    # REST mode never sends them, so there they are only checked against the three documented values.
    assert load_settings(BASE | {"REPORT_LEVEL": "None", "REPORT_METHOD": "Table"}).report_level == "None"


@pytest.mark.parametrize(
    "value",
    [
        "[" * 100_000,
        "{" * 100_000,
        '{"a":' * 50_000,
        "[" * 33 + "]" * 33,
        "[" + "1" * 5000 + "]",
        "[NaN]",
        "[-Infinity]",
        '[{"path": "a", "path": "b"}]',
        "[{",
        "{}",
        '"text"',
        "a\x00b",
        "\udcff/rules.json",
        "/dev/zero",
        "/",
        "/no/such/rules.json",
        "x" * 5000,
    ],
)
def test_hostile_routing_rules_name_the_setting(value: str) -> None:
    refused(BASE | {"ROUTING_RULES": value}, "ROUTING_RULES")


def test_routing_rules_nested_up_to_the_limit_still_load() -> None:
    assert len(load_settings(BASE | {"ROUTING_RULES": "[" * 32 + "]" * 32}).routing_rules) == 1


def test_a_rules_file_must_be_a_small_regular_utf8_file(tmp_path: Path) -> None:
    fifo = tmp_path / "rules.fifo"
    os.mkfifo(fifo)
    assert "not a regular file" in refused(BASE | {"ROUTING_RULES": str(fifo)}, "ROUTING_RULES")
    big = tmp_path / "big.json"
    big.write_bytes(b"[" + b" " * (1024 * 1024) + b"]")
    assert "larger than" in refused(BASE | {"ROUTING_RULES": str(big)}, "ROUTING_RULES")
    latin = tmp_path / "latin.json"
    latin.write_bytes('[{"path": "caf\xe9"}]'.encode("latin-1"))
    assert "not UTF-8" in refused(BASE | {"ROUTING_RULES": str(latin)}, "ROUTING_RULES")
    bom = tmp_path / "bom.json"
    bom.write_bytes(b'\xef\xbb\xbf[{"path": "a/*", "database": "D", "table": "T"}]')
    assert load_settings(BASE | {"ROUTING_RULES": str(bom)}).routing_rules[0]["table"] == "T"


SCHEDULES = ("SUBMIT_SCHEDULE", "TRACK_SCHEDULE", "HOUSEKEEPING_SCHEDULE")


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize(
    "value",
    [
        "a b c d e f",
        "* * * *",
        "* * * * * * *",
        "00:05:00",
        "1.00:00:00",
        "60 * * * * *",
        "* 60 * * * *",
        "* * 24 * * *",
        "0 0 0 0 * *",
        "0 0 0 32 * *",
        "0 0 0 * 13 *",
        "0 0 0 * * 7",
        "0 0 0 30 2 *",
        "0 0 0 31 4,6,9,11 *",
        "5-2 * * * * *",
        "*/0 * * * * *",
        "*/61 * * * * *",
        "-1 * * * * *",
        "0,,1 * * * * *",
        "0, * * * * *",
        "*-5 * * * * *",
        "0 0 0 L * *",
        "0 0 0 1W * *",
        "0 0 0 ? * *",
        "0 0 0 * * 5#2",
        "H * * * * *",
        "@daily",
        "0 0 9 * * monday",
        "0 0 9 * january *",
        "\u0661 * * * * *",
        "\uff10 * * * * *",
        "0\t* * * * *",
        "*/10 * * * * *\n",
        "*/10\u00a0* * * * *",
        "*/10 * * * * *\x00",
    ],
)
def test_schedules_are_checked_as_ncrontab(name: str, value: str) -> None:
    message = refused(BASE | {name: value}, name)
    assert "is not a valid NCRONTAB schedule (six fields: second minute hour day month day-of-week)" in message


@pytest.mark.parametrize(
    "value",
    [
        "*/10 * * * * *",
        "0 */5 * * * *",
        "0 30 9 * * 1-5",
        "0 0 0 13 * fri",
        "0 0 12 * JAN,jul MON-FRI",
        "*/5 * * * *",
        " 0 0 * * * * ",
    ],
)
def test_valid_ncrontab_schedules_load(value: str) -> None:
    assert load_settings(BASE | {"SUBMIT_SCHEDULE": value}).submit_schedule == value.strip()


WEBHOOK = "ALERT_WEBHOOK_URL"


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/metadata/identity",
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.0.1/",
        "https://[fe80::1]/",
        "https://[febf::1]/",
        "https://[::ffff:169.254.169.254]/",
        "https://[::ffff:a9fe:a9fe]/",
        "https://[::169.254.169.254]/",
        "https://[2002:a9fe:a9fe::1]/",
        "https://[64:ff9b::a9fe:a9fe]/",
        "https://168.63.129.16/",
        "https://[::ffff:168.63.129.16]/",
        "https://0.0.0.0/",
        "https://0.1.2.3/",
        "https://[::]/",
        "https://224.0.0.1/",
        "https://[ff02::1]/",
        "https://255.255.255.255/",
        "https://240.0.0.1/",
        "http://2852039166/",
        "https://2852039166/",
        "https://0xa9fea9fe/",
        "https://0xA9FEA9FE/",
        "https://0251.0376.0251.0376/",
        "https://169.254.43518/",
        "https://169.16689662/",
        "https://0x7f.1/",
        "https://127.1/",
        "https://017.0.0.1/",
        "https://1.2.3.4.5/",
        "https://\uff11\uff16\uff19\u3002\uff12\uff15\uff14\u3002\uff11\uff16\uff19\u3002\uff12\uff15\uff14/",
        "https://bücher.example/",
        "https://example.com\\@169.254.169.254/",
        "https://hooks.example.com@169.254.169.254/",
        "https://exa mple.com/",
        "https://example.com/\x00",
        "https://[fe80::1%25eth0]/",
        "https://[v1.fe]/",
        "https://[::1/",
        "https://example.com:99999/",
        "https://example.com:0/",
        "https://example.com:\uff18\uff10/",
        "https://exa%6dple.com/",
        "https://-example.com/",
        "https://example..com/",
        "ftp://example.com/",
        "https:///path",
        "hooks.slack.com/services/x",
    ],
)
def test_the_webhook_refuses_metadata_link_local_and_odd_hosts(url: str) -> None:
    message = refused(BASE | {WEBHOOK: url}, WEBHOOK)
    assert "/metadata" not in message and "services" not in message  # the URL may be a secret: never quoted whole


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "http://127.0.0.1:8080/hook",
        "http://localhost:8080/hook",
        "http://[::1]:8080/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://x.localhost/hook",
    ],
)
def test_in_azure_the_webhook_must_be_https_and_not_this_machine(url: str) -> None:
    refused(AZURE | {WEBHOOK: url}, WEBHOOK)


def test_azure_is_where_the_staging_storage_is_not_local() -> None:
    azure_connection_string = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5"
    refused({**BASE, "StagingStorage": azure_connection_string, WEBHOOK: "http://127.0.0.1:9/hook"}, WEBHOOK)
    hook = "https://hooks.slack.com/services/T0/B0/XYZ"
    assert load_settings(AZURE | {WEBHOOK: hook}).alert_webhook_url == hook
    assert load_settings(AZURE | {WEBHOOK: "https://10.1.2.3/hook"}).alert_webhook_url == "https://10.1.2.3/hook"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://localhost:8080/hook", "http://[::1]:8080/x"])
def test_locally_http_to_a_receiver_on_this_machine_stays_allowed(url: str) -> None:
    assert load_settings(BASE | {WEBHOOK: url}).alert_webhook_url == url
    assert load_settings(BASE | {"StagingStorage": "UseDevelopmentStorage=true", WEBHOOK: url}).alert_webhook_url == url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KUSTO_INGEST_URI", "https://169.254.169.254"),
        ("KUSTO_INGEST_URI", "https://2852039166"),
        ("KUSTO_INGEST_URI", "http://[::1"),
        ("KUSTO_INGEST_URI", "http://127.0.0.1:99999"),
        ("KUSTO_INGEST_URI", "https://ingest-c.kusto.windows.net\t"),
        ("KUSTO_INGEST_URI", "https://user:pw@ingest-c.kusto.windows.net"),
        ("StagingStorage", "just-a-name"),
        ("StagingStorage", "AccountName=Bad_Name;AccountKey=a2V5"),
        ("StagingStorage", "AccountName=acct;AccountKey=not base64!"),
        ("StagingStorage", "AccountName=acct;AccountKey="),
        ("StagingStorage", "UseDevelopmentStorage=yes"),
        ("StagingStorage", "AccountName=acct; AccountKey=a2V5"),
        ("StagingStorage", "AccountKey=a2V5"),
        ("StagingStorage", "DefaultEndpointsProtocol=ftp;AccountName=acct"),
        ("StagingStorage", "AccountName=acct;BlobEndpoint=http://169.254.169.254/x"),
        ("StagingStorage", "AccountName=acct;QueueEndpoint=http://[::1"),
        ("StagingStorage", "AccountName=acct;EndpointSuffix=core.windows.net/x\\y"),
    ],
)
def test_every_url_and_the_connection_string_are_parsed_as_a_client_would(name: str, value: str) -> None:
    message = refused(BASE | {name: value}, name)
    assert "not base64!" not in message  # a connection string may hold a key: never quoted


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("StagingStorage__blobServiceUri", "https://169.254.169.254"),
        ("StagingStorage__queueServiceUri", "https://0x7f000001"),
        ("StagingStorage__blobServiceUri", "https://acct.blob.core.windows.net#x"),
        ("StagingStorage__credential", "clientsecret"),
        ("StagingStorage__clientId", "-" * 36),
        ("StagingStorage__clientId", "not-a-guid"),
    ],
)
def test_the_identity_form_of_the_staging_connection_is_checked(name: str, value: str) -> None:
    refused(AZURE | {name: value}, name)


NUMBERS = [
    ("SUBMIT_CONCURRENCY", True),
    ("DRAIN_TIME_BUDGET_SECONDS", False),
    ("KUSTO_REQUEST_TIMEOUT_SECONDS", False),
    ("PENDING_MAX_DEQUEUE_COUNT", True),
    ("RESUBMIT_MAX_ATTEMPTS", True),
    ("ALERT_DIGEST_WINDOW_SECONDS", True),
]


@pytest.mark.parametrize(("name", "integer"), NUMBERS)
@pytest.mark.parametrize(
    "value",
    [
        "1_0",
        "\u0661\u0662",
        "\uff18",
        "+8",
        "--8",
        "-0",
        "-1",
        "8-",
        "0x10",
        "1e1",
        "inf",
        "nan",
        "NaN",
        "\u00a08",
        "8\u2003",
        "\u200b8",
        "8\x00",
        "8 8",
        "1.",
        ".5",
        "1.2.3",
        "9" * 5000,
    ],
)
def test_numbers_are_plain_ascii_digits(name: str, integer: bool, value: str) -> None:
    message = refused(BASE | {name: value}, name)
    assert "9" * 100 not in message


@pytest.mark.parametrize("value", ["2.5", "10.0"])
def test_whole_number_settings_refuse_a_decimal_point(value: str) -> None:
    refused(BASE | {"SUBMIT_CONCURRENCY": value}, "SUBMIT_CONCURRENCY")


def test_numbers_in_plain_digits_load_and_surrounding_ascii_spaces_are_trimmed() -> None:
    settings = load_settings(
        BASE | {"SUBMIT_CONCURRENCY": " 016\t", "DRAIN_TIME_BUDGET_SECONDS": "12.5", "RESUBMIT_MAX_ATTEMPTS": "0"}
    )
    assert (settings.submit_concurrency, settings.drain_time_budget_seconds, settings.resubmit_max_attempts) == (16, 12.5, 0)


GUIDS = ("MANAGED_IDENTITY_CLIENT_ID", "BLOB_ACCESS_IDENTITY")


@pytest.mark.parametrize("name", GUIDS)
@pytest.mark.parametrize(
    "value",
    [
        "-" * 36,
        "g" * 36,
        "0" * 36,
        "00000000-0000-0000-0000-000000000000",
        "{12345678-1234-1234-1234-123456789abc}",
        "urn:uuid:12345678-1234-1234-1234-123456789abc",
        "12345678123412341234123456789abc",
        "1234567-81234-1234-1234-123456789abc",
        "12345678-1234-1234-1234-123456789abcd",
        "12345678-1234-1234-1234-\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19\uff10ab",
        "12345678-1234-1234-1234-123456789ab\u0661",
    ],
)
def test_guid_settings_are_strict(name: str, value: str) -> None:
    refused(BASE | {name: value}, name)


@pytest.mark.parametrize("name", GUIDS)
def test_a_canonical_guid_loads_in_either_case(name: str) -> None:
    for value in ("12345678-abcd-4ef0-9123-456789abcdef", "12345678-ABCD-4EF0-9123-456789ABCDEF"):
        load_settings(BASE | {name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BLOB_ACCESS", "account_\u212aey_sas"),
        ("KUSTO_CREDENTIAL", "n\u200bone"),
        ("DELETE_ON_SUCCESS", "tru\u0435"),
        ("DELETE_ON_SUCCESS", "\u0131"),
        ("STAGING_CONTAINER", "staging\u00a0"),
        ("QUARANTINE_CONTAINER", "\u200b"),
        ("PENDING_QUEUE", "ingest-pending\x00"),
        ("ALLOWED_TARGETS", "Db.T\u00a0"),
        ("KUSTO_TOKEN_SCOPE", "https://x/.default https://y/.default"),
        ("KUSTO_TOKEN_SCOPE", "https://x/.default\x00"),
        ("ALERT_WEBHOOK_SECRET", "key\ud800"),
        ("SUBMISSION_MODE", "queue\u00a0"),
    ],
)
def test_lookalike_and_invisible_characters_are_refused(name: str, value: str) -> None:
    refused(BASE | {name: value}, name)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ALLOWED_TARGETS", "." * 100_000 + "!"),
        ("ALLOWED_TARGETS", "a" * 100_000),
        ("SUBMIT_SCHEDULE", "0," * 50_000 + "x * * * * *"),
        ("ROUTING_RULES", '["' + "\\" * 100_000),
        ("ALERT_WEBHOOK_URL", "https://" + "a." * 50_000 + "0x1/"),
        ("KUSTO_INGEST_URI", "https://" + "-" * 100_000),
    ],
)
def test_a_huge_hostile_value_is_refused_quickly(name: str, value: str) -> None:
    # A regex that backtracks, or a parser that recurses, would take seconds on these (or overflow the stack).
    started = time.perf_counter()
    refused(BASE | {name: value}, name)
    assert time.perf_counter() - started < 2


# Issue #24, item 3: with `disable_invalid_features` (the worker), an invalid setting of a feature turns off that
# feature only, and `Settings.disabled` says why; required settings still raise.

UNRESOLVED = "@Microsoft.KeyVault(SecretUri=https://vault1.vault.azure.net/secrets/alert-webhook/)"
HOOK = "https://hooks.example.com/alerts"
OFF = {
    "webhook": {"alert_webhook_url": "", "alert_webhook_format": "json", "alert_webhook_secret": ""},
    "digest": {"alert_digest_window_seconds": 0},
    "quarantine": {"quarantine_container": ""},
    "delete_on_success": {"delete_on_success": False},
    "blob_trigger": {"blob_trigger_source": "EventGrid"},
    "submit_timer": {"submit_schedule": "*/10 * * * * *"},
    "track_timer": {"track_schedule": "*/15 * * * * *"},
    "housekeeping_timer": {"housekeeping_schedule": "0 * * * * *"},
}
"""Each feature's fields in Settings while it is disabled."""
FEATURE_CASES = [
    ({WEBHOOK: UNRESOLVED}, "webhook", "ALERT_WEBHOOK_URL: is an unresolved Key Vault reference"),
    ({WEBHOOK: "https://169.254.169.254/hook"}, "webhook", "ALERT_WEBHOOK_URL:"),
    ({WEBHOOK: "http://hooks.example.com/alerts"}, "webhook", "ALERT_WEBHOOK_URL: plain http is refused in Azure"),
    ({WEBHOOK: HOOK, "ALERT_WEBHOOK_FORMAT": "xml"}, "webhook", "ALERT_WEBHOOK_FORMAT:"),
    ({WEBHOOK: HOOK, "ALERT_WEBHOOK_SECRET": UNRESOLVED}, "webhook", "ALERT_WEBHOOK_SECRET: is an unresolved Key Vault"),
    ({WEBHOOK: HOOK, "ALERT_WEBHOOK_SECRET": "key\ud800"}, "webhook", "ALERT_WEBHOOK_SECRET:"),
    ({"ALERT_DIGEST_WINDOW_SECONDS": "15m"}, "digest", "ALERT_DIGEST_WINDOW_SECONDS:"),
    ({"ALERT_DIGEST_WINDOW_SECONDS": "9" * 5000}, "digest", "ALERT_DIGEST_WINDOW_SECONDS:"),
    ({"QUARANTINE_CONTAINER": "Quarantine_1"}, "quarantine", "QUARANTINE_CONTAINER:"),
    ({"QUARANTINE_CONTAINER": "staging"}, "quarantine", "QUARANTINE_CONTAINER: must differ from STAGING_CONTAINER"),
    ({"QUARANTINE_CONTAINER": "ingest-state"}, "quarantine", "QUARANTINE_CONTAINER: must differ from STATE_CONTAINER"),
    ({"QUARANTINE_CONTAINER": UNRESOLVED}, "quarantine", "QUARANTINE_CONTAINER: is an unresolved Key Vault reference"),
    ({"DELETE_ON_SUCCESS": "ture"}, "delete_on_success", "DELETE_ON_SUCCESS:"),
    ({"BLOB_TRIGGER_SOURCE": "Polling"}, "blob_trigger", "BLOB_TRIGGER_SOURCE: 'Polling' is not one of"),
    ({"SUBMIT_SCHEDULE": "every 10 seconds"}, "submit_timer", "SUBMIT_SCHEDULE:"),
    ({"TRACK_SCHEDULE": "00:00:15"}, "track_timer", "TRACK_SCHEDULE:"),
    ({"HOUSEKEEPING_SCHEDULE": UNRESOLVED}, "housekeeping_timer", "HOUSEKEEPING_SCHEDULE: is an unresolved Key Vault"),
]


def lenient(values: dict[str, str]) -> Settings:
    return load_settings(values, disable_invalid_features=True)


@pytest.mark.parametrize(("bad", "feature", "reason"), FEATURE_CASES)
def test_an_invalid_feature_setting_turns_off_that_feature_only(bad: dict[str, str], feature: str, reason: str) -> None:
    settings = lenient(AZURE | bad)
    assert list(settings.disabled) == [feature]
    line = settings.disabled[feature]
    assert line.startswith(reason) and len(line.splitlines()) == 1, line
    assert "vault1" not in line and "hooks.example.com" not in line  # a reference or a webhook URL is never quoted
    assert {name: getattr(settings, name) for name in OFF[feature]} == OFF[feature]
    # Every other setting is as if the bad value had not been set at all.
    assert replace(settings, disabled={}) == replace(load_settings(AZURE), **OFF[feature])
    # Without `disable_invalid_features` the same line is raised, as before.
    with pytest.raises(SettingsError) as caught:
        load_settings(AZURE | bad)
    assert str(caught.value) == line


def test_several_features_are_disabled_each_with_its_own_reason() -> None:
    bad = {WEBHOOK: UNRESOLVED, "ALERT_WEBHOOK_SECRET": "key\ud800", "QUARANTINE_CONTAINER": "X", "DELETE_ON_SUCCESS": "2"}
    settings = lenient(AZURE | bad)
    assert settings.disabled.keys() == {"webhook", "quarantine", "delete_on_success"}
    assert settings.disabled["webhook"].startswith("ALERT_WEBHOOK_URL:")  # the first reason is kept
    assert (settings.kusto_ingest_uri, settings.alert_webhook_secret, settings.quarantine_container) == (
        AZURE["KUSTO_INGEST_URI"],
        "",
        "",
    )


def test_valid_settings_disable_nothing_and_keep_every_feature() -> None:
    values = AZURE | {
        WEBHOOK: HOOK,
        "ALERT_WEBHOOK_FORMAT": "teams",
        "ALERT_WEBHOOK_SECRET": "key",
        "QUARANTINE_CONTAINER": "quarantine",
        "DELETE_ON_SUCCESS": "true",
        "ALERT_DIGEST_WINDOW_SECONDS": "60",
    }
    settings = lenient(values)
    assert settings.disabled == {}
    assert settings == load_settings(values)
    assert (settings.alert_webhook_url, settings.alert_webhook_format, settings.quarantine_container) == (
        HOOK,
        "teams",
        "quarantine",
    )


@pytest.mark.parametrize(
    ("bad", "name"),
    [
        ({"KUSTO_INGEST_URI": UNRESOLVED}, "KUSTO_INGEST_URI"),
        ({"StagingStorage__queueServiceUri": "acct.queue"}, "StagingStorage__queueServiceUri"),
        ({"STATE_CONTAINER": "State"}, "STATE_CONTAINER"),
        ({"ROUTING_RULES": "[{"}, "ROUTING_RULES"),
        ({"ALLOWED_TARGETS": UNRESOLVED}, "ALLOWED_TARGETS"),
        ({"RESUBMIT_MAX_ATTEMPTS": "three"}, "RESUBMIT_MAX_ATTEMPTS"),
        ({"DUPLICATE_WINDOW_SECONDS": "60"}, "DUPLICATE_WINDOW_SECONDS"),
    ],
)
def test_a_required_setting_still_raises_when_features_may_be_disabled(bad: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{name}:"):
        lenient(AZURE | bad | {WEBHOOK: UNRESOLVED})


@pytest.mark.parametrize("name", sorted(SETTING_NAMES))
@pytest.mark.parametrize(
    "reference",
    [UNRESOLVED, "@microsoft.keyvault(VaultName=vault1;SecretName=s1)", "  @Microsoft.KeyVault(SecretUri=https://vault1/)\n"],
)
def test_an_unresolved_key_vault_reference_is_named_as_such_in_any_setting(name: str, reference: str) -> None:
    values = (AZURE if name.startswith("StagingStorage__") else BASE) | {name: reference}
    expected = f"{name}: is an unresolved Key Vault reference"
    with pytest.raises(SettingsError) as caught:
        load_settings(values)
    line = str(caught.value)
    assert line.startswith(expected) and "Key Vault Secrets User" in line and "vault1" not in line, line
    try:
        disabled = lenient(values).disabled
    except SettingsError as error:
        assert str(error) == line
    else:
        assert list(disabled.values()) == [line]


@pytest.mark.parametrize(
    ("value", "source"),
    [
        (None, "EventGrid"),
        ("", "EventGrid"),
        ("EventGrid", "EventGrid"),
        (" logsandcontainerscan\n", "LogsAndContainerScan"),
        ("Polling", "EventGrid"),
        (UNRESOLVED, "EventGrid"),
        ("LogsAndContainer\u0405can", "EventGrid"),
        ("\ud800", "EventGrid"),
        ("x" * 100_000, "EventGrid"),
    ],
)
def test_the_blob_trigger_source_for_indexing_reads_that_setting_only_and_never_raises(value: str | None, source: str) -> None:
    class OnlyTheSource(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            assert key == "BLOB_TRIGGER_SOURCE", key
            return super().get(key, default)

    values = OnlyTheSource() if value is None else OnlyTheSource(BLOB_TRIGGER_SOURCE=value)
    assert settings_module.blob_trigger_source_at_indexing(values) == source
    # The worker then reads the same source, and an invalid value disables the blob trigger.
    settings = lenient(BASE | dict(values))
    assert settings.blob_trigger_source == source
    assert ("blob_trigger" in settings.disabled) == (value not in (None, "", "EventGrid") and source == "EventGrid")


FEATURE_SETTINGS = (
    "ALERT_WEBHOOK_URL",
    "ALERT_WEBHOOK_FORMAT",
    "ALERT_WEBHOOK_SECRET",
    "ALERT_DIGEST_WINDOW_SECONDS",
    "QUARANTINE_CONTAINER",
    "DELETE_ON_SUCCESS",
    "BLOB_TRIGGER_SOURCE",
    "SUBMIT_SCHEDULE",
    "TRACK_SCHEDULE",
    "HOUSEKEEPING_SCHEDULE",
)


@pytest.mark.parametrize("name", FEATURE_SETTINGS)
@pytest.mark.parametrize(
    "value", ["\ud800", "x\x00", "[" * 100_000, "9" * 5000, "https://" + "a." * 50_000 + "0x1/", "\u0661", UNRESOLVED]
)
def test_a_hostile_value_in_a_feature_setting_never_stops_the_worker(name: str, value: str) -> None:
    settings = lenient(AZURE | {WEBHOOK: HOOK, name: value})
    if not settings.disabled:  # a secret may be any text
        assert name == "ALERT_WEBHOOK_SECRET" and settings.alert_webhook_secret == value
        return
    [line] = settings.disabled.values()
    assert line.startswith(f"{name}:") and len(line.splitlines()) == 1, line
    assert "9" * 100 not in line and "a." * 100 not in line
