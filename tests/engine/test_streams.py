"""The services mode: two ingest shards and a trader over a Redis Stream, one shard killed.

Real parts: a replay exchange in its own process streaming 2,000 symbols, two
``python -m engine ingest --shard i/2`` processes (feeds, bars, features to Redis,
PostgreSQL), and the stream trader in this process. Shard 1 is killed (SIGKILL) mid-run and
started again; every bar from the first to the last must be decided exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from engine.config import BarInterval
from engine.record import RecordOptions
from engine.streams import BarEvents, Shard, run_stream_trader
from engine.summary import summarize
from engine.trade import TradingOptions
from feature_store.records import NS_PER_S
from serving import launcher

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = 2000


def test_shards_share_the_symbols_stably() -> None:
    symbols = [f"S{i:04d}-USD" for i in range(SYMBOLS)]
    shares = [Shard.parse(f"{i}/2").share(symbols) for i in range(2)]
    assert sorted(shares[0] + shares[1]) == symbols and not set(shares[0]) & set(shares[1])
    assert 900 < len(shares[0]) < 1100
    assert Shard(0, 2).share(list(reversed(symbols))) == list(reversed(shares[0]))
    for bad in ("2/2", "1", "a/b", "-1/2"):
        with pytest.raises(Exception, match="shard"):
            Shard.parse(bad)


def _ingest(shard: str, replay_url: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "engine", "ingest", "--shard", shard, "--replay-url", replay_url, "--bar-seconds",
            "1", "--warmup-bars", "60", "--no-books", "--metrics-port", "-1"]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def test_two_shards_and_a_trader_decide_every_bar_once_across_a_shard_restart(
    tmp_path: Path, scratch_redis, fresh_database_url: str
) -> None:
    redis_url = scratch_redis(12)
    env = {**os.environ, "RRR_HOME": str(tmp_path), "REDIS_URL": redis_url, "DATABASE_URL": fresh_database_url,
           "PYTHONWARNINGS": "ignore"}  # fmt: skip
    port = launcher.free_port()
    replay = subprocess.Popen(
        [sys.executable, "-m", "engine", "replay", "--symbols", str(SYMBOLS), "--trades-per-s", "0.5", "--no-books",
         "--port", str(port), "--history-bars", "400"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    replay_url = f"http://127.0.0.1:{port}"
    logs = {i: tmp_path / f"shard{i}.log" for i in range(2)}
    shards: dict[int, subprocess.Popen[bytes]] = {}

    async def scenario() -> tuple[object, object, dict[str, int]]:
        stop = asyncio.Event()
        record = RecordOptions(venues=["coinbase"], replay_url=replay_url, bar_seconds=1, books=False,
                               metrics_port=-1, spool_dir=tmp_path / "spool")  # fmt: skip
        # No model service: the trader decides every bar without forecasts (its breaker open).
        options = TradingOptions(account="streams", serving_url="http://127.0.0.1:1", model_timeout_s=0.2)
        trader = asyncio.create_task(
            run_stream_trader(record, options, 2, database_url=fresh_database_url, redis_url=redis_url, stop=stop)
        )
        await asyncio.sleep(3)  # the trader's group exists before the shards announce
        client = redis.Redis.from_url(redis_url)
        events = BarEvents(client, BarInterval(1))  # type: ignore[arg-type]

        async def announced(shard: str, after: int = 0, within_s: float = 150.0) -> int:
            """The last interval ``shard`` announced, once it is past ``after`` (its warm-up done)."""
            deadline = time.monotonic() + within_s
            while time.monotonic() < deadline:
                value = client.get(events.announced_key(Shard.parse(shard)))
                if value is not None and int(value) > after:
                    return int(value)
                await asyncio.sleep(0.5)
            raise AssertionError(f"shard {shard} announced nothing past {after}: {logs_text()}")

        for i in range(2):
            shards[i] = _ingest(f"{i}/2", replay_url, env, logs[i])
        await announced("0/2")
        await announced("1/2")
        await asyncio.sleep(8)  # both live
        shards[1].send_signal(signal.SIGKILL)
        shards[1].wait()
        killed = await announced("1/2")
        await asyncio.sleep(5)
        shards[1] = _ingest("1/2", replay_url, env, logs[1])
        await announced("1/2", after=killed + 10 * NS_PER_S)  # caught up and live again
        await asyncio.sleep(5)
        for process in shards.values():
            process.send_signal(signal.SIGINT)
        for process in shards.values():
            await asyncio.to_thread(process.wait, 30)
        await asyncio.sleep(3)
        stop.set()
        client.close()
        result, stats = await trader
        return result, stats, {"killed": killed}

    def logs_text() -> dict[int, str]:
        return {i: log.read_text(errors="replace")[-3000:] for i, log in logs.items()}

    try:
        for _ in range(100):
            if replay.poll() is None and _answers(port):
                break
            time.sleep(0.2)
        trader, stats, marks = asyncio.run(scenario())
    finally:
        for process in [*shards.values(), replay]:
            if process.poll() is None:
                process.kill()
                process.wait()
    shown = {i: logs[i].read_text()[-3000:] for i in logs}
    decided = stats.decided  # type: ignore[attr-defined]
    assert len(decided) > 40, (stats, shown)
    assert len(set(decided)) == len(decided), "a bar was decided twice"
    steps = {b - a for a, b in itertools.pairwise(decided)}
    assert steps == {NS_PER_S}, f"bars lost or out of order: steps {sorted(steps)[:5]} ({shown})"
    assert decided[0] < marks["killed"] < decided[-1]
    # The bars shard 1 missed while away were announced when it came back: every bar after the
    # kill was decided with both shards' bars, none with half of them.
    assert not [b for b in stats.partial if b > marks["killed"]], (stats.partial, marks)  # type: ignore[attr-defined]
    assert "announced" in shown[1] and '"caught_up"' in shown[1]
    # The restarted shard announced what it missed (more than the one warm-up bar of a first start).
    restarted = [line for line in logs[1].read_text().splitlines() if line.startswith("{")]
    assert restarted and int(restarted[-1].split('"caught_up":')[1].split(",")[0].rstrip("}")) > 3, restarted
    assert trader.core.stats.bars_decided >= len(decided)  # type: ignore[attr-defined]
    # What `engine trade` prints at its end.
    summary = summarize(trader, 60.0, stats.trades)  # type: ignore[arg-type, attr-defined]
    assert summary.bars == trader.core.stats.bars_decided and stats.trades > 0  # type: ignore[attr-defined]

    # At least once, idempotent: events of a bar already decided, delivered again, are
    # acknowledged without a second decision.
    client = redis.Redis.from_url(redis_url)
    events = BarEvents(client, BarInterval(1))  # type: ignore[arg-type]
    for shard in ("0/2", "1/2"):
        client.xadd(events.stream, {"start": decided[-1], "shard": shard, "began": time.time_ns(), "bars": b"[]"})
    client.close()

    async def again() -> object:
        stop = asyncio.Event()
        record = RecordOptions(venues=["coinbase"], symbols=["S0001-USD"], coinbase_url="ws://127.0.0.1:1/",
                               bar_seconds=1, books=False, metrics_port=-1, spool_dir=tmp_path / "spool")  # fmt: skip
        options = TradingOptions(account="streams", serving_url="http://127.0.0.1:1", model_timeout_s=0.2)
        task = asyncio.create_task(
            run_stream_trader(record, options, 2, database_url=fresh_database_url, redis_url=redis_url, stop=stop)
        )
        await asyncio.sleep(3)
        stop.set()
        return (await task)[1]

    second = asyncio.run(again())
    assert (second.bars_decided, second.duplicates) == (0, 2), second  # type: ignore[attr-defined]


def _answers(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
