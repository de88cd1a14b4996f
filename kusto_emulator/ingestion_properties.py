"""Reading ingestion properties that arrive in any wire form: REST sends JSON values, queue messages and `.ingest` strings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from .errors import IngestionError


def tag_list(value: Any, name: str) -> list[str]:
    """Tags arrive as a JSON array (REST) or a JSON-array string (queue messages); both are accepted."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip().startswith("[") else [value]
        except ValueError:
            raise IngestionError("BadRequest_MalformedIngestionProperty", f"{name} is not a JSON array of strings") from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise IngestionError("BadRequest_MalformedIngestionProperty", f"{name} must be an array of strings")
    return value


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def parse_creation_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise IngestionError(
            "BadRequest_MalformedIngestionProperty", f"creationTime {value!r} is not an ISO 8601 date-time"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


# Property name as a queue message's AdditionalProperties or a command's `with (...)` spells it (lower case) -> the
# REST name the ingestion pipeline reads. The *Mapping* aliases are the deprecated spellings Kusto still accepts.
_PROPERTY_NAMES = {
    "format": "format",
    "ingestionmappingreference": "ingestionMappingReference",
    "mappingreference": "ingestionMappingReference",
    "csvmappingreference": "ingestionMappingReference",
    "jsonmappingreference": "ingestionMappingReference",
    "avromappingreference": "ingestionMappingReference",
    "ingestionmapping": "ingestionMapping",
    "csvmapping": "ingestionMapping",
    "jsonmapping": "ingestionMapping",
    "avromapping": "ingestionMapping",
    "tags": "tags",
    "ingestifnotexists": "ingestIfNotExists",
    "ignorefirstrecord": "ignoreFirstRecord",
    "creationtime": "creationTime",
    "zippattern": "zipPattern",
}


def job_properties(named: dict[str, Any]) -> dict[str, Any]:
    """The REST-named properties the pipeline reads, from names in any case; other names are accepted and ignored."""
    properties: dict[str, Any] = {}
    for key, value in named.items():
        name = _PROPERTY_NAMES.get(str(key).lower())
        if name is None or value is None:
            continue
        if name == "ingestionMapping" and not isinstance(value, str):
            properties[name] = json.dumps(value)
        elif name == "format" and isinstance(value, str):
            properties[name] = value.lower()
        else:
            properties[name] = value
    return properties
