"""Settings under hostile values: `load_settings` returns Settings or raises one line naming the setting, nothing else.

Each property loads a valid base plus one generated value and accepts only two outcomes: Settings, or a
SettingsError whose message is one line and names the setting. Any other exception (RecursionError,
UnicodeEncodeError, a ValueError from int() or urlsplit...) fails the test. Where a value is accepted, the
properties also check that it means what a client would make of it: numbers in plain digits, schedules the
local host's croniter runs at the times the settings parsed, webhook hosts that are no metadata address
however a client parses them, strict GUIDs, queue-mode report settings the submitter can send.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import socket
from datetime import UTC, datetime
from urllib.parse import urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from devhost.ncrontab import NcrontabSchedule
from shared.ncrontab import parse_ncrontab
from shared.queue_submitter import REPORT_LEVEL_CODES, REPORT_METHOD_CODES
from shared.settings import SETTING_NAMES, Settings, SettingsError, check_queue_report_settings, load_settings

LOCAL = {
    "StagingStorage": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;",
    "KUSTO_INGEST_URI": "http://127.0.0.1:8082",
    "KUSTO_CREDENTIAL": "none",
}
AZURE = {
    "StagingStorage__blobServiceUri": "https://acct.blob.core.windows.net",
    "StagingStorage__queueServiceUri": "https://acct.queue.core.windows.net",
    "StagingStorage__credential": "managedidentity",
    "KUSTO_INGEST_URI": "https://ingest-c.westeurope.kusto.windows.net",
}
NUMBERS = (
    "DRAIN_TIME_BUDGET_SECONDS",
    "SUBMIT_CONCURRENCY",
    "MAX_BLOBS_PER_BATCH",
    "PENDING_VISIBILITY_TIMEOUT_SECONDS",
    "PENDING_MAX_DEQUEUE_COUNT",
    "PENDING_MAX_AGE_SECONDS",
    "KUSTO_REQUEST_TIMEOUT_SECONDS",
    "SAS_LIFETIME_MINUTES",
    "TRACKING_HORIZON_SECONDS",
    "TRACKING_POLL_INITIAL_SECONDS",
    "TRACKING_POLL_MAX_SECONDS",
    "TRACKING_MAX_PER_RUN",
    "RESUBMIT_MAX_ATTEMPTS",
    "ALERT_DIGEST_WINDOW_SECONDS",
    "DUPLICATE_WINDOW_SECONDS",
)
SCHEDULES = ("SUBMIT_SCHEDULE", "TRACK_SCHEDULE", "HOUSEKEEPING_SCHEDULE")
GUIDS = ("MANAGED_IDENTITY_CLIENT_ID", "BLOB_ACCESS_IDENTITY", "StagingStorage__clientId")
CANONICAL_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
ASCII_SPACE = " \t\r\n\f\v"

ANY_CHAR = st.characters(exclude_categories=())
"""Every code point, lone surrogates included (an environment variable may carry them)."""
FRAGMENTS = (
    "",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\x00",
    "\x85",
    "\u2028",
    "\u00a0",
    "\u200b",
    "\ufeff",
    "\ud800",
    "\u0661\u0662",
    "\uff11",
    "1_0",
    "+1",
    "-",
    "0x1f",
    "1e3",
    "nan",
    "*",
    "/",
    "\\",
    "%",
    "@",
    "[",
    "{",
    ":",
    ";",
    "=",
    "169.254.169.254",
    "http://",
    "https://",
    "true",
    "None",
)
HOSTILE_TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=40),
    st.sampled_from(FRAGMENTS),
    st.lists(st.sampled_from(FRAGMENTS) | st.text(ANY_CHAR, max_size=4), max_size=8).map("".join),
    st.builds(
        lambda text, count: text * count,
        st.sampled_from(("[", "{", "x", "9", "-", "*/", ".", "a.", "0,")),
        st.integers(100, 20_000),
    ),
)


def base_for(name: str) -> dict[str, str]:
    """A valid base in which `name` is read: the identity form for the StagingStorage__* settings."""
    return dict(AZURE) if name.startswith("StagingStorage__") else dict(LOCAL)


def load(values: dict[str, str], name: str) -> Settings | None:
    """Settings, or None after checking that the SettingsError is one line naming `name`; anything else fails."""
    try:
        return load_settings(values)
    except SettingsError as error:
        message = str(error)
        assert len(message.splitlines()) == 1, message
        assert "\n" not in message and "\r" not in message, message
        assert name in message, message
        return None


@settings(max_examples=1000, deadline=None)
@given(name=st.sampled_from(sorted(SETTING_NAMES)), value=HOSTILE_TEXT)
def test_any_text_in_any_setting_loads_or_is_named_in_one_line(name: str, value: str) -> None:
    load(base_for(name) | {name: value}, name)


NUMBER_TEXT = st.one_of(
    st.integers(-(10**6), 10**20).map(str),
    st.floats().map(str),
    st.decimals(allow_nan=True).map(str),
    st.text(st.sampled_from("0123456789-+._eExX \t\n\u00a0\u2003\u0661\u06f1\uff10\u00b2"), max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(NUMBERS), value=NUMBER_TEXT)
def test_an_accepted_number_is_written_in_plain_ascii_digits(name: str, value: str) -> None:
    loaded = load(LOCAL | {name: value}, name)
    text = value.strip(ASCII_SPACE)
    if loaded is not None and text:
        assert re.fullmatch(r"[0-9]+(\.[0-9]+)?", text), value
        assert getattr(loaded, name.lower()) == float(text)


SCHEDULE_TOKENS = (
    *("*", "*/5", "*/0", "0", "7", "13", "29", "31", "59", "60", "-1", "5-2", "1-1", "1-5/2", "0,30", ",", "00", "007"),
    *("L", "?", "5#2", "1W", "H", "mon", "MON-fri", "monday", "jan", "Feb", "jan-mar/2", "sun", "sat", "\u0663", "\uff10"),
)
SCHEDULE_FIELD = st.one_of(
    st.sampled_from(SCHEDULE_TOKENS),
    st.integers(0, 70).map(str),
    st.builds("{}-{}/{}".format, st.integers(0, 62), st.integers(0, 62), st.integers(0, 62)),
    st.text(st.sampled_from("0123456789*,-/LW#?abcdefjmnorstuvwy"), min_size=1, max_size=6),
)
RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def valid_field(low: int, high: int) -> st.SearchStrategy[str]:
    """One NCRONTAB field built to be valid: *, n, a-b, each with an optional step, or a list of them."""
    value = st.integers(low, high)
    item = st.one_of(
        st.just("*"),
        value.map(str),
        st.tuples(value, value).map(lambda pair: f"{min(pair)}-{max(pair)}"),
        st.builds("*/{}".format, st.integers(1, high - low + 1)),
        st.builds("{}/{}".format, value, st.integers(1, high - low + 1)),
    )
    return st.lists(item, min_size=1, max_size=3).map(",".join)


VALID_SCHEDULE = st.tuples(*(valid_field(low, high) for low, high in RANGES)).map(" ".join)
SCHEDULE_TEXT = st.one_of(
    VALID_SCHEDULE,
    VALID_SCHEDULE.map(lambda text: text.split(" ", 1)[1]),  # five fields: no seconds
    st.builds(
        lambda fields, separator: separator.join(fields),
        st.lists(SCHEDULE_FIELD, min_size=4, max_size=7),
        st.sampled_from((" ", " ", " ", "  ", "\t", "\u00a0")),
    ),
    st.sampled_from(("00:05:00", "1.00:00:00", "@daily", "")),
)
START = datetime(2026, 1, 1, tzinfo=UTC)


def matches(moment: datetime, fields: tuple[frozenset[int], ...]) -> bool:
    seconds, minutes, hours, days, months, weekdays = fields
    weekday = (moment.weekday() + 1) % 7  # NCRONTAB: Sunday = 0
    return (
        moment.second in seconds
        and moment.minute in minutes
        and moment.hour in hours
        and moment.day in days
        and moment.month in months
        and weekday in weekdays
    )


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(SCHEDULES), value=SCHEDULE_TEXT)
def test_an_accepted_schedule_runs_locally_at_the_times_the_settings_parsed(name: str, value: str) -> None:
    loaded = load(LOCAL | {name: value}, name)
    if loaded is None or not value.strip(ASCII_SPACE):
        return
    schedule = getattr(loaded, name.lower())
    fields = parse_ncrontab(schedule)
    # devhost runs schedules with croniter: it must take every schedule the settings take, at those times.
    moment = START
    for _ in range(3):
        moment = NcrontabSchedule(schedule).next_after(moment)
        assert matches(moment, fields), (schedule, moment)


def ipv4_forms(number: int) -> st.SearchStrategy[str]:
    """Ways to write one IPv4 address that some client parses: dotted quad, decimal, hex, octal, short forms."""
    a, b, c, d = ipaddress.IPv4Address(number).packed
    return st.sampled_from(
        (
            f"{a}.{b}.{c}.{d}",
            str(number),
            hex(number),
            hex(number).upper().replace("0X", "0x"),
            f"0{a:o}.0{b:o}.0{c:o}.0{d:o}",
            f"{a}.{(b << 16) | (c << 8) | d}",
            f"{a}.{b}.{(c << 8) | d}",
            f"[::ffff:{a}.{b}.{c}.{d}]",
            f"[::ffff:{number >> 16:x}:{number & 0xFFFF:x}]",
            f"[::{a}.{b}.{c}.{d}]",
            f"[64:ff9b::{a}.{b}.{c}.{d}]",
            f"[2002:{number >> 16:x}:{number & 0xFFFF:x}::1]",
            f"{a}.{b}.{c}.{d}.",
        )
    )


INTERESTING_IPV4 = st.sampled_from(
    [int(ipaddress.IPv4Address(a)) for a in ("169.254.169.254", "168.63.129.16", "127.0.0.1", "0.0.0.0", "10.0.0.1")]
    + [int(ipaddress.IPv4Address(a)) for a in ("224.0.0.1", "255.255.255.255", "20.50.1.2", "169.254.0.1")]
)
HOSTS = st.one_of(
    (INTERESTING_IPV4 | st.integers(0, 2**32 - 1)).flatmap(ipv4_forms),
    st.sampled_from(("[::1]", "[::]", "[fe80::1]", "[fe80::1%25eth0]", "[ff02::1]", "[2001:db8::1]", "[v1.x]", "[::1")),
    st.sampled_from(("localhost", "LOCALHOST", "localhost.", "x.localhost", "hooks.slack.com", "example.com", "-a.com")),
    st.text(st.sampled_from("abcxyz0123456789.-_%@[]:\\\u00a0\uff11\u3002"), min_size=1, max_size=20),
)
URLS = st.builds(
    "{}://{}{}{}".format,
    st.sampled_from(("http", "https", "HTTPS", "ftp")),
    HOSTS,
    st.sampled_from(("", ":443", ":8080", ":0", ":99999", ":", ":x")),
    st.sampled_from(("/", "/services/T/B/secret", "?sig=secret", "")),
)


def client_addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address a client could read from the host, including glibc's inet_aton forms and embedded IPv4."""
    name = host.rstrip(".")
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    with contextlib.suppress(ValueError):
        found.append(ipaddress.ip_address(name.split("%")[0]))
    with contextlib.suppress(OSError, ValueError, UnicodeError):
        found.append(ipaddress.IPv4Address(socket.inet_aton(name)))  # glibc's reading: 2852039166, 0xa9fea9fe, 127.1
    for address in list(found):
        if isinstance(address, ipaddress.IPv6Address):
            found.extend(a for a in (address.ipv4_mapped, address.sixtofour) if a is not None)
            compatible = int(address) >> 32 == 0 and int(address) > 1  # ::a.b.c.d, but not :: or ::1
            if compatible or address in ipaddress.IPv6Network("64:ff9b::/96"):
                found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def forbidden_everywhere(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv4Address) and (address.is_reserved or address in ipaddress.IPv4Network("0.0.0.0/8")):
        return True
    return (
        address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address == ipaddress.IPv4Address("168.63.129.16")
    )


