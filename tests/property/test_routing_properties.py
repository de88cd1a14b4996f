"""Property tests for routing: any blob name and any metadata end as a Route or a RoutingError, nothing else.

A blob the trigger cannot route must become one failure notification; any other exception fails the run,
is retried five times and ends in the poison queue with no reason attached (issue #23). So for any input:

* `Router.route` returns a Route whose values make a pending message the schema accepts, with a creation time
  the readers can read, or raises RoutingError with a known code and a one-line reason that fits a failure
  notification;
* `check_blob_name` returns None or raises RoutingError(INVALID_NAME);
* `compile_path_pattern` and `compile_rules` raise only ValueError / RoutingRulesError.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared import error_codes, recorder, routing, schemas
from shared.names import entity_name_problem, has_control_characters, has_lone_surrogate
from shared.routing import Route, Router, RoutingError, RoutingRulesError, compile_path_pattern, compile_rules
from tests.property.strategies import ANY_TEXT, DATETIME_TEXT, HUGE_TEXT, NASTY_FRAGMENTS

CODES = {
    error_codes.ROUTING_NO_ROUTE,
    error_codes.ROUTING_UNKNOWN_FORMAT,
    error_codes.ROUTING_TARGET_NOT_ALLOWED,
    error_codes.ROUTING_INVALID_NAME,
    error_codes.ROUTING_INVALID_METADATA,
    error_codes.ROUTING_INVALID_CREATION_TIME,
}

RULES = [
    {
        "name": "dated",
        "path": "exports/{table}/{yyyy}/{MM}/{dd}/*.csv",
        "database": "Exports",
        "ignoreFirstRecord": True,
        "tags": ["day:{yyyy}-{MM}-{dd}"],
    },
    {"name": "to the second", "path": "t/{database}/{table}/{yyyy}/{MM}/{dd}/{HH}/{mm}/{ss}/**", "format": "json"},
    {
        "name": "repeated captures",
        "path": "r/{a}/{b}/**",
        "database": "D{a}{a}{a}",
        "table": "{b}",
        "ingestionMappingReference": "{a}{b}{a}{b}",
        "tags": ["{a}{a}{a}{a}", "{b}"],
    },
    {"name": "inside a segment", "path": "in/pre-{table}-{yyyy}.*", "database": "In", "skipBatching": True},
]
ROUTER = Router(rules=compile_rules(RULES), allowed_targets=("*",))
PICKY_ROUTER = Router(rules=compile_rules(RULES), allowed_targets=("Exports.*", "In.?", "Telemetry.Events"))

HOSTILE = st.one_of(st.sampled_from(NASTY_FRAGMENTS), ANY_TEXT)


def mostly(good: st.SearchStrategy[str], bad: st.SearchStrategy[str], one_in: int = 10) -> st.SearchStrategy[str]:
    """`good` but one time in `one_in` `bad` (Hypothesis favours the first choice of a one_of, and shrinks to it)."""
    return st.sampled_from((good,) * (one_in - 1) + (bad,)).flatmap(lambda chosen: chosen)


def part(good: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Mostly a value of the expected shape, one time in ten anything at all."""
    return mostly(good, HOSTILE)


