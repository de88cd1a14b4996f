"""The body check of `POST /v1/rest/ingestion/queued/...`: the contract's JSON Schema plus the rules it cannot express.

jsonschema is the authority on what is valid and on every error message, but walking it over the 20
blobs of a request costs more than the rest of the request (a new validator object per blob and per
property). So the blob items are first tried against a shape test derived from the same schema: it only
ever says "valid" for a blob jsonschema would accept, and for the rest of the body a validator without
the `items` keyword runs. Whenever either says anything but "valid", the full validator decides and its
best error is the answer, so refusals read exactly as before.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from shared.redaction import redact

from .errors import BadRequest
from .storage import split_credential

SCHEMA_PATH = Path(__file__).parent / "schemas" / "ingest-request.schema.json"
# Exact Python types json.loads produces for each JSON type (so bool never passes as integer).
_JSON_TYPES: dict[str, type] = {"string": str, "null": type(None), "integer": int, "boolean": bool, "object": dict, "array": list}


@cache
def _base_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


class BlobShape:
    """A fast test of one blob object against the schema's `blobs.items`, sound but not complete.

    `accepts` returning True means jsonschema accepts the blob; False means "let jsonschema look". Only the
    keywords the Blob schema uses are understood; a schema with any other keyword is refused at start,
    so a change to the schema cannot make this test accept what jsonschema would refuse.
    """

    _ITEM_KEYWORDS = frozenset({"type", "required", "properties"})
    _FIELD_KEYWORDS = frozenset({"type", "minLength", "minimum", "maximum"})

    def __init__(self, schema: dict[str, Any]) -> None:
        unknown = set(schema) - self._ITEM_KEYWORDS
        if unknown or schema.get("type") != "object":
            raise ValueError(f"the blob schema uses keywords the fast check does not know: {sorted(unknown)}")
        self._required = tuple(schema.get("required", ()))
        self._fields: list[tuple[str, frozenset[type], int | None, int | None, int | None]] = []
        for name, rule in schema.get("properties", {}).items():
            unknown = set(rule) - self._FIELD_KEYWORDS
            if unknown or "type" not in rule:
                raise ValueError(f"blob property {name!r} uses keywords the fast check does not know: {sorted(unknown)}")
            names = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
            types = frozenset(_JSON_TYPES[type_name] for type_name in names)
            self._fields.append((name, types, rule.get("minLength"), rule.get("minimum"), rule.get("maximum")))

    def accepts(self, blob: Any) -> bool:
        if type(blob) is not dict:
            return False
        for name in self._required:
            if name not in blob:
                return False
        for name, types, min_length, minimum, maximum in self._fields:
            if name not in blob:
                continue
            value = blob[name]
            kind = type(value)
            if kind not in types:
                return False
            if min_length is not None and kind is str and len(value) < min_length:
                return False
            if minimum is not None and kind is int and value < minimum:
                return False
            if maximum is not None and kind is int and value > maximum:
                return False
        return True


class IngestRequestValidator:
    """The IngestRequest schema with `maxItems` of blobs set to the configured maxBlobsPerBatch; built once."""

    def __init__(self, max_blobs: int) -> None:
        schema = copy.deepcopy(_base_schema())
        schema["properties"]["blobs"]["maxItems"] = max_blobs
        self._full = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        self._blob = BlobShape(schema["properties"]["blobs"]["items"])
        without_items = copy.deepcopy(schema)
        del without_items["properties"]["blobs"]["items"]
        self._rest = Draft202012Validator(without_items, format_checker=Draft202012Validator.FORMAT_CHECKER)

    def first_error(self, body: Any) -> ValidationError | None:
        """None if `body` is valid, else jsonschema's best error."""
        blobs = body.get("blobs") if type(body) is dict else None
        if type(blobs) is list and all(self._blob.accepts(blob) for blob in blobs) and self._rest.is_valid(body):
            return None
        return best_match(self._full.iter_errors(body))


def request_validator(max_blobs: int) -> IngestRequestValidator:
    """The validator of POST bodies for a `--max-blobs-per-batch` of `max_blobs` (build it once, at start)."""
    return IngestRequestValidator(max_blobs)


def validate_request(validator: IngestRequestValidator, body: Any, max_blobs: int) -> list[tuple[str, str]]:
    """Schema check, then the rules the contract cannot express: distinct blob URLs, one kind of mapping.

    Returns (plain URL, credential) of each blob, split once here for the handler.
    """
    error = validator.first_error(body)
    if error is not None:
        location = error.json_path
        if error.validator == "maxItems" and list(error.path) == ["blobs"]:
            raise BadRequest(
                f"the request has {len(body['blobs'])} blobs; at most {max_blobs} are allowed per request "
                "(ingestionSettings.maxBlobsPerBatch in /v1/rest/ingestion/configuration)"
            )
        if error.validator == "enum" and list(error.path) == ["properties", "format"]:
            raise BadRequest(f"$.properties.format: unknown format {error.instance!r}", code="BadRequest_FormatNotSupported")
        raise BadRequest(redact(f"{location}: {error.message}"))
    urls = [split_credential(blob["url"]) for blob in body["blobs"]]
    seen: set[str] = set()
    for index, (plain, _) in enumerate(urls):
        if plain in seen:
            raise BadRequest(f"$.blobs[{index}].url: '{plain}' appears more than once in the request")
        seen.add(plain)
    properties = body["properties"]
    if properties.get("ingestionMapping") and properties.get("ingestionMappingReference"):
        raise BadRequest(
            "$.properties: set ingestionMapping or ingestionMappingReference, not both", code="BadRequest_DuplicateMapping"
        )
    return urls
