"""The engine's frozen configuration: the bar interval, the online namespace, the mode.

Variables read by :meth:`EngineConfig.from_env` (command-line flags override them):
    RRR_ENGINE_MODE: ``paper`` (the default and the only mode: orders go to the paper
        broker). ``live`` is refused with an error rather than paper-traded silently.
    RRR_BAR_SECONDS: bar interval in seconds (default 60; ``RRR_ENGINE_BAR_SECONDS`` is
        read too, for older setups).
    RRR_SERVING_URL: the model service (default: ``RRR_SERVING_HOST``:``RRR_SERVING_PORT``, the
        address the service listens on, ``http://127.0.0.1:3000`` when neither is set).
    RRR_ONLINE_NAMESPACE: keep this engine's online features under their own namespace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from engine.errors import ConfigError
from feature_store.records import NS_PER_S
from serving.config import service_url

__all__ = ["BarInterval", "EngineConfig"]

_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,47}$")


@dataclass(frozen=True, slots=True)
class BarInterval:
    """A bar length, in whole seconds (the one value every part of a session shares)."""

    seconds: int

    def __post_init__(self) -> None:
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int) or self.seconds <= 0:
            raise ConfigError(f"the bar interval must be a whole number of seconds > 0, got {self.seconds!r}")

    @property
    def ns(self) -> int:
        return self.seconds * NS_PER_S

    def start_of(self, ts_ns: int) -> int:
        """The start of the interval ``ts_ns`` falls in."""
        return ts_ns // self.ns * self.ns

    def __str__(self) -> str:
        return f"{self.seconds} s"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """What every session of the engine shares, fixed at start.

    Attributes:
        interval: the bar interval.
        namespace: the online store namespace of this engine's features (None: the default
            one the pipeline and model service read).
        serving_url: the model service.
        mode: always ``paper``.
    """

    interval: BarInterval = BarInterval(60)
    namespace: str | None = None
    serving_url: str = "http://127.0.0.1:3000"
    mode: str = "paper"

    def __post_init__(self) -> None:
        if self.mode != "paper":
            raise ConfigError(
                f"engine mode {self.mode!r} is not available: the engine trades on paper only "
                "(unset RRR_ENGINE_MODE or set it to 'paper')"
            )
        if self.namespace is not None and not _NAMESPACE.match(self.namespace):
            raise ConfigError(
                f"online namespace {self.namespace!r} is invalid: 1-48 lowercase letters, digits, '_' or '-'"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> EngineConfig:
        """Read the configuration from ``environ`` (default: the process environment); keyword
        arguments that are not None override what the environment says.

        Raises:
            ConfigError: a variable is malformed, or ``RRR_ENGINE_MODE`` asks for live trading.
        """
        env = os.environ if environ is None else environ
        mode = env.get("RRR_ENGINE_MODE", "paper").strip().lower()
        if mode not in ("paper", "live"):
            raise ConfigError(f"RRR_ENGINE_MODE must be 'paper', got {mode!r}")
        name = "RRR_BAR_SECONDS" if "RRR_BAR_SECONDS" in env else "RRR_ENGINE_BAR_SECONDS"
        raw = env.get(name, "60")
        try:
            seconds = int(raw)
            interval = BarInterval(seconds)
        except (ValueError, ConfigError) as exc:
            raise ConfigError(f"{name} must be a whole number of seconds > 0, got {raw!r}") from exc
        config = cls(
            interval=interval,
            namespace=env.get("RRR_ONLINE_NAMESPACE") or None,
            serving_url=service_url(env),
            mode=mode,
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        if isinstance(given.get("interval"), int):
            given["interval"] = BarInterval(given["interval"])  # type: ignore[arg-type]
        return replace(config, **given) if given else config  # type: ignore[arg-type]
