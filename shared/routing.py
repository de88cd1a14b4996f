"""Where a staged blob goes: routing rules, the path convention, blob metadata and the target allowlist.

Pure functions, no I/O: `Router.route(blob_name, metadata)` returns a `Route` or raises `RoutingError`
with an error code and a reason a person can act on. The order of precedence (docs/routing.md):

1. blob metadata with the Event Grid data connection names (`kustoDatabase`, `kustoTable`, ...),
2. the first routing rule whose path pattern matches the blob name,
3. the convention `{database}/{table}/.../{file}`,
4. the data format named by the file extension.

Rules are checked when the worker builds its router (`compile_rules`), so a typo fails every run with the
rule's index and field instead of failing every blob later.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared import error_codes as codes
from shared import schemas
from shared.formats import UnknownFormatError, check_format, file_type
from shared.names import (
    ENTITY_NAME_MAX_LENGTH,
    blob_name_problem,
    entity_name_problem,
    has_control_characters,
    has_lone_surrogate,
)
from shared.settings import SettingsError
from shared.times import iso_utc

METADATA_MAX_BYTES = 8 * 1024
"""Azure's limit for all metadata of one blob (names and values); anything larger was not written by Azure."""

TAG_MAX_LENGTH = 1024
TAGS_MAX_COUNT = 100
RAW_SIZE_MAX = 2**63 - 1
"""Kusto reads the raw size as a 64-bit integer; a larger value fails the whole ingestion request."""

# Captures with a fixed shape: the parts of an extent creation time.
TIME_CAPTURES = {"yyyy": r"\d{4}", "MM": r"\d{2}", "dd": r"\d{2}", "HH": r"\d{2}", "mm": r"\d{2}", "ss": r"\d{2}"}
_TIME_DEFAULTS = {"MM": "01", "dd": "01", "HH": "00", "mm": "00", "ss": "00"}
_PATTERN_TOKEN = re.compile(r"\*\*|\*|\?|\{([^{}]*)\}|[{}]")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_CAPTURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")  # \Z: '$' would let a trailing newline through
_DIGITS = re.compile(r"^[0-9]{1,19}$")


class RoutingError(Exception):
    """A blob cannot be routed. `code` is the failure notification's ErrorCode, `reason` says why and what to do."""

    def __init__(self, code: str, reason: str, *, database: str = "", table: str = "") -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.database = database
        self.table = table


class RoutingRulesError(SettingsError):
    """ROUTING_RULES is invalid; the message names the rule index and the field."""


@dataclass(frozen=True)
class Rule:
    """One compiled routing rule. Text fields are templates: `{name}` is replaced by the path capture."""

    index: int
    label: str
    pattern: re.Pattern[str]
    database: str
    table: str
    data_format: str | None = None
    mapping: str | None = None
    ignore_first_record: bool | None = None
    tags: tuple[str, ...] = ()
    creation_time_from_path: bool = False
    skip_batching: bool | None = None
    delete_after_download: bool | None = None


@dataclass(frozen=True)
class BlobOverrides:
    """Per-blob settings read from metadata; None means "not given"."""

    database: str | None = None
    table: str | None = None
    data_format: str | None = None
    mapping: str | None = None
    ignore_first_record: bool | None = None
    tags: tuple[str, ...] | None = None
    creation_time: str | None = None
    raw_size: int | None = None


@dataclass(frozen=True)
class Route:
    """Where one blob goes and how Kusto should read it. `properties` fits pending-blob's ingestionProperties."""

    database: str
    table: str
    properties: Mapping[str, Any]
    compression: str | None
    raw_size: int | None
    source: str
    """What decided the target: "metadata", "rule N (label)" or "convention" (for logs and details)."""


