"""devhost/azurite_preload.js: Azurite's empty removals stop rebuilding its indices, its message queries apply their
selective condition first, its expiry sweep searches an index, a receive's update keeps the indices instead of
rebuilding them, and nothing else changes; it is loaded only when asked for (`fast_queue`), and refuses an Azurite
release it was not written for."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from devhost import processes
from devhost.processes import AZURITE_PRELOAD, ROOT, Azurite, ServiceError, start_azurite

# Put before every probe: `Loki`, the lokijs Azurite itself loads (the one the preload patches).
LOKI = """
const path = require("path");
const azuriteDir = path.join(process.cwd(), "node_modules", "azurite");
const Loki = require(require.resolve("lokijs", { paths: [azuriteDir] }));
"""

# Builds a LokiJS collection indexed the way Azurite's message collection is, then reports how many
# times the indices were rebuilt by an empty removal and by a removal of one document, and what is left.
PROBE = """
const coll = new Loki("probe").addCollection("messages", {
  indices: ["accountName", "queueName", "messageId"],
});
for (let i = 0; i < 50; i++) {
  coll.insert({ accountName: "a", queueName: "q", messageId: `m${(i * 37) % 50}` });
}
let rebuilds = 0;
const ensureAllIndexes = coll.ensureAllIndexes;
coll.ensureAllIndexes = function (...args) { rebuilds += 1; return ensureAllIndexes.apply(this, args); };
coll.remove([]);
const afterEmpty = rebuilds;
coll.remove(coll.find({ messageId: "m7" }));
console.log(JSON.stringify({
  afterEmpty,
  afterOne: rebuilds - afterEmpty,
  left: coll.count(),
  m7: coll.find({ messageId: "m7" }).length,
  m8: coll.find({ messageId: "m8" }).length,
}));
"""


# Azurite's message collection (its name, its indices) holding 200 messages of two queues, 20 of them expired;
# reports what a delete's lookup by id and the expiry sweep find, and how many documents each compared
# (the calls of LokiJS's `$eq` and `$lte`, which every condition applied by walking goes through).
QUERY_PROBE = """
const coll = new Loki("probe").addCollection("$MESSAGES_COLLECTION$", {
  indices: ["accountName", "queueName", "messageId", "visibleTime"],
});
for (let i = 0; i < 200; i++) {
  coll.insert({ accountName: "a", queueName: i % 2 ? "q" : "other", messageId: `m${(i * 37) % 200}`,
    expirationTime: new Date(i < 20 ? 1000 : 4e12) });
}
let compared = 0;
for (const op of ["$eq", "$lte"]) {
  const original = Loki.LokiOps[op];
  Loki.LokiOps[op] = function (...args) { compared += 1; return original.apply(this, args); };
}
const measure = (query) => { compared = 0; const found = query(); return { found, compared }; };
const byId = measure(() => coll.findOne({ accountName: "a", queueName: "q", messageId: "m37" }));
const wrongQueue = measure(() => coll.findOne({ accountName: "a", queueName: "other", messageId: "m37" }));
const expired = measure(() => coll.chain().find({ accountName: "a", queueName: "q", expirationTime: { $lte: 2000 } }).data());
console.log(JSON.stringify({
  byId: { id: byId.found && byId.found.messageId, compared: byId.compared },
  wrongQueue: { found: wrongQueue.found, compared: wrongQueue.compared },
  expired: { ids: expired.found.map((d) => d.messageId).sort(), compared: expired.compared },
}));
"""


# A message collection made the way Azurite makes it, and one of another name; 200 messages, 20 expired. Reports
# each collection's indices, what the sweep found and compared, how an indexed expiry time reads back, and what a
# receive-like update of three messages (one of them moved to another queue) rebuilt and left in the indices.
UPDATE_PROBE = """
const db = new Loki("probe");
const indices = ["accountName", "queueName", "messageId", "visibleTime"];
const coll = db.addCollection("$MESSAGES_COLLECTION$", { indices });
const other = db.addCollection("other", { indices });
const expiry = (i) => new Date(i < 20 ? 1000 + i : 4e12 + i);
for (let i = 0; i < 200; i++) {
  coll.insert({ accountName: "a", queueName: "q", messageId: `m${i}`, expirationTime: expiry(i), timeNextVisible: i });
}
let compared = 0;
const lte = Loki.LokiOps.$lte;
Loki.LokiOps.$lte = function (...args) { compared += 1; return lte.apply(this, args); };
const swept = coll.chain().find({ accountName: "a", queueName: "q", expirationTime: { $lte: 2000 } }).data();
const sweptCompared = compared;
let rebuilt = 0;
const ensureIndex = coll.ensureIndex;
coll.ensureIndex = function (...args) { rebuilt += 1; return ensureIndex.apply(this, args); };
const received = coll.chain().find({ timeNextVisible: { $lte: 2 } }).data();
for (const doc of received) { doc.timeNextVisible = 500; doc.dequeueCount = 1; }
received[0].queueName = "moved";
coll.update(received);
console.log(JSON.stringify({
  indices: Object.keys(coll.binaryIndices).sort(),
  otherIndices: Object.keys(other.binaryIndices).sort(),
  swept: { count: swept.length, compared: sweptCompared },
  expiryReadBack: new Date(coll.findOne({ messageId: "m150" }).expirationTime).getTime() === expiry(150).getTime(),
  rebuilt,
  badIndices: coll.checkAllIndexes(),
  moved: coll.find({ queueName: "moved" }).map((d) => d.messageId),
  stillQ: coll.find({ queueName: "q" }).length,
  updated: coll.find({ timeNextVisible: 500 }).map((d) => d.messageId).sort(),
}));
"""


def _probe(*node_args: str, script: str = PROBE) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "node is on PATH (make installs Azurite with it)"
    command = [node, *node_args, "-e", LOKI + script]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def probes() -> tuple[dict[str, Any], dict[str, Any]]:
    """The probe's report without the preload and with it (each a node start, so made once for the module)."""
    return _probe(), _probe("--require", str(AZURITE_PRELOAD))


