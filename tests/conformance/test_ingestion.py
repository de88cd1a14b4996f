"""Queued, streaming and managed-streaming ingestion of csv and json, with and without mappings, and `.ingest`,
through the official Python clients (sdk_ingestion.py says which client fills which table)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

POLICY_OFF = "BadRequest_StreamingIngestionPolicyNotEnabled"
ZERO_EXTENT = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def seen(run_scenario: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return run_scenario("ingestion")


def test_queued_ingestion_of_csv_and_json_with_and_without_mappings(seen: dict[str, Any]) -> None:
    # 1-2 csv by position, 3 csv with an inline ordinal mapping, 4 json by column name, 5 json with a named mapping
    assert seen["queued"]["rows"] == [[1, "alpha"], [2, "beta"], [3, "gamma"], [4, "delta"], [5, "epsilon"]]


def test_streaming_ingestion_commits_before_it_answers(seen: dict[str, Any]) -> None:
    streamed = seen["streamed"]
    # plain and gzip bodies, a csv and a json named mapping, and a blob named by URL (sourceKind=uri)
    assert streamed["rows"] == [
        [1, "alpha"],
        [2, "beta"],
        [3, "gamma"],
        [5, "epsilon"],
        [10, "kappa"],
        [11, "lambda"],
        [20, "upsilon"],
    ]
    assert streamed["countRightAfter"] == 7


def test_streaming_without_an_enabled_policy_is_refused_as_kusto_refuses_it(seen: dict[str, Any]) -> None:
    refusal = seen["streamed"]["policyOff"]
    assert (refusal["code"], refusal["status"], refusal["permanent"]) == (POLICY_OFF, 400, False)
    assert refusal["type"] == "Kusto.DataNode.Exceptions.StreamingIngestionPolicyNotEnabledException"


def test_streaming_with_an_unknown_mapping_is_a_permanent_refusal(seen: dict[str, Any]) -> None:
    refusal = seen["streamed"]["missingMapping"]
    assert (refusal["code"], refusal["permanent"]) == ("BadRequest_MappingReferenceWasNotFound", True)


def test_managed_streaming_streams_when_it_can_and_falls_back_to_queued_when_the_policy_is_off(seen: dict[str, Any]) -> None:
    managed = seen["managed"]
    assert (managed["policyOnStatus"], managed["policyOnCountRightAfter"]) == ("SUCCESS", 2)
    assert managed["policyOffStatus"] == "QUEUED"
    assert managed["fallbackRows"] == [[7, "eta"]]


def test_a_database_policy_enables_its_tables_unless_the_table_disables_itself(seen: dict[str, Any]) -> None:
    policy = seen["databasePolicy"]
    assert policy["countViaDatabasePolicy"] == 1
    assert policy["tableDisabled"]["code"] == POLICY_OFF


def test_ingest_inline_takes_csv_json_and_bracketed_records(seen: dict[str, Any]) -> None:
    inline = seen["inline"]
    assert inline["rows"] == [[1, "a,b"], [2, "c"], [3, "d"], [4, "e"], [5, "f]"], [6, "g"]]
    [extent] = inline["csv"]
    assert list(extent) == ["ExtentId", "ItemLoaded", "Duration", "HasErrors", "OperationId"]
    assert extent["ExtentId"] != ZERO_EXTENT and extent["HasErrors"] is False


def test_ingest_inline_skipped_by_ingest_if_not_exists_reports_the_zero_extent(seen: dict[str, Any]) -> None:
    [skipped] = seen["inline"]["skipped"]
    assert skipped["ExtentId"] == ZERO_EXTENT
    assert [7, "h"] not in seen["inline"]["rows"]


def test_ingest_into_pulls_a_blob_with_its_properties(seen: dict[str, Any]) -> None:
    pulled = seen["pulled"]
    assert pulled["rows"] == [[30, "omega"], [31, "psi"]]  # the header record skipped by ignoreFirstRecord
    [extent] = pulled["extents"]
    assert extent["ItemLoaded"].endswith("/pulled.csv") and "sig=" not in extent["ItemLoaded"]
