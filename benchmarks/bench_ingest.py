"""Ingest throughput: ``python -m engine ingest`` shards against the replay exchange's ceiling.

The replay exchange (its own process) streams a synthetic market of ``BENCH_INGEST_SYMBOLS``
instruments, trades only, at speed 0: as fast as its slowest client reads. In turn:

* ``replay_ceiling_trades_per_s``: a bare WebSocket client subscribed to every symbol that
  only counts the trade messages it receives (no decoding): what the exchange can send.
* ``ingest_trades_per_s_1_shard``: one ``engine ingest --shard 0/1`` process (decoding, bars,
  features to Redis, bar-closed events; no recording, no warm-up), trades it processed over
  its own live seconds.
* ``ingest_trades_per_s_2_shards``: two shard processes at once, their trades summed over the
  longer of their live seconds.

Each against a fresh exchange. On this 2-core machine the exchange, the shards and Redis share
the cores, so two shards compete with the exchange feeding them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import orjson
import websockets

from benchmarks.replay_process import replay_exchange
from benchmarks.results_file import Figure, write_results
from engine.feeds import coinbase
from feature_store.services import resolve_service_urls, scratch_redis_db

SYMBOLS = int(os.environ.get("BENCH_INGEST_SYMBOLS", "200"))
SECONDS = float(os.environ.get("BENCH_INGEST_SECONDS", "20"))
ROOT = Path(__file__).resolve().parents[1]


async def _ceiling(url: str, seconds: float) -> float:
    """Trade messages per second a bare client receives from the exchange at ``url``."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"{url}/products") as response:
        symbols = [p["id"] for p in await response.json()]
    host = urllib.parse.urlsplit(url).netloc
    async with websockets.connect(f"ws://{host}/", max_size=None) as ws:
        await ws.send(coinbase.subscribe_message(symbols, ["matches"]))
        trades = 0
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            message = await ws.recv(decode=False)
            trades += b'"match"' in message
        return trades / (time.monotonic() - began)


def _shards(url: str, count: int, redis_url: str) -> float:
    """Trades per second of ``count`` ingest shards run at once for ``SECONDS``."""
    env = {**os.environ, "REDIS_URL": redis_url}
    argv = [sys.executable, "-m", "engine", "ingest", "--replay-url", url, "--bar-seconds", "1", "--warmup-bars",
            "0", "--no-books", "--no-database", "--metrics-port", "-1", "--duration", str(SECONDS)]  # fmt: skip
    processes = [
        subprocess.Popen([*argv, "--shard", f"{i}/{count}"], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for i in range(count)
    ]
    done = []
    for process in processes:
        out, _ = process.communicate(timeout=SECONDS + 120)
        if process.returncode != 0:
            raise RuntimeError(f"engine ingest failed ({process.returncode}): {out[-2000:]}")
        done.append(json.loads(out.strip().splitlines()[-1]))
    print(f"{count} shard(s): {done}")
    return sum(d["trades"] for d in done) / max(d["seconds"] for d in done)


def main() -> int:
    redis_url = scratch_redis_db(resolve_service_urls(), 13)  # never a user's keys
    with replay_exchange(SYMBOLS, 50.0, history_bars=10, speed=0) as url:
        ceiling = asyncio.run(_ceiling(url, SECONDS))
    with replay_exchange(SYMBOLS, 50.0, history_bars=10, speed=0) as url:
        one = _shards(url, 1, redis_url)
    with replay_exchange(SYMBOLS, 50.0, history_bars=10, speed=0) as url:
        two = _shards(url, 2, redis_url)
    write_results(
        "bench_ingest",
        [
            Figure("replay_ceiling_trades_per_s", ceiling, "trades/s", "", None),
            Figure("ingest_trades_per_s_1_shard", one, "trades/s", "replay exchange ceiling, same run", ceiling),
            Figure("ingest_trades_per_s_2_shards", two, "trades/s", "replay exchange ceiling, same run", ceiling),
        ],
    )
    print(orjson.dumps({"symbols": SYMBOLS, "seconds": SECONDS}).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
