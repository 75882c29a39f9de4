"""The model service as users run it: a real ``bentoml serve`` on a free port, called through
the project's client, with features in a real Redis.

The service runs with a model store of its own (sample models with random weights: the tests
are about serving, not forecasting skill) and a Redis database of its own on the session's
server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from feature_store.features.catalog import PRICE, RISK, SENTIMENT
from feature_store.online_layout import OnlineLayout
from feature_store.redis_store import RedisOnlineStore
from serving import launcher
from serving.client import ModelClient, RequestRejected

pytestmark = pytest.mark.slow

NS_MIN = 60 * 10**9
T0 = 1_700_000_000 * 10**9 // NS_MIN * NS_MIN
BARS = 20
LAST = T0 + (BARS - 1) * NS_MIN
NEXT_STRATEGY = {"family": "per_symbol", "entry_z": 0.5, "exit_z": 0.2, "holding": 3}  # price_next's
SYMBOLS = [f"T{i:03d}" for i in range(50)]


def _python(env: dict[str, str], code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, scratch_redis):
    home = tmp_path_factory.mktemp("serving")
    redis_url = scratch_redis(11)
    env = {
        **os.environ,
        "RRR_HOME": str(home),
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "REDIS_URL": redis_url,
        "RRR_SERVING_POLL_S": "0.5",
    }
    tags = json.loads(
        _python(env, "from serving import sample_models; import json; print(json.dumps(sample_models.seed()))")
    )
    tags["price_next"] = _python(
        env,
        f"from serving import sample_models; print(sample_models.save_price(seed=1, strategy={NEXT_STRATEGY!r}).tag)",
    )
    online = RedisOnlineStore.from_url(redis_url, OnlineLayout())
    rng = np.random.default_rng(3)
    for bar in range(BARS):
        for fs in (PRICE, SENTIMENT, RISK):
            values = rng.normal(0.0, 0.01, (len(SYMBOLS), len(fs))).astype(np.float32)
            if fs is PRICE:
                values[:, fs.index(["rvol_60"])[0]] = 0.002
                if bar == BARS - 1:
                    values[-1, fs.index(["resid_z_ewm_10"])[0]] = np.nan  # T049 is warming up
            online.write_latest(fs, T0 + bar * NS_MIN, SYMBOLS, values)
            if bar < BARS - 1 and fs is not RISK:  # OLD stopped updating one bar ago
                online.write_latest(fs, T0 + bar * NS_MIN, ["OLD"], values[:1])
    service = launcher.start(port=launcher.free_port(), env=env, log_path=home / "serving.log")
    yield {"env": env, "tags": tags, "online": online, "url": service.url, "service": service}
    service.stop()
    online.close()


def run(coro):
    return asyncio.run(coro)


async def _client_call(url: str, method: str, *args, **kwargs):
    async with ModelClient(url, retries=0) as client:
        return await getattr(client, method)(*args, **kwargs)


def call(stack, method: str, *args, **kwargs):
    return run(_client_call(stack["url"], method, *args, **kwargs))


def rejected(stack, method: str, *args, **kwargs) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        call(stack, method, *args, **kwargs)
    return info.value


def test_versions_health_and_loopback(stack) -> None:
    out = call(stack, "versions")
    tags = stack["tags"]
    assert {n: m["tag"] for n, m in out["models"].items()} == {n: tags[n] for n in ("price", "sentiment", "risk")}
    assert out["models"]["price"]["feature_sets"] == {"price": PRICE.version, "sentiment": SENTIMENT.version}
    assert out["ready"] is True and out["device"] == "cpu" and out["torch_threads"] == 1
    assert stack["url"].startswith("http://127.0.0.1:")
    import urllib.request

    for probe in ("livez", "readyz"):
        with urllib.request.urlopen(f"{stack['url']}/{probe}") as resp:
            assert resp.status == 200
    with urllib.request.urlopen(f"{stack['url']}/metrics") as resp:
        metrics = resp.read().decode()
    assert "rrr_request_duration_seconds_bucket" in metrics and "rrr_serving_model_swaps_total" in metrics
    # Every API answers JSON with its media type declared.
    for path, body in (("versions", b"{}"), ("sentiment", b'{"texts": ["Acme beats estimates"]}')):
        request = urllib.request.Request(
            f"{stack['url']}/{path}", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request) as resp:
            assert resp.headers["content-type"].startswith("application/json"), (path, resp.headers)
            json.loads(resp.read())


def test_forecast_from_the_online_store_matches_the_windows_path(stack) -> None:
    symbols = SYMBOLS[:10]
    out = call(stack, "forecast", symbols, LAST)
    assert out["symbols"] == symbols and out["ts_ns"] == [LAST] * 10
    assert out["models"] == {"price": stack["tags"]["price"]}
    assert out["feature_sets"] == {"price": PRICE.version, "sentiment": SENTIMENT.version}
    assert np.isfinite(out["mean"]).all() and (np.array(out["sd"]) > 0).all()
    assert len(set(out["mean"])) == 10  # computed per symbol, not a constant

    versions = call(stack, "versions")["models"]["price"]
    columns, window = versions["features"], versions["window"]
    online = stack["online"]
    reads = online.read_windows_many([PRICE, SENTIMENT], symbols, window, as_of_ns=LAST)
    by_name = {}
    for fs, read in zip((PRICE, SENTIMENT), reads, strict=True):
        for name in fs.names:
            by_name[name] = read.values[:, :, fs.index([name])[0]]
    windows = np.stack([by_name[c] for c in columns], axis=2)
    carried = call(stack, "forecast_windows", windows.tolist(), out["feature_sets"], columns)
    np.testing.assert_allclose(carried["mean"], out["mean"], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(carried["sd"], out["sd"], rtol=1e-5)


def test_bad_inputs_get_4xx_naming_the_problem_and_the_service_keeps_serving(stack) -> None:
    err = rejected(stack, "forecast", ["T000", "NOPE"], LAST)
    assert err.status == 404 and "NOPE" in err.message
    err = rejected(stack, "forecast", ["T000"], LAST + NS_MIN)
    assert err.status == 422 and "not the requested bar" in err.message
    err = rejected(stack, "forecast", ["T000"], LAST, feature_sets={"price": "0000000000000000"})
    assert err.status == 409 and "0000000000000000" in err.message
    err = rejected(stack, "forecast", ["T049"], LAST)
    assert err.status == 422 and "warming up" in err.message and "T049" in err.message
    err = rejected(stack, "forecast", [], LAST)
    assert err.status == 400 and "symbols" in err.message
    err = rejected(stack, "forecast", ["bad symbol!"], LAST)
    assert err.status == 400

    partial = call(stack, "forecast", ["T000", "NOPE", "T049", "OLD"], LAST, partial=True)
    assert partial["symbols"] == ["T000"]
    assert set(partial["rejected"]) == {"NOPE", "T049", "OLD"}
    assert "not the requested bar" in partial["rejected"]["OLD"]

    fs = {"price": PRICE.version, "sentiment": SENTIMENT.version}
    err = rejected(stack, "forecast_windows", np.zeros((2, 3, 4)).tolist(), fs)
    assert err.status == 400 and "shape (N, 16, 12)" in err.message
    nan_window = np.full((1, 16, 12), 0.1)
    nan_window[0, 3, 2] = np.nan  # JSON has no NaN: it travels as null
    err = rejected(stack, "forecast_windows", nan_window, fs)
    assert err.status == 400
    # On the batched path every check runs before batching, as request validation (400).
    err = rejected(stack, "forecast_windows", np.full((1, 16, 12), 0.1), {"price": "other"})
    assert err.status == 400 and "'price': 'other'" in err.message
    err = rejected(stack, "forecast_windows", np.full((1, 16, 12), 0.1), fs, ["wrong"] * 12)
    assert err.status == 400 and "columns" in err.message

    assert rejected(stack, "sentiment", [""]).status == 400
    err = rejected(stack, "sentiment", ["x" * 1001])
    assert err.status == 400 and "1000" in err.message
    assert rejected(stack, "sentiment", ["a headline"] * 513).status == 400
    err = rejected(stack, "risk", returns={"T000": [0.01] * 3})
    assert err.status == 422 and "at least" in err.message
    err = rejected(stack, "risk", returns={"T000": [100.0] * 30})
    assert err.status == 400 and "log returns" in err.message
    err = rejected(stack, "portfolio_risk", {"T000": 1.0, "NOPE": 2.0}, LAST)
    assert err.status == 404 and "NOPE" in err.message

    assert call(stack, "forecast", ["T000"], LAST)["symbols"] == ["T000"]  # still serving


def _post(url: str, path: str, body: bytes, content_type: str | None = "application/json") -> tuple[int, object]:
    import urllib.error
    import urllib.request

    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(f"{url}/{path}", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"null")


def _log_lines(stack) -> list[str]:
    path = Path(stack["env"]["RRR_HOME"]) / "serving.log"
    return path.read_text(errors="replace").splitlines()


def test_malformed_requests_get_a_4xx_and_one_log_line_each(stack) -> None:
    url = stack["url"]
    before = len(_log_lines(stack))
    malformed = [
        ("versions", b"{}", "multipart/form-data", 415),  # a form without its boundary
        ("sentiment", b'--x\r\n\r\n{"texts": ["a"]}', "multipart/form-data; boundary=x", 415),
        ("forecast", b"symbols=T000", "application/x-www-form-urlencoded", 415),
        ("forecast", b'{"symbols": ["T000"], "max_age_s": NaN}', "application/json", 400),  # NaN would turn it off
        ("forecast", b'{"symbols": ["T000"], "max_age_s": -1}', "application/json", 400),
        ("forecast", b'{"symbols": ["T000"], "max_age_s": Infinity}', "application/json", 400),
        ("portfolio_risk", b'{"positions": {"T000": NaN}}', "application/json", 400),
        ("risk", b'{"returns": {"T000": [NaN, 0.01, 0.02]}}', "application/json", 400),
        ("forecast", b"not json", "application/json", 400),
        ("forecast_windows", b'{"c": 1}', "application/json", 400),
        ("forecast_windows", b'{"requests": [{"windows": [[[1e300]]], "feature_sets": {"p": "v"}}]}', None, 400),
    ]
    for path, body, content_type, status in malformed:
        got, answer = _post(url, path, body, content_type or "application/json")
        assert got == status, (path, body, got, answer)
    assert _post(url, "forecast_windows", b'{"requests": []}') == (200, [])  # an empty batch: nothing to do
    time.sleep(0.5)
    added = [line for line in _log_lines(stack)[before:] if "/livez" not in line and "/readyz" not in line]
    assert not any("Traceback" in line for line in added), "\n".join(added)
    assert len(added) == len(malformed), "\n".join(added)  # one line per rejected request
    assert call(stack, "forecast", ["T000"], LAST, max_age_s=1e12)["symbols"] == ["T000"]  # still serving


def test_schemathesis_gets_no_5xx_from_any_operation(stack, tmp_path: Path) -> None:
    from benchmarks.bench_api_fuzz import fuzz

    before = len(_log_lines(stack))
    for mode in ("positive", "negative"):
        result = fuzz(stack["url"], tmp_path, examples=25, seed=7, mode=mode)
        assert sum(result["statuses"].values()) > 100, result["summary"]
        assert result["server_errors"] == [], result["summary"]
    added = _log_lines(stack)[before:]
    assert not any("Traceback" in line for line in added), "\n".join(added[-50:])


def test_sentiment_batches_concurrent_requests(stack) -> None:
    """A burst at a fresh service is answered whole: BentoML's batcher times its first calls one
    at a time, and with a one-second budget it shed such a burst with 503s."""
    texts = ["Acme beats estimates and raises guidance", "Regulator sues Acme over accounting", "Acme to hold meeting"]

    async def many():
        async with ModelClient(stack["url"], retries=0) as client:
            return await asyncio.gather(*(client.sentiment(texts) for _ in range(48)))

    results = run(many())
    for result in results:
        assert len(result) == 3
        for item in result:
            assert abs(sum(item["probabilities"]) - 1.0) < 1e-5
            assert -1.0 <= item["score"] <= 1.0
            assert item["models"] == {"sentiment": stack["tags"]["sentiment"]}
    np.testing.assert_allclose([r["score"] for r in results[0]], [r["score"] for r in results[-1]], atol=1e-5)


def test_risk_per_symbol_and_portfolio(stack) -> None:
    rng = np.random.default_rng(5)
    returns = {"A": (rng.standard_normal(300) * 0.01).tolist(), "B": (rng.standard_normal(300) * 0.02).tolist()}
    out = call(stack, "risk", returns=returns)
    assert out["symbols"] == ["A", "B"] and out["models"] == {"risk": stack["tags"]["risk"]}
    vol = np.array(out["volatility"])
    assert 0.005 < vol[0] < 0.02 and 0.01 < vol[1] < 0.04 and vol[1] > vol[0]
    assert (np.array(out["es975"]) >= np.array(out["var99"]) * 0.9).all()

    stored = call(stack, "risk", SYMBOLS[:3], LAST)
    assert stored["feature_sets"] == {"risk": RISK.version} and len(stored["var99"]) == 3

    book = call(stack, "portfolio_risk", {"A": 1000.0, "B": -500.0}, returns=returns)
    assert book["var99"] > 0 and book["es975"] > book["var99"] * 0.9
    assert (book["horizon_bars"], book["interval_s"]) == (1, None)  # one period of the returns given
    assert set(book["stress"]) >= {"worst_period_1", "market_-3sd"}
    hedged = call(stack, "portfolio_risk", {"A": 1000.0}, returns=returns)
    assert hedged["volatility"] == pytest.approx(1000.0 * vol[0], rel=1e-6)
    from_store = call(stack, "portfolio_risk", {"T000": 1000.0, "T001": 1000.0}, LAST)
    assert from_store["var99"] > 0 and (from_store["horizon_bars"], from_store["interval_s"]) == (1, 60)


def _registry_cli(stack, *args: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "serving.registry", *args], env=stack["env"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr


def test_hot_swap_and_rollback_under_load(stack) -> None:
    old, new = stack["tags"]["price"], stack["tags"]["price_next"]

    async def load(until_tag: str, promote) -> list[str]:
        seen: list[str] = []
        failures: list[str] = []
        switched = asyncio.Event()
        async with ModelClient(stack["url"], retries=0, timeout_s=5.0) as client:

            async def worker() -> None:
                while not switched.is_set():
                    try:
                        out = await client.forecast(SYMBOLS[:40], LAST)
                    except Exception as exc:  # every failure is collected and fails the test below
                        failures.append(repr(exc))
                        continue
                    seen.append(out["models"]["price"])
                    if out["models"]["price"] == until_tag:
                        switched.set()

            async def trigger() -> None:
                await asyncio.sleep(0.5)
                await asyncio.to_thread(promote)
                await asyncio.wait_for(switched.wait(), timeout=15)
                await asyncio.sleep(0.3)  # keep loading a little after the swap

            tasks = [asyncio.create_task(worker()) for _ in range(8)]
            await trigger()
            await asyncio.gather(*tasks)
        assert failures == []
        return seen

    seen = run(load(new, lambda: _registry_cli(stack, "promote", new)))
    assert seen[0] == old and new in seen
    first_new = seen.index(new)
    assert set(seen[first_new:]) == {new}  # once swapped, the old version never answers again
    assert len(seen) > 50
    # The strategy the new version was validated with is published with it (the engine trades it).
    assert call(stack, "versions")["models"]["price"]["strategy"] == NEXT_STRATEGY

    seen = run(load(old, lambda: _registry_cli(stack, "rollback", "price")))
    assert seen[0] == new and seen[-1] == old
    assert call(stack, "versions")["models"]["price"]["tag"] == old
    assert call(stack, "versions")["models"]["price"]["strategy"] is None  # the sample model has none
    time.sleep(0.5)
    swaps = [line for line in _log_lines(stack) if "swapped price" in line]
    assert any(f"{old} -> {new}" in line for line in swaps) and any(f"{new} -> {old}" in line for line in swaps)


def test_api_key_protects_everything_but_the_probes(stack) -> None:
    env = {**stack["env"], "RRR_SERVING_API_KEY": "s3cret-key"}
    home = Path(env["RRR_HOME"])
    service = launcher.start(port=launcher.free_port(), env=env, log_path=home / "serving-key.log")
    try:
        err = rejected({"url": service.url}, "versions")
        assert err.status == 401 and "API key" in err.message
        with pytest.raises(RequestRejected) as info:
            run(_keyed(service.url, "wrong"))
        assert info.value.status == 401
        assert run(_keyed(service.url, "s3cret-key"))["ready"] is True
        import urllib.request

        with urllib.request.urlopen(f"{service.url}/readyz") as resp:
            assert resp.status == 200
    finally:
        service.stop()


async def _keyed(url: str, key: str):
    async with ModelClient(url, api_key=key, retries=0) as client:
        return await client.versions()


def test_client_retries_then_names_the_unreachable_service() -> None:
    from serving.client import ServiceUnavailable

    url = f"http://127.0.0.1:{launcher.free_port()}"
    with pytest.raises(ServiceUnavailable, match="after 3 attempts"):
        run(_client_call_retry(url))


async def _client_call_retry(url: str):
    async with ModelClient(url, retries=2, backoff_s=0.01, timeout_s=0.5) as client:
        return await client.versions()


def test_bentoml_build_offline_and_the_built_bento_serves(stack) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**stack["env"], "PIP_NO_INDEX": "1"}  # nothing may be fetched
    out = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", str(root), "--output", "tag"],
        env=env, capture_output=True, text=True, timeout=300, cwd=root,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    tag = out.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("rrr_models:")
    src = Path(env["BENTOML_HOME"]) / "bentos" / "rrr_models" / tag.split(":")[1] / "src"
    assert (src / "serving" / "service.py").exists() and (src / "feature_store" / "online_layout.py").exists()
    home = Path(env["RRR_HOME"])
    # Served from its own folder, the Bento needs RRR_HOME: without it, it stops and says so.
    bare = {k: v for k, v in env.items() if k != "RRR_HOME"}
    refused = subprocess.run(
        [sys.executable, "-m", "bentoml", "serve", tag, "--port", str(launcher.free_port())],
        env=bare, capture_output=True, text=True, timeout=120, cwd=home,
    )  # fmt: skip
    assert refused.returncode != 0 and "RRR_HOME is not set" in refused.stdout + refused.stderr
    service = launcher.start(port=launcher.free_port(), env=env, target=tag, log_path=home / "bento.log")
    try:
        out = run(_client_call(service.url, "forecast", SYMBOLS[:3], LAST))
        assert out["models"]["price"] in (stack["tags"]["price"], stack["tags"]["price_next"])
    finally:
        service.stop()


def test_a_bad_request_never_fails_the_good_ones_batched_with_it(stack) -> None:
    fs = {"price": PRICE.version, "sentiment": SENTIMENT.version}
    good = np.full((1, 16, 12), 0.1)

    async def mixed():
        async with ModelClient(stack["url"], retries=0) as client:
            calls = [client.forecast_windows(good, fs) for _ in range(12)]
            calls += [client.forecast_windows(good, {"price": "other"}), client.forecast_windows(good[:, :3], fs)]
            return await asyncio.gather(*calls, return_exceptions=True)

    results = run(mixed())
    assert all(isinstance(r, dict) and len(r["mean"]) == 1 for r in results[:12])
    assert [r.status for r in results[12:]] == [400, 400]


def test_the_dashboard_names_series_the_service_exposes(stack) -> None:
    """Run after the forecasts and hot swaps above: the dashboard's service panels read real series."""
    import re
    import urllib.request

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy/grafana/engine_dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m for e in exprs for m in re.findall(r"rrr_(?:request|serving)_[a-z0-9_]+", e)}
    with urllib.request.urlopen(f"{stack['url']}/metrics") as resp:
        text = resp.read().decode()
    exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert used and used <= exposed, sorted(used - exposed)


