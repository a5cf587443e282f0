"""Benchmarks the Evaluator step alone at scale, and checks its metrics do not change.

Takes a finished local run (`make run`, default `out/local`), writes its eval split repeated
`--copies` times (the sample's 2,998 eval rows x 100 = 300 k rows), then runs the Evaluator's
executor on it in a fresh process per variant: TFX's own executor with TFMA's default
extractors (`default`) and BaselineAwareEvaluator's (`pruned`), each in the Beam modes asked
for. Prints wall time, CPU time (the process tree) and peak RSS, and compares every metric,
plot and the validation of each variant with the first one.

Usage: `.venv/bin/python -m bench.evaluator_bench [--run-dir out/local] [--copies 100]
[--baseline] [--variants default,pruned] [--modes in_memory,multi_processing]
[--profile FILE]`.
"""

import argparse
import cProfile
import glob
import json
import math
import os
import resource
import sys
import tempfile
from typing import Any

from bench import pipeline_bench

SHARDS = 10
VARIANTS = ("default", "pruned")
MODES = {
    "in_memory": [],
    "multi_processing": [
        "--runner=DirectRunner",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=0",
    ],
}


def _newest(pattern: str) -> str:
    paths = glob.glob(pattern)
    if not paths:
        raise FileNotFoundError(f"nothing matches {pattern}: run the pipeline first (make run)")
    return max(paths, key=lambda path: int(os.path.basename(path)))


def write_examples(run_dir: str, copies: int, out_dir: str) -> int:
    """Writes the run's eval split `copies` times into `out_dir/Split-eval`; returns rows."""
    import tensorflow as tf

    examples = _newest(os.path.join(run_dir, "pipeline_root", "ExampleGen", "examples", "*"))
    files = sorted(glob.glob(os.path.join(examples, "Split-eval", "*")))
    records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    split = os.path.join(out_dir, "Split-eval")
    os.makedirs(split)
    for shard in range(SHARDS):
        name = f"data_tfrecord-{shard:05d}-of-{SHARDS:05d}.gz"
        with tf.io.TFRecordWriter(os.path.join(split, name), options="GZIP") as writer:
            for _ in range(shard * copies // SHARDS, (shard + 1) * copies // SHARDS):
                for record in records:
                    writer.write(record)
    return len(records) * copies


def run_evaluator(args: argparse.Namespace) -> None:
    """Worker: runs one variant of the Evaluator executor (in this process)."""
    from tfx import types
    from tfx.components.evaluator import executor as tfx_executor
    from tfx.dsl.components.base import base_beam_executor
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.types import standard_component_specs as specs
    from tfx.utils import json_utils, proto_utils

    import model_contract
    from components import ui_artifacts
    from components.evaluator import executor
    from pipeline import config as config_lib
    from pipeline.evaluation import build_eval_config

    config = config_lib.load_local_config(None, [f"output_dir={args.run_dir}"])
    examples = standard_artifacts.Examples()
    examples.uri = args.examples
    examples.split_names = artifact_utils.encode_split_names(["eval"])
    model = standard_artifacts.Model()
    model.uri = _newest(os.path.join(args.run_dir, "pipeline_root", "Trainer", "model", "*"))
    inputs: dict[str, list[types.Artifact]] = {"examples": [examples], "model": [model]}
    if args.baseline:
        import tensorflow as tf

        versions = model_contract.list_versions(tf.io.gfile, config.model_dir)
        if not versions:
            raise SystemExit(f"--baseline: no pushed version in {config.model_dir}")
        baseline = standard_artifacts.Model()
        baseline.uri = os.path.join(args.out, "baseline")
        os.makedirs(baseline.uri)
        os.symlink(
            os.path.join(os.path.abspath(config.model_dir), str(versions[-1])),
            os.path.join(baseline.uri, "Format-Serving"),
        )
        inputs["baseline_model"] = [baseline]
    outputs: dict[str, list[types.Artifact]] = {}
    for key, cls in (
        (specs.EVALUATION_KEY, standard_artifacts.ModelEvaluation),
        (specs.BLESSING_KEY, standard_artifacts.ModelBlessing),
        (executor.METRICS_KEY, ui_artifacts.Metrics),
        (executor.CLASSIFICATION_METRICS_KEY, ui_artifacts.ClassificationMetrics),
        (executor.REPORT_KEY, ui_artifacts.HTML),
    ):
        artifact: types.Artifact = cls()
        directory = os.path.join(args.out, key)
        os.makedirs(directory)
        artifact.uri = os.path.join(directory, "value") if key == executor.REPORT_KEY else directory
        outputs[key] = [artifact]
    properties = {
        specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(
            build_eval_config(config.settings.evaluation)
        ),
        specs.EXAMPLE_SPLITS_KEY: json_utils.dumps(["eval"]),
    }
    beam_args: list[Any] = list(MODES[args.mode])
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=beam_args, tmp_dir=os.path.join(args.out, "tmp"), unique_id="1"
    )
    if args.variant == "pruned":
        executor.Executor(context).Do(inputs, outputs, properties)
    else:
        tfx_outputs = {k: v for k, v in outputs.items() if k not in executor.UI_OUTPUT_KEYS}
        tfx_executor.Executor(context).Do(inputs, tfx_outputs, properties)


