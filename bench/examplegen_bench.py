"""Times the ExampleGen step alone on the repeated taxi sample: ours against TFX's CsvExampleGen.

Builds `<workdir>/<rows>/prepared/{train,eval}/data.csv` the way DataPrep does (the taxi sample
repeated with shifted timestamps, split by time with the newest fifth as eval), then runs an
executor's `Do` directly on it with the given Beam arguments and prints wall time and rows/s.
`--profile FILE` writes a cProfile of the run (only the launching process; with
`multi_processing` the work happens in Beam's worker processes).

Usage: `.venv/bin/python -m bench.examplegen_bench --rows 150000 --executor ours
[--beam-arg=--direct_running_mode=multi_processing --beam-arg=--direct_num_workers=2]`.
"""

import argparse
import cProfile
import os
import resource
import tempfile
import time
from typing import Any

from bench import scale_bench

EXECUTORS = ("ours", "tfx")
EVAL_FRACTION = 0.2


def build_prepared(rows: int, workdir: str) -> str:
    """Writes (once) the DataPrep output for `rows` rows under `workdir`; returns its directory."""
    from components.data_prep import time_split

    base = os.path.join(workdir, str(rows))
    prepared = os.path.join(base, "prepared")
    if not os.path.exists(os.path.join(prepared, time_split.EVAL_SPLIT, time_split.DATA_FILE)):
        source = scale_bench.build_dataset(scale_bench.sample_path(), rows, base)
        time_split.prepare_time_split(source, prepared, eval_fraction=EVAL_FRACTION)
        os.remove(source)
    return prepared


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (Beam's worker processes)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def run_executor(
    executor: str, prepared: str, output: str, beam_args: list[str], profile: str | None
) -> tuple[float, float]:
    """Runs one executor's `Do` on `prepared` into `output`; returns wall and CPU seconds."""
    from tfx import types
    from tfx.components.example_gen import base_example_gen_executor
    from tfx.components.example_gen.csv_example_gen import executor as csv_executor
    from tfx.dsl.components.base import base_beam_executor
    from tfx.types import standard_artifacts, standard_component_specs

    from components.data_prep import executor as data_prep_executor
    from components.data_prep.artifacts import PreparedData

    examples = standard_artifacts.Examples()
    examples.uri = output
    outputs: dict[str, list[types.Artifact]] = {standard_component_specs.EXAMPLES_KEY: [examples]}
    inputs: dict[str, list[types.Artifact]]
    run: base_example_gen_executor.BaseExampleGenExecutor
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=list[Any](beam_args), tmp_dir=os.path.join(output, ".tmp")
    )
    if executor == "ours":
        data = PreparedData()
        data.uri = prepared
        inputs = {data_prep_executor.PREPARED_DATA_KEY: [data]}
        run = data_prep_executor.ExampleGenExecutor(context)
        properties: dict[str, object] = {}
    else:
        inputs = {}
        run = csv_executor.Executor(context)
        properties = data_prep_executor.csv_example_gen_properties(prepared)
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    cpu_start = _cpu_seconds()
    if profiler:
        profiler.enable()
    run.Do(inputs, outputs, properties)
    if profiler:
        profiler.disable()
        profiler.dump_stats(str(profile))
    return time.perf_counter() - start, _cpu_seconds() - cpu_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--executor", choices=EXECUTORS, default="ours")
    parser.add_argument("--beam-arg", action="append", default=[], dest="beam_args")
    parser.add_argument(
        "--workdir", default=os.path.join(tempfile.gettempdir(), "examplegen_bench")
    )
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    beam_args = args.beam_args or ["--direct_running_mode=in_memory"]
    prepared = build_prepared(args.rows, args.workdir)
    output = tempfile.mkdtemp(prefix=f"examples_{args.executor}_", dir=args.workdir)
    wall, cpu = run_executor(args.executor, prepared, output, beam_args, args.profile)
    print(
        f"{args.executor} rows={args.rows} beam={' '.join(beam_args)} wall_s={wall:.1f} "
        f"cpu_s={cpu:.1f} load1={os.getloadavg()[0]:.1f} "
        f"rows_per_s={args.rows / wall:,.0f} output={output}"
    )


if __name__ == "__main__":
    main()
