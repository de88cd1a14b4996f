"""The app's HTTP transport reads the proxy environment once per host and still honours it exactly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.core.rest import HttpRequest

from shared.transport import STORAGE_READ_TIMEOUT, EnvironmentOnceTransport, storage_transport


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy that answers every request itself and remembers the target it was asked for."""

    seen: list[str] = []

    def do_GET(self) -> None:
        _Proxy.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Proxy.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_requests_go_through_the_proxy_the_environment_names(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with EnvironmentOnceTransport(connection_timeout=5, read_timeout=5) as transport:
        response = transport.send(HttpRequest("GET", "http://storage.example.invalid/queue/messages"))
    assert response.status_code == 200
    assert _Proxy.seen == ["http://storage.example.invalid/queue/messages"]


def test_no_proxy_exempts_a_host_and_the_answer_is_kept_per_host(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "direct.example.invalid")
    transport = EnvironmentOnceTransport(connection_timeout=5, read_timeout=5)
    assert transport.proxies_for("http://direct.example.invalid/a") == {}
    assert transport.proxies_for("http://other.example.invalid/a")["http"] == proxy
    # Read once: a later change of the environment does not reach a host already asked about.
    monkeypatch.delenv("HTTP_PROXY")
    assert transport.proxies_for("http://other.example.invalid/b")["http"] == proxy
    with transport, pytest.raises(ServiceRequestError):
        transport.send(HttpRequest("GET", "http://direct.example.invalid/a"))  # direct: the name does not resolve
    assert _Proxy.seen == []


def test_the_ca_bundle_of_the_environment_is_the_default_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/custom-bundle.pem")
    assert EnvironmentOnceTransport().connection_config.verify == "/etc/ssl/custom-bundle.pem"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    transport = storage_transport()
    assert transport.connection_config.verify is True
    assert transport.connection_config.read_timeout == STORAGE_READ_TIMEOUT
