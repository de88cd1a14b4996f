"""Data format and compression from blob names and explicit values."""

from __future__ import annotations

import json

import pytest

from shared.formats import (
    EXTENSION_FORMATS,
    KUSTO_FORMATS,
    FileType,
    UnknownFormatError,
    check_format,
    file_type,
    reports_raw_size,
)
from shared.schemas import PENDING_BLOB, SCHEMA_DIR


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Db/T/a.csv", FileType("csv", None)),
        ("Db/T/a.CSV", FileType("csv", None)),
        ("Db/T/a.tsv", FileType("tsv", None)),
        ("Db/T/a.tsve", FileType("tsve", None)),
        ("Db/T/a.psv", FileType("psv", None)),
        ("Db/T/a.scsv", FileType("scsv", None)),
        ("Db/T/a.sohsv", FileType("sohsv", None)),
        ("Db/T/a.txt", FileType("txt", None)),
        ("Db/T/a.raw", FileType("raw", None)),
        ("Db/T/a.json", FileType("multijson", None)),
        ("Db/T/a.jsonl", FileType("multijson", None)),
        ("Db/T/a.ndjson", FileType("multijson", None)),
        ("Db/T/a.multijson", FileType("multijson", None)),
        ("Db/T/a.singlejson", FileType("singlejson", None)),
        ("Db/T/a.avro", FileType("avro", None)),
        ("Db/T/a.snappy.avro", FileType("avro", None)),
        ("Db/T/a.apacheavro", FileType("apacheavro", None)),
        ("Db/T/a.parquet", FileType("parquet", None)),
        ("Db/T/a.orc", FileType("orc", None)),
        ("Db/T/u_ex240501.log", FileType("w3clogfile", None)),
        ("Db/T/a.csv.gz", FileType("csv", "gzip")),
        ("Db/T/a.json.GZ", FileType("multijson", "gzip")),
        ("Db/T/a.csv.zip", FileType("csv", "zip")),
        ("Db/T/a.zip", FileType(None, "zip")),
        ("Db/T/a.gz", FileType(None, "gzip")),
        ("Db/T/a.dat", FileType(None, None)),
        ("Db/T/noextension", FileType(None, None)),
        ("Db/T.csv/noextension", FileType(None, None)),
        ("Db/T/a.gz.csv", FileType("csv", None)),
    ],
)
def test_file_type_from_name(name: str, expected: FileType) -> None:
    assert file_type(name) == expected


def test_every_inferred_format_is_a_kusto_format() -> None:
    assert set(EXTENSION_FORMATS.values()) <= set(KUSTO_FORMATS)


def test_kusto_formats_match_the_pending_blob_schema() -> None:
    schema = json.loads((SCHEMA_DIR / PENDING_BLOB).read_text())
    assert set(schema["$defs"]["ingestionProperties"]["properties"]["format"]["enum"]) == set(KUSTO_FORMATS)


@pytest.mark.parametrize(("value", "expected"), [("csv", "csv"), ("MultiJson", "multijson"), (" Parquet ", "parquet")])
def test_check_format_normalises(value: str, expected: str) -> None:
    assert check_format(value) == expected


@pytest.mark.parametrize("value", ["xml", "", "csv.gz", "jsonl"])
def test_check_format_refuses_unknown_values(value: str) -> None:
    with pytest.raises(UnknownFormatError, match="is not a Kusto data format"):
        check_format(value)


def test_raw_size_only_for_uncompressed_text() -> None:
    assert reports_raw_size("csv", None)
    assert reports_raw_size("multijson", None)
    assert not reports_raw_size("csv", "gzip")
    assert not reports_raw_size("csv", "zip")
    assert not reports_raw_size("parquet", None)
    assert not reports_raw_size("avro", None)
