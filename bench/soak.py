"""`python -m bench.soak` (`make soak`): many blobs, an unreliable Kusto and a host that crashes; nothing lost.

The local host (`python -m devhost`, the real function_app.py) runs against Azurite and the emulator while
blobs land. The emulator answers 30% of requests with 429 and 5% with 500, each after added latency, and
the host is killed with SIGKILL at random moments and started again. A share of the blobs is malformed
in several ways (a CSV row with the wrong number of fields, invalid JSON, an empty file, a name no route
matches). Every well-formed file carries its blob id in a column, so at the end the rows per blob id in
the emulator's DuckDB file tell exactly how often each blob was ingested.

Checks (exit 1 when one fails): no well-formed blob lost, none ingested twice without notice, every
malformed blob alerted exactly once (from the local host's alert file), no alert about a well-formed blob
but the in-doubt notices, every queue drained. A kill that lands while a request is on its way to Kusto
leaves blobs whose first submission may or may not have been taken: the app announces each of them
(`Submission_InDoubt`) before it sends it again. The soak counts those announcements, how many of them
were real duplicates, and checks that they stay within what one kill can leave in flight (SUBMIT_CONCURRENCY
chunks of up to 20 blobs).

Then a second phase loses events: the host restarts on the Event Grid source with the local Event Grid told to
drop the BlobCreated event of every blob named `lost-*` (`DEVHOST_LOSE_EVENTS`), and the reconciliation timer
on. More blobs land, a share of them lost. Checks: every one of them ingested exactly once, every lost one
recorded by the reconciler (its `Reconcile_Recovered` line in the host's log), and none of the first phase's
blobs, all settled by then, taken for lost. `tests/soak/test_soak.py` runs a small version of the same soak
with the same checks.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from bench.scenarios import start_local_host
from bench.stack import Stack, running_stack, stopped_on_signals
from devhost.config import LOSE_EVENTS_SETTING
from devhost.processes import ROOT, Service
from shared.error_codes import RECONCILE_RECOVERED
from shared.error_codes import SUBMISSION_IN_DOUBT as IN_DOUBT
from shared.settings import load_settings

DATABASE = "SoakDb"
CSV_TABLE = "Events"
JSON_TABLE = "JsonEvents"
MALFORMED_KINDS = ("bad-fields", "bad-json", "empty", "unroutable")
PREFIX = "soak"


@dataclass(frozen=True)
class SoakBlob:
    name: str
    body: bytes
    kind: str  # "good" or one of MALFORMED_KINDS
    blob_id: str
    rows: int


@dataclass
class SoakConfig:
    blobs: int = 10_000
    malformed_share: float = 0.05
    kills: int = 3
    throttle_rate: float = 0.3
    error_rate: float = 0.05
    latency_ms: int = 50
    seed: int | None = None
    settle_timeout: float = 900.0
    work_dir: Path | None = None
    lost_phase_blobs: int = 200
    lost_share: float = 0.25
    lost_grace_seconds: int = 30
    """RECONCILE_GRACE_SECONDS of the lost-events phase: well past a drain's pace, so a blob whose event came is
    normally submitted before the reconciler looks at it."""


@dataclass
class SoakResult:
    blobs: int
    good: int
    malformed: int
    kills: list[float]
    lost: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    announced_duplicates: dict[str, int] = field(default_factory=dict)
    in_doubt: list[str] = field(default_factory=list)
    in_doubt_limit: int = 0
    unalerted: list[str] = field(default_factory=list)
    alerted_twice: dict[str, int] = field(default_factory=dict)
    unexpected_alerts: list[dict[str, Any]] = field(default_factory=list)
    queues_left: dict[str, int] = field(default_factory=dict)
    alerts_by_code: dict[str, int] = field(default_factory=dict)
    emulator_stats: dict[str, Any] = field(default_factory=dict)
    lost_events: int = 0
    unrecovered: list[str] = field(default_factory=list)
    """Blobs of the lost-events phase whose event was dropped and that no reconciler run recorded."""
    recovered_settled: list[str] = field(default_factory=list)
    """First-phase blobs, all settled, that a reconciler run nevertheless took for lost."""
    recovered_delivered: int = 0
    """Second-phase blobs whose event came, recorded again by a reconciler run before their drain (information)."""
    seconds: float = 0.0

    def failures(self) -> list[str]:
        """One line per failed check (empty when every check passed)."""
        problems = []
        if self.lost:
            problems.append(f"{len(self.lost)} well-formed blobs lost (no rows), e.g. {self.lost[:5]}")
        if self.duplicated:
            problems.append(
                f"{len(self.duplicated)} blobs ingested more than once without notice, "
                f"e.g. {dict(list(self.duplicated.items())[:5])}"
            )
        if len(self.in_doubt) > self.in_doubt_limit:
            problems.append(
                f"{len(self.in_doubt)} blobs announced in doubt, more than {self.in_doubt_limit} the kills could leave in flight"
            )
        if self.unalerted:
            problems.append(f"{len(self.unalerted)} malformed blobs never alerted, e.g. {self.unalerted[:5]}")
        if self.alerted_twice:
            examples = dict(list(self.alerted_twice.items())[:5])
            problems.append(f"{len(self.alerted_twice)} malformed blobs alerted more than once, e.g. {examples}")
        if self.unexpected_alerts:
            problems.append(f"{len(self.unexpected_alerts)} alerts about well-formed blobs, e.g. {self.unexpected_alerts[:3]}")
        left = {name: count for name, count in self.queues_left.items() if count}
        if left:
            problems.append(f"queues not drained: {left}")
        if self.unrecovered:
            problems.append(f"{len(self.unrecovered)} blobs whose event was lost never recovered, e.g. {self.unrecovered[:5]}")
        if self.recovered_settled:
            problems.append(f"{len(self.recovered_settled)} settled blobs taken for lost, e.g. {self.recovered_settled[:5]}")
        return problems

    def summary(self) -> str:
        checks = [
            ("blobs (well-formed + malformed)", f"{self.blobs} ({self.good} + {self.malformed})", ""),
            ("host killed with SIGKILL at", ", ".join(f"{moment:.1f} s" for moment in self.kills), ""),
            (
                "ingested exactly once",
                f"{self.good - len(self.lost) - len(self.duplicated) - len(self.announced_duplicates)} of {self.good}",
                f"{self.good}",
            ),
            ("duplicates without notice", str(len(self.duplicated)), "0 (must)"),
            ("blobs announced in doubt", str(len(self.in_doubt)), f"at most {self.in_doubt_limit}"),
            ("  of which ingested twice", str(len(self.announced_duplicates)), "0"),
            ("lost", str(len(self.lost)), "0 (must)"),
            (
                "malformed alerted exactly once",
                f"{self.malformed - len(self.unalerted) - len(self.alerted_twice)} of {self.malformed}",
                f"{self.malformed}",
            ),
            ("alerts about well-formed blobs", str(len(self.unexpected_alerts)), "0"),
            ("messages left in queues", str(sum(self.queues_left.values())), "0"),
            ("lost events recovered by the reconciler", f"{self.lost_events - len(self.unrecovered)} of {self.lost_events}", ""),
            ("settled blobs taken for lost", str(len(self.recovered_settled)), "0 (must)"),
            ("delivered blobs recorded again (information)", str(self.recovered_delivered), ""),
            ("alerts by error code", json.dumps(self.alerts_by_code, sort_keys=True), ""),
            ("Kusto answers by status", json.dumps(self.emulator_stats.get("responsesByStatus", {}), sort_keys=True), ""),
            ("wall time", f"{self.seconds:.0f} s", ""),
        ]
        width = max(len(name) for name, _, _ in checks)
        lines = [f"{name.ljust(width)}  {value}" + (f"   (goal {goal})" if goal else "") for name, value, goal in checks]
        return "\n".join(lines)


_LOST_EVENTS = {
    "BLOB_TRIGGER_SOURCE": "EventGrid",
    LOSE_EVENTS_SETTING: "*/lost-*",
    "AzureWebJobs.reconcile_staging.Disabled": "false",
    "RECONCILE_SCHEDULE": "*/5 * * * * *",
    "RECONCILE_LOOKBACK_SECONDS": "3600",
}
"""The lost-events phase: the Event Grid source, the events of `lost-*` blobs dropped, the reconciler every 5 s."""
_RECOVERED_LINE = re.compile(RECONCILE_RECOVERED + r" blob '[^/']+/([^']+)'")


def _final_rows(stack: Stack) -> Counter[str]:
    """Rows per blob id, read from the emulator's DuckDB file once the emulator has stopped."""
    data_dir = stack.emulator.data_dir
    stack.emulator.stop()
    return _rows_by_blob(data_dir / "kusto.duckdb")


