"""Measures DataPrep's time split (wall time, peak RSS) on the taxi sample repeated N times.

`python -m bench.data_prep_bench --copies 10 --copies 100` writes the taxi sample (about 15 k
rows) N times into one CSV under `--work` (kept for the next run), copy k with
`trip_start_timestamp` shifted by k x (max - min + 1) so the copies follow each other in
time, then runs `prepare_time_split` on it in a fresh process per size and prints rows, wall
seconds, peak RSS and the RSS the process had before the split (imports, mostly TensorFlow).
`--code-root DIR` measures another checkout's code (for example main's) on the same files;
`--chunk-rows` and `--max-rows` are passed to the split.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

from bench import scale_bench

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in the measured process: only the split is timed; RSS is the process's own peak.
_CHILD = """
import json, resource, sys, time
from components.data_prep import time_split
source, dest, max_rows, chunk_rows = sys.argv[1:5]
options = {"chunk_rows": int(chunk_rows)} if chunk_rows else {}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.monotonic()
prepared = time_split.prepare_time_split(
    source, dest, eval_fraction=0.2, max_rows=int(max_rows) if max_rows else None, **options
)
wall = time.monotonic() - start
print(json.dumps({
    "wall_s": wall,
    "rss_before_mb": before / 1024,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rows": prepared.train_rows + prepared.eval_rows,
    "data_version": prepared.data_version,
}))
"""


def build_input(copies: int, work: str) -> str:
    """Writes (once) the sample repeated `copies` times with shifted timestamps; returns it."""
    directory = os.path.join(work, f"taxi_x{copies}")
    path = os.path.join(directory, "data.csv")
    if not os.path.exists(path):
        sample = scale_bench.sample_path()
        with open(sample, newline="") as f:
            sample_rows = sum(1 for _ in csv.reader(f)) - 1  # without the header
        scale_bench.build_dataset(sample, copies * sample_rows, directory)
    return path


def measure(
    source: str, code_root: str, max_rows: int | None, chunk_rows: int | None
) -> dict[str, float]:
    """Runs the split of `source` in a fresh process importing `code_root`'s code."""
    env = {**os.environ, "PYTHONPATH": code_root, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory(prefix="data_prep_bench_") as dest:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                _CHILD,
                source,
                dest,
                str(max_rows or ""),
                str(chunk_rows or ""),
            ],
            env=env,
            cwd=code_root,
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"The split of {source} failed:\n{result.stderr[-4000:]}")
    measured: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def main() -> None:
    """Builds the inputs and prints one table row per size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, action="append", help="sample copies (repeatable)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "data_prep_bench"))
    parser.add_argument("--code-root", default=PROJECT_ROOT)
    parser.add_argument("--max-rows", type=int, default=None)
    parser.add_argument("--chunk-rows", type=int, default=None, help="default: the split's")
    args = parser.parse_args()
    print("| rows | wall s | peak RSS MB | RSS before split MB | data_version |")
    print("|---:|---:|---:|---:|---|")
    for copies in args.copies or [10, 100]:
        source = build_input(copies, args.work)
        m = measure(source, os.path.abspath(args.code_root), args.max_rows, args.chunk_rows)
        print(
            f"| {int(m['rows']):,} | {m['wall_s']:.1f} | {m['peak_rss_mb']:.0f} "
            f"| {m['rss_before_mb']:.0f} | {m['data_version']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
