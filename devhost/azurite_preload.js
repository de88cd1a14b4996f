// Loaded into Azurite's node process with `--require` where the pace of Azurite's queue is what gets measured:
// `start_azurite(..., fast_queue=True)` in devhost/processes.py, which the bench and the soak ask for
// (bench/stack.py); `make run` and the tests run Azurite as it is published. Four fixes to the LokiJS behind
// Azurite's queue, each below with its why and what; nothing else of Azurite is touched.
//
// Azurite 3.35.0, the newest release that runs on Node 20, keeps every queue message of every account in one
// LokiJS collection with binary indices on the account, the queue and the message id (and a fourth on
// `visibleTime`, a field its messages do not have). Without these fixes a request costs in proportion to every
// message stored, or to n log n of it, so a drain of a deep queue is bound by Azurite walking and sorting its
// messages (docs/performance.md, "Azurite's queue and the preload"). Real Azure Storage has no such cost. With
// them, deletes and the expiry check go through indices; a receive still walks the queue's visible messages to
// pick the oldest, and keeping the indices moves arrays of integers, both cheap beside what was removed.
//
// The fixes lean on Azurite's internals (the collection's name, the shape of its queries), so they are applied
// only to the Azurite release they were written for: on another one the preload refuses, and Azurite does not
// start. Skipping the fixes instead would let the bench print figures several times off with nothing saying
// why. After an upgrade, check each fix against the new release (docs/local-development.md says what upstream
// would have to change to drop each) and update PATCHED_FOR.

"use strict";

const path = require("path");

/** The Azurite release (node_modules/azurite/package.json) these fixes were written for and checked against. */
const PATCHED_FOR = "3.35.0";

/** Stop the node process before Azurite starts, with one line saying why and what to do. */
function refuse(why) {
  process.stderr.write(`devhost/azurite_preload.js: ${why}\n`);
  process.exit(1);
}

const azuriteDir = path.resolve(__dirname, "..", "node_modules", "azurite");
let installed;
try {
  installed = require(path.join(azuriteDir, "package.json")).version;
} catch (error) {
  refuse(`cannot read the installed Azurite's version (${error.message}): run 'npm ci' (make does this)`);
}
if (installed !== PATCHED_FOR) {
  refuse(
    `its fixes were written for Azurite ${PATCHED_FOR}, and node_modules/azurite is ${installed}: ` +
      `pin azurite ${PATCHED_FOR} in package.json and run 'npm ci', or check each fix against ${installed} ` +
      "(docs/local-development.md) and update PATCHED_FOR"
  );
}

// Resolve lokijs the way Azurite does, so that the patched module is the one Azurite loads.
const Loki = require(require.resolve("lokijs", { paths: [azuriteDir] }));

const MESSAGES = "$MESSAGES_COLLECTION$";

/** The method being replaced; refuses when it is missing, so a changed lokijs cannot leave a fix silently off. */
function original(owner, ownerName, method) {
  const found = owner && owner.prototype && owner.prototype[method];
  if (typeof found !== "function") {
    refuse(`lokijs has no ${ownerName}.prototype.${method}: the lokijs installed is not the one these fixes were written for`);
  }
  return found;
}

// 1. Why: before each receive, peek, update and delete Azurite removes the queue's expired messages, and passes
// the list to `Collection.remove` even when it is empty, which is almost always. LokiJS treats any list as a
// batch removal: it copies the whole collection and then rebuilds every index from scratch, a sort of every
// message held each (65% of Azurite's CPU in a drain of a deep queue, measured).
//
// What: removing an empty batch becomes the no-op it means. A batch with documents is removed as before.
const removeBatch = original(Loki.Collection, "Collection", "removeBatch");
Loki.Collection.prototype.removeBatch = function removeBatchUnlessEmpty(batch) {
  if (Array.isArray(batch) && batch.length === 0) {
    return;
  }
  return removeBatch.call(this, batch);
};

// 2. Why: Azurite's message queries name the account and the queue first, and LokiJS applies the conditions of
// a query in the order written, the first one through an index if it has one. The account's index holds
// every message, so a delete's `findOne({accountName, queueName, messageId})` walks every message twice
// before it looks at the id, and so does the expiry sweep (`{accountName, queueName, expirationTime}`).
//
// What: in the message collection only, a query naming `messageId` applies it first (through the index
// Azurite keeps on it), and one naming `expirationTime` applies that first (through the index of fix 3). The
// conditions stay the same, so a query matches the same documents; only their order in the result can
// differ, and every such query of Azurite either matches one message (by id) or removes what it finds.
const LEADS = ["messageId", "expirationTime"];
const find = original(Loki.Resultset, "Resultset", "find");
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

// 3. Why: with its conditions reordered, the expiry sweep still walks every message to compare its expiry
// time, on every request, to find almost always nothing: half of Azurite's CPU in a drain of 20,000.
//
// What: a new message collection also gets a binary index on `expirationTime`, so the sweep is a binary
// search. LokiJS stores an indexed Date as its epoch milliseconds, which Azurite reads back with
// `new Date(...)` like every other time it keeps. That also mends expiry across a restart: unindexed, a Date
// is saved as ISO text, which LokiJS never finds `$lte` a number, so plain Azurite never expires a message it
// reloaded. A collection loaded from a folder made without this preload keeps the indices it was saved with.
const addCollection = original(Loki, "Loki", "addCollection");
Loki.prototype.addCollection = function addCollectionIndexingExpiry(name, options) {
  if (name === MESSAGES && options && Array.isArray(options.indices) && !options.indices.includes("expirationTime")) {
    options = { ...options, indices: [...options.indices, "expirationTime"] };
  }
  return addCollection.call(this, name, options);
};

// 4. Why: a receive changes the messages it hands out with one `Collection.update` of the list. For a list,
// LokiJS stops maintaining its indices, updates each document, then rebuilds every index from scratch: a
// sort of every message held each, to change the 32 a receive returns (a sixth of Azurite's CPU).
//
// What: in the message collection, a list is updated one document at a time, each kept in its indices as
// LokiJS does for a single update (in each index: a scan of its integers, a move, a binary search).
const update = original(Loki.Collection, "Collection", "update");
Loki.Collection.prototype.update = function updateEachInItsIndices(doc) {
  if (this.name === MESSAGES && Array.isArray(doc)) {
    for (const each of doc) {
      update.call(this, each);
    }
    return;
  }
  return update.call(this, doc);
};
