"""One ASGI middleware for what every Kusto route shares: auth, injected faults, counters and the access log.

Order per request: count and time it; admin and auth-metadata routes skip auth and faults; then the
bearer token check (`--require-token`), added latency, injected 429 (with Retry-After) or 500; then the
route itself. One log line per request: method, path without query, status, milliseconds.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from starlette.datastructures import Headers
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import EmulatorError, InternalError, Throttled, Unauthorized
from .ids import random_uuid
from .responses import error_response
from .state import EmulatorState

logger = logging.getLogger(__name__)

_OPEN_PREFIXES = ("/admin/", "/v1/rest/auth/metadata")


class KustoFrontDoor:
    def __init__(self, app: ASGIApp, state: EmulatorState, routes: list[Route]) -> None:
        self.app = app
        self.state = state
        self.routes = routes
        self._paths = {route.endpoint: route.path for route in routes}

    def _route_label(self, scope: Scope) -> str:
        """`METHOD /route/{template}`: from the endpoint the router chose, else (refused early) by matching."""
        path = self._paths.get(scope.get("endpoint"))
        if path is not None:
            return f"{scope['method']} {path}"
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return f"{scope['method']} {route.path}"
        return f"{scope['method']} (unknown route)"

    def _refusal(self, scope: Scope) -> EmulatorError | None:
        path = scope["path"]
        if path.startswith(_OPEN_PREFIXES):
            return None
        token = self.state.config.require_token
        if token is not None:
            authorization = Headers(scope=scope).get("authorization", "")
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
                return Unauthorized(
                    "the request needs 'Authorization: Bearer <token>' with the token the emulator was started with"
                )
        faults = self.state.faults
        if faults.should_throttle():
            return Throttled("throttled by the emulator's fault injection (throttleRate)")
        if faults.should_fail():
            return InternalError("server error injected by the emulator's fault injection (errorRate)")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        request_id = Headers(scope=scope).get("x-ms-client-request-id")

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Kusto echoes the client's request id and names its own activity on every answer.
                extra = [(b"x-ms-activity-id", random_uuid().encode())]
                if request_id:
                    extra.append((b"x-ms-client-request-id", request_id.encode("latin-1", "replace")))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            if not scope["path"].startswith(_OPEN_PREFIXES):
                latency = self.state.faults.settings.latency_ms
                if latency:
                    await asyncio.sleep(latency / 1000)
            with self.state.activity.answering():  # after the injected latency: a request waiting is not work
                refusal = self._refusal(scope)
                if refusal is None:
                    await self.app(scope, receive, send_and_watch)
                else:
                    headers = None
                    if isinstance(refusal, Throttled):
                        headers = {"Retry-After": str(self.state.faults.settings.retry_after_seconds)}
                    await error_response(refusal, request_id, headers)(scope, receive, send_and_watch)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            self.state.stats.count_request(self._route_label(scope), status)
            logger.info("%s %s %d %.1fms", scope["method"], repr(scope["path"])[1:-1], status, elapsed)
