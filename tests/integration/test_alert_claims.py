"""Identical failure notifications handled at the same moment alert once: the alert marker is claimed first (Azurite).

The webhook here answers only once the test opens its gate, so the claim's owner is still alerting while the
other workers look at the marker: they must find it claimed and hold their notification back.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueMessage

from devhost.processes import Azurite
from shared import schemas
from shared.alert_markers import CLAIM_LEASE_SECONDS, AlertMarkers, marker_key
from shared.alerts import ALERT_KEY, Alert
from shared.services import Services, build_services, ensure_queues
from shared.settings import load_settings
from shared.sinks import alert_once
from shared.webhook import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS, RETRY_BACKOFF_SECONDS, RETRY_TOTAL
from tests.integration.outcome_helpers import NO_KUSTO, Receiver, app_settings, unreachable_queue
from tests.integration.test_alert_markers import notification

SHORT_LEASE = 3


@pytest.fixture
def hook() -> Iterator[Receiver]:
    receiver = Receiver(gated=True)
    yield receiver
    receiver.stop()


@pytest.fixture
def services(azurite: Azurite, unique_name: str, hook: Receiver) -> Iterator[Services]:
    settings = load_settings(
        app_settings(azurite, NO_KUSTO, unique_name, ALERT_WEBHOOK_URL=hook.url, ALERT_DIGEST_WINDOW_SECONDS="0")
    )
    built = build_services(settings)
    ensure_queues(built)
    yield built
    state = state_container(built)
    if state.exists():
        state.delete_container()
    for queue in built.queues:
        queue.delete_queue()


def state_container(services: Services) -> ContainerClient:
    return services.blob_service.get_container_client(services.settings.state_container)


def with_markers(
    services: Services, *, lease: float = CLAIM_LEASE_SECONDS, ahead: float = 0, window: int | None = None
) -> Services:
    """The same services with markers whose claim lease is `lease`, duplicate window `window` (default: the
    settings'), and whose clock runs `ahead` seconds fast."""
    markers = AlertMarkers(
        state_container(services),
        services.settings.duplicate_window_seconds if window is None else window,
        clock=lambda: datetime.now(UTC) + timedelta(seconds=ahead),
        lease_seconds=lease,
    )
    return replace(services, alert_markers=markers)


def key_of(body: str) -> str:
    key = marker_key(schemas.parse(schemas.FAILURE_NOTIFICATION, body))
    assert key is not None
    return key


def write_marker(services: Services, body: str, state: str) -> None:
    """A marker as an earlier worker left it, written now."""
    with contextlib.suppress(ResourceExistsError):
        state_container(services).create_container()
    state_container(services).get_blob_client(key_of(body)).upload_blob(state.encode(), overwrite=True)


def alert_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "shared.alerts" and record.msg.startswith(ALERT_KEY)]


def messages_saying(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if text in record.getMessage()]


def held_seconds(text: str) -> int:
    found = re.search(r"held back for (\d+) s", text)
    assert found is not None
    return int(found.group(1))


def race(calls: list[Callable[[], Alert | None]], hook: Receiver, *, settle: int) -> list[Alert | None]:
    """Run `calls` on threads released together; open the webhook's gate once `settle` of them have returned.

    The owner of the claim waits inside its delivery until the others are done, so they really meet its claim.
    When every call alerts (no claim), none returns before the gate opens: it opens after 10 s and the test fails
    on its counts.
    """
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Alert | None]) -> Alert | None:
        barrier.wait(timeout=10)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures: list[Future[Alert | None]] = [pool.submit(run, call) for call in calls]
        deadline = time.monotonic() + 10
        while sum(future.done() for future in futures) < settle and time.monotonic() < deadline:
            time.sleep(0.01)
        hook.gate.set()
        return [future.result(timeout=60) for future in futures]


def receive_copies(services: Services, count: int, timeout: float) -> list[QueueMessage]:
    deadline = time.monotonic() + timeout
    received: list[QueueMessage] = []
    while len(received) < count and time.monotonic() < deadline:
        received += services.failures_queue.receive_messages(max_messages=32, visibility_timeout=60)
        time.sleep(0.2)
    return received


