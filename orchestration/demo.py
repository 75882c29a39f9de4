"""``make demo``: run the platform's loop end to end on embedded defaults and say what it did.

The loop: start (or reuse) the embedded PostgreSQL and Redis servers, bring the schema up to
date, import the real exchange recordings when they are present, then run the Dagster
``whole_loop`` job over every day of the synthetic market on the Dagster instance under
``$DAGSTER_HOME`` (default ``$RRR_HOME/dagster``), which is what ``dagster dev`` then shows:
raw partitions landed and checked by Great Expectations, stored in PostgreSQL, features
offline and online, training sets, the three candidates trained and gated, validation
reports, and promotion. Then it starts the model service (``bentoml serve``) on the promoted
models, calls it once per API through the client, and leaves it running for the engine. It
ends with a summary and where the Data Docs and reports are.

Environment: ``RRR_SYNTHETIC_SYMBOLS``, ``RRR_SYNTHETIC_DAYS``, ``RRR_SYNTHETIC_SEED`` size
the market; ``RRR_TRAIN=small`` trains with the small settings; ``RRR_RECORDINGS_DIR``
points at exchange recordings (default ``../shared/data/exchange_recordings`` next to the
project).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from feature_store.config import FeatureStoreSettings
from feature_store.database import open_pool
from feature_store.ingest import import_recording
from feature_store.market_data import MarketDataStore
from feature_store.services import ServiceUrls, resolve_service_urls
from orchestration.config import OrchestrationSettings

_RECORDINGS = ("coinbase_exchange_ws_2021-04-17.cryptofeed.txt", "binance_spot_ws_2021-10-12.cryptofeed.txt")


def _recordings_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "exchange_recordings"
    return Path(os.environ.get("RRR_RECORDINGS_DIR", str(default)))


def run_demo() -> int:
    """Run the demo; return the process exit code.

    The Dagster job runs outside any event loop: its assets run their own (``asyncio.run``).
    """
    wall = time.perf_counter()
    pipeline = OrchestrationSettings.from_env()
    urls = asyncio.run(_prepare())
    ok = _pipeline(pipeline)
    url = asyncio.run(_serve(urls.database_url)) if ok else None
    ok = _trade_session(url) if url is not None else False
    print(f"data docs: file://{pipeline.gx_root / 'gx' / 'uncommitted' / 'data_docs' / 'local_site' / 'index.html'}")
    print(f"validation reports: {pipeline.reports}/<model>/<version>.md (charts beside them)")
    print(f"demo finished in {time.perf_counter() - wall:.1f} s; `make stop` stops the servers and the service")
    return 0 if ok else 1


async def _prepare() -> ServiceUrls:
    """Start (or reuse) the embedded servers, migrate, and import the recordings that are there."""
    settings = FeatureStoreSettings.from_env()
    started = time.perf_counter()
    urls = resolve_service_urls(settings)
    where = f"embedded under {settings.home}" if urls.embedded else "from DATABASE_URL/REDIS_URL"
    print(f"services: PostgreSQL and Redis {where} ({time.perf_counter() - started:.2f} s)")

    import redis.asyncio as aioredis

    client = aioredis.from_url(urls.redis_url)
    try:
        print(f"redis: PING -> {await client.ping()}")
    finally:
        await client.aclose()

    started = time.perf_counter()
    pool = await open_pool(urls.database_url)
    print(f"schema: migrations up to date ({time.perf_counter() - started:.2f} s)")
    try:
        store = MarketDataStore(pool)
        recordings = _recordings_dir()
        if recordings.is_dir():
            for name in _RECORDINGS:
                path = recordings / name
                if path.exists():
                    rec = await import_recording(store, path)
                    print(
                        f"recording {name}: {rec.rows['trades']} trades -> {rec.rows['bars']} bars stored "
                        f"({rec.rows['malformed_messages']} malformed messages dropped)"
                    )
        else:
            print(f"recordings: skipped, {recordings} not found (set RRR_RECORDINGS_DIR)")
    finally:
        await pool.close()
    return urls


def _pipeline(settings: OrchestrationSettings) -> bool:
    """Run the ``whole_loop`` job over every partition on the persistent Dagster instance."""
    os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    instance_yaml = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    if not instance_yaml.exists():  # SQLite storage under DAGSTER_HOME, said explicitly
        instance_yaml.write_text("telemetry:\n  enabled: false\n")
    import dagster as dg

    from orchestration.definitions import defs

    days = settings.partition_days()
    print(
        f"dagster: whole_loop over {len(days)} daily partitions ({days[0]}..{days[-1]}), "
        f"{settings.synthetic_symbols} symbols, {settings.train} training; instance {os.environ['DAGSTER_HOME']}"
    )
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("whole_loop").execute_in_process(
            instance=instance,
            # The steps' own INFO lines (what each asset did); Dagster's per-event DEBUG lines
            # (hundreds per run) stay in the run's event log, which the UI shows.
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
            raise_on_error=False,
        )
    outcome = "succeeded" if result.success else "FAILED"
    print(f"  run {result.run_id} {outcome} in {time.perf_counter() - started:.1f} s")
    shown_keys: set[str] = set()
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() in shown_keys:  # one line per asset, not one per daily partition
            continue
        shown_keys.add(event.asset_key.to_user_string())
        meta = event.materialization.metadata
        shown = {k: v.value for k, v in meta.items() if isinstance(v.value, int | float | str)}
        shown = {k: v for k, v in shown.items() if len(str(v)) < 48}
        print(f"  {event.asset_key.to_user_string():28} " + ", ".join(f"{k}={v}" for k, v in list(shown.items())[:5]))
    for check in result.get_asset_check_evaluations():
        print(f"  check {check.check_name:26} {'passed' if check.passed else 'FAILED'}")
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            print(f"  step {event.step_key} failed: {event.message}")
    print(
        "the UI: `DAGSTER_HOME=" + os.environ["DAGSTER_HOME"] + " .venv/bin/dagster dev -p 3001`, then "
        "http://127.0.0.1:3001 (the model service holds 3000)"
    )
    print("models: `.venv/bin/python -m serving.registry list`")
    return bool(result.success)


async def _serve(database_url: str) -> str | None:
    """Start the model service (or reuse the running one) and call each API once."""
    from serving import launcher
    from serving.client import ModelClient
    from serving.errors import ServingError

    started = time.perf_counter()
    try:
        url, fresh = await asyncio.to_thread(launcher.ensure_running)
    except ServingError as exc:
        print(f"model service: FAILED to start: {exc}")
        return None
    print(
        f"model service: {'started' if fresh else 'already running'} at {url} ({time.perf_counter() - started:.1f} s)"
    )
    pool = await open_pool(database_url)
    try:
        rows = await pool.fetch("SELECT DISTINCT symbol FROM bars WHERE interval_s = $1 ORDER BY symbol", 60)
    finally:
        await pool.close()
    symbols = [r["symbol"] for r in rows]
    async with ModelClient(url) as client:
        versions = await client.versions()
        for model in versions["models"].values():
            print(f"  serving {model['tag']} {model['feature_sets'] or ''}")
        started = time.perf_counter()
        out = await client.forecast(symbols, partial=True)
        took = (time.perf_counter() - started) * 1e3
        print(f"  /forecast: {len(out['symbols'])} symbols in {took:.1f} ms")
        reasons: dict[str, int] = {}
        for reason in out["rejected"].values():
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, count in reasons.items():  # e.g. the recordings' symbols: bars stored, no online features
            print(f"    left out {count}: {reason}")
        if out["symbols"]:
            best = max(range(len(out["symbols"])), key=lambda i: out["mean"][i])
            print(f"    strongest: {out['symbols'][best]} mean {out['mean'][best]:+.5f} sd {out['sd'][best]:.5f}")
        scored = await client.sentiment(["Acme beats estimates and raises guidance", "Regulator sues Acme"])
        print("  /sentiment: " + ", ".join(f"{s['score']:+.2f}" for s in scored))
        if out["symbols"]:
            book = await client.portfolio_risk({s: 10_000.0 for s in out["symbols"][:5]})
            print(f"  /portfolio_risk of 5 x 10,000: VaR99 {book['var99']:.2f}, ES97.5 {book['es975']:.2f}")
    print(f"the service keeps running for the engine: {url} (log in $RRR_HOME/logs/serving.log)")
    return url


def _trade_session(url: str, seconds: int = 60) -> bool:
    """About a minute of paper trading on a synthetic market through the local replay exchange.

    The market runs 60 times faster than the wall clock (``--speed 60 --market-clock``), so the
    engine decides one-minute bars (what the pipeline's models were trained on) every second.
    """
    import json
    import subprocess
    import sys

    print(f"engine: paper trading {seconds} s of a 20-symbol synthetic market (one-minute bars every second)")
    argv = [
        sys.executable, "-m", "engine", "run", "--replay", "20", "--trades-per-s", "2", "--speed", "60",
        "--market-clock", "--bar-seconds", "60", "--duration", str(seconds), "--venue", "coinbase", "--no-books",
        "--account", "demo", "--online-namespace", "demo", "--serving-url", url, "--quiet",
        "--metrics-port", "-1", "--json",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"  engine run FAILED (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        return False
    s = json.loads(done.stdout)
    p50, p99 = s["tick_to_decision_ms"]
    print(
        f"  {s['trades']} trades, {s['bars']} bars decided, {s['decisions']} decisions, {s['orders']} orders, "
        f"{s['fills']} fills, denials {s['denials'] or 'none'}"
    )
    print(
        f"  PnL {float(s['pnl']):.2f} (realized {float(s['realized_pnl']):.2f}, fees {float(s['fees']):.2f}), "
        f"max drawdown {s['max_drawdown']:.2%}, {s['positions']} positions open"
    )
    if p50 is not None:
        print(f"  tick to decision p50 {p50:.1f} ms, p99 {p99:.1f} ms; model call p50 {s['model_call_ms'][0]:.1f} ms")
    print(f"  decided by {', '.join(f'{k}={v}' for k, v in sorted(s['model_versions'].items()))}")
    print(f"  strategy: {s['strategy']}")
    if not s["orders"]:
        print(f"  NO ORDERS: {s['why_no_orders']}")
    _compare_with_validation(s)
    print("  the account as stored: `.venv/bin/python -m engine status --account demo`")
    return True


def _compare_with_validation(summary: dict[str, object]) -> None:
    """The engine's PnL per bar beside what the promoted model's strategy made per bar on its holdout."""
    from serving import registry
    from serving.errors import ServingError

    try:
        record = registry.production("price")
    except ServingError as exc:
        print(f"  no production price model to compare with: {exc}")
        return
    validation = record.metadata.get("strategy_backtest") or {}
    bars = int(summary["bars"]) or 1  # type: ignore[call-overload]
    per_bar = float(summary["pnl"]) / bars  # type: ignore[arg-type]
    expected = validation.get("pnl_per_bar")
    if isinstance(expected, int | float):
        print(
            f"  PnL per bar {per_bar:+.2f} here vs {expected:+.2f} in {record.tag}'s holdout strategy backtest "
            f"(a minute of another synthetic market is noise next to {int(validation.get('bars', 0)):,} bars)"
        )


def main() -> int:
    """Entry point of ``python -m orchestration.demo``."""
    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
