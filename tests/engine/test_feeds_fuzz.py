"""Feeds that survive any message: the inputs that stopped the engine, and a seeded fuzz.

Each case below once raised out of ``FeedClient.handle()`` (which stops the engine), or
silenced a symbol or froze a book for good. The fuzz runs mutations of the synthetic
streams (and of the real recordings, where present) through both clients.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from engine.feeds import binance
from engine.feeds.client import MAX_ID_JUMP
from engine.feeds.fuzz import fuzz
from engine.feeds.venues import BinanceFeed, CoinbaseFeed
from tests.engine.feed_helpers import KeepingSink

T = "2021-04-17T16:43:37.089723Z"


def _match(trade_id: object, product: object = "X-USD", time_text: object = T) -> bytes:
    return orjson.dumps(
        {"type": "match", "product_id": product, "price": "10", "size": "1", "side": "buy", "trade_id": trade_id,
         "time": time_text}
    )  # fmt: skip


@pytest.mark.parametrize(
    "payload",
    [
        b'{"type":"l2update","product_id":[],"changes":[["buy","1","1"]],"time":"2021-04-17T16:43:37.089723Z"}',
        b'{"type":"l2update","product_id":"X-USD","changes":"buy","time":"2021-04-17T16:43:37.089723Z"}',
        _match(1, time_text="9999-12-31T23:59:59.999999+00:00"),
        _match(1, time_text="0001-01-01T00:00:00.000000-14:00"),
        _match(1, time_text=["2021"]),
        _match(True),
        _match(2**63),
        _match(1, product={"a": 1}),
        _match(1, product="ZZZ-USD"),  # not subscribed
        b'{"type":"ticker","product_id":"X-USD","best_bid":"2","best_ask":"1","time":"2021-04-17T16:43:37.089723Z"}',
        b'{"type":"ticker","product_id":"X-USD","best_bid":"1","best_ask":"2","best_bid_size":"inf"}',
        b'{"type":"subscriptions","channels":5}',
        b'{"type":["match"]}',
        b'{"type":"match","pad":"' + b"x" * (9 * 2**20) + b'"}',
    ],
)
def test_bad_coinbase_messages_are_dropped_by_reason(payload: bytes) -> None:
    sink = KeepingSink()
    client = CoinbaseFeed(["X-USD"], sink, url="ws://127.0.0.1:1/", max_ahead_s=None)
    client.handle(payload)
    assert client.stats.malformed == 1 and sum(client.stats.dropped.values()) == 1
    assert sink.trades == [] and sink.quotes == []


@pytest.mark.parametrize(
    "data",
    [
        {"e": "aggTrade", "E": "1634000000000", "s": "NKNUSDT", "p": "1", "q": "1", "T": "1634000000000",
         "m": True, "a": 5},
        {"e": "aggTrade", "E": 1, "s": "NKNUSDT", "p": "1", "q": "1", "T": 1634000000000, "m": "yes", "a": 5},
        {"e": "aggTrade", "E": 1, "s": "NKNUSDT", "p": "1", "q": "1", "T": 10**19, "m": True, "a": 5},
        {"e": "depthUpdate", "E": "1634000000000", "s": "NKNUSDT", "U": 1, "u": 2, "b": [], "a": []},
        {"e": "depthUpdate", "E": 1634000000000, "s": "NKNUSDT", "U": 1, "u": 2**62, "b": [], "a": []},
        {"e": "depthUpdate", "E": 1634000000000, "s": "NKNUSDT", "U": 5, "u": 4, "b": [], "a": []},
        {"e": "depthUpdate", "E": 1634000000000, "s": ["NKNUSDT"], "U": 1, "u": 2, "b": [], "a": []},
        {"s": "NKNUSDT", "b": "1", "B": "-1", "a": "2", "A": "1", "u": 1},
    ],
)  # fmt: skip
def test_bad_binance_messages_are_dropped_by_reason(data: dict[str, object]) -> None:
    client = BinanceFeed(["NKN-USDT"], KeepingSink(), url="ws://127.0.0.1:1", rest_url="http://127.0.0.1:1")
    client.handle(orjson.dumps({"stream": "x", "data": data}))
    assert client.stats.malformed == 1 and client.stats.trades == 0 and client.stats.book_updates == 0


def test_one_bogus_trade_id_never_silences_a_symbol_and_ids_reset_on_reconnect() -> None:
    sink = KeepingSink()
    client = CoinbaseFeed(["X-USD"], sink, url="ws://127.0.0.1:1/", max_ahead_s=None)
    for i in (100, 101):
        client.handle(_match(i))
    client.handle(_match(2**62))  # implausible: dropped, not believed
    for i in (102, 103):
        client.handle(_match(i))
    assert [t.trade_id for t in sink.trades] == ["100", "101", "102", "103"]
    assert client.stats.dropped == {"implausible_trade_id": 1}
    # A bogus id as the very first one of a connection: the next trade far below resets it.
    client._reset_trade_ids()
    client.handle(_match(2**62))
    client.handle(_match(104))
    client.handle(_match(105))
    client.handle(_match(105))  # a real repeat is still a repeat
    assert [t.trade_id for t in sink.trades][-3:] == [str(2**62), "104", "105"]
    assert client.stats.duplicates == 1
    # Ids that really moved on (the venue's next trade confirms the jump) are followed.
    client.handle(_match(106 + 2 * MAX_ID_JUMP))
    client.handle(_match(107 + 2 * MAX_ID_JUMP))
    assert sink.trades[-1].trade_id == str(107 + 2 * MAX_ID_JUMP)
    # A late trade (after a later one) passes once.
    client.handle(_match(109 + 2 * MAX_ID_JUMP))
    client.handle(_match(108 + 2 * MAX_ID_JUMP))
    client.handle(_match(108 + 2 * MAX_ID_JUMP))
    assert client.stats.late_trades == 1 and sink.trades[-1].trade_id == str(108 + 2 * MAX_ID_JUMP)


def test_far_future_times_are_dropped_live() -> None:
    sink = KeepingSink()
    client = CoinbaseFeed(["X-USD"], sink, url="ws://127.0.0.1:1/")
    client.handle(_match(1, time_text="2099-01-01T00:00:00.000000Z"))
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    client.handle(_match(2, time_text=now))
    assert [t.trade_id for t in sink.trades] == ["2"] and client.stats.dropped == {"future_time": 1}


def _depth(first: int, last: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
    data = {"e": "depthUpdate", "E": 1634000000000, "s": "NKNUSDT", "U": first, "u": last, "b": bids, "a": asks}
    return orjson.dumps({"stream": "nknusdt@depth@100ms", "data": data})


class _Snapshots(BinanceFeed):
    """Depth snapshots from a list instead of REST, installed at once."""

    def __init__(self, snapshots: list[bytes], sink: KeepingSink) -> None:
        super().__init__(["NKN-USDT"], sink, url="ws://127.0.0.1:1", rest_url="http://127.0.0.1:1")
        self.snapshots = snapshots
        self.fetches = 0

    def _fetch_snapshot_later(self, symbol: str) -> None:
        self.fetches += 1
        if self.snapshots:
            self._install(symbol, binance.parse_depth_snapshot(symbol, self.snapshots.pop(0)))


def test_a_crossed_snapshot_never_reaches_the_sink_and_a_bogus_book_id_resyncs() -> None:
    crossed = orjson.dumps({"lastUpdateId": 10, "bids": [["2", "1"]], "asks": [["1", "1"]]})
    good = orjson.dumps({"lastUpdateId": 10, "bids": [["1", "1"]], "asks": [["2", "1"]]})
    bogus = orjson.dumps({"lastUpdateId": 2**62, "bids": [["1", "1"]], "asks": [["2", "1"]]})
    sink = KeepingSink()

    async def scenario() -> _Snapshots:
        client = _Snapshots([crossed, good, bogus, good], sink)
        client._resync("NKN-USDT")
        assert not client.synced["NKN-USDT"] and sink.book_events == 0  # the crossed one refused
        client._resync("NKN-USDT")
        assert client.synced["NKN-USDT"] and sink.book_events == 1
        client.handle(_depth(11, 11, [["1.5", "1"]], []))
        assert client.books["NKN-USDT"].best_bid() == 1.5
        client._resync("NKN-USDT")  # the venue answers with a book id far in the future
        assert client.books["NKN-USDT"].last_id == 2**62
        client.handle(_depth(12, 12, [["1.6", "1"]], []))  # far behind the book: resync at once
        assert client.books["NKN-USDT"].last_id == 10 and client.stats.book_gaps == 2
        return client

    client = asyncio.run(scenario())
    assert client.fetches == 4


@pytest.mark.parametrize("venue", ["coinbase", "binance", "polygon"])
def test_seeded_fuzz_finds_no_crash_and_loses_no_clean_trade(venue: str, recordings_dir_or_none) -> None:
    report = fuzz(venue, 30_000, seed=11, recordings_dir=recordings_dir_or_none)
    assert report.crashes == 0, report.by_place
    assert report.mutated > 10_000 and sum(report.dropped.values()) > 5_000
    assert report.clean_trades_sent > 500 and report.clean_trades_lost == 0
