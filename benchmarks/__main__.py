"""Run every ``benchmarks/bench_*.py`` (each in its own process) and print one table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.results_file import markdown_table


def main() -> int:
    failed = []
    for script in sorted(Path(__file__).resolve().parent.glob("bench_*.py")):
        print(f"== {script.stem}", flush=True)
        if subprocess.run([sys.executable, "-m", f"benchmarks.{script.stem}"], check=False).returncode != 0:
            failed.append(script.stem)
    print()
    print(markdown_table())
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