ENTITY = mostly(
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,10}[A-Za-z0-9_.\-]", fullmatch=True),
    st.sampled_from(("Bad!Name", " lead", "trail ", "日本", "x" * 600, "y" * 1025)),
    one_in=6,
)
TWO_DIGITS = st.integers(0, 99).map("{:02d}".format) | st.sampled_from(("٠٢", "\uff11\uff12", "1", "123"))
YEAR = st.integers(0, 9999).map("{:04d}".format) | st.sampled_from(("٢٠٢٤", "\uff12\uff10\uff12\uff14", "0000", "99999"))
FILE = st.builds(
    "{}.{}".format,
    st.text("abcXYZ019_- ().é日", min_size=1, max_size=12),
    st.sampled_from(("csv", "json", "csv.gz", "json.zip", "parquet", "zip", "gz", "dat", "TSV", "log", "csv.GZ")),
)
DEEP = st.lists(part(st.text("abc019", min_size=1, max_size=8)), max_size=3).map(lambda parts: "/".join([*parts, "f.csv"]))
STRUCTURED_NAMES = st.one_of(
    st.builds("exports/{}/{}/{}/{}/{}".format, part(ENTITY), part(YEAR), part(TWO_DIGITS), part(TWO_DIGITS), part(FILE)),
    st.builds(
        "t/{}/{}/{}/{}/{}/{}/{}/{}/{}".format,
        part(ENTITY),
        part(ENTITY),
        part(YEAR),
        *(part(TWO_DIGITS) for _ in range(5)),
        DEEP,
    ),
    st.builds("r/{}/{}/{}".format, part(ENTITY), part(ENTITY), DEEP),
    st.builds("in/pre-{}-{}.{}".format, part(ENTITY), part(YEAR), part(st.sampled_from(("csv", "json", "x")))),
    st.builds("{}/{}/{}".format, part(ENTITY), part(ENTITY), DEEP),
    st.builds("{}/{}".format, part(ENTITY), part(FILE)),
    st.text("日", min_size=200, max_size=1024).map(lambda text: f"Telemetry/Events/{text}.csv"),
)
BLOB_NAMES = mostly(
    STRUCTURED_NAMES,
    st.lists(part(st.sampled_from(("exports", "t", "r", "in", "2024", "02", "x.csv", "a b", ".", "..", ""))), max_size=8).map(
        "/".join
    )
    | ANY_TEXT
    | HUGE_TEXT,
    one_in=4,
)

TAG_VALUES = st.one_of(
    st.lists(part(st.text(min_size=1, max_size=8)), max_size=5).map(json.dumps),
    st.lists(part(st.text(min_size=1, max_size=8)), max_size=5).map(lambda tags: json.dumps(tags, ensure_ascii=False)),
    st.lists(part(st.text("abc:019 ", min_size=1, max_size=8)), max_size=5).map(",".join),
    st.sampled_from(
        (
            "[" * 8000,
            "[" * 900 + "]" * 900,
            "[" + "1" * 5000 + "]",
            "[1e400]",
            "[NaN]",
            '["\\ud800"]',
            '["a\\u0000b"]',
            '["\\u2028"]',
            '["a", ["b"]]',
            '{"a": 1}',
            "[]",
            " []",
            '["' + "x" * 1025 + '"]',
            json.dumps([f"t{i}" for i in range(101)]),
            ",".join("x" * 5 for _ in range(101)),
        )
    ),
)
SIZE_VALUES = st.one_of(
    st.integers(min_value=-1).map(str),
    st.sampled_from(
        ("9223372036854775807", "9223372036854775808", "9" * 19, "9" * 20, "١٢٣", "\uff11\uff12", " 12 ", "12\n", "0x10", "1e3")
    ),
)
FORMATS = st.sampled_from(("csv", "JSON", " parquet ", "multijson", "w3clogfile")) | st.sampled_from(("xml", "", "csv\n"))
BOOLEANS = st.sampled_from(("true", "false", "TRUE", " False ")) | st.sampled_from(("yes", "1", ""))
KEY_VALUES: dict[str, st.SearchStrategy[str]] = {
    "kustoDatabase": part(ENTITY),
    "kustoTable": part(ENTITY),
    "kustoDataFormat": part(FORMATS),
    "kustoIngestionMappingReference": part(st.text(min_size=1, max_size=20) | st.just("m" * 1025)),
    "kustoIgnoreFirstRecord": part(BOOLEANS),
    "kustoExtentTags": TAG_VALUES,
    "kustoCreationTime": part(DATETIME_TEXT),
    "kustoCreationTimeUtc": part(DATETIME_TEXT),
    "rawSizeBytes": part(SIZE_VALUES),
    "kustoUncompressedSizeBytes": part(SIZE_VALUES),
}
KEY_SPELLINGS = st.sampled_from((str, str.upper, str.lower))


