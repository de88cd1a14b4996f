"""Fixtures shared by the integration tests (the Azurite and emulator fixtures are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.outcome_helpers import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free port, stopped after the test."""
    server = Receiver()
    yield server
    server.stop()
