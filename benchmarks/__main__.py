"""Run every ``benchmarks/bench_*.py`` (or those named: ``python -m benchmarks bench_pipeline``),
each in its own process, and print one table of what this run measured.

A benchmark's earlier results are removed before it runs, so one that fails shows nothing
rather than an old figure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.results_file import RESULTS, markdown_table


def main() -> int:
    failed = []
    wanted = set(sys.argv[1:])
    for script in sorted(Path(__file__).resolve().parent.glob("bench_*.py")):
        if wanted and script.stem not in wanted:
            continue
        (RESULTS / f"{script.stem}.json").unlink(missing_ok=True)
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