@st.composite
def metadata_maps(draw: st.DrawFn) -> dict[str, str]:
    """Blob metadata: each key routing reads, in some letter case, present about a third of the time, plus others."""
    metadata = {}
    for key, values in KEY_VALUES.items():
        if draw(st.integers(0, 3)) == 0:
            metadata[draw(KEY_SPELLINGS)(key)] = draw(values)
    if draw(st.booleans()):
        metadata.update(draw(st.dictionaries(ANY_TEXT, ANY_TEXT | HUGE_TEXT, max_size=2)))
    return metadata


KEYS = tuple(KEY_VALUES)
METADATA = metadata_maps()


def read_time(text: str) -> datetime:
    """How the app reads a date-time it wrote (submission, tracking, digest), plus the conversion to UTC."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def blob_url(name: str) -> str:
    """The URL the SDK's BlobClient gives the trigger (it quotes with '/' and '~' safe)."""
    return f"https://account.blob.core.windows.net/staging/{quote(name, safe='/~', errors='surrogatepass')}"


def assert_reportable(error: RoutingError, name: str) -> None:
    """The error becomes one failure notification a queue can carry, as recorder._reject writes it."""
    assert error.code in CODES, error
    assert error.reason.strip(), error
    assert not has_control_characters(error.reason), f"reason is not one printable line: {error.reason!r}"
    assert not has_lone_surrogate(error.reason), error.reason
    if has_lone_surrogate(name):
        # The host hands the trigger UTF-8 names only (the SDK cannot even build the URL of such a name).
        return
    blob = SimpleNamespace(container_name="staging", blob_name=name)
    notification = recorder.rejection_notification(blob, blob_url(name), str(uuid.uuid4()), error)  # type: ignore[arg-type]
    schemas.dump(schemas.FAILURE_NOTIFICATION, notification).encode("utf-8")


def assert_recordable(route: Route, name: str) -> None:
    """The route makes a pending message the schema accepts and a queue can carry, and its readers can read."""
    for kind, value in (("database", route.database), ("table", route.table)):
        assert entity_name_problem(value, kind) is None
    blob = SimpleNamespace(container_name="staging", blob_name=name)
    message = recorder._pending_message(blob, blob_url(name), str(uuid.uuid4()), '"0x8DC0"', 10, route)  # type: ignore[arg-type]
    text = schemas.dump(schemas.PENDING_BLOB, message)
    text.encode("utf-8")  # the recorder measures it so, and refuses one too large for a queue with a notification
    assert schemas.parse(schemas.PENDING_BLOB, text) == message
    if "creationTime" in route.properties:
        read_time(route.properties["creationTime"])


def route_or_error(router: Router, name: str, metadata: Mapping[str, str]) -> Route | RoutingError:
    try:
        return router.route(name, metadata)
    except RoutingError as error:
        return error


PENDING_TEMPLATE = {
    "version": 1,
    "blobUrl": "https://account.blob.core.windows.net/staging/x.csv",
    "container": "staging",
    "blobName": "x.csv",
    "etag": '"0x8DC0"',
    "size": 1,
    "sourceId": "0b5b3c36-77a2-4bb6-9d43-6d4a0e8f2c1e",
    "database": "Db",
    "table": "T",
    "properties": {"format": "csv"},
    "recordedAt": "2024-05-01T00:00:00Z",
}


def assert_routes_or_reports(router: Router, name: str, metadata: Mapping[str, str]) -> Route | RoutingError:
    outcome = route_or_error(router, name, metadata)
    if isinstance(outcome, RoutingError):
        assert_reportable(outcome, name)
    else:
        assert_recordable(outcome, name)
    return outcome


