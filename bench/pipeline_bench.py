"""Benchmarks the project's pipeline against TFX's own taxi example, side by side.

Runs, on this machine and the same data (the taxi sample in the tfx wheel), each cold in a
fresh root: TFX's `taxi_pipeline_native_keras.py` (1000 train / 150 eval steps) twice, with
its own Beam settings (DirectRunner `multi_processing`, one worker per core) and with Beam's
`in_memory` mode (what this project picks for data this small, so the comparison is like for
like); this project's `make run` pipeline with the same steps; then the project twice more:
once against the baseline the cold run pushed (Evaluator and LoadTest run again, the rest is
cached), once with nothing changed (every step cached). Prints wall time, CPU time and peak
RSS, and the ratios to both references.
Usage: `.venv/bin/python bench/pipeline_bench.py [--skip-reference]`.
"""

import argparse
import dataclasses
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import tfx

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_DIR = os.path.join(os.path.dirname(tfx.__file__), "examples", "chicago_taxi_pipeline")
COLD_TARGET = 0.4
RERUN_TARGET = 0.25


@dataclasses.dataclass
class Measurement:
    """One measured command."""

    name: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int


def measure(name: str, command: list[str], env: dict[str, str], log_path: str) -> Measurement:
    """Runs a command, returning wall time, CPU time of it and its children, and peak RSS.

    Args:
      name: Label for the table.
      command: argv to run.
      env: Its environment.
      log_path: File receiving its stdout and stderr.

    Returns:
      The measurement (CPU and RSS from wait4's rusage of the process tree it reaped).
    """
    start = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT
        )
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - start
    return Measurement(
        name=name,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,
        returncode=os.waitstatus_to_exitcode(status),
    )


# Runs TFX's example exactly as its `__main__` block does, except for the Beam arguments: the
# script is loaded without running `__main__`, then its own `_create_pipeline` is called with
# its own module-level settings.
_IN_MEMORY_REFERENCE = """
import runpy, sys
from absl import logging
from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner
logging.set_verbosity(logging.INFO)
m = runpy.run_path(sys.argv[1], run_name="tfx_taxi_reference")
BeamDagRunner().run(m["_create_pipeline"](
    pipeline_name=m["_pipeline_name"], pipeline_root=m["_pipeline_root"],
    data_root=m["_data_root"], module_file=m["_module_file"],
    serving_model_dir=m["_serving_model_dir"], metadata_path=m["_metadata_path"],
    beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"]))
"""


def reference_command(home: str, in_memory: bool) -> tuple[list[str], dict[str, str]]:
    """Prepares $HOME the way TFX's example expects ($HOME/taxi/...) and returns its command.

    Args:
      home: A fresh directory used as $HOME (the example keeps everything under it).
      in_memory: Run it with Beam's in_memory mode instead of its own multi_processing.
    """
    data_dir = os.path.join(home, "taxi", "data", "simple")
    os.makedirs(data_dir)
    shutil.copy(os.path.join(EXAMPLE_DIR, "data", "simple", "data.csv"), data_dir)
    shutil.copy(os.path.join(EXAMPLE_DIR, "taxi_utils_native_keras.py"), os.path.join(home, "taxi"))
    env = {**os.environ, "HOME": home}
    script = os.path.join(EXAMPLE_DIR, "taxi_pipeline_native_keras.py")
    if in_memory:
        return [sys.executable, "-c", _IN_MEMORY_REFERENCE, script], env
    return [sys.executable, script], env


def main() -> int:
    """Runs the benchmark and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-reference", action="store_true", help="measure only the project")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="pipeline-bench-")
    results = []
    references = []
    if not args.skip_reference:
        for label, in_memory in (("own settings", False), ("in_memory", True)):
            name = label.replace(" ", "-")
            command, env = reference_command(os.path.join(workdir, f"home-{name}"), in_memory)
            print(f"Running TFX's taxi_pipeline_native_keras.py (cold, {label})...", flush=True)
            references.append(
                measure(
                    f"TFX reference ({label})", command, env, os.path.join(workdir, f"{name}.log")
                )
            )
    project = [
        sys.executable,
        "-m",
        "commands.cli",
        "run",
        "--set",
        f"output_dir={os.path.join(workdir, 'project')}",
        "--set",
        "serve_after_run=false",
        "--set",
        "settings.train_steps=1000",
        "--set",
        "settings.eval_steps=150",
    ]
    print("Running this project's pipeline (cold)...", flush=True)
    results.append(
        measure(
            "project (cold)", project, dict(os.environ), os.path.join(workdir, "project-cold.log")
        )
    )
    # The cold run pushed, so the next one has a new baseline (the served model) and evaluates
    # and load-tests the candidate against it again; only the run after that has nothing new.
    for name, label, log in (
        ("project (re-run, new baseline)", "again (baseline: the version just pushed)", "rerun"),
        ("project (cached re-run)", "a third time (nothing changed: cached)", "cached"),
    ):
        print(f"Running this project's pipeline {label}...", flush=True)
        results.append(
            measure(name, project, dict(os.environ), os.path.join(workdir, f"project-{log}.log"))
        )

    ratio_columns = "".join(f"{'x ' + r.name[15:-1]:>15}" for r in references)
    columns = f"{'wall s':>9}{'CPU s':>9}{'peak RSS MB':>13}{ratio_columns}{'target':>9}"
    print(f"\n{'run':<28}{columns}  status")
    for m in references + results:
        ratios = "".join(
            f"{m.wall_s / r.wall_s:>15.2f}" if m not in references else f"{'-':>15}"
            for r in references
        )
        target = "-"
        if references and m not in references:
            if "cold" in m.name:
                target = f"<={COLD_TARGET}"
            elif "cached" in m.name:
                target = f"<={RERUN_TARGET}"
        status = "ok" if m.returncode == 0 else f"FAILED rc={m.returncode}"
        figures = f"{m.wall_s:>9.1f}{m.cpu_s:>9.1f}{m.peak_rss_mb:>13.0f}"
        print(f"{m.name:<28}{figures}{ratios}{target:>9}  {status}")
    print(f"\nLogs in {workdir}")
    return 0 if all(m.returncode == 0 for m in references + results) else 1


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
