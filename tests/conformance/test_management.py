"""Management commands through the official Python client: version, mappings, streaming policy, ingestion failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

# Kusto's documented columns of `.show ingestion failures`, in its order; the emulator adds IngestionSourceId last.
FAILURE_COLUMNS = [
    "OperationId",
    "Database",
    "Table",
    "FailedOn",
    "IngestionSourcePath",
    "Details",
    "FailureKind",
    "RootActivityId",
    "OperationKind",
    "OriginatesFromUpdatePolicy",
    "ErrorCode",
    "Principal",
    "User",
    "IngestionProperties",
    "NumberOfSources",
    "ShouldRetry",
    "IngestionSourceId",
]


@pytest.fixture(scope="module")
def seen(run_scenario: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return run_scenario("management")


def test_show_version_has_kustos_columns(seen: dict[str, Any]) -> None:
    version = seen["version"]
    assert version["columns"] == ["BuildVersion", "BuildTime", "ServiceType", "ProductVersion", "ServiceOffering"]
    assert version["rows"][0]["ServiceType"] == "DataManagement"


def test_adjacent_literals_concatenate_and_a_trailing_comma_is_allowed_in_a_mapping(seen: dict[str, Any]) -> None:
    assert seen["mappings"]["json"] == [
        ["Split", [{"column": "id", "Properties": {"Path": "$.id"}}, {"column": "name", "Properties": {"Path": "$['the name']"}}]]
    ]
    assert seen["mappings"]["csv"] == [["Verbatim", [{"column": "id", "Properties": {"Ordinal": "0"}}]]]
    assert seen["mappings"]["invalid"]["code"] == "BadRequest_InvalidMapping"


def test_streaming_policy_commands_on_a_table(seen: dict[str, Any]) -> None:
    policies = seen["policies"]
    assert policies["initial"]["columns"] == ["PolicyName", "EntityName", "Policy", "ChildEntities", "EntityType"]
    [initial] = policies["initial"]["rows"]
    assert (initial["EntityName"], initial["Policy"], initial["EntityType"]) == (f"[{seen['database']}].[Mapped]", None, "Table")
    assert json.loads(policies["altered"]) == {"IsEnabled": True, "HintAllocatedRate": 2.1}
    assert json.loads(policies["merged"]) == {"IsEnabled": False, "HintAllocatedRate": 2.1}
    assert policies["deleted"] is None
    assert policies["invalid"]["status"] == 400  # IsEnabled is mandatory


def test_streaming_policy_commands_on_a_database(seen: dict[str, Any]) -> None:
    shown = seen["policies"]["database"]
    assert (shown["EntityName"], shown["EntityType"]) == (f"[{seen['database']}]", "Database")
    assert json.loads(shown["Policy"])["IsEnabled"] is True
    assert json.loads(shown["ChildEntities"]) == ["Mapped"]


def test_clear_schema_cache_answers_per_node(seen: dict[str, Any]) -> None:
    cleared = seen["policies"]["clearCache"]
    assert cleared["columns"] == ["NodeId", "Status"]
    assert [row["Status"] for row in cleared["rows"]] == ["Succeeded"]


def test_a_failed_ingest_command_is_refused_and_listed_with_kustos_columns(seen: dict[str, Any]) -> None:
    failures = seen["failures"]
    assert (failures["refusal"]["code"], failures["refusal"]["permanent"]) == ("Download_SourceNotFound", True)
    assert failures["columns"] == FAILURE_COLUMNS
    [row] = failures["rows"]
    assert (row["ErrorCode"], row["FailureKind"], row["ShouldRetry"], row["OperationKind"]) == (
        "Download_SourceNotFound",
        "Permanent",
        False,
        "DataIngestPull",
    )
    assert row["IngestionSourcePath"].endswith("/never-written.csv") and "sig=" not in json.dumps(row)


def test_an_unsupported_command_is_a_syntax_error(seen: dict[str, Any]) -> None:
    assert seen["unsupported"]["code"] == "BadRequest_SyntaxError"