@settings(max_examples=400, deadline=None)
@given(name=BLOB_NAMES, metadata=METADATA)
@example(name="Telemetry/Events/x.csv", metadata={"kustoCreationTime": "0001-01-01T00:00:00+14:00"})
@example(name="Telemetry/Events/x.csv", metadata={"kustoCreationTimeUtc": "9999-12-31T23:59:59-14:00"})
@example(name="Telemetry/Events/x.csv", metadata={"kustoExtentTags": "[" * 8000})
@example(name="Telemetry/Events/x.csv", metadata={"kustoExtentTags": "[" + "1" * 5000 + "]"})
@example(name="Telemetry/Events/x.csv", metadata={"kustoExtentTags": '["\\ud800"]'})
@example(name="Telemetry/Events/x.csv", metadata={"rawSizeBytes": "9223372036854775808"})
@example(name="Telemetry/Events/x.csv", metadata={"\ud800": "x"})
@example(name="r/" + "a" * 400 + "/T/x.csv", metadata={"kustoDatabase": "Db"})
@example(name="r/" + "a" * 400 + "/" + "b" * 400 + "/x.csv", metadata={})
@example(name="Telemetry/Events/" + "日" * 500 + ".csv", metadata={})
def test_route_gives_a_recordable_route_or_a_reportable_error(name: str, metadata: dict[str, str]) -> None:
    for router in (ROUTER, PICKY_ROUTER):
        assert_routes_or_reports(router, name, metadata)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), key=st.sampled_from(KEYS), spelling=KEY_SPELLINGS)
def test_every_metadata_key_with_any_value_is_recorded_or_refused_naming_the_key(
    data: st.DataObject, key: str, spelling: Any
) -> None:
    value = data.draw(st.one_of(KEY_VALUES[key], HOSTILE, HUGE_TEXT, TAG_VALUES, DATETIME_TEXT, SIZE_VALUES))
    key = spelling(key)
    outcome = assert_routes_or_reports(ROUTER, "Telemetry/Events/x.csv", {key: value})
    if isinstance(outcome, RoutingError):
        assert outcome.code in (error_codes.ROUTING_INVALID_METADATA, error_codes.ROUTING_INVALID_NAME), outcome
        assert f"metadata {key}" in outcome.reason or "the blob's metadata is" in outcome.reason, outcome.reason


@settings(max_examples=300, deadline=None)
@given(name=BLOB_NAMES, key=st.sampled_from(("kustoCreationTime", "KustoCreationTimeUtc")), value=DATETIME_TEXT)
@example(name="Telemetry/Events/x.csv", key="kustoCreationTime", value="0001-01-01T00:00:00+14:00")
@example(name="Telemetry/Events/x.csv", key="kustoCreationTime", value="9999-12-31T23:59:59-14:00")
@example(name="Telemetry/Events/x.csv", key="kustoCreationTime", value="2016-12-31T23:59:60Z")
def test_any_creation_time_in_metadata_is_recorded_or_refused_as_invalid_metadata(name: str, key: str, value: str) -> None:
    outcome = assert_routes_or_reports(ROUTER, "Telemetry/Events/x.csv", {key: value})
    if isinstance(outcome, RoutingError):
        assert outcome.code == error_codes.ROUTING_INVALID_METADATA
        assert f"metadata {key}=" in outcome.reason
    else:
        given_time = datetime.fromisoformat(value.strip())
        expected = given_time if given_time.tzinfo is not None else given_time.replace(tzinfo=UTC)
        assert read_time(outcome.properties["creationTime"]) == expected
    assert_routes_or_reports(ROUTER, name, {key: value})


