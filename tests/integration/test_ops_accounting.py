"""`python -m shared.ops backfill` and `status`, in-process, through Azurite and the emulator.

The end-to-end proof with the local host is tests/e2e/test_accounting.py; here the cases a host would make slow
or racy: a backfill interrupted and resumed, a dry run that writes nothing, and `status` for a blob at each
stage (not recorded, waiting, sent, ingested, failed in Kusto, quarantined).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devhost.processes import Azurite, Emulator
from shared.ops import backfill
from shared.ops.cli import main
from shared.ops.status import blob_status
from shared.recorder import record_blob
from shared.services import Services
from shared.sinks import alert_once
from tests.integration.outcome_helpers import (
    DATABASE,
    app_settings,
    create_table,
    drain,
    make_services,
    set_faults,
    stage,
    submit,
    track_until_settled,
)
from tests.support.waiting import wait_for

TABLE = "Accounted"


@pytest.fixture
def services(azurite: Azurite, emulator: Emulator, unique_name: str) -> Iterator[Services]:
    create_table(emulator, TABLE)
    yield make_services(azurite, emulator, unique_name, QUARANTINE_CONTAINER=f"{unique_name}-quarantine")
    set_faults(emulator, failBlobs=[])


@pytest.fixture
def settings_file(azurite: Azurite, emulator: Emulator, unique_name: str, services: Services, tmp_path: Path) -> Path:
    """The same settings as `services`, as an operator's local.settings.json."""
    values = app_settings(azurite, emulator.url, unique_name, QUARANTINE_CONTAINER=f"{unique_name}-quarantine")
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return path


def upload(services: Services, count: int, stem: str = "file") -> list[str]:
    names = [f"{DATABASE}/{TABLE}/{stem}-{index:02}.csv" for index in range(count)]
    container = services.blob_service.get_container_client(services.settings.staging_container)
    for name in names:
        container.upload_blob(name, b"a,1\n", overwrite=True)
    return names


def pending_names(services: Services) -> list[str]:
    return sorted(json.loads(text)["blobName"] for text in drain(services, services.settings.pending_queue))


def checkpoints(services: Services) -> list[Any]:
    state = services.blob_service.get_container_client(services.settings.state_container)
    if not state.exists():
        return []
    return list(state.list_blobs(name_starts_with=backfill.CHECKPOINT_PREFIX))


def test_a_dry_run_counts_per_target_and_per_error_and_writes_nothing(
    services: Services, settings_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upload(services, 3)
    services.blob_service.get_container_client(services.settings.staging_container).upload_blob("loose.csv", b"a,1\n")
    assert main(["--settings", str(settings_file), "backfill", "--prefix", "", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 would be recorded, 1 would be alerted instead" in out
    assert f"would be recorded for {DATABASE}.{TABLE}: 3" in out and "would be alerted as Routing_NoRoute: 1" in out
    assert pending_names(services) == [] and drain(services, services.settings.failures_queue) == []
    assert checkpoints(services) == []


def test_an_interrupted_backfill_goes_on_where_it_stopped(
    services: Services, settings_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    names = upload(services, 12)
    monkeypatch.setattr(backfill, "PAGE_SIZE", 5)
    recorded: list[str] = []
    real = backfill.record_listed_blob

    def record_then_interrupt(services: Services, blob: Any) -> Any:
        if len(recorded) == 7:
            raise KeyboardInterrupt  # Ctrl-C in the second page
        recorded.append(blob.name)
        return real(services, blob)

    monkeypatch.setattr(backfill, "record_listed_blob", record_then_interrupt)
    assert main(["--settings", str(settings_file), "backfill", "--prefix", f"{DATABASE}/", "--rate", "1000"]) == 130
    (saved,) = checkpoints(services)
    monkeypatch.setattr(backfill, "record_listed_blob", real)
    assert main(["--settings", str(settings_file), "backfill", "--prefix", f"{DATABASE}/", "--rate", "1000"]) == 0
    out = capsys.readouterr().out
    assert "resuming the backfill" in out and "listed 12 blobs" in out
    pending = pending_names(services)
    # The first page was finished and saved; the second, cut short, was listed again: its 2 recorded blobs twice.
    assert sorted(set(pending)) == names and len(pending) == 12 + 2
    assert json.loads(
        services.blob_service.get_blob_client(services.settings.state_container, saved.name).download_blob().readall()
    )["finished"]


def test_status_follows_a_blob_from_landing_to_ingested(services: Services) -> None:
    (name,) = upload(services, 1, "followed")
    assert blob_status(services, name).verdict == "not recorded"
    record_blob(services.staging.blob(name), services)
    waiting = blob_status(services, name)
    assert waiting.verdict == "waiting in the pending queue" and waiting.target == f"{DATABASE}.{TABLE}"
    submit(services)
    sent = blob_status(services, name, poll=False)
    assert sent.verdict == "sent" and sent.operation_id
    assert [line.split(" ", 1)[1] for line in sent.history] == ["sending", f"accepted as operation {sent.operation_id}"]
    wait_for(lambda: blob_status(services, name).verdict == "ingested", "the blob to be ingested")
    assert blob_status(services, name).kusto_status == "Succeeded"


def test_status_of_a_blob_kusto_failed_names_the_error_and_the_quarantine(services: Services, emulator: Emulator) -> None:
    set_faults(emulator, failBlobs=[{"pattern": "*doomed-*", "errorCode": "BadRequest_InvalidMapping"}])
    blob = stage(services, TABLE, "doomed-1.csv")
    submit(services)
    track_until_settled(services)
    for text in drain(services, services.settings.failures_queue):
        alert_once(text, services, message_id="m", dequeue_count=1)
    answer = blob_status(services, blob.blob_name)
    assert answer.verdict == "failed"
    assert answer.where == f"quarantine/{services.settings.quarantine_container}"
    assert [alert["errorcode"] for alert in answer.alerts] == ["BadRequest_InvalidMapping"]
    assert any("quarantine" in note and "BadRequest_InvalidMapping" in note for note in answer.notes)


def test_status_of_a_name_never_staged(services: Services) -> None:
    answer = blob_status(services, f"{DATABASE}/{TABLE}/nothing-here.csv")
    assert (answer.verdict, answer.source_id) == ("not found", "")
