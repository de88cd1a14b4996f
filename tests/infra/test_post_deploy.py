"""scripts/post-deploy.sh acts in the azd environment's subscription, and stops at once when the Azure CLI cannot.

`azd auth login` does not log in the Azure CLI, which the hook uses. Run against the stand-in `az`
(tests/infra/fake_az.py): with no login it must fail within a second saying what to do, not wait 30 x 10 s
for a key and then ask whether the code is deployed; logged in, every call names the subscription; the key
never shows.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.infra.fake_az import Run, run_hook

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "post-deploy.sh"
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
OTHER_SUBSCRIPTION = "99999999-8888-7777-6666-555555555555"
KEY = "k3y_Secret-Value/With+Chars=="


def _run(tmp_path: Path, **env: str) -> Run:
    base = {
        "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
        "AZURE_RESOURCE_GROUP": "rg-test",
        "AZURE_FUNCTION_APP_NAME": "func-test",
        "EVENT_GRID_SYSTEM_TOPIC_NAME": "evgt-test",
        "STAGING_CONTAINER": "staging",
        "FAKE_AZ_SUBSCRIPTIONS": f"{OTHER_SUBSCRIPTION} {SUBSCRIPTION}",
        "FAKE_KEY": KEY,
    }
    # No RETRY_DELAY_SECONDS: the script's own pauses (10 s) are what a user would sit through.
    return run_hook(SCRIPT, tmp_path, {**base, **env}, timeout=8)


def test_not_logged_in_fails_at_once_saying_run_az_login(tmp_path: Path) -> None:
    run = _run(tmp_path, FAKE_AZ_LOGGED_IN="0")
    assert run.returncode != 0
    assert run.seconds < 1.0, f"took {run.seconds:.1f} s"
    assert "run 'az login'" in run.stderr
    assert "azd auth login does not log in the Azure CLI" in run.stderr
    assert "Is the code deployed" not in run.output
    assert not [call for call in run.calls if call.startswith(("functionapp", "deployment"))], run.calls


def test_a_subscription_the_login_cannot_see_fails_at_once_naming_it(tmp_path: Path) -> None:
    run = _run(tmp_path, FAKE_AZ_SUBSCRIPTIONS=OTHER_SUBSCRIPTION)
    assert run.returncode != 0
    assert run.seconds < 1.0, f"took {run.seconds:.1f} s"
    assert f"cannot see subscription {SUBSCRIPTION}" in run.stderr
    assert not [call for call in run.calls if call.startswith(("functionapp", "deployment"))], run.calls


def test_the_subscription_is_required(tmp_path: Path) -> None:
    run = _run(tmp_path, AZURE_SUBSCRIPTION_ID="")
    assert run.returncode != 0
    assert "AZURE_SUBSCRIPTION_ID" in run.stderr
    assert run.calls == []


def test_logged_in_every_call_names_the_subscription_and_the_key_never_shows(tmp_path: Path) -> None:
    # The login's default subscription is another one: only --subscription makes the calls land right.
    run = _run(tmp_path, DEAD_LETTER_CONTAINER="dead-letters")
    assert run.returncode == 0, run.stderr
    assert any(call.startswith("functionapp keys list") for call in run.calls)
    assert any(call.startswith("deployment group create") for call in run.calls)
    for call in run.calls:
        assert f"--subscription {SUBSCRIPTION}" in call, call
        assert KEY not in call
    assert KEY not in run.output
    deployment = next(call for call in run.calls if call.startswith("deployment group create"))
    assert "deadLetterContainerName=dead-letters" in deployment
    params = json.loads((tmp_path / "params.json").read_text(encoding="utf-8"))
    assert params["parameters"]["blobsExtensionKey"]["value"] == KEY


def test_a_login_that_expires_while_waiting_stops_the_wait(tmp_path: Path) -> None:
    """The key listing refused for the login's sake: waiting for the host cannot help, so no 30 tries."""
    expired = "ERROR: AADSTS700082: The refresh token has expired due to inactivity. Please run 'az login'."
    run = _run(tmp_path, FAKE_KEYS_ERROR=expired)
    assert run.returncode != 0
    assert run.seconds < 1.0, f"took {run.seconds:.1f} s"
    assert sum(call.startswith("functionapp keys list") for call in run.calls) == 1
    assert "run 'az login'" in run.stderr
