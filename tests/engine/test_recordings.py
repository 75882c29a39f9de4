"""Every line of the real recordings through the feed clients, over a real WebSocket.

The replay exchange plays each recording byte for byte; the books the clients build are
compared with a reconstruction written here from the raw JSON with exact decimals.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from engine.feeds.binance import BinanceDecoder
from engine.feeds.coinbase import CoinbaseDecoder
from engine.feeds.venues import BinanceFeed, CoinbaseFeed
from engine.replay.market import RecordedTape
from engine.replay.server import ReplayExchange
from feature_store.sources.recordings import iter_messages, read_recording_trades
from tests.engine.feed_helpers import KeepingSink, wait_for

COINBASE = "coinbase_exchange_ws_2021-04-17.cryptofeed.txt"
BINANCE = "binance_spot_ws_2021-10-12.cryptofeed.txt"
BINANCE_REST = "binance_spot_rest_depth_2021-10-12.cryptofeed.txt"
BINANCE_SYMBOLS = ["NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"]


def _coinbase_truth(path: Path) -> dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]]:
    books: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
    for message in iter_messages(path):
        msg = orjson.loads(message.payload)
        if msg.get("type") == "snapshot":
            books[msg["product_id"]] = (
                {Decimal(p): Decimal(s) for p, s in msg["bids"] if Decimal(s)},
                {Decimal(p): Decimal(s) for p, s in msg["asks"] if Decimal(s)},
            )
        elif msg.get("type") == "l2update" and msg["product_id"] in books:
            for side, price, size in msg["changes"]:
                levels = books[msg["product_id"]][0 if side == "buy" else 1]
                if Decimal(size) == 0:
                    levels.pop(Decimal(price), None)
                else:
                    levels[Decimal(price)] = Decimal(size)
    return books


def _binance_truth(ws: Path, rest: Path) -> dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]]:
    books, last = {}, {}
    for symbol, body in RecordedTape.rest_depth(rest).items():
        snap = orjson.loads(body)
        books[symbol] = (
            {Decimal(p): Decimal(s) for p, s in snap["bids"]},
            {Decimal(p): Decimal(s) for p, s in snap["asks"]},
        )
        last[symbol] = snap["lastUpdateId"]
    for message in iter_messages(ws):
        data = orjson.loads(message.payload)["data"]
        if data.get("e") != "depthUpdate" or data["u"] <= last[data["s"]]:
            continue
        assert data["U"] == last[data["s"]] + 1 or last[data["s"]] < data["U"] <= last[data["s"]] + 1
        last[data["s"]] = data["u"]
        for index, key in ((0, "b"), (1, "a")):
            for price, size in data[key]:
                if Decimal(size) == 0:
                    books[data["s"]][index].pop(Decimal(price), None)
                else:
                    books[data["s"]][index][Decimal(price)] = Decimal(size)
    return books


def _as_floats(levels: dict[Decimal, Decimal]) -> dict[float, float]:
    return {float(p): float(s) for p, s in levels.items()}


def test_every_coinbase_line_decodes(recordings_dir: Path) -> None:
    decoder = CoinbaseDecoder()
    kinds: dict[str, int] = {}
    for message in iter_messages(recordings_dir / COINBASE):
        record = decoder.decode(message.payload)
        kinds[type(record).__name__] = kinds.get(type(record).__name__, 0) + 1
    # 10 snapshots + 9,719 l2updates; 97 matches; 107 tickers; 10 last_match; 3 acks.
    assert kinds == {"BookUpdate": 9729, "Trade": 97, "Quote": 107, "Heartbeat": 10, "Subscribed": 3}


def test_every_binance_line_decodes(recordings_dir: Path) -> None:
    decoder = BinanceDecoder(BINANCE_SYMBOLS)
    kinds: dict[str, int] = {}
    for message in iter_messages(recordings_dir / BINANCE):
        record = decoder.decode(message.payload)
        kinds[type(record).__name__] = kinds.get(type(record).__name__, 0) + 1
    assert kinds == {"BookUpdate": 177, "Quote": 84, "Trade": 2, "NoneType": 2}  # kline is ignored


def test_coinbase_recording_through_the_client(recordings_dir: Path) -> None:
    path = recordings_dir / COINBASE
    truth = _coinbase_truth(path)
    expected_trades = read_recording_trades(path).trades

    async def main() -> tuple[CoinbaseFeed, KeepingSink]:
        sink = KeepingSink()
        async with ReplayExchange(coinbase_tape=RecordedTape(path), speed=0) as exchange:
            client = CoinbaseFeed(sorted(truth), sink, url=exchange.coinbase_url, book_channel="level2", quote_check=0)
            task = asyncio.create_task(client.run())
            await wait_for(lambda: exchange.stats["tapes_finished"] == 1, what="the tape to finish")
            await exchange.drained()
            await wait_for(lambda: client.stats.messages >= 9946, what="every message")
            client.stop()
            await task
        return client, sink

    client, sink = asyncio.run(main())
    assert client.stats.messages == 9946
    assert client.stats.malformed == 0
    assert client.stats.trades == 97 and client.stats.duplicates == 0
    assert [(t.symbol, t.trade_id, t.price, t.side) for t in sink.trades] == [
        (t.symbol, t.trade_id, t.price, t.side) for t in expected_trades
    ]
    for symbol, (bids, asks) in truth.items():
        assert client.synced[symbol]
        assert client.books[symbol].levels() == (_as_floats(bids), _as_floats(asks)), symbol
        assert not client.books[symbol].crossed()


def test_binance_recording_through_the_client(recordings_dir: Path) -> None:
    truth = _binance_truth(recordings_dir / BINANCE, recordings_dir / BINANCE_REST)

    async def main() -> BinanceFeed:
        async with ReplayExchange(
            binance_tape=RecordedTape(recordings_dir / BINANCE),
            binance_rest=RecordedTape.rest_depth(recordings_dir / BINANCE_REST),
            speed=0,
        ) as exchange:
            # The tape streams at once while the REST snapshots load: the client buffers
            # the diffs and applies those after each snapshot's lastUpdateId.
            client = BinanceFeed(BINANCE_SYMBOLS, KeepingSink(), url=exchange.binance_url, rest_url=exchange.rest_url)
            task = asyncio.create_task(client.run())
            await wait_for(lambda: exchange.stats["tapes_finished"] == 1, what="the tape to finish")
            await exchange.drained()
            await wait_for(lambda: all(client.synced.values()), what="books in sync")
            client.stop()
            await task
        return client

    client = asyncio.run(main())
    assert client.stats.malformed == 0
    assert client.stats.book_gaps == 0
    assert client.stats.trades == 2
    for raw, (bids, asks) in truth.items():
        symbol = next(s for s in BINANCE_SYMBOLS if s.replace("-", "") == raw)
        assert client.books[symbol].levels() == (_as_floats(bids), _as_floats(asks)), symbol


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"type": "match", "product_id": "X-USD", "price": "-1", "size": "1", "side": "buy", "trade_id": 1, "time": "2021-04-17T16:43:37.089723Z"}',
        b'{"type": "match", "product_id": "X-USD", "price": "1", "size": "1", "side": "up", "trade_id": 1, "time": "2021-04-17T16:43:37.089723Z"}',
        b'{"type": "l2update", "product_id": "X-USD", "changes": [["buy", "nan", "1"]], "time": "2021-04-17T16:43:37.089723Z"}',
        b'{"type": "l2update", "product_id": "X-USD", "changes": [["buy", "1", "1"]], "time": "yesterday"}',
        b'{"type": "ticker", "product_id": "X-USD"}',
        b"[1, 2, 3]",
    ],
)
def test_malformed_coinbase_messages_are_counted_and_dropped(payload: bytes) -> None:
    sink = KeepingSink()
    client = CoinbaseFeed(["X-USD"], sink, url="ws://127.0.0.1:1/")
    client.handle(payload)
    client.handle(b'{"type": "brand_new_channel"}')
    assert client.stats.malformed == 1
    assert client.stats.ignored == 1
    assert sink.trades == [] and sink.quotes == []


def test_malformed_binance_messages_are_counted_and_dropped() -> None:
    client = BinanceFeed(["NKN-USDT"], KeepingSink(), url="ws://127.0.0.1:1", rest_url="http://127.0.0.1:1")
    client.handle(b'{"stream": "x", "data": {"e": "aggTrade", "s": "NKNUSDT", "p": "0"}}')
    client.handle(
        b'{"stream": "x", "data": {"e": "depthUpdate", "s": "NKNUSDT", "U": 1, "u": 2, "b": [["1"]], "a": []}}'
    )
    client.handle(b'{"stream": "x", "data": {"e": "kline", "s": "NKNUSDT"}}')
    assert client.stats.malformed == 2
    assert client.stats.trades == 0
