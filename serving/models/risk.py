"""Risk model: per-symbol volatility, VaR(99%) and ES(97.5%); portfolio VaR and stress tests.

The network forecasts next-period variance as a learned correction of the RiskMetrics EWMA:
``log sigma^2 = log ewma_0.94 + f(x)``, where ``x`` holds, relative to a slow EWMA (lambda
0.995, the symbol's long-run level): the log EWMA variance at three speeds (0.94, 0.97,
0.99) and the last ``lags`` returns, their absolute values and their negative parts (the
leverage effect). ``f`` starts at zero, so an untrained model is EWMA; training on the
Gaussian likelihood teaches it mean reversion to the long-run level and asymmetry, which
EWMA lacks. The inputs are scale-free, so one model serves every symbol.

VaR and ES are filtered historical simulation on the returns standardized by the model's own
forecasts (``z = r / sigma``). The 1% quantile of ``z`` is re-estimated at every step from
the history before it, as the more conservative of a long window (1,000 periods: stable) and a
short one (250: reacts when the tail fattens, as in a calm market that turns); with less history
than the short window, the quantile of the training residuals is used. ES(97.5%) is VaR times
the ratio of the 2.5% tail mean to the 1% quantile of the training residuals. Losses are
positive numbers.

Baselines, with the same treatment of quantiles: EWMA (lambda 0.94) and GARCH(1,1) with
Student-t innovations from ``arch``, fitted on the training window and run through the test
window with fixed parameters. Metrics: exceedance rate of the 99% VaR with the Kupiec
(unconditional coverage) and Christoffersen (independence) tests, and the pinball loss of the
1% quantile.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from serving.errors import TrainingDataError
from serving.models.common import JsonConfig, batches, check_finite_columns, pick_device, seed_everything

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "RiskConfig",
    "RiskResult",
    "build_model",
    "christoffersen",
    "gates",
    "index_returns",
    "kupiec",
    "pinball",
    "portfolio_risk",
    "predict",
    "train",
]

MODEL = "risk"
VAR_LEVEL = 0.01
ES_LEVEL = 0.025
_SPEEDS = (0.94, 0.97, 0.99)
_LONG = 0.995


@dataclass(frozen=True)
class RiskConfig(JsonConfig):
    """Hyperparameters of the risk model (saved with it as JSON)."""

    lags: int = 5
    hidden: int = 4
    steps: int = 1200
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    test_share: float = 0.4
    warmup: int = 100
    train_stride: int = 1
    seed: int = 7
    max_train_rows: int = 400_000
    fhs_windows: tuple[int, int] = (250, 1000)


def n_inputs(config: RiskConfig) -> int:
    return len(_SPEEDS) + 3 * config.lags


def _ewma(r2: np.ndarray, lam: float, start: float) -> np.ndarray:
    from scipy.signal import lfilter

    out, _ = lfilter([1.0 - lam], [1.0, -lam], r2, zi=[lam * start])
    return np.asarray(out)


def risk_inputs(returns: np.ndarray, config: RiskConfig) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``x[t]`` and base variance ``ewma[t]`` from returns up to and including ``t``."""
    r = np.asarray(returns, np.float64)
    start = float(np.mean(r[: max(config.warmup, 2)] ** 2)) or 1e-12
    r2 = r * r
    long = np.maximum(_ewma(r2, _LONG, start), 1e-20)
    speeds = [np.maximum(_ewma(r2, lam, start), 1e-20) for lam in _SPEEDS]
    scaled = r / np.sqrt(long)
    cols = [np.log(v / long) for v in speeds]
    for k in range(config.lags):
        lagged = np.concatenate([np.zeros(k), scaled[: len(scaled) - k]])
        cols += [np.clip(lagged, -10, 10), np.clip(np.abs(lagged), 0, 10), np.clip(np.minimum(lagged, 0.0), -10, 0)]
    return np.stack(cols, axis=1).astype(np.float32), speeds[0]


