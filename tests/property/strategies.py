"""Hypothesis strategies shared by the property tests: hostile text, odd date-times and odd JSON.

Every strategy mixes a few hand-picked values that broke (or nearly broke) the app with generated ones, so a
short run still tries the known edges: lone surrogates, control characters, non-ASCII digits, year 1 and 9999
with a +-14:00 offset, leap seconds, deep nesting, huge integers, NaN and Infinity.
"""

from __future__ import annotations

import json
from datetime import timedelta, timezone

from hypothesis import strategies as st

ANY_CHAR = st.characters(exclude_categories=())
"""Any code point, lone surrogates included (Hypothesis leaves them out by default)."""

NASTY_FRAGMENTS = (
    "",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\x00",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\u200d",
    "\ud800",
    "\udfff",
    "\U0001f600",
    "日本",
    "é",
    "İ",
    "٢٠٢٤",
    "\uff12\uff10\uff12\uff14",
    "%2f",
    "%",
    "?",
    "#",
    "\\",
    "/",
    ".",
    "..",
    "{",
    "}",
    "*",
    '"',
    "'",
)

ANY_TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=24),
    st.sampled_from(NASTY_FRAGMENTS),
    st.lists(st.sampled_from(NASTY_FRAGMENTS) | st.text(max_size=6), max_size=6).map("".join),
)
HUGE_TEXT = st.builds(
    lambda char, count: char * count, st.sampled_from(("x", "é", "\U0001f600", " ", "[")), st.integers(1000, 9000)
)

_DIGITS = {
    "ascii": "0123456789",
    "arabic-indic": "٠١٢٣٤٥٦٧٨٩",
    "fullwidth": "".join(chr(0xFF10 + digit) for digit in range(10)),
    "devanagari": "०१२३४५६७८९",
}


def _with_digits(text: str, digits: str) -> str:
    return text.translate(str.maketrans("0123456789", digits))


@st.composite
def _handmade_datetime(draw: st.DrawFn) -> str:
    year = draw(st.sampled_from((1, 2, 1969, 1970, 2024, 9998, 9999)) | st.integers(0, 10_000))
    month = draw(st.sampled_from((1, 2, 12)) | st.integers(0, 13))
    day = draw(st.sampled_from((1, 28, 29, 30, 31)) | st.integers(0, 32))
    hour = draw(st.sampled_from((0, 23, 24)) | st.integers(0, 25))
    minute = draw(st.sampled_from((0, 59)) | st.integers(0, 60))
    second = draw(st.sampled_from((0, 59, 60)) | st.integers(0, 61))
    fraction = draw(st.sampled_from(("", ".5", ".123456", ".1234567", ".000000001", ",5")))
    offset = draw(
        st.sampled_from(
            ("", "Z", "z", "+00:00", "-00:00", "+14:00", "-14:00", "+23:59", "-23:59", "+24:00", "+0530", "+05:30:15", "+05")
        )
    )
    separator = draw(st.sampled_from(("T", "t", " ", "_")))
    text = f"{year:04d}-{month:02d}-{day:02d}{separator}{hour:02d}:{minute:02d}:{second:02d}{fraction}{offset}"
    return _with_digits(text, draw(st.sampled_from(tuple(_DIGITS.values()))))


_OFFSETS = st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)).map(
    lambda delta: timezone(timedelta(minutes=round(delta.total_seconds() / 60)))
)

DATETIME_TEXT = st.one_of(
    _handmade_datetime(),
    st.datetimes(timezones=st.none() | _OFFSETS).map(lambda moment: moment.isoformat()),
    st.datetimes(timezones=_OFFSETS).map(lambda moment: moment.isoformat().replace("+00:00", "Z")),
    st.sampled_from(
        (
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "2016-12-31T23:59:60Z",
            "2024-02-29T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01t00:00:00z",
            "2024-01-01T00:00:00z",
            "2024-01-01",
            "20240101T000000Z",
            "2024-W01-1",
            "2024-01-01T00",
        )
    ),
)
"""Texts that look more or less like an ISO 8601 / RFC 3339 date-time."""

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from((0, -1, 2**63 - 1, 2**63, -(2**63) - 1, 10**300)),
    st.floats(),
    ANY_TEXT,
    DATETIME_TEXT,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4),
    max_leaves=12,
)
"""JSON-like Python values, NaN and Infinity included (json.dumps writes them as NaN and Infinity)."""

JSON_ODDITIES = st.sampled_from(
    (
        "[" * 100_000,
        "[" * 990 + "]" * 990,
        "{" + '"a":{' * 2000 + "}" * 2001,
        "1" * 5000,
        "[" + "9" * 4301 + "]",
        "-" + "1" * 10_000,
        "1e400",
        "-1e400",
        "NaN",
        "Infinity",
        "-Infinity",
        '{"a": NaN}',
        '"\\ud800"',
        '"\\udfff\\ud800"',
        '"\\ud83d\\ude00"',
        '{"\\ud800": 1}',
        "\ufeff{}",
        "\ud800",
        '{"a": 1, "a": 2}',
        "",
        " ",
        "null",
        "[]",
        "{}",
    )
)
"""JSON-ish texts that break naive decoders: deep nesting, huge numbers, non-standard constants, lone surrogates."""


def json_text(values: st.SearchStrategy[object] = JSON_VALUES) -> st.SearchStrategy[str]:
    """Text of a JSON document built from `values`, as a writer that allows NaN and lone surrogates would write it."""
    return values.map(lambda value: json.dumps(value, ensure_ascii=False)) | values.map(json.dumps)