@settings(max_examples=600, deadline=None)
@given(url=URLS, in_azure=st.booleans())
def test_an_accepted_webhook_is_no_metadata_address_however_a_client_reads_its_host(url: str, in_azure: bool) -> None:
    name = "ALERT_WEBHOOK_URL"
    loaded = load((AZURE if in_azure else LOCAL) | {name: url}, name)
    if loaded is None:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    addresses = client_addresses(host)
    assert not any(forbidden_everywhere(address) for address in addresses), url
    this_machine = host.rstrip(".") == "localhost" or host.endswith(".localhost") or any(a.is_loopback for a in addresses)
    if in_azure:
        assert parts.scheme == "https" and not this_machine, url
    elif parts.scheme == "http":
        assert this_machine, url


GUID_TEXT = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda value: str(value).upper()),
    st.uuids().map(lambda value: "{" + str(value) + "}"),
    st.uuids().map(lambda value: value.hex),
    st.builds(lambda value, at, char: str(value)[:at] + char + str(value)[at + 1 :], st.uuids(), st.integers(0, 35), ANY_CHAR),
    st.text(st.sampled_from("0123456789abcdefABCDEFg-{}\u0661\uff10"), min_size=30, max_size=40),
    st.just("-" * 36),
    st.just("00000000-0000-0000-0000-000000000000"),
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(GUIDS), value=GUID_TEXT)
def test_an_accepted_guid_is_canonical(name: str, value: str) -> None:
    loaded = load(base_for(name) | {name: value}, name)
    text = value.strip(ASCII_SPACE)
    if loaded is not None and text and text != "system":
        assert CANONICAL_GUID.fullmatch(text) and text.strip("0-"), value


