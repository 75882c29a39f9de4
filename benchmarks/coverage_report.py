"""Line coverage of the last ``make test``: per package, the total, and the floor CI holds.

Reads the ``.coverage`` data that ``pytest --cov`` left (the test process and every Python
process it started), prints one line per package and the total, writes ``coverage_percent``
to ``benchmarks/results/coverage.json`` beside the floor (``fail_under`` in pyproject's
``[tool.coverage.report]``) and exits 1 below it.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import coverage

from benchmarks.results_file import Figure, write_results

PACKAGES = ("feature_store", "serving", "orchestration", "engine")


def main() -> int:
    cov = coverage.Coverage()
    cov.load()
    data = cov.get_data()
    root = Path.cwd().resolve()
    statements: dict[str, int] = defaultdict(int)
    missing: dict[str, int] = defaultdict(int)
    for filename in sorted(data.measured_files()):
        path = Path(filename).resolve()
        try:
            package = path.relative_to(root).parts[0]
        except ValueError:
            continue
        if package not in PACKAGES:
            continue
        _, lines, _, missed, _ = cov.analysis2(filename)
        statements[package] += len(lines)
        missing[package] += len(missed)
    if not statements:
        print("coverage: no data (run `make test` first)", file=sys.stderr)
        return 1
    for package in PACKAGES:
        n = statements.get(package, 0)
        if n:
            print(f"coverage {package:14s} {100 * (n - missing[package]) / n:5.1f}%  of {n:,} lines")
    total_lines = sum(statements.values())
    percent = 100 * (total_lines - sum(missing.values())) / total_lines
    floor = float(cov.config.fail_under or 0)
    print(f"coverage total          {percent:5.1f}%  of {total_lines:,} lines (CI floor {floor:g}%)")
    write_results("coverage", [Figure("coverage_percent", percent, "%", "CI floor (fail_under)", floor)])
    if percent < floor:
        print(f"coverage {percent:.1f}% is below the floor {floor:g}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
