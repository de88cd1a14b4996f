"""The pieces of management-command syntax every command module shares: names, string literals, `with (...)`.

Kusto reads string literals in commands as it does in queries (where `kql_statements.py` steps over them to
find where statements end): `'...'` and `"..."` with backslash escapes, `@'...'` verbatim, ```` ```...``` ````
multi-line, and any of them prefixed with `h` (obfuscated: the service keeps it out of its traces). Adjacent
literals concatenate, which is how long values are split over lines: `.create table T ingestion json mapping
'M' '[' '{...},' ']'` names the mapping `[{...},]`.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import SyntaxError_

NAME = r"""(?:\[\s*'[^']*'\s*\]|\[\s*"[^"]*"\s*\]|[A-Za-z0-9_][A-Za-z0-9_.\-]*)"""
STRING = r"""(?:[hH]?@'[^']*'|[hH]?@"[^"]*"|[hH]?'(?:[^'\\]|\\.)*'|[hH]?"(?:[^"\\]|\\.)*"|```.*?```)"""
STRINGS = rf"""(?:{STRING}(?:\s*{STRING})*)"""
"""One string value: a literal, or several adjacent literals that Kusto concatenates."""
PROPERTIES = rf"""(?:{STRING}|[^()'"`]|\([^()'"`]*\))*+"""
"""The inside of `with (...)`: name = value pairs whose values may be strings holding parentheses (possessive: a
command that does not match fails at once instead of backtracking through every way to split its text)."""

_STRING = re.compile(STRING, re.DOTALL)
_STRINGS = re.compile(STRINGS, re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def entity(text: str) -> str:
    """`['My Table']` / `["x"]` / `x` -> the bare name."""
    text = text.strip()
    if text.startswith("["):
        return text[1:-1].strip()[1:-1]
    return text


def string_literal(text: str) -> str:
    """The value of one Kusto string literal: '...' or "..." (backslash escapes), @'...' verbatim, ```...```, h'...'."""
    if text[:1] in ("h", "H"):
        text = text[1:]
    if text.startswith("```"):
        return text[3:-3]
    if text.startswith("@"):
        return text[2:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text[1:-1])


def string_value(text: str) -> str:
    """The value of adjacent string literals (`'[' '{...}' ']'`), concatenated as Kusto does."""
    return "".join(string_literal(match.group(0)) for match in _STRING.finditer(text))


def _split_top_level(text: str) -> list[str]:
    """`text` cut at the commas that are outside string literals."""
    parts: list[str] = []
    start = position = 0
    while position < len(text):
        match = _STRING.match(text, position)
        if match:
            position = match.end()
        elif text[position] == ",":
            parts.append(text[start:position])
            start = position = position + 1
        else:
            position += 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def string_list(text: str) -> list[str]:
    """The values of a comma-separated list of string literals, e.g. the sources of `.ingest into`."""
    return [string_value(part) for part in _split_top_level(text)]


def _property_value(text: str) -> Any:
    if _STRINGS.fullmatch(text):
        return string_value(text)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def with_properties(text: str | None) -> dict[str, Any]:
    """The `name = value` pairs inside `with (...)`: strings unquoted, true/false as bools, integers as ints."""
    properties: dict[str, Any] = {}
    for part in _split_top_level(text or ""):
        name, equals, value = part.partition("=")
        if not equals or not re.fullmatch(r"\s*[A-Za-z_]\w*\s*", name):
            raise SyntaxError_(f"'{part[:100]}' in with(...) is not 'name = value'")
        properties[name.strip()] = _property_value(value.strip())
    return properties
