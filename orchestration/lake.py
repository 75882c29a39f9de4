"""Files under ``$RRR_HOME/lake``: raw daily partitions as the source delivered them, and
the artefacts passed between assets (training sets, scored news, validation data).

Every write goes to a temporary file first and is renamed into place, so a reader never
sees half a file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

RAW_TABLES = ("trades", "bars", "news", "oracle")


def raw_path(lake: Path, table: str, day: str) -> Path:
    """``lake/raw/<table>/<YYYY-MM-DD>.parquet``."""
    return lake / "raw" / table / f"{day}.parquet"


def write_frame(path: Path, frame: pd.DataFrame) -> Path:
    """Write ``frame`` as Parquet atomically; return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def read_frame(path: Path) -> pd.DataFrame:
    """Read a Parquet file written by :func:`write_frame`, naming it when it is missing."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: materialize the asset that writes it first")
    return pd.read_parquet(path)


def read_raw(lake: Path, table: str, days: Sequence[str]) -> pd.DataFrame:
    """The raw ``table`` of ``days``, concatenated (days never landed are named in the error)."""
    missing = [d for d in days if not raw_path(lake, table, d).exists()]
    if missing:
        raise FileNotFoundError(
            f"raw {table} of {', '.join(missing[:5])} not landed yet: materialize raw_{table} first"
        )
    frames = [pd.read_parquet(raw_path(lake, table, d)) for d in days]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.read_parquet(raw_path(lake, table, days[0]))


def landed_days(lake: Path, table: str = "bars", *, source: str | None = None) -> list[str]:
    """Days whose raw ``table`` has landed, in order (only those landed from ``source`` if given)."""
    folder = lake / "raw" / table
    days = sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []
    if source is not None:
        days = [d for d in days if landed_source(lake, d) == source]
    return days


def mark_source(lake: Path, day: str, source: str) -> None:
    """Record which source ``day``'s raw partition was landed from."""
    path = lake / "raw" / "sources" / f"{day}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(source)
    os.replace(tmp, path)


def landed_source(lake: Path, day: str) -> str | None:
    """The source ``day``'s raw partition was landed from (None before sources were recorded)."""
    path = lake / "raw" / "sources" / f"{day}.txt"
    return path.read_text().strip() if path.exists() else None
