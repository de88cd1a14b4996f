"""The Kusto database grants survive a first `azd up`: a postprovision hook retries while the identity replicates.

Kusto refuses a principal created moments earlier ("... was not found in AAD tenant ...") until Microsoft
Entra ID has replicated it. As a module of main.bicep that failed the first deployment; the hook
(scripts/grant-kusto-access.sh) deploys the same infra/kusto-access.bicep and retries on that error only, a
bounded number of times. Run here against the stand-in `az` (tests/infra/fake_az.py), which fails the
deployment N times and then succeeds.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.infra.bicep import INFRA_DIR, parse_file, string_literal, text
from tests.infra.fake_az import Run, run_hook

ROOT = INFRA_DIR.parent
SCRIPT = ROOT / "scripts" / "grant-kusto-access.sh"
AZD_SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
CLUSTER_SUBSCRIPTION = "99999999-8888-7777-6666-555555555555"
CLUSTER_ID = f"/subscriptions/{CLUSTER_SUBSCRIPTION}/resourceGroups/rg-kusto/providers/Microsoft.Kusto/clusters/mycluster"
NOT_A_CLUSTER = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st"
CLIENT_ID = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
NOT_REPLICATED = (
    'ERROR: {"code": "DeploymentFailed", "details": [{"code": "BadRequest", "message": "[BadRequest] Entity ID '
    f"'{CLIENT_ID}' of type 'AAD Application Id' was not found in AAD tenant '72f988bf-0000-0000-0000-000000000000'.\"}}]}}"
)


def _run(tmp_path: Path, **env: str) -> Run:
    base = {
        "AZURE_SUBSCRIPTION_ID": AZD_SUBSCRIPTION,
        "KUSTO_CLUSTER_RESOURCE_ID": CLUSTER_ID,
        "KUSTO_DATABASE_NAME": "Telemetry Main.v2",
        "MANAGED_IDENTITY_CLIENT_ID": CLIENT_ID,
        "RETRY_DELAY_SECONDS": "0",
        "FAKE_AZ_SUBSCRIPTIONS": f"{AZD_SUBSCRIPTION} {CLUSTER_SUBSCRIPTION}",
        "FAKE_DEPLOY_ERROR": NOT_REPLICATED,
    }
    return run_hook(SCRIPT, tmp_path, {**base, **env}, timeout=10)


def _deployments(run: Run) -> list[str]:
    return [call for call in run.calls if call.startswith("deployment group create")]


def test_retries_while_the_identity_is_not_found_then_grants(tmp_path: Path) -> None:
    run = _run(tmp_path, FAKE_DEPLOY_FAILURES="3")
    assert run.returncode == 0, run.stderr
    deployments = _deployments(run)
    assert len(deployments) == 4
    for call in deployments:
        # The cluster's own subscription and resource group, named on every call.
        assert f"--subscription {CLUSTER_SUBSCRIPTION} --resource-group rg-kusto" in call
        assert "--template-file infra/kusto-access.bicep" in call
        assert "clusterName=mycluster" in call
        assert "databaseName=Telemetry Main.v2" in call
        assert f"principalClientId={CLIENT_ID}" in call
        assert "queryRole=User" in call
    for call in run.calls:
        assert f"--subscription {CLUSTER_SUBSCRIPTION}" in call, call
    assert "replicating" in run.stdout


def test_the_wait_is_bounded(tmp_path: Path) -> None:
    run = _run(tmp_path, FAKE_DEPLOY_FAILURES="99", KUSTO_GRANT_ATTEMPTS="3")
    assert run.returncode != 0
    assert len(_deployments(run)) == 3
    assert "after 3 tries" in run.stderr
    assert "azd hooks run postprovision" in run.stderr


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    error = "ERROR: (ResourceNotFound) The Resource 'Microsoft.Kusto/clusters/mycluster/databases/Telemetry' was not found."
    run = _run(tmp_path, FAKE_DEPLOY_FAILURES="1", FAKE_DEPLOY_ERROR=error)
    assert run.returncode != 0
    assert len(_deployments(run)) == 1
    assert "ResourceNotFound" in run.stderr
    assert "no retry" in run.stderr


def test_not_logged_in_fails_at_once_saying_run_az_login(tmp_path: Path) -> None:
    run = _run(tmp_path, FAKE_AZ_LOGGED_IN="0", RETRY_DELAY_SECONDS="10")
    assert run.returncode != 0
    assert run.seconds < 1.0, f"took {run.seconds:.1f} s"
    assert "run 'az login'" in run.stderr and "azd auth login does not log in the Azure CLI" in run.stderr
    assert _deployments(run) == []


def test_a_cluster_subscription_the_login_cannot_see_fails_at_once(tmp_path: Path) -> None:
    run = _run(tmp_path, FAKE_AZ_SUBSCRIPTIONS=AZD_SUBSCRIPTION)
    assert run.returncode != 0
    assert f"cannot see subscription {CLUSTER_SUBSCRIPTION}" in run.stderr
    assert _deployments(run) == []


def test_without_a_cluster_there_is_nothing_to_do(tmp_path: Path) -> None:
    run = _run(tmp_path, KUSTO_CLUSTER_RESOURCE_ID="", FAKE_AZ_LOGGED_IN="0")
    assert run.returncode == 0, run.stderr
    assert run.calls == []
    assert "by hand" in run.stdout


def test_bad_inputs_are_refused_before_any_call(tmp_path: Path) -> None:
    for index, (env, expected) in enumerate(
        (
            ({"KUSTO_DATABASE_NAME": ""}, "KUSTO_DATABASE_NAME"),
            ({"KUSTO_CLUSTER_RESOURCE_ID": NOT_A_CLUSTER}, "not a cluster"),
            ({"KUSTO_QUERY_ROLE": "Admin"}, "User or Viewer"),
        )
    ):
        work = tmp_path / str(index)
        work.mkdir()
        run = _run(work, **env)
        assert run.returncode != 0, env
        assert expected in run.stderr, (env, run.stderr)
        assert _deployments(run) == [], env


def test_the_grants_left_main_bicep_for_the_postprovision_hook() -> None:
    """main.bicep no longer deploys kusto-access.bicep (that raced the identity); azd runs the hook after provisioning."""
    main = parse_file(INFRA_DIR / "main.bicep")
    targets = [string_literal(module.named_children[1]) or text(module.named_children[1]) for module in main.modules]
    assert "kusto-access.bicep" not in targets
    assert not main.resources_of_type("Microsoft.Kusto/clusters/databases/principalAssignments")
    kusto_access = parse_file(INFRA_DIR / "kusto-access.bicep")
    assert kusto_access.resources_of_type("Microsoft.Kusto/clusters/databases/principalAssignments")
    hooks = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))["hooks"]
    hook = hooks["postprovision"]["posix"]
    assert (ROOT / hook["run"]).resolve() == SCRIPT
    assert hook.get("continueOnError", False) is False
    assert SCRIPT.stat().st_mode & 0o111, "the hook must be executable"
