"""Runs the pipeline cold at 15 k, 150 k and 1.5 M rows and prints per-step time, rows/s and RSS.

The datasets are the taxi sample shipped in the tfx wheel repeated, each copy's
`trip_start_timestamp` shifted past the previous copy's last one, so the time split still holds
and the newest fifth is still the eval split. Each size runs `python -m commands.cli run` in a
fresh output directory (cold: nothing cached, no pushed baseline). While it runs, the resident
memory of its whole process tree (the runner and any Beam worker processes, summed) is sampled;
afterwards each step's window is read from ML-Metadata (an execution's creation and last update
times), so every step gets its wall time and the peak tree RSS seen during it.

Usage: `make bench-scale` or `.venv/bin/python -m bench.scale_bench [--sizes 15000,150000]
[--workdir DIR] [--set key=value ...]`. Targets (issue 10, 2 cores): at 1.5 M rows <= 300 s end
to end and <= 2 GB peak RSS; cost per row flat or falling from 150 k to 1.5 M rows.
"""

import argparse
import csv
import dataclasses
import io
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence

import psutil

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIME_COLUMN = "trip_start_timestamp"
DEFAULT_SIZES = (15_000, 150_000, 1_500_000)
TARGET_WALL_S = 300.0
TARGET_RSS_MB = 2048.0
TARGET_SIZE = 1_500_000
# Steps whose work grows with the rows they read, and which rows: "all" (both splits), "train"
# or "eval". Transform analyzes the train split only (it does not materialize).
# The others do a fixed amount of work (the Trainer runs a set number of steps, LoadTest sends a
# fixed sample) or only read other steps' small outputs.
ROW_STEPS = {
    "DataPrep": "all",
    "ExampleGen": "all",
    "StatisticsGen": "all",
    "Transform": "train",
    "Evaluator": "eval",
}
SAMPLE_PERIOD_S = 0.25


def sample_path() -> str:
    """The taxi sample CSV inside the installed tfx wheel."""
    import tfx

    example = os.path.join(os.path.dirname(tfx.__file__), "examples", "chicago_taxi_pipeline")
    return os.path.join(example, "data", "simple", "data.csv")


