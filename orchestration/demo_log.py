"""What ``make demo`` prints while the pipeline runs: one line per finished step, with its time.

A Dagster logger (:data:`step_lines`) that turns the run's events into one line per step
(``ok`` or ``FAILED`` and its seconds) followed by what the step said it did (its INFO and
WARNING lines), and, while a step runs longer than ``every_s``, a line naming it and how long
it has run, so that no long step is silent. Dagster's own per-event lines (hundreds per run)
stay in the run's event log, which the UI shows.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import dagster as dg

__all__ = ["StepLines", "step_lines"]


class StepLines(logging.Handler):
    """Prints one line per finished step and, every ``every_s``, the steps still running."""

    def __init__(self, write: Callable[[str], None] | None = None, every_s: float = 30.0) -> None:
        super().__init__(level=logging.DEBUG)
        self.write = write or (lambda line: print(line, file=sys.stdout, flush=True))
        self.every_s = every_s
        self.running: dict[str, float] = {}
        self.said: dict[str, list[str]] = {}  # each running step's own INFO lines, printed when it ends
        self.finished: list[tuple[str, bool, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        meta: dict[str, Any] = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        if event is None:
            if step and record.levelno >= logging.INFO:  # what the step says it did, under its line
                text = " ".join(str(meta.get("orig_message") or record.getMessage()).split())
                level = "" if record.levelno < logging.WARNING else f"{record.levelname}: "
                with self._lock:
                    self.said.setdefault(step, []).append(f"      {level}{text[:200]}")
            return
        kind = event.event_type_value
        now = time.monotonic()
        with self._lock:
            if kind == "STEP_START":
                self.running[event.step_key] = now
                self._start_ticker()
                return
            if kind not in ("STEP_SUCCESS", "STEP_FAILURE"):
                return
            began = self.running.pop(event.step_key, now)
            said = self.said.pop(event.step_key, [])
        ok = kind == "STEP_SUCCESS"
        self.finished.append((event.step_key, ok, now - began))
        line = f"  {'ok' if ok else 'FAILED'} {event.step_key:42} {now - began:7.1f} s"
        if not ok:
            error = getattr(event.event_specific_data, "error", None)
            while getattr(error, "cause", None) is not None:  # Dagster wraps the step's own exception
                error = error.cause  # type: ignore[union-attr]
            message = (getattr(error, "message", "") or "").strip().splitlines()
            line += f"  {message[-1] if message else ''}"
        self.write(line)
        for text in said:
            self.write(text)

    def _start_ticker(self) -> None:
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="demo-steps", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s):
            now = time.monotonic()
            with self._lock:
                long = [(s, now - t) for s, t in self.running.items() if now - t >= self.every_s]
            if long:
                self.write("  ... running: " + ", ".join(f"{s} ({t:.0f} s)" for s, t in long))

    def stop(self) -> None:
        """Stop the progress lines (closing the handler does not: Dagster closes every logging
        handler each time it configures the Python loggers, at every step)."""
        self._stop.set()


@dg.logger(description="One line per finished step with its time; a line every 30 s for a step still running.")
def step_lines(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("rrr.demo", level=logging.DEBUG)
    logger.addHandler(StepLines())
    return logger
