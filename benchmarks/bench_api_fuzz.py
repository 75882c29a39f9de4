"""Schemathesis against the model service's own OpenAPI: no request may get a 5xx.

A real ``bentoml serve`` of sample models (one-minute features written for a few symbols, so
that valid requests reach the models) is fuzzed over every operation of its ``/docs.json``:
seeded runs with positive, then negative inputs, ``RRR_API_FUZZ_EXAMPLES`` examples per
operation (default 300), with the examples, coverage and fuzzing phases; an operation the
service saw fewer requests of is run again alone with the next seed (up to 8 rounds). What was asked
and answered is counted from the service's own access log (Schemathesis' HAR report gives the
bodies of any 5xx).

Figures: ``api_fuzz_requests`` (requests the service answered),
``api_fuzz_min_requests_per_operation`` (the fewest of any operation in either mode), ``api_fuzz_5xx`` (answers
500-599, target 0), ``api_fuzz_4xx`` (rejections), ``api_fuzz_tracebacks`` (tracebacks in the
service's log, target 0) and ``api_fuzz_log_lines_per_rejection`` (the log's lines other than
access lines, per rejected request; target at most 1).

Run alone: ``.venv/bin/python -m benchmarks bench_api_fuzz`` (or ``make api-fuzz``).
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.results_file import Figure, write_results
from benchmarks.sample_service import sample_model_service

EXAMPLES = int(os.environ.get("RRR_API_FUZZ_EXAMPLES", 300))
SEED = int(os.environ.get("RRR_API_FUZZ_SEED", 2026))
NS_MIN = 60 * 10**9
T0 = 1_767_225_600 * 10**9  # 2026-01-01


def _write_features(redis_url: str, bars: int = 64) -> list[str]:
    from feature_store.features.catalog import PRICE, SENTIMENT
    from feature_store.online_layout import OnlineLayout
    from feature_store.redis_store import RedisOnlineStore

    symbols = ["BTC-USD", "ETH-USD", "SOL-USD"]
    online = RedisOnlineStore.from_url(redis_url, OnlineLayout())
    rng = np.random.default_rng(SEED)
    try:
        for bar in range(bars):
            for fs in (PRICE, SENTIMENT):
                values = rng.normal(0.0, 0.01, (len(symbols), len(fs))).astype(np.float32)
                online.write_latest(fs, T0 + bar * NS_MIN, symbols, values)
    finally:
        online.close()
    return symbols


def fuzz(url: str, report_dir: Path, examples: int, seed: int, mode: str, path: str | None = None) -> dict[str, object]:
    """Run Schemathesis against ``url`` (only operation ``path`` if given) in ``mode`` (positive or
    negative inputs); return the answers' status counts in its report and the 5xx seen."""
    har = report_dir / f"api_fuzz_{mode}_{seed}.har"
    argv = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{url}/docs.json",
        "--url",
        url,
        "--checks",
        "not_a_server_error",
        "--mode",
        mode,
        "--max-examples",
        str(examples),
        "--seed",
        str(seed),
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "30",
        "--workers",
        "2",
        "--no-color",
        "--report",
        "har",
        "--report-har-path",
        str(har),
        *(["--include-path", path] if path else []),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    started = time.perf_counter()
    run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)
    seconds = time.perf_counter() - started
    if not har.exists():
        raise RuntimeError(f"schemathesis wrote no report (exit {run.returncode}):\n{run.stdout[-3000:]}{run.stderr}")
    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = collections.Counter(int(e["response"]["status"]) for e in entries)
    server_errors = [
        f"{e['request']['method']} {e['request']['url']} -> {e['response']['status']}: "
        f"{(e['request'].get('postData') or {}).get('text', '')[:200]!r}"
        for e in entries
        if int(e["response"]["status"]) >= 500
    ]
    return {
        "statuses": statuses,
        "server_errors": server_errors,
        "seconds": seconds,
        "exit": run.returncode,
        "summary": run.stdout[-2500:],
    }


_ACCESS = re.compile(r"\(scheme=[^,]*,method=(\w+),path=([^,]*),.*\(status=(\d+),")
_INVALID_HTTP = "Invalid HTTP request received"


