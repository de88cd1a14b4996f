"""Multi-statement queries and the v2 answer's frames, through the official Python client (whole and streamed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

COUNT_RESULT = [[2]]
ROWS_RESULT = [[2, "bob"], [3, "cy"]]


@pytest.fixture(scope="module")
def seen(run_scenario: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return run_scenario("queries")


def test_each_statement_after_a_let_answers_with_its_own_primary_result(seen: dict[str, Any]) -> None:
    assert seen["whole"]["primaries"] == [COUNT_RESULT, ROWS_RESULT]
    assert seen["whole"]["errors"] == 0


def test_the_v2_answer_has_query_properties_and_completion_tables(seen: dict[str, Any]) -> None:
    assert seen["whole"]["kinds"] == ["QueryProperties", "PrimaryResult", "PrimaryResult", "QueryCompletionInformation"]
    visualizations = seen["whole"]["visualizations"]
    assert [(table_id, key) for table_id, key, _ in visualizations] == [(1, "Visualization"), (2, "Visualization")]
    assert [json.loads(value)["IsQuerySorted"] for _, _, value in visualizations] == [False, True]


def test_frames_come_in_the_order_the_streaming_reader_expects(seen: dict[str, Any]) -> None:
    assert seen["frames"] == [
        ["DataSetHeader", None, None, None],
        ["DataTable", "QueryProperties", "@ExtendedProperties", 0],
        ["DataTable", "PrimaryResult", "PrimaryResult", 1],
        ["DataTable", "PrimaryResult", "PrimaryResult", 2],
        ["DataTable", "QueryCompletionInformation", "QueryCompletionInformation", 3],
        ["DataSetCompletion", None, None, None],
    ]


def test_a_streamed_read_returns_every_primary_result_and_finishes_without_errors(seen: dict[str, Any]) -> None:
    streaming = seen["streaming"]
    assert streaming["tables"] == [COUNT_RESULT, ROWS_RESULT]
    assert (streaming["finished"], streaming["errors"]) == (True, 0)


def test_a_query_without_a_tabular_statement_or_with_a_command_is_refused(seen: dict[str, Any]) -> None:
    assert seen["onlyLet"]["code"] == "BadRequest_SyntaxError"
    assert seen["management"]["code"] == "BadRequest_NotSupported"