def build_model(config: RiskConfig) -> nn.Module:
    """A fresh network: log-variance correction over EWMA, zero at initialization."""
    import torch
    from torch import nn

    class RiskNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(n_inputs(config), config.hidden),
                nn.GELU(),
                nn.Linear(config.hidden, config.hidden),
                nn.GELU(),
                nn.Linear(config.hidden, 1),
            )
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)
            # Standardized-residual quantiles (filtered historical simulation), set by training.
            self.register_buffer("var_quantile", torch.tensor(stats.norm.ppf(VAR_LEVEL), dtype=torch.float32))
            self.register_buffer("es_tail_mean", torch.tensor(-stats.norm.pdf(1.96) / ES_LEVEL, dtype=torch.float32))

        def forward(self, x: torch.Tensor, base_var: torch.Tensor) -> torch.Tensor:
            """Forecast variance of the next return."""
            return base_var * torch.exp(self.net(x)[:, 0].clamp(-10.0, 10.0))

    return RiskNet()


@dataclass(frozen=True)
class RiskForecast:
    """Per-row forecasts for the next period (positive losses)."""

    volatility: np.ndarray
    var99: np.ndarray
    es975: np.ndarray


def predict(model: nn.Module, returns: np.ndarray, config: RiskConfig) -> RiskForecast:
    """Forecasts for the period after each return of one symbol's return series."""
    import torch

    r = np.asarray(returns, np.float64)
    x, base = risk_inputs(r, config)
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        var = model(torch.as_tensor(x, device=device), torch.as_tensor(base, dtype=torch.float32, device=device))
        sigma = np.sqrt(var.double().cpu().numpy())
        q_train, es_train = float(model.var_quantile), float(model.es_tail_mean)
    q = rolling_quantile(r, sigma, q_train, config.fhs_windows)
    return RiskForecast(sigma, -q * sigma, -q * (es_train / q_train) * sigma)


def rolling_quantile(
    returns: np.ndarray, sigma: np.ndarray, fallback: float, windows: tuple[int, int] = (250, 1000)
) -> np.ndarray:
    """Per row ``t``: the 1% quantile of ``returns[s + 1] / sigma[s]`` for ``s < t``, no look-ahead.

    The more conservative (lower) of the quantiles over the last ``windows`` standardized
    returns; ``fallback`` (the training residuals' quantile) while fewer than the short window
    exist.
    """
    z = pd.Series(np.concatenate([[np.nan], returns[1:] / sigma[:-1]]))  # z[t] is known at the close of t
    short, long = sorted(windows)
    q_short = z.rolling(short, min_periods=short).quantile(VAR_LEVEL)
    q_long = z.rolling(long, min_periods=short).quantile(VAR_LEVEL)
    q = np.fmin(q_short.to_numpy(), q_long.to_numpy())
    return np.where(np.isfinite(q), q, fallback)


# --------------------------------------------------------------------------- metrics


def pinball(returns: np.ndarray, quantile: np.ndarray, level: float = VAR_LEVEL) -> float:
    """Mean quantile (pinball) loss of ``quantile`` forecasts of ``returns`` at ``level``."""
    diff = returns - quantile
    return float(np.mean(np.maximum(level * diff, (level - 1.0) * diff)))


def kupiec(exceed: np.ndarray, level: float = VAR_LEVEL) -> float:
    """p-value of Kupiec's unconditional coverage test (exceedance rate equals ``level``)."""
    n, x = len(exceed), int(np.sum(exceed))
    if n == 0:
        return float("nan")
    rate = x / n
    log_null = (n - x) * math.log(1 - level) + x * math.log(level)
    log_alt = (n - x) * math.log(1 - rate) if rate < 1 else 0.0
    log_alt += x * math.log(rate) if x > 0 else 0.0
    return float(stats.chi2.sf(-2.0 * (log_null - log_alt), 1))


