"""Trading records in a real PostgreSQL through PostgreSQL outages: an order that could not be
stored is recorded as unsent, never as a buy or sell; a journal PostgreSQL cannot take at a
stop is spooled to disk and stored first, once, at the next start."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from engine.config import BarInterval
from engine.trading.breaker import CircuitBreaker
from engine.trading.core import Forecasts, TradingCore
from engine.trading.execution import PaperBroker, PaperCosts
from engine.trading.portfolio import Portfolio
from engine.trading.risk import PreTradeRisk, RiskLimits
from engine.trading.store import TradingStore
from engine.trading.strategy import StrategyParams
from engine.trading.trader import Trader
from feature_store.database import open_pool
from feature_store.errors import StorageError
from feature_store.records import Trade

S = 10**9
D = Decimal
SYMBOLS = ["AAA-USD", "BBB-USD"]


def _trade(ts_s: float, price: float, symbol: str, tid: int, size: float = 100.0) -> Trade:
    return Trade("coinbase", symbol, int(ts_s * S), price, size, "buy", str(tid))


def _forecasts(mean: list[float], bar: int) -> Forecasts:
    n = len(SYMBOLS)
    return Forecasts(SYMBOLS, np.array(mean), np.full(n, 0.001), [bar] * n, {"price": "p:v1"}, {"price": "f1"}, 15)


def _trader(store: TradingStore, portfolio: Portfolio | None = None) -> Trader:
    core = TradingCore(
        store.account,
        portfolio or Portfolio(D(100_000)),
        PaperBroker(PaperCosts(participation=D(1))),
        PreTradeRisk(RiskLimits(max_position_notional=D(5000))),
        StrategyParams(family="per_symbol", cap=0.05, entry_z=0.1),
    )
    # live: a breaker, so that a failed write keeps the journal instead of raising
    breaker = CircuitBreaker(3, 1.0)
    return Trader(core, store, None, interval=BarInterval(60), grace_ns=0, breaker=breaker)  # type: ignore[arg-type]


async def _decide(trader: Trader, bar: int, mean: list[float]) -> None:
    core = trader.core
    now = bar + 61 * S
    for i, symbol in enumerate(SYMBOLS):
        core.on_trade(_trade(now / S - 2, 100.0 + i, symbol, bar // S * 10 + i))
    orders = core.decide(bar, {s: 100.0 + i for i, s in enumerate(SYMBOLS)}, _forecasts(mean, bar), now)
    assert orders
    await trader._send(orders, now)


async def _rows(url: str, account: str) -> dict[str, object]:
    pool = await open_pool(url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            return {
                "decisions": [
                    tuple(r)
                    for r in await conn.fetch(
                        "SELECT ts_ns, symbol, action, reason FROM decisions WHERE account = $1 ORDER BY ts_ns, symbol",
                        account,
                    )
                ],
                "fills": await conn.fetchval(
                    "SELECT count(*) FROM fills f JOIN orders o USING (client_order_id) WHERE o.account = $1", account
                ),
                "orders": dict(
                    await conn.fetch("SELECT client_order_id, status FROM orders WHERE account = $1", account)
                ),
                "positions": {
                    r["symbol"]: r["quantity"]
                    for r in await conn.fetch("SELECT symbol, quantity FROM positions WHERE account = $1", account)
                },
            }
    finally:
        await pool.close()


def test_a_decision_whose_order_could_not_be_stored_is_recorded_unsent(fresh_database_url: str) -> None:
    async def scenario() -> None:
        pool = await open_pool(fresh_database_url, min_size=1, max_size=2)
        store = TradingStore(pool, "unsent")
        await store.ensure_account(D(100_000), 1)
        trader = _trader(store)
        await pool.close()  # PostgreSQL away when the orders are stored
        await _decide(trader, 60 * S, [0.002, -0.002])
        assert trader.stats.orders_unsent == 2 and trader.core.broker.open_orders() == []
        decisions = trader.core.journal.decisions
        assert [d.action for d in decisions] == ["unsent", "unsent"]
        assert decisions[0].reason.startswith("buy ") and "could not be stored" in decisions[0].reason
        # back: the journal is written with the decisions as they really were
        trader.store = store = TradingStore(await open_pool(fresh_database_url, min_size=1, max_size=2), "unsent")
        assert await trader.flush()
        await store.pool.close()

    asyncio.run(scenario())
    rows = asyncio.run(_rows(fresh_database_url, "unsent"))
    assert [r[2] for r in rows["decisions"]] == ["unsent", "unsent"]  # type: ignore[attr-defined]
    assert rows["orders"] == {}


def test_a_journal_postgresql_cannot_take_at_stop_is_spooled_and_stored_once_at_the_next_start(
    fresh_database_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"

    async def first_run() -> dict[str, object]:
        pool = await open_pool(fresh_database_url, min_size=1, max_size=2)
        store = TradingStore(pool, "spooled")
        await store.ensure_account(D(100_000), 1)
        trader = _trader(store)
        await _decide(trader, 60 * S, [0.002, -0.002])  # orders stored and sent while PostgreSQL is up
        core = trader.core
        for i, symbol in enumerate(SYMBOLS):  # they fill
            core.on_trade(_trade(125, 100.0 + i, symbol, 900 + i))
        assert core.stats.fills == 2 and len(core.journal.fills) == 2
        await pool.close()  # PostgreSQL goes away before the journal is written
        assert not await trader.flush()
        path = trader.spool_journal(spool)
        assert path is not None and path.parent.parent == spool / "journal" and path.exists()
        assert not list(path.parent.glob("*.tmp")) and len(core.journal) == 0
        return {s: core.portfolio.quantity(s) for s in SYMBOLS}

    held = asyncio.run(first_run())
    assert asyncio.run(_rows(fresh_database_url, "spooled"))["fills"] == 0  # nothing reached the database

    async def next_start(url: str) -> tuple[int, dict[str, Decimal], int]:
        pool = await open_pool(url, min_size=1, max_size=2)
        try:
            store = TradingStore(pool, "spooled")
            written = await store.write_spooled(spool)
            state = await store.load()
            return written, {s: state.portfolio.quantity(s) for s in SYMBOLS}, state.fills
        finally:
            await pool.close()

    written, positions, fills = asyncio.run(next_start(fresh_database_url))
    assert written > 0 and fills == 2 and positions == held
    assert not list((spool / "journal").rglob("*.json"))  # stored: the file is gone
    rows = asyncio.run(_rows(fresh_database_url, "spooled"))
    assert rows["fills"] == 2 and set(rows["orders"].values()) == {"filled"}  # type: ignore[union-attr]
    assert [r[2] for r in rows["decisions"]] == ["buy", "sell"]  # type: ignore[attr-defined]
    assert rows["positions"] == held
    assert asyncio.run(next_start(fresh_database_url))[0] == 0  # nothing twice


def test_a_spool_file_that_is_not_a_journal_is_named_and_kept(fresh_database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "journal" / "acct"
    folder.mkdir(parents=True)
    bad = folder / "00000000000000000001.json"
    bad.write_text('{"account": "acct", "statements": [["drop table", []]]}')

    async def scenario() -> None:
        pool = await open_pool(fresh_database_url, min_size=1, max_size=1)
        try:
            with pytest.raises(StorageError, match="is not a spooled trading journal"):
                await TradingStore(pool, "acct").write_spooled(tmp_path)
        finally:
            await pool.close()

    asyncio.run(scenario())
    assert bad.exists()


def test_an_unknown_account_is_named_with_the_accounts_stored(fresh_database_url: str) -> None:
    async def scenario() -> None:
        pool = await open_pool(fresh_database_url, min_size=1, max_size=1)
        try:
            with pytest.raises(StorageError, match="none yet"):
                await TradingStore(pool, "nosuch").load()
            for name in ("beta", "alpha"):
                await TradingStore(pool, name).ensure_account(D(1000), 1)
            with pytest.raises(StorageError, match="'nosuch' does not exist; the accounts stored: alpha, beta"):
                await TradingStore(pool, "nosuch").load()
        finally:
            await pool.close()

    asyncio.run(scenario())
