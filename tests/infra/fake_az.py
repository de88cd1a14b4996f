"""A stand-in Azure CLI for running the azd hook scripts offline, and a runner that puts it first on PATH.

The stand-in is a POSIX shell script. It writes each call's arguments to a log (one line per call) and answers
like the CLI would, as the environment tells it:

- `FAKE_AZ_LOGGED_IN=0`: every command fails with the CLI's "Please run 'az login' to setup account.";
- `FAKE_AZ_SUBSCRIPTIONS`: the subscription ids its login can see (space separated); a command naming
  another one with `--subscription` fails with the CLI's "Subscription '...' not found.";
- `functionapp keys list` prints `FAKE_KEY`, or fails with `FAKE_KEYS_ERROR` when that is set;
- `deployment group create` fails its first `FAKE_DEPLOY_FAILURES` calls with `FAKE_DEPLOY_ERROR` on stderr,
  then succeeds, and copies an `@file` parameters file it is given to `$FAKE_AZ_DIR/params.json`.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

FAKE_AZ = r"""#!/bin/sh
printf '%s\n' "$*" >> "$FAKE_AZ_DIR/calls.log"
if [ "${FAKE_AZ_LOGGED_IN:-1}" = 0 ]; then
    echo "ERROR: Please run 'az login' to setup account." >&2
    exit 1
fi
previous=""
for arg in "$@"; do
    if [ "$previous" = "--subscription" ]; then
        case " ${FAKE_AZ_SUBSCRIPTIONS:-} " in
            *" $arg "*) ;;
            *) echo "ERROR: Subscription '$arg' not found. Check the spelling and casing and try again." >&2; exit 1 ;;
        esac
    fi
    previous="$arg"
done
case "$1 $2 $3" in
  "account show "*) ;;
  "functionapp keys list")
    if [ -n "${FAKE_KEYS_ERROR:-}" ]; then echo "$FAKE_KEYS_ERROR" >&2; exit 1; fi
    echo "$FAKE_KEY" ;;
  "deployment group create")
    count=$(cat "$FAKE_AZ_DIR/deployments" 2>/dev/null || echo 0)
    count=$((count + 1))
    echo "$count" > "$FAKE_AZ_DIR/deployments"
    for arg in "$@"; do case "$arg" in @*) cp "${arg#@}" "$FAKE_AZ_DIR/params.json";; esac; done
    if [ "$count" -le "${FAKE_DEPLOY_FAILURES:-0}" ]; then echo "$FAKE_DEPLOY_ERROR" >&2; exit 1; fi ;;
  *) echo "ERROR: the stand-in az does not know '$*'" >&2; exit 2 ;;
esac
"""


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    calls: list[str]

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_hook(script: Path, tmp_path: Path, env: dict[str, str], timeout: float = 20) -> Run:
    """Run `script` with the stand-in `az` first on PATH and only `env` (plus PATH) in its environment.

    A script still running after `timeout` seconds fails the test: the hooks must never hang on a CLI that
    cannot act.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "az"
    fake.write_text(FAKE_AZ, encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    shell = shutil.which("sh")
    assert shell is not None, "a POSIX sh is needed to run the hook scripts"
    full_env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_AZ_DIR": str(tmp_path), **env}
    started = time.monotonic()
    # Its own process group, so that a script that hangs is stopped with its `sleep` and `az` children.
    with subprocess.Popen(
        [shell, str(script)], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as error:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise AssertionError(f"{script.name} still ran after {timeout} s (waiting on a CLI that cannot act?)") from error
    seconds = time.monotonic() - started
    log = tmp_path / "calls.log"
    calls = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return Run(process.returncode, stdout, stderr, seconds, calls)
