"""A replay exchange in a process of its own (``python -m engine replay``), for one benchmark run."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from serving import launcher


@contextmanager
def replay_exchange(
    symbols: int, trades_per_s: float, *, history_bars: int = 1000, speed: float = 1.0
) -> Iterator[str]:
    """Start the synthetic market of ``symbols`` instruments (trades only) and yield its URL
    (``speed`` 0: as fast as its slowest client reads).

    Raises:
        RuntimeError: it did not answer within 60 s (its output is in the message).
    """
    port = launcher.free_port()
    argv = [sys.executable, "-m", "engine", "replay", "--symbols", str(symbols), "--trades-per-s", str(trades_per_s),
            "--no-books", "--port", str(port), "--history-bars", str(history_bars), "--speed", str(speed)]  # fmt: skip
    log = tempfile.NamedTemporaryFile(prefix="rrr-replay-", suffix=".log")  # noqa: SIM115  # closed below
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    out = Path(log.name).read_text(errors="replace")
                    raise RuntimeError(f"the replay exchange did not start: {out[-2000:]}") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        said = [line for line in Path(log.name).read_text(errors="replace").splitlines() if "WARNING" in line]
        if said:
            print(f"replay exchange: {len(said)} warnings, the last: {said[-1]}")
        log.close()
