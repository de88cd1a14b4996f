// Loaded into Azurite's node process with `--require` (devhost/processes.py: start_azurite).
//
// Why: Azurite 3.35.0, the newest release that runs on Node 20, keeps every queue message of every account
// in one LokiJS collection with four binary indices. Before each receive, peek, update and delete it
// removes the queue's expired messages, and passes the list to `Collection.remove` even when the list is
// empty, which is almost always. LokiJS treats any list as a batch removal: it copies the whole collection
// and then rebuilds all four indices from scratch, four sorts of every message held. A request then costs
// n log n in the messages stored, and a drain of a deep queue is bound by those sorts (65% of Azurite's
// CPU, measured; docs/performance.md). Real Azure Storage has no such cost.
//
// What: removing an empty batch becomes the no-op it means. A batch with documents is removed exactly as
// before, so expiry and every other removal behave as they did. Nothing else of Azurite is touched.

"use strict";

const path = require("path");

// Resolve lokijs the way Azurite does, so that the patched module is the one Azurite loads.
const azuriteDir = path.resolve(__dirname, "..", "node_modules", "azurite");
const Loki = require(require.resolve("lokijs", { paths: [azuriteDir] }));

const removeBatch = Loki.Collection && Loki.Collection.prototype.removeBatch;
if (typeof removeBatch !== "function") {
  throw new Error(
    "devhost/azurite_preload.js: lokijs has no Collection.prototype.removeBatch; " +
      "the Azurite pinned in package.json is not the one this preload was written for"
  );
}

Loki.Collection.prototype.removeBatch = function removeBatchUnlessEmpty(batch) {
  if (Array.isArray(batch) && batch.length === 0) {
    return;
  }
  return removeBatch.call(this, batch);
};
