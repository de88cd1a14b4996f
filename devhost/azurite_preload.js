// Loaded into Azurite's node process with `--require` (devhost/processes.py: start_azurite). Two fixes to the
// LokiJS behind Azurite's queue, each below with its why and what; nothing else of Azurite is touched.
//
// 1. Why: Azurite 3.35.0, the newest release that runs on Node 20, keeps every queue message of every account
// in one LokiJS collection with four binary indices. Before each receive, peek, update and delete it
// removes the queue's expired messages, and passes the list to `Collection.remove` even when the list is
// empty, which is almost always. LokiJS treats any list as a batch removal: it copies the whole collection
// and then rebuilds all four indices from scratch, four sorts of every message held. A request then costs
// n log n in the messages stored, and a drain of a deep queue is bound by those sorts (65% of Azurite's
// CPU, measured; docs/performance.md). Real Azure Storage has no such cost.
//
// What: removing an empty batch becomes the no-op it means. A batch with documents is removed exactly as
// before, so expiry and every other removal behave as they did.

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

// 2. Why: Azurite's message queries name the account and the queue first, and LokiJS applies the conditions of
// a query in the order written, the first one through an index if it has one. The account's index holds
// every message, so a delete's `findOne({accountName, queueName, messageId})` walks every message twice
// before it looks at the id, and the expiry sweep before every request (`{accountName, queueName,
// expirationTime}`) walks them twice to find, almost always, nothing. A walk's cost is memory latency, so
// it also made Azurite's speed swing with where its documents lay (docs/performance.md, "Side by side").
//
// What: in the message collection only, a query naming `messageId` applies it first (through the index
// Azurite keeps on it), and one naming `expirationTime` applies that first (one walk instead of two). The
// conditions stay the same, so a query matches the same documents; only their order in the result can
// differ, and every such query of Azurite either matches one message (by id) or removes what it finds.
const MESSAGES = "$MESSAGES_COLLECTION$";
const LEADS = ["messageId", "expirationTime"];
const find = Loki.Resultset && Loki.Resultset.prototype.find;
if (typeof find !== "function") {
  throw new Error(
    "devhost/azurite_preload.js: lokijs has no Resultset.prototype.find; " +
      "the Azurite pinned in package.json is not the one this preload was written for"
  );
}

Loki.Resultset.prototype.find = function findSelectiveFirst(query, firstOnly) {
  if (this.collection.name === MESSAGES && query && typeof query === "object" && !Array.isArray(query)) {
    const keys = Object.keys(query);
    const lead = LEADS.find((key) => keys.includes(key));
    if (lead && keys[0] !== lead && !keys.some((key) => key.startsWith("$"))) {
      query = { [lead]: query[lead], ...Object.fromEntries(keys.filter((key) => key !== lead).map((key) => [key, query[key]])) };
    }
  }
  return find.call(this, query, firstOnly);
};
