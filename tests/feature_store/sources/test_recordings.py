"""Real exchange recordings read into normalized trades."""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson

from feature_store.sources.recordings import iter_messages, parse_trade, read_recording_trades


def test_coinbase_matches_become_trades_with_the_taker_side(recordings_dir: Path) -> None:
    report = read_recording_trades(recordings_dir / "coinbase_exchange_ws_2021-04-17.cryptofeed.txt")
    assert len(report.trades) == 97  # the README counts 97 `match` messages
    assert report.malformed == 0
    first = report.trades[0]
    # {"type":"match","trade_id":280232,"side":"sell","size":"985","price":"0.00001305",
    #  "product_id":"SKL-BTC","time":"2021-04-17T16:43:37.089723Z"}: the maker sold, so the taker bought.
    assert (first.venue, first.symbol, first.trade_id, first.side) == ("coinbase", "SKL-BTC", "280232", "buy")
    assert first.price == 0.00001305 and first.size == 985.0
    assert first.ts_ns == 1_618_677_817_089_723_000
    assert {t.symbol for t in report.trades} <= {
        "SKL-USD",
        "SKL-BTC",
        "BAND-GBP",
        "NMR-EUR",
        "BAND-BTC",
        "YFI-BTC",
        "DASH-BTC",
        "NU-GBP",
        "CRV-EUR",
        "SKL-GBP",
    }


def test_binance_agg_trades_become_trades(recordings_dir: Path) -> None:
    report = read_recording_trades(recordings_dir / "binance_spot_ws_2021-10-12.cryptofeed.txt")
    assert len(report.trades) >= 2
    first = report.trades[0]
    assert (first.venue, first.symbol, first.trade_id, first.side) == ("binance", "NKNUSDT", "15683430", "buy")
    assert first.ts_ns == 1_633_998_523_963 * 10**6


def test_received_messages_carry_their_receive_time(recordings_dir: Path) -> None:
    messages = list(iter_messages(recordings_dir / "coinbase_exchange_ws_2021-04-17.cryptofeed.txt"))
    assert messages[0].url == "wss://ws-feed.pro.coinbase.com"
    assert all(b.received_ns <= a.received_ns for b, a in itertools.pairwise(messages))
    assert orjson.loads(messages[0].payload)["type"] == "subscriptions"


def test_malformed_trade_messages_are_counted_and_dropped(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(
        b"wss://x <-> 1.0\n"
        b'1.5: {"type":"match","trade_id":1,"side":"buy","size":"1","price":"NaN","product_id":"A","time":"2021-01-01T00:00:00Z"}\n'
        b'1.6: {"type":"match","trade_id":2,"side":"buy","size":"1","product_id":"A","time":"2021-01-01T00:00:00Z"}\n'
        b"1.7: {not json\n"
        b'1.8: {"type":"match","trade_id":3,"side":"buy","size":"2","price":"5","product_id":"A","time":"2021-01-01T00:00:01Z"}\n'
        b'1.9: {"type":"heartbeat"}\n'
    )
    report = read_recording_trades(path)
    assert (len(report.trades), report.malformed, report.skipped, report.messages) == (1, 3, 1, 5)
    assert report.trades[0].side == "sell"


def test_non_trade_messages_are_not_trades() -> None:
    assert parse_trade({"type": "l2update"}) is None
    assert parse_trade([1, 2]) is None
