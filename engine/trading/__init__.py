"""The trading plane: strategy, pre-trade risk, paper execution and the portfolio.

The pieces here are plain synchronous code (no event loop, no I/O): :mod:`.core` turns bar
closes and forecasts into decisions and orders and trades into fills, the same way live and
in a backtest. The asynchronous shell (:mod:`.trader`) feeds it, calls the model service and
writes everything to PostgreSQL (:mod:`.store`).
"""
