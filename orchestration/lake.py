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


def landed_days(lake: Path, table: str = "bars") -> list[str]:
    """Days whose raw ``table`` has landed, in order."""
    folder = lake / "raw" / table
    return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []
