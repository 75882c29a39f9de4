"""A million mutated messages per venue through the feed clients: crashes must be 0.

Seed corpus: the venue's real recording (where ``RRR_RECORDINGS_DIR`` has it) and a
synthetic stream in the venue's format; half the inputs mutated (see
:mod:`engine.feeds.fuzz`), one client per venue, single core. Figures per venue:
``fuzz_inputs_<venue>`` against the 10^6 target, ``fuzz_crashes_<venue>`` (exceptions out of
``handle()`` plus broken records reaching the sink) against 0, the rate, and
``fuzz_clean_trades_lost_<venue>`` (unmutated trades that never reached the sink) against 0.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from benchmarks.results_file import Figure, write_results
from engine.feeds.fuzz import VENUES, fuzz

RECORDINGS = Path(
    os.environ.get("RRR_RECORDINGS_DIR", Path(__file__).resolve().parents[2] / "shared/data/exchange_recordings")
)
INPUTS = int(os.environ.get("RRR_FUZZ_INPUTS", 1_000_000))


def main() -> int:
    import logging

    logging.disable(logging.WARNING)  # a million drops would each be logged at first
    figures = []
    for venue in VENUES:
        report = fuzz(venue, INPUTS, seed=2026, recordings_dir=RECORDINGS if RECORDINGS.is_dir() else None)
        figures += [
            Figure(f"fuzz_inputs_{venue}", report.inputs, "inputs", "target", 1_000_000),
            Figure(f"fuzz_crashes_{venue}", report.crashes, "crashes", "target", 0),
            Figure(f"fuzz_inputs_per_s_{venue}", report.inputs_per_s, "inputs/s", "none", None),
            Figure(f"fuzz_clean_trades_lost_{venue}", report.clean_trades_lost, "trades", "target", 0),
        ]
        if report.crashes:
            print(json.dumps({"venue": venue, "by_place": report.by_place, "examples": report.examples}, indent=1))
        print(f"{venue}: corpus {report.sources}; dropped by reason {report.dropped}")
    write_results("bench_feed_fuzz", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
