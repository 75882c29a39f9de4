"""The model service: the production price, sentiment and risk models behind one HTTP API.

Start it from the repository root::

    bentoml serve serving.service:ModelService          # 127.0.0.1:3000 by default

APIs (all ``POST``, JSON; every response names the model versions and feature-set versions
that produced it):

``/forecast``
    The engine's path. ``{"symbols": [...], "ts_ns": <bar start>}``: the service reads each
    symbol's last ``window`` feature vectors from the Redis online store and forecasts the
    forward return (mean, sd) of all of them in one model call. ``feature_sets`` (what the
    caller computed with) is checked against what the model was trained on; ``partial``
    returns the symbols it could forecast and why the others were left out, instead of a 4xx.
``/forecast_windows``
    Adaptive-batched. ``{"requests": [{"windows": [[[...]]], "feature_sets": {...}}]}``: the
    caller carries the windows (N x W x F, the columns of ``/versions``).
``/sentiment``
    Adaptive-batched. ``{"texts": ["headline", ...]}``: class probabilities and a score in [-1, 1].
``/risk``
    Per symbol: volatility, VaR(99%) and ES(97.5%) of the next return, from the ``returns``
    sent, or the risk features in the online store at ``ts_ns``.
``/portfolio_risk``
    ``{"positions": {"SYM": notional}}``: portfolio VaR, ES and stress losses.
``/versions``
    What is served: tags, feature sets, input columns, device.
``/reload``
    Check the model store for promotions now (the service also checks every
    ``RRR_SERVING_POLL_S`` seconds). A new version is loaded beside the old one, which keeps
    serving until the swap.

Errors: 400 bad input (shape, NaN, empty or oversized text), 401 missing API key, 404 unknown
symbol, 409 feature-set version skew, 422 stale or warming-up features, 503 model not loaded
or online store away. Plus BentoML's ``/livez``, ``/readyz`` (ready once all three models are
loaded) and ``/metrics``.

Settings are in :mod:`serving.config`. With ``RRR_SERVING_API_KEY`` set, every request but the
health probes must carry ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
"""

# No `from __future__ import annotations`: BentoML reads the API annotations at runtime.

import gc
import logging
import os
import threading
from typing import Annotated, Any

from serving.config import ServingSettings

SETTINGS = ServingSettings.from_env()
os.environ.setdefault("BENTOML_HOME", str(SETTINGS.bentoml_home))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import bentoml  # noqa: E402  (BENTOML_HOME must be set first)
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import torch  # noqa: E402
from bentoml.validators import ContentType  # noqa: E402
from pydantic import BaseModel, Field, PrivateAttr, StringConstraints, model_validator  # noqa: E402
from starlette.responses import Response  # noqa: E402

from feature_store.records import SYMBOL_PATTERN  # noqa: E402
from serving import runtime  # noqa: E402
from serving.errors import BadInputError, ModelUnavailableError, RequestError  # noqa: E402
from serving.guards import (  # noqa: E402
    ApiKeyMiddleware,
    JsonBodyMiddleware,
    OpenApiMiddleware,
    install_one_line_rejections,
)

log = logging.getLogger("serving.service")
log.setLevel(logging.INFO)  # hot swaps are logged (INFO); the root logger of the server keeps WARNING

CUDA = torch.cuda.is_available()

