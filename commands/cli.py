"""Command line: `python -m commands.cli run|schema-diff|rollback|lineage|monitor`."""

import argparse
import csv
import os
import sys
import traceback
import typing
import warnings

from pipeline import config as config_lib

EXIT_CONFIG_ERROR = 2
EXIT_RUN_FAILED = 1


def _sample_rows(prepared_data_uri: str, count: int = 3) -> list[dict[str, object]]:
    """First rows of DataPrep's eval split without the label source, as serving requests."""
    from model import features

    label_source = features.taxi_features().label_source
    with open(os.path.join(prepared_data_uri, "eval", "data.csv")) as f:
        rows = []
        for row in csv.DictReader(f):
            rows.append({k: (v or None) for k, v in row.items() if k != label_source})
            if len(rows) == count:
                break
    return rows


def _run(args: argparse.Namespace) -> int:
    config = config_lib.load_local_config(args.config, args.set)
    # Heavy imports after the config is known to be valid, so config errors are instant.
    from components.data_prep.source import DataError
    from operations import summary
    from runners import local as local_runner

    log_path = local_runner.configure_logging(os.path.join(config.output_dir, "logs"))
    print(f"Full log: {log_path}")
    try:
        run = local_runner.run_local(config)
    except DataError as e:
        print(f"data error: {e}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except Exception as e:  # Process boundary: report briefly, full traceback in the log.
        with open(log_path, "a") as log:
            traceback.print_exc(file=log)
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"\nPipeline run FAILED: {first_line}", file=sys.stderr)
        print(f"The failing step is named above; full traceback in {log_path}", file=sys.stderr)
        return EXIT_RUN_FAILED
    result = summary.summarize_latest_run(
        os.path.abspath(config.metadata_path), config.settings.pipeline_name
    )
    from operations import telemetry

    metrics_file = telemetry.write_run_metrics(
        result,
        run.step_seconds,
        run.elapsed_s,
        config.settings.pipeline_name,
        config.metrics,
        config.output_dir,
    )
    print(f"\nPipeline finished in {run.elapsed_s:.1f}s on data {result.data_version}")
    if metrics_file:
        print(f"Run metrics: {metrics_file}")
    print(summary.format_summary(result))
    if config.serve_after_run and result.pushed_version and result.data_uri:
        from serving import smoke

        answer = smoke.serve_and_predict(
            os.path.abspath(config.model_dir),
            config.settings.model_name,
            _sample_rows(result.data_uri),
        )
        scores = [float(score) for score in typing.cast(list, answer["scores"])]
        latency_ms = float(typing.cast(float, answer["predict_latency_ms"]))
        print(
            f"\nServed version {answer['model_version']} with the local TF-Serving-compatible "
            f"server; gRPC Predict on {len(scores)} eval rows -> P(big tipper) = "
            f"[{', '.join(f'{score:.3f}' for score in scores)}] in {latency_ms:.1f} ms"
        )
    return 0


def _schema_diff(args: argparse.Namespace) -> int:
    import schemas
    from components.data_prep.source import default_source
    from operations import schema_tools

    source = args.data or default_source()
    print(schema_tools.schema_diff_report(source, schemas.schema_path("taxi")))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    config = config_lib.load_local_config(args.config, args.set)
    import tensorflow as tf

    import model_contract

    model_dir = args.model_dir or config.model_dir
    try:
        withdrawn = model_contract.roll_back(tf.io.gfile, model_dir, args.to)
    except ValueError as e:
        print(f"rollback error: {e}", file=sys.stderr)
        return EXIT_RUN_FAILED
    print(
        f"Withdrew versions {withdrawn} from {model_dir} "
        f"(renamed {model_contract.ROLLED_BACK_PREFIX}<v>); "
        f"TF Serving now serves version {model_contract.latest_version(tf.io.gfile, model_dir)}."
    )
    return 0


def _lineage(args: argparse.Namespace) -> int:
    config = config_lib.load_local_config(args.config, args.set)
    import json

    from absl import logging

    from metadata import store as mlmd
    from metadata.lineage_graph import LineageError
    from operations import lineage

    # TFMA warns while it probes which model names an evaluation holds; the answer is complete.
    logging.set_verbosity(logging.ERROR)

    model_dir = os.path.abspath(args.model_dir or config.model_dir)
    try:
        store = mlmd.open_store(os.path.abspath(config.metadata_path))
        if args.data:
            found = lineage.data_lineage(store, model_dir, args.data)
            text = lineage.format_data_lineage(found)
        else:
            found = lineage.version_lineage(store, model_dir, args.version)
            text = lineage.format_version_lineage(found)
    except (lineage.LineageNotFoundError, LineageError, mlmd.StoreNotFoundError) as e:
        print(f"lineage error: {e}", file=sys.stderr)
        return EXIT_RUN_FAILED
    print(json.dumps(found, indent=2, sort_keys=True) if args.json else text)
    return 0


