"""`python -m shared.ops replay` through Azurite and the Kusto emulator: quarantined blobs and kept poison messages go
back through the pipeline once; a dry run writes nothing; the command line names a bad setting and leaks no secret."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

from devhost.emulator_client import EmulatorClient
from devhost.processes import AZURITE_KEY, ROOT, Azurite, Emulator
from shared import schemas
from shared.ops import replay
from shared.outcomes import QUARANTINE_METADATA
from shared.poison import BLOB_TRIGGER_POISON_QUEUE, kept_queue, watch_poison_queues
from shared.recorder import record_blob
from shared.services import Services
from shared.storage import decode_message, ensure_queue
from tests.integration.outcome_helpers import (
    DATABASE,
    app_settings,
    blob_names,
    create_table,
    drain,
    failure_notifications,
    make_services,
    set_faults,
    submit,
    track_until_settled,
)

OWN_METADATA = {"kustoDatabase": DATABASE, "owner": "team-a"}


@pytest.fixture(autouse=True)
def _no_faults(emulator: Emulator) -> Iterator[None]:
    yield
    set_faults(emulator, failBlobs=[])


def replay_now(services: Services, source: str, *, dry_run: bool = False, prefix: str = "") -> int:
    return replay.run(argparse.Namespace(source=source, prefix=prefix, dry_run=dry_run), services)


def peek_all(services: Services, queue_name: str) -> list[str]:
    queue = services.raw_queue(queue_name)
    return [decode_message(message.content) for message in queue.peek_messages(max_messages=32)]


def test_replay_quarantine_brings_a_fixed_blob_back_with_its_own_metadata_and_ingests_it_once(
    azurite: Azurite, emulator: Emulator, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    table = f"T{unique_name}"
    create_table(emulator, table)
    quarantine = f"{unique_name}-quarantine"
    services = make_services(azurite, emulator, unique_name, QUARANTINE_CONTAINER=quarantine)
    staging = services.blob_service.get_container_client(services.settings.staging_container)
    # Routed by its metadata alone: without the blob's own metadata a replayed copy could not be routed at all.
    name = f"incoming/bad-{unique_name}.csv"
    blob = staging.upload_blob(name, b"a,1\nb,2\n", metadata={**OWN_METADATA, "kustoTable": table})
    set_faults(emulator, failBlobs=[{"pattern": f"*bad-{unique_name}*", "errorCode": "BadRequest_InvalidMapping"}])
    assert record_blob(blob, services).error_code is None
    submit(services)
    track_until_settled(services)
    assert [n["ErrorCode"] for n in failure_notifications(services)] == ["BadRequest_InvalidMapping"]
    quarantined = services.blob_service.get_blob_client(quarantine, name).get_blob_properties().metadata
    assert quarantined["errorcode"] == "BadRequest_InvalidMapping" and quarantined["kustoTable"] == table
    # A second quarantined blob whose name is taken in staging by other content: refused, both left as they are.
    services.blob_service.get_blob_client(quarantine, "taken.csv").upload_blob(b"old")
    staging.upload_blob("taken.csv", b"new")
    # And one that cannot be routed at all: moved back, then alerted as the blob trigger alerts it.
    services.blob_service.get_blob_client(quarantine, "stray.csv").upload_blob(b"s,1\n")
    set_faults(emulator, failBlobs=[])  # the cause is fixed
    capsys.readouterr()

    assert replay_now(services, "quarantine", dry_run=True) == 1
    dry = capsys.readouterr()
    assert (
        f"would move {quarantine}/{name} -> {services.settings.staging_container}/{name} and record it for {DATABASE}.{table}"
        in dry.out
    )
    summary = "replay quarantine --dry-run (nothing written): 1 would be moved back and recorded, 1 not routable, 1 refused"
    assert summary in dry.out
    assert "would move" in dry.err and "cannot be routed (Routing_NoRoute)" in dry.err
    assert f"refused {quarantine}/taken.csv" in dry.err
    assert blob_names(services, quarantine) == sorted([name, "stray.csv", "taken.csv"])
    assert blob_names(services, services.settings.staging_container) == ["taken.csv"]
    assert drain(services, services.settings.pending_queue) == []

    assert replay_now(services, "quarantine") == 1  # the refused one is left for the operator
    out = capsys.readouterr()
    assert f"recorded for {DATABASE}.{table}" in out.out
    assert "1 moved back and recorded, 1 not routable, 1 refused" in out.out
    assert "cannot be routed (Routing_NoRoute)" in out.err
    assert blob_names(services, quarantine) == ["taken.csv"]
    assert [n["ErrorCode"] for n in failure_notifications(services)] == ["Routing_NoRoute"]
    metadata = staging.get_blob_client(name).get_blob_properties().metadata
    assert metadata == {**OWN_METADATA, "kustoTable": table}
    assert not set(QUARANTINE_METADATA) & {key.lower() for key in metadata}
    submit(services)
    track_until_settled(services)
    assert failure_notifications(services) == []
    assert EmulatorClient(emulator.url).count(DATABASE, table) == 2
    # Nothing is left to replay: a second run moves nothing and records nothing.
    services.blob_service.get_blob_client(quarantine, "taken.csv").delete_blob()
    assert replay_now(services, "quarantine") == 0
    assert "replay quarantine: nothing to do" in capsys.readouterr().out
    assert drain(services, services.settings.pending_queue) == []


def empty_blob_trigger_queues(azurite: Azurite) -> None:
    """The blob trigger's poison queue and its kept queue have fixed names, shared with other tests of this Azurite."""
    for name in (BLOB_TRIGGER_POISON_QUEUE, kept_queue(BLOB_TRIGGER_POISON_QUEUE)):
        queue = QueueClient.from_connection_string(azurite.connection_string, name)
        ensure_queue(queue)
        queue.clear_messages()


