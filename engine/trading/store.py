"""The trading records in PostgreSQL: orders before they are sent, then everything else.

* :meth:`TradingStore.insert_orders` stores new orders (status ``new``) and returns the ids
  that were not there yet; only those are sent. The client order id is the key, so a
  recomputed decision never sends its order twice.
* :meth:`TradingStore.write` writes a :class:`~engine.trading.core.Journal` (fills, order
  state changes, decisions, risk events, positions, the account and realized returns) in one
  transaction: the database always holds a consistent prefix of what happened. Fills,
  decisions and events are idempotent (``ON CONFLICT DO NOTHING``).
* :meth:`TradingStore.load` rebuilds an account after a restart: the portfolio from its
  fills (replayed in their original order), its open orders, and its risk state.
* :meth:`TradingStore.write_spooled` writes first, at the next start, the journals spooled to
  files (:mod:`engine.trading.spool`) at a stop with PostgreSQL away. Every
  statement is idempotent, so a file written twice (a crash between the commit and its
  removal) stores nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from engine.trading.core import Journal
from engine.trading.orders import OPEN_STATUSES, Fill, Order
from engine.trading.portfolio import Portfolio
from engine.trading.risk import PreTradeRisk
from engine.trading.spool import JournalWrite, read_spooled
from feature_store.database import ensure_partitions
from feature_store.errors import StorageError

__all__ = ["AccountState", "JournalWrite", "TradingStore"]

_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

_INSERT_ORDERS = """
INSERT INTO orders (client_order_id, account, venue, symbol, side, order_type, quantity, limit_price, status,
                    decision_id, created_ns, updated_ns, eligible_ns, expires_ns, reason)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::numeric[],
                     $8::numeric[], $9::text[], $10::text[], $11::int8[], $12::int8[], $13::int8[], $14::int8[],
                     $15::text[])
ON CONFLICT (client_order_id) DO NOTHING
RETURNING client_order_id
"""
_INSERT_FILLS = """
INSERT INTO fills (client_order_id, fill_id, ts_ns, symbol, side, quantity, price, fee, liquidity, seq)
SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::numeric[], $7::numeric[],
                     $8::numeric[], $9::text[], $10::int8[])
ON CONFLICT (client_order_id, fill_id) DO NOTHING
"""
_UPDATE_ORDERS = """
UPDATE orders AS o SET status = u.status, filled_quantity = u.filled, sends = u.sends, updated_ns = u.updated,
                       reason = u.reason
FROM unnest($1::text[], $2::text[], $3::numeric[], $4::int4[], $5::int8[], $6::text[])
     AS u(id, status, filled, sends, updated, reason)
WHERE o.client_order_id = u.id
"""
_INSERT_DECISIONS = """
INSERT INTO decisions (decision_id, ts_ns, symbol, forecast, forecast_std, sentiment, value_at_risk, target_position,
                       action, reason, model_versions, feature_set_version, account)
SELECT d, t, s, f, fs, se, v, tp, a, r, m::jsonb, fv, $13
FROM unnest($1::text[], $2::int8[], $3::text[], $4::float8[], $5::float8[], $6::float8[], $7::float8[],
            $8::numeric[], $9::text[], $10::text[], $11::text[], $12::text[])
     AS u(d, t, s, f, fs, se, v, tp, a, r, m, fv)
ON CONFLICT DO NOTHING
"""
_INSERT_EVENTS = """
INSERT INTO risk_events (account, ts_ns, kind, symbol, client_order_id, reason)
SELECT $1::text, * FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[], $6::text[])
ON CONFLICT DO NOTHING
"""
_UPSERT_POSITIONS = """
INSERT INTO positions (account, symbol, quantity, average_price, realized_pnl, updated_ns)
SELECT $1::text, * FROM unnest($2::text[], $3::numeric[], $4::numeric[], $5::numeric[], $6::int8[])
ON CONFLICT (account, symbol) DO UPDATE SET quantity = EXCLUDED.quantity, average_price = EXCLUDED.average_price,
    realized_pnl = EXCLUDED.realized_pnl, updated_ns = EXCLUDED.updated_ns
