"""The recorder's accounting against a real PostgreSQL: every accepted row ends up written
(stored once), pending or rejected, including when a commit's reply is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from engine.recorder import Recorder
from feature_store.records import Trade

T0 = 1_767_225_600_000_000_000  # 2026-01-01


def _trades(n: int, first_id: int = 0) -> list[Trade]:
    return [
        Trade("coinbase", "BTC-USD", T0 + i * 1_000_000, 100.0 + i, 0.5, "buy", str(first_id + i)) for i in range(n)
    ]


async def _count(url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetchval("SELECT count(*) FROM trades")
        distinct = await conn.fetchval("SELECT count(DISTINCT trade_id) FROM trades")
    finally:
        await conn.close()
    return int(rows), int(distinct)


async def _run_until_drained(recorder: Recorder, timeout_s: float = 20.0) -> None:
    task = asyncio.create_task(recorder.run())
    try:
        async with asyncio.timeout(timeout_s):
            while recorder.pending_rows():
                await asyncio.sleep(0.05)
    finally:
        await recorder.close()
        await asyncio.wait_for(task, timeout=5)  # run() returns once closed


def test_a_batch_whose_commit_reply_was_lost_is_stored_once_and_counted_written(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit goes through, then the connection drops before the reply: the retry finds
    the batch id already stored, skips it, and its rows still count as written."""
    real_write = Recorder._write
    lost: list[str] = []

    async def write_then_lose_reply(self: Recorder, pool: asyncpg.Pool, batch: object) -> bool:
        stored = await real_write(self, pool, batch)  # type: ignore[arg-type]
        if not lost:
            lost.append(batch.batch_id)  # type: ignore[attr-defined]
            raise ConnectionResetError(104, "Connection reset by peer")
        return stored

    monkeypatch.setattr(Recorder, "_write", write_then_lose_reply)

    async def scenario() -> Recorder:
        recorder = Recorder(fresh_database_url, spool_dir=tmp_path / "spool", batch_rows=50, flush_s=0.05)
        for trade in _trades(120):
            recorder.add_trade(trade)
        await _run_until_drained(recorder)
        return recorder

    recorder = asyncio.run(scenario())
    assert lost, "the lost reply was never simulated"
    stats = recorder.stats
    assert stats.write_failures == 1 and stats.batches_already_stored == 1
    assert stats.accepted["trades"] == stats.written["trades"] == 120 and recorder.pending_rows() == 0
    assert asyncio.run(_count(fresh_database_url)) == (120, 120)


def test_a_spooled_batch_an_earlier_run_already_stored_counts_as_written(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """A run that stored a spooled batch and died before deleting its file: the next run
    loads the file, finds the batch stored, deletes it and counts its rows as written."""
    spool = tmp_path / "spool"

    async def first_run() -> None:
        recorder = Recorder(fresh_database_url, spool_dir=spool, batch_rows=40, flush_s=0.05)
        for trade in _trades(40):
            recorder.add_trade(trade)
        recorder._seal("trades")
        batch = recorder._queue[0]
        recorder._spill(batch)  # what close() does when the database is away
        batch.rows = []
        saved = batch.path.read_bytes()  # type: ignore[union-attr]
        await _run_until_drained(recorder)
        batch.path.write_bytes(saved)  # type: ignore[union-attr]  # as if the unlink never happened

    asyncio.run(first_run())
    assert len(list((spool / "pending").glob("*.json"))) == 1

    async def second_run() -> Recorder:
        recorder = Recorder(fresh_database_url, spool_dir=spool, batch_rows=40, flush_s=0.05)
        assert recorder.pending_rows() == 40
        await _run_until_drained(recorder)
        return recorder

    recorder = asyncio.run(second_run())
    stats = recorder.stats
    assert stats.batches_already_stored == 1 and stats.batches_written == 0
    assert stats.accepted["trades"] == stats.written["trades"] == 40 and stats.spooled_batches == 0
    assert not list((spool / "pending").glob("*.json"))
    assert asyncio.run(_count(fresh_database_url)) == (40, 40)
