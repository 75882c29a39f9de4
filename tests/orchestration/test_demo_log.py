"""The demo's step lines: one line per step with its time, what the step said under it, a line
while a long step runs, and a failed step named with its error."""

from __future__ import annotations

import logging
import time

import dagster as dg

from orchestration.demo_log import StepLines


def test_one_line_per_step_with_what_it_said_and_progress_while_long() -> None:
    lines: list[str] = []

    @dg.logger
    def collect(init_context: dg.InitLoggerContext) -> logging.Logger:
        logger = logging.Logger("test.demo", level=logging.DEBUG)
        handler = StepLines(write=lines.append, every_s=0.2)
        handler.close()  # as Dagster's logging configuration does at every step: the lines go on
        logger.addHandler(handler)
        return logger

    @dg.op
    def slow(context) -> int:  # type: ignore[no-untyped-def]
        context.log.info("landed 3 days")
        time.sleep(0.7)
        return 1

    @dg.op
    def broken(context, n: int) -> None:  # type: ignore[no-untyped-def]
        context.log.warning("the bars look thin")
        raise ValueError("no bars for 2026-01-05")

    @dg.job(logger_defs={"steps": collect})
    def loop() -> None:
        broken(slow())

    result = loop.execute_in_process(run_config={"loggers": {"steps": {}}}, raise_on_error=False)
    assert not result.success
    done = [line for line in lines if line.startswith(("  ok", "  FAILED"))]
    assert len(done) == 2, lines
    assert done[0].startswith("  ok slow") and float(done[0].split()[-2]) >= 0.6
    assert done[1].startswith("  FAILED broken") and "no bars for 2026-01-05" in done[1]
    assert lines[lines.index(done[0]) + 1] == "      landed 3 days"
    assert "      WARNING: the bars look thin" in lines
    assert any(line.startswith("  ... running: slow (") for line in lines), lines
    assert not [line for line in lines if "DEBUG" in line or "STEP_START" in line]
