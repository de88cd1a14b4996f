"""Group commit on a real DuckDB file: what waits shares one transaction, a failed batch is rolled back whole
and settled with its error, and closing commits what was put before. And the one-statement insert it uses."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kusto_emulator.catalog import Catalog, insert_rows, utc_now
from kusto_emulator.group_commit import GroupCommitter


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    catalog = Catalog(tmp_path / "kusto.duckdb")
    with catalog.cursor() as cursor:
        cursor.execute("CREATE TABLE numbers (n INTEGER)")
    yield catalog
    catalog.close()


def _stored(catalog: Catalog) -> list[int]:
    with catalog.cursor() as cursor:
        return [n for (n,) in cursor.execute("SELECT n FROM numbers ORDER BY n").fetchall()]


class _Recorder:
    """Inserts each batch into `numbers`, refuses batches holding a negative number, and remembers the settles."""

    def __init__(self) -> None:
        self.settled: list[tuple[list[int], Exception | None]] = []
        self.first_write_started = threading.Event()
        self.release_first_write = threading.Event()
        self.release_first_write.set()

    def write(self, cursor: Any, batch: list[int]) -> None:
        if not self.first_write_started.is_set():
            self.first_write_started.set()
            assert self.release_first_write.wait(10)
        cursor.executemany("INSERT INTO numbers VALUES (?)", [[n] for n in batch])
        if any(n < 0 for n in batch):
            raise ValueError("negative numbers are refused")

    def settle(self, batch: list[int], error: Exception | None) -> None:
        self.settled.append((batch, error))


def _held_on_first_write(catalog: Catalog, first: int) -> tuple[_Recorder, GroupCommitter[int]]:
    """A committer whose transaction of `first` is under way and held, so what is put next has to wait."""
    recorder = _Recorder()
    recorder.release_first_write.clear()
    committer = GroupCommitter[int](catalog, "test-writer", recorder.write, recorder.settle)
    committer.put(first)
    assert recorder.first_write_started.wait(10)
    return recorder, committer


def test_records_put_while_a_commit_runs_share_the_next_transaction(catalog: Catalog) -> None:
    recorder, committer = _held_on_first_write(catalog, 0)

    for n in range(1, 51):
        committer.put(n)
    recorder.release_first_write.set()
    committer.close()

    assert [(batch, error) for batch, error in recorder.settled] == [([0], None), (list(range(1, 51)), None)]
    assert _stored(catalog) == list(range(51))


def test_a_batch_that_fails_is_rolled_back_whole_and_the_writer_goes_on(catalog: Catalog) -> None:
    recorder, committer = _held_on_first_write(catalog, 1)

    for n in (2, -3, 4):  # wait together, so they share the failing transaction
        committer.put(n)
    recorder.release_first_write.set()
    deadline = time.monotonic() + 10
    while len(recorder.settled) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    committer.put(5)
    committer.close()

    [first, failed, after] = recorder.settled
    assert first == ([1], None) and after == ([5], None)
    assert failed[0] == [2, -3, 4] and isinstance(failed[1], ValueError)
    assert _stored(catalog) == [1, 5]  # 2 and 4 were inserted, then rolled back with -3


def test_closing_commits_and_settles_everything_put_before(catalog: Catalog) -> None:
    recorder = _Recorder()
    committer = GroupCommitter[int](catalog, "test-writer", recorder.write, recorder.settle)

    for n in range(300):
        committer.put(n)
    committer.close()

    assert sorted(n for batch, _ in recorder.settled for n in batch) == list(range(300))
    assert _stored(catalog) == list(range(300))


def test_rows_go_in_at_once_with_their_types_and_nulls(catalog: Catalog) -> None:
    now = utc_now()
    with catalog.cursor() as cursor:
        cursor.execute("CREATE TABLE mixed (name VARCHAR, n BIGINT, seen TIMESTAMP, note VARCHAR)")
        insert_rows(cursor, "mixed", [("a", 1, now, None), ("b", None, now, None)])
        insert_rows(cursor, "mixed", [])
        stored = cursor.execute("SELECT * FROM mixed ORDER BY name").fetchall()

    assert stored == [("a", 1, now, None), ("b", None, now, None)]
