"""`/v1/rest/query` and `/v2/rest/query` of a running emulator, over a table written into its DuckDB file first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devhost.processes import Azurite, Emulator, start_emulator
from kusto_emulator.catalog import Catalog

DATABASE = "querydb"


@pytest.fixture(scope="module")
def query_emulator(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """An emulator whose database already holds `Events` (every Kusto type) when it starts."""
    data_dir = tmp_path_factory.mktemp("query-emulator")
    catalog = Catalog(data_dir / "kusto.duckdb")
    catalog.ensure_database(DATABASE)
    catalog.create_table(
        DATABASE,
        "Events",
        [("id", "long"), ("host", "string"), ("at", "datetime"), ("latency", "real"), ("ok", "bool"), ("props", "dynamic"),
         ("code", "int"), ("trace", "guid"), ("cost", "decimal"), ("took", "timespan")],
    )  # fmt: skip
    with catalog.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {catalog.table_ref(DATABASE, 'Events')} VALUES "  # noqa: S608 - fixed test data
            "(1, 'web1', '2024-03-01 10:00:00', 12.5, true, '{\"a\": 1}', 200, '00000000-0000-0000-0000-0000000000aa', 0.5, "
            "INTERVAL 2 SECOND), "
            "(2, 'web2', '2024-03-01 11:00:00', 20.0, false, '[1, 2]', 500, NULL, NULL, NULL), "
            "(3, 'web1', '2024-03-02 09:30:00', 7.25, true, NULL, 200, NULL, NULL, NULL)"
        )
    catalog.close()
    service = start_emulator(azurite.connection_string, data_dir, log_path=data_dir / "emulator.log")
    yield service
    service.stop()


def _post(emulator: Emulator, version: str, csl: str, database: str = DATABASE, **extra: Any) -> requests.Response:
    body = {"db": database, "csl": csl, **extra}
    return requests.post(
        f"{emulator.url}/{version}/rest/query", json=body, headers={"x-ms-client-request-id": "test;1"}, timeout=30
    )


def _v2_table(frames: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(frame for frame in frames if frame["FrameType"] == "DataTable" and frame["TableKind"] == kind)


def test_v2_answer_has_the_frames_the_clients_read(query_emulator: Emulator) -> None:
    response = _post(query_emulator, "v2", "Events | count")
    assert response.status_code == 200, response.text
    frames = response.json()
    assert frames[0]["FrameType"] == "DataSetHeader"
    assert frames[-1] == {"FrameType": "DataSetCompletion", "HasErrors": False, "Cancelled": False}
    primary = _v2_table(frames, "PrimaryResult")
    assert primary["Columns"] == [{"ColumnName": "Count", "ColumnType": "long"}]
    assert primary["Rows"] == [[3]]
    completion = _v2_table(frames, "QueryCompletionInformation")
    levels = [row[[column["ColumnName"] for column in completion["Columns"]].index("Level")] for row in completion["Rows"]]
    assert levels and min(levels) >= 4  # information only: the SDKs count Level < 4 as errors
    assert completion["Rows"][0][1] == "test;1"


def test_v2_take_returns_every_type_as_kusto_writes_it(query_emulator: Emulator) -> None:
    frames = _post(query_emulator, "v2", "Events | where id == 1 | take 5").json()
    primary = _v2_table(frames, "PrimaryResult")
    assert [column["ColumnType"] for column in primary["Columns"]] == [
        "long", "string", "datetime", "real", "bool", "dynamic", "int", "guid", "decimal", "timespan"
    ]  # fmt: skip
    assert primary["Rows"] == [
        [1, "web1", "2024-03-01T10:00:00.000000Z", 12.5, True, {"a": 1}, 200, "00000000-0000-0000-0000-0000000000aa",
         "0.500000000000000000", "00:00:02"]
    ]  # fmt: skip


def test_v1_answer_puts_the_primary_first_and_names_every_table_in_a_table_of_contents(query_emulator: Emulator) -> None:
    response = _post(query_emulator, "v1", "Events | where ok | summarize n = count() by host | order by host asc")
    assert response.status_code == 200, response.text
    primary, properties, status, contents = response.json()["Tables"]
    assert primary["Columns"] == [
        {"ColumnName": "host", "DataType": "String", "ColumnType": "string"},
        {"ColumnName": "n", "DataType": "Int64", "ColumnType": "long"},
    ]
    assert primary["Rows"] == [["web1", 2]]
    assert json.loads(properties["Rows"][0][0])["IsQuerySorted"] is True
    assert status["Rows"][0][1] == 4 and status["Rows"][0][-1] == "test;1"  # Severity 4: information, no error
    assert [(row[0], row[1], row[2]) for row in contents["Rows"]] == [
        (0, "QueryResult", "PrimaryResult"),
        (1, "QueryProperties", "@ExtendedProperties"),
        (2, "QueryStatus", "QueryStatus"),
    ]


def test_statements_separated_by_semicolons_answer_one_table_each_in_order(query_emulator: Emulator) -> None:
    query = (
        "let wanted = 'web1';\n"
        "Events | where host == wanted | count; // two results\n"
        "Events | where host == wanted | project id | order by id asc"
    )
    frames = _post(query_emulator, "v2", query).json()
    assert [(frame["FrameType"], frame.get("TableKind"), frame.get("TableId")) for frame in frames] == [
        ("DataSetHeader", None, None),
        ("DataTable", "QueryProperties", 0),
        ("DataTable", "PrimaryResult", 1),
        ("DataTable", "PrimaryResult", 2),
        ("DataTable", "QueryCompletionInformation", 3),
        ("DataSetCompletion", None, None),
    ]
    assert frames[2]["Rows"] == [[2]] and frames[3]["Rows"] == [[1], [3]]
    visualizations = {row[0]: json.loads(row[2])["IsQuerySorted"] for row in frames[1]["Rows"]}
    assert visualizations == {1: False, 2: True}
    tables = _post(query_emulator, "v1", query).json()["Tables"]
    assert [table["Rows"] for table in tables[:2]] == [[[2]], [[1], [3]]]
    assert [row[1] for row in tables[-1]["Rows"]] == ["QueryResult", "QueryResult", "QueryProperties", "QueryStatus"]


def test_a_semicolon_inside_a_string_does_not_split_the_query(query_emulator: Emulator) -> None:
    frames = _post(query_emulator, "v2", "print a = 'x;y', b = \"p;q\"").json()
    assert _v2_table(frames, "PrimaryResult")["Rows"] == [["x;y", "p;q"]]


def test_a_query_of_only_let_statements_is_a_syntax_error(query_emulator: Emulator) -> None:
    response = _post(query_emulator, "v2", "let a = 1; let b = 2;")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest_SyntaxError"


def test_project_order_and_properties_parameters(query_emulator: Emulator) -> None:
    properties = '{"Options": {"servertimeout": "0:04:00"}, "Parameters": {"minimum": "10"}}'
    response = _post(
        query_emulator,
        "v2",
        "declare query_parameters(minimum:real); Events | where latency > minimum | order by latency desc | project id, latency",
        properties=properties,
    )
    assert response.status_code == 200, response.text
    assert _v2_table(response.json(), "PrimaryResult")["Rows"] == [[2, 20.0], [1, 12.5]]


@pytest.mark.parametrize(
    ("csl", "database", "code", "fragment"),
    [
        ("Events | make-series count() on at step 1h", DATABASE, "BadRequest_NotSupported", "MakeSeriesOperator"),
        ("Events | where", DATABASE, "BadRequest_SyntaxError", "Syntax error"),
        ("Nowhere | count", DATABASE, "General_BadRequest", "Nowhere"),
        ("Events | count", "nosuchdb", "BadRequest_DatabaseNotExist", "nosuchdb"),
        (".show tables", DATABASE, "BadRequest_NotSupported", "/v1/rest/mgmt"),
    ],
)
def test_refusals_are_kusto_400s_naming_the_problem(
    query_emulator: Emulator, csl: str, database: str, code: str, fragment: str
) -> None:
    response = _post(query_emulator, "v2", csl, database)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert fragment in error["@message"]
    assert error["@permanent"] is True


def test_query_body_must_name_the_database(query_emulator: Emulator) -> None:
    response = requests.post(f"{query_emulator.url}/v2/rest/query", json={"csl": "Events | count"}, timeout=30)
    assert response.status_code == 400
    assert "'db' is required" in response.json()["error"]["@message"]