def compile_path_pattern(pattern: str) -> tuple[re.Pattern[str], frozenset[str]]:
    """Turn a rule's path pattern into an anchored regex and its capture names; ValueError says what is wrong."""
    parts: list[str] = []
    captures: set[str] = set()
    position = 0
    for token in _PATTERN_TOKEN.finditer(pattern):
        parts.append(re.escape(pattern[position : token.start()]))
        position = token.end()
        text = token.group(0)
        if text == "**":
            before_ok = token.start() == 0 or pattern[token.start() - 1] == "/"
            after = pattern[token.end() : token.end() + 1]
            if not before_ok or after not in ("", "/"):
                raise ValueError("'**' must be a whole path segment, as in 'logs/**/x.csv'")
            if after == "/":
                parts.append("(?:[^/]+/)*")
                position += 1
            else:
                parts.append(".*")
        elif text == "*":
            parts.append("[^/]*")
        elif text == "?":
            parts.append("[^/]")
        elif text in ("{", "}"):
            raise ValueError(f"unbalanced {text!r} at character {token.start() + 1}; captures look like {{table}}")
        else:
            name = token.group(1)
            if not _CAPTURE_NAME.match(name):
                raise ValueError(f"{{{name}}} is not a capture name (letters, digits and _, starting with a letter)")
            if name in captures:
                raise ValueError(f"{{{name}}} appears twice")
            captures.add(name)
            parts.append(f"(?P<{name}>{TIME_CAPTURES.get(name, '[^/]+?')})")
    parts.append(re.escape(pattern[position:]))
    time_parts = captures & TIME_CAPTURES.keys()
    if time_parts and "yyyy" not in captures:
        raise ValueError(f"{{{sorted(time_parts)[0]}}} needs {{yyyy}} in the same pattern")
    return re.compile("".join(parts)), frozenset(captures)


def _check_template(value: str, captures: frozenset[str], where: str) -> None:
    for name in _PLACEHOLDER.findall(value):
        if name not in captures:
            known = ", ".join(f"{{{c}}}" for c in sorted(captures)) or "none"
            raise RoutingRulesError(f"{where}: {{{name}}} is not captured by the rule's path (captures: {known})")
    if "{" in _PLACEHOLDER.sub("", value) or "}" in _PLACEHOLDER.sub("", value):
        raise RoutingRulesError(f"{where}: {value!r} has an unbalanced brace")


def _compile_rule(index: int, raw: Mapping[str, Any]) -> Rule:
    where = f"ROUTING_RULES[{index}]"
    try:
        pattern, captures = compile_path_pattern(raw["path"])
    except ValueError as error:
        raise RoutingRulesError(f"{where}.path: {raw['path']!r}: {error}") from None
    targets = {}
    for kind in ("database", "table"):
        value = raw.get(kind) or (f"{{{kind}}}" if kind in captures else None)
        if value is None:
            raise RoutingRulesError(f"{where}.{kind}: missing; give a {kind} name or capture {{{kind}}} in the path")
        _check_template(value, captures, f"{where}.{kind}")
        problem = entity_name_problem(_PLACEHOLDER.sub("x", value), kind)
        if problem is not None:
            raise RoutingRulesError(f"{where}.{kind}: {problem}")
        targets[kind] = value
    if "ingestionMappingReference" in raw:
        _check_template(raw["ingestionMappingReference"], captures, f"{where}.ingestionMappingReference")
    for position, tag in enumerate(raw.get("tags", ())):
        _check_template(tag, captures, f"{where}.tags[{position}]")
    if has_control_characters(raw.get("name", "")):
        raise RoutingRulesError(f"{where}.name: {raw['name']!r} must be one line without control characters")
    from_path = raw.get("creationTimeFromPath", "yyyy" in captures)
    if from_path and "yyyy" not in captures:
        raise RoutingRulesError(f"{where}.creationTimeFromPath: the path captures no {{yyyy}} to take the time from")
    return Rule(
        index=index,
        label=raw.get("name", raw["path"]),
        pattern=pattern,
        database=targets["database"],
        table=targets["table"],
        data_format=raw.get("format"),
        mapping=raw.get("ingestionMappingReference"),
        ignore_first_record=raw.get("ignoreFirstRecord"),
        tags=tuple(raw.get("tags", ())),
        creation_time_from_path=from_path,
        skip_batching=raw.get("skipBatching"),
        delete_after_download=raw.get("deleteAfterDownload"),
    )


