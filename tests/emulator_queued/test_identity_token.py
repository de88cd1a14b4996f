"""The identity token: issued by `.get kusto identity token`, verified on every queue message."""

from __future__ import annotations

from pathlib import Path

import pytest

from kusto_emulator.identity_token import IdentityTokens, InvalidIdentityTokenError, load_or_create_key


def test_a_fresh_token_verifies() -> None:
    tokens = IdentityTokens(b"k" * 32)
    tokens.verify(tokens.issue())


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "signature"),
        (lambda token: token.replace(".", ".x", 1), "signature"),
        (lambda token: "Bearer " + token, "format"),
        (lambda token: "", "missing"),
    ],
)
def test_altered_tokens_are_refused(mangle, reason: str) -> None:
    tokens = IdentityTokens(b"k" * 32)
    with pytest.raises(InvalidIdentityTokenError, match=reason):
        tokens.verify(mangle(tokens.issue()))


def test_tokens_of_another_key_and_expired_tokens_are_refused() -> None:
    tokens = IdentityTokens(b"k" * 32)
    with pytest.raises(InvalidIdentityTokenError, match="signature"):
        tokens.verify(IdentityTokens(b"j" * 32).issue())
    with pytest.raises(InvalidIdentityTokenError, match="expired"):
        tokens.verify(tokens.issue(now=1000, lifetime_seconds=60), now=1060)
    tokens.verify(tokens.issue(now=1000, lifetime_seconds=60), now=1059)


def test_the_key_survives_a_restart_and_is_private(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    assert load_or_create_key(tmp_path) == key
    assert (tmp_path / "identity-token.key").stat().st_mode & 0o077 == 0
