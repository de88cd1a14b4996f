"""The suite's settings: the shared fixtures (`tests.support.fixtures`: the run's Azurite and emulator, a unique
name per test), the property tests' Hypothesis profile, and the order tests start in."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

pytest_plugins = ("tests.support.fixtures",)

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
