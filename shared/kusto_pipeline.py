"""The one azure-core pipeline the app talks to Kusto's ingestion (Data Management) endpoint through.

There is no Python SDK for the queued-ingestion REST endpoint, so the REST client (`shared.kusto_rest`) and
queue mode's management commands (`shared.dm_resources`) share this pipeline, built the Azure SDK way:
authentication, retries, headers and request logging are pipeline policies, not code in each call, and the
pipeline's `RetryPolicy` is the only retry loop. Every failure leaves `KustoPipeline.send_json` as a typed
`KustoError` (`shared.kusto_errors`): transient (uncertain when a try went out and no answer came back) or
permanent, decided here once for both. The transport and the credential are arguments, so tests hand in a
fake transport instead of patching.
"""

from __future__ import annotations

import logging
import platform
import time
import uuid
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    HeadersPolicy,
    HttpLoggingPolicy,
    RetryPolicy,
    SansIOHTTPPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse

from shared.kusto_errors import KustoAuthError, TransientKustoError, UncertainKustoError, error_from_response
from shared.transport import EnvironmentOnceTransport
from shared.url_checks import is_loopback_url

CLIENT_NAME = "kusto-blob-ingest"
CLIENT_VERSION = "0.1.0"
CLIENT_MONIKER = "Kusto.BlobIngest.Functions"
API_VERSION = "2024-12-12"