Symbol = Annotated[str, StringConstraints(pattern=SYMBOL_PATTERN)]
Symbols = Annotated[list[Symbol], Field(min_length=1, max_length=SETTINGS.max_symbols)]
Headline = Annotated[str, StringConstraints(min_length=1, max_length=SETTINGS.max_text_chars)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Returns = dict[Symbol, list[Finite]]
# Declaring the media type spares BentoML working it out from the JSON schema on every response.
JsonObject = Annotated[dict[str, Any], ContentType("application/json")]
JsonList = Annotated[list[dict[str, Any]], ContentType("application/json")]
# Without an exporter configured, per-request tracing spans go nowhere: skip them for every path.
TRACING: dict[str, Any] = {} if SETTINGS.tracing else {"excluded_urls": ["."]}

REJECTED = bentoml.metrics.Counter(
    name="rrr_serving_rejected_requests",
    documentation="Requests refused with a 4xx or 503, by API and status",
    labelnames=["api", "status"],
)
SWAPS = bentoml.metrics.Counter(
    name="rrr_serving_model_swaps",
    documentation="Production versions swapped in without a restart, by model",
    labelnames=["model"],
)
SYMBOLS_FORECAST = bentoml.metrics.Counter(
    name="rrr_serving_symbols_forecast", documentation="Symbols forecast by /forecast", labelnames=[]
)


class WindowsRequest(BaseModel):
    """Windows a caller computed itself: N x W x F raw feature values and their versions."""

    windows: list[list[list[float]]] = Field(min_length=1, max_length=SETTINGS.max_symbols)
    feature_sets: dict[str, str] = Field(min_length=1)
    features: list[str] | None = None
    _array: np.ndarray = PrivateAttr()

    @property
    def array(self) -> np.ndarray:
        """The windows as float32 (N, W, F), converted once while validating."""
        return self._array

    @model_validator(mode="after")
    def _checked(self) -> "WindowsRequest":
        # Shape, column and version checks need the served model. They run here, before the request
        # is batched with others, so that one caller's bad input never fails another caller's batch.
        try:
            with np.errstate(over="ignore"):
                array = np.asarray(self.windows, np.float32)
        except ValueError as exc:
            raise ValueError(f"windows are not a rectangular N x W x F array: {exc}") from None
        if np.isinf(array).any():
            raise ValueError("windows hold values beyond the float32 range (about 3.4e38)")
        if _SLOTS is not None and "price" in _SLOTS.served():  # without a model the API answers 503
            served = _SLOTS.get("price")
            try:
                runtime.check_versions(served, self.feature_sets)
                runtime.check_windows(served, array, self.features)
            except RequestError as exc:
                raise ValueError(str(exc)) from None
        self._array = array
        return self


_SLOTS: runtime.ModelSlots | None = None


def _on_swap(name: str, old: str | None, new: str) -> None:
    SWAPS.labels(model=name).inc()
    log.info("swapped %s: %s -> %s", name, old, new)


def _json(payload: dict[str, Any]) -> Response:
    """A JSON response encoded with orjson (ten times faster than the default for float lists)."""
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def _resources() -> dict[str, Any]:
    return {"gpu": 1} if CUDA else {"cpu": str(SETTINGS.threads)}


@bentoml.service(
    name="rrr_models",
    workers=SETTINGS.workers,
    resources=_resources(),
    traffic={"timeout": 30, "max_concurrency": 512},
    http={"host": SETTINGS.host, "port": SETTINGS.port},
    metrics={"enabled": True, "namespace": "rrr"},
    logging={"access": {"enabled": SETTINGS.access_log, "skip_paths": ["/livez", "/readyz", "/metrics"]}},
    tracing=TRACING,
)
class ModelService:
    """The three production models, hot-swapped from the BentoML model store."""

    def __init__(self) -> None:
        global _SLOTS
        from feature_store.allocator import keep_freed_memory_for_reuse

        keep_freed_memory_for_reuse()  # multi-megabyte reads per request: keep freed memory in the heap
        torch.set_num_threads(SETTINGS.threads)
        device = "cuda" if CUDA else "cpu"
        _SLOTS = runtime.ModelSlots(device, on_swap=_on_swap)
        self.slots = _SLOTS
        self.slots.refresh()
        self.slots.watch(SETTINGS.poll_s)
        # A promotion announced on Redis is swapped in at once; the poll above is the fallback.
        from serving.announce import PromotionListener, platform_redis_url

        url = platform_redis_url()
        self.promotions = PromotionListener(url, lambda _tag: self.slots.refresh()).start() if url else None
        self.online_store: Any = None
        self.online_lock = threading.Lock()
        self.namespaced: dict[str, Any] = {}
        gc.freeze()  # the loaded models are long-lived: keep them out of every collection

    async def __is_ready__(self) -> bool:
        return self.slots.ready

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.slots.stop()
        if self.promotions is not None:
            self.promotions.stop()
        if self.online_store is not None:
            self.online_store.close()

    # --- helpers ---------------------------------------------------------------------------

    def _online(self, namespace: str | None = None) -> Any:
        if namespace is not None:
            from feature_store.online_layout import check_namespace

            try:
                check_namespace(namespace)
            except ValueError as exc:
                raise BadInputError(str(exc)) from exc
            base = self._online()
            with self.online_lock:
                store = self.namespaced.get(namespace)
                if store is None:
                    if len(self.namespaced) > 64:
                        self.namespaced.clear()
                    store = self.namespaced[namespace] = base.in_namespace(namespace)
                return store
        with self.online_lock:
            if self.online_store is None:
                from feature_store.config import FeatureStoreSettings
                from feature_store.online_layout import OnlineLayout
                from feature_store.redis_store import RedisOnlineStore
                from feature_store.services import start_embedded

                fs = FeatureStoreSettings.from_env()
                url = fs.redis_url or str(start_embedded(fs.home, services=("redis",))["redis"]["url"])
                self.online_store = RedisOnlineStore.from_url(url, OnlineLayout(), window_cache=True)
            return self.online_store

    def _fail(self, api: str, exc: Exception) -> bentoml.exceptions.BentoMLException:
        from http import HTTPStatus

        status = getattr(exc, "status", 503)
        REJECTED.labels(api=api, status=str(status)).inc()
        # 4xx messages reach the caller as they are; BentoML hides 5xx text, and its log line
        # (one line: see serving.guards) carries it.
        return bentoml.exceptions.BentoMLException(str(exc), error_code=HTTPStatus(status))

    def _store_failure(self, api: str, exc: Exception) -> bentoml.exceptions.BentoMLException:
        err = ModelUnavailableError(f"the online store is not reachable: {exc}")
        return self._fail(api, err)

    @staticmethod
    def _models(*served: runtime.Served) -> dict[str, str]:
        return {s.name: s.tag for s in served}

    # --- APIs ------------------------------------------------------------------------------

    @bentoml.api
    async def forecast(
        self,
        symbols: Symbols,
        ts_ns: int | None = None,
        feature_sets: dict[str, str] | None = None,
        max_age_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None,
        partial: bool = False,
        namespace: str | None = None,
    ) -> JsonObject:  # sent as the dict, encoded with orjson (see _json)
        """Forecast each symbol's forward return from its windows in the online store.

        ``namespace`` reads a namespaced online store (a backtest's) instead of the live one.
        """
        from feature_store.errors import StorageError

        try:
            served = self.slots.get("price")
            result = runtime.forecast_online(
                served,
                self._online(namespace),
                symbols,
                ts_ns,
                claimed_versions=feature_sets,
                max_age_s=max_age_s,
                partial=partial,
            )
        except (RequestError, ModelUnavailableError) as exc:
            raise self._fail("forecast", exc) from exc
        except (StorageError, OSError) as exc:
            raise self._store_failure("forecast", exc) from exc
        SYMBOLS_FORECAST.inc(len(result.symbols))
        return _json(
            {
                "models": self._models(served),
                "feature_sets": served.feature_sets,
                "horizon_bars": served.config.horizon,
                "symbols": result.symbols,
                "ts_ns": result.ts_ns,
                "mean": result.mean.tolist(),
                "sd": result.sd.tolist(),
                "rejected": result.rejected,
            }
        )

    @bentoml.api(batchable=True, max_batch_size=SETTINGS.max_symbols, max_latency_ms=SETTINGS.batch_latency_ms)
    async def forecast_windows(self, requests: list[WindowsRequest]) -> JsonList:
        """Forecasts for windows the callers carry; requests are batched into one model call."""
        if not requests:  # an empty batch: nothing to forecast
            return []
        try:
            served = self.slots.get("price")
            for request in requests:  # checked on arrival; checked again in case a swap came between
                runtime.check_versions(served, request.feature_sets)
        except (RequestError, ModelUnavailableError) as exc:
            raise self._fail("forecast_windows", exc) from exc
        arrays = [r.array for r in requests]
        mean, sd = runtime.forecast_windows(served, np.concatenate(arrays), served.feature_sets)
        out, start = [], 0
        for array in arrays:
            stop = start + len(array)
            out.append(
                {
                    "models": self._models(served),
                    "feature_sets": served.feature_sets,
                    "mean": mean[start:stop].tolist(),
                    "sd": sd[start:stop].tolist(),
                }
            )
            start = stop
        return out

    @bentoml.api(batchable=True, max_batch_size=SETTINGS.max_texts, max_latency_ms=SETTINGS.batch_latency_ms)
    async def sentiment(
        self, texts: Annotated[list[Headline], Field(min_length=1, max_length=SETTINGS.max_texts)]
    ) -> JsonList:
        """Sentiment of each headline: probabilities (negative, neutral, positive) and a score."""
        import anyio

        try:
            served = self.slots.get("sentiment")
            probs, scores = await anyio.to_thread.run_sync(
                runtime.sentiment_scores, served, texts, SETTINGS.max_text_chars
            )
        except (RequestError, ModelUnavailableError) as exc:
            raise self._fail("sentiment", exc) from exc
        model = self._models(served)
        return [
            {"score": float(s), "probabilities": [float(x) for x in p], "models": model}
            for s, p in zip(scores, probs, strict=True)
        ]

    def _history(
        self,
        api: str,
        symbols: list[str],
        ts_ns: int | None,
        returns: Returns | None,
        namespace: str | None = None,
        interval_s: int = 60,
    ) -> Any:
        from feature_store.errors import StorageError

        served = self.slots.get("risk")
        if returns:
            return served, returns, None
        if not symbols:
            raise BadInputError("name the symbols (and ts_ns) or send their returns")
        try:
            history = runtime.risk_history(served, self._online(namespace), symbols, ts_ns, interval_s)
        except (StorageError, OSError) as exc:
            raise self._store_failure(api, exc) from exc
        from feature_store.features.catalog import RISK

        return served, history, RISK.with_interval(interval_s).version

    @bentoml.api
    async def risk(
        self,
        symbols: Annotated[list[Symbol], Field(max_length=SETTINGS.max_symbols)] = [],  # noqa: B006
        ts_ns: int | None = None,
        returns: Returns | None = None,
        namespace: str | None = None,
        interval_s: Annotated[int, Field(ge=1, le=86400)] = 60,
    ) -> JsonObject:
        """Next-period volatility, VaR(99%) and ES(97.5%) per symbol (fractions of the position).

        The history is the risk features on ``interval_s`` bars (in ``namespace`` if named), or the
        ``returns`` given; the horizon is one period of that history (``horizon_bars`` 1, and
        ``interval_s`` when it came from the store)."""
        try:
            served, history, version = self._history("risk", symbols, ts_ns, returns, namespace, interval_s)
            result = runtime.symbol_risk(served, history)
        except (RequestError, ModelUnavailableError) as exc:
            raise self._fail("risk", exc) from exc
        return {
            "models": self._models(served),
            "feature_sets": {"risk": version} if version else {},
            "horizon_bars": 1,
            "interval_s": None if returns else interval_s,
            "symbols": result.symbols,
            "volatility": result.volatility.tolist(),
            "var99": result.var99.tolist(),
            "es975": result.es975.tolist(),
        }

    @bentoml.api
    async def portfolio_risk(
        self,
        positions: Annotated[dict[Symbol, Finite], Field(min_length=1, max_length=SETTINGS.max_symbols)],
        ts_ns: int | None = None,
        returns: Returns | None = None,
        namespace: str | None = None,
        interval_s: Annotated[int, Field(ge=1, le=86400)] = 60,
    ) -> JsonObject:
        """VaR(99%), ES(97.5%), volatility and stress losses of a portfolio (notional per symbol),
        over the next period: one bar of ``interval_s`` seconds (``horizon_bars`` 1), or one period
        of the ``returns`` given.

        The history is the risk features on ``interval_s`` bars (in ``namespace`` if named)."""
        try:
            served, history, version = self._history(
                "portfolio_risk", list(positions), ts_ns, returns, namespace, interval_s
            )
            per_symbol, total = runtime.portfolio_risk(served, positions, history)
        except (RequestError, ModelUnavailableError) as exc:
            raise self._fail("portfolio_risk", exc) from exc
        except ValueError as exc:  # the covariance needs at least two complete rows of history
            raise self._fail("portfolio_risk", BadInputError(str(exc))) from exc
        return {
            "models": self._models(served),
            "feature_sets": {"risk": version} if version else {},
            "horizon_bars": 1,
            "interval_s": None if returns else interval_s,
            "var99": total.var99,
            "es975": total.es975,
            "volatility": total.volatility,
            "stress": total.stress,
            "symbols": per_symbol.symbols,
            "symbol_volatility": per_symbol.volatility.tolist(),
        }

    @bentoml.api
    async def versions(self) -> JsonObject:
        """The model versions served, the feature sets and columns they read, the device, and the
        price model's strategy (what it was validated with, which the engine trades)."""
        served = self.slots.served()
        models = {
            name: {
                "tag": s.tag,
                "version": s.version,
                "feature_sets": s.feature_sets,
                "loaded_s": round(s.loaded_s, 3),
            }
            for name, s in served.items()
        }
        price = served.get("price")
        if price is not None:
            models["price"]["features"] = list(price.config.features)
            models["price"]["window"] = price.config.window
            models["price"]["horizon_bars"] = price.config.horizon
            # The bars it was trained on: an engine on bars of another length gets no forecast.
            models["price"]["interval_s"] = int(price.metadata.get("interval_s", 60))
            models["price"]["calendar"] = str(price.metadata.get("calendar", "24/7"))
            # The strategy the model was validated with: the engine trades it (None: not fitted).
            strategy = price.metadata.get("strategy")
            models["price"]["strategy"] = dict(strategy) if isinstance(strategy, dict) else None
        return {
            "models": models,
            "ready": self.slots.ready,
            "device": self.slots.device,
            "torch_threads": torch.get_num_threads(),
            "last_error": self.slots.last_error,
        }

    @bentoml.api
    async def reload(self) -> JsonObject:
        """Check the model store for promotions now; returns the models swapped."""
        import anyio

        swapped = await anyio.to_thread.run_sync(self.slots.refresh)
        return {"swapped": swapped, "models": {n: s.tag for n, s in self.slots.served().items()}}


def _version() -> str:
    """The platform's version, for the OpenAPI document."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rrralgorithms")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def _rejected(api: str, status: int) -> None:
    REJECTED.labels(api=api, status=str(status)).inc()


install_one_line_rejections()
ModelService.add_asgi_middleware(JsonBodyMiddleware, on_reject=_rejected)
ModelService.add_asgi_middleware(OpenApiMiddleware, version=_version())
if SETTINGS.api_key:
    ModelService.add_asgi_middleware(ApiKeyMiddleware, key=SETTINGS.api_key)
