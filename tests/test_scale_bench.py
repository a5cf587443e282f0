"""The scale benchmark's own parts: the repeated dataset keeps the time split, memory is seen."""

import csv
import subprocess
import sys

import pytest

from bench import scale_bench


def _write_sample(path, stamps):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["fare", scale_bench.TIME_COLUMN])
        writer.writerows([str(i), str(s)] for i, s in enumerate(stamps))


def test_repeated_rows_put_every_copy_after_the_previous(tmp_path):
    sample = tmp_path / "sample.csv"
    _write_sample(sample, [300, 100, 200])
    rows = list(scale_bench.repeated_rows(str(sample), 8))
    assert rows[0] == ["fare", scale_bench.TIME_COLUMN]
    body = rows[1:]
    assert len(body) == 8
    # Copies of the 3-row sample: a period of 300 - 100 + 1 = 201 seconds per copy.
    assert [int(r[1]) for r in body] == [300, 100, 200, 501, 301, 401, 702, 502]
    assert [r[0] for r in body] == ["0", "1", "2"] * 2 + ["0", "1"]
    first_copy, second_copy = [int(r[1]) for r in body[:3]], [int(r[1]) for r in body[3:6]]
    assert max(first_copy) < min(second_copy)


def test_build_dataset_refuses_a_sample_without_timestamps(tmp_path):
    sample = tmp_path / "bad.csv"
    sample.write_text("fare,tips\n1,2\n")
    with pytest.raises(ValueError, match=scale_bench.TIME_COLUMN):
        scale_bench.build_dataset(str(sample), 10, str(tmp_path / "out"))


def test_sampler_sees_the_memory_of_child_processes():
    # The parent sleeps; only its child holds 300 MB, as Beam's worker processes do.
    child = (
        "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(3)"
    )
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    process = subprocess.Popen([sys.executable, "-c", parent])
    with scale_bench.TreeMemorySampler(process.pid, period_s=0.1) as sampler:
        process.wait()
    assert max(mb for _, mb in sampler.samples) >= 300


def _result(rows, wall, rss):
    step = scale_bench.Step("Transform", wall / 2, rss, rows)
    return scale_bench.RunResult(rows, wall, wall, rss, 1.0, [step], 0, "log")


def test_report_judges_the_targets_at_one_and_a_half_million_rows():
    report = scale_bench.format_report(
        [_result(150_000, 100.0, 1500.0), _result(1_500_000, 400.0, 2500.0)]
    )
    assert "1.5 M rows end to end: 400 s (target <= 300 s): NOT met" in report
    assert "peak RSS: 2500 MB (target <= 2048 MB): NOT met" in report
    # 4x the time for 10x the rows: the cost per row fell to 0.4.
    assert "cost per row 150 k → 1.5 M: x 0.40 (target <= 1.00): met" in report
    assert "| Transform | 4.00, 0.40 |" in report
