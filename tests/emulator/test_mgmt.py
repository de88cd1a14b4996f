"""Management commands: databases, tables, schemas, mappings, failures, and refusals of bad commands."""

from __future__ import annotations

import json

import pytest
import requests


def kusto_literal(text: str) -> str:
    """A single-quoted Kusto string literal (backslash escapes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


CSV = b"alpha,1,2024-01-01T00:00:00Z,true\nbeta,2,2024-01-02T00:00:00Z,false\n"


def test_create_show_and_drop_tables(kusto, unique_name):
    database = f"Db_{unique_name}"
    kusto.mgmt_rows(
        database, f".create table {unique_name} (a:string, b:long, c:datetime, d:dynamic, e:real, f:bool, g:guid, h:timespan)"
    )
    kusto.mgmt_rows(database, f".create-merge table {unique_name} (a:string, z:int)")
    kusto.mgmt_rows(database, ".create table ['Other Table'] (x:string)")

    tables = {row["TableName"] for row in kusto.mgmt_rows(database, ".show tables")}
    [schema_row] = kusto.mgmt_rows(database, f".show table {unique_name} schema as json")
    schema = json.loads(schema_row["Schema"])
    kusto.mgmt_rows(database, ".drop table ['Other Table']")
    after_drop = {row["TableName"] for row in kusto.mgmt_rows(database, ".show tables")}

    assert tables == {unique_name, "Other Table"}
    assert [(column["Name"], column["CslType"]) for column in schema["OrderedColumns"]] == [
        ("a", "string"),
        ("b", "long"),
        ("c", "datetime"),
        ("d", "dynamic"),
        ("e", "real"),
        ("f", "bool"),
        ("g", "guid"),
        ("h", "timespan"),
        ("z", "int"),
    ]
    assert after_drop == {unique_name}


def test_create_table_twice_with_same_schema_is_idempotent_and_different_schema_is_refused(kusto, unique_name):
    database = f"Db_{unique_name}"
    kusto.mgmt_rows(database, f".create table {unique_name} (a:string)")

    again = kusto.mgmt(database, f".create table {unique_name} (a:string)")
    different = kusto.mgmt(database, f".create table {unique_name} (a:string, b:long)")
    wrong_type = kusto.mgmt(database, f".create-merge table {unique_name} (a:long)")

    assert again.status_code == 200
    assert different.status_code == 400 and "create-merge" in different.json()["error"]["@message"]
    assert wrong_type.status_code == 400 and "is string, not long" in wrong_type.json()["error"]["@message"]


def test_create_database_and_show_databases(kusto, unique_name):
    name = f"Created_{unique_name}"

    kusto.mgmt_rows(None, f".create database {name}")
    duplicate = kusto.mgmt(None, f".create database {name}")
    kusto.mgmt_rows(None, f".create database {name} ifnotexists")

    assert name in {row["DatabaseName"] for row in kusto.mgmt_rows(None, ".show databases")}
    assert duplicate.status_code == 400 and duplicate.json()["error"]["code"] == "BadRequest_EntityAlreadyExists"


def test_csv_mapping_by_ordinal_with_constant(kusto, staging, db_table):
    database, table = db_table()
    mapping = [
        {"column": "name", "Properties": {"Ordinal": "1"}},
        {"column": "n", "Properties": {"Ordinal": "0"}},
        {"column": "ok", "Properties": {"ConstValue": "true"}},
    ]
    kusto.mgmt_rows(database, f".create table {table} ingestion csv mapping \"swap\" '{json.dumps(mapping)}'")
    url = staging.put("swapped.csv", b"7,seven\n8,eight\n")

    outcome = kusto.ingest(database, table, [url], format="csv", ingestionMappingReference="swap")

    assert outcome["status"]["succeeded"] == 1, outcome
    assert kusto.query(database, f"{table} | where n == 7 | project name, ok") == [["seven", True]]
    [shown] = kusto.mgmt_rows(database, f".show table {table} ingestion csv mappings")
    assert shown["Name"] == "swap" and json.loads(shown["Mapping"]) == mapping


def test_json_mapping_by_path_and_create_or_alter(kusto, staging, db_table):
    database, table = db_table()
    first = [{"column": "name", "Properties": {"Path": "$.who"}}]
    second = [
        {"column": "name", "Properties": {"Path": "$.meta.label"}},
        {"column": "n", "Properties": {"Path": "$['the count']"}},
    ]
    kusto.mgmt_rows(database, f".create table {table} ingestion json mapping 'm' '{json.dumps(first)}'")
    refused = kusto.mgmt(database, f".create table {table} ingestion json mapping 'm' {kusto_literal(json.dumps(second))}")
    kusto.mgmt_rows(database, f".create-or-alter table {table} ingestion json mapping 'm' {kusto_literal(json.dumps(second))}")
    url = staging.put("nested.json", json.dumps({"meta": {"label": "deep"}, "the count": 42}).encode())

    kusto.ingest(database, table, [url], format="json", ingestionMappingReference="m")

    assert refused.status_code == 400
    assert kusto.query(database, f"{table} | project name, n") == [["deep", 42]]


def test_inline_mapping_is_a_json_string(kusto, staging, db_table):
    database, table = db_table()
    mapping = json.dumps([{"column": "name", "Properties": {"Path": "$.x"}}, {"column": "n", "Properties": {"Path": "$.y"}}])

    kusto.ingest(
        database, table, [staging.put("inline.json", b'{"x": "inline", "y": 5}\n')], format="json", ingestionMapping=mapping
    )

    assert kusto.query(database, f"{table} | project name, n") == [["inline", 5]]


def test_json_without_mapping_matches_properties_to_columns_by_name(kusto, staging, db_table):
    database, table = db_table()
    url = staging.put("identity.json", b'{"n": 9, "name": "by-name", "extra": "ignored"}\n')

    kusto.ingest(database, table, [url], format="json")

    assert kusto.query(database, f"{table} | project name, n") == [["by-name", 9]]


def test_mapping_for_a_column_the_table_lacks_is_refused(kusto, db_table):
    database, table = db_table()
    mapping = json.dumps([{"column": "missing", "Properties": {"Ordinal": "0"}}])

    response = kusto.mgmt(database, f".create table {table} ingestion csv mapping 'bad' '{mapping}'")

    assert response.status_code == 400 and response.json()["error"]["code"] == "BadRequest_InconsistentMapping"


def test_ingest_if_not_exists_skips_a_blob_whose_ingest_by_tag_exists(kusto, staging, db_table):
    database, table = db_table()
    first = kusto.ingest(database, table, [staging.put("a.csv", CSV)], tags=["ingest-by:batch-1", "team:x"])
    second = kusto.ingest(database, table, [staging.put("b.csv", CSV)], tags=["ingest-by:batch-1"], ingestIfNotExists=["batch-1"])
    third = kusto.ingest(database, table, [staging.put("c.csv", CSV)], tags=["ingest-by:batch-2"], ingestIfNotExists=["batch-2"])

    assert first["status"]["succeeded"] == second["status"]["succeeded"] == third["status"]["succeeded"] == 1
    assert "skipped" in second["details"][0]["details"]
    assert kusto.count(database, table) == 4


def test_creation_time_is_accepted(kusto, staging, db_table):
    database, table = db_table()

    outcome = kusto.ingest(database, table, [staging.put("old.csv", CSV)], creationTime="2020-05-01T00:00:00Z")

    assert outcome["status"]["succeeded"] == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"db": "X", "csl": ".frobnicate the tables"}, "does not support the command"),
        ({"db": "X", "csl": "T | take 1"}, "not a management command"),
        ({"db": "X"}, "'csl' must be a non-empty string"),
        ({"db": 5, "csl": ".show tables"}, "'db' must be a string"),
        ({"db": "X", "csl": ".show tables", "properties": "{not json"}, "'properties' is not valid JSON"),
        ({"db": "X", "csl": ".create table T (a:str1ng)"}, "unknown column type"),
    ],
)
def test_bad_commands_get_a_clear_400(kusto, body, fragment):
    response = requests.post(f"{kusto.url}/v1/rest/mgmt", json=body, timeout=10)

    assert response.status_code == 400
    assert fragment in response.json()["error"]["@message"]
    assert kusto.healthy()


def test_show_ingestion_failures_lists_failed_blobs(kusto, staging, db_table):
    database, table = db_table()
    kusto.ingest(database, table, [staging.put("empty.csv", b"")])

    rows = [row for row in kusto.mgmt_rows(database, ".show ingestion failures") if row["Table"] == table]

    assert [(row["ErrorCode"], row["FailureKind"], row["ShouldRetry"]) for row in rows] == [
        ("BadRequest_EmptyBlob", "Permanent", False)
    ]


def test_ingest_if_not_exists_admits_one_of_two_concurrent_blobs(kusto, staging, db_table):
    database, table = db_table()
    urls = [staging.put("twin-1.csv", CSV), staging.put("twin-2.csv", CSV)]

    outcome = kusto.ingest(database, table, urls, tags=["ingest-by:twins"], ingestIfNotExists=["twins"])

    skipped = [blob for blob in outcome["details"] if blob["details"] and "skipped" in blob["details"]]
    assert outcome["status"]["succeeded"] == 2 and len(skipped) == 1
    assert kusto.count(database, table) == 2
