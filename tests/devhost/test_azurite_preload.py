"""devhost/azurite_preload.js: Azurite's empty removals stop rebuilding its indices, and nothing else changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from azure.storage.queue import QueueClient

from devhost.processes import AZURITE_PRELOAD, ROOT, Azurite

# Builds a LokiJS collection indexed the way Azurite's message collection is, then reports how many
# times the indices were rebuilt by an empty removal and by a removal of one document, and what is left.
PROBE = """
const path = require("path");
const azuriteDir = path.join(process.cwd(), "node_modules", "azurite");
const Loki = require(require.resolve("lokijs", { paths: [azuriteDir] }));
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


def _probe(*node_args: str) -> dict[str, int]:
    node = shutil.which("node")
    assert node, "node is on PATH (make installs Azurite with it)"
    done = subprocess.run([node, *node_args, "-e", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def probes() -> tuple[dict[str, int], dict[str, int]]:
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


def test_azurite_is_started_with_the_preload(azurite: Azurite) -> None:
    assert azurite.process.args[1:3] == ["--require", str(AZURITE_PRELOAD)]


def test_expired_messages_still_expire_and_deletes_still_delete(azurite: Azurite, unique_name: str) -> None:
    queue = QueueClient.from_connection_string(azurite.connection_string, unique_name)
    queue.create_queue()
    queue.send_message("short-lived", time_to_live=1)
    kept = [queue.send_message(f"kept-{n}") for n in range(3)]
    time.sleep(1.5)

    assert [m.content for m in queue.peek_messages(max_messages=32)] == ["kept-0", "kept-1", "kept-2"]
    queue.delete_message(kept[1])
    received = [m.content for m in queue.receive_messages(max_messages=32)]

    assert received == ["kept-0", "kept-2"]
