"""A small soak: 300 blobs, 5% malformed, an unreliable Kusto, the local host killed once; nothing lost.

The same run as `make soak` (`bench.soak.run_soak`) at a size that fits the test suite. Only correctness
is asserted: every blob ingested, none twice without notice, one alert per malformed blob, no alert about
a good blob (an in-doubt notice is not a failure alert), every queue drained. A kill that lands while a
chunk is on its way to Kusto may leave its blobs ingested twice, which Kusto's API gives no way to prevent;
the app must then have announced each of them (`Submission_InDoubt`) before sending it again. How long it
took is never checked; the settle limit leaves room for a tracker lease (120 s) the killed host held.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import SoakConfig, run_soak

pytestmark = pytest.mark.e2e


def test_blobs_survive_faults_and_a_crash_with_nothing_lost_and_no_silent_duplicate(tmp_path: Path) -> None:
    result = run_soak(
        SoakConfig(blobs=300, kills=1, settle_timeout=180, work_dir=tmp_path, lost_phase_blobs=20, lost_grace_seconds=8),
        log=lambda _line: None,
    )
    assert result.kills, "the local host was never killed"
    assert result.lost == [], f"well-formed blobs lost: {result.lost[:10]}"
    assert result.duplicated == {}, f"blobs ingested more than once without notice: {result.duplicated}"
    assert len(result.in_doubt) <= result.in_doubt_limit, f"{len(result.in_doubt)} blobs announced in doubt"
    assert result.unalerted == [], f"malformed blobs never alerted: {result.unalerted}"
    assert result.alerted_twice == {}, f"malformed blobs alerted more than once: {result.alerted_twice}"
    assert result.unexpected_alerts == [], f"alerts about well-formed blobs: {result.unexpected_alerts}"
    assert not any(result.queues_left.values()), f"queues not drained: {result.queues_left}"
    assert result.lost_events == 5 and result.unrecovered == [], f"lost events never recovered: {result.unrecovered}"
    assert result.recovered_settled == [], f"settled blobs taken for lost: {result.recovered_settled}"
    assert result.malformed == 15
    assert set(result.alerts_by_code) >= {"Routing_EmptyBlob", "Routing_NoRoute", "Stream_WrongNumberOfFields"}
