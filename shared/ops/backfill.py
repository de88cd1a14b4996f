"""`backfill`: record the blobs already in the staging container, exactly as the blob trigger would have.

A blob trigger fires only for blobs that land after it exists, so the files present when the app is deployed
(or staged while it was away) are never loaded. Backfill lists the staging container under a prefix, optionally
within a last-modified range, and records each blob version the app has not recorded yet through the trigger's
own code (`shared.recorder.record_blob`): same routing, same pending message, same alert for a blob that cannot
be routed.

* Nothing twice: a version the app already recorded (the submission ledger or an alert marker knows it, see
  `shared.reconcile`) is skipped, and one recorded by the trigger at the same moment is dropped by the drain as
  a repeat. A finished run is remembered: running it again with the same options does nothing unless `--again`.
* Resumable: after each page of the listing, the listing's position and the counts so far are written to
  `backfill/<id of the options>.json` in STATE_CONTAINER; the same command after Ctrl-C (or a crash) goes on
  from there. A page interrupted half-way is listed again, and what it recorded is then known or a repeat.
* Gentle: at most `--rate` blobs a second are recorded (default 50), so the live pipeline keeps its pace.
* `--dry-run` routes every blob from the listing (with its metadata) and prints the count per target and per
  routing error; it writes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.core.paging import PageIterator
from azure.storage.blob import BlobProperties

from shared.ops.progress import progress_bar, say
from shared.reconcile import RecordedVersions, modified_within, record_listed_blob, recorded_versions
from shared.recorder import PENDING, route_version
from shared.routing import RoutingError

if TYPE_CHECKING:
    from shared.services import Services

PAGE_SIZE = 500
"""Blobs per listing page: the unit of resumption (a page cut short is listed again)."""
DEFAULT_RATE = 50.0
CHECKPOINT_PREFIX = "backfill/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prefix", required=True, help="blob name prefix in the staging container ('' for all)")
    parser.add_argument("--modified-since", type=_moment, help="only blobs last modified at or after this (ISO 8601, UTC)")
    parser.add_argument("--modified-until", type=_moment, help="only blobs last modified before this (ISO 8601, UTC)")
    parser.add_argument("--dry-run", action="store_true", help="count per target and per routing error; write nothing")
    parser.add_argument(
        "--rate", type=_rate, default=DEFAULT_RATE, help=f"most blobs recorded a second (default {DEFAULT_RATE:g})"
    )
    parser.add_argument("--again", action="store_true", help="run even if a backfill with these options finished before")


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time, e.g. 2026-12-01T00:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not 0 < rate <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of blobs a second from 0.1 to 10000")
    return rate


@dataclass
class BackfillCounts:
    """What a backfill did so far; kept in its checkpoint, so a resumed run goes on counting."""

    listed: int = 0
    out_of_range: int = 0
    known: int = 0
    recorded: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    """Error code -> blobs alerted instead of recorded (dry run: that would be)."""
    targets: Counter[str] = field(default_factory=Counter)
    """database.table -> blobs recorded (dry run: that would be)."""

    def as_json(self) -> dict[str, Any]:
        return {**vars(self), "rejected": dict(self.rejected), "targets": dict(self.targets)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BackfillCounts:
        counts = cls(
            listed=int(data.get("listed", 0)),
            out_of_range=int(data.get("out_of_range", 0)),
            known=int(data.get("known", 0)),
            recorded=int(data.get("recorded", 0)),
        )
        counts.rejected.update({str(key): int(value) for key, value in data.get("rejected", {}).items()})
        counts.targets.update({str(key): int(value) for key, value in data.get("targets", {}).items()})
        return counts


class Checkpoint:
    """Where a backfill with one set of options stands, in STATE_CONTAINER (shared by whoever runs it)."""

    def __init__(self, services: Services, options: dict[str, str]) -> None:
        identity = hashlib.sha256(json.dumps(options, sort_keys=True).encode("utf-8")).hexdigest()[:32]
        self.name = f"{CHECKPOINT_PREFIX}{identity}.json"
        self._options = options
        self._blob = services.blob_service.get_blob_client(services.settings.state_container, self.name)
        self._container = services.blob_service.get_container_client(services.settings.state_container)

    def load(self) -> dict[str, Any] | None:
        try:
            return json.loads(self._blob.download_blob().readall())
        except ResourceNotFoundError:
            return None

    def save(self, token: str | None, counts: BackfillCounts, *, finished: bool) -> None:
        state = {
            "options": self._options,
            "continuationToken": token,
            "counts": counts.as_json(),
            "savedAt": datetime.now(UTC).isoformat(),
            "finished": finished,
        }
        data = json.dumps(state).encode("utf-8")
        try:
            self._blob.upload_blob(data, overwrite=True)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                self._container.create_container()
            self._blob.upload_blob(data, overwrite=True)


class _Pace:
    """At most `rate` recordings a second, measured from the start of the run."""

    def __init__(self, rate: float) -> None:
        self._interval = 1 / rate
        self._next = time.monotonic()

    def wait(self) -> None:
        now = time.monotonic()
        if now < self._next:
            time.sleep(self._next - now)
        self._next = max(now, self._next) + self._interval


def run(args: argparse.Namespace, services: Services) -> int:
    options = {
        "container": services.settings.staging_container,
        "prefix": args.prefix,
        "since": args.modified_since.isoformat() if args.modified_since else "",
        "until": args.modified_until.isoformat() if args.modified_until else "",
    }
    if args.dry_run:
        counts = _dry_run(services, args)
        _print_summary(counts, dry_run=True)
        return 0
    checkpoint = Checkpoint(services, options)
    saved = checkpoint.load()
    if saved and saved.get("finished") and not args.again:
        say(f"a backfill with these options finished at {saved.get('savedAt')}: nothing to do (--again to run it anyway)")
        _print_summary(BackfillCounts.from_json(saved.get("counts", {})), dry_run=False)
        return 0
    resuming = saved is not None and not saved.get("finished")
    counts = BackfillCounts.from_json(saved["counts"]) if resuming and saved else BackfillCounts()
    token = saved.get("continuationToken") if resuming and saved else None
    if resuming:
        say(f"resuming the backfill saved at {saved.get('savedAt') if saved else '?'} ({counts.listed} blobs listed before)")
    versions = recorded_versions(services)
    pace = _Pace(args.rate)
    container = services.blob_service.get_container_client(services.settings.staging_container)
    listing = container.list_blobs(name_starts_with=args.prefix or None, results_per_page=PAGE_SIZE)
    pages = cast(PageIterator, listing.by_page(continuation_token=token))  # the listing's pages keep their position
    with progress_bar("backfill", unit="blob") as bar:
        for page in pages:
            for blob in page:
                _record(services, args, blob, versions, counts, pace)
                bar.update(1)
            checkpoint.save(pages.continuation_token, counts, finished=False)
    checkpoint.save(None, counts, finished=True)
    _print_summary(counts, dry_run=False)
    return 0


def _record(
    services: Services,
    args: argparse.Namespace,
    blob: BlobProperties,
    versions: RecordedVersions,
    counts: BackfillCounts,
    pace: _Pace,
) -> None:
    counts.listed += 1
    if not modified_within(blob, args.modified_since, args.modified_until):
        counts.out_of_range += 1
        return
    if versions.knows(blob):
        counts.known += 1
        return
    pace.wait()
    result = record_listed_blob(services, blob)
    if result.outcome == PENDING:
        counts.recorded += 1
        counts.targets[f"{result.message['database']}.{result.message['table']}"] += 1
    else:
        counts.rejected[result.error_code or "?"] += 1


def _dry_run(services: Services, args: argparse.Namespace) -> BackfillCounts:
    """Route every listed blob in range from its listing; nothing is written."""
    counts = BackfillCounts()
    versions = recorded_versions(services)
    container = services.blob_service.get_container_client(services.settings.staging_container)
    with progress_bar("backfill --dry-run", unit="blob") as bar:
        for blob in container.list_blobs(name_starts_with=args.prefix or None, include=["metadata"]):
            bar.update(1)
            counts.listed += 1
            if not modified_within(blob, args.modified_since, args.modified_until):
                counts.out_of_range += 1
            elif versions.knows(blob):
                counts.known += 1
            else:
                try:
                    route = route_version(services, blob.name, blob)
                except RoutingError as error:
                    counts.rejected[error.code] += 1
                else:
                    counts.recorded += 1
                    counts.targets[f"{route.database}.{route.table}"] += 1
    return counts


def _print_summary(counts: BackfillCounts, *, dry_run: bool) -> None:
    would = "would be " if dry_run else ""
    say(
        f"listed {counts.listed} blobs: {counts.out_of_range} outside the time range, {counts.known} already recorded, "
        f"{counts.recorded} {would}recorded, {sum(counts.rejected.values())} {would}alerted instead"
    )
    for target, count in sorted(counts.targets.items()):
        say(f"  {would}recorded for {target}: {count}")
    for code, count in sorted(counts.rejected.items()):
        say(f"  {would}alerted as {code}: {count}")
