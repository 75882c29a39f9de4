"""The platform's features, declared once, and the feature set of each model.

Every feature is written in bars of the set's interval (1 minute by default). Training,
the offline store, the online store and serving all import the sets from here.

* ``price``: the price model's inputs: returns over several horizons, returns scaled by
  volatility, realized and range-based volatility, volume and VWAP, momentum oscillators,
  taker order-flow imbalance, time of day, and the market factor with a rolling beta.
* ``risk``: the risk model's inputs: returns, volatility at several speeds (close-to-close,
  range-based, EWMA), a volatility regime ratio and market exposure.
* ``price_ohlcv``: the price model's inputs for sources that deliver only OHLCV bars (no
  trade counts, taker volume, VWAP or news): returns, volatility, volume, momentum, time of
  day, and the market factor with a 60-bar beta; the longest lookback is 60 bars, so daily
  bars are usable after a quarter of history.
* ``sentiment``: per-symbol news sentiment, decayed sums of headline scores and counts by
  publication time.

:func:`resolve` gives any set for another bar length and session calendar (``with_interval``
and ``with_calendar``: the same math, its own version).
"""

from __future__ import annotations

import math

from feature_store.errors import UnknownFeatureError
from feature_store.features.expressions import (
    Expr,
    col,
    cos,
    cross_mean,
    decay_sum,
    ewm,
    lag,
    log,
    log1p,
    maximum,
    rolling_sum,
    sin,
    sqrt,
)
from feature_store.features.registry import Feature, FeatureSet

__all__ = ["FEATURE_SETS", "ONLINE_DEFAULT", "PRICE", "PRICE_OHLCV", "RISK", "SENTIMENT", "feature_set", "resolve"]

_open, _high, _low, _close = col("open"), col("high"), col("low"), col("close")
_volume, _buy_volume, _vwap = col("volume"), col("buy_volume"), col("vwap")
_log_close = log(_close)


def _ret(bars: int) -> Expr:
    return _log_close - lag(_log_close, bars)


def _mean(x: Expr, window: int) -> Expr:
    return rolling_sum(x, window) / window


_ret_1 = _ret(1)


def _rvol(window: int) -> Expr:
    return sqrt(_mean(_ret_1 * _ret_1, window))


_hl2 = log(_high / _low) * log(_high / _low)
_co2 = log(_close / _open) * log(_close / _open)
_rvol_60 = _rvol(60)
_mkt_ret_1 = cross_mean(_ret_1)
_beta_240 = (
    240.0 * rolling_sum(_ret_1 * _mkt_ret_1, 240) - rolling_sum(_ret_1, 240) * rolling_sum(_mkt_ret_1, 240)
) / (240.0 * rolling_sum(_mkt_ret_1 * _mkt_ret_1, 240) - rolling_sum(_mkt_ret_1, 240) * rolling_sum(_mkt_ret_1, 240))
_log_volume = log1p(_volume)
_volume_mean_60 = _mean(_log_volume, 60)
# Zero-volume bars (gap-filled) have no flow: the floor makes their imbalance 0, not NaN.
_imbalance_1 = (2.0 * _buy_volume - _volume) / maximum(_volume, 1e-12)
_up = maximum(_ret_1, 0.0)
_down = maximum(-_ret_1, 0.0)
_macd = (ewm(_log_close, 2.0 / 13.0) - ewm(_log_close, 2.0 / 27.0)) / _rvol_60
_day = col("day_angle")
_trades = col("trades")
_resid_z = (_ret_1 - _beta_240 * _mkt_ret_1) / _rvol_60


def _beta(window: int) -> Expr:
    n = float(window)
    cov = n * rolling_sum(_ret_1 * _mkt_ret_1, window) - rolling_sum(_ret_1, window) * rolling_sum(_mkt_ret_1, window)
    var = n * rolling_sum(_mkt_ret_1 * _mkt_ret_1, window) - rolling_sum(_mkt_ret_1, window) * rolling_sum(
        _mkt_ret_1, window
    )
    return cov / var


_resid_z_60 = (_ret_1 - _beta(60) * _mkt_ret_1) / _rvol_60

_FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("ret_1", _ret_1, "log return over the last bar"),
        Feature("ret_5", _ret(5), "log return over the last 5 bars"),
        Feature("ret_15", _ret(15), "log return over the last 15 bars"),
        Feature("ret_60", _ret(60), "log return over the last 60 bars"),
        Feature("ret_1_z", _ret_1 / _rvol_60, "last bar's log return in units of 60-bar realized volatility"),
        Feature(
            "ret_15_z", _ret(15) / (_rvol_60 * math.sqrt(15.0)), "15-bar log return in units of its expected spread"
        ),
        Feature("rvol_15", _rvol(15), "realized volatility per bar over 15 bars (root mean squared return)"),
        Feature("rvol_60", _rvol_60, "realized volatility per bar over 60 bars"),
        Feature("rvol_240", _rvol(240), "realized volatility per bar over 240 bars"),
        Feature("vol_ratio_15_240", _rvol(15) / _rvol(240), "short over long realized volatility (regime)"),
        Feature(
            "parkinson_30",
            sqrt(_mean(_hl2, 30) / (4.0 * math.log(2.0))),
            "Parkinson high-low volatility per bar over 30 bars",
        ),
        Feature(
            "garman_klass_30",
            sqrt(maximum(_mean(0.5 * _hl2 - (2.0 * math.log(2.0) - 1.0) * _co2, 30), 0.0)),
            "Garman-Klass open-high-low-close volatility per bar over 30 bars",
        ),
        Feature("ewma_vol", sqrt(ewm(_ret_1 * _ret_1, 0.06)), "RiskMetrics EWMA volatility per bar (lambda 0.94)"),
        Feature(
            "volume_z_60",
            (_log_volume - _volume_mean_60)
            / sqrt(_mean(_log_volume * _log_volume, 60) - _volume_mean_60 * _volume_mean_60),
            "z-score of log(1 + volume) against the last 60 bars",
        ),
        Feature(
            "vwap_dist_60",
            (_log_close - log(rolling_sum(_vwap * _volume, 60) / rolling_sum(_volume, 60))) / _rvol_60,
            "distance of the close to the 60-bar VWAP, in units of realized volatility",
        ),
        Feature(
            "rsi_14",
            2.0 * ewm(_up, 1.0 / 14.0) / (ewm(_up, 1.0 / 14.0) + ewm(_down, 1.0 / 14.0)) - 1.0,
            "Wilder's 14-bar RSI rescaled to [-1, 1]",
        ),
        Feature("macd", _macd, "MACD (12/26-bar EMAs of log price) in units of realized volatility"),
        Feature("macd_hist", _macd - ewm(_macd, 0.2), "MACD minus its 9-bar signal line"),
        Feature("imbalance_1", _imbalance_1, "taker buy minus sell volume over volume, last bar"),
        Feature("imbalance_ewm_10", ewm(_imbalance_1, 0.1), "exponentially weighted taker imbalance (alpha 0.1)"),
        Feature(
            "imbalance_15",
            (2.0 * rolling_sum(_buy_volume, 15) - rolling_sum(_volume, 15)) / maximum(rolling_sum(_volume, 15), 1e-12),
            "taker imbalance over 15 bars",
        ),
        Feature("tod_sin", sin(_day), "time of day (UTC), sine"),
        Feature("tod_cos", cos(_day), "time of day (UTC), cosine"),
        Feature("vol_ratio_15_60", _rvol(15) / _rvol_60, "short over medium realized volatility (regime)"),
        Feature("beta_60", _beta(60), "rolling 60-bar beta of the symbol's returns to the market factor"),
        Feature(
            "resid_z_ewm_10_b60",
            ewm(_resid_z_60, 0.1),
            "exponentially weighted residual return z-score against a 60-bar beta (alpha 0.1)",
        ),
        Feature(
            "range_z_30",
            log(_high / _low) / _rvol(30),
            "last bar's high-low range in units of 30-bar realized volatility",
        ),
        Feature("mkt_ret_1", _mkt_ret_1, "equal-weighted mean 1-bar log return of the universe (market factor)"),
        Feature("mkt_ret_15", cross_mean(_ret(15)), "equal-weighted mean 15-bar log return of the universe"),
        Feature("beta_240", _beta_240, "rolling 240-bar beta of the symbol's returns to the market factor"),
        Feature(
            "resid_ret_1_z",
            _resid_z,
            "last bar's return net of beta times the market, in units of realized volatility",
        ),
        Feature(
            "resid_z_ewm_10",
            ewm(_resid_z, 0.1),
            "exponentially weighted residual return z-score (alpha 0.1): recent idiosyncratic shocks",
        ),
        Feature(
            "trade_rate_30_720",
            log((rolling_sum(_trades, 30) + 1.0) / 30.0) - log((rolling_sum(_trades, 720) + 1.0) / 720.0),
            "log trade count over 30 bars against 720 bars: activity (regime) indicator",
        ),
        Feature(
            "trade_rate_ewm_20",
            log1p(ewm(_trades, 0.05)) - log1p(_mean(_trades, 720)),
            "log(1 + EWMA trade count, alpha 0.05) against the 720-bar mean",
        ),
        Feature(
            "news_score_hl_15", decay_sum(col("news_score"), 15.0), "headline scores, decayed sum, half-life 15 bars"
        ),
        Feature(
            "news_score_hl_60", decay_sum(col("news_score"), 60.0), "headline scores, decayed sum, half-life 60 bars"
        ),
        Feature(
            "news_score_hl_240", decay_sum(col("news_score"), 240.0), "headline scores, decayed sum, half-life 240 bars"
        ),
        Feature("news_count_hl_60", decay_sum(col("news_count"), 60.0), "headlines, decayed count, half-life 60 bars"),
    )
}


