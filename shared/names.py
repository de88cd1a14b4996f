"""Kusto entity names, blob names and URL path segments: checked before they go anywhere near a URL.

Database and table names come from blob paths, blob metadata and routing rules, i.e. from whoever can
write to the staging container. They end up in request paths (`/v1/rest/ingestion/queued/{db}/{table}`),
so a name is accepted only if it is a valid Kusto entity name, and every path segment is percent-encoded
with nothing left "safe": no value can add a segment, a query, a fragment or change the host.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

ENTITY_NAME_MAX_LENGTH = 1024
BLOB_NAME_MAX_LENGTH = 1024
BLOB_NAME_MAX_URL_LENGTH = 4096 - 256
"""A blob name percent-encoded as in its URL (UTF-8, '/' kept) is at most this long, so that with up to 256
characters of scheme, host and container in front the URL fits the 4096 characters the pending message and the
failure notification allow (1024 CJK characters, a valid Azure name, take 9216)."""

# Kusto entity names: letters, digits, underscore, dot, dash and space. Kusto itself also accepts non-ASCII
# letters; the app keeps to ASCII (as the pending-blob schema does) so a name reads the same in every log.
_ENTITY_NAME = re.compile(r"^[A-Za-z0-9_.\- ]+$")
ENTITY_NAME_RULE = "letters, digits, _ . - and space; 1-1024 characters; no leading or trailing space"

# A percent-encoded sequence inside a blob *name* means some tool encoded it twice or wants a later
# decoder to see a '/' or '..' that is not there: refuse it instead of guessing.
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


class InvalidNameError(ValueError):
    """A database, table or blob name cannot be used; the text names the value and the rule it breaks."""


def entity_name_problem(name: str, kind: str) -> str | None:
    """Why `name` is not a valid Kusto `kind` name (e.g. "table"), or None when it is valid."""
    if not name or not name.strip():
        return f"{name!r} is not a valid Kusto {kind} name: it is empty or only spaces"
    if len(name) > ENTITY_NAME_MAX_LENGTH:
        return f"{name[:64]!r}... is not a valid Kusto {kind} name: longer than {ENTITY_NAME_MAX_LENGTH} characters"
    if not _ENTITY_NAME.match(name) or name != name.strip():
        return f"{name!r} is not a valid Kusto {kind} name ({ENTITY_NAME_RULE})"
    return None


def check_entity_name(name: str, kind: str) -> str:
    """Return `name` when it is a valid Kusto `kind` name; raise InvalidNameError saying why otherwise."""
    problem = entity_name_problem(name, kind)
    if problem is not None:
        raise InvalidNameError(problem)
    return name


def has_control_characters(text: str) -> bool:
    """True when `text` holds a control character (C0, DEL, C1) or a line/paragraph separator."""
    return any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in text)


_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """`text` with each control, format (bidi, zero-width), surrogate and line/paragraph separator character
    replaced by a visible escape (`\\n`, `\\x1b`, `\\u202e`), so a name or untrusted text printed in a log line, an
    alert or a chat message can neither start a line of its own nor reorder what is shown around it.

    Used on every log record (`shared.redaction`) and on alert and webhook texts. A backslash is left as it
    is (paths and patterns stay readable), so an escape and the same characters typed literally look alike:
    nothing here can be mistaken for a real line break. Text that needs no escape comes back unchanged, fast.
    """
    if text.isprintable():
        return text
    category = unicodedata.category
    return "".join(char if char.isprintable() or category(char) not in _ESCAPED_CATEGORIES else _escape(char) for char in text)


def has_lone_surrogate(text: str) -> bool:
    """True when `text` holds a lone surrogate (e.g. from a JSON `\\ud800` escape): it is not UTF-8 text, and
    encoding it for a queue message or a URL raises."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def blob_name_problem(name: str) -> str | None:
    """Why a blob name is refused, or None when it is usable.

    Azure accepts almost any name, but a name that carries URL syntax (`?`, `#`), a percent-escape, a
    backslash, a `.`/`..` segment, an empty segment or a control character would be read differently by
    the next tool that builds or parses a URL from it; such blobs are reported, not routed.
    """
    if not name:
        return "the blob name is empty"
    if len(name) > BLOB_NAME_MAX_LENGTH:
        return f"the blob name is longer than {BLOB_NAME_MAX_LENGTH} characters"
    if has_control_characters(name):
        return "the blob name contains a control character"
    if has_lone_surrogate(name):
        return "the blob name contains a lone surrogate (it is not UTF-8 text)"
    if len(name) > BLOB_NAME_MAX_URL_LENGTH // 12:  # shorter names cannot exceed it: one character is 12 at most
        encoded = len(quote(name, safe="/~"))
        if encoded > BLOB_NAME_MAX_URL_LENGTH:
            return f"the blob name is {encoded} characters percent-encoded in its URL; at most {BLOB_NAME_MAX_URL_LENGTH} fit"
    for char in ("?", "#", "\\"):
        if char in name:
            return f"the blob name contains {char!r}"
    escape = _PERCENT_ESCAPE.search(name)
    if escape:
        return f"the blob name contains the percent-escape {escape.group(0)!r}"
    for segment in name.split("/"):
        if segment in (".", ".."):
            return f"the blob name contains a {segment!r} path segment"
        if segment == "":
            return "the blob name contains an empty path segment (a leading, trailing or double '/')"
    return None


def quote_path_segment(segment: str) -> str:
    """Percent-encode one URL path segment (UTF-8), leaving nothing unescaped that could end or add a segment.

    Used by every client that puts a name into a request path. An empty, `.` or `..` segment is refused
    because servers and proxies normalise it away, which would change the path the request goes to.
    """
    if segment in ("", ".", ".."):
        raise InvalidNameError(f"{segment!r} cannot be used as a URL path segment")
    return quote(segment, safe="")


QUOTED_LIMIT = 60
"""How much of a value an error message quotes: enough to recognise it, never a page of it."""


def quoted(value: str) -> str:
    """A value quoted for an error message: one line (repr escapes control characters), cut to a readable length."""
    return repr(value) if len(value) <= QUOTED_LIMIT else f"{value[:QUOTED_LIMIT]!r}..."
