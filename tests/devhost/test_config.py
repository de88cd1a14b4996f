"""Settings files, %SETTING% expressions and host.json options, read the way the Functions host reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devhost.config import (
    DELIVERY_DROPPED,
    ConfigError,
    EventGridOptions,
    load_host_options,
    load_local_settings,
    lose_events,
    parse_timespan,
    resolve,
)
from devhost.connections import connection_string


def write_settings(path: Path, values: object) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}), encoding="utf-8")
    return path


def test_local_settings_values_are_exported_and_the_environment_wins(tmp_path: Path) -> None:
    environ = {"FAILURES_QUEUE": "from-env"}
    path = write_settings(
        tmp_path / "local.settings.json", {"FAILURES_QUEUE": "from-file", "STAGING_CONTAINER": "staging", "N": 3}
    )

    exported = load_local_settings(path, environ)

    assert environ == {"FAILURES_QUEUE": "from-env", "STAGING_CONTAINER": "staging", "N": "3"}
    assert exported == {"STAGING_CONTAINER": "staging", "N": "3"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('{"Values": []}', '"Values" object'),
        ('{"Values": {"A": {"nested": 1}}}', "Values.A must be a string"),
    ],
)
def test_a_bad_settings_file_names_the_problem(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=expected):
        load_local_settings(path, {})


def test_setting_expressions_are_resolved_and_a_missing_setting_is_named() -> None:
    values = {"STAGING_CONTAINER": "staging", "SUBMIT_SCHEDULE": "*/10 * * * * *"}
    assert resolve("%STAGING_CONTAINER%/{name}", values) == "staging/{name}"
    assert resolve("%SUBMIT_SCHEDULE%", values) == "*/10 * * * * *"
    assert resolve("plain/{name}", values) == "plain/{name}"
    with pytest.raises(ConfigError, match="app setting FAILURES_QUEUE is not set"):
        resolve("%FAILURES_QUEUE%", values)
    with pytest.raises(ConfigError, match="'%FAILURES_QUEUE%' does not resolve to a value"):  # the host's words
        resolve("%FAILURES_QUEUE%", values)


def test_host_json_queue_and_blob_options(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "queues": {
                        "batchSize": 8,
                        "maxDequeueCount": 3,
                        "visibilityTimeout": "00:00:30",
                        "maxPollingInterval": "00:00:05",
                    },
                    "blobs": {"poisonBlobThreshold": 2, "maxDegreeOfParallelism": 4},
                },
            }
        ),
        encoding="utf-8",
    )
    options = load_host_options(path)
    assert (options.queues.batch_size, options.queues.max_dequeue_count) == (8, 3)
    assert (options.queues.visibility_timeout, options.queues.max_polling_interval) == (30.0, 5.0)
    assert options.queues.fetch_threshold == 4
    assert (options.blobs.poison_blob_threshold, options.blobs.max_degree_of_parallelism) == (2, 4)


def test_host_json_defaults_are_the_hosts(tmp_path: Path) -> None:
    options = load_host_options(tmp_path / "missing-host.json")
    assert (options.queues.batch_size, options.queues.max_dequeue_count, options.queues.visibility_timeout) == (16, 5, 0.0)
    assert options.queues.max_polling_interval == 2.0
    assert options.queues.message_encoding == "base64"
    assert options.blobs.poison_blob_threshold == 5


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"queues": {"batchSize": 64}}, "batchSize: 64 is not a whole number from 1 to 32"),
        ({"queues": {"visibilityTimeout": "30s"}}, "visibilityTimeout: '30s' is not a TimeSpan"),
        ({"queues": {"messageEncoding": "utf8"}}, "messageEncoding"),
    ],
)
def test_bad_host_json_values_are_named(tmp_path: Path, section: dict, expected: str) -> None:
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"extensions": section}), encoding="utf-8")
    with pytest.raises(ConfigError, match=expected):
        load_host_options(path)


def test_timespans() -> None:
    assert parse_timespan("00:00:00", "x") == 0
    assert parse_timespan("00:01:30", "x") == 90
    assert parse_timespan("1.02:00:00", "x") == 93600
    assert parse_timespan("00:00:00.5", "x") == 0.5


def test_connections_need_a_connection_string_locally() -> None:
    assert connection_string("StagingStorage", {"StagingStorage": "UseDevelopmentStorage=true"}) == "UseDevelopmentStorage=true"
    with pytest.raises(ConfigError, match="identity-based connections only work in Azure"):
        connection_string("StagingStorage", {"StagingStorage__blobServiceUri": "https://a.blob.core.windows.net"})
    with pytest.raises(ConfigError, match="app setting AzureWebJobsStorage is not set"):
        connection_string("", {})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 1800.0),  # the host's default off Consumption: 30 minutes
        ("00:00:01", 1.0),
        ("00:10:00", 600.0),
        ("1.00:00:00", 86400.0),
        ("-1", None),  # no limit
    ],
)
def test_function_timeout_is_read_like_the_host_reads_it(tmp_path: Path, value: str | None, expected: float | None) -> None:
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"version": "2.0"} if value is None else {"version": "2.0", "functionTimeout": value}))
    assert load_host_options(path).function_timeout == expected


@pytest.mark.parametrize("value", ["00:00:00.5", "00:00:00", "10 minutes"])
def test_a_function_timeout_below_a_second_or_not_a_timespan_is_refused(tmp_path: Path, value: str) -> None:
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"functionTimeout": value}))
    with pytest.raises(ConfigError, match=r"host\.json functionTimeout"):
        load_host_options(path)


def test_the_lose_events_hook_drops_only_the_deliveries_of_matching_blob_names() -> None:
    hooked = lose_events(EventGridOptions(), "*/lost-*")
    assert hooked.delivery_fault is not None
    assert hooked.delivery_fault("Db/T/lost-1.csv") == DELIVERY_DROPPED
    assert hooked.delivery_fault("Db/T/kept-1.csv") is None
    assert lose_events(EventGridOptions(), "") == EventGridOptions()
