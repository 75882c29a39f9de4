"""A trading journal PostgreSQL could not take at a live stop, kept in a file until the next start.

:class:`JournalWrite` is one journal write as plain statements and arguments (what
:meth:`~engine.trading.store.TradingStore.statements` builds). :func:`spool` keeps one in a
file under ``<directory>/journal/<account>/`` (see :func:`engine.durable.write_durably`);
:func:`read_spooled` gives them back, oldest first. Decimals stay exact (``{"decimal": text}``)
and a NaN or an infinity, which JSON has not, is kept as ``{"float": text}``.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Container, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from engine.durable import write_durably
from feature_store.errors import StorageError

__all__ = ["JournalWrite", "read_spooled", "spool"]


@dataclass(frozen=True)
class JournalWrite:
    """The statements of one journal write, by name, with their arguments."""

    account: str
    statements: list[tuple[str, list[Any]]]
    decision_span: tuple[int, int] | None
    entries: int


def spool(write: JournalWrite, directory: Path) -> Path:
    """Keep ``write`` in a file of its account under ``directory``; return the file's path."""
    folder = _folder(directory, write.account)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.time_ns():020d}.json"
    body = {
        "account": write.account,
        "decision_span": write.decision_span,
        "entries": write.entries,
        "statements": [[name, _encode(args)] for name, args in write.statements],
    }
    write_durably(path, orjson.dumps(body))
    return path


def read_spooled(directory: Path, account: str, statements: Container[str]) -> Iterator[tuple[Path, JournalWrite]]:
    """The journals ``account`` spooled under ``directory``, oldest first, with their files.

    Raises:
        StorageError: a file is not a spooled journal of ``account`` made of ``statements``
            (named; it is left where it is).
    """
    folder = _folder(directory, account)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            body = orjson.loads(path.read_bytes())
            named = [(str(name), _decode(args)) for name, args in body["statements"]]
            if body["account"] != account or any(name not in statements for name, _ in named):
                raise ValueError(f"not a journal of account {account!r}")
            span = body["decision_span"]
            write = JournalWrite(account, named, (int(span[0]), int(span[1])) if span else None, int(body["entries"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise StorageError(f"{path} is not a spooled trading journal ({exc}); move it away to start") from exc
        yield path, write


def _folder(directory: Path, account: str) -> Path:
    safe = re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", account) and account not in {".", ".."}
    return Path(directory) / "journal" / (account if safe else hashlib.sha256(account.encode()).hexdigest()[:32])


def _encode(value: Any) -> Any:
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        return float(value["float"]) if "float" in value else Decimal(value["decimal"])
    return value
