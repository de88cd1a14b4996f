"""Checks on the URLs the app is told to call, in one place so that every caller draws the same lines.

The settings hand URLs to HTTP clients: the storage endpoints, the Kusto ingestion endpoint, the alert webhook.
Each must name the same host to the check as to the client (no numeric-host tricks, credentials or zone ids) and
must not point where no setting may (cloud metadata, Azure's WireServer, link-local addresses). Whether a URL is
this machine decides where local shortcuts (keyless Kusto, plain http) are allowed; the Kusto client and devhost
ask that too, and `is_loopback_url` is the one answer all of them get.

The checks raise `UrlError`, not `shared.settings.SettingsError`: they know neither which setting holds the URL
nor how to fix it, so `shared.settings` turns each into a SettingsError that names both. This module therefore
imports nothing from the settings (no import cycle), and modules that read no setting can use it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from urllib.parse import SplitResult, urlsplit

from shared.names import quoted

URL_TEXT = re.compile(r"[!-~]+")
"""A URL is printable ASCII without spaces: no IDN or fullwidth tricks a client would normalize into another host."""
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
"""A last label like these makes clients read the host as an IPv4 number (WHATWG's "ends in a number")."""
_AZURE_WIRESERVER = ipaddress.IPv4Address("168.63.129.16")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlError(ValueError):
    """A URL no client should be handed, or one a client could read differently; the message says why (it names
    no setting)."""


class _HostError(ValueError):
    """A URL's host no client should be handed; the message says why."""


def _url_host(parts: SplitResult) -> tuple[str, _IPAddress | None]:
    """The URL's host as a client reads it: its name without a trailing dot, and its address when it is an IP literal.

    Numeric hosts other than a dotted quad (2852039166, 0xa9fea9fe, 0251.0376.0251.0376, 169.254.43518) are
    refused: clients read them as IPv4 addresses, and a check that did not would be bypassed.
    """
    host = parts.hostname or ""
    if "[" in parts.netloc:
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise _HostError(f"host [{quoted(host)}] is not an IPv6 address") from None
        if address.scope_id:
            raise _HostError("an IPv6 zone id (%...) is not allowed in the host")
        return host, address
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise _HostError(f"host {quoted(host)} is not a valid host name")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        try:
            return name, ipaddress.IPv4Address(name)
        except ValueError:
            raise _HostError(
                f"host {quoted(host)} is a number but not a dotted-quad IPv4 address (a.b.c.d in decimal, no leading zeros)"
            ) from None
    return name, None


def _addresses(address: _IPAddress) -> list[_IPAddress]:
    """The address and every IPv4 address it carries (IPv4-mapped, IPv4-compatible, 6to4, NAT64): each is checked."""
    found: list[_IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        number = int(address)
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if (number >> 32 == 0 and number > 1) or address in _NAT64:
            found.append(ipaddress.IPv4Address(number & 0xFFFFFFFF))
    return found


def _address_problem(address: _IPAddress) -> str | None:
    """Why no URL setting may point at `address` (cloud metadata, link-local, unspecified, ...), or None.

    Loopback is not among them: each URL setting decides itself where this machine is allowed."""
    for candidate in _addresses(address):
        address_text = f"{address} (carrying {candidate})" if candidate != address else str(address)
        if candidate == _AZURE_WIRESERVER:
            return f"host {address_text} is Azure's WireServer (168.63.129.16), which no app setting may point at"
        if candidate.is_unspecified or (isinstance(candidate, ipaddress.IPv4Address) and candidate in _THIS_NETWORK):
            return f"host {address_text} is an unspecified address (0.0.0.0/8 or ::)"
        if candidate.is_link_local:
            return f"host {address_text} is link-local (169.254.0.0/16, fe80::/10: cloud metadata endpoints live there)"
        if candidate.is_multicast:
            return f"host {address_text} is a multicast address"
        if isinstance(candidate, ipaddress.IPv4Address) and candidate.is_reserved:
            return f"host {address_text} is a reserved or broadcast address"
        if isinstance(candidate, ipaddress.IPv6Address) and candidate.is_site_local:
            return f"host {address_text} is a site-local address"
    return None


Resolver = Callable[[str, int], Iterable[str]]
"""Host name and port -> the addresses a client would connect to."""


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the operating system resolves `host` to, as a client connecting now would get them."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)]


def resolved_address_problem(url: str, resolve: Resolver = system_resolver) -> str | None:
    """Why no request may go to `url` now: its host name resolves to an address no URL setting may point at.

    The settings check refuses such addresses when they are written in the URL; a name that resolves to one
    (`169.254.169.254.nip.io`, or a name whose record changed since) is caught here, just before the request.
    A name that does not resolve is left to the request itself, which then fails on its own.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        addresses = list(resolve(host, parts.port or (443 if parts.scheme == "https" else 80)))
    except (OSError, UnicodeError):
        return None
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        problem = _address_problem(address)
        if problem is not None:
            return f"{host} resolves to {problem.removeprefix('host ')}"
    return None


def is_loopback_url(url: str) -> bool:
    """True when the URL points at this machine: the only place keyless access is allowed."""
    try:
        host, address = _url_host(urlsplit(url))
    except ValueError:
        return False
    if address is None:
        return host == "localhost"
    return any(candidate.is_loopback for candidate in _addresses(address))


def checked_url(url: str, *, subject: str | None = None, secret: bool = False) -> tuple[SplitResult, str]:
    """Split an http(s) URL, refusing what a client could read differently or should never call.

    Returns the split URL and its host name; raises UrlError otherwise. `subject` names the URL in the errors
    (a part of a setting, say); a secret URL (the webhook's) is never quoted.
    """
    prefix = f"{subject}: " if subject else ""
    subject = subject or ("the URL" if secret else quoted(url))
    if not URL_TEXT.fullmatch(url) or "\\" in url:
        raise UrlError(f"{subject} may only hold printable ASCII without spaces or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlError(f"{subject} is not a valid URL (its host brackets or port are malformed)") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UrlError(f"{subject} is not an http(s) URL")
    if "@" in parts.netloc:
        raise UrlError(f"{subject} carries credentials before its host (user@host); leave them out")
    if port == 0:
        raise UrlError(f"{prefix}port 0 cannot be called")
    try:
        host, address = _url_host(parts)
    except _HostError as error:
        raise UrlError(f"{prefix}{error}") from None
    problem = _address_problem(address) if address is not None else None
    if problem is not None:
        raise UrlError(f"{prefix}{problem}")
    return parts, host
