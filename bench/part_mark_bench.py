"""Cost of the admitted part-number mark (issue 16): ``PartNumbers.admit`` per part, in process.

Hands out ``--parts`` numbers as fast as possible (the mark's store into the mapped page, and
the helper thread's ``fsync`` of a new durable ceiling every 512 numbers), and times
``--timed`` of them one by one for the distribution (p50 / p99 / max, in microseconds), which
includes any inline ``fsync`` when the helper fell half a block behind. Writes
``bench/results/part_mark.json`` with the exact command.

    python bench/part_mark_bench.py --parts 1000000 --timed 100000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vinspect.pipeline.part_numbers import PartNumbers, read_mark  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=1_000_000)
    parser.add_argument("--timed", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "part_mark.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "admitted.mark"
        with PartNumbers(path, start=0) as numbers:
            started = time.perf_counter()
            for seq in range(args.parts):
                numbers.admit(seq)
            bulk_s = time.perf_counter() - started
            one = np.empty(args.timed, dtype=np.float64)
            clock = time.perf_counter_ns
            for i in range(args.timed):
                t0 = clock()
                numbers.admit(args.parts + i)
                one[i] = (clock() - t0) / 1e3
            beyond = numbers.beyond_reservation
        mark = read_mark(path)
    assert mark is not None and mark.next == args.parts + args.timed and mark.clean
    result = {
        "command": " ".join(["python", *sys.argv]),
        "parts": args.parts,
        "mean_ns_per_admit": round(bulk_s / args.parts * 1e9, 1),
        "timed_us": {
            "p50": round(float(np.percentile(one, 50)), 3),
            "p99": round(float(np.percentile(one, 99)), 3),
            "max": round(float(one.max()), 1),
        },
        "beyond_reservation": beyond,
        "reserved_to": mark.reserved_to,
    }
    print(json.dumps(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