def christoffersen(exceed: np.ndarray) -> float:
    """p-value of Christoffersen's independence test (exceedances do not cluster)."""
    e = np.asarray(exceed, dtype=int)
    prev, nxt = e[:-1], e[1:]
    n00, n01 = int(np.sum((prev == 0) & (nxt == 0))), int(np.sum((prev == 0) & (nxt == 1)))
    n10, n11 = int(np.sum((prev == 1) & (nxt == 0))), int(np.sum((prev == 1) & (nxt == 1)))

    def ll(a: int, b: int, p: float) -> float:
        return (a * math.log(1 - p) if a else 0.0) + (b * math.log(p) if b else 0.0)

    total = n00 + n01 + n10 + n11
    if total == 0 or n01 + n11 == 0:
        return 1.0
    p = (n01 + n11) / total
    p0 = n01 / (n00 + n01) if n00 + n01 else 0.0
    p1 = n11 / (n10 + n11) if n10 + n11 else 0.0
    stat = -2.0 * (ll(n00 + n10, n01 + n11, p) - ll(n00, n01, p0) - ll(n10, n11, p1))
    return float(stats.chi2.sf(max(stat, 0.0), 1))


def _var_metrics(prefix: str, realized: np.ndarray, var99: np.ndarray) -> dict[str, float]:
    exceed = realized < -var99
    return {
        f"{prefix}exceedance_rate": float(exceed.mean()),
        f"{prefix}kupiec_p": kupiec(exceed),
        f"{prefix}christoffersen_p": christoffersen(exceed),
        f"{prefix}pinball": pinball(realized, -var99),
    }


def _fhs(z: np.ndarray) -> tuple[float, float]:
    q = float(np.quantile(z, VAR_LEVEL))
    tail = z[z <= np.quantile(z, ES_LEVEL)]
    return q, float(tail.mean())


# --------------------------------------------------------------------------- data


def check_data(returns: pd.DataFrame, config: RiskConfig) -> None:
    """Refuse unusable return data (``symbol, ts_ns, ret``) before any training."""
    missing = [c for c in ("symbol", "ts_ns", "ret") if c not in returns.columns]
    if missing:
        raise TrainingDataError(MODEL, f"missing column(s) {missing}")
    check_finite_columns(MODEL, returns, ["ret"])
    short = returns.groupby("symbol").size()
    short = short[short < 4 * config.warmup]
    if len(short) == len(returns["symbol"].unique()):
        raise TrainingDataError(MODEL, f"too few rows: every symbol has fewer than {4 * config.warmup} returns")
    flat = returns.groupby("symbol")["ret"].std()
    if (flat.fillna(0.0) == 0.0).any():
        raise TrainingDataError(MODEL, f"constant returns for {sorted(flat[flat.fillna(0.0) == 0.0].index)[:5]}")


def index_returns() -> pd.DataFrame:
    """Daily log returns of the S&P 500 and NASDAQ Composite shipped in ``arch`` (1999-2018)."""
    from arch.data import nasdaq, sp500

    frames = []
    for name, module in (("SP500", sp500), ("NASDAQ", nasdaq)):
        close = module.load()["Adj Close"]
        ret = np.log(close).diff().dropna()
        # In nanoseconds whatever unit the index was read in (`asi8` alone gave microseconds: 1970 dates).
        when = pd.DatetimeIndex(ret.index).as_unit("ns").asi8
        frames.append(pd.DataFrame({"symbol": name, "ts_ns": when, "ret": ret.to_numpy()}))
    return pd.concat(frames, ignore_index=True)


@dataclass
class RiskResult:
    """A trained risk model with its validation per symbol and pooled."""

    model: nn.Module
    config: RiskConfig
    metrics: dict[str, float]
    per_symbol: pd.DataFrame
    train_window: tuple[int, int]
    train_seconds: float
    device: str