@settings(max_examples=300, deadline=None)
@given(name=BLOB_NAMES)
@example(name="Telemetry/Events/" + "日" * 1000 + ".csv")
@example(name="Telemetry/\ud800.csv")
def test_check_blob_name_accepts_or_refuses_with_invalid_name(name: str) -> None:
    try:
        routing.check_blob_name(name)
    except RoutingError as error:
        assert error.code == error_codes.ROUTING_INVALID_NAME
        assert_reportable(error, name)
    else:
        assert 1 <= len(name) <= 1024
        assert len(blob_url(name)) <= recorder.URL_MAX_LENGTH
        schemas.validate(schemas.PENDING_BLOB, {**PENDING_TEMPLATE, "blobName": name, "blobUrl": blob_url(name)})
        assert_reportable(RoutingError(error_codes.ROUTING_NO_ROUTE, "a reason"), name)


PATTERN_PIECES = st.one_of(
    st.sampled_from(
        ("*", "**", "?", "/", "{yyyy}", "{MM}", "{dd}", "{HH}", "{table}", "{database}", "{a}", "{", "}", "{}", "{1a}")
    ),
    st.sampled_from(
        ("{a b}", "{" + "x" * 70 + "}", "{a\n}", "{yyyy\n}", ".", "..", "a.csv", "**/", "/**", "\\", "(", ")", "$", "|")
    ),
    ANY_TEXT,
)
PATTERNS = st.one_of(st.lists(PATTERN_PIECES, max_size=12).map("".join), ANY_TEXT, HUGE_TEXT)


@settings(max_examples=300, deadline=None)
@given(pattern=PATTERNS, name=BLOB_NAMES)
@example(pattern="x/{a\n}/*.csv", name="x/a/b.csv")
def test_any_path_pattern_compiles_or_is_refused_with_value_error(pattern: str, name: str) -> None:
    try:
        compiled, captures = compile_path_pattern(pattern)
    except ValueError as error:
        assert str(error)
        return
    match = compiled.fullmatch(name)
    assert match is None or set(match.groupdict()) == set(captures)


TEMPLATES = st.one_of(
    st.sampled_from(("{table}", "{database}", "{a}", "{a}{a}", "T_{b}", "Fixed", "{x}", "{", "Bad!", "{yyyy}")),
    ANY_TEXT,
)
RULE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "name": ANY_TEXT,
    "database": TEMPLATES,
    "table": TEMPLATES,
    "format": st.sampled_from(("csv", "json", "parquet", "xml", "CSV")),
    "ingestionMappingReference": TEMPLATES,
    "ignoreFirstRecord": st.booleans() | st.just("true"),
    "tags": st.lists(TEMPLATES, max_size=4),
    "creationTimeFromPath": st.booleans(),
    "skipBatching": st.booleans(),
    "deleteAfterDownload": st.booleans(),
    "extra": st.integers(),
}


@st.composite
def raw_rules(draw: st.DrawFn) -> list[Any]:
    rules: list[Any] = []
    for _ in range(draw(st.integers(0, 3))):
        rule = {name: draw(value) for name, value in RULE_FIELDS.items() if draw(st.integers(0, 3)) == 0}
        if draw(st.integers(0, 9)):
            rule["path"] = draw(PATTERNS)
        rules.append(rule if draw(st.integers(0, 19)) else draw(ANY_TEXT))
    return rules


@settings(max_examples=300, deadline=None)
@given(rules=raw_rules(), name=BLOB_NAMES, metadata=METADATA)
@example(
    rules=[{"name": "two\nlines", "path": "x/{yyyy}/*.csv", "database": "D", "table": "T"}], name="x/0000/a.csv", metadata={}
)
def test_any_rules_compile_or_are_refused_and_then_route_safely(rules: list[Any], name: str, metadata: dict[str, str]) -> None:
    try:
        compiled = compile_rules(rules)
    except RoutingRulesError as error:
        assert str(error).startswith("ROUTING_RULES")
        return
    outcome = route_or_error(Router(rules=compiled), name, metadata)
    if isinstance(outcome, RoutingError):
        assert_reportable(outcome, name)
    else:
        assert_recordable(outcome, name)
