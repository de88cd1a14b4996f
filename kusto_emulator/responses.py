"""Kusto's wire shapes for answers: the OneApi error body and the v1 JSON table response."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse

from .errors import EmulatorError
from .ids import random_uuid
from .kusto_types import DOTNET_TYPES

_GENERIC_MESSAGES = {
    400: "Request is invalid and cannot be executed.",
    401: "Unauthorized: the request has no valid bearer token.",
    404: "Request is invalid and cannot be executed.",
    413: "Request payload is too large.",
    429: "The request was throttled.",
    500: "Internal service error.",
}


def one_api_error(
    code: str,
    detail: str,
    *,
    http_status: int = 400,
    kusto_type: str = "Kusto.Common.Svc.Exceptions.BadRequestException",
    permanent: bool = True,
    client_request_id: str | None = None,
    activity_id: str | None = None,
) -> dict[str, Any]:
    """The OneApi error object Kusto answers with (`{"error": {...}}`): code, messages, context, permanence."""
    return {
        "error": {
            "code": code,
            "message": _GENERIC_MESSAGES.get(http_status, "Request failed."),
            "@type": kusto_type,
            "@message": detail,
            "@context": {
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "serviceAlias": "KUSTO-EMULATOR",
                "machineName": socket.gethostname(),
                "processName": "kusto_emulator",
                "processId": os.getpid(),
                "threadId": threading.get_ident(),
                "clientRequestId": client_request_id or "",
                "activityId": activity_id or random_uuid(),
                "subActivityId": random_uuid(),
                "activityType": "KustoEmulator",
                "parentActivityId": activity_id or "",
                "activityStack": "",
            },
            "@permanent": permanent,
        }
    }


def error_response(
    error: EmulatorError, client_request_id: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An HTTP response for `error`, status and body as Kusto would send them."""
    body = one_api_error(
        error.code,
        error.message,
        http_status=error.http_status,
        kusto_type=error.kusto_type,
        permanent=error.permanent,
        client_request_id=client_request_id,
    )
    return JSONResponse(body, status_code=error.http_status, headers=headers)


@dataclass
class V1Table:
    """One table of a v1 response: columns as (name, Kusto type), rows as lists of JSON values."""

    name: str
    columns: Sequence[tuple[str, str]]
    rows: list[list[Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "TableName": self.name,
            "Columns": [
                {"ColumnName": name, "DataType": DOTNET_TYPES.get(kind, "String"), "ColumnType": kind}
                for name, kind in self.columns
            ],
            "Rows": [[json_value(value) for value in row] for row in self.rows],
        }


def json_value(value: Any) -> Any:
    """A cell value as Kusto serialises it: datetimes as ISO with Z, UUIDs as strings."""
    if isinstance(value, datetime):
        text = value.replace(tzinfo=None).isoformat(timespec="microseconds")
        return text + "Z"
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def v1_response(tables: Sequence[V1Table]) -> JSONResponse:
    """A v1 (management) response; table i is named Table_i unless the caller named it."""
    return JSONResponse({"Tables": [table.to_json() for table in tables]})
