"""Write one benchmark's figures as ``benchmarks/results/<script>.json`` and read them back."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Figure:
    """One measured number beside the limit it is compared with (measured in the same run)."""

    name: str
    value: float
    unit: str
    limit: str
    limit_value: float | None


def machine() -> str:
    """A short description of the machine the numbers were measured on."""
    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def write_results(benchmark: str, figures: list[Figure]) -> Path:
    """Store the figures of ``benchmark`` and print them."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{benchmark}.json"
    payload = {
        "benchmark": benchmark,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "figures": [asdict(f) for f in figures],
    }
    path.write_text(json.dumps(payload, indent=2))
    for f in figures:
        limit = "" if f.limit_value is None else f" (limit: {f.limit} = {f.limit_value:,.4g})"
        print(f"{benchmark}: {f.name} = {f.value:,.4g} {f.unit}{limit}")
    return path


def markdown_table(benchmarks: list[str] | None = None) -> str:
    """The stored results of ``benchmarks`` (default: all) as one markdown table."""
    lines = [
        "| benchmark | measured (UTC) | figure | value | unit | compared with | limit value |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS.glob("*.json")):
        if benchmarks is not None and path.stem not in benchmarks:
            continue
        data = json.loads(path.read_text())
        for f in data["figures"]:
            limit_value = "" if f["limit_value"] is None else f"{f['limit_value']:,.4g}"
            cells = [
                data["benchmark"], data["when"], f["name"], f"{f['value']:,.4g}", f["unit"], f["limit"], limit_value
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
