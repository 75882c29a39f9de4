"""Model registry on the BentoML model store: save, list, load by stage, promote, roll back.

Every trained model is saved with ``bentoml.models.create`` as two files, ``weights.pt`` (a
state dict, loaded with ``torch.load(..., weights_only=True)``; a pickled module is never
loaded) and ``config.json`` (what rebuilds the network), plus metadata: metrics, baseline
metrics, gate results, feature-set versions, training window, seed, git commit and the
fingerprint of the validation data. The ``stage`` label is one of ``candidate``,
``production`` or ``archived``; at most one version of a model name is in production.

Promotion (:func:`promote`) refuses a candidate that failed any gate, and one that is worse
than the current production model on the same validation data (compared on the model's
primary metric; when the two were validated on different data the caller passes the
production model's score re-measured on the candidate's data). Rollback (:func:`rollback`)
archives the production version and re-promotes the one that was production before it.

CLI::

    python -m serving.registry list [NAME]
    python -m serving.registry show TAG
    python -m serving.registry promote TAG [--champion-score X]
    python -m serving.registry rollback NAME
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.announce import announce
from serving.config import ServingSettings
from serving.errors import ModelNotFoundError, PromotionError, RegistryError

__all__ = [
    "PRIMARY_METRIC",
    "ModelRecord",
    "get",
    "git_commit",
    "list_models",
    "load_state",
    "promote",
    "rollback",
    "save",
]

STAGES = ("candidate", "production", "archived")
# name -> (metadata metric compared at promotion, True when higher is better)
PRIMARY_METRIC: dict[str, tuple[str, bool]] = {
    "price": ("ic", True),
    "sentiment": ("unseen_macro_f1", True),
    "risk": ("index_pinball", False),
}


def _bentoml(settings: ServingSettings | None = None) -> Any:
    settings = settings or ServingSettings.from_env()
    os.environ.setdefault("BENTOML_HOME", str(settings.bentoml_home))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    Path(os.environ["BENTOML_HOME"]).mkdir(parents=True, exist_ok=True)
    import bentoml

    return bentoml


def store_path() -> Path:
    """The model store's folder (``BENTOML_HOME``)."""
    _bentoml()
    return Path(os.environ["BENTOML_HOME"])


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialize stage changes between processes sharing the model store."""
    path = store_path() / "registry.lock"
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class ModelRecord:
    """One stored model version."""

    tag: str
    name: str
    version: str
    stage: str
    created: str
    metadata: dict[str, Any]
    path: Path
    labels: dict[str, str]

    @property
    def gates(self) -> dict[str, bool]:
        return dict(self.metadata.get("gates", {}))

    @property
    def passed(self) -> bool:
        gates = self.gates
        return bool(gates) and all(gates.values())


def git_commit() -> str:
    """The current git commit of the project, or ``unknown`` outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _plain(value: Any) -> Any:
    """Metadata as builtins the store accepts (NaN and infinities become strings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None:
        return "none"
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    number = float(value)
    return str(number) if math.isnan(number) or math.isinf(number) else number


def save(name: str, state: Mapping[str, Any], config: Mapping[str, Any], metadata: Mapping[str, Any]) -> ModelRecord:
    """Store a trained model as a ``candidate``; returns its record."""
    import torch

    if name not in PRIMARY_METRIC:
        raise RegistryError(f"unknown model name {name!r}; expected one of {sorted(PRIMARY_METRIC)}")
    bentoml = _bentoml()
    meta = _plain({**metadata, "config": dict(config)})
    with bentoml.models.create(name, labels={"stage": "candidate"}, metadata=meta) as model:
        torch.save({k: v.detach().cpu() for k, v in state.items()}, model.path_of("weights.pt"))
        Path(model.path_of("config.json")).write_text(json.dumps(dict(config), indent=2, sort_keys=True))
        tag = str(model.tag)
    return get(tag)


def _record(model: Any) -> ModelRecord:
    info = model.info
    return ModelRecord(
        tag=str(model.tag),
        name=info.name,
        version=info.version,
        stage=info.labels.get("stage", "candidate"),
        created=info.creation_time.isoformat(),
        metadata=dict(info.metadata),
        path=Path(model.path),
        labels=dict(info.labels),
    )


def get(tag: str) -> ModelRecord:
    """The record of ``name:version`` (``name`` alone or ``name:latest`` is the newest)."""
    bentoml = _bentoml()
    try:
        return _record(bentoml.models.get(tag))
    except bentoml.exceptions.NotFound as exc:
        raise ModelNotFoundError(f"no model {tag!r} in the store {os.environ['BENTOML_HOME']}") from exc


def list_models(name: str | None = None, stage: str | None = None) -> list[ModelRecord]:
    """Stored versions, newest first, optionally of one name and one stage."""
    bentoml = _bentoml()
    try:
        stored = bentoml.models.list(name)
    except bentoml.exceptions.NotFound:  # no version of that name yet (an empty store)
        return []
    records = [_record(m) for m in stored]
    if stage is not None:
        records = [r for r in records if r.stage == stage]
    return sorted(records, key=lambda r: r.created, reverse=True)


def production(name: str) -> ModelRecord:
    """The production version of ``name``."""
    found = list_models(name, "production")
    if not found:
        raise ModelNotFoundError(f"no production version of {name!r}; promote a candidate first")
    return found[0]


def load_state(tag: str, device: str = "cpu") -> tuple[dict[str, Any], dict[str, Any], ModelRecord]:
    """State dict (``weights_only=True``), config and record of a stored model."""
    import torch

    record = get(tag)
    state = torch.load(record.path / "weights.pt", map_location=device, weights_only=True)
    config = json.loads((record.path / "config.json").read_text())
    return state, config, record


def annotate(tag: str, metadata: Mapping[str, Any], gates: Mapping[str, bool] | None = None) -> ModelRecord:
    """Add ``metadata`` (and gates, merged into the recorded ones) to a stored model.

    How a validation step that runs after training (the price model's strategy backtest)
    records its result where promotion reads it.
    """
    bentoml = _bentoml()
    with _locked():
        model = bentoml.models.get(tag)
        meta = model.info.metadata
        meta.update(_plain(dict(metadata)))
        if gates:
            meta["gates"] = {**dict(meta.get("gates", {})), **{k: bool(v) for k, v in gates.items()}}
        model.flush()
    return get(tag)


def _set_stage(tag: str, stage: str, **labels: str) -> None:
    bentoml = _bentoml()
    model = bentoml.models.get(tag)
    model.info.labels.update({"stage": stage, **labels})
    model.flush()


def promote(tag: str, *, champion_score: float | None = None, tolerance: float = 0.0) -> ModelRecord:
    """Make ``tag`` the production version of its name, if it earns it.

    It earns it when every gate passed and its primary metric is not worse than production's
    by more than ``tolerance`` (the noise a comparison on the same data allows).

    Raises:
        PromotionError: a gate failed, or the candidate is worse than production.
    """
    with _locked():
        record = get(tag)
        if not record.passed:
            failed = [g for g, ok in record.gates.items() if not ok] or ["no gates recorded"]
            raise PromotionError(f"{record.tag} failed its gates: {', '.join(failed)}; production is unchanged")
        metric, higher = PRIMARY_METRIC[record.name]
        current = list_models(record.name, "production")
        if current and current[0].tag != record.tag:
            champion = current[0]
            score = record.metadata.get("metrics", {}).get(metric)
            if champion_score is None:
                if champion.metadata.get("validation_fingerprint") != record.metadata.get("validation_fingerprint"):
                    raise PromotionError(
                        f"{record.tag} and production {champion.tag} were validated on different data: "
                        f"re-measure production's {metric} on the candidate's data and pass it as champion_score"
                    )
                champion_score = champion.metadata.get("metrics", {}).get(metric)
            if not isinstance(score, int | float) or not isinstance(champion_score, int | float):
                raise PromotionError(f"{metric} is missing for {record.tag} or production {champion.tag}")
            worse = score < champion_score - tolerance if higher else score > champion_score + tolerance
            if worse:
                raise PromotionError(
                    f"{record.tag} has {metric} {score:.6g}, worse than production {champion.tag} "
                    f"({champion_score:.6g}) by more than the tolerance {tolerance:.4g}; production is unchanged"
                )
            _set_stage(champion.tag, "archived")
        _set_stage(record.tag, "production", promoted_at=f"{time.time():.6f}")
        promoted = get(record.tag)
    announce(promoted.tag)  # running model services swap at once (their poll is the fallback)
    return promoted


def rollback(name: str) -> ModelRecord:
    """Archive the production version of ``name`` and re-promote the one before it."""
    with _locked():
        current = production(name)
        now = _promoted_at(current) or float("inf")
        previous = [r for r in list_models(name, "archived") if 0.0 < (_promoted_at(r) or 0.0) < now]
        if not previous:
            raise ModelNotFoundError(f"{name!r} has no earlier production version to roll back to")
        target = max(previous, key=lambda r: _promoted_at(r) or 0.0)
        _set_stage(current.tag, "archived", rolled_back="true", promoted_at="0")
        _set_stage(target.tag, "production", promoted_at=f"{time.time():.6f}")
        restored = get(target.tag)
    announce(restored.tag)
    return restored


def _promoted_at(record: ModelRecord) -> float | None:
    raw = record.labels.get("promoted_at")
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value else None


def main(argv: list[str] | None = None) -> int:
    """``python -m serving.registry``: list, show, promote and roll back models."""
    parser = argparse.ArgumentParser(prog="python -m serving.registry", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="stored versions, newest first")
    listing.add_argument("name", nargs="?")
    show = sub.add_parser("show", help="metadata of one version")
    show.add_argument("tag")
    prom = sub.add_parser("promote", help="make a candidate the production version (gates permitting)")
    prom.add_argument("tag")
    prom.add_argument("--champion-score", type=float, default=None)
    back = sub.add_parser("rollback", help="re-promote the previous production version")
    back.add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for r in list_models(args.name):
                metric, _ = PRIMARY_METRIC.get(r.name, ("", True))
                score = r.metadata.get("metrics", {}).get(metric)
                gates = "pass" if r.passed else "FAIL"
                print(f"{r.tag:40} {r.stage:11} gates={gates:4} {metric}={score}  {r.created}")
        elif args.command == "show":
            r = get(args.tag)
            print(json.dumps({"tag": r.tag, "stage": r.stage, "created": r.created, **r.metadata}, indent=2))
        elif args.command == "promote":
            print(f"{promote(args.tag, champion_score=args.champion_score).tag} is now in production")
        else:
            print(f"{rollback(args.name).tag} is back in production")
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
