"""Start and stop ``bentoml serve serving.service:ModelService`` as a background process.

``make demo`` starts the service this way and leaves it running for the engine; ``make stop``
stops it. The process runs in its own session so that stopping it sends SIGTERM to BentoML's
arbiter and its workers together. Its state (pid, URL, log) is kept in
``$RRR_HOME/serving.json``::

    python -m serving.launcher start [--port 3000]
    python -m serving.launcher status
    python -m serving.launcher stop
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from serving.config import ServingSettings
from serving.errors import ServingError

__all__ = ["ServiceProcess", "ensure_running", "free_port", "start", "stop_recorded", "wait_ready"]

TARGET = "serving.service:ModelService"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url/readyz`` answers 200; raise :class:`ServingError` on timeout or exit."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServingError(f"the model service exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:  # noqa: S310 (our own http URL)
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise ServingError(f"the model service at {url} was not ready after {timeout_s:.0f} s")


@dataclass
class ServiceProcess:
    """A running ``bentoml serve``."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM the arbiter's process group; SIGKILL what is left after ``timeout_s``."""
        return _stop_pid(self.process.pid, timeout_s, self.process)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _stop_pid(pid: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> int:
    def running() -> bool:
        return process.poll() is None if process is not None else _alive(pid)

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + (timeout_s if sig == signal.SIGTERM else 10.0)
        while running() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not running():
            break
    return process.returncode if process is not None and process.returncode is not None else 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def start(
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    target: str = TARGET,
    ready_timeout_s: float = 120.0,
) -> ServiceProcess:
    """Start the service on ``port`` (default: ``RRR_SERVING_PORT``) and wait until it is ready.

    ``env`` replaces the environment of the service (default: this process's).
    """
    environ = dict(os.environ if env is None else env)
    settings = ServingSettings.from_env(environ)
    port = port or settings.port
    environ["RRR_SERVING_PORT"] = str(port)
    environ.setdefault("BENTOML_HOME", str(settings.bentoml_home))
    environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    log_path = log_path or Path(environ.get("RRR_HOME", ".rrr")).resolve() / "logs" / "serving.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "bentoml", "serve", target, "--host", settings.host, "--port", str(port)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    service = ServiceProcess(process, f"http://{settings.host}:{port}", log_path)
    try:
        wait_ready(service.url, ready_timeout_s, process)
    except ServingError as exc:
        service.stop()
        raise ServingError(f"{exc}; last lines of {log_path}:\n{service.log_tail()}") from exc
    return service


def _state_path() -> Path:
    return Path(os.environ.get("RRR_HOME", ".rrr")).resolve() / "serving.json"


def ensure_running(port: int | None = None) -> tuple[str, bool]:
    """The URL of the recorded service, starting it first when it is not running.

    Returns the URL and whether this call started it. The service keeps running after this
    process exits; :func:`stop_recorded` (``make stop``) stops it.
    """
    path = _state_path()
    if path.exists():
        state = json.loads(path.read_text())
        if _alive(int(state["pid"])):
            return str(state["url"]), False
    service = start(port=port)
    state = {"pid": service.process.pid, "url": service.url, "log": str(service.log_path)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))
    return service.url, True


def stop_recorded() -> bool:
    """Stop the service recorded in ``$RRR_HOME/serving.json``; False when none was running."""
    path = _state_path()
    if not path.exists():
        return False
    state = json.loads(path.read_text())
    running = _alive(int(state["pid"]))
    if running:
        _stop_pid(int(state["pid"]), 20.0)
    path.unlink()
    return running


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.launcher", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("start", help="start the service in the background and wait until it is ready")
    up.add_argument("--port", type=int, default=None)
    sub.add_parser("status", help="where the recorded service runs, if it does")
    sub.add_parser("stop", help="stop the recorded service")
    args = parser.parse_args(argv)
    path = _state_path()
    if args.command == "start":
        try:
            url, started = ensure_running(port=args.port)
        except ServingError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"model service {'ready' if started else 'already running'} at {url}")
    elif args.command == "status":
        if not path.exists():
            print("not running")
            return 1
        state = json.loads(path.read_text())
        alive = _alive(int(state["pid"]))
        print(f"{'running' if alive else 'not running (stale record)'}: {state['url']} pid {state['pid']}")
        return 0 if alive else 1
    else:
        print("stopped" if stop_recorded() else "not running")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
