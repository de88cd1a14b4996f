"""The queue-based ("legacy") ingestion protocol of the Kusto Data Management service.

Clients such as `azure-kusto-ingest`'s QueuedIngestClient ask `.get ingestion resources` (or, from Java,
`.show ingestion resources`) for queues and temp containers, and `.get kusto identity token` for a signed
token; they upload blobs, post base64 JSON messages to a queue and read notifications from two others.
This module answers the two commands, offers `POST /admin/rotate-ingestion-queues`, and starts the
consumer (`queue_consumer.py`) that plays the service's part. See docs/emulator-queued.md.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .errors import InternalError
from .identity_token import IdentityTokens, load_or_create_key
from .ingestion_resources import IngestionResources, ResourceNames, namespace_for
from .mgmt_request import MgmtHandler, MgmtRequest, command
from .queue_consumer import QueueConsumer
from .responses import V1Table
from .state import EmulatorState

logger = logging.getLogger(__name__)


class QueuedProtocol:
    """The resources and token signer of one emulator; created once per state (`protocol_for`)."""

    def __init__(self, state: EmulatorState) -> None:
        self.resources = IngestionResources(state.storage_connection_string, ResourceNames(namespace_for(state.config.data_dir)))
        self.tokens = IdentityTokens(load_or_create_key(state.config.data_dir))
        self.resources.provision()


_protocols: dict[int, QueuedProtocol] = {}
_protocols_lock = threading.Lock()


def protocol_for(state: EmulatorState) -> QueuedProtocol:
    """The protocol objects of `state`, created (and the storage resources provisioned) on first use."""
    with _protocols_lock:
        protocol = _protocols.get(id(state))
        if protocol is None:
            try:
                protocol = QueuedProtocol(state)
            except Exception as error:
                logger.exception("the ingestion resources could not be created in the --storage account")
                raise InternalError(f"the ingestion resources could not be created in storage: {type(error).__name__}") from None
            _protocols[id(state)] = protocol
        return protocol


def get_ingestion_resources(request: MgmtRequest, _match: re.Match[str]) -> Sequence[V1Table]:
    """`.get ingestion resources`: one row per resource, URLs with SAS, in the column order JAVA reads by position."""
    rows = protocol_for(request.state).resources.rows()
    return [V1Table("Table_0", [("ResourceTypeName", "string"), ("StorageRoot", "string")], rows)]


def get_kusto_identity_token(request: MgmtRequest, _match: re.Match[str]) -> Sequence[V1Table]:
    """`.get kusto identity token`: one row, column AuthorizationContext, a token the consumer verifies."""
    token = protocol_for(request.state).tokens.issue()
    return [V1Table("Table_0", [("AuthorizationContext", "string")], [[token]])]


MGMT_COMMANDS: list[tuple[re.Pattern[str], MgmtHandler]] = [
    (command(r"\s*\.(?:get|show)\s+ingestion\s+resources\s*;?\s*"), get_ingestion_resources),
    (command(r"\s*\.get\s+kusto\s+identity\s+token\s*;?\s*"), get_kusto_identity_token),
]


def routes(state: EmulatorState) -> list[Route]:
    async def rotate_ingestion_queues(_request: Request) -> JSONResponse:
        protocol = await run_in_threadpool(protocol_for, state)
        names = await run_in_threadpool(protocol.resources.rotate)
        return JSONResponse(
            {
                "generation": protocol.resources.generation,
                "ingestionQueues": [protocol.resources.queue_url(name) for name in names],
                "readQueues": [protocol.resources.queue_url(name) for name in protocol.resources.queues_to_read()],
            }
        )

    return [Route("/admin/rotate-ingestion-queues", rotate_ingestion_queues, methods=["POST"])]


def start(state: EmulatorState) -> Callable[[], None]:
    """Provision the resources and start the consumer; returns the function that stops it."""
    protocol = protocol_for(state)
    consumer = QueueConsumer(state, protocol.resources, protocol.tokens)
    consumer.start()
    logger.info("queue consumer reading %d ingestion queues", len(protocol.resources.queues_to_read()))

    def stop() -> None:
        consumer.stop()
        with _protocols_lock:
            _protocols.pop(id(state), None)

    return stop
