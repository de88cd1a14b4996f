"""The `make run` demo: the tables it loads into and the files it stages (see demo/README.md).

The committed files in `demo/` are staged under their own relative paths; gzip copies and a Parquet file
are generated here, so the repository holds no binaries.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from devhost import connections
from shared.settings import STAGING_CONNECTION, Settings

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"

DEMO_TABLES = {
    "Demo.Events": "(ts:datetime, event:string, user:string, count:long)",
    "Demo.Metrics": "(ts:datetime, host:string, metric:string, value:real)",
}


def _metrics_parquet(jsonl: bytes) -> bytes:
    rows = [json.loads(line) for line in jsonl.decode().splitlines() if line.strip()]
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def demo_files() -> dict[str, bytes]:
    """Blob name -> content: every committed demo file plus the generated ones."""
    files = {
        path.relative_to(DEMO_DIR).as_posix(): path.read_bytes()
        for path in sorted(DEMO_DIR.rglob("*"))
        if path.is_file() and path.name != "README.md"
    }
    files["Demo/Events/events-copy.csv.gz"] = gzip.compress(files["Demo/Events/events.csv"])
    files["Demo/Metrics/metrics-copy.jsonl.gz"] = gzip.compress(files["Demo/Metrics/metrics.jsonl"])
    files["Demo/Metrics/metrics.parquet"] = _metrics_parquet(files["Demo/Metrics/metrics.jsonl"])
    return files


def seed_demo(settings: Settings, values: Mapping[str, str]) -> int:
    """Stage the demo files (overwriting, so each run shows the pipeline again); returns how many."""
    container = connections.blob_service(STAGING_CONNECTION, values).get_container_client(settings.staging_container)
    files = demo_files()
    for name, data in files.items():
        container.upload_blob(name, data, overwrite=True)
    return len(files)