def _soak_settings(stack: Stack) -> dict[str, str]:
    return stack.app_settings(
        PREFIX,
        SUBMIT_SCHEDULE="*/5 * * * * *",
        TRACK_SCHEDULE="*/5 * * * * *",
        TRACKING_POLL_INITIAL_SECONDS="2",
        TRACKING_POLL_MAX_SECONDS="10",
        PENDING_VISIBILITY_TIMEOUT_SECONDS="30",
        DRAIN_TIME_BUDGET_SECONDS="20",
    )


def _queues_left(stack: Stack, values: dict[str, str]) -> dict[str, int]:
    """Messages left in the app's queues and their poison queues once the soak has settled."""
    names = [values["PENDING_QUEUE"], values["TRACKING_QUEUE"], values["FAILURES_QUEUE"]]
    names += [f"{name}-poison" for name in names] + ["webjobs-blobtrigger-poison"]
    return _queue_counts(stack, names)


def _set_faults(stack: Stack, config: SoakConfig) -> None:
    stack.set_faults(
        throttleRate=config.throttle_rate, errorRate=config.error_rate, latencyMs=config.latency_ms, retryAfterSeconds=1
    )


def _lose_events(
    stack: Stack, values: dict[str, str], config: SoakConfig, first: int, extra_env: dict[str, str], log: Any
) -> tuple[Service, list[SoakBlob]]:
    """The second phase: a host whose Event Grid drops the `lost-*` events, the reconciler on, more blobs landing."""
    work_dir = stack.work_dir
    blobs = make_blobs(config.lost_phase_blobs, 0.0, first=first, lost_share=config.lost_share)
    grace = {"RECONCILE_GRACE_SECONDS": str(config.lost_grace_seconds)}
    host = start_local_host(values | _LOST_EVENTS | grace, work_dir, "devhost-soak-lost", extra_env)
    _upload(stack, values["STAGING_CONTAINER"], blobs)
    lost = sum(1 for blob in blobs if "/lost-" in blob.name)
    log(f"soak: {len(blobs)} more blobs landed on the Event Grid source, the events of {lost} of them dropped")
    return host, blobs