def test_identical_notifications_at_once_alert_once_and_the_others_are_held_back(
    services: Services, hook: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    short = with_markers(services, lease=SHORT_LEASE)

    def handler(index: int) -> Callable[[], Alert | None]:
        # Three submissions of the same blob version failed the same way: three operations, three messages.
        return lambda: alert_once(notification(operation_id=f"op-{index}"), short, message_id=f"m{index}", dequeue_count=1)

    results = race([handler(index) for index in range(3)], hook, settle=2)
    raced = time.monotonic()

    assert sum(result is not None for result in results) == 1
    assert len(alert_records(caplog)) == 1
    assert len(hook.accepted) == 1
    held = [held_seconds(text) for text in messages_saying(caplog, "held back for")]
    assert len(held) == 2 and all(SHORT_LEASE - 1 <= seconds <= SHORT_LEASE + 1 for seconds in held)
    assert short.alert_markers.state(key_of(notification())) == "delivered"
    # The two copies are on the failures queue, invisible until the owner's lease has passed.
    assert services.failures_queue.get_queue_properties().approximate_message_count == 2
    assert list(services.failures_queue.receive_messages(max_messages=32)) == []

    copies = receive_copies(services, 2, timeout=SHORT_LEASE + 15)
    assert len(copies) == 2
    assert time.monotonic() - raced >= SHORT_LEASE - 1
    for copy in copies:
        assert key_of(copy.content) == key_of(notification())
        # Handled after the owner finished: a repeat of a delivered alert, dropped.
        assert alert_once(copy.content, short, message_id=copy.id, dequeue_count=copy.dequeue_count) is None
        services.failures_queue.delete_message(copy)
    assert len(messages_saying(caplog, "repeats an alert already raised")) == 2
    assert len(alert_records(caplog)) == 1
    assert len(hook.accepted) == 1


def test_identical_notifications_at_once_without_a_webhook_log_one_record(
    azurite: Azurite, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's case: log records only. The losers meet the claim (held back) or the finished alert (dropped)."""
    caplog.set_level(logging.INFO)
    settings = load_settings(app_settings(azurite, NO_KUSTO, unique_name))
    services = build_services(settings)
    ensure_queues(services)
    try:
        for round_ in range(5):
            source_id = f"0c3e7a51-2b9d-5f4e-8a6b-1d2c3e4f5a{round_:02d}"
            barrier = threading.Barrier(3)
            bodies = [(notification(source_id=source_id, operation_id=f"op-{index}"), f"m{round_}-{index}") for index in range(3)]

            def handle(item: tuple[str, str], barrier: threading.Barrier = barrier) -> Alert | None:
                barrier.wait(timeout=10)
                return alert_once(item[0], services, message_id=item[1], dequeue_count=1)

            caplog.clear()
            with ThreadPoolExecutor(max_workers=3) as pool:
                results = list(pool.map(handle, bodies))
            assert sum(result is not None for result in results) == 1
            assert len(alert_records(caplog)) == 1
            losers = messages_saying(caplog, "held back for") + messages_saying(caplog, "repeats an alert already raised")
            assert len(losers) == 2
    finally:
        state = state_container(services)
        if state.exists():
            state.delete_container()
        for queue in services.queues:
            queue.delete_queue()


def test_a_claim_within_its_lease_holds_the_notification_back(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    body = notification()
    write_marker(services, body, "claimed")
    assert alert_once(body, services, message_id="m1", dequeue_count=1) is None
    assert alert_records(caplog) == []
    [held] = messages_saying(caplog, "held back for")
    assert CLAIM_LEASE_SECONDS - 5 <= held_seconds(held) <= CLAIM_LEASE_SECONDS + 1
    assert services.failures_queue.get_queue_properties().approximate_message_count == 1
    assert list(services.failures_queue.receive_messages(max_messages=32)) == []


def test_a_claim_left_by_a_dead_owner_is_taken_over_and_alerts_once(
    services: Services, hook: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    hook.gate.set()
    body = notification()
    write_marker(services, body, "claimed")
    later = with_markers(services, ahead=CLAIM_LEASE_SECONDS + 5)  # the owner's lease has passed
    assert alert_once(body, later, message_id="m1", dequeue_count=1) is not None
    assert alert_once(body, later, message_id="m2", dequeue_count=1) is None
    assert len(alert_records(caplog)) == 1
    assert len(hook.accepted) == 1
    assert len(messages_saying(caplog, "by a worker that did not finish: taken over")) == 1
    assert services.alert_markers.state(key_of(body)) == "delivered"
    assert services.failures_queue.get_queue_properties().approximate_message_count == 0


def test_workers_racing_for_a_dead_owners_claim_alert_once(
    services: Services, hook: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = notification()
    write_marker(services, body, "claimed")
    short = with_markers(services, lease=1)
    time.sleep(2.2)  # the claim's lease passes (storage keeps the time in whole seconds)

    def handler(index: int) -> Callable[[], Alert | None]:
        return lambda: alert_once(body, short, message_id=f"m{index}", dequeue_count=1)

    results = race([handler(index) for index in range(3)], hook, settle=2)
    assert sum(result is not None for result in results) == 1
    assert len(alert_records(caplog)) == 1
    assert len(hook.accepted) == 1
    assert len(messages_saying(caplog, "held back for")) == 2


def test_an_expired_delivered_marker_is_claimed_again_by_one_worker_and_alerts(
    services: Services, hook: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = notification()
    write_marker(services, body, "delivered")
    assert alert_once(body, services, message_id="m0", dequeue_count=1) is None  # within the window: a repeat
    short = with_markers(services, window=2, lease=1)
    time.sleep(3.2)  # the alert is past this 2-second window (storage keeps the time in whole seconds)

    def handler(index: int) -> Callable[[], Alert | None]:
        return lambda: alert_once(body, short, message_id=f"m{index}", dequeue_count=1)

    results = race([handler(index) for index in range(1, 4)], hook, settle=2)
    assert sum(result is not None for result in results) == 1
    assert len(alert_records(caplog)) == 1
    assert len(hook.accepted) == 1
    assert len(messages_saying(caplog, "held back for")) == 2
    assert messages_saying(caplog, "taken over") == []  # an old alert, not a dead owner
    assert services.alert_markers.state(key_of(body)) == "delivered"


def test_a_copy_that_cannot_be_queued_leaves_the_message_to_its_retry(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = notification()
    write_marker(services, body, "claimed")
    with pytest.raises(AzureError):
        alert_once(body, replace(services, failures_queue=unreachable_queue()), message_id="m1", dequeue_count=1)
    assert alert_records(caplog) == []


def test_the_claim_lease_outlasts_one_webhook_delivery() -> None:
    """The owner logs and delivers within its lease: the webhook pipeline's slowest answer (no Retry-After) fits."""
    tries = RETRY_TOTAL + 1
    back_off = sum(RETRY_BACKOFF_SECONDS * 2**attempt for attempt in range(RETRY_TOTAL))
    slowest = tries * (CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS) + back_off
    assert slowest + 30 <= CLAIM_LEASE_SECONDS