REPORT_TEXT = st.one_of(
    st.sampled_from(("FailuresOnly", "None", "FailuresAndSuccesses", "Queue", "Table", "QueueAndTable", "none", "TABLE")),
    st.sampled_from(("DoNotReport", "All", "1", "\u0131", "Non\u0435")),
    st.text(ANY_CHAR, max_size=8),
)


@settings(max_examples=200, deadline=None)
@given(level=REPORT_TEXT, method=REPORT_TEXT)
def test_accepted_queue_mode_report_settings_are_ones_the_submitter_sends(level: str, method: str) -> None:
    values = LOCAL | {"SUBMISSION_MODE": "queue", "REPORT_LEVEL": level, "REPORT_METHOD": method}
    try:
        loaded = load_settings(values)
    except SettingsError as error:
        message = str(error)
        assert len(message.splitlines()) == 1 and ("REPORT_LEVEL" in message or "REPORT_METHOD" in message), message
        return
    assert loaded.report_level in REPORT_LEVEL_CODES and loaded.report_method in REPORT_METHOD_CODES
    check_queue_report_settings(loaded.report_level, loaded.report_method)  # the queue-mode guard agrees


RULES_TEXT = st.one_of(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(ANY_CHAR, max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=20,
    ).map(lambda value: json.dumps(value, ensure_ascii=False)),
    st.builds(
        lambda opener, count: opener * count, st.sampled_from(("[", "{", '{"a":', "[{", '["\\"[')), st.integers(1, 100_000)
    ),
    st.builds(lambda count: "[" * count + "]" * count, st.integers(0, 64)),
    st.builds(lambda digits: f"[{'9' * digits}]", st.integers(4000, 5000)),
    st.sampled_from(("[NaN]", "[Infinity]", '[{"a": 1, "a": 2}]', "/dev/zero", "/", "\x00", "\ud800.json", "~/rules.json")),
    HOSTILE_TEXT,
)


@settings(max_examples=150, deadline=None)
@given(value=RULES_TEXT)
def test_routing_rules_of_any_shape_or_depth_load_or_are_named(value: str) -> None:
    loaded = load(LOCAL | {"ROUTING_RULES": value}, "ROUTING_RULES")
    if loaded is not None:
        assert isinstance(loaded.routing_rules, tuple)
