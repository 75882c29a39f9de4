"""Soak: the engine, the model service and the replay exchange for ``--minutes``, with faults.

``make soak`` (10 minutes) or ``.venv/bin/python -m benchmarks.soak --minutes 60``. Everything
runs on this machine in a throwaway folder, on servers of its own (embedded PostgreSQL and
Valkey started there, never the user's): sample models for one-second bars served by
``bentoml serve``, the replay exchange (20 synthetic symbols, a message dropped every 997) as
a process of its own, and ``python -m engine run --venue binance`` paper-trading one-second
bars against it (warm-started from the exchange's REST klines).

Faults, one every ``--every`` seconds in turn, after a warm-up:

* ``feed``: the replay exchange is SIGKILLed (the engine's socket dies without a close frame)
  and started again on the same port 3 s later;
* ``valkey``: SIGKILL, restarted 3 s later;
* ``postgres``: stopped (fast shutdown) and started again 3 s later;
* ``service``: the model service is stopped and started again;
* ``hot_swap``: a new price model is promoted; the service swaps it in while serving.

A fault's window runs from its start to 20 s after its end (what recovery may take). The
engine's ``/metrics`` are read every second. Reported, each beside its target:

* ``soak_failed_decision_share``: symbol decisions that failed for want of a forecast (the
  symbol not forecast, or the whole bar without the model service), outside the fault windows
  and after the warm-up, over those attempted there (target < 0.1%); the same inside the
  windows is shown beside it.
* ``soak_rows_lost``: rows the engine's recorder accepted minus rows stored in PostgreSQL at
  the end (target 0); ``soak_duplicate_orders``: orders sent twice (the paper broker's count
  plus orders stored with more than one send; target 0).
* ``soak_rss_growth``: the engine's RSS at the end over its RSS after warm-up, minus 1
  (target < 10%).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.results_file import Figure, write_results
from feature_store import services
from serving import launcher

SYMBOLS = 20
RECOVERY_S = 20.0
FAULTS = ("feed", "valkey", "postgres", "service", "hot_swap")
_METRIC = re.compile(r"^(rrr_engine_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$")


@dataclass
class Window:
    fault: str
    start: float
    end: float = 0.0


@dataclass
class Sample:
    at: float
    attempted: float  # symbol decisions attempted: made, or failed for want of a forecast
    failed: float
    rss: int

    @classmethod
    def read(cls, at: float, m: dict[str, float], rss: int) -> Sample:
        failed = m.get("rrr_engine_symbols_rejected_total", 0) + SYMBOLS * m.get(
            "rrr_engine_bars_without_model_total", 0
        )
        return cls(at, m.get("rrr_engine_decisions_total", 0) + failed, failed, rss)


@dataclass
class Soak:
    home: Path
    minutes: float
    every_s: float
    env: dict[str, str] = field(default_factory=dict)
    exchange: subprocess.Popen[str] | None = None
    engine: subprocess.Popen[str] | None = None
    service: launcher.ServiceProcess | None = None
    exchange_port: int = 0
    service_port: int = 0
    metrics_port: int = 0
    windows: list[Window] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    swaps: int = 0
    warmed_up_at: float = 0.0

    # --- parts ---------------------------------------------------------------------------

    def start_servers(self) -> None:
        state = services.start_embedded(self.home)
        self.env = {
            **os.environ,
            "RRR_HOME": str(self.home),
            "BENTOML_HOME": str(self.home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "DATABASE_URL": str(state["postgres"]["url"]),
            "REDIS_URL": str(state["redis"]["url"]),
            "RRR_SERVING_POLL_S": "2",
            "PYTHONWARNINGS": "ignore",
        }

    def seed_models(self) -> None:
        argv = [sys.executable, "-m", "serving.sample_models", "--interval-s", "1"]
        out = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"seeding the sample models failed: {out.stderr[-2000:]}")

    def start_service(self) -> None:
        self.service_port = self.service_port or launcher.free_port()
        log = self.home / "serving.log"
        self.service = launcher.start(port=self.service_port, env=self.env, log_path=log)

    def start_exchange(self) -> None:
        self.exchange_port = self.exchange_port or launcher.free_port()
        argv = [
            sys.executable, "-m", "engine", "replay", "--symbols", str(SYMBOLS), "--trades-per-s", "4",
            "--speed", "1", "--no-books", "--port", str(self.exchange_port), "--faults", "drop=997@trade*0",
        ]  # fmt: skip
        log = (self.home / "exchange.log").open("a")
        self.exchange = subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.exchange.stdout is not None
        self.exchange.stdout.readline()  # it prints its URLs once listening

    def start_engine(self, symbols: list[str]) -> None:
        self.metrics_port = launcher.free_port()
        port = self.exchange_port
        argv = [
            sys.executable, "-m", "engine", "run", "--venue", "binance", "--binance-url", f"ws://127.0.0.1:{port}",
            "--binance-rest-url", f"http://127.0.0.1:{port}", "--symbols", ",".join(symbols), "--bar-seconds", "1",
            "--no-books", "--warmup-bars", "800", "--metrics-port", str(self.metrics_port),
            "--serving-url", self.service_url, "--account", "soak", "--quiet", "--json", "--model-timeout", "2",
        ]  # fmt: skip
        log = (self.home / "engine.log").open("a")
        self.engine = subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, stderr=log, text=True)

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.service_port}"

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            m = _METRIC.match(line)
            if m is not None:
                key = m.group(1) + (m.group(2) or "")
                out[key] = out.get(key, 0.0) + float(m.group(3))
        return out

    # --- faults --------------------------------------------------------------------------

    def inject(self, fault: str) -> None:
        window = Window(fault, time.monotonic())
        self.windows.append(window)
        print(f"{time.strftime('%H:%M:%S')} fault: {fault}", flush=True)
        if fault == "feed":
            assert self.exchange is not None
            self.exchange.send_signal(signal.SIGKILL)
            self.exchange.wait(timeout=30)
            time.sleep(3)
            self.start_exchange()
        elif fault == "valkey":
            pid = int(services.embedded_status(self.home)["redis"]["pid"])
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)
            time.sleep(3)
            services.start_embedded(self.home, services=("redis",))
        elif fault == "postgres":
            pid = int(services.embedded_status(self.home)["postgres"]["pid"])
            os.kill(pid, signal.SIGINT)  # fast shutdown: sessions are cut, as in a restart
            _wait_gone(pid)
            time.sleep(3)
            services.start_embedded(self.home, services=("postgres",))
        elif fault == "service":
            assert self.service is not None
            self.service.stop()
            self.start_service()
        elif fault == "hot_swap":
            self.swaps += 1
            code = (
                "from serving import registry, sample_models; "
                f"registry.promote(sample_models.save_price(seed={100 + self.swaps}, interval_s=1).tag)"
            )
            out = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"promoting a new price model failed: {out.stderr[-2000:]}")
        window.end = time.monotonic()

    def in_window(self, at: float) -> bool:
        return any(w.start <= at <= (w.end or at) + RECOVERY_S for w in self.windows)

    # --- run -----------------------------------------------------------------------------

    def run(self) -> dict[str, float]:
        from engine.replay.market import SyntheticFeed

        self.start_servers()
        self.seed_models()
        self.start_service()
        self.start_exchange()
        self.start_engine(list(SyntheticFeed(SYMBOLS, books=False).symbols))
        assert self.engine is not None
        process = psutil.Process(self.engine.pid)
        duration = self.minutes * 60
        warm_up = min(120.0, max(30.0, duration * 0.1))
        began = time.monotonic()
        self.warmed_up_at = began + warm_up
        next_fault = began + warm_up
        turn = 0
        rss_after_warm_up = 0
        while time.monotonic() - began < duration:
            if self.engine.poll() is not None:
                raise RuntimeError(f"the engine stopped (exit {self.engine.returncode}); see {self.home}/engine.log")
            now = time.monotonic()
            if now >= next_fault and now - began < duration - RECOVERY_S:
                self.inject(FAULTS[turn % len(FAULTS)])
                turn += 1
                next_fault = time.monotonic() + self.every_s
            try:
                m = self.metrics()
            except OSError:
                time.sleep(1)
                continue
            rss = process.memory_info().rss
            self.samples.append(Sample.read(time.monotonic(), m, rss))
            if not rss_after_warm_up and time.monotonic() - began >= warm_up:
                rss_after_warm_up = rss
            time.sleep(1)
        final = self.metrics()
        rss_end = process.memory_info().rss
        self.engine.send_signal(signal.SIGINT)
        out, _ = self.engine.communicate(timeout=120)
        summary = _last_json(out)
        stored = asyncio.run(_stored(self.env["DATABASE_URL"]))
        return self._figures(final, summary, stored, rss_after_warm_up, rss_end)

    def _figures(
        self, final: dict[str, float], summary: dict[str, object], stored: dict[str, int], rss0: int, rss1: int
    ) -> dict[str, float]:
        outside = [0.0, 0.0]
        inside = [0.0, 0.0]
        for a, b in zip(self.samples, self.samples[1:], strict=False):
            if a.at < self.warmed_up_at:  # features still filling their first windows
                continue
            bucket = inside if self.in_window(b.at) else outside
            bucket[0] += b.attempted - a.attempted
            bucket[1] += b.failed - a.failed
        accepted = {k: v for k, v in final.items() if k.startswith("rrr_engine_accepted_rows_total")}
        lost = 0.0
        for key, value in accepted.items():
            table = key.split('table="')[1].rstrip('"}')
            lost += max(0.0, value - stored.get(table, 0))
        return {
            "minutes": self.minutes,
            "faults": len(self.windows),
            "decisions_outside": outside[0],
            "failed_outside": outside[1],
            "decisions_inside": inside[0],
            "failed_inside": inside[1],
            "failed_share": outside[1] / outside[0] if outside[0] else 1.0,
            "rows_accepted": sum(accepted.values()),
            "rows_lost": lost,
            "duplicate_orders": final.get("rrr_engine_duplicate_sends_total", 0) + stored["orders_sent_twice"],
            "orders": float(stored["orders"]),
            "fills": float(stored["fills"]),
            "rss_growth": rss1 / rss0 - 1 if rss0 else 0.0,
            "rss_after_warm_up_mb": rss0 / 2**20,
            "rss_end_mb": rss1 / 2**20,
            "summary_decisions": float(summary.get("decisions", 0)),  # type: ignore[arg-type]
        }

    def stop(self) -> None:
        for proc in (self.engine, self.exchange):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        if self.service is not None:
            self.service.stop()
        services.stop_embedded(self.home)


def _wait_gone(pid: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)


def _last_json(text: str) -> dict[str, object]:
    """The engine's ``--json`` summary (the JSON object its output ends with), or {}."""
    start = text.find("{")
    try:
        value = json.loads(text[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


_COUNTS = {
    "trades": "SELECT count(*) FROM trades",
    "bars": "SELECT count(*) FROM bars",
    "book_snapshots": "SELECT count(*) FROM book_snapshots",
    "features": "SELECT count(*) FROM features",
}


async def _stored(database_url: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        out = {table: int(await conn.fetchval(query)) for table, query in _COUNTS.items()}
        out["orders"] = int(await conn.fetchval("SELECT count(*) FROM orders WHERE account = 'soak'"))
        out["orders_sent_twice"] = int(
            await conn.fetchval("SELECT count(*) FROM orders WHERE account = 'soak' AND sends > 1")
        )
        out["fills"] = int(
            await conn.fetchval(
                "SELECT count(*) FROM fills f JOIN orders o USING (client_order_id) WHERE o.account = 'soak'"
            )
        )
        return out
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between faults (default 60)")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="rrr-soak-"))
    soak = Soak(home, args.minutes, args.every)
    print(f"soak: {args.minutes:g} minutes, a fault every {args.every:g} s; logs in {home}", flush=True)
    try:
        r = soak.run()
    finally:
        soak.stop()
    print(json.dumps(r, indent=1))
    figures = [
        Figure("soak_minutes", r["minutes"], "min", "none", None),
        Figure("soak_faults", r["faults"], "faults", "none", None),
        Figure("soak_failed_decision_share", r["failed_share"], "", "target, outside the fault windows", 0.001),
        Figure(
            "soak_failed_decision_share_in_faults", r["failed_inside"] / max(r["decisions_inside"], 1), "", "none", None
        ),
        Figure("soak_rows_lost", r["rows_lost"], "rows", "target", 0),
        Figure("soak_rows_accepted", r["rows_accepted"], "rows", "none", None),
        Figure("soak_duplicate_orders", r["duplicate_orders"], "orders", "target", 0),
        Figure("soak_orders", r["orders"], "orders", "none", None),
        Figure("soak_rss_growth", r["rss_growth"], "", "target", 0.10),
    ]
    write_results("soak", figures)
    ok = r["failed_share"] < 0.001 and r["rows_lost"] == 0 and r["duplicate_orders"] == 0 and r["rss_growth"] < 0.10
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