def test_an_empty_removal_no_longer_rebuilds_the_indices(probes: tuple[dict[str, int], dict[str, int]]) -> None:
    without, patched = probes

    assert without["afterEmpty"] == 1, "unpatched LokiJS rebuilds every index for an empty batch"
    assert patched["afterEmpty"] == 0


def test_a_removal_with_documents_is_unchanged(probes: tuple[dict[str, int], dict[str, int]]) -> None:
    without, patched = probes

    assert patched == without | {"afterEmpty": 0}
    assert (patched["left"], patched["m7"], patched["m8"]) == (49, 0, 1)


def test_a_message_query_applies_its_selective_condition_first_and_finds_the_same() -> None:
    without = _probe(script=QUERY_PROBE)
    patched = _probe("--require", str(AZURITE_PRELOAD), script=QUERY_PROBE)

    for report in (without, patched):
        assert report["byId"]["id"] == "m37" and report["wrongQueue"]["found"] is None
        assert report["expired"]["ids"] == sorted(f"m{(i * 37) % 200}" for i in range(1, 20, 2))
    # Unpatched, each query walks all 200 messages (then the queue's 100); patched, the id's index leaves one
    # message to compare, and the sweep walks the messages once, then checks the 20 expired ones' names.
    assert without["byId"]["compared"] >= 200 and without["expired"]["compared"] >= 300
    assert patched["byId"]["compared"] <= 2 and patched["wrongQueue"]["compared"] <= 2
    assert patched["expired"]["compared"] <= 2 * 20


def test_the_expiry_sweep_searches_an_index_and_a_receive_updates_the_indices_in_place() -> None:
    without = _probe(script=UPDATE_PROBE)
    patched = _probe("--require", str(AZURITE_PRELOAD), script=UPDATE_PROBE)

    azurites = ["accountName", "messageId", "queueName", "visibleTime"]
    assert without["indices"] == azurites and patched["indices"] == sorted([*azurites, "expirationTime"])
    assert patched["otherIndices"] == azurites, "only Azurite's message collection gets the expiry index"
    # Unpatched, the sweep compares all 200 expiry times; patched, a binary search finds the 20 expired.
    assert without["swept"] == {"count": 20, "compared": 200}
    assert patched["swept"] == {"count": 20, "compared": 0}
    assert patched["expiryReadBack"] is True
    # Unpatched, updating a list of three rebuilds every index (four sorts of 200); patched, none is rebuilt.
    assert without["rebuilt"] == 4 and patched["rebuilt"] == 0
    for report in (without, patched):
        assert report["badIndices"] == []
        assert report["moved"] == ["m0"] and report["stillQ"] == 199
        assert report["updated"] == ["m0", "m1", "m2"]


@pytest.fixture(scope="module")
def fast_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """An Azurite with the preload, as the bench and the soak start it."""
    location = tmp_path_factory.mktemp("fast-azurite")
    service = start_azurite(location, log_path=location / "azurite.log", fast_queue=True)
    yield service
    service.stop()


def test_only_an_azurite_that_asks_for_the_fast_queue_loads_the_preload(fast_azurite: Azurite, azurite: Azurite) -> None:
    assert fast_azurite.process.args[1:3] == ["--require", str(AZURITE_PRELOAD)]
    assert str(AZURITE_PRELOAD) not in azurite.process.args, "the tests' Azurite runs as published"


@pytest.fixture
def preload_beside_another_release(tmp_path: Path) -> Path:
    """A copy of the preload beside an Azurite that says it is 3.36.0; lokijs is the real one, so every fix would apply."""
    (tmp_path / "devhost").mkdir()
    preload = tmp_path / "devhost" / AZURITE_PRELOAD.name
    shutil.copy(AZURITE_PRELOAD, preload)
    installed = tmp_path / "node_modules" / "azurite"
    installed.mkdir(parents=True)
    (installed / "package.json").write_text(json.dumps({"name": "azurite", "version": "3.36.0"}))
    os.symlink(ROOT / "node_modules" / "lokijs", tmp_path / "node_modules" / "lokijs")
    return preload


def test_the_preload_refuses_an_azurite_release_it_was_not_written_for(preload_beside_another_release: Path) -> None:
    node = shutil.which("node")
    assert node, "node is on PATH (make installs Azurite with it)"

    done = subprocess.run(
        [node, "--require", str(preload_beside_another_release), "-e", "console.log('azurite would start')"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode != 0 and "azurite would start" not in done.stdout
    assert "written for Azurite 3.35.0" in done.stderr and "node_modules/azurite is 3.36.0" in done.stderr, done.stderr


def test_an_azurite_whose_preload_refuses_does_not_start_and_the_error_says_why(
    preload_beside_another_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processes, "AZURITE_PRELOAD", preload_beside_another_release)

    with pytest.raises(ServiceError, match=r"exited with code 1 .*written for Azurite 3\.35\.0"):
        start_azurite(tmp_path / "azurite", log_path=tmp_path / "azurite.log", fast_queue=True)


def test_expired_messages_still_expire_and_deletes_still_delete(fast_azurite: Azurite, unique_name: str) -> None:
    queue = QueueClient.from_connection_string(fast_azurite.connection_string, unique_name)
    queue.create_queue()
    queue.send_message("short-lived", time_to_live=1)
    kept = [queue.send_message(f"kept-{n}") for n in range(3)]
    time.sleep(1.5)

    assert [m.content for m in queue.peek_messages(max_messages=32)] == ["kept-0", "kept-1", "kept-2"]
    queue.delete_message(kept[1])
    received = [m.content for m in queue.receive_messages(max_messages=32)]

    assert received == ["kept-0", "kept-2"]


def test_received_messages_come_back_after_their_visibility_in_order_with_their_count(
    fast_azurite: Azurite, unique_name: str
) -> None:
    queue = QueueClient.from_connection_string(fast_azurite.connection_string, unique_name)
    queue.create_queue()
    for n in range(5):
        queue.send_message(f"m{n}")

    first = list(queue.receive_messages(max_messages=2, visibility_timeout=1))
    assert [m.content for m in first] == ["m0", "m1"]
    assert [m.content for m in queue.peek_messages(max_messages=32)] == ["m2", "m3", "m4"]
    time.sleep(1.5)
    again = [(m.content, m.dequeue_count) for m in queue.receive_messages(messages_per_page=32, max_messages=32)]

    # Oldest visibility first: the three never received, then the two whose visibility ran out.
    assert again == [("m2", 1), ("m3", 1), ("m4", 1), ("m0", 2), ("m1", 2)]


def test_a_queue_saved_in_an_azurite_folder_works_after_a_restart(tmp_path: Path) -> None:
    """A queue saved to disk and reloaded still expires, receives, deletes and updates.

    With the expiry index LokiJS saves expiry times as numbers; without the preload they are saved as text,
    and plain Azurite kept the expired message after the restart (checked when this test was written).
    """
    first = start_azurite(tmp_path, fast_queue=True)
    try:
        queue = QueueClient.from_connection_string(first.connection_string, "restarted")
        queue.create_queue()
        queue.send_message("short-lived", time_to_live=2)
        kept = [queue.send_message(f"kept-{n}") for n in range(3)]
    finally:
        first.stop()
    second = start_azurite(tmp_path, fast_queue=True)
    try:
        queue = QueueClient.from_connection_string(second.connection_string, "restarted")
        time.sleep(2.5)
        assert [m.content for m in queue.peek_messages(max_messages=32)] == ["kept-0", "kept-1", "kept-2"]
        received = list(queue.receive_messages(messages_per_page=32, max_messages=32))
        assert [(m.content, m.dequeue_count) for m in received] == [("kept-0", 1), ("kept-1", 1), ("kept-2", 1)]
        queue.delete_message(received[1])
        queue.send_message("after-restart")
        queue.update_message(received[0], visibility_timeout=0)
        assert [m.content for m in queue.peek_messages(max_messages=32)] == ["after-restart", "kept-0"]
        assert kept[2].id == received[2].id
    finally:
        second.stop()