"""
_UPDATE_ACCOUNT = """
UPDATE accounts SET peak_equity = $2, killed_ns = $3, kill_reason = $4, var99 = $5,
    checkpoint_bar_ns = COALESCE($6, checkpoint_bar_ns), checkpoint_ns = COALESCE($7, checkpoint_ns), updated_ns = $8
WHERE account = $1
"""
_REALIZED = """
UPDATE decisions AS d SET realized_return = u.r
FROM unnest($2::int8[], $3::text[], $4::float8[]) AS u(t, s, r)
WHERE d.account = $1 AND d.ts_ns = u.t AND d.symbol = u.s
"""
_OPEN_ORDERS = """
SELECT client_order_id, account, venue, symbol, side, order_type, quantity, limit_price, status, decision_id,
       created_ns, updated_ns, eligible_ns, expires_ns, filled_quantity, sends, reason
FROM orders WHERE account = $1 AND status = ANY($2::text[]) ORDER BY created_ns, client_order_id
"""


@dataclass
class AccountState:
    """An account as stored: what a restart rebuilds."""

    account: str
    initial_cash: Decimal
    portfolio: Portfolio
    open_orders: list[Order]
    killed_ns: int | None = None
    kill_reason: str | None = None
    var99: Decimal | None = None
    checkpoint_bar_ns: int | None = None
    checkpoint_ns: int | None = None
    recent_order_ns: list[int] = field(default_factory=list)
    fills: int = 0

    def restore_risk(self, risk: PreTradeRisk) -> None:
        if self.kill_reason is not None:
            risk.killed, risk.killed_ns = self.kill_reason, self.killed_ns or 0
        risk.var99 = self.var99
        for ts in self.recent_order_ns:
            risk.note_sent(ts)


def _order(row: Any) -> Order:
    return Order(
        client_order_id=row["client_order_id"],
        account=row["account"],
        venue=row["venue"],
        symbol=row["symbol"],
        side=row["side"],
        quantity=row["quantity"],
        order_type=row["order_type"],
        limit_price=row["limit_price"],
        status=row["status"],
        decision_id=row["decision_id"],
        created_ns=row["created_ns"],
        updated_ns=row["updated_ns"],
        eligible_ns=row["eligible_ns"] or 0,
        expires_ns=row["expires_ns"] or 0,
        filled_quantity=row["filled_quantity"],
        sends=row["sends"],
        reason=row["reason"],
    )


class TradingStore:
    """One account's trading records (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool, account: str) -> None:
        self.pool = pool
        self.account = account
        self.writes = 0
        self.failures = 0

    async def ensure_account(self, initial_cash: Decimal, now_ns: int) -> Decimal:
        """Create the account if new; return its initial cash (an existing account keeps its own)."""
        try:
            async with self.pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO accounts (account, initial_cash, created_ns, peak_equity, updated_ns) "
                    "VALUES ($1, $2, $3, $2, $3) ON CONFLICT (account) DO NOTHING",
                    self.account,
                    initial_cash,
                    now_ns,
                )
                cash = await conn.fetchval("SELECT initial_cash FROM accounts WHERE account = $1", self.account)
        except _DB_ERRORS as exc:
            raise StorageError(f"cannot open account {self.account!r}: {exc}") from exc
        return Decimal(cash)

    async def set_strategy(self, strategy: dict[str, Any], now_ns: int) -> None:
        """Record the strategy now in force (what ``engine status`` shows)."""
        try:
            async with self.pool.acquire() as conn:
                await conn.execute(
                    "UPDATE accounts SET strategy = $2::jsonb, strategy_ns = $3 WHERE account = $1",
                    self.account,
                    json.dumps(strategy, sort_keys=True),
                    now_ns,
                )
        except _DB_ERRORS as exc:
            raise StorageError(f"cannot record the strategy of account {self.account!r}: {exc}") from exc

    async def strategy(self) -> dict[str, Any] | None:
        """The strategy last put in force (with ``since_ns``), or None."""
        try:
            async with self.pool.acquire() as conn:
                raw = await conn.fetchval("SELECT strategy FROM accounts WHERE account = $1", self.account)
        except _DB_ERRORS as exc:
            raise StorageError(f"cannot read the strategy of account {self.account!r}: {exc}") from exc
        return json.loads(raw) if raw is not None else None

    async def load(self) -> AccountState:
        """The account rebuilt from the database (see the module docstring)."""
        try:
            async with self.pool.acquire() as conn:
                account = await conn.fetchrow("SELECT * FROM accounts WHERE account = $1", self.account)
                if account is None:
                    known = [r["account"] for r in await conn.fetch("SELECT account FROM accounts ORDER BY account")]
                    listed = ", ".join(known) if known else "none yet (engine run or backtest creates one)"
                    raise StorageError(f"account {self.account!r} does not exist; the accounts stored: {listed}")
                fills = await conn.fetch(
                    "SELECT f.* FROM fills f JOIN orders o USING (client_order_id) WHERE o.account = $1 "
                    "ORDER BY f.seq, f.ts_ns, f.client_order_id, f.fill_id",
                    self.account,
                )
                orders = await conn.fetch(
                    _OPEN_ORDERS,
                    self.account,
                    sorted(OPEN_STATUSES),
                )
                last = account["checkpoint_ns"]
                recent = await conn.fetch(
                    "SELECT created_ns FROM orders WHERE account = $1 AND created_ns > $2 AND sends > 0 "
                    "ORDER BY created_ns",
                    self.account,
                    (last or 0) - 1_000_000_000,
                )
        except _DB_ERRORS as exc:
            raise StorageError(f"cannot load account {self.account!r}: {exc}") from exc
        portfolio = Portfolio(Decimal(account["initial_cash"]))
        portfolio.apply_all(
            Fill(
                r["client_order_id"],
                r["fill_id"],
                r["ts_ns"],
                r["symbol"],
                r["side"],
                r["quantity"],
                r["price"],
                r["fee"],
                r["liquidity"],
            )
            for r in fills
        )
        portfolio.peak_equity = Decimal(account["peak_equity"])
        return AccountState(
            account=self.account,
            initial_cash=portfolio.initial_cash,
            portfolio=portfolio,
            open_orders=[_order(r) for r in orders],
            killed_ns=account["killed_ns"],
            kill_reason=account["kill_reason"],
            var99=account["var99"],
            checkpoint_bar_ns=account["checkpoint_bar_ns"],
            checkpoint_ns=account["checkpoint_ns"],
            recent_order_ns=[int(r["created_ns"]) for r in recent],
            fills=len(fills),
        )

    async def insert_orders(self, orders: Sequence[Order]) -> set[str]:
        """Store ``orders`` (status ``new``); return the ids that were not stored before."""
        if not orders:
            return set()
        columns: list[list[Any]] = [[] for _ in range(15)]
        for o in orders:
            row = (
                o.client_order_id, o.account, o.venue, o.symbol, o.side, o.order_type, o.quantity, o.limit_price,
                "new", o.decision_id, o.created_ns, o.updated_ns, o.eligible_ns, o.expires_ns, o.reason,
            )  # fmt: skip
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        try:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(_INSERT_ORDERS, *columns)
        except _DB_ERRORS as exc:
            self.failures += 1
            raise StorageError(f"storing {len(orders)} orders failed; none is sent: {exc}") from exc
        return {r["client_order_id"] for r in rows}

    async def write(self, write: JournalWrite) -> None:
        """Execute ``write`` (see :meth:`statements`) in one transaction.

        Raises:
            StorageError: nothing was written (the caller keeps the journal and retries).
        """
        try:
            async with self.pool.acquire() as conn:
                if write.decision_span is not None:
                    await ensure_partitions(conn, "decisions", *write.decision_span)
                async with conn.transaction():
                    for name, args in write.statements:
                        await conn.execute(_STATEMENTS[name], *args)
        except _DB_ERRORS as exc:
            self.failures += 1
            raise StorageError(f"writing trading records failed and nothing was stored: {exc}") from exc
        self.writes += 1

    def statements(
        self,
        journal: Journal,
        portfolio: Portfolio,
        risk: PreTradeRisk,
        now_ns: int,
        *,
        checkpoint: tuple[int, int] | None = None,
        realized: Sequence[tuple[int, str, float]] = (),
        fill_seq_start: int = 0,
    ) -> JournalWrite:
        """``journal`` and the account's state as the statements :meth:`write` executes, in plain
        values (what a spool file holds).

        Args:
            checkpoint: (bar, venue time) of the last bar fully decided, for a resumed backtest.
            realized: (bar, symbol, realized log return) of earlier decisions.
            fill_seq_start: the sequence number of the journal's first fill.
        """
        out: list[tuple[str, list[Any]]] = []
        decisions = journal.decisions
        if journal.fills:
            out.append(("fills", _fill_columns(journal.fills, fill_seq_start)))
        if journal.orders:
            out.append(("orders", _order_updates(journal.orders.values())))
        if decisions:
            out.append(("decisions", [*_decision_columns(decisions), self.account]))
        if journal.events:
            ev = journal.events
            out.append(
                (
                    "events",
                    [
                        self.account,
                        [e.ts_ns for e in ev],
                        [e.kind for e in ev],
                        [e.symbol for e in ev],
                        [e.client_order_id for e in ev],
                        [e.reason for e in ev],
                    ],
                )
            )
        if journal.symbols:
            positions = [portfolio.positions[s] for s in sorted(journal.symbols)]
            out.append(
                (
                    "positions",
                    [
                        self.account,
                        [p.symbol for p in positions],
                        [p.quantity for p in positions],
                        [p.average_price for p in positions],
                        [p.realized_pnl for p in positions],
                        [p.updated_ns for p in positions],
                    ],
                )
            )
        if realized:
            bars, symbols, returns = (list(column) for column in zip(*realized, strict=True))
            out.append(("realized", [self.account, bars, symbols, returns]))
        out.append(
            (
                "account",
                [
                    self.account,
                    portfolio.peak_equity,
                    risk.killed_ns if risk.killed else None,
                    risk.killed,
                    risk.var99,
                    checkpoint[0] if checkpoint else None,
                    checkpoint[1] if checkpoint else None,
                    now_ns,
                ],
            )
        )
        span = (decisions[0].ts_ns, decisions[-1].ts_ns) if decisions else None
        return JournalWrite(self.account, out, span, len(journal))

    async def write_spooled(self, directory: Path) -> int:
        """Write the journals this account spooled under ``directory`` at a stop (oldest first),
        removing each file once it is stored; return how many entries were written.

        Raises:
            StorageError: a file could not be written (it and the ones after it stay), or a
                file is not a spooled journal (named; it is left where it is).
        """
        entries = 0
        for path, write in read_spooled(directory, self.account, _STATEMENTS):
            await self.write(write)
            path.unlink()
            entries += write.entries
        return entries


