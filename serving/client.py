"""A small async client of the model service, for the engine and for tests.

It imports neither torch nor bentoml. Every call has a timeout; connection errors, timeouts
and 503s are retried with a short backoff (every API is a read, so a retry is safe); a 4xx is
raised at once as :class:`RequestRejected` with the service's message::

    async with ModelClient() as models:          # RRR_SERVING_URL, RRR_SERVING_API_KEY
        out = await models.forecast(symbols, ts_ns=bar_start_ns)
        out["mean"], out["models"]["price"]
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import orjson

from serving.config import service_url
from serving.errors import ServingError

__all__ = ["ModelClient", "RequestRejected", "ServiceUnavailable"]


class RequestRejected(ServingError):
    """The service refused the request (a 4xx); ``status`` and ``message`` say why."""

    def __init__(self, status: int, message: str, path: str) -> None:
        self.status = status
        self.message = message
        self.path = path
        super().__init__(f"{path} answered {status}: {message}")


class ServiceUnavailable(ServingError):
    """The service could not be reached or answered 5xx, after the retries."""


def _message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace")[:500]
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if isinstance(data, dict):
        text = str(data.get("error", data))
        detail = data.get("detail")
        if isinstance(detail, list) and detail:
            parts = [f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}" for d in detail[:5]]
            text += " (" + "; ".join(parts) + ")"
        return text
    return str(data)[:500]


class ModelClient:
    """Calls the model service over HTTP.

    Args:
        url: the service (default ``RRR_SERVING_URL``, else ``RRR_SERVING_HOST``:``RRR_SERVING_PORT``,
            ``http://127.0.0.1:3000`` when neither is set).
        api_key: sent as a bearer token (default ``RRR_SERVING_API_KEY``).
        timeout_s: per attempt.
        retries: extra attempts after a connection error, a timeout or a 503.
        backoff_s: first wait between attempts (doubled each time).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float = 2.0,
        retries: int = 2,
        backoff_s: float = 0.05,
    ) -> None:
        self.url = (url or service_url()).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("RRR_SERVING_API_KEY")
        self._headers = {"Content-Type": "application/json"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
            )
        return self._session

    async def call(self, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        """POST ``payload`` to ``/path`` and return the decoded JSON answer."""
        body = orjson.dumps(payload or {}, option=orjson.OPT_SERIALIZE_NUMPY)
        delay, last = self.backoff_s, ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
            try:
                async with self._client().post(
                    f"{self.url}/{path}", data=body, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
                ) as resp:
                    raw = await resp.read()
                    if resp.status == 200:
                        return orjson.loads(raw)
                    if resp.status == 503 or resp.status >= 500:
                        last = f"{path} answered {resp.status}: {_message(raw)}"
                        continue
                    raise RequestRejected(resp.status, _message(raw), f"/{path}")
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                last = f"{path} failed: {type(exc).__name__}: {exc}"
        raise ServiceUnavailable(f"model service at {self.url}: {last} (after {self.retries + 1} attempts)")

    async def ready(self) -> bool:
        """True when the service answers ``/readyz`` with 200 (all three models loaded)."""
        try:
            async with self._client().get(
                f"{self.url}/readyz", timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            ) as resp:
                await resp.read()
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientConnectionError):
            return False

    async def wait_ready(self, timeout_s: float = 60.0, interval_s: float = 0.25) -> None:
        """Wait until the service is ready; raise :class:`ServiceUnavailable` after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not await self.ready():
            if loop.time() > deadline:
                raise ServiceUnavailable(f"model service at {self.url} not ready after {timeout_s} s")
            await asyncio.sleep(interval_s)

    async def forecast(
        self,
        symbols: Sequence[str],
        ts_ns: int | None = None,
        *,
        feature_sets: Mapping[str, str] | None = None,
        max_age_s: float | None = None,
        partial: bool = False,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Forecasts of every symbol from the online store: one call for all of them.

        ``namespace`` reads a namespaced online store (a backtest's) instead of the live one.
        """
        payload: dict[str, Any] = {"symbols": list(symbols), "ts_ns": ts_ns, "partial": partial}
        if namespace is not None:
            payload["namespace"] = namespace
        if feature_sets:
            payload["feature_sets"] = dict(feature_sets)
        if max_age_s is not None:
            payload["max_age_s"] = max_age_s
        result: dict[str, Any] = await self.call("forecast", payload)
        return result

    async def forecast_windows(
        self, windows: Any, feature_sets: Mapping[str, str], features: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Forecasts for windows computed by the caller (N x W x F, the columns ``versions`` lists)."""
        request: dict[str, Any] = {"windows": windows, "feature_sets": dict(feature_sets)}
        if features is not None:
            request["features"] = list(features)
        result: list[dict[str, Any]] = await self.call("forecast_windows", {"requests": [request]})
        return result[0]

    async def sentiment(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Probabilities (negative, neutral, positive) and score of each headline."""
        result: list[dict[str, Any]] = await self.call("sentiment", {"texts": list(texts)})
        return result

    async def risk(
        self,
        symbols: Sequence[str] = (),
        ts_ns: int | None = None,
        *,
        returns: Mapping[str, Sequence[float]] | None = None,
        namespace: str | None = None,
        interval_s: int = 60,
    ) -> dict[str, Any]:
        """Next-period volatility, VaR(99%) and ES(97.5%) per symbol (risk features on ``interval_s`` bars)."""
        payload: dict[str, Any] = {"symbols": list(symbols), "ts_ns": ts_ns, "interval_s": interval_s}
        if namespace is not None:
            payload["namespace"] = namespace
        if returns is not None:
            payload["returns"] = {k: list(v) for k, v in returns.items()}
        result: dict[str, Any] = await self.call("risk", payload)
        return result

    async def portfolio_risk(
        self,
        positions: Mapping[str, float],
        ts_ns: int | None = None,
        *,
        returns: Mapping[str, Sequence[float]] | None = None,
        namespace: str | None = None,
        interval_s: int = 60,
    ) -> dict[str, Any]:
        """Portfolio VaR, ES, volatility and stress losses of ``positions`` (notional per symbol)."""
        payload: dict[str, Any] = {"positions": dict(positions), "ts_ns": ts_ns, "interval_s": interval_s}
        if namespace is not None:
            payload["namespace"] = namespace
        if returns is not None:
            payload["returns"] = {k: list(v) for k, v in returns.items()}
        result: dict[str, Any] = await self.call("portfolio_risk", payload)
        return result

    async def versions(self) -> dict[str, Any]:
        """The model versions served, their feature sets and input columns, and the device."""
        result: dict[str, Any] = await self.call("versions")
        return result

    async def reload(self) -> dict[str, Any]:
        """Ask the service to pick up promotions now."""
        result: dict[str, Any] = await self.call("reload")
        return result
