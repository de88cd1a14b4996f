"""Decompression by blob name, as Kusto does it: `.gz`/`.gzip` and `.zip` (entries picked by zipPattern)."""

from __future__ import annotations

import gzip
import re
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Any

from .errors import IngestionError


def unpack(path: Path, plain_url: str, zip_pattern: Any) -> list[Path]:
    """Decompress by the blob name's extension, as Kusto does: `.gz`, `.zip` (entries picked by zipPattern)."""
    name = plain_url.lower().rsplit("/", 1)[-1]
    if name.endswith((".gz", ".gzip")):
        target = path.with_suffix(".data")
        try:
            with gzip.open(path, "rb") as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
        except (OSError, EOFError, zlib.error) as error:
            raise IngestionError("BadRequest_InvalidBlob", f"blob '{plain_url}' is not valid gzip: {error}") from None
        if target.stat().st_size == 0:
            raise IngestionError("BadRequest_EmptyBlob", f"blob '{plain_url}' decompresses to nothing")
        return [target]
    if name.endswith(".zip"):
        return unzip(path, plain_url, zip_pattern)
    return [path]


def unzip(path: Path, plain_url: str, zip_pattern: Any) -> list[Path]:
    try:
        pattern = re.compile(str(zip_pattern)) if zip_pattern else None
    except re.error as error:
        raise IngestionError("BadRequest_MalformedIngestionProperty", f"zipPattern is not a valid regex: {error}") from None
    files: list[Path] = []
    try:
        with zipfile.ZipFile(path) as archive:
            entries = [info for info in archive.infolist() if not info.is_dir()]
            if pattern is not None:
                entries = [info for info in entries if pattern.fullmatch(info.filename) or pattern.search(info.filename)]
            for index, info in enumerate(entries):
                target = path.parent / f"entry-{index}"
                with archive.open(info) as source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
                if target.stat().st_size:
                    files.append(target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, zlib.error) as error:
        raise IngestionError("BadRequest_InvalidArchive", f"blob '{plain_url}' is not a readable zip archive: {error}") from None
    if not files:
        raise IngestionError("BadRequest_EmptyArchive", f"zip '{plain_url}' has no non-empty entries matching zipPattern")
    return files
