"""Untrained sample models, saved to the model store to try the service without the pipeline.

``python -m serving.sample_models`` saves one price, sentiment and risk model into the store
(``BENTOML_HOME``) and promotes them. Their weights are random (the sentiment model keeps the
pretrained encoder with a random head): the service answers with the right shapes and
versions, not with useful forecasts. Run the Dagster pipeline (``make demo``) for trained ones.
Their metadata says ``sample: true`` and their gates are recorded as passed, so that they can
be promoted and replaced by each other.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from serving import registry
from serving.errors import ModelNotFoundError, PromotionError, RegistryError

__all__ = ["save_price", "save_risk", "save_sentiment", "seed"]

_FINGERPRINT = {"price": "sample-price", "sentiment": "sample-sentiment", "risk": "sample-risk"}


def _meta(name: str, score: float, **extra: Any) -> dict[str, Any]:
    metric, _ = registry.PRIMARY_METRIC[name]
    return {
        "sample": True,
        "metrics": {metric: score},
        "gates": {"sample_model": True},
        "validation_fingerprint": _FINGERPRINT[name],
        "git_commit": registry.git_commit(),
        **extra,
    }


def save_price(
    seed: int = 0, score: float = 0.0, interval_s: int = 60, strategy: dict[str, Any] | None = None
) -> registry.ModelRecord:
    """A price model with random signal coefficients (``seed``), reading today's feature versions
    computed on ``interval_s`` bars, with ``strategy`` as if validated with it (None: none)."""
    import torch

    from feature_store.features.catalog import PRICE, SENTIMENT
    from serving.models import price

    config = price.PriceConfig()
    torch.manual_seed(seed)
    model = price.build_model(config)
    with torch.no_grad():
        model.coef.normal_(0.0, 0.05)
    versions = {
        "price": PRICE.with_interval(interval_s).version,
        "sentiment": SENTIMENT.with_interval(interval_s).version,
    }
    extra = {"strategy": strategy} if strategy is not None else {}
    meta = _meta("price", score, feature_sets=versions, interval_s=interval_s, **extra)
    return registry.save("price", model.state_dict(), config.to_json(), meta)


def save_sentiment(seed: int = 0, score: float = 0.0) -> registry.ModelRecord:
    """The pretrained MiniLM encoder with a random head."""
    import torch

    from serving.models import sentiment

    config = sentiment.SentimentConfig()
    torch.manual_seed(seed)
    tokenizer, encoder = sentiment.load_encoder("cpu")
    model = sentiment.build_model(config, encoder, tokenizer)
    state = {k: v for k, v in model.state_dict().items() if k.startswith("head.")}
    return registry.save("sentiment", state, config.to_json(), _meta("sentiment", score))


def save_risk(seed: int = 0, score: float = 1.0) -> registry.ModelRecord:
    """A risk model at its initialization: the EWMA forecast with Gaussian quantiles."""
    import torch

    from serving.models import risk

    config = risk.RiskConfig()
    torch.manual_seed(seed)
    model = risk.build_model(config)
    return registry.save("risk", model.state_dict(), config.to_json(), _meta("risk", score))


def seed(*, promote: bool = True, interval_s: int = 60) -> dict[str, str]:
    """Save (and promote) one sample model of each kind for ``interval_s`` bars; returns name -> tag.

    Raises:
        PromotionError: ``promote`` and the store already serves trained models (the pipeline's):
            sample models never replace them, and nothing is saved.
    """
    if promote:
        trained = []
        for name in ("price", "sentiment", "risk"):
            try:
                current = registry.production(name)
            except ModelNotFoundError:
                continue
            if not current.metadata.get("sample"):
                trained.append(current.tag)
        if trained:
            raise PromotionError(
                f"the model store {registry.store_path()} already serves trained models ({', '.join(trained)}); "
                "sample models would not replace them and none was saved. Point BENTOML_HOME at another "
                "folder to try sample models, or pass --no-promote to keep them as candidates"
            )
    records = {"price": save_price(interval_s=interval_s), "sentiment": save_sentiment(), "risk": save_risk()}
    if promote:
        for record in records.values():
            registry.promote(record.tag)
    return {name: record.tag for name, record in records.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.sample_models", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-promote", action="store_true", help="save them as candidates only")
    parser.add_argument("--interval-s", type=int, default=60, help="bar length of the features they read")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(seed(promote=not args.no_promote, interval_s=args.interval_s)))
    except RegistryError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
