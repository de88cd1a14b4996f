"""`make run`: Azurite, the Kusto emulator and the local host running function_app.py, with a demo.

Ports come from the environment (defaults in `PORTS`); a taken port stops the start with a line that names it
and the variable to change. Data lives under `.local/` so a second `make run` continues where the first
stopped. The terminal shows one line per pipeline event; the full logs are in `.local/logs/`. Ctrl-C stops
the local host first (it finishes or hands back running work), then the emulator and Azurite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

from azure.core.exceptions import AzureError

from devhost.demo import DEMO_TABLES, seed_demo
from devhost.emulator_client import EmulatorClient, EmulatorRequestError
from devhost.processes import ROOT, Azurite, Service, ServiceError, port_in_use, start_azurite, start_emulator
from devhost.provision import create_staging_storage, create_tables
from shared.settings import SettingsError, load_settings

LOCAL = ROOT / ".local"
LOGS = LOCAL / "logs"
SETTINGS_FILE = ROOT / "local.settings.json"
SETTINGS_EXAMPLE = ROOT / "local.settings.example.json"

# Environment variable -> default port.
PORTS = {"AZURITE_BLOB_PORT": 10000, "AZURITE_QUEUE_PORT": 10001, "AZURITE_TABLE_PORT": 10002, "EMULATOR_PORT": 8082}


def say(text: str) -> None:
    print(text, flush=True)


def chosen_ports() -> dict[str, int]:
    """The port of each service, checked to be a number and free, so a clash is reported before anything starts."""
    ports = {}
    for name, default in PORTS.items():
        raw = os.environ.get(name, str(default))
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise ServiceError(f"{name}={raw!r} is not a port number (1-65535)")
        ports[name] = int(raw)
        if port_in_use(ports[name]):
            raise ServiceError(
                f"port {raw} ({name}) is already in use. Stop what holds it (another Azurite or 'make run'?), "
                f"or pick another port: make run {name}={int(raw) + 1000}"
            )
    return ports


def local_settings(azurite: Azurite, emulator_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """(all values, endpoint values): local.settings.json (written from the example when missing), this run's endpoints."""
    if not SETTINGS_FILE.exists():
        example = json.loads(SETTINGS_EXAMPLE.read_text(encoding="utf-8"))
        example["Values"].update(
            AzureWebJobsStorage=azurite.connection_string,
            StagingStorage=azurite.connection_string,
            KUSTO_INGEST_URI=emulator_url,
        )
        SETTINGS_FILE.write_text(json.dumps(example, indent=2) + "\n", encoding="utf-8")
        say(f"wrote {SETTINGS_FILE.name} from {SETTINGS_EXAMPLE.name}")
    document = json.loads(SETTINGS_FILE.read_text(encoding="utf-8"))
    # The endpoints always follow this run's ports, so `make upload` and the host agree with the services.
    endpoints = {
        "AzureWebJobsStorage": azurite.connection_string,
        "StagingStorage": azurite.connection_string,
        "KUSTO_INGEST_URI": emulator_url,
    }
    changed = [name for name, value in endpoints.items() if document["Values"].get(name) != value]
    if changed:
        document["Values"].update(endpoints)
        SETTINGS_FILE.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        say(f"updated {', '.join(changed)} in {SETTINGS_FILE.name} to this run's ports")
    return {key: str(value) for key, value in document["Values"].items()}, endpoints


def start_local_host(endpoints: dict[str, str]) -> subprocess.Popen:
    log_path = LOGS / "devhost.log"
    env = {**os.environ, **endpoints, "DEVHOST_EVENTS": "1"}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--script-root", str(ROOT), "--settings", str(SETTINGS_FILE)],
            stdout=None,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
    return process


def stop_local_host(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def main() -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    services: list[Service] = []
    host: subprocess.Popen | None = None
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        ports = chosen_ports()
        azurite = start_azurite(
            LOCAL / "azurite",
            ports["AZURITE_BLOB_PORT"],
            ports["AZURITE_QUEUE_PORT"],
            ports["AZURITE_TABLE_PORT"],
            log_path=LOGS / "azurite.log",
        )
        services.append(azurite)
        say(f"Azurite        blob {azurite.blob_port}, queue {azurite.queue_port}, table {azurite.table_port}")
        emulator = start_emulator(
            azurite.connection_string,
            LOCAL / "emulator",
            ports["EMULATOR_PORT"],
            extra_args=["--auto-create-databases"],
            log_path=LOGS / "emulator.log",
        )
        services.append(emulator)
        say(f"Kusto emulator {emulator.url}")
        values, endpoints = local_settings(azurite, emulator.url)
        settings = load_settings(values)
        create_staging_storage(settings, values)
        kusto = EmulatorClient(emulator.url)
        create_tables(kusto, DEMO_TABLES)
        host = start_local_host(endpoints)
        say(f"local host     function_app.py (log: {(LOGS / 'devhost.log').relative_to(ROOT)})")
        if os.environ.get("DEMO", "1") != "0":
            staged = seed_demo(settings, values)
            say(f"demo           staged {staged} files in container {settings.staging_container} (DEMO=0 skips this)")
        say("ready: 'make upload FILE=path TO=Demo/Events/' stages a file of your own; Ctrl-C stops everything")
        while not stopping.wait(0.5):
            for name, process in [("local host", host), *((service.name, service.process) for service in services)]:
                if process.poll() is not None:
                    say(f"{name} exited with code {process.returncode}; see {LOGS.relative_to(ROOT)}/ - stopping")
                    stopping.set()
    except (ServiceError, SettingsError, EmulatorRequestError, AzureError) as error:
        say(f"cannot start: {error}")
        return 1
    finally:
        say("stopping ...")
        if host is not None:
            stop_local_host(host)
        for service in reversed(services):
            service.stop()
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