def _poison(services: Services, queue_name: str, text: str) -> None:
    queue = services.raw_queue(queue_name)
    ensure_queue(queue)
    queue.send_message(text)


def test_replay_poison_sends_each_kept_message_back_to_its_queue(
    azurite: Azurite, emulator: Emulator, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    services = make_services(azurite, emulator, unique_name)
    settings = services.settings
    empty_blob_trigger_queues(azurite)
    staging = services.blob_service.get_container_client(settings.staging_container)
    pending = record_blob(staging.upload_blob("Db/Events/a.csv", b"a,1\n"), services).message
    pending_text = schemas.dump(schemas.PENDING_BLOB, pending)
    staging.upload_blob("Db/Events/c.csv", b"c,1\n")
    drain(services, settings.pending_queue)
    tracked = {key: pending[key] for key in ("sourceId", "blobUrl", "container", "blobName")}
    record = {"version": 1, "database": "Db", "table": "Events", "operationId": "op-1", "submittedAt": "2026-01-01T00:00:00Z"}
    tracking_text = json.dumps({**record, "blobs": [tracked]})
    failure_text = json.dumps({**json.loads(pending_text), "broken": True})  # not a failure notification
    _poison(services, settings.pending_poison_queue, pending_text)
    _poison(services, settings.pending_poison_queue, "garbage that is no pending message")
    _poison(services, settings.tracking_poison_queue, tracking_text)
    _poison(services, settings.failures_poison_queue, failure_text)
    host_message = {"FunctionId": "f", "ContainerName": staging.container_name, "BlobName": "Db/Events/c.csv", "ETag": "e"}
    _poison(services, BLOB_TRIGGER_POISON_QUEUE, json.dumps(host_message))
    assert watch_poison_queues(services) == 5
    drain(services, settings.failures_queue)  # the watcher's alerts
    kept_pending = kept_queue(settings.pending_poison_queue)
    assert sorted(peek_all(services, kept_pending)) == sorted([pending_text, "garbage that is no pending message"])
    capsys.readouterr()

    assert replay_now(services, "poison", dry_run=True) == 1
    dry = capsys.readouterr()
    assert "replay poison --dry-run (nothing written): 3 would be sent back, 2 malformed, left in place" in dry.out
    assert len(peek_all(services, kept_pending)) == 2
    assert drain(services, settings.pending_queue) == drain(services, settings.tracking_queue) == []

    assert replay_now(services, "poison", prefix="Other/") == 1
    assert "3 not under the prefix, 2 malformed, left in place" in capsys.readouterr().out
    assert drain(services, settings.pending_queue) == []

    assert replay_now(services, "poison") == 1
    out = capsys.readouterr()
    assert "replay poison: 3 sent back, 2 malformed, left in place" in out.out
    assert f"left {kept_queue(settings.failures_poison_queue)} message" in out.err
    pending_again = [schemas.parse(schemas.PENDING_BLOB, text) for text in drain(services, settings.pending_queue)]
    assert sorted(message["blobName"] for message in pending_again) == ["Db/Events/a.csv", "Db/Events/c.csv"]
    assert pending_text in [schemas.dump(schemas.PENDING_BLOB, message) for message in pending_again]
    assert drain(services, settings.tracking_queue) == [tracking_text]
    # The malformed ones stay where they were kept; nothing else does.
    assert peek_all(services, kept_pending) == ["garbage that is no pending message"]
    assert peek_all(services, kept_queue(settings.failures_poison_queue)) == [failure_text]
    assert peek_all(services, kept_queue(settings.tracking_poison_queue)) == []
    assert peek_all(services, kept_queue(BLOB_TRIGGER_POISON_QUEUE)) == []


def run_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "shared.ops", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=120,
        check=False,
    )


