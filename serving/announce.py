"""Promotions announced on Redis pub/sub, so that every model service swaps at once.

:func:`announce` publishes the tag of a version just promoted (or rolled back to) on the
channel ``rrr:models:promoted`` of the platform's Redis; :class:`PromotionListener` (a daemon
thread in each model service worker) reloads the production versions when one arrives. The
store poll (``RRR_SERVING_POLL_S``) stays as the fallback: an announcement missed while a
service was down or Redis was away is picked up by the next poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

__all__ = ["CHANNEL", "PromotionListener", "announce", "platform_redis_url"]

log = logging.getLogger("serving.announce")

CHANNEL = "rrr:models:promoted"


def platform_redis_url() -> str | None:
    """``REDIS_URL``, else the embedded Redis when it is running (never started for this)."""
    from feature_store.config import FeatureStoreSettings
    from feature_store.services import embedded_status

    settings = FeatureStoreSettings.from_env()
    if settings.redis_url:
        return settings.redis_url
    entry = embedded_status(settings.home).get("redis", {})
    return str(entry["url"]) if entry.get("running") and entry.get("url") else None


def announce(tag: str, url: str | None = None) -> int:
    """Publish ``tag`` as promoted; return how many services heard it (0 with no Redis: the
    services' poll picks the promotion up). A Redis error is logged, not raised: the
    promotion itself is done and stored."""
    url = url or platform_redis_url()
    if url is None:
        return 0
    client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
    try:
        return int(client.publish(CHANNEL, tag))
    except redis.RedisError as exc:
        log.warning("promotion of %s not announced (%s); model services find it at their next poll", tag, exc)
        return 0
    finally:
        client.close()


class PromotionListener:
    """Calls ``on_promotion(tag)`` for every announcement, in a daemon thread, until :meth:`stop`;
    reconnects (every ``retry_s``) while Redis is away."""

    def __init__(self, url: str, on_promotion: Callable[[str], object], retry_s: float = 2.0) -> None:
        self.url = url
        self.on_promotion = on_promotion
        self.retry_s = retry_s
        self.heard = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="promotion-listener", daemon=True)

    def start(self) -> PromotionListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            client = redis.Redis.from_url(self.url, socket_connect_timeout=3, health_check_interval=30)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(CHANNEL)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        self.heard += 1
                        tag = message["data"].decode(errors="replace")
                        try:
                            self.on_promotion(tag)
                        except Exception:
                            log.exception("reloading after the promotion of %s failed; the poll retries", tag)
            except redis.RedisError as exc:
                log.warning("promotion announcements unavailable (%s); retrying in %.0f s", exc, self.retry_s)
                self._stop.wait(self.retry_s)
            finally:
                pubsub.close()
                client.close()
