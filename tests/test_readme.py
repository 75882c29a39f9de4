"""The README's shell commands, as written: a README that drifts from the code fails here.

Every command line of the README's ``bash`` blocks is either run exactly as written, in the
order of :data:`RUN`, on servers and a model store of the test's own (a fresh database, a
scratch Redis database, a temporary ``RRR_HOME``, a free port for the model service), or, where
it needs the internet, runs for a day, or is ``make`` itself, checked without running it: the
engine's own parser takes its flags, the job it names exists, the module answers ``--help``,
and the settings it sets are accepted.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from engine.cli import _parser as engine_parser
from orchestration.config import OrchestrationSettings
from serving import launcher

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PYTHON = ROOT / ".venv" / "bin" / "python"

# Run as written, in this order: the fast commands, a short engine run and the service.
RUN = [
    ".venv/bin/python -m feature_store.services status",
    ".venv/bin/python -m feature_store.services urls",
    ".venv/bin/python -m serving.sample_models",
    ".venv/bin/python -m serving.registry list",
    ".venv/bin/python -m serving.launcher start",
    ".venv/bin/python -m serving.launcher status",
    ".venv/bin/python -m engine record --replay 20 --duration 10 --bar-seconds 1",
    ".venv/bin/python -m engine run --replay 20 --speed 60 --market-clock --duration 20",
    ".venv/bin/python -m engine status --account paper",
    ".venv/bin/python -m engine backtest --venue coinbase --account bt1",
    ".venv/bin/python -m serving.launcher stop",
]
# Not run: what each needs that a test does not have.
NOT_RUN = {
    "make demo": "the demo itself",
    "make test": "the tests themselves",
    "feature_store.services start": "the test's servers are its own",
    "feature_store.services stop": "the test's servers are its own",
    "bentoml serve serving.service:ModelService": "port 3000 (serving.launcher start runs the same target)",
    "bentoml build": "tests/serving/test_service.py builds and serves the Bento",
    "bentoml serve rrr_models:latest": "tests/serving/test_service.py serves the Bento it built",
    "dagster dev": "a UI that runs until stopped",
    "dagster job execute": "the whole pipeline (tests/orchestration run it on small settings)",
    "orchestration.real_data": "downloads nothing, but trains on two years of bars",
    "--venue coinbase --symbols": "the internet",
    "--venue binance --symbols": "the internet",
    "--venue polygon": "the internet and a key",
    "engine backfill": "the internet",
    "engine replay": "a server that runs until Ctrl-C",
    "dagster-celery worker start": "workers that run until stopped (tests/orchestration/test_celery.py starts two)",
    "mkdir -p $DAGSTER_HOME": "a Celery deployment's instance folder (tests/orchestration/test_celery.py)",
    "engine ingest": "services that run until Ctrl-C (tests/engine/test_streams.py runs two shards and a trader)",
    "engine trade": "services that run until Ctrl-C (tests/engine/test_streams.py runs two shards and a trader)",
    "registry promote": "a version of the reader's own",
    "registry rollback": "a model with a previous production version",
}


def readme_commands() -> list[str]:
    """The command lines of the README's ``bash`` blocks: continuations joined, comments dropped."""
    commands, block, pending = [], False, ""
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            block = line.strip() == "```bash"
            continue
        if not block:
            continue
        text = pending + line.split("  #")[0].rstrip() if not line.lstrip().startswith("#") else pending
        if text.endswith("\\"):
            pending = text[:-1].rstrip() + " "
            continue
        pending = ""
        if text.strip():
            commands.append(" ".join(text.split()))
    return commands


def _skipped(command: str) -> str | None:
    return next((why for key, why in NOT_RUN.items() if key in command), None)


def test_every_readme_command_is_run_or_checked() -> None:
    commands = readme_commands()
    assert len(commands) > 20, commands
    for command in commands:
        if command.startswith("export "):
            continue
        assert command in RUN or _skipped(command), f"the README has a command this test neither runs nor checks: {command}"
    missing = [c for c in RUN if c not in commands]
    assert not missing, f"commands this test runs are no longer in the README: {missing}"


def test_commands_not_run_parse_and_name_what_exists() -> None:
    modules, settings = set(), []
    for command in readme_commands():
        if command in RUN or command.startswith(("export ", "make ")):
            continue
        words = shlex.split(command.replace("<version>", "v1"))
        env = {}
        while words and re.match(r"^[A-Z_]+=", words[0]):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        if env:
            settings.append(env)
        tool = Path(words[0]).name
        if tool == "python" and words[1] == "-m":
            module, argv = words[2], words[3:]
            if module == "engine":
                engine_parser().parse_args(argv)  # a renamed or removed flag fails here
            modules.add(module)
        elif tool == "dagster" and words[1] == "job":
            from orchestration.definitions import defs

            assert defs.resolve_job_def(words[words.index("-j") + 1]) is not None
        elif tool == "bentoml" and words[1] == "serve" and ":" in words[2] and words[2] != "rrr_models:latest":
            assert words[2] == launcher.TARGET
    for env in settings:
        env = {k: v for k, v in env.items() if k.startswith("RRR_") and k != "RRR_SOURCE_DIR"}
        OrchestrationSettings.from_env({**env, "RRR_SOURCE_DIR": "/nonexistent"})  # refused names raise
    if not PYTHON.exists():
        pytest.skip(f"{PYTHON} is not there (make install creates it): the modules' --help is not checked")
    for module in sorted(modules):
        out = subprocess.run([str(PYTHON), "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "usage:" in out.stdout, f"{module} --help: {out.stderr[-2000:]}"


def test_readme_commands_run_as_written(tmp_path, fresh_database_url, scratch_redis) -> None:
    if not PYTHON.exists():
        pytest.skip(f"{PYTHON} is not there (make install creates it): the README's commands use it")
    env = {
        **os.environ,
        "RRR_HOME": str(tmp_path / "rrr"),
        "DATABASE_URL": fresh_database_url,
        "REDIS_URL": scratch_redis(14),
        "RRR_SERVING_PORT": str(launcher.free_port()),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    env.pop("BENTOML_HOME", None)
    env.pop("RRR_SERVING_URL", None)
    outputs, errors = {}, {}
    try:
        for command in RUN:
            # As a user's shell runs it (the README's text, nothing else, goes to the shell).
            out = subprocess.run(["/bin/sh", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, f"{command} exited {out.returncode}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
            outputs[command] = out.stdout
            errors[command] = out.stderr
    finally:
        subprocess.run(
            [str(PYTHON), "-m", "serving.launcher", "stop"], cwd=ROOT, env=env, capture_output=True, timeout=60
        )
    assert "price:" in outputs[".venv/bin/python -m serving.registry list"]
    run = outputs[".venv/bin/python -m engine run --replay 20 --speed 60 --market-clock --duration 20"]
    decided = re.search(r"(\d+) bars decided", run)
    assert decided and int(decided.group(1)) >= 5, run
    # A healthy run warns about nothing: routine lines (warm start, strategy in force) are INFO.
    command = ".venv/bin/python -m engine run --replay 20 --speed 60 --market-clock --duration 20"
    assert not [line for line in errors[command].splitlines() if " WARNING " in line], errors[command][-3000:]
    assert "account paper" in outputs[".venv/bin/python -m engine status --account paper"]
    backtest = outputs[".venv/bin/python -m engine backtest --venue coinbase --account bt1"]
    assert re.search(r"account bt1: .* (\d+) bars decided", backtest), backtest
