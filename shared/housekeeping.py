"""Housekeeping timer body: poison queues, Event Grid dead letters, due digests, and the app's expired state.

Expired ledger slots and alert markers only cost storage, never correctness (neither counts once out of
its window), so a storage error while deleting them is logged and left to the next tick.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError

from shared.dead_letters import recover_dead_letters
from shared.poison import watch_poison_queues
from shared.sinks import flush_digests

if TYPE_CHECKING:
    from shared.services import Services

logger = logging.getLogger(__name__)


def housekeep(services: Services) -> None:
    """Alert on poison-queue messages, record or alert every dead-lettered Event Grid event, send the digests whose
    window closed, delete expired ledger slots and markers."""
    watch_poison_queues(services)
    recover_dead_letters(services)
    flush_digests(services)
    try:
        slots = services.ledger.forget_expired(services.settings.state_retention_seconds)
        marks = services.alert_markers.forget_expired(services.settings.state_retention_seconds)
    except AzureError as error:
        logger.warning("expired state not deleted this time (storage error %s); the next run tries again", type(error).__name__)
        return
    if slots or marks:
        logger.info("deleted %d expired ledger slots and %d expired alert markers", slots, marks)