_STATEMENTS = {
    "fills": _INSERT_FILLS,
    "orders": _UPDATE_ORDERS,
    "decisions": _INSERT_DECISIONS,
    "events": _INSERT_EVENTS,
    "positions": _UPSERT_POSITIONS,
    "realized": _REALIZED,
    "account": _UPDATE_ACCOUNT,
}


def _fill_columns(fills: Sequence[Fill], seq_start: int) -> list[list[Any]]:
    return [
        [f.client_order_id for f in fills],
        [f.fill_id for f in fills],
        [f.ts_ns for f in fills],
        [f.symbol for f in fills],
        [f.side for f in fills],
        [f.quantity for f in fills],
        [f.price for f in fills],
        [f.fee for f in fills],
        [f.liquidity for f in fills],
        list(range(seq_start, seq_start + len(fills))),
    ]


def _order_updates(orders: Any) -> list[list[Any]]:
    orders = list(orders)
    return [
        [o.client_order_id for o in orders],
        [o.status for o in orders],
        [o.filled_quantity for o in orders],
        [o.sends for o in orders],
        [o.updated_ns for o in orders],
        [o.reason for o in orders],
    ]


def _decision_columns(decisions: Sequence[Any]) -> list[list[Any]]:
    encoded: dict[int, str] = {}

    def models(d: Any) -> str:
        key = id(d.model_versions)
        text = encoded.get(key)
        if text is None:
            text = encoded[key] = json.dumps(d.model_versions, sort_keys=True)
        return text

    return [
        [d.decision_id for d in decisions],
        [d.ts_ns for d in decisions],
        [d.symbol for d in decisions],
        [d.forecast for d in decisions],
        [d.forecast_std for d in decisions],
        [d.sentiment for d in decisions],
        [d.value_at_risk for d in decisions],
        [d.target_position for d in decisions],
        [d.action for d in decisions],
        [d.reason for d in decisions],
        [models(d) for d in decisions],
        [d.feature_set_version for d in decisions],
    ]