def _monitor(args: argparse.Namespace) -> int:
    import schemas
    import typed_config
    from operations.monitor_config import MonitorConfig

    try:
        config = typed_config.build(
            MonitorConfig,
            {
                "logs": args.logs,
                "output_dir": args.output_dir,
                "schema_path": args.schema or schemas.schema_path("taxi"),
                "baseline_statistics": args.baseline_statistics,
                "metadata": args.metadata,
                "model_dir": args.model_dir,
                "window_hours": args.window_hours,
                "max_training_age_days": args.max_training_age_days,
                "pushgateway_url": args.pushgateway_url or None,
            },
        )
    except typed_config.ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    from operations import monitor  # TFDV: loaded once the config is valid.

    try:
        result = monitor.run_monitor(config)
    except monitor.MonitorError as e:
        print(f"monitor error: {e}", file=sys.stderr)
        return monitor.EXIT_ERROR
    except Exception:  # Process boundary: a crash must not exit 1, the code for "alert".
        traceback.print_exc()
        print("monitor failed (traceback above)", file=sys.stderr)
        return monitor.EXIT_ERROR
    print(
        f"{result.requests} requests, {result.examples} examples from {len(result.files)} "
        f"files; report in {os.path.join(config.output_dir, 'report.html')}"
    )
    for line in result.alerts:
        print(f"ALERT {line}")
    for line in result.warnings:
        print(f"WARNING {line}")
    return result.exit_code


def build_parser() -> argparse.ArgumentParser:
    """Returns the CLI's argument parser."""
    parser = argparse.ArgumentParser(prog="python -m commands.cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add_config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="JSON file with LocalConfig fields")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="FIELD=VALUE",
            help="override a config field, e.g. settings.train_steps=200 (repeatable)",
        )

    run = sub.add_parser("run", help="run the pipeline locally with BeamDagRunner")
    add_config_args(run)
    run.set_defaults(func=_run)
    diff = sub.add_parser(
        "schema-diff", help="infer a schema from data and diff it against schemas/"
    )
    diff.add_argument("--data", default="", help="CSV file or directory (default: the taxi sample)")
    diff.set_defaults(func=_schema_diff)
    rollback = sub.add_parser("rollback", help="withdraw the newest pushed version(s)")
    add_config_args(rollback)
    rollback.add_argument("--to", type=int, help="version to serve (default: the previous one)")
    rollback.add_argument("--model-dir", help="model directory (default: from the local config)")
    rollback.set_defaults(func=_rollback)
    lineage = sub.add_parser(
        "lineage", help="what made a pushed version (default: the served one), or a data version"
    )
    add_config_args(lineage)
    which = lineage.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="pushed version (default: the served one)")
    which.add_argument("--data", metavar="VERSION", help="list the models trained on this data")
    lineage.add_argument("--json", action="store_true", help="machine-readable output")
    lineage.add_argument("--model-dir", help="model directory (default: from the local config)")
    lineage.set_defaults(func=_lineage)
    monitor = sub.add_parser(
        "monitor",
        help="schema, skew and drift of logged serving requests (exit 1: alert, 3: stale model)",
    )
    monitor.add_argument("--logs", required=True, help="request log folder or glob of files")
    monitor.add_argument("--output-dir", required=True, help="report, summary, statistics")
    monitor.add_argument("--schema", default="", help="curated schema (default: schemas/taxi)")
    monitor.add_argument("--baseline-statistics", help="served model's training FeatureStats.pb")
    monitor.add_argument("--metadata", help="MLMD SQLite file or metadata-grpc host:port")
    monitor.add_argument("--model-dir", help="serving model directory (with --metadata)")
    monitor.add_argument("--window-hours", type=float, help="only files modified this recently")
    monitor.add_argument("--max-training-age-days", type=float, help="warn past this age")
    monitor.add_argument("--pushgateway-url", default="", help="also push the gauges here")
    monitor.set_defaults(func=_monitor)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI.

    Args:
      argv: Arguments (default: sys.argv[1:]).

    Returns:
      Process exit code.
    """
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except config_lib.ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


if __name__ == "__main__":
    sys.exit(main())
