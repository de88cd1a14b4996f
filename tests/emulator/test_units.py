"""Pure pieces of the emulator, without servers: mappings, credentials in URLs, fault rules, request checks."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from kusto_emulator.config import EmulatorConfig
from kusto_emulator.errors import BadRequest, IngestionError, is_permanent
from kusto_emulator.faults import Faults
from kusto_emulator.ids import random_uuid
from kusto_emulator.ingest_request import BlobShape, _base_schema
from kusto_emulator.kql_statements import split_statements, tabular_queries
from kusto_emulator.mappings import ColumnMapping, canonical_mapping, parse_mapping, parse_path
from kusto_emulator.mgmt_syntax import entity, string_list, string_literal, string_value, with_properties
from kusto_emulator.rest_ingestion import request_validator, validate_request
from kusto_emulator.storage import split_credential


def test_both_mapping_spellings_are_read():
    current = parse_mapping('[{"column": "a", "datatype": "long", "Properties": {"Ordinal": "2"}}]', "csv")
    legacy = parse_mapping('[{"Name": "a", "DataType": "long", "Ordinal": 2}]', "csv")
    json_kind = parse_mapping(
        '[{"column": "a", "path": "$.x[\'y z\'][3]"}, {"column": "b", "Properties": {"ConstValue": "k"}}]', "json"
    )

    assert current == legacy == [ColumnMapping("a", ordinal=2)]
    assert json_kind == [ColumnMapping("a", path=("x", "y z", 3)), ColumnMapping("b", const_value="k")]


@pytest.mark.parametrize(
    ("text", "kind", "fragment"),
    [
        ("not json", "csv", "not valid JSON"),
        ("[]", "csv", "non-empty JSON array"),
        ('[{"Properties": {"Ordinal": 0}}]', "csv", "has no 'column'"),
        ('[{"column": "a", "Properties": {"Ordinal": "x"}}]', "csv", "is not an integer"),
        ('[{"column": "a", "Properties": {"Path": "a.b"}}]', "json", "must start with '$'"),
        ('[{"column": "a", "Properties": {"Ordinal": 0}}, {"column": "a", "Properties": {"Ordinal": 1}}]', "csv", "mapped twice"),
    ],
)
def test_bad_mappings_are_invalid_mapping(text, kind, fragment):
    with pytest.raises(IngestionError) as raised:
        parse_mapping(text, kind)

    assert raised.value.code == "BadRequest_InvalidMapping" and fragment in raised.value.details


def test_json_paths_parse_or_name_the_position():
    assert parse_path("$") == ()
    with pytest.raises(IngestionError, match="position 3"):
        parse_path("$.a b")


@pytest.mark.parametrize(
    ("url", "plain", "credential"),
    [
        ("http://h:1/acct/c/a.csv?sv=1&sig=x", "http://h:1/acct/c/a.csv", "?sv=1&sig=x"),
        (
            "https://a.blob.core.windows.net/c/a.csv;managed_identity=system",
            "https://a.blob.core.windows.net/c/a.csv",
            ";managed_identity=system",
        ),
        ("http://h/c/a.csv", "http://h/c/a.csv", ""),
    ],
)
def test_credentials_are_split_from_blob_urls(url, plain, credential):
    assert split_credential(url) == (plain, credential)


def test_permanence_follows_kusto_error_table():
    assert is_permanent("Download_SourceNotFound") and is_permanent("BadRequest_EmptyBlob")
    assert not is_permanent("Download_UnknownError") and not is_permanent("General_InternalServerError")


def test_fail_blob_rules_match_name_container_path_or_full_path(tmp_path: Path):
    faults = Faults(EmulatorConfig(data_dir=tmp_path, storage_connection_string=""))
    faults.update({"failBlobs": [{"pattern": "*bad*", "errorCode": "X"}, {"pattern": "staging/2024/*", "errorCode": "Y"}]})

    assert faults.forced_blob_error("http://h/acct/c/very-bad.csv") == "X"
    assert faults.forced_blob_error("http://h/acct/staging/2024/a.csv") == "Y"
    assert faults.forced_blob_error("http://h/acct/c/fine.csv") is None


def test_kusto_literals_and_bracketed_names():
    assert string_literal(r"'it\'s'") == "it's"
    assert string_literal('"a\\"b"') == 'a"b'
    assert string_literal("@'C:\\path'") == "C:\\path"
    assert string_literal("```multi\nline```") == "multi\nline"
    assert entity("['My Table']") == "My Table" and entity('["x"]') == "x" and entity("T1") == "T1"
    assert string_literal("h'https://a/b?sig=x'") == "https://a/b?sig=x"


def test_adjacent_literals_concatenate_as_kusto_reads_them():
    assert string_value("""'[' \n '{"a": 1},' "]" """) == '[{"a": 1},]'
    assert string_list("h'http://a/1?s=1' , 'http://a/2'") == ["http://a/1?s=1", "http://a/2"]


def test_mapping_json_may_end_an_array_or_object_with_a_comma():
    canonical = '[{"column": "a", "Properties": {"Ordinal": "0"}}]'
    assert canonical_mapping('[{"column": "a", "Properties": {"Ordinal": "0",},},\n]') == canonical
    in_a_string = '[{"column": "a,]", "Properties": {"Path": "$.x"}}]'
    assert canonical_mapping(in_a_string) == in_a_string
    with pytest.raises(IngestionError, match="not valid JSON"):
        canonical_mapping('[{"a": 1},,]')


def test_with_properties_read_strings_booleans_and_numbers():
    properties = with_properties("format='csv', ignoreFirstRecord=true, tags='[\"a,b\"]', note=\"x (y)\", n=3")
    assert properties == {"format": "csv", "ignoreFirstRecord": True, "tags": '["a,b"]', "note": "x (y)", "n": 3}
    with pytest.raises(BadRequest, match="is not 'name = value'"):
        with_properties("format")


def test_statements_split_at_semicolons_outside_literals_comments_and_brackets():
    text = "let f = (x:long) { T | where a == x; };\nT | where s == 'a;b' // c;d\n| count;\n\n;print x = \"e;f\""
    assert split_statements(text) == [
        "let f = (x:long) { T | where a == x; }",
        "T | where s == 'a;b' // c;d\n| count",
        'print x = "e;f"',
    ]
    assert tabular_queries("let a = 1; T; let b = 2; U") == ["let a = 1;\nT", "let a = 1;\nlet b = 2;\nU"]


def test_request_checks_name_the_json_path():
    validator = request_validator(2)
    with pytest.raises(BadRequest, match=r"\$\.blobs\[1\]\.sourceId"):
        validate_request(validator, {"blobs": [{"url": "u1"}, {"url": "u2", "sourceId": 3}], "properties": {"format": "csv"}}, 2)
    with pytest.raises(BadRequest, match="at most 2"):
        validate_request(validator, {"blobs": [{"url": "a"}, {"url": "b"}, {"url": "c"}], "properties": {"format": "csv"}}, 2)
    validate_request(validator, {"blobs": [{"url": "a", "rawSize": None}], "properties": {"format": "json", "tags": None}}, 2)


def validator_schema(max_blobs: int) -> dict:
    schema = copy.deepcopy(_base_schema())
    schema["properties"]["blobs"]["maxItems"] = max_blobs
    return schema


@pytest.mark.parametrize(
    "blob",
    [
        {"url": "u"},
        {"url": "u", "sourceId": None, "rawSize": None, "other": [1]},
        {"url": "u", "rawSize": 0},
        {"url": "u", "rawSize": 5.0},
        {"url": "u", "rawSize": -1},
        {"url": "u", "rawSize": True},
        {"url": "u", "rawSize": "5"},
        {"url": ""},
        {"url": 7},
        {"url": None},
        {"sourceId": "s"},
        {"url": "u", "sourceId": 3},
        ["u"],
        "u",
        None,
    ],
)
def test_fast_blob_check_never_accepts_what_the_schema_refuses(blob):
    validator = request_validator(20)
    body = {"blobs": [{"url": "first"}, blob], "properties": {"format": "csv"}}
    schema_error = best_match(Draft202012Validator(validator_schema(20)).iter_errors(body))

    error = validator.first_error(body)

    assert (error is None) == (schema_error is None)
    if error is not None:
        assert (error.json_path, error.message) == (schema_error.json_path, schema_error.message)


def test_fast_blob_check_refuses_a_schema_it_does_not_understand():
    with pytest.raises(ValueError, match="pattern"):
        BlobShape({"type": "object", "properties": {"url": {"type": "string", "pattern": "^https://"}}})


def test_random_uuids_are_version_4_rfc_4122():
    for _ in range(2000):
        text = random_uuid()
        value = uuid.UUID(text)
        assert (value.version, value.variant, str(value)) == (4, uuid.RFC_4122, text)
