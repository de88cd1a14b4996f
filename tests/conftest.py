"""Fixtures that start the real local services on free ports and stop them at the end."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from devhost.processes import Azurite, Emulator, start_azurite, start_emulator

# Property-based tests (tests/property): `make test` and CI try the same inputs every run (derandomized: the seed
# is derived from each test), so a failure reproduces. HYPOTHESIS_PROFILE=explore draws new random inputs on each
# run, for a hunt by hand (each test keeps its own number of examples).
settings.register_profile("repeatable", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The soak goes first: it is the longest test (two minutes when the killed host held a tracker lease),
    so starting it at once lets the other worker run the rest of the suite beside it."""
    items.sort(key=lambda item: not item.nodeid.startswith("tests/soak/"))


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite for the whole run (blob, queue, table) on free ports; tests use unique names."""
    location = tmp_path_factory.mktemp("azurite")
    service = start_azurite(location, log_path=location / "azurite.log")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def emulator(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One Kusto ingestion emulator for the run, on a free port, databases created on first use."""
    data_dir = tmp_path_factory.mktemp("emulator")
    service = start_emulator(
        azurite.connection_string, data_dir, extra_args=["--auto-create-databases"], log_path=data_dir / "emulator.log"
    )
    yield service
    service.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A storage-safe name unique to the test (queues, containers, tables)."""
    digest = hashlib.blake2b(request.node.nodeid.encode(), digest_size=5).hexdigest()
    return f"t{digest}"


def read_log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
