"""Submits blobs one by one with azure-kusto-ingest's QueuedIngestClient; runs in `.venv-sdk`, not `.venv`.

    .venv-sdk/bin/python bench/sdk_ingest.py EMULATOR_URL DATABASE TABLE URLS_JSON_FILE

The SDK pins older storage SDKs than the app, hence the separate environment. Each HTTP request the
process sends is counted by destination (the Kusto endpoint, or storage) at the `requests` adapter, the
one place every request of both SDKs passes; the storage requests also by method and URL (its query cut to
the parameters that name the operation, so no SAS), for `bench.cost_model` to price. Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests.adapters
from azure.kusto.data import KustoConnectionStringBuilder
from azure.kusto.data.data_format import DataFormat
from azure.kusto.ingest import BlobDescriptor, IngestionProperties, QueuedIngestClient

_sent: Counter[str] = Counter()
_requests: Counter[str] = Counter()  # "METHOD url" with the query cut to what names the operation (no SAS)
_send = requests.adapters.HTTPAdapter.send
_NAMING_PARAMETERS = ("comp", "restype", "peekonly")


def _counting_send(self: requests.adapters.HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
    parts = urlsplit(request.url)
    _sent[parts.netloc] += 1
    naming = "&".join(p for p in parts.query.split("&") if p.split("=", 1)[0].lower() in _NAMING_PARAMETERS)
    _requests[f"{request.method} {parts.scheme}://{parts.netloc}{parts.path}?{naming}"] += 1
    return _send(self, request, *args, **kwargs)


def main(url: str, database: str, table: str, url_file: Path) -> dict[str, Any]:
    requests.adapters.HTTPAdapter.send = _counting_send  # type: ignore[method-assign]
    blob_urls = json.loads(url_file.read_text(encoding="utf-8"))
    client = QueuedIngestClient(KustoConnectionStringBuilder.with_no_authentication(url))
    properties = IngestionProperties(database, table, data_format=DataFormat.CSV)
    started = time.perf_counter()
    for blob_url in blob_urls:
        client.ingest_from_blob(BlobDescriptor(blob_url, 64), properties)
    seconds = time.perf_counter() - started
    kusto_host = urlsplit(url).netloc
    return {
        "blobs": len(blob_urls),
        "seconds": seconds,
        "kustoRequestsSeen": _sent[kusto_host],
        "storageRequests": sum(count for host, count in _sent.items() if host != kusto_host),
        "storageRequestsByUrl": {key: n for key, n in _requests.items() if urlsplit(key.split(" ", 1)[1]).netloc != kusto_host},
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]))))
