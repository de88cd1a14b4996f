"""Loads the JSON Schemas in `shared/schemas/` and validates messages against them.

Every message is checked when it is written and again when it is read, so a bug in one function, or a
message written by hand into a queue, is caught at the boundary with the exact field that is wrong.
Format checks (`date-time`, `uri`, `uuid`) are on. jsonschema enforces `date-time` and `uri` only when their
validator packages are installed (otherwise a bad date passes silently), so `requirements.txt` names them.
A `date-time` must also be one the app's readers can read (`shared.times.parse_time`), so a valid message never
crashes the code that reads it.

Whatever the input, `parse`, `validate` and `dump` raise MessageError or nothing: no TypeError, RecursionError
(`[[[[...`), ValueError of another kind (an integer of 5000 digits) or UnicodeEncodeError later on (a lone
surrogate such as `"\\ud800"`). NaN and Infinity, which Python's json reads and writes but JSON does not have,
are refused both ways.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from shared.times import parse_time

SCHEMA_DIR = Path(__file__).parent / "schemas"

PENDING_BLOB = "pending-blob.schema.json"
FAILURE_NOTIFICATION = "failure-notification.schema.json"
TRACKING_RECORD = "tracking-record.schema.json"
INGEST_REQUEST = "ingest-request.schema.json"
ROUTING_RULES = "routing-rules.schema.json"
ALERT = "alert.schema.json"


class MessageError(ValueError):
    """A message does not match its schema; the text names the schema, the field and the problem."""

    def __init__(self, schema: str, path: str, problem: str) -> None:
        super().__init__(f"{schema}: {path}: {problem}")
        self.schema = schema
        self.path = path
        self.problem = problem


@cache
def _registry() -> Registry:
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        resources.append((path.name, Resource.from_contents(document)))
    return Registry().with_resources(resources)


def _inline_local_refs(node: Any, document: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """`node` with every bare `{"$ref": "#/$defs/<name>"}` replaced by a copy of that definition.

    The same schema, validated with less work: jsonschema resolves a `$ref` on every message it checks, which
    made up about a quarter of a pending message's validation. Only a `$ref` that is alone in its object and
    names a definition of the same file is replaced (its meaning is then exactly the definition's); `$defs`
    stays, so references from other files still resolve, and a definition that refers to itself stays a `$ref`.
    """
    if isinstance(node, list):
        return [_inline_local_refs(item, document, seen) for item in node]
    if not isinstance(node, dict):
        return node
    reference = node.get("$ref")
    if len(node) == 1 and isinstance(reference, str) and reference.startswith("#/$defs/") and reference not in seen:
        name = reference.removeprefix("#/$defs/")
        if "/" not in name and name in document.get("$defs", {}):
            return _inline_local_refs(document["$defs"][name], document, (*seen, reference))
    return {key: _inline_local_refs(value, document, seen) for key, value in node.items()}


def _is_readable_date_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    if not Draft202012Validator.FORMAT_CHECKER.conforms(instance, "date-time"):
        return False  # not RFC 3339: no leap second '23:59:60', no year 0, no day 31 in a 30-day month
    try:
        parse_time(instance)
    except (ValueError, OverflowError):
        return False
    return True


FORMAT_CHECKER = FormatChecker(formats=())
FORMAT_CHECKER.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
FORMAT_CHECKER.checks("date-time")(_is_readable_date_time)
"""jsonschema's 2020-12 format checks, with `date-time` narrowed to the RFC 3339 times the app's readers can read."""

_VALIDATORS: dict[str, Draft202012Validator] = {}
_BUILD_LOCK = threading.Lock()


def validator(schema: str) -> Draft202012Validator:
    """The validator for one schema file, with format checking and cross-file `$ref`s resolved; built once per process.

    Built under a lock: a drain's submission threads ask for the same validators at the same moment, and each
    build (a check of the schema against the 2020-12 meta-schema included) costs about 20 ms of CPU.
    """
    found = _VALIDATORS.get(schema)
    if found is not None:
        return found
    with _BUILD_LOCK:
        if schema not in _VALIDATORS:
            document = _registry().contents(schema)
            Draft202012Validator.check_schema(document)
            _VALIDATORS[schema] = Draft202012Validator(
                _inline_local_refs(document, document), registry=_registry(), format_checker=FORMAT_CHECKER
            )
        return _VALIDATORS[schema]


def validate(schema: str, message: Any) -> None:
    """Raise MessageError naming the first (most relevant) problem when `message` does not match."""
    try:
        error = best_match(validator(schema).iter_errors(message))
    except RecursionError:
        raise MessageError(schema, "$", "nested too deeply to be checked") from None
    except ValueError as problem:
        # jsonschema quotes the value in its message: repr() of an integer of over 4300 digits raises ValueError.
        raise MessageError(schema, "$", f"cannot be checked: {str(problem)[:200]}") from None
    if error is not None:
        path = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise MessageError(schema, path, error.message[:500])


# A \uD800-\uDFFF escape: a pair of them is one character, a lone one is not Unicode text (looked for only then).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


def _lone_surrogate(text: str) -> str | None:
    """The first lone surrogate of `text` as an escape (`'\\ud800'`), or None when `text` is Unicode text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"\\u{ord(text[error.start]):04x}"
    return None


def _decoded_surrogate(text: str | bytes, message: Any) -> str | None:
    """The first lone surrogate in what `text` decoded to, or None; the usual text is cleared without a second pass."""
    if isinstance(text, str):
        raw = None if text.isascii() else _lone_surrogate(text)
        if raw or "\\u" not in text or not _SURROGATE_ESCAPE.search(text):
            return raw
    elif bytes(text).isascii() and not _SURROGATE_ESCAPE_BYTES.search(text):
        return None
    return _lone_surrogate(json.dumps(message, ensure_ascii=False))


def parse(schema: str, text: str | bytes) -> dict[str, Any]:
    """Decode a JSON message and validate it; malformed JSON is a MessageError like any other mismatch.

    Refused as not valid JSON: NaN and Infinity, a number too large for a float, an integer too long to convert,
    nesting deeper than the interpreter's recursion limit, and a lone surrogate (raw or as a `\\ud800` escape).
    """
    try:
        message = json.loads(text, parse_constant=_not_json, parse_float=_finite_float)
    except RecursionError:
        raise MessageError(schema, "$", "not valid JSON: nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, the constants and numbers above
        raise MessageError(schema, "$", f"not valid JSON: {str(error)[:200]}") from None
    surrogate = _decoded_surrogate(text, message)
    if surrogate:
        raise MessageError(schema, "$", f"not valid JSON: the lone surrogate {surrogate} is not Unicode text")
    validate(schema, message)
    return message


def dump(schema: str, message: Mapping[str, Any]) -> str:
    """Validate and serialise a message to compact JSON, ready for a queue (UTF-8 text: no NaN, no lone surrogate)."""
    validate(schema, message)
    try:
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise MessageError(schema, "$", "nested too deeply to be written") from None
    except ValueError as error:  # NaN or Infinity, or an integer too long to write
        raise MessageError(schema, "$", f"cannot be written as JSON: {str(error)[:200]}") from None
    surrogate = None if text.isascii() else _lone_surrogate(text)
    if surrogate:
        raise MessageError(schema, "$", f"holds the lone surrogate {surrogate}, which is not Unicode text")
    return text
