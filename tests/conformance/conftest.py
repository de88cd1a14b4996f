"""The conformance tier: the official Python clients, unchanged, through every feature docs/emulator.md lists.

Each test module runs one scenario (`sdk_<name>.py`) in `.venv-sdk` (the SDKs pin storage SDKs the app's
environment does not have) against Azurite and the emulator, and asserts on the JSON it prints. A scenario runs
once per test run: `pytest -n 2` spreads a module's tests over both workers, so the first worker to need it runs
it and leaves its JSON for the other (the JSON is all the tests read).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devhost.processes import ROOT, Azurite, Emulator

SDK_PYTHON = ROOT / ".venv-sdk" / "bin" / "python"
HERE = Path(__file__).parent


def _run(name: str, emulator: Emulator, azurite: Azurite, work_dir: Path) -> dict[str, Any]:
    database = f"Conf{name.capitalize()}{uuid.uuid4().hex[:6]}"
    completed = subprocess.run(
        [str(SDK_PYTHON), str(HERE / f"sdk_{name}.py"), emulator.url, azurite.connection_string, database, str(work_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, f"the {name} scenario failed:\n{completed.stderr[-4000:]}"
    return {**json.loads(completed.stdout), "database": database}


@pytest.fixture(scope="module")
def run_scenario(
    emulator: Emulator, azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], dict[str, Any]]:
    """Runs `sdk_<name>.py` in a database of its own, once per test run; returns what the clients saw."""
    assert SDK_PYTHON.exists(), f"{SDK_PYTHON} is missing: run 'make setup' to create the SDK environment"
    # This run's temporary folder: an xdist worker's is a subfolder of the one its run's workers share.
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base

    def run(name: str) -> dict[str, Any]:
        answer = shared / f"conformance-{name}.json"
        with (shared / f"conformance-{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not answer.exists():
                result = _run(name, emulator, azurite, tmp_path_factory.mktemp(f"conformance-{name}"))
                answer.write_text(json.dumps(result))
        return json.loads(answer.read_text())

    return run