def test_the_command_line_names_a_bad_setting_and_prints_no_secret(
    azurite: Azurite, emulator: Emulator, unique_name: str, tmp_path: Path
) -> None:
    empty_blob_trigger_queues(azurite)
    values = app_settings(azurite, emulator.url, unique_name)
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    kept = QueueClient.from_connection_string(azurite.connection_string, kept_queue(f"{unique_name}-pending-poison"))
    kept.create_queue()
    kept.send_message("garbage https://x.blob.core.windows.net/c/b?sv=2024&sig=TOPSECRET")

    bad = run_command("--settings", str(settings_file), "replay", "poison", env={"SUBMIT_CONCURRENCY": "lots"})
    assert bad.returncode == 2
    assert bad.stderr.startswith("settings error: SUBMIT_CONCURRENCY:")
    nowhere = tmp_path / "nowhere.json"
    missing = run_command("--settings", str(nowhere), "replay", "poison")
    assert (missing.returncode, missing.stderr.strip()) == (2, f"settings error: --settings {nowhere}: no such file")
    off = run_command("--settings", str(settings_file), "replay", "quarantine")
    assert (off.returncode, off.stderr.split(":")[:2]) == (2, ["settings error", " QUARANTINE_CONTAINER"])

    done = run_command("--settings", str(settings_file), "--verbose", "replay", "poison")
    assert done.returncode == 1
    assert "sig=REDACTED" in done.stderr and "replay poison: 1 malformed, left in place" in done.stdout
    for result in (bad, missing, off, done):
        output = result.stdout + result.stderr
        assert "TOPSECRET" not in output and AZURITE_KEY not in output and "Traceback" not in output


def blob_created(services: Services, name: str, etag: str) -> dict[str, object]:
    """A BlobCreated event of the staging account as Event Grid dead-letters it."""
    account = services.blob_service.account_name
    return {
        "topic": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/{account}",
        "subject": f"/blobServices/default/containers/{services.settings.staging_container}/blobs/{name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "data": {"eTag": etag},
        "deadLetterReason": "MaxDeliveryAttemptsExceeded",
        "deliveryAttempts": 30,
    }


def test_replay_dead_letter_settles_the_dead_letters_under_the_prefix_now(
    azurite: Azurite, emulator: Emulator, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    services = make_services(azurite, emulator, unique_name, DEAD_LETTER_CONTAINER=f"{unique_name}-deadletter")
    staging = services.blob_service.get_container_client(services.settings.staging_container)
    dead = services.blob_service.create_container(services.settings.dead_letter_container)
    for subscription, name in (("SUB", "Db/Events/lost.csv"), ("OTHER", "Db/Events/other.csv")):
        etag = staging.upload_blob(name, b"a,1\n").get_blob_properties().etag
        dead.upload_blob(f"{subscription}/2026/12/1/10/{unique_name}.json", json.dumps([blob_created(services, name, etag)]))
    capsys.readouterr()

    assert replay_now(services, "dead-letter", dry_run=True, prefix="SUB/") == 0
    dry = capsys.readouterr().out
    assert f"would settle {dead.container_name}/SUB/2026/12/1/10/{unique_name}.json" in dry
    assert "replay dead-letter --dry-run (nothing written): 1 would be settled" in dry
    assert len(blob_names(services, dead.container_name)) == 2
    assert drain(services, services.settings.pending_queue) == []

    assert replay_now(services, "dead-letter", prefix="SUB/") == 0
    assert "replay dead-letter: 1 dead letters settled, 1 events recorded" in capsys.readouterr().out
    pending = [json.loads(text)["blobName"] for text in drain(services, services.settings.pending_queue)]
    assert pending == ["Db/Events/lost.csv"]
    assert blob_names(services, dead.container_name) == [f"OTHER/2026/12/1/10/{unique_name}.json"]
