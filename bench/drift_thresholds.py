"""Measures the drift distances the DriftGate's thresholds are chosen from, on the taxi sample.

`python -m bench.drift_thresholds [--out DIR]` prepares the training split of the sample the
way DataPrep does (time split, optionally `max_rows`), computes its statistics the way
StatisticsGen does (`components.drift_gate.drift.stats_options`), and compares it with:

- normal re-runs: against a baseline of every other row of the sample, a resample of the same
  period (the other rows), the same rows one tenth later (the next data window), the newest
  fifth of the other rows alone (a later period), and two 1,500-row slices such as the tests
  use;
- injected changes: a vanished or mostly-empty column, a unit change on a numeric feature
  (x1000, seconds -> minutes, miles -> km, dollars -> cents), and a category whose share
  collapses.

It prints, per feature and measure, the value each variant produces and the curated
schema's threshold, then which variants the schema stops. Figures are recorded in the README
("Operate in production").
"""

import argparse
import csv
import os
import random
import tempfile
from collections.abc import Callable

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

import schemas
from components.data_prep import source as source_lib
from components.data_prep import time_split
from components.drift_gate import drift

Rows = list[dict[str, str]]


def _read_sample() -> tuple[list[str], Rows]:
    path = os.path.join(source_lib.default_source(), "data.csv")
    with open(path) as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _train_statistics(
    header: list[str],
    rows: Rows,
    work_dir: str,
    name: str,
    max_rows: int | None,
    options: tfdv.StatsOptions,
) -> statistics_pb2.DatasetFeatureStatisticsList:
    source = os.path.join(work_dir, name, "source.csv")
    os.makedirs(os.path.dirname(source))
    columns = [c for c in header if c in rows[0]]
    with open(source, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    prepared = os.path.join(work_dir, name, "prepared")
    time_split.prepare_time_split(source, prepared, eval_fraction=0.2, max_rows=max_rows)
    return tfdv.generate_statistics_from_csv(
        os.path.join(prepared, time_split.TRAIN_SPLIT, time_split.DATA_FILE),
        stats_options=options,
    )


def _by_time(rows: Rows) -> Rows:
    return sorted(rows, key=lambda r: int(r["trip_start_timestamp"]))


def _drop_column(column: str) -> Callable[[Rows], Rows]:
    return lambda rows: [{k: v for k, v in r.items() if k != column} for r in rows]


def _blank(column: str, share: float) -> Callable[[Rows], Rows]:
    def change(rows: Rows) -> Rows:
        rng = random.Random(0)
        return [{**r, column: "" if rng.random() < share else r[column]} for r in rows]

    return change


def _scale(column: str, factor: float, integer: bool = False) -> Callable[[Rows], Rows]:
    def convert(value: str) -> str:
        if value == "":
            return value
        scaled = float(value) * factor
        return str(round(scaled)) if integer else f"{scaled:.4f}"

    return lambda rows: [{**r, column: convert(r[column])} for r in rows]


def _collapse(column: str, value: str | None, keep: float) -> Callable[[Rows], Rows]:
    """Keeps only `keep` of the rows whose `column` is `value` (None: its most frequent value)."""

    def change(rows: Rows) -> Rows:
        target = value
        if target is None:
            counts: dict[str, int] = {}
            for r in rows:
                if r[column]:
                    counts[r[column]] = counts.get(r[column], 0) + 1
            target = max(counts, key=lambda k: counts[k])
        rng = random.Random(0)
        return [r for r in rows if r[column] != target or rng.random() < keep]

    return change


def measuring_schema() -> schema_pb2.Schema:
    """The curated schema, with a zero threshold on every feature that has no comparator.

    So every feature is measured (TFDV reports a measurement only where a comparator is set),
    numeric ones by `Wasserstein distance / IQR` too.
    """
    schema = tfdv.load_schema_text(schemas.schema_path("taxi"))
    numeric = []
    for feature in schema.feature:
        if not feature.HasField("drift_comparator"):
            if feature.type == schema_pb2.BYTES:
                feature.drift_comparator.infinity_norm.threshold = 0.0
            else:
                feature.drift_comparator.jensen_shannon_divergence.threshold = 0.0
        if feature.type != schema_pb2.BYTES and drift.wasserstein_threshold(feature) is None:
            numeric.append(feature.name)
    return drift.set_thresholds(
        schema, l_infinity={}, jensen_shannon={}, wasserstein=dict.fromkeys(numeric, 0.0)
    )


def main() -> None:
    """Prints the measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="", help="work directory (default: a temporary one)")
    parser.add_argument(
        "--histogram-buckets",
        type=int,
        default=drift.HISTOGRAM_BUCKETS,
        help="histogram buckets of the statistics (the pipeline's by default; TFDV's is 10)",
    )
    args = parser.parse_args()
    options = drift.stats_options()
    options.num_histogram_buckets = args.histogram_buckets
    header, rows = _read_sample()
    rows = _by_time(rows)
    even, odd = rows[0::2], rows[1::2]
    # The baseline is the even rows; a resample is the odd rows (other outliers, same period).
    variants: list[tuple[str, Rows, int | None]] = [
        ("resample", odd, None),
        ("next window", even[len(even) // 10 :], None),
        # A later period alone against the whole: seasonality and trends of a real new window.
        ("newest fifth", odd[-len(odd) // 5 :], None),
        ("1500-row slice", odd, 1500),
    ]
    changes: list[tuple[str, Callable[[Rows], Rows]]] = [
        ("company vanished", _drop_column("company")),
        ("company 80% empty", _blank("company", 0.8)),
        ("fare x1000", _scale("fare", 1000.0)),
        ("trip_miles x1000", _scale("trip_miles", 1000.0)),
        ("trip_seconds in minutes", _scale("trip_seconds", 1 / 60, integer=True)),
        ("trip_miles in km", _scale("trip_miles", 1.609344)),
        ("fare in cents", _scale("fare", 100.0)),
        ("Credit Card share collapses", _collapse("payment_type", "Credit Card", 0.1)),
        ("top company share collapses", _collapse("company", None, 0.1)),
    ]
    variants += [(name, change(odd), None) for name, change in changes]
    schema = measuring_schema()
    curated = tfdv.load_schema_text(schemas.schema_path("taxi"))
    thresholds = drift.thresholds(curated)
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = args.out or tmp
        baseline_full = _train_statistics(header, even, work_dir, "baseline", None, options)
        baseline_small = _train_statistics(header, even, work_dir, "baseline-1500", 1500, options)
        results: dict[str, dict[tuple[str, str], float]] = {}
        for index, (name, variant_rows, max_rows) in enumerate(variants):
            current = _train_statistics(
                header, variant_rows, work_dir, f"v{index}", max_rows, options
            )
            baseline = baseline_small if max_rows else baseline_full
            results[name] = {
                (c.feature, c.measure): c.value
                for c in drift.compare_statistics(current, baseline, schema)
            }
            results[name].update(
                {
                    (c.feature, c.measure): c.value
                    for c in drift.compare_statistics(current, baseline, curated)
                    if c.measure == drift.PRESENCE
                }
            )
    keys = sorted({key for values in results.values() for key in values})
    names = [name for name, _, _ in variants]
    print("feature | measure | threshold | " + " | ".join(names))
    print("---|---|---:|" + "---:|" * len(names))
    for key in keys:
        threshold = thresholds.get(key)
        print(
            f"{key[0]} | {key[1]} | {'-' if threshold is None else f'{threshold:g}'} | "
            + " | ".join(f"{results[n][key]:.3f}" if key in results[n] else "absent" for n in names)
        )
    print("\nWhat the curated thresholds stop:")
    for name in names:
        stopped = []
        for key, value in results[name].items():
            threshold = thresholds.get(key)
            if threshold is None:
                continue
            failed = value < threshold if key[1] == drift.PRESENCE else value > threshold
            if failed:
                stopped.append(f"{key[0]} {key[1]} {value:.3f} (threshold {threshold:g})")
        print(f"  {name}: " + ("; ".join(sorted(stopped)) or "passes"))


if __name__ == "__main__":
    main()
