"""Training the three models on the default data (20 symbols x 30 days), full settings.

``train_all_models_s`` is the wall time of :func:`serving.training.train_all` (sentiment,
price and risk, with their validation and the GARCH baselines) against the 300-second
budget; each model's own training time and its headline validation figures are reported
beside the baseline or gate they are compared with. The models go to a scratch model store.
On a machine with CUDA the same run uses the GPU (the figures name the device).
"""

from __future__ import annotations

import os
import tempfile
import time

import pandas as pd

from benchmarks.results_file import Figure, write_results

BUDGET_S = 300.0


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="rrr-bench-models-") as home:
        os.environ["BENTOML_HOME"] = home
        import torch

        from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market
        from serving.training import FULL, metrics_frame, report_table, train_all

        torch.set_num_threads(os.cpu_count() or 1)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        market = simulate_market(SyntheticMarketConfig())
        started = time.perf_counter()
        reports = train_all(market, FULL)
        total = time.perf_counter() - started
        print(report_table(reports))
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(metrics_frame(reports).to_string(index=False))
    p, s, r = reports["price"].metrics, reports["sentiment"].metrics, reports["risk"].metrics
    figures = [
        Figure("train_all_models_s", total, "s", f"budget, 2 CPU cores ({device} here)", BUDGET_S),
        Figure("train_price_s", reports["price"].train_seconds, "s", "budget (s)", BUDGET_S),
        Figure("train_sentiment_s", reports["sentiment"].train_seconds, "s", "budget (s)", BUDGET_S),
        Figure("train_risk_s", reports["risk"].train_seconds, "s", "budget (s)", BUDGET_S),
        Figure("price_holdout_ic", p["ic"], "", "0.7 x oracle IC", 0.7 * p["oracle_ic"]),
        Figure("price_holdout_ic_vs_ridge", p["ic"], "", "ridge IC", p["ridge_ic"]),
        Figure("price_closed_form_ic", p["closed_form_ic"], "", "with the sequence encoder", p["ic"]),
        Figure("price_ls_sharpe", p["ls_sharpe"], "", "ridge long-short Sharpe", p["ridge_ls_sharpe"]),
        Figure("sentiment_holdout_macro_f1", s["holdout_macro_f1"], "", "gate", 0.9),
        Figure(
            "sentiment_unseen_macro_f1", s["unseen_macro_f1"], "", "lexicon + 0.15", s["lexicon_unseen_macro_f1"] + 0.15
        ),
    ]
    for index in ("SP500", "NASDAQ"):
        figures += [
            Figure(f"risk_{index}_kupiec_p", r[f"{index}_kupiec_p"], "", "accept at", 0.05),
            Figure(f"risk_{index}_pinball", r[f"{index}_pinball"], "", "EWMA pinball", r[f"{index}_ewma_pinball"]),
            Figure(
                f"risk_{index}_pinball_vs_garch",
                r[f"{index}_pinball"],
                "",
                "better GARCH(1,1) x 1.02",
                1.02 * min(r[f"{index}_garch_pinball"], r[f"{index}_garch_t_pinball"]),
            ),
        ]
    write_results("bench_models", figures)


if __name__ == "__main__":
    run()
