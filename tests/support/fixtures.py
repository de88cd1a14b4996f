"""The fixtures every test can ask for: the run's Azurite and emulator, and a name of its own.

Registered for the whole suite by tests/conftest.py (`pytest_plugins`). A folder whose tests need a stack of
their own (tests/e2e, the queue-protocol emulators) builds it with `tests.support.stack` in its conftest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from devhost.processes import Azurite, Emulator
from tests.support.stack import AUTO_CREATE, running_azurite, running_emulator


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite for the whole run (blob, queue, table) on free ports; tests use unique names."""
    with running_azurite(tmp_path_factory.mktemp("azurite")) as service:
        yield service


@pytest.fixture(scope="session")
def emulator(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One Kusto ingestion emulator for the run, on a free port, databases created on first use."""
    with running_emulator(azurite, tmp_path_factory.mktemp("emulator"), AUTO_CREATE) as service:
        yield service


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A storage-safe name unique to the test (queues, containers, tables)."""
    digest = hashlib.blake2b(request.node.nodeid.encode(), digest_size=5).hexdigest()
    return f"t{digest}"
