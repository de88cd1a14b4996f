"""The official Kusto SDKs, unchanged, against the emulator: the proof that it speaks Kusto's protocols.

`sdk_scenario.py` runs in `.venv-sdk` (the SDKs pin storage SDK versions the app's environment does not
use) and prints what the SDKs saw; these tests start it against the session's Azurite and emulator and
check that JSON.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from devhost.processes import ROOT, Azurite, Emulator

SDK_PYTHON = ROOT / ".venv-sdk" / "bin" / "python"
SCENARIO = Path(__file__).with_name("sdk_scenario.py")
DOTNET_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z")


def _mgmt_counts(emulator: Emulator) -> dict[str, int]:
    return requests.get(f"{emulator.url}/admin/stats", timeout=30).json()["mgmtCommands"]


@pytest.fixture(scope="module")
def scenario(emulator: Emulator, azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the SDK scenario once; its JSON plus the management commands the emulator counted meanwhile."""
    assert SDK_PYTHON.exists(), f"{SDK_PYTHON} is missing: run 'make setup' to create the SDK environment"
    work_dir = tmp_path_factory.mktemp("sdk-scenario")
    table = f"Sdk{uuid.uuid4().hex[:8]}"
    before = _mgmt_counts(emulator)
    completed = subprocess.run(
        [str(SDK_PYTHON), str(SCENARIO), emulator.url, azurite.connection_string, "fidelitydb", table, str(work_dir)],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert completed.returncode == 0, f"the SDK scenario failed:\n{completed.stderr[-4000:]}"
    result = json.loads(completed.stdout)
    after = _mgmt_counts(emulator)
    result["mgmtDelta"] = {name: count - before.get(name, 0) for name, count in after.items() if count != before.get(name, 0)}
    result["table"] = table
    return result


def test_kusto_client_management_commands(scenario: dict[str, Any]) -> None:
    assert scenario["table"] in scenario["tables"]


def test_every_ingest_is_reported_as_a_success_to_the_status_queue(scenario: dict[str, Any]) -> None:
    successes = scenario["successes"]
    assert sorted(message["IngestionSourceId"] for message in successes) == sorted(scenario["sourceIds"])
    for message in successes:
        assert (message["Database"], message["Table"]) == ("fidelitydb", scenario["table"])
        assert DOTNET_TIME.fullmatch(message["SucceededOn"])
        assert message["OperationId"] and message["RootActivityId"]
        assert "?" not in message["IngestionSourcePath"]


def test_missing_blob_is_reported_as_a_permanent_failure(scenario: dict[str, Any]) -> None:
    (failure,) = scenario["failures"]
    assert failure["IngestionSourceId"] == scenario["missingSourceId"]
    assert failure["ErrorCode"] == "Download_SourceNotFound"
    assert failure["FailureStatus"] == "Permanent"
    assert failure["ShouldRetry"] is False
    assert failure["OriginatesFromUpdatePolicy"] is False
    assert DOTNET_TIME.fullmatch(failure["FailedOn"])
    assert "sig=" not in json.dumps(failure)


def test_resources_and_token_are_fetched_once_for_many_ingests(scenario: dict[str, Any]) -> None:
    """The SDK caches both answers only when IngestionsStatusTable is advertised: 6 ingests, 2 calls."""
    assert len(scenario["sourceIds"]) + 1 == 6
    assert scenario["mgmtDelta"]["get_ingestion_resources"] == 1
    assert scenario["mgmtDelta"]["get_kusto_identity_token"] == 1


def test_kusto_client_queries_read_the_ingested_rows(scenario: dict[str, Any]) -> None:
    # rows.csv has 3 rows, each of the 4 files 2 rows
    assert scenario["count"] == 11
    assert scenario["take"]["columns"] == ["x", "y"]
    assert len(scenario["take"]["rows"]) == 5
    assert all(isinstance(x, int) and isinstance(y, str) for x, y in scenario["take"]["rows"])
    assert scenario["summarize"] == {"a": 6, "b": 1, "c": 4}


def test_unsupported_query_reaches_the_sdk_as_a_kusto_api_error(scenario: dict[str, Any]) -> None:
    assert scenario["unsupported"]["code"] == "BadRequest_NotSupported"
    assert "MakeSeriesOperator" in scenario["unsupported"]["description"]
    assert scenario["unsupported"]["permanent"] is True
