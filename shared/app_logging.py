"""The app's logging set-up, done once by function_app.py at import: records redacted, SDK chatter kept out.

Under the Azure Functions Python worker the root logger is at INFO and every record becomes an Application
Insights trace. The Azure SDKs log at INFO per call: azure-core's HTTP logging policy one record for each
storage or Kusto request and one for its response, azure-identity one per token, MSAL on its metadata and
region look-ups, urllib3 on redirects. With `Trace` excluded from sampling in host.json (so no alert record is
ever sampled away), that would be several traces per blob for nothing, so the SDK loggers are kept at WARNING:
their warnings and errors (a retry given up, a pool that is full) still get through.

The app's own loggers (`shared.*`) are left as they are: their INFO lines tell what happened to each blob. The
local host does not lower any logger itself, so a mistake here shows in `make run` as it would in Azure.
"""

from __future__ import annotations

import logging

from shared.redaction import install_redaction

SDK_LOGGERS = ("azure", "msal", "urllib3")
"""Loggers of the libraries the app calls that log at INFO per request or per token (children included:
`azure.core.pipeline.policies.http_logging_policy`, `azure.identity`, `azure.storage.*`)."""

SDK_LEVEL = logging.WARNING


def configure_app_logging() -> None:
    """Redact every record of the process (`install_redaction`) and keep the SDK loggers at WARNING.

    Idempotent. Only the levels of `SDK_LOGGERS` are set (their children inherit them; no SDK sets a level of
    its own): handlers, the root logger's level (the worker's) and the app's loggers are not touched.
    """
    install_redaction()
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(SDK_LEVEL)
