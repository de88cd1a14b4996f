"""A small soak: 300 blobs, 5% malformed, an unreliable Kusto, the local host killed once; nothing lost.

The same run as `make soak` (`bench.soak.run_soak`) at a size that fits the test suite. Only correctness
is asserted: exactly-once ingestion per blob, one alert per malformed blob, no alert about a good blob,
every queue drained. How long it took is never checked; the settle limit leaves room for a tracker lease
(120 s) that the killed host held when it died.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import SoakConfig, run_soak

pytestmark = pytest.mark.e2e


def test_blobs_survive_faults_and_a_crash_exactly_once(tmp_path: Path) -> None:
    result = run_soak(SoakConfig(blobs=300, kills=1, settle_timeout=180, work_dir=tmp_path), log=lambda _line: None)
    assert result.kills, "the local host was never killed"
    assert result.lost == [], f"well-formed blobs lost: {result.lost[:10]}"
    assert result.duplicated == {}, f"blobs ingested more than once: {result.duplicated}"
    assert result.unalerted == [], f"malformed blobs never alerted: {result.unalerted}"
    assert result.alerted_twice == {}, f"malformed blobs alerted more than once: {result.alerted_twice}"
    assert result.unexpected_alerts == [], f"alerts about well-formed blobs: {result.unexpected_alerts}"
    assert not any(result.queues_left.values()), f"queues not drained: {result.queues_left}"
    assert result.malformed == 15
    assert set(result.alerts_by_code) >= {"Routing_EmptyBlob", "Routing_NoRoute", "Stream_WrongNumberOfFields"}
