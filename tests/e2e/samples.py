"""Test files in every format the pipeline loads, each row carrying the id of the blob it came from."""

from __future__ import annotations

import gzip
import io
import json

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import orc

DELIMITED = {"csv": ",", "tsv": "\t", "psv": "|", "scsv": ";"}


def _rows(blob_id: str, count: int) -> list[dict[str, object]]:
    return [{"blob_id": blob_id, "n": index, "word": f"w{index}"} for index in range(count)]


def encode(extension: str, blob_id: str, count: int) -> bytes:
    """The bytes of a file named `*.{extension}` (`csv`, `jsonl.gz`, `parquet`, ...) holding `count` rows."""
    fmt, _, compression = extension.partition(".")
    rows = _rows(blob_id, count)
    if fmt in DELIMITED:
        data = "".join(DELIMITED[fmt].join(str(value) for value in row.values()) + "\n" for row in rows).encode()
    elif fmt == "jsonl":
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    elif fmt == "json":
        data = json.dumps(rows).encode()
    else:
        table = pa.Table.from_pylist(rows, schema=pa.schema([("blob_id", pa.string()), ("n", pa.int64()), ("word", pa.string())]))
        sink = io.BytesIO()
        if fmt == "parquet":
            pq.write_table(table, sink)
        elif fmt == "orc":
            orc.write_table(table, sink)
        elif fmt == "avro":
            schema = {
                "type": "record",
                "name": "Row",
                "fields": [
                    {"name": "blob_id", "type": "string"},
                    {"name": "n", "type": "long"},
                    {"name": "word", "type": "string"},
                ],
            }
            fastavro.writer(sink, fastavro.parse_schema(schema), rows)
        else:
            raise ValueError(f"no sample for {extension!r}")
        data = sink.getvalue()
    return gzip.compress(data) if compression == "gz" else data
