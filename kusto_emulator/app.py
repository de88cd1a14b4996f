"""Assembles the emulator: routes of every module, error rendering, the front-door middleware, lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from . import admin, mgmt, query, queued_protocol, rest_ingestion, streaming_ingestion
from .config import EmulatorConfig
from .errors import BadRequest, EmulatorError, EntityNotFound, InternalError
from .middleware import KustoFrontDoor
from .responses import error_response
from .state import EmulatorState

logger = logging.getLogger(__name__)


async def _emulator_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, EmulatorError)
    return error_response(error, request.headers.get("x-ms-client-request-id"))


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        refusal: EmulatorError = EntityNotFound(f"no such endpoint: {request.method} {request.url.path}")
    else:
        refusal = BadRequest(f"{request.method} {request.url.path}: {error.detail}")
        refusal.http_status = error.status_code
    return error_response(refusal, request.headers.get("x-ms-client-request-id"))


async def _unexpected_error(request: Request, error: Exception) -> Response:
    logger.error("unexpected error on %s %s: %s", request.method, request.url.path, type(error).__name__, exc_info=error)
    return error_response(
        InternalError(f"the emulator failed: {type(error).__name__}"), request.headers.get("x-ms-client-request-id")
    )


def create_app(config: EmulatorConfig, state: EmulatorState | None = None) -> Starlette:
    """The ASGI app. Opens the DuckDB catalog unless `state` is given; resumes unfinished blobs at start."""
    state = state or EmulatorState.open(config)
    routes = [
        *rest_ingestion.routes(state),
        *streaming_ingestion.routes(state),
        *mgmt.routes(state),
        *query.routes(state),
        *queued_protocol.routes(state),
        *admin.routes(state),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.resume_unfinished()
        stop: Callable[[], None] = queued_protocol.start(state)
        try:
            yield
        finally:
            stop()
            state.close()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(KustoFrontDoor, state=state, routes=routes)],
        exception_handlers={EmulatorError: _emulator_error, HTTPException: _http_error, Exception: _unexpected_error},
        lifespan=lifespan,
    )
    app.state.emulator = state
    return app
