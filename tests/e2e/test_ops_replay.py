"""`replay quarantine` through the real app in the local host, Azurite and the emulator: a file that failed and was
quarantined, fixed there by the operator, is ingested exactly once after the replay (the local host's container scan
sees the moved blob too, and the drain drops that repeat)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from devhost.emulator_client import EmulatorClient
from devhost.processes import ROOT, Azurite, Emulator
from devhost.provision import create_staging_storage, create_tables
from shared.settings import load_settings
from tests.e2e.conftest import COLUMNS, LocalHostProcess, Pipeline, pause, settings_values
from tests.e2e.samples import encode
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def quarantining(e2e_azurite: Azurite, e2e_emulator: Emulator, unique_name: str, tmp_path: Path) -> Iterator[Pipeline]:
    """The end-to-end pipeline with QUARANTINE_CONTAINER set."""
    values = settings_values(e2e_azurite, e2e_emulator, unique_name) | {"QUARANTINE_CONTAINER": f"{unique_name}-quarantine"}
    settings_path = tmp_path / "local.settings.json"
    settings_path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    create_staging_storage(load_settings(values), values)
    kusto = EmulatorClient(e2e_emulator.url)
    database = f"E2E_{unique_name}"
    create_tables(kusto, {f"{database}.Rows": COLUMNS})
    host = LocalHostProcess(settings_path, tmp_path / "devhost.log", tmp_path / "alerts.jsonl")
    host.start()
    container = ContainerClient.from_connection_string(e2e_azurite.connection_string, unique_name)
    yield Pipeline(container, host, kusto, database, values=values)
    host.stop()


def test_a_fixed_file_replayed_from_quarantine_is_ingested_once(quarantining: Pipeline) -> None:
    pipeline = quarantining
    name = pipeline.target("fixed.parquet")
    values = pipeline.values
    quarantine = ContainerClient.from_connection_string(values["StagingStorage"], values["QUARANTINE_CONTAINER"])
    pipeline.stage(name, b"this is not parquet at all")
    wait_for(lambda: quarantine.exists() and [blob.name for blob in quarantine.list_blobs()] == [name], "the quarantine")
    alerted = wait_for(lambda: [alert["errorCode"] for alert in pipeline.host.alerts()], "the failed blob's alert")
    assert alerted == ["BadRequest_NoRecordsOrWrongFormat"]
    quarantine.upload_blob(name, encode("parquet", "fixed", 4), overwrite=True)  # the operator's fix

    replayed = subprocess.run(
        [sys.executable, "-m", "shared.ops", "--settings", str(pipeline.host.settings_path), "replay", "quarantine"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )

    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.splitlines()[-1] == "replay quarantine: 1 moved back and recorded"
    assert pipeline.wait_for_rows({"fixed": 4}) == {"fixed": 4}
    pause(3)  # the container scan's repeat, had it not been dropped, would land within a few timer ticks
    assert pipeline.rows_per_blob() == {"fixed": 4}
    assert list(quarantine.list_blobs()) == []
    assert len(pipeline.host.alerts()) == 1
