"""Batching: grouping by target and properties, chunk limits, duplicate URLs and duplicate source ids."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from shared.batching import TRACKING_RECORD_BYTES, canonical_properties, make_chunks
from shared.staging_area import source_id


@dataclass(frozen=True)
class Item:
    pending: dict[str, Any]
    size: int = 600


def item(
    name: str, *, database: str = "Telemetry", table: str = "Events", etag: str = "0x1", size: int = 600, **properties: Any
) -> Item:
    url = f"http://127.0.0.1:1/devstoreaccount1/staging/{name}"
    return Item(
        {
            "blobUrl": url,
            "blobName": name,
            "sourceId": source_id(url, etag),
            "database": database,
            "table": table,
            "properties": {"format": "csv", **properties},
        },
        size,
    )


def names(chunk: Any) -> list[str]:
    return [member.pending["blobName"] for member in chunk.items]


def test_a_group_is_cut_into_chunks_of_at_most_the_batch_size_in_arrival_order() -> None:
    items = [item(f"b{i:02}.csv") for i in range(45)]
    chunks = make_chunks(items, 20)
    assert [len(chunk.items) for chunk in chunks] == [20, 20, 5]
    assert [name for chunk in chunks for name in names(chunk)] == [f"b{i:02}.csv" for i in range(45)]
    assert all(chunk.target == ("Telemetry", "Events") for chunk in chunks)


def test_blobs_are_grouped_by_database_table_and_properties() -> None:
    items = [
        item("a.csv"),
        item("b.json", format="json"),
        item("c.csv", table="Other"),
        item("d.csv", database="Logs"),
        item("e.csv"),
        item("f.json", format="json", ingestionMappingReference="m1"),
        item("g.json", format="json"),
    ]
    chunks = make_chunks(items, 20)
    assert sorted(names(chunk) for chunk in chunks) == [
        ["a.csv", "e.csv"],
        ["b.json", "g.json"],
        ["c.csv"],
        ["d.csv"],
        ["f.json"],
    ]
    by_first = {names(chunk)[0]: chunk for chunk in chunks}
    assert by_first["b.json"].properties == {"format": "json"}
    assert by_first["f.json"].properties == {"format": "json", "ingestionMappingReference": "m1"}
    assert by_first["c.csv"].target == ("Telemetry", "Other")


def test_property_order_does_not_split_a_group() -> None:
    first = item("a.csv", tags=["t"], ignoreFirstRecord=True)
    second = item("b.csv")
    second.pending["properties"] = {"ignoreFirstRecord": True, "tags": ["t"], "format": "csv"}
    assert canonical_properties(first.pending["properties"]) == canonical_properties(second.pending["properties"])
    assert len(make_chunks([first, second], 20)) == 1


def test_the_same_url_never_appears_twice_in_one_chunk() -> None:
    # The blob was overwritten (new ETag, new source id) before the first version was submitted.
    items = [item("a.csv", etag="0x1"), item("b.csv"), item("a.csv", etag="0x2"), item("a.csv", etag="0x3")]
    chunks = make_chunks(items, 20)
    for chunk in chunks:
        urls = [member.pending["blobUrl"] for member in chunk.items]
        assert len(urls) == len(set(urls))
    assert [names(chunk) for chunk in chunks] == [["a.csv", "b.csv"], ["a.csv"], ["a.csv"]]


def test_a_blob_version_recorded_twice_is_submitted_once_and_settled_with_its_chunk() -> None:
    first, again, other = item("a.csv"), item("a.csv"), item("b.csv")
    [chunk] = make_chunks([first, other, again], 20)
    assert chunk.items == (first, other)
    assert chunk.duplicates == (again,)


def test_chunks_stay_small_enough_for_one_tracking_record() -> None:
    items = [item(f"b{i}.csv", size=10_000) for i in range(9)]
    chunks = make_chunks(items, 20)
    assert [len(chunk.items) for chunk in chunks] == [4, 4, 1]
    assert all(sum(member.size for member in chunk.items) <= TRACKING_RECORD_BYTES for chunk in chunks)


def test_an_oversized_blob_still_gets_a_chunk_of_its_own() -> None:
    big, small = item("big.csv", size=TRACKING_RECORD_BYTES + 1), item("small.csv")
    chunks = make_chunks([big, small], 20)
    assert [names(chunk) for chunk in chunks] == [["big.csv"], ["small.csv"]]


def test_batch_size_one_and_empty_input() -> None:
    assert [len(chunk.items) for chunk in make_chunks([item("a.csv"), item("b.csv")], 1)] == [1, 1]
    assert make_chunks([], 20) == []
    with pytest.raises(ValueError, match="max_blobs"):
        make_chunks([item("a.csv")], 0)


def test_canonical_properties_is_compact_sorted_json() -> None:
    assert canonical_properties({"format": "csv", "tags": ["b", "a"]}) == json.dumps(
        {"format": "csv", "tags": ["b", "a"]}, sort_keys=True, separators=(",", ":")
    )
