"""Downloads a blob the way the ingestion service would: with the credential carried by its URL.

A URL with a SAS query is read as it is. A URL ending in `;managed_identity=...` stands for the cluster's
managed identity, which locally means the emulator's own storage connection string (`--storage`). Storage
errors become Kusto download error codes, so the client sees what a real cluster would report.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerSasPermissions, ExponentialRetry, generate_container_sas
from requests.adapters import HTTPAdapter

from .errors import IngestionError

logger = logging.getLogger(__name__)

_CREDENTIAL_SUFFIXES = ("managed_identity=", "impersonate", "token=", "sharedkey=")
DOWNLOAD_BLOCK_SIZE = 256 * 1024  # azure.storage.blob's DATA_BLOCK_SIZE


def split_credential(url: str) -> tuple[str, str]:
    """(plain URL, credential) where credential is the `?query` or the `;suffix` (empty if none).

    The plain URL is what may be logged and stored in statuses; the credential is kept apart.
    """
    scheme_end = url.find("://")
    cut = len(url)
    for at in (url.find("?"), url.find(";", scheme_end + 3 if scheme_end >= 0 else 0)):
        if 0 <= at < cut:
            cut = at
    return url[:cut], url[cut:]


def _blob_location(plain_url: str) -> tuple[str, str]:
    """(container, blob name) from a path-style (Azurite) or host-style (Azure) blob URL."""
    parts = urlsplit(plain_url)
    segments = unquote(parts.path).lstrip("/").split("/")
    host = parts.hostname or ""
    path_style = host.replace(".", "").isdigit() or host == "localhost" or ".blob." not in host
    if path_style:
        segments = segments[1:]  # the first segment is the account name
    if len(segments) < 2 or not segments[0] or not segments[-1]:
        raise IngestionError("BadRequest_InvalidBlobUri", f"'{plain_url}' does not name a container and a blob")
    return segments[0], "/".join(segments[1:])


def blob_client(url: str, storage_connection_string: str, **options: Any) -> BlobClient:
    """A client for the blob `url` names: its SAS, or the emulator's account for `;managed_identity=`.

    `options` go to the client (transport, retry policy); the worker passes its shared pool (`BlobAccess`).
    """
    plain, credential = split_credential(url)
    if not plain.startswith(("http://", "https://")):
        raise IngestionError("BadRequest_InvalidBlobUri", f"'{plain}' is not an http(s) blob URL")
    if credential.startswith(";"):
        kind = credential[1:].lower()
        if not kind.startswith(_CREDENTIAL_SUFFIXES):
            raise IngestionError("BadRequest_InvalidAuthentication", f"unsupported credential suffix on '{plain}'")
        if not kind.startswith("managed_identity="):
            raise IngestionError(
                "BadRequest_InvalidAuthentication",
                f"the emulator supports SAS URLs and ';managed_identity=...' only, not this suffix on '{plain}'",
            )
        container, name = _blob_location(plain)
        service = BlobServiceClient.from_connection_string(storage_connection_string, **options)
        expected = service.url.rstrip("/")
        if not plain.startswith(expected + "/"):
            raise IngestionError(
                "BadRequest_InvalidManagedIdentity",
                f"the managed identity has no access to '{plain}': it is not in the emulator's storage account ({expected})",
            )
        return service.get_blob_client(container, name)
    _blob_location(plain)
    return BlobClient.from_blob_url(url, **options)


class BlobAccess:
    """Blob clients for the worker threads, authenticated as each URL says, sharing one connection pool.

    A new client per blob would open a new HTTP connection per blob; with small blobs that costs more than
    the ingestion itself.
    """

    def __init__(self, storage_connection_string: str, pool_size: int) -> None:
        self._connection_string = storage_connection_string
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy lookup in the environment on every request: storage is local
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=max(pool_size, 4))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def _options(self) -> dict[str, Any]:
        return {
            # The block size is the SDK's own default (256 KiB), which it sets only on a transport it builds itself:
            # a transport passed in reads the body 4 KiB at a time, in Python, and took 1.5-2x as long for a large blob.
            "transport": RequestsTransport(
                session=self._session, session_owner=False, connection_data_block_size=DOWNLOAD_BLOCK_SIZE
            ),
            # The SDK's default waits 15 s before its first retry; locally an unreachable store should show quickly.
            "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2),
        }

    def client(self, url: str) -> BlobClient:
        """A client for the blob `url` names, on the shared connection pool."""
        return blob_client(url, self._connection_string, **self._options())

    def close(self) -> None:
        self._session.close()


def download_blob(client: BlobClient, destination: Path, plain_url: str) -> int:
    """Write the blob to `destination`; returns its size. Storage failures become Download_* errors."""
    try:
        with destination.open("wb") as handle:
            return client.download_blob(max_concurrency=1).readinto(handle)
    except ResourceNotFoundError as error:
        raise IngestionError("Download_SourceNotFound", f"blob '{plain_url}' was not found ({error.error_code})") from None
    except ClientAuthenticationError as error:
        raise IngestionError("Download_Forbidden", f"access to blob '{plain_url}' was denied ({error.error_code})") from None
    except HttpResponseError as error:
        if error.status_code == 403:
            raise IngestionError("Download_Forbidden", f"access to blob '{plain_url}' was denied ({error.error_code})") from None
        if error.status_code in (400, 412):
            raise IngestionError(
                "Download_BadRequest", f"storage refused the download of '{plain_url}' ({error.error_code})"
            ) from None
        raise IngestionError("Download_UnknownError", f"download of '{plain_url}' failed with HTTP {error.status_code}") from None
    except (ServiceRequestError, ServiceResponseError) as error:
        raise IngestionError("Download_UnknownError", f"storage unreachable for '{plain_url}': {type(error).__name__}") from None


def delete_blob(client: BlobClient, plain_url: str) -> None:
    """`deleteAfterDownload`: best effort, as in Kusto; a failure is logged, not reported as an ingestion error."""
    try:
        client.delete_blob()
    except HttpResponseError as error:
        logger.warning("could not delete %s after download: HTTP %s %s", plain_url, error.status_code, error.error_code)


def container_sas_url(storage_connection_string: str, container: str, hours: int = 24) -> str:
    """A read/write/list SAS URL for `container` in the emulator's storage account, creating the container."""
    service = BlobServiceClient.from_connection_string(storage_connection_string)
    client = service.get_container_client(container)
    with contextlib.suppress(ResourceExistsError):
        client.create_container()
    sas = generate_container_sas(
        service.account_name,
        container,
        account_key=service.credential.account_key,
        permission=ContainerSasPermissions(read=True, write=True, create=True, add=True, list=True, delete=True),
        expiry=datetime.now(UTC) + timedelta(hours=hours),
    )
    return f"{client.url}?{sas}"