def test_with_no_models_the_service_starts_not_ready_and_answers_503(tmp_path: Path, scratch_redis) -> None:
    import urllib.error
    import urllib.request

    port = launcher.free_port()
    env = {
        **os.environ,
        "RRR_HOME": str(tmp_path),
        "BENTOML_HOME": str(tmp_path / "bentoml"),  # an empty model store
        "BENTOML_DO_NOT_TRACK": "true",
        "REDIS_URL": scratch_redis(11),
    }
    argv = [sys.executable, "-m", "bentoml", "serve", launcher.TARGET, "--host", "127.0.0.1", "--port", str(port)]
    log = (tmp_path / "serving.log").open("wb")
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "serving.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/livez", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "serving.log").read_text()[-3000:]
                time.sleep(0.5)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{url}/readyz", timeout=5)
        info.value.close()
        assert info.value.code == 503
        assert _post(url, "forecast", b'{"symbols": ["BTC-USD"]}')[0] == 503
        assert _post(url, "versions", b"{}") == (
            200,
            {"models": {}, "ready": False, "device": "cpu", "torch_threads": 1, "last_error": None},
        )
        time.sleep(3)  # still up: no crash loop
        assert process.poll() is None
        assert "Traceback" not in (tmp_path / "serving.log").read_text()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


