"""The HTTP transport of the app's storage, Kusto and webhook clients: requests, with its environment read once per host.

With `trust_env` on (azure-core's default), requests rescans the whole process environment on every
request, for HTTP(S)_PROXY, NO_PROXY and REQUESTS_CA_BUNDLE: about 0.2 ms of CPU per request with 35
variables, growing with their number (a Functions host sets several per app setting). A drain makes about
one storage request per blob, so that scan cost as much as the app's own parsing and signing of the blob.

The environment does not change while a worker runs, so `EnvironmentOnceTransport` asks requests' own
function (`get_environ_proxies`, which applies NO_PROXY) once per scheme and host and hands the answer to
every later request there; the CA bundle is read once at construction. Proxies and CA bundle therefore
behave as before. The one lookup dropped is requests' `.netrc` one: every storage and Kusto request carries
its own Authorization header, which a netrc entry would only have replaced, and an alert webhook's URL
carries its own key.

Clients of one storage account share one transport (`SharedTransport`), as the storage SDK's own
`get_queue_client` children do: one connection pool per host, sized for the drain's threads (`POOL_SIZE`).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from requests.utils import get_environ_proxies

STORAGE_CONNECTION_TIMEOUT = 20
STORAGE_READ_TIMEOUT = 60
STORAGE_DATA_BLOCK_SIZE = 256 * 1024
"""What azure-storage-blob/-queue give the transport they build themselves (their `_shared/constants.py`)."""
POOL_SIZE = 32
"""Connections kept open per host: the clients of one account share a transport, and a drain sends from two pools
of SUBMIT_CONCURRENCY threads (at most 64) at once; requests' own 10 would open and drop a connection per request
beyond them."""


class EnvironmentOnceTransport(RequestsTransport):
    """A RequestsTransport whose proxies and CA bundle come from the environment, read once instead of per request."""

    def __init__(self, **kwargs: Any) -> None:
        # requests uses the bundle only when the caller left verification at its default (True).
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            kwargs.setdefault("connection_verify", ca_bundle)
        super().__init__(use_env_settings=False, **kwargs)
        self._proxies_by_origin: dict[str, dict[str, str]] = {}

    def proxies_for(self, url: str) -> dict[str, str]:
        """The environment's proxies for the URL's scheme and host ({} when NO_PROXY exempts it), cached."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        proxies = self._proxies_by_origin.get(origin)
        if proxies is None:
            # Two threads may both miss: each computes the same answer, so no lock is needed.
            proxies = self._proxies_by_origin[origin] = get_environ_proxies(origin)
        return proxies

    def _init_session(self, session: requests.Session) -> None:
        super()._init_session(session)
        for adapter in {id(adapter): adapter for adapter in session.adapters.values()}.values():
            adapter.init_poolmanager(POOL_SIZE, POOL_SIZE)  # type: ignore[attr-defined]

    def send(self, request: Any, *, proxies: dict[str, str] | None = None, **kwargs: Any) -> Any:
        # As requests does with trust_env: proxies given for the request win, the environment fills in the rest.
        merged = {**self.proxies_for(request.url), **(proxies or {})}
        return super().send(request, proxies=merged or None, **kwargs)


def storage_transport() -> EnvironmentOnceTransport:
    """The transport one storage client gets: the SDK's own time-outs and block size, the environment read once."""
    return EnvironmentOnceTransport(
        connection_timeout=STORAGE_CONNECTION_TIMEOUT,
        read_timeout=STORAGE_READ_TIMEOUT,
        connection_data_block_size=STORAGE_DATA_BLOCK_SIZE,
    )


class SharedTransport(HttpTransport):
    """A transport several clients send through, which none of them can close: the owner keeps it for the process.

    A client closes its transport when it is closed or leaves a `with` block; one client of an account must not
    close the connection pool of all the others.
    """

    def __init__(self, transport: HttpTransport) -> None:
        self._transport = transport

    def send(self, request: Any, **kwargs: Any) -> Any:
        return self._transport.send(request, **kwargs)

    def open(self) -> None:
        self._transport.open()

    def close(self) -> None:
        pass

    def __enter__(self) -> SharedTransport:
        self._transport.open()
        return self

    def __exit__(self, *args: object) -> None:
        pass
