"""Decoding the real recordings into normalized records, beside plain ``orjson.loads``.

Single core, every received line of the Coinbase and Binance recordings, best of three
rounds of at least a second each. Target: ``feed_decode_msgs_per_s`` >= 500,000/s. For
scale (not measured here): cryptofeed 2.4.1 decodes the Binance recording's non-book
messages at about 508,000/s on this machine.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from benchmarks.results_file import Figure, write_results
from engine.feeds.binance import BinanceDecoder
from engine.feeds.coinbase import CoinbaseDecoder
from engine.feeds.polygon import PolygonDecoder
from engine.replay.encoding import synthetic_stream
from feature_store.sources.recordings import iter_messages

RECORDINGS = Path(
    os.environ.get("RRR_RECORDINGS_DIR", Path(__file__).resolve().parents[2] / "shared/data/exchange_recordings")
)
BINANCE_SYMBOLS = ["NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"]


def _rate(lines: list[bytes], fn: Callable[[bytes], object]) -> float:
    best = 0.0
    for _ in range(3):
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < 1.0:
            for line in lines:
                fn(line)
            count += len(lines)
        best = max(best, count / (time.perf_counter() - started))
    return best


def main() -> int:
    coinbase = RECORDINGS / "coinbase_exchange_ws_2021-04-17.cryptofeed.txt"
    binance = RECORDINGS / "binance_spot_ws_2021-10-12.cryptofeed.txt"
    if not coinbase.exists() or not binance.exists():
        print(f"skipped: exchange recordings not found in {RECORDINGS} (set RRR_RECORDINGS_DIR)")
        return 0
    cb_lines = [m.payload for m in iter_messages(coinbase)]
    bn_lines = [m.payload for m in iter_messages(binance)]
    bn_other = [line for line in bn_lines if b"depthUpdate" not in line]
    cb, bn = CoinbaseDecoder(), BinanceDecoder(BINANCE_SYMBOLS)
    cb_rate, bn_rate, other_rate = _rate(cb_lines, cb.decode), _rate(bn_lines, bn.decode), _rate(bn_other, bn.decode)
    total = len(cb_lines) + len(bn_lines)
    combined = total / (len(cb_lines) / cb_rate + len(bn_lines) / bn_rate)
    loads = total / (len(cb_lines) / _rate(cb_lines, orjson.loads) + len(bn_lines) / _rate(bn_lines, orjson.loads))
    # Polygon: frames of the synthetic market in its format (no public recording to replay).
    stocks, _, _ = synthetic_stream("polygon", 20_000)
    polygon_rate = _rate(stocks, PolygonDecoder().decode)
    polygon_loads = _rate(stocks, orjson.loads)
    write_results(
        "bench_feeds",
        [
            Figure(
                "feed_decode_polygon_msgs_per_s",
                polygon_rate,
                "msgs/s",
                "orjson.loads of the same frames",
                polygon_loads,
            ),
            Figure("feed_decode_msgs_per_s", combined, "msgs/s", "target", 500_000),
            Figure("feed_decode_msgs_per_s_vs_orjson", combined, "msgs/s", "orjson.loads of the same lines", loads),
            Figure("feed_decode_coinbase_msgs_per_s", cb_rate, "msgs/s", "target", 500_000),
            Figure("feed_decode_binance_msgs_per_s", bn_rate, "msgs/s", "target", 500_000),
            Figure("feed_decode_binance_nonbook_msgs_per_s", other_rate, "msgs/s", "target", 500_000),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
