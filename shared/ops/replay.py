"""Send what the app set aside back through the pipeline, once its cause is fixed.

* `quarantine`: each blob of QUARANTINE_CONTAINER is moved back to the staging container at the same name and
  recorded as the blob trigger records a blob (`shared.ops.replay_quarantine`).
* `poison`: each message the poison watcher kept goes back to the queue it came from; a blob trigger's message has
  its blob recorded (`shared.ops.replay_poison`).
* `dead-letter`: the Event Grid dead letters of DEAD_LETTER_CONTAINER are settled now, by housekeeping's own code
  (`shared.dead_letters`): each event's blob is recorded, or alerted when that version is gone.

Each item gets one line (stdout when done, stderr when left for the operator) and a summary ends every run;
`--dry-run` writes nothing and says what would be done. Exit code 1 when anything was left.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobProperties, ContainerClient

from shared.dead_letters import recover_dead_letters
from shared.ops.item_report import ItemReport
from shared.ops.progress import say
from shared.ops.replay_poison import replay_poison
from shared.ops.replay_quarantine import replay_quarantine

if TYPE_CHECKING:
    from shared.services import Services


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        choices=("quarantine", "poison", "dead-letter"),
        help="quarantined blobs, the poison messages the app kept, or Event Grid's dead letters",
    )
    parser.add_argument(
        "--prefix",
        default="",
        help="quarantine: blob names starting with this; poison: messages naming a blob under it; "
        "dead-letter: dead-letter blob names (<SUBSCRIPTION>/<year>/<month>/<day>/...)",
    )
    parser.add_argument("--dry-run", action="store_true", help="write nothing; print what would be done")


def run(args: argparse.Namespace, services: Services) -> int:
    replay = {"quarantine": replay_quarantine, "poison": replay_poison, "dead-letter": replay_dead_letters}[args.source]
    command = f"replay {args.source}{' --dry-run (nothing written)' if args.dry_run else ''}"
    report = ItemReport()
    try:
        replay(services, args.prefix, report, dry_run=args.dry_run)
    except (AzureError, KeyboardInterrupt):  # stopped part-way: what was done so far is still summed up
        say(report.summary(f"{command}, stopped early"))
        raise
    say(report.summary(command))
    return report.exit_code


def replay_dead_letters(services: Services, prefix: str, report: ItemReport, *, dry_run: bool) -> None:
    """Settle the dead letters under `prefix` now, as housekeeping does, until none is left that can be settled.

    Each event is logged by `shared.dead_letters` (a WARNING per blob recorded, an ERROR per alert); the counts
    here are its batches' reports. A dry run lists the dead letters: what becomes of each event is decided when it is read.
    """
    container = services.blob_service.get_container_client(services.settings.dead_letter_container)
    if dry_run:
        for item in _dead_letters(container, prefix):
            report.did("would be settled", f"would settle {container.container_name}/{item.name} ({item.size} bytes)")
        return
    while True:  # each call settles a bounded batch (housekeeping's limits); stop once one makes no progress
        batch = recover_dead_letters(services, prefix)
        settled = {"dead letters settled": batch.deleted, "events recorded": batch.recovered, "events alerted": batch.alerted}
        report.done.update({outcome: count for outcome, count in settled.items() if count})
        if batch.deleted == 0:
            break
    for item in _dead_letters(container, prefix):
        report.left_behind(
            "dead letters left", f"left {container.container_name}/{item.name}: not settled (see the log lines above)"
        )


def _dead_letters(container: ContainerClient, prefix: str) -> list[BlobProperties]:
    try:
        return list(container.list_blobs(name_starts_with=prefix or None))
    except ResourceNotFoundError:
        return []  # no container yet: Event Grid has dead-lettered nothing