def test_the_openapi_document_names_the_version_and_every_answer(stack) -> None:
    from importlib.metadata import version

    with urllib.request.urlopen(f"{stack['url']}/docs.json", timeout=30) as resp:
        spec = json.loads(resp.read())
    assert spec["info"]["version"] == version("rrralgorithms")
    for path in ("/forecast", "/forecast_windows", "/sentiment", "/risk", "/portfolio_risk", "/versions"):
        answers = spec["paths"][path]["post"]["responses"]
        assert {"200", "400", "409", "415", "422", "503"} <= set(answers), (path, sorted(answers))


def test_a_promotion_announced_on_redis_is_served_at_once_without_the_poll(stack) -> None:
    """A service whose store poll is off (one hour) swaps at the promotion's announcement."""
    env = {**stack["env"], "RRR_SERVING_POLL_S": "3600"}
    home = Path(env["RRR_HOME"])
    old, new = stack["tags"]["price"], stack["tags"]["price_next"]
    service = launcher.start(port=launcher.free_port(), env=env, log_path=home / "serving-announced.log")
    try:
        assert call({"url": service.url}, "versions")["models"]["price"]["tag"] == old
        for action, argument, expected in (("promote", new, new), ("rollback", "price", old)):
            began = time.monotonic()
            _registry_cli(stack, action, argument)
            while call({"url": service.url}, "versions")["models"]["price"]["tag"] != expected:
                assert time.monotonic() - began < 20, f"{action} not served: the announcement was not heard"
                time.sleep(0.1)
    finally:
        service.stop()


def test_promotion_listener_hears_announcements_and_rides_out_a_dead_redis(stack) -> None:
    from serving.announce import PromotionListener, announce

    heard: list[str] = []
    listener = PromotionListener(stack["env"]["REDIS_URL"], heard.append).start()
    dead = PromotionListener("redis://127.0.0.1:1/0", heard.append, retry_s=0.1).start()
    try:
        deadline = time.monotonic() + 10
        while not heard and time.monotonic() < deadline:
            announce("price:abc", stack["env"]["REDIS_URL"])
            time.sleep(0.2)
        assert heard and heard[0] == "price:abc"
        assert announce("price:abc", "redis://127.0.0.1:1/0") == 0  # logged, not raised
        time.sleep(0.5)
        assert dead._thread.is_alive()  # still retrying, never crashed
    finally:
        listener.stop()
        dead.stop()
