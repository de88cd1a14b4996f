"""Admin routes for tests and benchmarks: fault settings, counters, health. Never part of Kusto's API."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .bodies import read_json_body
from .state import EmulatorState


def routes(state: EmulatorState) -> list[Route]:
    async def faults(request: Request) -> Response:
        if request.method == "PUT":
            settings = state.faults.update(await read_json_body(request, state.config.max_body_bytes))
        else:
            settings = state.faults.settings
        return JSONResponse(settings.to_json())

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats.snapshot())

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "databases": state.catalog.list_databases()})

    return [
        Route("/admin/faults", faults, methods=["GET", "PUT"]),
        Route("/admin/stats", stats, methods=["GET"]),
        Route("/admin/health", health, methods=["GET"]),
    ]