def _set(name: str, description: str, names: list[str]) -> FeatureSet:
    return FeatureSet(name, tuple(_FEATURES[n] for n in names), 60, description)


PRICE = _set(
    "price",
    "inputs of the price model: returns, volatility, volume, momentum, order flow, time of day, market",
    [
        "ret_1", "ret_5", "ret_15", "ret_60", "ret_1_z", "ret_15_z", "rvol_15", "rvol_60", "rvol_240",
        "vol_ratio_15_240", "parkinson_30", "garman_klass_30", "volume_z_60", "vwap_dist_60", "rsi_14", "macd",
        "macd_hist", "imbalance_1", "imbalance_ewm_10", "imbalance_15", "tod_sin", "tod_cos", "mkt_ret_1",
        "mkt_ret_15", "beta_240", "resid_ret_1_z", "resid_z_ewm_10", "trade_rate_30_720",
        "trade_rate_ewm_20",
    ],
)  # fmt: skip
RISK = _set(
    "risk",
    "inputs of the risk model: returns, volatility at several speeds, regime and market exposure",
    [
        "ret_1", "ret_15", "rvol_15", "rvol_60", "rvol_240", "vol_ratio_15_240", "parkinson_30", "garman_klass_30",
        "ewma_vol", "mkt_ret_1", "beta_240", "volume_z_60",
    ],
)  # fmt: skip
PRICE_OHLCV = _set(
    "price_ohlcv",
    "inputs of the price model from OHLCV bars alone: returns, volatility, volume, momentum, time of day, market",
    [
        "ret_1", "ret_5", "ret_15", "ret_1_z", "ret_15_z", "rvol_15", "rvol_60", "vol_ratio_15_60",
        "parkinson_30", "garman_klass_30", "range_z_30", "volume_z_60", "rsi_14", "macd", "macd_hist",
        "tod_sin", "tod_cos", "mkt_ret_1", "mkt_ret_15", "beta_60", "resid_z_ewm_10_b60",
    ],
)  # fmt: skip
SENTIMENT = _set(
    "sentiment",
    "per-symbol news sentiment: decayed sums of headline scores and counts by publication time",
    ["news_score_hl_15", "news_score_hl_60", "news_score_hl_240", "news_count_hl_60"],
)

FEATURE_SETS: dict[str, FeatureSet] = {s.name: s for s in (PRICE, PRICE_OHLCV, RISK, SENTIMENT)}
#: The sets an engine computes online unless told otherwise (it adds those its served models read).
ONLINE_DEFAULT: tuple[str, ...] = ("price", "risk", "sentiment")


def feature_set(name: str) -> FeatureSet:
    """The registered feature set called ``name``.

    Raises:
        UnknownFeatureError: no set has that name (the error lists the known ones).
    """
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise UnknownFeatureError(f"unknown feature set {name!r}; known: {sorted(FEATURE_SETS)}") from None


def resolve(name: str, interval_s: int = 60, calendar: str = "24/7") -> FeatureSet:
    """The set ``name`` for bars of ``interval_s`` seconds on the session calendar ``calendar``.

    Raises:
        UnknownFeatureError: no set has that name.
    """
    return feature_set(name).with_interval(interval_s).with_calendar(calendar)
