"""The asyncio trading engine: feeds, bars, strategy, risk, execution, portfolio, storage."""

from __future__ import annotations

from engine.errors import EngineError

__all__ = ["EngineError"]
