"""Run every ``benchmarks/bench_*.py`` (or those named: ``python -m benchmarks bench_pipeline``),
each in its own process, and print one table of what this run measured, each figure with
the time it was measured.

Every earlier result is removed first (only the named benchmarks' when some are named), and
the table shows only the benchmarks of this run, so one that fails shows nothing rather than
an old figure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.results_file import RESULTS, markdown_table


def main() -> int:
    failed = []
    wanted = set(sys.argv[1:])
    scripts = [s for s in sorted(Path(__file__).resolve().parent.glob("bench_*.py")) if not wanted or s.stem in wanted]
    stale = RESULTS.glob("*.json") if not wanted else (RESULTS / f"{s.stem}.json" for s in scripts)
    for path in list(stale):
        path.unlink(missing_ok=True)
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        if subprocess.run([sys.executable, "-m", f"benchmarks.{script.stem}"], check=False).returncode != 0:
            failed.append(script.stem)
    print()
    print(markdown_table([s.stem for s in scripts]))
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