def _check_recovered(result: SoakResult, settled: list[SoakBlob], phase_two: list[SoakBlob], host_log: Path) -> None:
    """Every lost event recovered by the reconciler; no settled blob taken for lost."""
    text = host_log.read_text(errors="replace") if host_log.exists() else ""
    recovered = set(_RECOVERED_LINE.findall(text))
    lost = [blob.name for blob in phase_two if "/lost-" in blob.name]
    result.lost_events = len(lost)
    result.unrecovered = [name for name in lost if name not in recovered]
    result.recovered_settled = sorted(recovered & {blob.name for blob in settled})
    result.recovered_delivered = len(recovered & {blob.name for blob in phase_two if "/lost-" not in blob.name})


def make_blobs(count: int, malformed_share: float, *, first: int = 0, lost_share: float = 0.0) -> list[SoakBlob]:
    """`count` blobs numbered from `first`; every 1/malformed_share-th one malformed, the kinds taking turns; every
    1/lost_share-th well-formed one named `lost-*` (the lost-events phase drops their events)."""
    step = max(1, round(1 / malformed_share)) if malformed_share > 0 else count + first + 1
    lost_step = max(1, round(1 / lost_share)) if lost_share > 0 else 0
    blobs = []
    for index in range(first, first + count):
        blob_id = f"b{index:06d}"
        if index % step == step - 1:
            kind = MALFORMED_KINDS[(index // step) % len(MALFORMED_KINDS)]
            name, body = {
                "bad-fields": (f"{DATABASE}/{CSV_TABLE}/bad-fields-{blob_id}.csv", f"{blob_id},1,x\n{blob_id},2\n".encode()),
                "bad-json": (
                    f"{DATABASE}/{JSON_TABLE}/bad-json-{blob_id}.json",
                    b'{"blob_id": "' + blob_id.encode() + b'", "value": ',
                ),
                "empty": (f"{DATABASE}/{CSV_TABLE}/empty-{blob_id}.csv", b""),
                "unroutable": (f"unroutable-{blob_id}.csv", f"{blob_id},1,x\n".encode()),
            }[kind]
            blobs.append(SoakBlob(name, body, kind, blob_id, 0))
        else:
            rows = 1 + index % 3
            body = "".join(f"{blob_id},{row},v{row}\n" for row in range(rows)).encode()
            stem = "lost" if lost_step and index % lost_step == 0 else "good"
            blobs.append(SoakBlob(f"{DATABASE}/{CSV_TABLE}/{stem}-{blob_id}.csv", body, "good", blob_id, rows))
    return blobs


def _upload(stack: Stack, container: str, blobs: list[SoakBlob]) -> None:
    service = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    client = service.get_container_client(container)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda blob: client.upload_blob(blob.name, blob.body, overwrite=True), blobs))


