"""Prometheus metrics of the engine, served on a local HTTP port (``/metrics``).

Counters live as plain integers on the components (a feed's :class:`FeedStats`, the data
plane's and the recorder's stats) so that the hot path pays one addition; this collector
reads them when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from engine.dataplane import DataPlane
from engine.feeds.client import FeedClient
from engine.latency import LatencyHistogram
from engine.recorder import Recorder
from engine.trading.breaker import STATE_CODES
from engine.trading.trader import Trader

__all__ = ["EngineCollector", "MetricsServer"]

_FEED_COUNTERS = {
    "messages": "messages received",
    "trades": "trades delivered",
    "book_updates": "book messages received",
    "malformed": "malformed messages dropped",
    "ignored": "messages of unknown types ignored",
    "duplicates": "repeated trades dropped",
    "late_trades": "trades that arrived after a later one",
    "trade_gaps": "jumps in trade ids",
    "missing_trades": "trade ids never received",
    "book_gaps": "book updates out of sequence (or crossed books)",
    "book_dropped": "book messages dropped while a book was out of sync",
    "resyncs": "book resynchronizations",
    "snapshots": "book snapshots applied",
    "reconnects": "reconnects",
    "stale": "connections closed by the stale-feed watchdog",
    "venue_errors": "error messages from the venue",
}


_PLANE_COUNTERS = {
    "bars": "bars closed",
    "late_trades": "trades after their interval closed",
    "intervals_closed": "bar intervals closed",
    "book_snapshots": "book snapshots recorded",
    "online_writes": "online feature writes",
    "online_failures": "failed online writes",
}


class EngineCollector(Collector):
    """Reads the engine components' counters at scrape time."""

    def __init__(
        self,
        feeds: Iterable[FeedClient],
        plane: DataPlane | None,
        recorder: Recorder | None,
        trader: Trader | None = None,
    ) -> None:
        self.feeds = list(feeds)
        self.plane = plane
        self.recorder = recorder
        self.trader = trader

    def collect(self) -> Iterator[Metric]:
        for name, doc in _FEED_COUNTERS.items():
            family = CounterMetricFamily(f"rrr_engine_feed_{name}", doc, labels=["venue"])
            for feed in self.feeds:
                family.add_metric([feed.venue], getattr(feed.stats, name))
            yield family
        dropped = CounterMetricFamily(
            "rrr_engine_feed_dropped", "messages dropped, by reason", labels=["venue", "reason"]
        )
        for feed in self.feeds:
            for reason, count in sorted(feed.stats.dropped.items()):
                dropped.add_metric([feed.venue, reason], count)
        yield dropped
        connected = GaugeMetricFamily("rrr_engine_feed_connected", "1 while the feed is connected", labels=["venue"])
        for feed in self.feeds:
            connected.add_metric([feed.venue], 1.0 if feed.stats.connected else 0.0)
        yield connected
        if self.plane is not None:
            yield from self._plane(self.plane)
        if self.recorder is not None:
            yield from self._recorder(self.recorder)
        if self.trader is not None:
            yield from self._trader(self.trader)

    def _trader(self, trader: Trader) -> Iterator[Metric]:
        core, s = trader.core, trader.stats
        yield _histogram(
            "rrr_engine_tick_to_decision_seconds",
            "from the tick that closed a bar to its orders sent",
            s.tick_to_decision_s,
        )
        yield _histogram("rrr_engine_model_call_seconds", "one batched forecast call", s.model_call_s)
        yield _histogram("rrr_engine_order_store_seconds", "storing a bar's orders before sending", s.order_store_s)
        for name, doc, value in (
            ("decisions", "symbol decisions made", core.stats.decisions),
            ("orders", "orders sent", core.stats.orders),
            ("fills", "fills", core.stats.fills),
            ("cancels", "orders cancelled (replaced or expired)", core.stats.cancels),
            ("bars_decided", "bars decided", core.stats.bars_decided),
            ("bars_without_model", "bars without forecasts (model service away)", core.stats.bars_without_model),
            ("duplicate_sends", "orders sent a second time (must stay 0)", getattr(core.broker, "duplicate_sends", 0)),
            ("orders_unsent", "orders not sent because they could not be stored first", s.orders_unsent),
            ("model_calls", "forecast calls", s.model_calls),
            ("model_failures", "failed forecast calls", s.model_failures),
            ("symbols_rejected", "symbols the model service did not forecast at a bar", s.symbols_rejected),
            ("risk_failures", "failed portfolio risk calls", s.risk_failures),
            ("journal_failures", "failed trading-record writes", s.journal_failures),
            ("news_scored", "headlines scored", s.news_scored),
        ):
            yield CounterMetricFamily(f"rrr_engine_{name}", doc, value=value)
        denials = CounterMetricFamily("rrr_engine_denials", "orders denied by pre-trade risk", labels=["check"])
        for check, n in sorted(core.stats.denials_by_check.items()):
            denials.add_metric([check], n)
        yield denials
        # Why symbols were held rather than traded (inside the no-trade band, below the minimum
        # order, no price yet...): a run that sends no order says why here.
        holds = CounterMetricFamily("rrr_engine_holds", "decisions that sent no order, by reason", labels=["reason"])
        for reason, n in sorted(core.stats.holds_by_reason.items()):
            holds.add_metric([reason], n)
        yield holds
        strategy = GaugeMetricFamily(
            "rrr_engine_strategy_info",
            "the strategy in force (1) and the model it came from",
            labels=["family", "origin"],
        )
        strategy.add_metric([core.params.family, core.params.origin], 1)
        yield strategy
        portfolio = core.portfolio
        equity = portfolio.equity()
        drawdown = (portfolio.peak_equity - equity) / portfolio.peak_equity if portfolio.peak_equity > 0 else 0
        gauges: tuple[tuple[str, str, float], ...] = (
            ("equity", "cash plus positions at their marks", float(equity)),
            ("pnl", "equity minus initial cash", float(equity - portfolio.initial_cash)),
            ("realized_pnl", "realized PnL net of fees", float(portfolio.realized_pnl())),
            ("gross_notional", "sum of absolute position notionals", float(portfolio.gross_notional())),
            ("drawdown", "fraction below the equity peak", float(max(drawdown, 0))),
            ("open_orders", "open orders", len(core.orders)),
            ("kill_switch", "1 when the drawdown kill switch has tripped", 1.0 if core.risk.killed else 0.0),
            ("var99", "portfolio VaR(99%) from the risk model", float(core.risk.var99 or 0)),
            ("journal_backlog", "trading records waiting to be written", len(core.journal)),
            (
                "circuit_breaker_state",
                "model-service breaker: 0 closed, 1 half-open, 2 open",
                STATE_CODES[trader.breaker.state] if trader.breaker else 0,
            ),
        )
        for name, doc, level in gauges:
            yield GaugeMetricFamily(f"rrr_engine_{name}", doc, value=level)

    def _plane(self, plane: DataPlane) -> Iterator[Metric]:
        s = plane.stats
        for name, doc in _PLANE_COUNTERS.items():
            yield CounterMetricFamily(f"rrr_engine_{name}", doc, value=getattr(s, name))
        yield GaugeMetricFamily(
            "rrr_engine_online_unwritten", "bar intervals waiting for Redis", value=s.online_unwritten
        )
        yield _summary("rrr_engine_close_to_online_seconds", "bar close to features in Redis", s.close_to_online_s)

    def _recorder(self, recorder: Recorder) -> Iterator[Metric]:
        s = recorder.stats
        written = CounterMetricFamily("rrr_engine_recorded_rows", "rows stored in PostgreSQL", labels=["table"])
        accepted = CounterMetricFamily("rrr_engine_accepted_rows", "rows accepted for recording", labels=["table"])
        for table in s.written:
            written.add_metric([table], s.written[table])
            accepted.add_metric([table], s.accepted[table])
        yield written
        yield accepted
        yield GaugeMetricFamily("rrr_engine_write_buffer_rows", "rows accepted, not yet stored", value=s.buffered_rows)
        yield GaugeMetricFamily("rrr_engine_spooled_batches", "batches spilled to disk", value=s.spooled_batches)
        yield CounterMetricFamily("rrr_engine_write_failures", "failed database writes", value=s.write_failures)
        yield CounterMetricFamily(
            "rrr_engine_rejected_batches", "batches refused by the database", value=s.batches_rejected
        )
        yield _summary("rrr_engine_write_seconds", "time to write one batch", s.write_seconds)


def _summary(name: str, doc: str, samples: Any) -> SummaryMetricFamily:
    values = list(samples)
    return SummaryMetricFamily(name, doc, count_value=len(values), sum_value=float(sum(values)))


def _histogram(name: str, doc: str, hist: LatencyHistogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=hist.cumulative(), sum_value=hist.sum)


class MetricsServer:
    """``/metrics`` (Prometheus text) and ``/healthz`` on ``host:port`` (127.0.0.1 by default)."""

    def __init__(self, collector: EngineCollector, *, host: str = "127.0.0.1", port: int = 9108) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(collector)
        self.collector = collector
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> MetricsServer:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain", charset="utf-8")

    async def _health(self, request: web.Request) -> web.Response:
        feeds = {f.venue: f.stats.connected for f in self.collector.feeds}
        status = 200 if all(feeds.values()) else 503
        return web.json_response({"feeds": feeds}, status=status)