def _split_series(returns: pd.DataFrame, config: RiskConfig) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    out = []
    for symbol, group in returns.sort_values(["symbol", "ts_ns"]).groupby("symbol", sort=True):
        r = group["ret"].to_numpy(np.float64)
        if len(r) < 4 * config.warmup:
            continue
        cut = int(len(r) * (1.0 - config.test_share))
        out.append((str(symbol), r, group["ts_ns"].to_numpy(), cut))
    return out


def train(
    returns: pd.DataFrame,
    config: RiskConfig | None = None,
    *,
    device: str | None = None,
    garch: bool | Collection[str] = True,
    groups: Mapping[str, str] | None = None,
) -> RiskResult:
    """Train on each symbol's first ``1 - test_share`` of returns and test on the rest.

    ``garch``: compare with GARCH(1,1) on every symbol (True), none (False) or the symbols named.
    ``groups``: symbol -> group (others: ``""``); when given, every group weighs the same in
    training (``max_train_rows`` split evenly, a small group resampled), so a few thousand
    daily index returns count as much as a million one-minute bars.
    """
    import torch

    config = config or RiskConfig()
    check_data(returns, config)
    device = pick_device(device)
    started = time.perf_counter()
    seed_everything(config.seed)
    series = _split_series(returns, config)
    xs, bases, targets, labels = [], [], [], []
    for symbol, r, _, cut in series:
        x, base = risk_inputs(r, config)
        # x[t], base[t] forecast r[t + 1]; training pairs stay inside [warmup, cut).
        idx = np.arange(config.warmup, cut - 1, config.train_stride)
        xs.append(x[idx])
        bases.append(base[idx])
        targets.append(r[idx + 1])
        labels.append(np.full(len(idx), (groups or {}).get(symbol, "")))
    x_train, base_train, y_train = np.concatenate(xs), np.concatenate(bases), np.concatenate(targets)
    sampler = np.random.default_rng(config.seed)
    if groups:
        group_of = np.concatenate(labels)
        names = sorted(set(group_of.tolist()))
        share = min(config.max_train_rows, len(x_train)) // len(names)
        keep = np.concatenate(
            [
                sampler.choice(rows, share, replace=len(rows) < share)
                for rows in (np.flatnonzero(group_of == name) for name in names)
            ]
        )
        x_train, base_train, y_train = x_train[keep], base_train[keep], y_train[keep]
    elif len(x_train) > config.max_train_rows:
        keep = sampler.choice(len(x_train), config.max_train_rows, replace=False)
        x_train, base_train, y_train = x_train[keep], base_train[keep], y_train[keep]
    model = build_model(config).to(device)
    xt = torch.as_tensor(x_train, device=device)
    yt = torch.as_tensor((y_train**2) / base_train, dtype=torch.float32, device=device)  # r^2 in units of base
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    model.train()
    step = 0
    while step < config.steps:  # a fixed number of updates: a few thousand daily rows or a million bars alike
        for batch in batches(len(xt), config.batch_size, shuffle=rng):
            index = torch.as_tensor(batch, device=device)
            log_ratio = model.net(xt[index])[:, 0].clamp(-10.0, 10.0)
            loss = 0.5 * (log_ratio + yt[index] * torch.exp(-log_ratio)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == config.steps:
                break
    model.eval()
    # Filtered historical simulation: quantiles of standardized training residuals.
    z_model, z_ewma = [], []
    for _, r, _, cut in series:
        sigma = predict(model, r, config).volatility
        _, base = risk_inputs(r, config)
        idx = np.arange(config.warmup, cut - 1)
        z_model.append(r[idx + 1] / sigma[idx])
        z_ewma.append(r[idx + 1] / np.sqrt(base[idx]))
    q_model, es_model = _fhs(np.concatenate(z_model))
    q_ewma, _ = _fhs(np.concatenate(z_ewma))
    with torch.no_grad():
        model.var_quantile.fill_(q_model)
        model.es_tail_mean.fill_(es_model)
    with_garch = {s for s, _, _, _ in series} if garch is True else set(garch or ())
    per_symbol = pd.DataFrame(
        [_validate_symbol(model, config, s, r, cut, q_ewma, s in with_garch) for s, r, _, cut in series]
    )
    metrics = pool_metrics(per_symbol)
    start = int(min(ts[0] for _, _, ts, _ in series))
    end = int(max(ts[cut - 1] for _, _, ts, cut in series))
    return RiskResult(model, config, metrics, per_symbol, (start, end), time.perf_counter() - started, device)


def _validate_symbol(
    model: nn.Module, config: RiskConfig, symbol: str, r: np.ndarray, cut: int, q_ewma: float, garch: bool
) -> dict[str, Any]:
    forecast = predict(model, r, config)
    _, base = risk_inputs(r, config)
    idx = np.arange(cut - 1, len(r) - 1)  # forecasts made at t for r[t + 1] in the test window
    realized = r[idx + 1]
    row: dict[str, Any] = {"symbol": symbol, "test_rows": len(idx)}
    row.update(_var_metrics("", realized, forecast.var99[idx]))
    ewma_sigma = np.sqrt(base)
    ewma_q = rolling_quantile(r, ewma_sigma, q_ewma, config.fhs_windows)
    row.update(_var_metrics("ewma_", realized, -(ewma_q * ewma_sigma)[idx]))
    es_hits = realized < -forecast.var99[idx]
    row["es_shortfall_ratio"] = (
        float(np.mean(-realized[es_hits]) / np.mean(forecast.es975[idx][es_hits])) if es_hits.any() else float("nan")
    )
    row["outputs_finite"] = float(np.isfinite(forecast.volatility).all())
    if garch:
        fhs_var, t_var = _garch_var(r, cut, config)
        row.update(_var_metrics("garch_", realized, fhs_var[idx]))
        row.update(_var_metrics("garch_t_", realized, t_var[idx]))
    return row


def _garch_var(r: np.ndarray, cut: int, config: RiskConfig) -> tuple[np.ndarray, np.ndarray]:
    """GARCH(1,1)-t fitted on ``r[:cut]`` with parameters then held fixed: one-step 99% VaR per row.

    Two quantile treatments: filtered historical simulation as for the model (the same rolling
    quantile of standardized residuals), and the fitted Student-t quantile.
    """
    from arch import arch_model

    scale = 1.0 / float(np.std(r[:cut]))  # unit variance: what the optimizer expects
    model = arch_model(r * scale, mean="Constant", vol="GARCH", p=1, q=1, dist="t")
    fitted = model.fit(last_obs=cut, disp="off", show_warning=False)
    forecast = fitted.forecast(start=0, horizon=1, reindex=False)  # row t forecasts r[t + 1]
    mean = forecast.mean.to_numpy()[:, 0] / scale
    sigma = np.sqrt(forecast.variance.to_numpy()[:, 0]) / scale
    q_t = float(model.distribution.ppf(VAR_LEVEL, fitted.params[-1:].to_numpy()))
    z_train = (r[1:cut] - mean[: cut - 1]) / sigma[: cut - 1]
    q_fhs = rolling_quantile(
        r - np.concatenate([[0.0], mean[:-1]]), sigma, float(np.quantile(z_train, VAR_LEVEL)), config.fhs_windows
    )
    return -(mean + q_fhs * sigma), -(mean + q_t * sigma)


def pool_metrics(per_symbol: pd.DataFrame) -> dict[str, float]:
    """Per-symbol validation metrics pooled, weighted by test rows."""
    weights = per_symbol["test_rows"].to_numpy(np.float64)
    out: dict[str, float] = {}
    for col in per_symbol.columns:
        if col in ("symbol", "test_rows"):
            continue
        values = per_symbol[col].to_numpy(np.float64)
        ok = np.isfinite(values)
        out[col] = float(np.average(values[ok], weights=weights[ok])) if ok.any() else float("nan")
    out["outputs_finite"] = float(per_symbol["outputs_finite"].min())
    return out


def gates(index_metrics: pd.DataFrame) -> dict[str, bool]:
    """The risk model's gates, from its per-symbol validation on the real index returns."""
    out: dict[str, bool] = {"outputs_finite": bool((index_metrics["outputs_finite"] == 1.0).all())}
    for _, row in index_metrics.iterrows():
        name = row["symbol"]
        out[f"{name}_kupiec_accepts_at_5pct"] = bool(row["kupiec_p"] >= 0.05)
        out[f"{name}_pinball_below_ewma"] = bool(row["pinball"] < row["ewma_pinball"])
        garch = min(row["garch_pinball"], row["garch_t_pinball"])  # the better of its two quantile treatments
        out[f"{name}_pinball_within_2pct_of_garch"] = bool(row["pinball"] <= 1.02 * garch)
    return out


# --------------------------------------------------------------------------- portfolio


@dataclass(frozen=True)
class PortfolioRisk:
    """Portfolio VaR/ES (positive losses, in the positions' currency) and stress results."""

    var99: float
    es975: float
    volatility: float
    stress: dict[str, float]


def portfolio_risk(
    positions: Mapping[str, float],
    volatility: Mapping[str, float],
    history: pd.DataFrame,
    *,
    lam: float = 0.94,
    worst_days: int = 3,
    factor_shocks: tuple[float, ...] = (-3.0, -5.0),
) -> PortfolioRisk:
    """VaR and ES of a portfolio of ``positions`` (notional per symbol).

    The covariance forecast takes each symbol's ``volatility`` (the model's forecast) and the
    EWMA (``lam``) correlation of ``history`` (wide frame: one column of returns per symbol,
    rows in time order). VaR and ES are Gaussian on the portfolio volatility. Stress results
    are losses under the ``worst_days`` worst historical periods of this portfolio and under
    market factor shocks of ``factor_shocks`` standard deviations passed through each
    symbol's beta to the equal-weighted market.
    """
    symbols = list(positions)
    unknown = [s for s in symbols if s not in volatility or s not in history.columns]
    if unknown:
        raise ValueError(f"no volatility forecast or return history for {unknown}")
    w = np.array([positions[s] for s in symbols], np.float64)
    sigma = np.array([volatility[s] for s in symbols], np.float64)
    rets = history[symbols].to_numpy(np.float64)
    rets = rets[np.isfinite(rets).all(axis=1)]
    if len(rets) < 2:
        raise ValueError("need at least 2 complete rows of return history")
    weights = lam ** np.arange(len(rets))[::-1]
    weights /= weights.sum()
    centered = rets - rets.mean(axis=0)
    cov = (centered * weights[:, None]).T @ centered
    sd = np.sqrt(np.clip(np.diag(cov), 1e-300, None))
    corr = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
    np.fill_diagonal(corr, 1.0)
    port_sigma = float(np.sqrt(max(w @ (np.outer(sigma, sigma) * corr) @ w, 0.0)))
    z99, z975 = stats.norm.ppf(0.99), stats.norm.ppf(0.975)
    var99 = z99 * port_sigma
    es975 = port_sigma * stats.norm.pdf(z975) / ES_LEVEL
    pnl = rets @ w
    stress = {f"worst_period_{k + 1}": float(-v) for k, v in enumerate(np.sort(pnl)[:worst_days])}
    market = rets.mean(axis=1)
    market_var = float(np.var(market))
    betas = (
        np.array([np.cov(rets[:, j], market)[0, 1] / market_var for j in range(len(symbols))])
        if market_var > 0
        else np.ones(len(symbols))
    )
    market_sd = math.sqrt(market_var)
    for shock in factor_shocks:
        stress[f"market_{shock:+g}sd"] = float(-(w @ (betas * shock * market_sd)))
    return PortfolioRisk(float(var99), float(es975), port_sigma, stress)
