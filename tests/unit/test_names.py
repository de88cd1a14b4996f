"""Kusto entity names, blob names and URL path segments."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from shared.names import (
    InvalidNameError,
    blob_name_problem,
    check_entity_name,
    entity_name_problem,
    has_control_characters,
    quote_path_segment,
)


@pytest.mark.parametrize("name", ["Logs", "my_table", "Sales.2024", "web-events", "Table With Spaces", "a", "x" * 1024])
def test_valid_entity_names(name: str) -> None:
    assert entity_name_problem(name, "table") is None
    assert check_entity_name(name, "table") == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty or only spaces"),
        ("My Table!", "'My Table!' is not a valid Kusto table name"),
        ("a/b", "not a valid Kusto table name"),
        ("a?b", "not a valid"),
        ("a#b", "not a valid"),
        ("a%2fb", "not a valid"),
        ("Tablé", "not a valid"),
        ("tab\tle", "not a valid"),
        (" Logs", "no leading or trailing space"),
        ("Logs ", "no leading or trailing space"),
        ("x" * 1025, "longer than 1024"),
    ],
)
def test_invalid_entity_names_say_why(name: str, fragment: str) -> None:
    problem = entity_name_problem(name, "table")
    assert problem is not None and fragment in problem
    with pytest.raises(InvalidNameError, match="Kusto table name"):
        check_entity_name(name, "table")


def test_entity_name_problem_names_the_kind() -> None:
    assert "Kusto database name" in (entity_name_problem("bad!", "database") or "")


@pytest.mark.parametrize(
    "name",
    ["Db/T/file.csv", "Db/T/2024/05/01/part-0001.csv.gz", "données/Tåble/fïle.csv", "a b/c d/e f.json", "日本/表/データ.csv"],
)
def test_usable_blob_names(name: str) -> None:
    assert blob_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("Db/T/../x.csv", "'..' path segment"),
        ("../x.csv", "'..' path segment"),
        ("Db/./x.csv", "'.' path segment"),
        ("Db/T/a%2fb.csv", "percent-escape '%2f'"),
        ("Db/T/a%2Fb.csv", "percent-escape '%2F'"),
        ("Db/T/a%2e%2e.csv", "percent-escape"),
        ("Db/T/a?sig=x.csv", "'?'"),
        ("Db/T/a#frag.csv", "'#'"),
        ("Db/T/a\\b.csv", "'\\\\'"),
        ("Db/T/a\nb.csv", "control character"),
        ("Db/T/a\x00b.csv", "control character"),
        ("Db/T/a\x7fb.csv", "control character"),
        ("Db/T/a\u2028b.csv", "control character"),
        ("/Db/T/x.csv", "empty path segment"),
        ("Db//T/x.csv", "empty path segment"),
        ("Db/T/", "empty path segment"),
        ("x" * 1025, "longer than 1024"),
    ],
)
def test_refused_blob_names_say_why(name: str, fragment: str) -> None:
    problem = blob_name_problem(name)
    assert problem is not None and fragment in problem


def test_percent_sign_without_hex_is_a_plain_character() -> None:
    assert blob_name_problem("Db/T/50% done.csv") is None


def test_control_characters() -> None:
    assert has_control_characters("a\rb")
    assert not has_control_characters("naïve café 日本")


@pytest.mark.parametrize(
    ("segment", "encoded"),
    [
        ("Logs", "Logs"),
        ("My Table", "My%20Table"),
        ("a/b", "a%2Fb"),
        ("a?b#c", "a%3Fb%23c"),
        ("%2e%2e", "%252e%252e"),
        ("Tåble", "T%C3%A5ble"),
        ("x;y=z&w", "x%3By%3Dz%26w"),
        ("@evil.example", "%40evil.example"),
    ],
)
def test_quote_path_segment_leaves_nothing_that_changes_the_url(segment: str, encoded: str) -> None:
    quoted = quote_path_segment(segment)
    assert quoted == encoded
    url = f"https://ingest-x.kusto.windows.net/v1/rest/ingestion/queued/{quoted}/T"
    parts = urlsplit(url)
    assert parts.hostname == "ingest-x.kusto.windows.net"
    assert parts.path.split("/") == ["", "v1", "rest", "ingestion", "queued", quoted, "T"]
    assert parts.query == "" and parts.fragment == ""


@pytest.mark.parametrize("segment", ["", ".", ".."])
def test_quote_path_segment_refuses_segments_that_vanish(segment: str) -> None:
    with pytest.raises(InvalidNameError, match="cannot be used as a URL path segment"):
        quote_path_segment(segment)
