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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from engine.dataplane import DataPlane
from engine.feeds.client import FeedClient
from engine.recorder import Recorder

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

    def __init__(self, feeds: Iterable[FeedClient], plane: DataPlane | None, recorder: Recorder | None) -> None:
        self.feeds = list(feeds)
        self.plane = plane
        self.recorder = recorder

    def collect(self) -> Iterator[Metric]:
        for name, doc in _FEED_COUNTERS.items():
            family = CounterMetricFamily(f"rrr_engine_feed_{name}", doc, labels=["venue"])
            for feed in self.feeds:
                family.add_metric([feed.venue], getattr(feed.stats, name))
            yield family
        connected = GaugeMetricFamily("rrr_engine_feed_connected", "1 while the feed is connected", labels=["venue"])
        for feed in self.feeds:
            connected.add_metric([feed.venue], 1.0 if feed.stats.connected else 0.0)
        yield connected
        if self.plane is not None:
            yield from self._plane(self.plane)
        if self.recorder is not None:
            yield from self._recorder(self.recorder)

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