HTTP_LOGGER = logging.getLogger(f"{__name__}.http")
# azure-core logs every request and response at INFO; in a function app that floods Application Insights.
# Set this logger to INFO to trace Kusto requests (headers and query are redacted by the policy).
HTTP_LOGGER.setLevel(logging.WARNING)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class BoundedRetryPolicy(RetryPolicy):
    """azure-core's RetryPolicy, except that it does not sleep through a Retry-After longer than `max_wait`.

    A throttled request that asks for a long pause is handed back to the caller instead, which then leaves
    its blobs hidden in the pending queue for that long: a drain never blocks beyond its time budget.
    """

    def __init__(self, *, max_wait: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_wait = max_wait

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > self._max_wait:
            return False
        return super().is_retry(settings, response)


class TryObserver(Protocol):
    """Told of each try of a call, retries included: just before it goes out, and the status that answered it.

    The submission timer writes its ledger marks from here, so a worker that dies while the pipeline waits
    out a Retry-After leaves "not accepted" behind (that try was refused), not "sending".
    """

    def sending(self) -> None: ...

    def answered(self, status: int) -> None: ...


class _AnswerWatch:
    """Whether the last try of one call went out and got no answer (filled in by `_WatchAnswers`)."""

    OPTION = "answer_watch"

    def __init__(self, observer: TryObserver | None) -> None:
        self.unanswered = False
        self.observer = observer


class _WatchAnswers(SansIOHTTPPolicy[Any, Any]):
    """Marks each try of a call as sent, then as answered, so a failure can tell whether Kusto may have the request.

    azure-core's errors alone cannot: its retry policy raises a response timeout when the call's budget
    runs out before a retry it never sends. It runs last, just before the transport, once per try.
    """

    def on_request(self, request: PipelineRequest[Any]) -> None:
        if _AnswerWatch.OPTION in request.context.options:  # first try: out of the options the transport sees
            request.context[_AnswerWatch.OPTION] = request.context.options.pop(_AnswerWatch.OPTION)
        watch = request.context.get(_AnswerWatch.OPTION)
        if watch is not None:
            watch.unanswered = True
            if watch.observer is not None:
                watch.observer.sending()

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        watch = request.context.get(_AnswerWatch.OPTION)
        if watch is not None:
            watch.unanswered = False
            if watch.observer is not None:
                watch.observer.answered(response.http_response.status_code)


class KustoPipeline:
    """Headers, retries, bearer token and redacted logging for one Kusto endpoint; `send_json` makes one call.

    `token_scope` defaults to `<endpoint>/.default`; `credential` None sends no Authorization header (an emulator).
    """

    def __init__(
        self,
        endpoint: str,
        credential: TokenCredential | None,
        *,
        token_scope: str | None,
        retry_policy: RetryPolicy,
        request_timeout: float,
        transport: HttpTransport | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        token_scope = token_scope or f"{self.endpoint}/.default"
        self._token_scope = token_scope
        logging_policy = HttpLoggingPolicy(logger=HTTP_LOGGER, additional_allowed_query_params=["details"])
        logging_policy.allowed_header_names.update({"x-ms-activity-id", "x-ms-app", "x-ms-client-version", "x-ms-version"})
        policies = [
            HeadersPolicy(
                {
                    "Accept": "application/json",
                    "x-ms-app": CLIENT_NAME,
                    "x-ms-client-version": f"{CLIENT_MONIKER}:{CLIENT_VERSION}|Runtime.Python:{platform.python_version()}",
                    "x-ms-version": API_VERSION,
                }
            ),
            UserAgentPolicy(sdk_moniker=f"{CLIENT_NAME}/{CLIENT_VERSION}"),
            retry_policy,
            BearerTokenCredentialPolicy(credential, token_scope) if credential is not None else None,
            logging_policy,
            _WatchAnswers(),
        ]
        self._client: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(
            base_url=self.endpoint,
            policies=[policy for policy in policies if policy is not None],
            transport=transport
            or EnvironmentOnceTransport(connection_timeout=min(10.0, request_timeout), read_timeout=request_timeout),
        )
        # azure-core refuses bearer tokens over plain http, which the settings allow only for a loopback emulator,
        # so only there is that check turned off.
        loopback_http = self.endpoint.startswith("http://") and is_loopback_url(self.endpoint)
        self._options: dict[str, Any] = {"enforce_https": False} if credential is not None and loopback_http else {}

    def close(self) -> None:
        self._client.close()

    def send_json(self, request: HttpRequest, *, operation: str, observer: TryObserver | None = None, **options: Any) -> Any:
        """One call: returns the JSON answer or raises a typed KustoError naming `operation`.

        Every failure becomes transient (uncertain when a try went out and no answer came back) or permanent here,
        in one place, for the REST client and queue mode alike. `observer` hears of each try (`TryObserver`).
        """
        request.headers["x-ms-client-request-id"] = f"KIC.execute;{uuid.uuid4()}"
        watch = _AnswerWatch(observer)
        try:
            response = self._client.send_request(request, **{_AnswerWatch.OPTION: watch, **self._options, **options})
        except ClientAuthenticationError as error:
            raise KustoAuthError(
                f"Kusto {operation}: no token for scope {self._token_scope}: {error}; check KUSTO_CREDENTIAL "
                "and MANAGED_IDENTITY_CLIENT_ID"
            ) from None
        except AzureError as error:
            if watch.unanswered and not isinstance(error, ServiceRequestError):
                raise UncertainKustoError(
                    f"Kusto {operation}: the request went out and no answer came back ({type(error).__name__}: {error}); "
                    "Kusto may have acted on it"
                ) from None
            if isinstance(error, (ServiceRequestTimeoutError, ServiceResponseTimeoutError)):
                raise TransientKustoError(f"Kusto {operation} timed out: {error}") from None
            raise TransientKustoError(f"Kusto {operation} failed: {type(error).__name__}: {error}") from None
        activity_id = response.headers.get("x-ms-activity-id", "")
        text = response.text()
        if not 200 <= response.status_code < 300:
            raise error_from_response(
                response.status_code,
                text,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                activity_id=activity_id,
                operation=operation,
            )
        try:
            return response.json()
        except ValueError:
            raise TransientKustoError(
                f"Kusto {operation} answered HTTP {response.status_code} with a body that is not JSON: {text[:200]}",
                status_code=response.status_code,
                activity_id=activity_id,
            ) from None
