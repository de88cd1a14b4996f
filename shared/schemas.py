"""Loads the JSON Schemas in `shared/schemas/` and validates messages against them.

Every message is checked when it is written and again when it is read, so a bug in one function, or a
message written by hand into a queue, is caught at the boundary with the exact field that is wrong.
Format checks (`date-time`, `uri`, `uuid`) are on. jsonschema enforces `date-time` and `uri` only when their
validator packages are installed (otherwise a bad date passes silently), so `requirements.txt` names them.
"""

from __future__ import annotations

import json
import threading
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

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
                _inline_local_refs(document, document), registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
            )
        return _VALIDATORS[schema]


def validate(schema: str, message: Any) -> None:
    """Raise MessageError naming the first (most relevant) problem when `message` does not match."""
    error = best_match(validator(schema).iter_errors(message))
    if error is not None:
        path = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise MessageError(schema, path, error.message[:500])


def parse(schema: str, text: str | bytes) -> dict[str, Any]:
    """Decode a JSON message and validate it; malformed JSON is a MessageError like any other mismatch."""
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MessageError(schema, "$", f"not valid JSON: {error}") from None
    validate(schema, message)
    return message


def dump(schema: str, message: dict[str, Any]) -> str:
    """Validate and serialise a message to compact JSON, ready for a queue."""
    validate(schema, message)
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
