"""An azure-core transport that answers from a script, for HTTP edge cases of the Kusto and storage clients.

azure-core lets any `HttpTransport` stand in for the network; this one returns canned answers (or raises
canned transport errors) in order, records each request, and records the retry policy's sleeps instead of
sleeping, so tests see exactly what the pipeline did without waiting.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import requests
from azure.core.pipeline.transport import HttpRequest as LegacyHttpRequest
from azure.core.pipeline.transport import HttpTransport, RequestsTransportResponse
from azure.core.rest import HttpRequest
from azure.core.rest._requests_basic import RestRequestsTransportResponse

Answer = tuple[int, Any, dict[str, str]] | Exception | Callable[[HttpRequest], tuple[int, Any, dict[str, str]]]


def answer(status: int, body: Any = None, **headers: str) -> tuple[int, Any, dict[str, str]]:
    """A canned answer; a dict or list body is sent as JSON. Header names use '_' for '-'."""
    return status, body, {name.replace("_", "-"): value for name, value in headers.items()}


def one_api_error(code: str, message: str, permanent: bool | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": "Request is invalid and cannot be executed.", "@message": message}
    if permanent is not None:
        error["@permanent"] = permanent
    return {"error": error}


class ScriptedTransport(HttpTransport):
    """Answers requests from `script`, in order; fails the test loudly when the script runs out."""

    def __init__(self, *script: Answer) -> None:
        self.script = list(script)
        self.requests: list[HttpRequest] = []
        self.options: list[dict[str, Any]] = []
        self.sleeps: list[float] = []

    def send(self, request: HttpRequest, **kwargs: Any) -> RestRequestsTransportResponse:  # type: ignore[override]
        self.requests.append(request)
        self.options.append(kwargs)
        if not self.script:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        status, body, headers = item(request) if callable(item) else item
        raw = requests.Response()
        raw.status_code = status
        raw.raw = io.BytesIO((json.dumps(body) if isinstance(body, dict | list) else (body or "")).encode())
        raw.headers.update(headers)
        if isinstance(body, dict | list):
            raw.headers.setdefault("Content-Type", "application/json")
        raw.url = request.url
        if isinstance(request, LegacyHttpRequest):  # the storage SDKs still use the older request type
            return RequestsTransportResponse(request, raw)
        response = RestRequestsTransportResponse(request=request, internal_response=raw)
        if not kwargs.get("stream", False):
            response.read()
        return response

    def sleep(self, duration: float) -> None:
        self.sleeps.append(duration)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> ScriptedTransport:
        return self

    def __exit__(self, *args: object) -> None:
        pass