def compile_rules(raw_rules: Sequence[Mapping[str, Any]]) -> tuple[Rule, ...]:
    """Validate ROUTING_RULES against its schema and compile every rule; RoutingRulesError names the rule and field."""
    try:
        schemas.validate(schemas.ROUTING_RULES, [dict(rule) if isinstance(rule, Mapping) else rule for rule in raw_rules])
    except schemas.MessageError as error:
        raise RoutingRulesError(f"ROUTING_RULES{error.path[1:]}: {error.problem}") from None
    return tuple(_compile_rule(index, rule) for index, rule in enumerate(raw_rules))


def target_allowed(database: str, table: str, patterns: Sequence[str]) -> bool:
    """True when some `database.table` pattern (`*`, `?` wildcards, case-sensitive) allows the target.

    Database names may contain dots, so a pattern is tried at each of its dots as the database/table split
    instead of being matched against the joined text (where `A.*` would also allow database `A.B`).
    """
    for pattern in patterns:
        if pattern == "*":
            return True
        for split in (m.start() for m in re.finditer(r"\.", pattern)):
            if fnmatch.fnmatchcase(database, pattern[:split]) and fnmatch.fnmatchcase(table, pattern[split + 1 :]):
                return True
    return False


def _metadata_text(key: str, value: str, max_length: int = 1024) -> str:
    if not value.strip() or len(value) > max_length or has_control_characters(value) or has_lone_surrogate(value):
        raise RoutingError(
            codes.ROUTING_INVALID_METADATA, f"metadata {key}={value[:64]!r} must be 1-{max_length} printable characters"
        )
    return value


