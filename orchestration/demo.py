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
from typing import Any

from feature_store.config import FeatureStoreSettings
from feature_store.database import open_pool
from feature_store.ingest import import_recording
from feature_store.market_data import MarketDataStore
from feature_store.services import ServiceUrls, resolve_service_urls
from orchestration.config import OrchestrationSettings

# What each part of the loop did, for the summary at the end.
_LOOP: dict[str, list[str]] = {}

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
    _summary(pipeline, url, ok, time.perf_counter() - wall)
    return 0 if ok else 1


def _summary(pipeline: OrchestrationSettings, url: str | None, ok: bool, seconds: float) -> None:
    """What the loop did, and where to look at each part of it."""
    docs = pipeline.gx_root / "gx" / "uncommitted" / "data_docs" / "local_site"
    print(f"summary: the loop {'closed' if ok else 'did NOT close'} in {seconds:.0f} s")
    for line in _LOOP.get("models", ["models: the pipeline did not run to the promotions"]):
        print(f"  {line}")
    for line in _LOOP.get("engine", ["engine: did not trade (see above)"]):
        print(f"  engine: {line}")
    print("open next:")
    print(
        f"  the pipeline in Dagster's UI: DAGSTER_HOME={os.environ.get('DAGSTER_HOME', pipeline.dagster_home)} "
        ".venv/bin/dagster dev -p 3001, then http://127.0.0.1:3001"
    )
    print(f"  data quality (works offline): file://{docs / 'index.html'}")
    print(f"  validation reports: {pipeline.reports}/<model>/<version>.md, charts beside them")
    print("  models: .venv/bin/python -m serving.registry list")
    if url:
        print(f"  the model service: {url}/docs (still running)")
    print("  the engine's account: .venv/bin/python -m engine status --account demo")
    print("  stop the servers and the service: make stop")


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
    from orchestration.demo_log import step_lines

    days = settings.partition_days()
    print(
        f"dagster: whole_loop over {len(days)} daily partitions ({days[0]}..{days[-1]}), "
        f"{settings.synthetic_symbols} symbols, {settings.train} training; instance {os.environ['DAGSTER_HOME']}"
    )
    started = time.perf_counter()
    job = defs.resolve_job_def("whole_loop").with_logger_defs({"steps": step_lines})
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            # One line per step with its time and what it said; Dagster's per-event lines (hundreds
            # per run) stay in the run's event log, which the UI shows.
            run_config={"loggers": {"steps": {}}},
            tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
            raise_on_error=False,
        )
    checks = list(result.get_asset_check_evaluations())
    failed = [c for c in checks if not c.passed]
    outcome = "succeeded" if result.success else "FAILED"
    print(
        f"  run {result.run_id} {outcome} in {time.perf_counter() - started:.1f} s; "
        f"{len(checks) - len(failed)} of {len(checks)} checks passed"
    )
    for check in failed:
        print(f"  check {check.check_name} on {check.asset_key.to_user_string()} FAILED: {_check_reason(check)}")
    _LOOP["models"] = _promotions(result, failed)
    return bool(result.success)


def _check_reason(check: Any) -> str:
    """Why an asset check failed: its description or the metadata that names the figure."""
    meta = {k: getattr(v, "value", v) for k, v in (getattr(check, "metadata", None) or {}).items()}
    gates = meta.get("failed_gates")
    if isinstance(gates, list) and gates:  # a model gate: each failed gate with its figure and threshold
        return "; ".join(f"{g} ({meta[g]})" if g in meta else str(g) for g in gates)
    if getattr(check, "description", None):
        return str(check.description)
    shown = [f"{k}={v}" for k, v in meta.items() if len(str(v)) < 80][:4]
    return ", ".join(shown) or "see the run in the UI"


def _promotions(result: Any, failed: list[Any]) -> list[str]:
    """One line per model kind: what is in production now and whether this run promoted it."""
    produced: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        key = event.asset_key.to_user_string()
        if key.endswith("_model_production"):
            meta = {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
            produced[key.removesuffix("_model_production")] = meta
    lines = []
    for kind in ("price", "sentiment", "risk"):
        meta = produced.get(kind) or {}
        gates = [c for c in failed if str(c.check_name).startswith(kind)]
        now, before = meta.get("production"), meta.get("previous")
        if now and now != "none" and now != before:
            lines.append(f"{kind}: {now} promoted (was {before or 'none'})")
        elif gates:
            lines.append(f"{kind}: not promoted, {gates[0].check_name} failed: {_check_reason(gates[0])}")
        elif now:
            lines.append(f"{kind}: {now} stays in production ({meta.get('reason') or 'this run promoted nothing'})")
        else:
            lines.append(f"{kind}: no promotion step ran (see the run in the UI)")
    return lines


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
        if not fresh:  # a service left running by an earlier demo: the promotions of this run first
            await client.reload()
        versions = await client.versions()
        print("  serving " + ", ".join(model["tag"] for model in versions["models"].values()))
        started = time.perf_counter()
        out = await client.forecast(symbols, partial=True)
        took = (time.perf_counter() - started) * 1e3
        print(
            f"  /forecast of the {len(symbols)} symbols with one-minute bars: {len(out['symbols'])} forecast "
            f"in {took:.1f} ms"
        )
        reasons: dict[str, int] = {}
        for reason in out["rejected"].values():
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, count in reasons.items():  # e.g. the recordings' symbols: bars stored, no online features
            print(f"    {count} left out: {reason}")
        if out["symbols"]:
            best = max(range(len(out["symbols"])), key=lambda i: out["mean"][i])
            print(f"    strongest: {out['symbols'][best]} mean {out['mean'][best]:+.5f} sd {out['sd'][best]:.5f}")
        scored = await client.sentiment(["Acme beats estimates and raises guidance", "Regulator sues Acme"])
        print("  /sentiment: " + ", ".join(f"{s['score']:+.2f}" for s in scored))
        if out["symbols"]:
            book = await client.portfolio_risk({s: 10_000.0 for s in out["symbols"][:5]})
            print(f"  /portfolio_risk of 5 x 10,000: VaR99 {book['var99']:.2f}, ES97.5 {book['es975']:.2f}")
    print(f"  it keeps running for the engine: {url} (log in $RRR_HOME/logs/serving.log)")
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
        _LOOP["engine"] = [f"decided {s['bars']} bars and sent no order: {s['why_no_orders']}"]
    else:
        _LOOP["engine"] = [
            f"traded {s['bars']} bars on {s['model_versions'].get('price', 'no price model')}: {s['orders']} orders, "
            f"{s['fills']} fills, PnL {float(s['pnl']):+.2f} with the strategy the model was validated with"
        ]
    _compare_with_validation(s)
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
