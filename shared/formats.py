"""Kusto data format and compression, from a blob name or from an explicit value.

Kusto's services take compression from the blob name (`.gz` or `.zip` after the format extension) but
never the format: the client must send it. The app reads it from the file extension so a plain upload
routes with no configuration; a rule or the `kustoDataFormat` metadata can still say it explicitly.

JSON: Kusto's `json` format is JSON Lines only, and a `.json` file is as often one object or an array.
`.json`, `.jsonl` and `.ndjson` therefore all map to `multijson`, which reads JSON Lines, concatenated
objects and arrays alike; ask for `json` explicitly (rule or metadata) to get the strict JSON Lines reader.
"""

from __future__ import annotations

from dataclasses import dataclass

# Every value Kusto accepts in `format` (lowercase on the wire), as in pending-blob.schema.json.
KUSTO_FORMATS = (
    "csv",
    "tsv",
    "tsve",
    "scsv",
    "sohsv",
    "psv",
    "txt",
    "raw",
    "json",
    "singlejson",
    "multijson",
    "avro",
    "apacheavro",
    "parquet",
    "orc",
    "w3clogfile",
)

# File extension (lowercase, without the dot) -> Kusto format.
EXTENSION_FORMATS = {
    "csv": "csv",
    "tsv": "tsv",
    "tsve": "tsve",
    "scsv": "scsv",
    "sohsv": "sohsv",
    "psv": "psv",
    "txt": "txt",
    "raw": "raw",
    "json": "multijson",
    "jsonl": "multijson",
    "ndjson": "multijson",
    "multijson": "multijson",
    "singlejson": "singlejson",
    "avro": "avro",
    "apacheavro": "apacheavro",
    "parquet": "parquet",
    "orc": "orc",
    "log": "w3clogfile",
    "w3clogfile": "w3clogfile",
}

COMPRESSION_EXTENSIONS = {"gz": "gzip", "zip": "zip"}

# Formats whose bytes are already encoded and compressed by the format itself: their blob size says little
# about the data size Kusto will see, so it is not reported as the raw size.
SELF_COMPRESSED_FORMATS = frozenset({"avro", "apacheavro", "parquet", "orc"})


class UnknownFormatError(ValueError):
    """A format value is not one Kusto accepts; the text lists the accepted ones."""


@dataclass(frozen=True)
class FileType:
    """What a blob name says: the format (None when the extension says nothing) and the compression."""

    format: str | None
    compression: str | None


def file_type(blob_name: str) -> FileType:
    """Format and compression from the last path segment, e.g. `x.csv.gz` -> (csv, gzip), `x.zip` -> (None, zip)."""
    file_name = blob_name.rsplit("/", 1)[-1]
    parts = file_name.lower().split(".")[1:]
    compression = None
    if parts and parts[-1] in COMPRESSION_EXTENSIONS:
        compression = COMPRESSION_EXTENSIONS[parts.pop()]
    data_format = EXTENSION_FORMATS.get(parts[-1]) if parts else None
    return FileType(format=data_format, compression=compression)


def check_format(value: str) -> str:
    """The Kusto format named by `value` (any letter case), lowercase; UnknownFormatError when there is none."""
    normalised = value.strip().lower()
    if normalised not in KUSTO_FORMATS:
        raise UnknownFormatError(f"{value!r} is not a Kusto data format (one of {', '.join(KUSTO_FORMATS)})")
    return normalised


def reports_raw_size(data_format: str, compression: str | None) -> bool:
    """True when the blob size is the uncompressed size Kusto will read (plain text formats only)."""
    return compression is None and data_format not in SELF_COMPRESSED_FORMATS
