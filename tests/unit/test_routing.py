"""Routing: the path convention, rules, blob metadata overrides, the allowlist and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared import error_codes
from shared.routing import Router, RoutingError, RoutingRulesError, compile_path_pattern, compile_rules, target_allowed
from shared.services import build_services
from shared.settings import SettingsError, load_settings


def router(*rules: dict[str, Any], allowed: tuple[str, ...] = ("*",)) -> Router:
    return Router(rules=compile_rules(list(rules)), allowed_targets=allowed)


def refused(router_: Router, name: str, metadata: dict[str, str] | None = None) -> RoutingError:
    with pytest.raises(RoutingError) as caught:
        router_.route(name, metadata or {})
    return caught.value


# --- the convention -------------------------------------------------------------------------------------


def test_convention_database_table_file() -> None:
    route = router().route("Telemetry/Events/file.csv", {})
    assert (route.database, route.table, route.source) == ("Telemetry", "Events", "convention")
    assert route.properties == {"format": "csv"}
    assert route.compression is None and route.raw_size is None


def test_convention_with_folders_below_the_table() -> None:
    route = router().route("Telemetry/Events/2024/05/01/part-1.json.gz", {})
    assert (route.database, route.table) == ("Telemetry", "Events")
    assert route.properties == {"format": "multijson"}
    assert route.compression == "gzip"


def test_no_rule_and_no_convention_is_no_route() -> None:
    error = refused(router(), "Telemetry/file.csv")
    assert error.code == error_codes.ROUTING_NO_ROUTE
    assert "'Telemetry/file.csv'" in error.reason and "kustoDatabase" in error.reason


def test_convention_with_an_invalid_table_name() -> None:
    error = refused(router(), "Telemetry/Bad!Table/file.csv")
    assert error.code == error_codes.ROUTING_INVALID_NAME
    assert "'Bad!Table' is not a valid Kusto table name" in error.reason and "convention" in error.reason


# --- rules ----------------------------------------------------------------------------------------------


def test_rule_with_every_feature() -> None:
    rule = {
        "name": "web logs",
        "path": "weblogs/{site}/{yyyy}/{MM}/{dd}/{HH}/*.log.gz",
        "database": "Web",
        "table": "Requests_{site}",
        "format": "w3clogfile",
        "ingestionMappingReference": "map_{site}",
        "ignoreFirstRecord": True,
        "tags": ["site:{site}", "day:{yyyy}-{MM}-{dd}"],
        "skipBatching": True,
        "deleteAfterDownload": False,
    }
    route = router(rule).route("weblogs/shop/2024/05/01/13/u_ex.log.gz", {})
    assert (route.database, route.table) == ("Web", "Requests_shop")
    assert route.source == "rule 0 (web logs)"
    assert route.compression == "gzip"
    assert route.properties == {
        "format": "w3clogfile",
        "ingestionMappingReference": "map_shop",
        "ignoreFirstRecord": True,
        "tags": ["site:shop", "day:2024-05-01"],
        "creationTime": "2024-05-01T13:00:00Z",
        "skipBatching": True,
        "deleteAfterDownload": False,
    }


def test_rule_captures_database_and_table() -> None:
    route = router({"path": "in/{database}/{table}.csv"}).route("in/Sales/Orders.csv", {})
    assert (route.database, route.table, route.properties) == ("Sales", "Orders", {"format": "csv"})


def test_capture_inside_a_segment() -> None:
    route = router({"path": "exports/{table}_{yyyy}{MM}{dd}.csv", "database": "Exports"}).route(
        "exports/orders_eu_20240131.csv", {}
    )
    assert route.table == "orders_eu"
    assert route.properties["creationTime"] == "2024-01-31T00:00:00Z"


def test_creation_time_can_be_turned_off() -> None:
    rule = {"path": "d/{yyyy}/{MM}/*.csv", "database": "D", "table": "T", "creationTimeFromPath": False}
    assert "creationTime" not in router(rule).route("d/2024/05/x.csv", {}).properties


def test_impossible_date_in_the_path_is_reported() -> None:
    error = refused(router({"path": "d/{yyyy}/{MM}/{dd}/*.csv", "database": "D", "table": "T"}), "d/2024/13/40/x.csv")
    assert error.code == error_codes.ROUTING_INVALID_CREATION_TIME
    assert "rule 0" in error.reason and "month must be in 1..12" in error.reason


def test_first_matching_rule_wins() -> None:
    r = router(
        {"name": "special", "path": "Telemetry/Events/special-*.csv", "database": "Special", "table": "Events"},
        {"name": "all", "path": "Telemetry/**", "database": "All", "table": "Everything"},
    )
    assert r.route("Telemetry/Events/special-1.csv", {}).database == "Special"
    assert r.route("Telemetry/Events/other.csv", {}).database == "All"
    assert r.route("Telemetry/deep/er/x.csv", {}).source == "rule 1 (all)"


def test_unmatched_blob_falls_back_to_the_convention() -> None:
    r = router({"path": "special/*.csv", "database": "S", "table": "T"})
    route = r.route("Db/Table/x.csv", {})
    assert (route.database, route.table, route.source) == ("Db", "Table", "convention")


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("a/*.csv", "a/x.csv", True),
        ("a/*.csv", "a/b/x.csv", False),
        ("a/**/x.csv", "a/x.csv", True),
        ("a/**/x.csv", "a/b/c/x.csv", True),
        ("**/x.csv", "x.csv", True),
        ("**/x.csv", "p/q/x.csv", True),
        ("a/**", "a/b/c.csv", True),
        ("a/?.csv", "a/1.csv", True),
        ("a/?.csv", "a/12.csv", False),
        ("a/{table}.csv", "a/b/c.csv", False),
        ("data (1)/[x].csv", "data (1)/[x].csv", True),
        ("a+b/*.csv", "aab/x.csv", False),
        ("logs/{yyyy}/*.csv", "logs/24/x.csv", False),
        ("A/*.csv", "a/x.csv", False),
    ],
)
def test_pattern_syntax(pattern: str, name: str, matches: bool) -> None:
    regex, _ = compile_path_pattern(pattern)
    assert (regex.fullmatch(name) is not None) is matches


# --- metadata overrides ------------------------------------------------------------------------------------


def test_metadata_overrides_everything_a_rule_says() -> None:
    r = router(
        {
            "path": "in/**",
            "database": "RuleDb",
            "table": "RuleTable",
            "format": "csv",
            "ingestionMappingReference": "rule_map",
            "ignoreFirstRecord": False,
            "tags": ["rule"],
        }
    )
    metadata = {
        "kustoDatabase": "MetaDb",
        "kustoTable": "MetaTable",
        "kustoDataFormat": "PSV",
        "kustoIngestionMappingReference": "meta_map",
        "kustoIgnoreFirstRecord": "true",
        "kustoExtentTags": '["a", "ingest-by:b"]',
        "kustoCreationTime": "2023-02-03T04:05:06+02:00",
        "rawSizeBytes": "12345",
    }
    route = r.route("in/x/y.csv", metadata)
    assert (route.database, route.table, route.source) == ("MetaDb", "MetaTable", "metadata")
    assert route.raw_size == 12345
    assert route.properties == {
        "format": "psv",
        "ingestionMappingReference": "meta_map",
        "ignoreFirstRecord": True,
        "tags": ["a", "ingest-by:b"],
        "creationTime": "2023-02-03T02:05:06Z",
    }


def test_metadata_routes_a_blob_nothing_else_routes() -> None:
    route = router().route("loose.csv", {"kustoDatabase": "Db", "kustoTable": "T"})
    assert (route.database, route.table) == ("Db", "T")


def test_metadata_table_alone_keeps_the_conventions_database() -> None:
    route = router().route("Db/Folder/x.csv", {"kustoTable": "Other"})
    assert (route.database, route.table) == ("Db", "Other")


def test_metadata_table_alone_without_a_database_is_no_route() -> None:
    error = refused(router(), "loose.csv", {"kustoTable": "T"})
    assert error.code == error_codes.ROUTING_NO_ROUTE and "no database" in error.reason


def test_metadata_keys_are_case_insensitive_and_alternatives_work() -> None:
    route = router().route(
        "loose.zip",
        {
            "KUSTODATABASE": "Db",
            "kustotable": "T",
            "KustoDataFormat": "csv",
            "kustoCreationTimeUtc": "2024-01-01",
            "kustoUncompressedSizeBytes": "9",
        },
    )
    assert (route.database, route.table, route.compression, route.raw_size) == ("Db", "T", "zip", 9)
    assert route.properties == {"format": "csv", "creationTime": "2024-01-01T00:00:00Z"}


def test_comma_separated_extent_tags() -> None:
    route = router().route("Db/T/x.csv", {"kustoExtentTags": "a, b ,drop-by:c"})
    assert route.properties["tags"] == ["a", "b", "drop-by:c"]


def test_unrelated_metadata_is_ignored() -> None:
    assert router().route("Db/T/x.csv", {"owner": "team-a", "hdi_isfolder": "false"}).properties == {"format": "csv"}


@pytest.mark.parametrize(
    ("metadata", "code", "fragment"),
    [
        (
            {"kustoTable": "My Table!"},
            error_codes.ROUTING_INVALID_NAME,
            "metadata kustoTable: 'My Table!' is not a valid Kusto table name",
        ),
        ({"kustoDatabase": " "}, error_codes.ROUTING_INVALID_NAME, "metadata kustoDatabase"),
        ({"kustoDataFormat": "xml"}, error_codes.ROUTING_INVALID_METADATA, "'xml' is not a Kusto data format"),
        ({"kustoIgnoreFirstRecord": "yes"}, error_codes.ROUTING_INVALID_METADATA, "must be 'true' or 'false'"),
        (
            {"kustoCreationTime": "yesterday"},
            error_codes.ROUTING_INVALID_METADATA,
            "kustoCreationTime='yesterday' is not an ISO 8601 time",
        ),
        ({"kustoCreationTime": "2024-02-30T00:00:00Z"}, error_codes.ROUTING_INVALID_METADATA, "not an ISO 8601 time"),
        ({"rawSizeBytes": "-1"}, error_codes.ROUTING_INVALID_METADATA, "must be a whole number of bytes"),
        ({"rawSizeBytes": "12kb"}, error_codes.ROUTING_INVALID_METADATA, "must be a whole number of bytes"),
        ({"kustoExtentTags": "[not json"}, error_codes.ROUTING_INVALID_METADATA, "not a JSON array"),
        ({"kustoExtentTags": '["a", 1]'}, error_codes.ROUTING_INVALID_METADATA, "JSON array of strings"),
        ({"kustoExtentTags": "a,,b"}, error_codes.ROUTING_INVALID_METADATA, "printable characters"),
        ({"kustoExtentTags": ",".join(f"t{i}" for i in range(101))}, error_codes.ROUTING_INVALID_METADATA, "at most 100"),
        ({"kustoIngestionMappingReference": "map\nx"}, error_codes.ROUTING_INVALID_METADATA, "printable characters"),
        ({"padding": "x" * 8200}, error_codes.ROUTING_INVALID_METADATA, "Azure allows at most 8192"),
        # Each of these raised something other than RoutingError, which failed the trigger five times (issue #23).
        (
            {"kustoCreationTime": "0001-01-01T00:00:00+14:00"},
            error_codes.ROUTING_INVALID_METADATA,
            "kustoCreationTime='0001-01-01T00:00:00+14:00' is outside the years 0001-9999 when converted to UTC",
        ),
        (
            {"kustoCreationTimeUtc": "9999-12-31T23:59:59-14:00"},
            error_codes.ROUTING_INVALID_METADATA,
            "outside the years 0001-9999",
        ),
        ({"kustoCreationTime": "2016-12-31T23:59:60Z"}, error_codes.ROUTING_INVALID_METADATA, "not an ISO 8601 time"),
        (
            {"kustoExtentTags": "[" * 5000},
            error_codes.ROUTING_INVALID_METADATA,
            "kustoExtentTags starts with '[' but is not a JSON array",
        ),
        ({"kustoExtentTags": "[" + "1" * 5000 + "]"}, error_codes.ROUTING_INVALID_METADATA, "is not a JSON array"),
        ({"kustoExtentTags": '["\\ud800"]'}, error_codes.ROUTING_INVALID_METADATA, "printable characters"),
        ({"rawSizeBytes": "9223372036854775808"}, error_codes.ROUTING_INVALID_METADATA, "at most 9223372036854775807"),
        ({"\ud800": "x"}, None, ""),
    ],
)
def test_malformed_metadata_is_refused_with_the_key_named(metadata: dict[str, str], code: str | None, fragment: str) -> None:
    if code is None:  # metadata routing does not read: ignored, whatever it holds
        router().route("Db/T/x.csv", metadata)
        return
    error = refused(router(), "Db/T/x.csv", metadata)
    assert error.code == code
    assert fragment in error.reason


# --- formats ------------------------------------------------------------------------------------------------


def test_unknown_extension_is_unknown_format() -> None:
    error = refused(router(), "Db/T/x.dat")
    assert error.code == error_codes.ROUTING_UNKNOWN_FORMAT
    assert "'Db/T/x.dat'" in error.reason and "kustoDataFormat" in error.reason
    assert (error.database, error.table) == ("Db", "T")


def test_rule_format_names_an_unknown_extension() -> None:
    route = router({"path": "Db/T/*.dat", "database": "Db", "table": "T", "format": "psv"}).route("Db/T/x.dat", {})
    assert route.properties["format"] == "psv"


def test_zip_without_format_extension_needs_a_format() -> None:
    assert refused(router(), "Db/T/x.zip").code == error_codes.ROUTING_UNKNOWN_FORMAT
    assert router().route("Db/T/x.zip", {"kustoDataFormat": "json"}).properties["format"] == "json"


# --- allowlist ------------------------------------------------------------------------------------------------


def test_allowlist_allows_and_refuses() -> None:
    r = router(allowed=("Telemetry.*", "Sales.Orders", "Logs.Web?"))
    assert r.route("Telemetry/Anything/x.csv", {}).table == "Anything"
    assert r.route("Sales/Orders/x.csv", {}).table == "Orders"
    assert r.route("Logs/Web1/x.csv", {}).table == "Web1"
    error = refused(r, "Sales/Customers/x.csv")
    assert error.code == error_codes.ROUTING_TARGET_NOT_ALLOWED
    assert "Sales.Customers (from convention) is not in ALLOWED_TARGETS" in error.reason
    assert refused(r, "Logs/Web12/x.csv").code == error_codes.ROUTING_TARGET_NOT_ALLOWED


def test_allowlist_applies_to_metadata_targets_too() -> None:
    r = router(allowed=("Telemetry.*",))
    error = refused(r, "Telemetry/Events/x.csv", {"kustoDatabase": "Secret", "kustoTable": "Payroll"})
    assert error.code == error_codes.ROUTING_TARGET_NOT_ALLOWED and "from metadata" in error.reason


def test_allowlist_with_dotted_names() -> None:
    assert target_allowed("Prod.EU", "Events", ["Prod.EU.*"])
    assert target_allowed("Prod", "EU.Events", ["Prod.EU.*"])
    assert not target_allowed("Prod.EU", "Events", ["Prod.*"])
    assert target_allowed("Prod", "Events", ["*"])
    assert target_allowed("prod", "events", ["prod.events"])
    assert not target_allowed("Prod", "Events", ["prod.events"])


# --- bad blob names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Db/T/../x.csv",
        "Db/../Other/x.csv",
        "Db/T/a%2fb.csv",
        "Db%2fOther/T/x.csv",
        "Db/T/x.csv?sig=abc",
        "Db/T/x.csv#frag",
        "Db/T/x\r\n.csv",
        "Db/T/\x1b[31mx.csv",
        "Db/T/\ud800.csv",
        "Db/T/" + "日" * 500 + ".csv",
    ],
)
def test_bad_blob_names_are_refused(name: str) -> None:
    error = refused(router({"path": "**", "database": "D", "table": "T"}), name)
    assert error.code == error_codes.ROUTING_INVALID_NAME
    assert "rename the blob" in error.reason


def test_non_ascii_blob_names_route() -> None:
    route = router().route("Telemetry/Events/données-日本.csv", {})
    assert (route.database, route.table, route.properties["format"]) == ("Telemetry", "Events", "csv")


def test_longest_non_ascii_name_that_fits_a_message_routes() -> None:
    # 420 CJK characters are 3780 percent-encoded: with the account and container in front the URL fits 4096.
    route = router().route("Telemetry/Events/" + "日" * 420 + ".csv", {})
    assert (route.database, route.table) == ("Telemetry", "Events")


def test_rule_values_made_too_long_by_the_blob_name_are_refused() -> None:
    rules = router({"path": "r/{a}/**", "database": "D", "table": "T", "ingestionMappingReference": "{a}{a}{a}"})
    error = refused(rules, "r/" + "a" * 400 + "/x.csv")
    assert error.code == error_codes.ROUTING_INVALID_NAME
    assert "makes ingestionMappingReference" in error.reason and "1200 characters long" in error.reason
    error = refused(router({"path": "r/{a}/**", "database": "D{a}{a}{a}", "table": "T"}), "r/" + "a" * 400 + "/x.csv")
    assert error.code == error_codes.ROUTING_INVALID_NAME and len(error.database) == 1024


def test_non_ascii_captured_table_is_refused_as_a_name() -> None:
    error = refused(router(), "Telemetry/Événements/x.csv")
    assert error.code == error_codes.ROUTING_INVALID_NAME and "'Événements'" in error.reason


# --- invalid rules --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            [{"path": "a/*.csv", "database": "D", "table": "T"}] * 2
            + [{"path": "x/*.csv", "database": "D", "table": "My Table!"}],
            "ROUTING_RULES[2].table: 'My Table!' is not a valid Kusto table name (letters, digits, _ . - and space",
        ),
        ([{"path": "a/*.csv", "table": "T"}], "ROUTING_RULES[0].database: missing; give a database name or capture {database}"),
        (
            [{"path": "a/{x}.csv", "database": "D", "table": "T_{y}"}],
            "ROUTING_RULES[0].table: {y} is not captured by the rule's path",
        ),
        (
            [{"path": "a/*.csv", "database": "D", "table": "T", "tags": ["ok", "{z}"]}],
            "ROUTING_RULES[0].tags[1]: {z} is not captured",
        ),
        (
            [{"path": "a/*.csv", "database": "D", "table": "T", "tbl": "x"}],
            "ROUTING_RULES[0]: Additional properties are not allowed",
        ),
        ([{"database": "D", "table": "T"}], "ROUTING_RULES[0]: 'path' is a required property"),
        (
            [{"path": "a", "database": "D", "table": "T", "ignoreFirstRecord": "yes"}],
            "ROUTING_RULES[0].ignoreFirstRecord: 'yes' is not of type 'boolean'",
        ),
        ([{"path": "a", "database": "D", "table": "T", "format": "xml"}], "ROUTING_RULES[0].format: 'xml' is not one of"),
        (
            [{"path": "a/x**/b", "database": "D", "table": "T"}],
            "ROUTING_RULES[0].path: 'a/x**/b': '**' must be a whole path segment",
        ),
        ([{"path": "a/{MM}/b", "database": "D", "table": "T"}], "{MM} needs {yyyy}"),
        ([{"path": "{t}/{t}", "database": "D", "table": "T"}], "{t} appears twice"),
        ([{"path": "a/{t", "database": "D", "table": "T"}], "unbalanced '{'"),
        ([{"path": "a/{1x}", "database": "D", "table": "T"}], "{1x} is not a capture name"),
        (
            [{"path": "a/*", "database": "D", "table": "T", "creationTimeFromPath": True}],
            "creationTimeFromPath: the path captures no {yyyy}",
        ),
        ([{"path": "a/{t}", "database": "D", "table": "T{t"}], "ROUTING_RULES[0].table: 'T{t' has an unbalanced brace"),
        (["not an object"], "ROUTING_RULES[0]: 'not an object' is not of type 'object'"),
        # The name goes into failure reasons, which must stay one line.
        (
            [{"name": "two\nlines", "path": "a/*", "database": "D", "table": "T"}],
            "ROUTING_RULES[0].name: 'two\\nlines' must be one line without control characters",
        ),
    ],
)
def test_invalid_rules_name_index_and_field(rules: list[Any], message: str) -> None:
    with pytest.raises(RoutingRulesError) as caught:
        compile_rules(rules)
    assert message in str(caught.value)
    assert isinstance(caught.value, SettingsError)


def _settings(**values: str):
    base = {"StagingStorage": "UseDevelopmentStorage=true", "KUSTO_INGEST_URI": "https://ingest-x.kusto.windows.net"}
    return load_settings({**base, **values})


def test_the_worker_builds_its_router_from_the_inline_rules_and_the_allowlist() -> None:
    rules = [{"path": "drop/{table}/*.csv", "database": "Drop"}]
    settings = _settings(ROUTING_RULES=json.dumps({"rules": rules}), ALLOWED_TARGETS="Drop.*")
    r = build_services(settings).router
    assert r.rules == compile_rules(rules)
    assert r.route("drop/Orders/x.csv", {}).table == "Orders"
    assert refused(r, "Other/T/x.csv").code == error_codes.ROUTING_TARGET_NOT_ALLOWED


def test_the_worker_refuses_a_rules_file_with_an_invalid_rule(tmp_path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([{"path": "f/*.csv", "database": "F", "table": "T!"}]))
    with pytest.raises(RoutingRulesError, match=r"ROUTING_RULES\[0\]\.table: 'T!' is not a valid Kusto table name"):
        build_services(_settings(ROUTING_RULES=str(path)))


# --- the examples in docs/routing.md are true ---------------------------------------------------------------


def _documented_rules() -> list[dict[str, Any]]:
    text = (Path(__file__).parents[2] / "docs" / "routing.md").read_text(encoding="utf-8")
    return json.loads(text.split("```json\n", 1)[1].split("```", 1)[0])


@pytest.mark.parametrize(
    ("name", "database", "table", "properties"),
    [
        (
            "weblogs/shop/2024/05/01/u_ex01.log.gz",
            "Web",
            "Requests_shop",
            {"format": "w3clogfile", "tags": ["site:shop"], "creationTime": "2024-05-01T00:00:00Z"},
        ),
        (
            "exports/orders_20240131.csv",
            "Exports",
            "orders",
            {
                "format": "csv",
                "ignoreFirstRecord": True,
                "ingestionMappingReference": "orders_csv",
                "creationTime": "2024-01-31T00:00:00Z",
            },
        ),
        (
            "iot/plant-1/line-2/d.json",
            "Iot",
            "Telemetry",
            {
                "format": "multijson",
                "ingestionMappingReference": "telemetry_json",
                "skipBatching": False,
                "deleteAfterDownload": True,
            },
        ),
        ("Sales/Orders/2024/x.parquet", "Sales", "Orders", {"format": "parquet"}),
    ],
)
def test_documented_examples(name: str, database: str, table: str, properties: dict[str, Any]) -> None:
    route = router(*_documented_rules()).route(name, {})
    assert (route.database, route.table, dict(route.properties)) == (database, table, properties)


def test_documented_no_route_example() -> None:
    assert refused(router(*_documented_rules()), "notes.txt").code == error_codes.ROUTING_NO_ROUTE
