"""What stands before the service's APIs: the API key, the JSON-only body, one log line per
rejected request.

* :class:`ApiKeyMiddleware` answers 401 to a request without the key (health probes excepted).
* :class:`JsonBodyMiddleware` answers 415 to a POST whose body is declared as anything but JSON
  (a form without its boundary, say), before BentoML tries to parse it.
* :class:`OpenApiMiddleware` completes the OpenAPI document at ``/docs.json``: the service's
  version, and the answers BentoML does not list (401, 409, 415, 422, 503).
* :class:`OneLineRejections` turns BentoML's traceback for a request it rejected (a validation
  error, a 4xx, a 503 the service raised itself) into one line; an exception nobody expected
  keeps its traceback.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

__all__ = [
    "OPEN_PATHS",
    "ApiKeyMiddleware",
    "JsonBodyMiddleware",
    "OneLineRejections",
    "OpenApiMiddleware",
    "install_one_line_rejections",
]

log = logging.getLogger("serving.service")

OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz"})
# The logger BentoML reports request exceptions on ("Exception on <path> [<method>]").
BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"


async def _answer(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    """401 for every request but the health probes that does not carry the API key."""

    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            headers = dict(scope.get("headers", []))
            given = headers.get(b"x-api-key", b"")
            auth = headers.get(b"authorization", b"")
            if auth.lower().startswith(b"bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given, self.key):
                body = b'{"error": "missing or wrong API key: send Authorization: Bearer <RRR_SERVING_API_KEY>"}'
                await _answer(send, 401, body, [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


class JsonBodyMiddleware:
    """415 for a POST whose ``Content-Type`` is not JSON (no ``Content-Type`` is taken as JSON).

    Args:
        on_reject: called with (API name, status) for each request refused here.
    """

    def __init__(self, app: Any, on_reject: Callable[[str, int], None] | None = None) -> None:
        self.app = app
        self.on_reject = on_reject

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            raw = dict(scope.get("headers", [])).get(b"content-type")
            media = raw.split(b";", 1)[0].strip().lower() if raw is not None else b"application/json"
            if media != b"application/json":
                shown = raw.decode("latin-1")[:100] if raw is not None else ""
                api = str(scope.get("path", "")).strip("/")
                log.warning("rejected POST %s: 415 Content-Type %r is not application/json", scope.get("path"), shown)
                if self.on_reject is not None:
                    self.on_reject(api, 415)
                await _answer(send, 415, b'{"error": "send the request body as JSON (Content-Type: application/json)"}')
                return
        await self.app(scope, receive, send)


# The answers of every API beyond BentoML's 400/404/500, as the service gives them.
ERROR_ANSWERS = {
    "401": "missing or wrong API key (only when RRR_SERVING_API_KEY is set)",
    "409": "version skew: the stored features are another version than the served model reads",
    "415": "the body is not JSON",
    "422": "the stored features are older than the bar asked for, too old, or still warming up",
    "503": "a model is not loaded, the feature store is unreachable, or the batcher is over its latency budget",
}


class OpenApiMiddleware:
    """Completes ``GET /docs.json``: ``info.version`` is the service's (BentoML writes "None" when
    it is not served from a built Bento) and every POST operation lists :data:`ERROR_ANSWERS`."""

    def __init__(self, app: Any, version: str) -> None:
        self.app = app
        self.version = version

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or scope.get("path") != "/docs.json":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    body = self._complete(b"".join(chunks)) if start.get("status") == 200 else b"".join(chunks)
                    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                    await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)

    def _complete(self, raw: bytes) -> bytes:
        import orjson

        spec = orjson.loads(raw)
        spec.setdefault("info", {})["version"] = self.version
        error = {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}
        for item in spec.get("paths", {}).values():
            operation = item.get("post") if isinstance(item, dict) else None
            if isinstance(operation, dict):
                answers = operation.setdefault("responses", {})
                for status, text in ERROR_ANSWERS.items():
                    answers.setdefault(status, {"description": text, "content": error})
        return orjson.dumps(spec)


def _one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line: a caller's newlines and control characters escaped."""
    return text.encode("unicode_escape").decode("ascii")[:limit]


def _rejection(exc: BaseException | None) -> tuple[int, str] | None:
    """(status, one-line reason) when ``exc`` is a rejection the service meant; None otherwise."""
    if exc is None:
        return None
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False)[:1]
        where = ".".join(str(p) for p in first[0]["loc"]) if first else ""
        what = first[0]["msg"] if first else ""
        return 400, _one_line(f"{exc.error_count()} validation error(s); first: {where}: {what}")
    if isinstance(exc, BentoMLException):
        status = int(exc.error_code.value)
        if status < 500 or status == 503:  # a 503 is the service saying a model or store is away
            return status, _one_line(str(exc))
    return None


class OneLineRejections(logging.Filter):
    """Log a rejected request as one line (see the module docstring); everything else as is."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        rejection = _rejection(exc)
        if rejection is not None and str(record.msg).startswith("Exception on"):
            path, method = record.args if isinstance(record.args, tuple) and len(record.args) == 2 else ("?", "?")
            record.msg, record.args = "rejected %s %s: %d %s", (method, path, *rejection)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def install_one_line_rejections() -> None:
    """Put :class:`OneLineRejections` on BentoML's request-exception logger (once)."""
    logger = logging.getLogger(BENTOML_HTTP_LOGGER)
    if not any(isinstance(f, OneLineRejections) for f in logger.filters):
        logger.addFilter(OneLineRejections())