def repeated_rows(sample: str, rows: int) -> Iterator[list[str]]:
    """Yields the header, then `rows` rows: the sample cycled, each copy later than the last.

    Args:
      sample: A CSV with an integer `trip_start_timestamp` column.
      rows: How many data rows to yield.

    Raises:
      ValueError: If the sample has no rows or no timestamp column.
    """
    with open(sample, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        body = list(reader)
    if TIME_COLUMN not in header or not body:
        raise ValueError(f"{sample}: expected a header with {TIME_COLUMN} and at least one row")
    index = header.index(TIME_COLUMN)
    stamps = [int(row[index]) for row in body]
    # One period past the sample's span, so copy k+1 starts after copy k ends.
    period = max(stamps) - min(stamps) + 1
    yield header
    for i in range(rows):
        copy, position = divmod(i, len(body))
        row = list(body[position])
        row[index] = str(stamps[position] + copy * period)
        yield row


def build_dataset(sample: str, rows: int, directory: str) -> str:
    """Writes `<directory>/data.csv` with `rows` rows (see `repeated_rows`); returns its path.

    Written under another name and renamed, so an interrupted build leaves no partial file for
    a bench that reuses an existing one.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "data.csv")
    partial = path + ".partial"
    with open(partial, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(repeated_rows(sample, rows))
    os.replace(partial, path)
    return path


class TreeMemorySampler:
    """Samples the summed RSS of a process and its descendants on a background thread."""

    def __init__(self, pid: int, period_s: float = SAMPLE_PERIOD_S) -> None:
        self._root = psutil.Process(pid)
        self._period_s = period_s
        self._stop = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (unix time, MB)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TreeMemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                processes = [self._root, *self._root.children(recursive=True)]
            except psutil.Error:
                return  # The root is gone: the run ended.
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue  # Exited between listing and reading.
            self.samples.append((time.time(), total / 2**20))
            self._stop.wait(self._period_s)

    def peak_between(self, start: float, end: float) -> float:
        """Peak MB sampled in [start, end] (the nearest sample if none falls inside)."""
        inside = [mb for t, mb in self.samples if start <= t <= end]
        if inside:
            return max(inside)
        nearest = min(self.samples, key=lambda s: abs(s[0] - start), default=(0.0, 0.0))
        return nearest[1]


@dataclasses.dataclass
class Step:
    """One step of one run."""

    node_id: str
    wall_s: float
    peak_rss_mb: float
    rows: int | None


@dataclasses.dataclass
class RunResult:
    """One cold run at one size."""

    rows: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    first_step_start_s: float
    steps: list[Step]
    returncode: int
    log: str


def step_windows(metadata_path: str) -> list[tuple[str, float, float]]:
    """(node id, start, end) in Unix seconds of every execution of the newest run, in order."""
    from metadata import store as mlmd

    store = mlmd.open_store(metadata_path)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        raise RuntimeError(f"{metadata_path}: no pipeline run recorded")
    run = max(runs, key=lambda c: c.create_time_since_epoch)
    node_ids = {c.id for c in store.get_contexts_by_type("node")}
    windows = []
    for execution in store.get_executions_by_context(run.id):
        nodes = [c.name for c in store.get_contexts_by_execution(execution.id) if c.id in node_ids]
        node = nodes[0].rsplit(".", 1)[-1] if nodes else execution.type
        windows.append(
            (
                node,
                execution.create_time_since_epoch / 1000,
                execution.last_update_time_since_epoch / 1000,
            )
        )
    return sorted(windows, key=lambda w: w[1])


def run_rows(metadata_path: str) -> dict[str, int]:
    """Rows per split DataPrep recorded in the newest run ("train", "eval")."""
    from metadata import store as mlmd

    store = mlmd.open_store(metadata_path)
    # The DataPrep component's own artifact type (components/data_prep/artifacts.py).
    artifacts = store.get_artifacts_by_type("data_prep.PreparedData")
    newest = max(artifacts, key=lambda a: a.create_time_since_epoch)
    return {
        split: newest.custom_properties[f"{split}_rows"].int_value for split in ("train", "eval")
    }


def run_pipeline(rows: int, source: str, output_dir: str, overrides: Sequence[str]) -> RunResult:
    """Runs the pipeline cold on `source` into `output_dir`, measuring its process tree."""
    shutil.rmtree(output_dir, ignore_errors=True)
    os.makedirs(output_dir)
    command = [
        sys.executable,
        "-m",
        "commands.cli",
        "run",
        "--set",
        f"source_data={source}",
        "--set",
        f"output_dir={output_dir}",
        "--set",
        "serve_after_run=false",
    ]
    for override in overrides:
        command += ["--set", override]
    log = os.path.join(output_dir, "run.log")
    started = time.time()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
        with TreeMemorySampler(process.pid) as sampler:
            _, status, usage = os.wait4(process.pid, 0)
    ended = time.time()
    returncode = os.waitstatus_to_exitcode(status)
    steps: list[Step] = []
    first_start = ended
    split_rows: dict[str, int] = {}
    metadata = os.path.join(output_dir, "metadata.sqlite")
    if os.path.exists(metadata):
        split_rows = run_rows(metadata) if returncode == 0 else {}
        for node, start, end in step_windows(metadata):
            first_start = min(first_start, start)
            kind = ROW_STEPS.get(node)
            counted = None
            if kind and split_rows:
                counted = split_rows[kind] if kind in split_rows else sum(split_rows.values())
            steps.append(Step(node, end - start, sampler.peak_between(start, end), counted))
    return RunResult(
        rows=rows,
        wall_s=ended - started,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=max((mb for _, mb in sampler.samples), default=0.0),
        first_step_start_s=first_start - started,
        steps=steps,
        returncode=returncode,
        log=log,
    )


def _size_label(rows: int) -> str:
    if rows >= 1_000_000:
        return f"{rows / 1_000_000:g} M"
    return f"{rows / 1000:g} k" if rows >= 1000 else str(rows)


def format_report(results: list[RunResult]) -> str:
    """The per-size step tables, the growth table and the targets, as Markdown."""
    out = io.StringIO()
    for result in results:
        status = "ok" if result.returncode == 0 else f"FAILED rc={result.returncode}"
        out.write(
            f"\n### {_size_label(result.rows)} rows: {result.wall_s:.0f} s wall, "
            f"{result.cpu_s:.0f} s CPU, peak RSS {result.peak_rss_mb:.0f} MB, first step after "
            f"{result.first_step_start_s:.1f} s ({status}; log {result.log})\n\n"
        )
        out.write("| step | wall s | rows | rows/s | peak RSS MB |\n|---|---:|---:|---:|---:|\n")
        for step in result.steps:
            rows = f"{step.rows:,}" if step.rows else "-"
            rate = f"{step.rows / step.wall_s:,.0f}" if step.rows and step.wall_s > 0 else "-"
            out.write(
                f"| {step.node_id} | {step.wall_s:.1f} | {rows} | {rate} | "
                f"{step.peak_rss_mb:.0f} |\n"
            )
    if len(results) > 1:
        out.write(growth_table(results))
    out.write(targets(results))
    return out.getvalue()


def growth_table(results: list[RunResult]) -> str:
    """Wall time and cost per row of each step from one size to the next, as ratios."""
    out = io.StringIO()
    pairs = list(itertools.pairwise(results))
    header = " | ".join(
        f"{_size_label(a.rows)}→{_size_label(b.rows)} wall x, per row x" for a, b in pairs
    )
    out.write(f"\n### Growth\n\n| step | {header} |\n|---|{'---:|' * len(pairs)}\n")
    nodes = [s.node_id for s in results[-1].steps]
    for node in [*nodes, "total"]:
        cells = []
        for a, b in pairs:
            wa = a.wall_s if node == "total" else _wall(a, node)
            wb = b.wall_s if node == "total" else _wall(b, node)
            if not wa or wb is None:
                cells.append("-")
                continue
            per_row = (wb / b.rows) / (wa / a.rows)
            cells.append(f"{wb / wa:.2f}, {per_row:.2f}")
        out.write(f"| {node} | {' | '.join(cells)} |\n")
    peaks = " | ".join(f"{b.peak_rss_mb / a.peak_rss_mb:.2f}" for a, b in pairs if a.peak_rss_mb)
    out.write(f"| peak RSS x | {peaks} |\n")
    return out.getvalue()


def _wall(result: RunResult, node: str) -> float | None:
    return next((s.wall_s for s in result.steps if s.node_id == node), None)


def targets(results: list[RunResult]) -> str:
    """Whether the issue's targets were met, for the sizes that were run."""
    lines = ["\n### Targets (2 cores)\n"]
    by_rows = {r.rows: r for r in results}
    big = by_rows.get(TARGET_SIZE)
    if big:
        met = "met" if big.wall_s <= TARGET_WALL_S else "NOT met"
        lines.append(f"- 1.5 M rows end to end: {big.wall_s:.0f} s (target <= 300 s): {met}")
        met = "met" if big.peak_rss_mb <= TARGET_RSS_MB else "NOT met"
        lines.append(f"- 1.5 M rows peak RSS: {big.peak_rss_mb:.0f} MB (target <= 2048 MB): {met}")
    if 150_000 in by_rows and big:
        small = by_rows[150_000]
        ratio = (big.wall_s / big.rows) / (small.wall_s / small.rows)
        met = "met" if ratio <= 1.0 else "NOT met"
        lines.append(f"- cost per row 150 k → 1.5 M: x {ratio:.2f} (target <= 1.00): {met}")
    if len(lines) == 1:
        lines.append("- (the targets concern 1.5 M rows, which this run did not include)")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Builds the datasets, runs each size cold, prints the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in DEFAULT_SIZES),
        help="comma-separated row counts (default %(default)s)",
    )
    parser.add_argument("--workdir", help="where datasets and runs go (default: a new temp dir)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra `commands.cli run --set` overrides for every run (e.g. beam.mode=in_memory)",
    )
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if not sizes or min(sizes) < 100:
        parser.error(f"--sizes must list row counts of at least 100, got {args.sizes!r}")
    workdir = args.workdir or tempfile.mkdtemp(prefix="scale-bench-")
    sample = sample_path()
    results = []
    for rows in sizes:
        print(f"Building {rows:,} rows...", flush=True)
        source = build_dataset(sample, rows, os.path.join(workdir, f"data-{rows}"))
        print(f"Running the pipeline cold on {rows:,} rows...", flush=True)
        result = run_pipeline(rows, source, os.path.join(workdir, f"run-{rows}"), args.overrides)
        print(
            f"  {result.wall_s:.0f} s, peak RSS {result.peak_rss_mb:.0f} MB, "
            f"rc {result.returncode}",
            flush=True,
        )
        results.append(result)
        # The dataset is rebuilt in seconds; keep the disk for the next size.
        shutil.rmtree(os.path.dirname(source), ignore_errors=True)
    print(format_report(results))
    print(f"Runs in {workdir}")
    return 0 if all(r.returncode == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