def load_results(evaluation_dir: str) -> dict[str, object]:
    """Every metric and plot value TFMA wrote (path -> value) and the validation verdict."""
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow_model_analysis.proto import metrics_for_slice_pb2, validation_result_pb2

    values: dict[str, object] = {}

    def flatten(value: object, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                flatten(item, f"{path}/{key}")
        elif isinstance(value, list):
            # Repeated entries come in no fixed order: key them by their content's names.
            for item in sorted(value, key=lambda v: json.dumps(_names(v), sort_keys=True)):
                flatten(item, f"{path}[{json.dumps(_names(item), sort_keys=True)}]")
        else:
            values[path] = value

    for kind, message in (
        ("metrics", metrics_for_slice_pb2.MetricsForSlice),
        ("plots", metrics_for_slice_pb2.PlotsForSlice),
    ):
        paths = glob.glob(os.path.join(evaluation_dir, f"{kind}-*"))
        for record in tf.data.TFRecordDataset(paths).as_numpy_iterator():
            parsed = json_format.MessageToDict(message.FromString(record))
            flatten(parsed, f"{kind}:{json.dumps(parsed.pop('sliceKey', {}), sort_keys=True)}")
    record = next(
        tf.data.TFRecordDataset(
            os.path.join(evaluation_dir, "validations.tfrecord")
        ).as_numpy_iterator()
    )
    validation = validation_result_pb2.ValidationResult.FromString(record)
    values["validation_ok"] = validation.validation_ok
    return values


def _names(value: object) -> object:
    # Keys and names identify a repeated entry; numbers are what is compared.
    if isinstance(value, dict):
        return {k: _names(v) for k, v in value.items() if not isinstance(v, (int, float))}
    if isinstance(value, list):
        return [_names(v) for v in value]
    return value


def compare(expected: dict[str, object], actual: dict[str, object]) -> tuple[float, list[str]]:
    """Largest relative difference of numbers, and the paths that differ beyond float noise."""
    worst, differing = 0.0, sorted(set(expected) ^ set(actual))
    for path in set(expected) & set(actual):
        a, b = expected[path], actual[path]
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            relative = abs(float(a) - float(b)) / max(1.0, abs(float(a)))
            if math.isfinite(relative):
                worst = max(worst, relative)
            if relative > 1e-6:
                differing.append(path)
        elif a != b:
            differing.append(path)
    return worst, differing


def main() -> int:
    """Runs the variants and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", default="out/local", help="a finished local run")
    parser.add_argument("--copies", type=int, default=100, help="eval split repeated this often")
    parser.add_argument("--baseline", action="store_true", help="evaluate the pushed model too")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--modes", default="in_memory")
    parser.add_argument(
        "--profile",
        help="write a cProfile of each variant's worker process to PROFILE.<variant>-<mode> "
        "(in_memory: the whole Evaluator; read with `python -m pstats`)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--examples", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.profile:
            cProfile.runctx("run_evaluator(args)", globals(), {"args": args}, args.profile)
        else:
            run_evaluator(args)
        return 0
    # Workers run from the project root (`-m bench.evaluator_bench`); paths are made absolute.
    args.run_dir = os.path.abspath(args.run_dir)
    args.profile = args.profile and os.path.abspath(args.profile)
    variants, modes = args.variants.split(","), args.modes.split(",")
    unknown = sorted((set(variants) - set(VARIANTS)) | (set(modes) - set(MODES)))
    if unknown:
        raise SystemExit(f"unknown variants or modes {unknown}: use {VARIANTS} and {list(MODES)}")
    workdir = tempfile.mkdtemp(prefix="evaluator-bench-")
    examples = os.path.join(workdir, "examples")
    rows = write_examples(args.run_dir, args.copies, examples)
    print(f"{rows} eval rows in {examples}; baseline: {'yes' if args.baseline else 'no'}")
    results, reference = [], None
    for mode in modes:
        for variant in variants:
            out = os.path.join(workdir, f"{variant}-{mode}")
            command = [sys.executable, "-m", "bench.evaluator_bench", "--worker"]
            command += [f"--variant={variant}", f"--mode={mode}", f"--examples={examples}"]
            command += [f"--out={out}", f"--run-dir={args.run_dir}"]
            command += ["--baseline"] if args.baseline else []
            if args.profile:
                command += [f"--profile={args.profile}.{variant}-{mode}"]
            print(f"Running {variant} extracts, {mode}...", flush=True)
            name = f"{variant}, {mode}"
            m = pipeline_bench.measure(name, command, dict(os.environ), f"{out}.log")
            check = "FAILED, see log" if m.returncode else "reference"
            if not m.returncode:
                values = load_results(os.path.join(out, "evaluation"))
                if reference is None:
                    reference = values
                    check = f"reference ({len(values)} values)"
                else:
                    worst, differing = compare(reference, values)
                    check = f"{len(differing)} of {len(values)} differ, max rel diff {worst:.1e}"
            results.append((name, m.wall_s, m.cpu_s, m.peak_rss_mb, check))
    print(f"\n{'variant':<28}{'wall s':>8}{'CPU s':>8}{'rows/s':>8}{'RSS MB':>8}  metrics")
    for name, wall, cpu, rss, check in results:
        print(f"{name:<28}{wall:>8.1f}{cpu:>8.1f}{rows / wall:>8.0f}{rss:>8.0f}  {check}")
    print(f"\nLogs and outputs in {workdir}")
    return (
        0
        if all("FAILED" not in r[4] and r[4].startswith(("reference", "0 ")) for r in results)
        else 1
    )


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