def _queue_counts(stack: Stack, names: list[str]) -> dict[str, int]:
    service = QueueServiceClient.from_connection_string(stack.azurite.connection_string)
    existing = {queue.name for queue in service.list_queues()}
    return {
        name: service.get_queue_client(name).get_queue_properties().approximate_message_count if name in existing else 0
        for name in names
    }


def _read_alerts(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _rows_by_blob(database_file: Path) -> Counter[str]:
    with duckdb.connect(str(database_file), read_only=True) as connection:
        query = f'SELECT c.blob_id, count(*) FROM "{DATABASE}"."{CSV_TABLE}" AS c GROUP BY 1'  # noqa: S608 - constant names
        rows = connection.execute(query).fetchall()
    return Counter({blob_id: count for blob_id, count in rows})


def run_soak(config: SoakConfig, log: Any = print) -> SoakResult:
    """Run one soak and return what it found; `log` gets progress lines."""
    rng = random.Random(config.seed)
    blobs = make_blobs(config.blobs, config.malformed_share)
    good = [blob for blob in blobs if blob.kind == "good"]
    malformed = [blob for blob in blobs if blob.kind != "good"]
    work_dir = config.work_dir or Path(tempfile.mkdtemp(prefix="soak-"))
    alerts_file = work_dir / "alerts.jsonl"
    started = time.monotonic()
    result = SoakResult(len(blobs), len(good), len(malformed), [])
    with running_stack(work_dir, in_memory=True) as stack:
        stack.create_table(DATABASE, CSV_TABLE, "blob_id:string, row:long, value:string")
        stack.create_table(DATABASE, JSON_TABLE, "blob_id:string, value:long")
        values = _soak_settings(stack)
        settings = load_settings(values)
        result.in_doubt_limit = config.kills * settings.submit_concurrency * settings.max_blobs_per_batch
        container = values["STAGING_CONTAINER"]
        BlobServiceClient.from_connection_string(stack.azurite.connection_string).create_container(container)
        _set_faults(stack, config)
        extra_env = {"DEVHOST_ALERTS_FILE": str(alerts_file)}
        host: Service = start_local_host(values, work_dir, "devhost-soak", extra_env)
        uploader = threading.Thread(target=_upload, args=(stack, container, blobs), daemon=True)
        uploader.start()
        log(f"soak: {len(blobs)} blobs landing ({len(malformed)} malformed), faults on, {config.kills} kills ahead")
        try:
            for _ in range(config.kills):
                time.sleep(rng.uniform(3.0, 12.0))
                host.kill()
                result.kills.append(time.monotonic() - started)
                log(f"soak: host killed at {result.kills[-1]:.1f} s")
                time.sleep(rng.uniform(0.2, 2.0))
                host = start_local_host(values, work_dir, "devhost-soak", extra_env)
            uploader.join()
            log(f"soak: all blobs landed at {time.monotonic() - started:.0f} s; waiting for the pipeline to settle")
            _wait_settled(stack, values, good, malformed, alerts_file, config.settle_timeout, log)
            host.stop()
            settled = list(blobs)
            host, phase_two = _lose_events(stack, values, config, len(blobs), extra_env, log)
            good += phase_two
            _wait_settled(stack, values, good, malformed, alerts_file, config.settle_timeout, log)
        finally:
            host.stop()
        result.blobs, result.good = len(good) + len(malformed), len(good)
        _check_recovered(result, settled, phase_two, work_dir / "devhost-soak-lost.log")
        result.queues_left = _queues_left(stack, values)
        result.emulator_stats = stack.stats()
        rows = _final_rows(stack)
    alerts = _read_alerts(alerts_file)
    _check(result, good, malformed, rows, alerts)
    result.seconds = time.monotonic() - started
    return result


def _alert_name(alert: dict[str, Any]) -> str:
    return alert.get("blobName") or (alert.get("blobPath") or "").split(f"{PREFIX}-staging/", 1)[-1]


def _alerted_names(alerts: list[dict[str, Any]]) -> Counter[str]:
    """Failure alerts per blob name; in-doubt notices are not failures and are counted apart."""
    return Counter(_alert_name(alert) for alert in alerts if alert.get("errorCode") != IN_DOUBT)


def _wait_settled(
    stack: Stack,
    values: dict[str, str],
    good: list[SoakBlob],
    malformed: list[SoakBlob],
    alerts_file: Path,
    timeout: float,
    log: Any,
) -> None:
    """Until every good blob has rows, every malformed one an alert and the app's queues are empty (or timeout)."""
    expected_rows = sum(blob.rows for blob in good)
    queues = [values["PENDING_QUEUE"], values["TRACKING_QUEUE"], values["FAILURES_QUEUE"]]
    deadline = time.monotonic() + timeout
    last_note = 0.0
    while time.monotonic() < deadline:
        rows = int(stack.query(DATABASE, f"{CSV_TABLE} | count")[0][0])
        alerted = _alerted_names(_read_alerts(alerts_file))
        missing_alerts = sum(1 for blob in malformed if not alerted[blob.name])
        left = _queue_counts(stack, queues)
        if rows >= expected_rows and not missing_alerts and not any(left.values()):
            return
        if time.monotonic() - last_note > 15:
            log(f"soak: {rows}/{expected_rows} rows, {missing_alerts} malformed blobs not alerted yet, queues {left}")
            last_note = time.monotonic()
        time.sleep(2)
    log(f"soak: gave up waiting after {timeout:.0f} s; checking what is there")


def _check(
    result: SoakResult, good: list[SoakBlob], malformed: list[SoakBlob], rows: Counter[str], alerts: list[dict[str, Any]]
) -> None:
    in_doubt = {_alert_name(alert) for alert in alerts if alert.get("errorCode") == IN_DOUBT}
    result.in_doubt = sorted(in_doubt)
    for blob in good:
        count = rows.get(blob.blob_id, 0)
        if count == 0:
            result.lost.append(blob.name)
        elif count != blob.rows:
            copies = count // blob.rows if count % blob.rows == 0 else count
            (result.announced_duplicates if blob.name in in_doubt else result.duplicated)[blob.name] = copies
    alerted = _alerted_names(alerts)
    malformed_names = {blob.name for blob in malformed}
    for blob in malformed:
        if alerted[blob.name] == 0:
            result.unalerted.append(blob.name)
        elif alerted[blob.name] > 1:
            result.alerted_twice[blob.name] = alerted[blob.name]
    for alert in alerts:
        if alert.get("errorCode") == IN_DOUBT:
            continue
        if _alert_name(alert) not in malformed_names:
            result.unexpected_alerts.append({key: alert.get(key) for key in ("errorCode", "blobName", "origin", "details")})
    result.alerts_by_code = dict(Counter(str(alert.get("errorCode")) for alert in alerts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--blobs", type=int, default=10_000)
    parser.add_argument("--malformed-share", type=float, default=0.05)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, help="seed of the kill moments (default: random)")
    parser.add_argument("--work-dir", type=Path, help="where logs and the alert file go (default: a new folder under .bench/)")
    args = parser.parse_args(argv)
    if args.work_dir is not None and args.work_dir.exists() and any(args.work_dir.iterdir()):
        # Azurite's and the emulator's data would carry over, and the rows of the last run would count as duplicates.
        parser.error(f"--work-dir {args.work_dir} is not empty: give a new or empty folder")
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="soak-", dir=_bench_dir()))
    config = SoakConfig(
        blobs=args.blobs, malformed_share=args.malformed_share, kills=args.kills, seed=args.seed, work_dir=work_dir
    )
    with stopped_on_signals("soak"):  # Ctrl-C, SIGTERM (a CI time-out), SIGHUP: every process started is stopped
        result = run_soak(config)
    print()
    print(result.summary())
    problems = result.failures()
    for problem in problems:
        print(f"FAILED: {problem}")
    print(f"logs and alert file: {work_dir}")
    print("soak passed" if not problems else "soak FAILED")
    return 1 if problems else 0


def _bench_dir() -> Path:
    path = ROOT / ".bench"
    path.mkdir(exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
