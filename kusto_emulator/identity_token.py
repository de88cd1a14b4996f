"""The Kusto identity token (`.get kusto identity token`): issued by the emulator, checked on every queue message.

Queue messages reach the ingestion service without an HTTP request, so Kusto authorises them with a signed
token the client got earlier and copies into `AdditionalProperties.authorizationContext`. The emulator's
token is `kusto-emulator.<claims>.<signature>`: base64url JSON claims (issue and expiry times) and an
HMAC-SHA256 over them. The key is kept in the data directory, so tokens stay valid across a restart, as
the SDKs cache them for an hour.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

TOKEN_PREFIX = "kusto-emulator"  # noqa: S105 - a label that starts every token, not a secret
DEFAULT_LIFETIME_SECONDS = 12 * 3600
KEY_FILE_NAME = "identity-token.key"


class InvalidIdentityTokenError(ValueError):
    """The token is missing, malformed, not signed by this emulator, or expired; the message says which."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(data_dir: Path) -> bytes:
    """The signing key in `data_dir` (created with owner-only permissions on first start)."""
    path = data_dir / KEY_FILE_NAME
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key.hex())
    return key


class IdentityTokens:
    """Issues and verifies identity tokens signed with one key."""

    def __init__(self, key: bytes, lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS) -> None:
        self._key = key
        self._lifetime = lifetime_seconds

    def _sign(self, claims_part: str) -> str:
        return _b64encode(hmac.new(self._key, f"{TOKEN_PREFIX}.{claims_part}".encode(), hashlib.sha256).digest())

    def issue(self, now: float | None = None, lifetime_seconds: int | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": TOKEN_PREFIX,
            "iat": issued,
            "exp": issued + (self._lifetime if lifetime_seconds is None else lifetime_seconds),
        }
        claims_part = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
        return f"{TOKEN_PREFIX}.{claims_part}.{self._sign(claims_part)}"

    def verify(self, token: object, now: float | None = None) -> None:
        """Return if `token` was issued by this emulator and has not expired; else InvalidIdentityTokenError."""
        if not isinstance(token, str) or not token:
            raise InvalidIdentityTokenError(
                "AdditionalProperties.authorizationContext is missing: get one with '.get kusto identity token'"
            )
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise InvalidIdentityTokenError("the identity token is not one this emulator issued (wrong format)")
        if not hmac.compare_digest(parts[2], self._sign(parts[1])):
            raise InvalidIdentityTokenError(
                "the identity token's signature does not match: it was altered or issued by another emulator"
            )
        try:
            claims = json.loads(_b64decode(parts[1]))
            expires = int(claims["exp"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise InvalidIdentityTokenError("the identity token's claims cannot be read") from None
        if (time.time() if now is None else now) >= expires:
            raise InvalidIdentityTokenError("the identity token has expired: get a new one with '.get kusto identity token'")
