"""Where market data comes from: the synthetic market, files and exchange recordings."""

from __future__ import annotations

__all__: list[str] = []