def _creation_time(key: str, value: str) -> str:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise RoutingError(
            codes.ROUTING_INVALID_METADATA, f"metadata {key}={value[:64]!r} is not an ISO 8601 time such as 2024-05-01T00:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        # Year 1 east of UTC or year 9999 west of it is a valid local time whose UTC time does not exist.
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise RoutingError(
            codes.ROUTING_INVALID_METADATA, f"metadata {key}={value[:64]!r} is outside the years 0001-9999 when converted to UTC"
        ) from None
    return iso_utc(moment)


def _tags(key: str, value: str) -> tuple[str, ...]:
    """`kustoExtentTags`: a JSON array of strings, or a comma-separated list for tags without commas."""
    if value.lstrip().startswith("["):
        try:
            tags = json.loads(value)
        except (ValueError, RecursionError):
            # ValueError: malformed JSON or an integer too long to convert; RecursionError: '[[[[...' nested too deep.
            raise RoutingError(
                codes.ROUTING_INVALID_METADATA, f"metadata {key} starts with '[' but is not a JSON array"
            ) from None
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise RoutingError(codes.ROUTING_INVALID_METADATA, f"metadata {key} must be a JSON array of strings")
    else:
        tags = [tag.strip() for tag in value.split(",")]
    if len(tags) > TAGS_MAX_COUNT:
        raise RoutingError(
            codes.ROUTING_INVALID_METADATA, f"metadata {key} has {len(tags)} tags; at most {TAGS_MAX_COUNT} are allowed"
        )
    return tuple(_metadata_text(key, tag, TAG_MAX_LENGTH) for tag in tags)


def parse_metadata(metadata: Mapping[str, str]) -> BlobOverrides:
    """Read the `kusto*` and `rawSizeBytes` metadata of a blob; RoutingError(codes.ROUTING_INVALID_METADATA) names the bad key."""
    # "surrogatepass": a lone surrogate is counted here; in a value routing reads it is refused below, key named.
    size = sum(len(f"{k}{v}".encode("utf-8", "surrogatepass")) for k, v in metadata.items())
    if size > METADATA_MAX_BYTES:
        raise RoutingError(
            codes.ROUTING_INVALID_METADATA, f"the blob's metadata is {size} bytes; Azure allows at most {METADATA_MAX_BYTES}"
        )
    values = {str(k).lower(): (str(k), str(v)) for k, v in metadata.items()}

    def get(*names: str) -> tuple[str, str] | None:
        return next((values[n.lower()] for n in names if n.lower() in values), None)

    found: dict[str, Any] = {}
    for attribute, names in (("database", ("kustoDatabase",)), ("table", ("kustoTable",))):
        if item := get(*names):
            problem = entity_name_problem(item[1], attribute)
            if problem:
                raise RoutingError(codes.ROUTING_INVALID_NAME, f"metadata {item[0]}: {problem}")
            found[attribute] = item[1]
    if item := get("kustoDataFormat"):
        try:
            found["data_format"] = check_format(item[1])
        except UnknownFormatError as error:
            raise RoutingError(codes.ROUTING_INVALID_METADATA, f"metadata {item[0]}: {error}") from None
    if item := get("kustoIngestionMappingReference"):
        found["mapping"] = _metadata_text(*item)
    if item := get("kustoIgnoreFirstRecord"):
        if item[1].strip().lower() not in ("true", "false"):
            raise RoutingError(codes.ROUTING_INVALID_METADATA, f"metadata {item[0]}={item[1][:64]!r} must be 'true' or 'false'")
        found["ignore_first_record"] = item[1].strip().lower() == "true"
    if item := get("kustoExtentTags"):
        found["tags"] = _tags(*item)
    if item := get("kustoCreationTime", "kustoCreationTimeUtc"):
        found["creation_time"] = _creation_time(*item)
    if item := get("rawSizeBytes", "kustoUncompressedSizeBytes"):
        if not _DIGITS.match(item[1].strip()) or int(item[1].strip()) > RAW_SIZE_MAX:
            raise RoutingError(
                codes.ROUTING_INVALID_METADATA,
                f"metadata {item[0]}={item[1][:64]!r} must be a whole number of bytes, at most {RAW_SIZE_MAX}",
            )
        found["raw_size"] = int(item[1].strip())
    return BlobOverrides(**found)


def check_blob_name(blob_name: str) -> None:
    """RoutingError(codes.ROUTING_INVALID_NAME) when the blob name is unusable (see `names.blob_name_problem`)."""
    problem = blob_name_problem(blob_name)
    if problem is not None:
        raise RoutingError(codes.ROUTING_INVALID_NAME, f"{problem}; rename the blob")


def _render(template: str, captures: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: captures[m.group(1)], template)


def _render_text(rule: Rule, field_name: str, template: str, captures: Mapping[str, str], blob_name: str) -> str:
    """A mapping name or tag of `rule` for this blob; RoutingError when the captures make it longer than Kusto allows."""
    value = _render(template, captures)
    if len(value) > TAG_MAX_LENGTH:
        raise RoutingError(
            codes.ROUTING_INVALID_NAME,
            f"rule {rule.index} ({rule.label}) makes {field_name} {value[:64]!r}... {len(value)} characters long from "
            f"{blob_name!r}, over {TAG_MAX_LENGTH}; shorten the blob name",
        )
    return value


def _path_time(rule: Rule, captures: Mapping[str, str], blob_name: str) -> str:
    month, day, hour, minute, second = (int(captures.get(name) or default) for name, default in _TIME_DEFAULTS.items())
    try:
        moment = datetime(int(captures["yyyy"]), month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as error:
        raise RoutingError(
            codes.ROUTING_INVALID_CREATION_TIME,
            f"rule {rule.index} ({rule.label}) reads a creation time from {blob_name!r}, but {error}",
        ) from None
    return iso_utc(moment)


@dataclass(frozen=True)
class _Target:
    database: str | None = None
    table: str | None = None
    source: str = "convention"
    properties: dict[str, Any] = field(default_factory=dict)
    data_format: str | None = None


def _from_rules(rules: Sequence[Rule], blob_name: str) -> _Target:
    for rule in rules:
        match = rule.pattern.fullmatch(blob_name)
        if match is None:
            continue
        captures = {k: v for k, v in match.groupdict().items() if v is not None}
        properties: dict[str, Any] = {}
        if rule.mapping is not None:
            properties["ingestionMappingReference"] = _render_text(
                rule, "ingestionMappingReference", rule.mapping, captures, blob_name
            )
        if rule.ignore_first_record is not None:
            properties["ignoreFirstRecord"] = rule.ignore_first_record
        if rule.tags:
            properties["tags"] = [
                _render_text(rule, f"tags[{position}]", tag, captures, blob_name) for position, tag in enumerate(rule.tags)
            ]
        if rule.creation_time_from_path:
            properties["creationTime"] = _path_time(rule, captures, blob_name)
        if rule.skip_batching is not None:
            properties["skipBatching"] = rule.skip_batching
        if rule.delete_after_download is not None:
            properties["deleteAfterDownload"] = rule.delete_after_download
        return _Target(
            database=_render(rule.database, captures),
            table=_render(rule.table, captures),
            source=f"rule {rule.index} ({rule.label})",
            properties=properties,
            data_format=rule.data_format,
        )
    segments = blob_name.split("/")
    if len(segments) >= 3:
        return _Target(database=segments[0], table=segments[1])
    return _Target()


@dataclass(frozen=True)
class Router:
    """Compiled rules plus the allowlist; the worker builds one (`shared.services`)."""

    rules: tuple[Rule, ...] = ()
    allowed_targets: tuple[str, ...] = ("*",)

    def route(self, blob_name: str, metadata: Mapping[str, str]) -> Route:
        """Resolve the target and ingestion properties of one blob, or raise RoutingError with the reason."""
        check_blob_name(blob_name)
        overrides = parse_metadata(metadata)
        target = _from_rules(self.rules, blob_name)
        database = overrides.database or target.database
        table = overrides.table or target.table
        source = "metadata" if overrides.database and overrides.table else target.source
        if database is None or table is None:
            missing = " and ".join(k for k, v in (("database", database), ("table", table)) if v is None)
            raise RoutingError(
                codes.ROUTING_NO_ROUTE,
                f"no {missing} for {blob_name!r}: no routing rule matches it and it is not under {{database}}/{{table}}/; "
                "add a rule, move the blob, or set the kustoDatabase and kustoTable metadata",
                database=database or "",
                table=table or "",
            )
        for kind, value in (("database", database), ("table", table)):
            problem = entity_name_problem(value, kind)
            if problem is not None:
                # A name a rule put together can be longer than a failure notification's Database or Table field.
                raise RoutingError(
                    codes.ROUTING_INVALID_NAME,
                    f"{problem} (from {source})",
                    database=database[:ENTITY_NAME_MAX_LENGTH],
                    table=table[:ENTITY_NAME_MAX_LENGTH],
                )
        kind_of_file = file_type(blob_name)
        data_format = overrides.data_format or target.data_format or kind_of_file.format
        if data_format is None:
            raise RoutingError(
                codes.ROUTING_UNKNOWN_FORMAT,
                f"cannot tell the data format of {blob_name!r} from its extension; use an extension such as .csv or "
                ".json (before .gz/.zip), set the kustoDataFormat metadata, or give the rule a format",
                database=database,
                table=table,
            )
        if not target_allowed(database, table, self.allowed_targets):
            raise RoutingError(
                codes.ROUTING_TARGET_NOT_ALLOWED,
                f"{database}.{table} (from {source}) is not in ALLOWED_TARGETS ({', '.join(self.allowed_targets)})",
                database=database,
                table=table,
            )
        properties: dict[str, Any] = {"format": data_format, **target.properties}
        overridden: tuple[tuple[str, object], ...] = (
            ("ingestionMappingReference", overrides.mapping),
            ("ignoreFirstRecord", overrides.ignore_first_record),
            ("tags", list(overrides.tags) if overrides.tags is not None else None),
            ("creationTime", overrides.creation_time),
        )
        for key, given in overridden:
            if given is not None:
                properties[key] = given
        return Route(database, table, properties, kind_of_file.compression, overrides.raw_size, source)