def read_log(log_path: Path, start: int) -> tuple[collections.Counter[int], collections.Counter[str], list[str]]:
    """From line ``start`` of the service's log (its access log on): the answers by status and
    the requests by path, as the service saw them, and every other line but the health probes'.
    A request the HTTP server refused before it reached the service counts as a 400."""
    statuses: collections.Counter[int] = collections.Counter()
    paths: collections.Counter[str] = collections.Counter()
    others = []
    for line in log_path.read_text(errors="replace").splitlines()[start:]:
        access = _ACCESS.search(line)
        if access is not None:
            statuses[int(access.group(3))] += 1
            paths[access.group(2)] += 1
            continue
        if _INVALID_HTTP in line:
            statuses[400] += 1
            paths["(invalid HTTP)"] += 1
        others.append(line)
    return statuses, paths, others


def _operations(url: str) -> list[str]:
    """The POST operations of the service's OpenAPI (the health probes take no input)."""
    with urllib.request.urlopen(f"{url}/docs.json") as resp:  # noqa: S310 (the http URL of the service started here)
        paths = json.loads(resp.read())["paths"]
    return sorted(path for path, methods in paths.items() if "post" in methods)


def main() -> int:
    server_errors: list[str] = []
    per_mode: dict[str, collections.Counter[str]] = {}
    os.environ["RRR_SERVING_ACCESS_LOG"] = "1"  # the service's own count of what it answered
    with sample_model_service(interval_s=60, redis_db=13, prefix="rrr-api-fuzz-") as (url, redis_url, home):
        _write_features(redis_url)
        operations = _operations(url)
        log_path = home / "serving.log"
        start = len(log_path.read_text(errors="replace").splitlines())
        for mode in ("positive", "negative"):
            mark = len(log_path.read_text(errors="replace").splitlines())
            runs = [None]  # every operation, then again for those with fewer requests than asked
            for attempt in range(8):
                for path in runs:
                    result = fuzz(url, home, EXAMPLES, SEED + attempt, mode, path)
                    server_errors += result["server_errors"]  # type: ignore[arg-type]
                    if result["server_errors"]:
                        print(result["summary"])
                time.sleep(0.5)
                counts = read_log(log_path, mark)[1]
                runs = [path for path in operations if counts[path] < EXAMPLES]
                if not runs:
                    break
            per_mode[mode] = counts
            print(f"{mode} inputs, requests per operation: " + ", ".join(f"{p} {counts[p]}" for p in operations))
        time.sleep(1.0)  # the last lines reach the log
        statuses, _, others = read_log(log_path, start)
    requests = sum(statuses.values())
    rejected = sum(n for s, n in statuses.items() if 400 <= s < 500)
    errors = sum(n for s, n in statuses.items() if s >= 500)
    tracebacks = sum(1 for line in others if line.startswith("Traceback (most recent call last)"))
    fewest = min(counts[path] for counts in per_mode.values() for path in operations)
    print(f"the service answered {requests} requests, by status {dict(sorted(statuses.items()))}")
    unexplained = [line for line in others if " rejected " not in line and _INVALID_HTTP not in line]
    if unexplained:
        print(f"{len(unexplained)} log lines that are not one-line rejections, e.g.:\n" + "\n".join(unexplained[:10]))
    for line in server_errors[:20]:
        print(f"  5xx: {line}")
    figures = [
        Figure("api_fuzz_requests", requests, "requests", "none", None),
        Figure("api_fuzz_min_requests_per_operation", fewest, "requests", "asked per operation and mode", EXAMPLES),
        Figure("api_fuzz_5xx", errors, "answers", "target", 0),
        Figure("api_fuzz_4xx", rejected, "answers", "none", None),
        Figure("api_fuzz_tracebacks", tracebacks, "tracebacks", "target", 0),
        Figure("api_fuzz_log_lines_per_rejection", len(others) / max(rejected, 1), "lines", "target", 1),
    ]
    write_results("bench_api_fuzz", figures)
    return 1 if errors or tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
