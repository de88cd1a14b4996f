"""Typed errors of the emulator: each carries the Kusto error code, the HTTP status and its permanence.

Request handlers raise these and one exception handler turns them into a OneApi error body, so every
refusal looks like Kusto's. The ingestion worker uses `IngestionError` for per-blob failures, whose codes
are the real ingestion error codes (so a client's retry decisions can be tested against the emulator).
"""

from __future__ import annotations

# Permanence of the ingestion error codes the emulator produces (Kusto's error-code table: P/T).
TRANSIENT_CODES = frozenset(
    {
        "Download_UnknownError",
        "Download_TransientNameResolutionFailure",
        "General_InternalServerError",
        "General_TransientSchemaMismatch",
        "General_ThrottledIngestion",
        "General_AbandonedIngestion",
        "Timeout",
        "OutOfMemory",
        "Unknown",
        "UpdatePolicy_FailedDescendantTransaction",
        "UpdatePolicy_IngestionError",
        "UpdatePolicy_UnknownError",
    }
)


def is_permanent(code: str) -> bool:
    """Whether Kusto reports `code` as a permanent failure (retrying the same blob cannot help)."""
    return code not in TRANSIENT_CODES


class EmulatorError(Exception):
    """A request cannot be served; rendered as a OneApi error body with this code and HTTP status."""

    http_status = 400
    code = "BadRequest"
    kusto_type = "Kusto.Common.Svc.Exceptions.BadRequestException"
    permanent = True

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(EmulatorError):  # noqa: N818 - named after Kusto's error kinds
    """The request is malformed: bad JSON, a schema violation, an unknown command or option."""


class SyntaxError_(BadRequest):  # noqa: N801 - trailing underscore avoids shadowing the builtin
    """A management command could not be parsed."""

    code = "BadRequest_SyntaxError"
    kusto_type = "Kusto.Data.Exceptions.SyntaxException"


class EntityNotFound(EmulatorError):  # noqa: N818 - named after Kusto's error kinds
    """A database, table or mapping named by the request does not exist."""

    http_status = 404
    code = "BadRequest_EntityNotFound"
    kusto_type = "Kusto.Data.Exceptions.EntityNotFoundException"


class DatabaseNotFound(EntityNotFound):
    """The database does not exist (and databases are not created on first use)."""

    code = "BadRequest_DatabaseNotExist"
    kusto_type = "Kusto.Data.Exceptions.DatabaseNotFoundException"


class TableNotFound(EntityNotFound):
    """The table does not exist in the database."""

    code = "BadRequest_TableNotExist"
    kusto_type = "Kusto.Data.Exceptions.TableNotFoundException"


class MappingNotFound(EntityNotFound):
    """The named ingestion mapping does not exist on the table."""

    code = "BadRequest_MappingReferenceWasNotFound"
    kusto_type = "Kusto.Data.Exceptions.IngestionMappingNotFoundException"


class OperationNotFound(EntityNotFound):
    """No tracked ingestion operation has this id for this database and table."""

    code = "BadRequest_EntityNotFound"


class EntityAlreadyExists(EmulatorError):  # noqa: N818 - named after Kusto's error kinds
    """`.create` of something that exists with a different definition."""

    http_status = 400
    code = "BadRequest_EntityAlreadyExists"
    kusto_type = "Kusto.Data.Exceptions.EntityAlreadyExistsException"


class PayloadTooLarge(EmulatorError):  # noqa: N818 - named after Kusto's error kinds
    """The request body is larger than the emulator accepts."""

    http_status = 413
    code = "BadRequest_RequestTooLarge"


class Unauthorized(EmulatorError):  # noqa: N818 - named after Kusto's error kinds
    """The bearer token is missing or not the one `--require-token` asks for."""

    http_status = 401
    code = "Unauthorized"
    kusto_type = "Kusto.Common.Svc.Exceptions.UnauthorizedOperationException"


class Throttled(EmulatorError):  # noqa: N818 - named after Kusto's error kinds
    """Injected throttling (HTTP 429); transient, the response carries Retry-After."""

    http_status = 429
    code = "TooManyRequests"
    kusto_type = "Kusto.DataNode.Exceptions.ThrottleException"
    permanent = False


class InternalError(EmulatorError):
    """An injected or unexpected server error (HTTP 500); transient."""

    http_status = 500
    code = "InternalServiceError"
    kusto_type = "Kusto.Common.Svc.Exceptions.InternalServiceException"
    permanent = False


class IngestionError(Exception):
    """One blob cannot be ingested: carries the Kusto ingestion error code, permanence and details."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details

    @property
    def permanent(self) -> bool:
        return is_permanent(self.code)

    @property
    def failure_status(self) -> str:
        return "Permanent" if self.permanent else "Transient"
