"""Which settings each environment must set, and which extra names it may set.

`shared.settings.SETTING_NAMES` is the list of every setting the code reads. The Bicep app settings and
`local.settings.example.json` must set each of them, and nothing else apart from the host-read settings
listed here with the reason they exist. The few settings that are *alternatives* (one connection written
two ways) are spelled out below, narrowly: only those names, only in the stated environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Settings the Functions host (not our code) reads in Azure. Identity-based host storage and telemetry.
HOST_SETTINGS_AZURE: dict[str, str] = {
    "AzureWebJobsStorage__blobServiceUri": "host storage (identity-based): blobs, receipts, timer locks, keys",
    "AzureWebJobsStorage__queueServiceUri": "host storage (identity-based): the blob trigger's internal queues",
    "AzureWebJobsStorage__tableServiceUri": "host storage (identity-based): diagnostic events",
    "AzureWebJobsStorage__credential": "host storage uses a managed identity",
    "AzureWebJobsStorage__clientId": "the user-assigned identity the host storage connection uses",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where telemetry goes (an address, not a credential with local auth off)",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "telemetry authenticates with the user-assigned identity",
}

# Settings the local host (func / devhost) reads; never deployed (Flex rejects FUNCTIONS_WORKER_RUNTIME).
HOST_SETTINGS_LOCAL: dict[str, str] = {
    "AzureWebJobsStorage": "host storage connection string (Azurite) for local runs",
    "FUNCTIONS_WORKER_RUNTIME": "tells Core Tools / the local host to start the Python worker",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "optional local telemetry",
    "AzureWebJobs.reconcile_staging.Disabled": "the host's own switch: the reconciliation timer is off locally",
}

# One connection, two spellings. In Azure the staging connection is identity-based (service URIs plus
# the identity), and a connection string there would be a secret; locally it is Azurite's connection
# string and the identity form does not apply.
LOCAL_ONLY_SETTINGS = frozenset({"StagingStorage"})
AZURE_ONLY_SETTINGS = frozenset(
    {
        "StagingStorage__blobServiceUri",
        "StagingStorage__queueServiceUri",
        "StagingStorage__credential",
        "StagingStorage__clientId",
    }
)


def alternatives_problems(code_settings: Iterable[str]) -> list[str]:
    """The alternative names above must still be settings the code reads, or the exemption is stale."""
    known = set(code_settings)
    return [
        f"{name} is exempted in tests/infra/drift.py but shared/settings.py no longer reads it; update the exemption"
        for name in sorted(LOCAL_ONLY_SETTINGS | AZURE_ONLY_SETTINGS)
        if name not in known
    ]


def azure_drift(code_settings: Iterable[str], bicep_settings: Iterable[str]) -> list[str]:
    """Bicep app settings vs the code: all code settings (identity form), host settings, nothing else."""
    code, bicep = set(code_settings), set(bicep_settings)
    required = code - LOCAL_ONLY_SETTINGS
    problems = [f"infra: app setting {name} is read by the code but not set in Bicep" for name in sorted(required - bicep)]
    problems += [
        f"infra: app setting {name} is local-only (a connection string); Azure uses the identity form"
        for name in sorted(bicep & LOCAL_ONLY_SETTINGS)
    ]
    problems += [
        f"infra: app setting {name} is set in Bicep but the code does not read it (and it is not a host setting)"
        for name in sorted(bicep - code - set(HOST_SETTINGS_AZURE))
    ]
    return problems


def local_drift(code_settings: Iterable[str], local_values: Mapping[str, object]) -> list[str]:
    """local.settings.example.json vs the code: all code settings (connection-string form), host settings, nothing else."""
    code, local = set(code_settings), set(local_values)
    required = code - AZURE_ONLY_SETTINGS
    problems = [
        f"local.settings.example.json: {name} is read by the code but missing from Values" for name in sorted(required - local)
    ]
    problems += [
        f"local.settings.example.json: {name} is set but the code does not read it (and it is not a host setting)"
        for name in sorted(local - code - set(HOST_SETTINGS_LOCAL))
    ]
    return problems
