"""`taxi`: the one command (run, compile, check, submit, serve, predict, lineage, monitor, ...)."""

import argparse
import csv
import json
import os
import sys
import traceback
import typing
import warnings
from collections.abc import Callable, Sequence

import typed_config
from pipeline import config as config_lib

PROG = "taxi"
EXIT_CONFIG_ERROR = 2
EXIT_RUN_FAILED = 1
# Set to print the traceback of an unexpected failure (the one-line message stays).
DEBUG_ENV = "TAXI_DEBUG"
# Subcommands whose flags belong to another program: everything after the name goes to it.
# `serve` takes tensorflow_model_server's flags (the manifests use the same ones).
PASSTHROUGH = ("serve", "predict")
_CLIENT_METHODS = ("predict", "classify", "regress", "status", "metadata")


class CommandError(Exception):
    """A command cannot go on; the message names the path (or value) and the problem."""


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
    # The source's header and first rows are checked before TFX and the DAG are loaded, so a
    # data error answers at once instead of after the pipeline is built.
    from components.data_prep import source as source_lib

    try:
        source_lib.preflight(config.source_data or source_lib.default_source())
    except source_lib.DataError as e:
        print(f"data error: {e}", file=sys.stderr)
        return EXIT_RUN_FAILED
    # Heavy imports after the config and the source header are known to be valid.
    from operations import summary
    from runners import local as local_runner

    log_path = local_runner.configure_logging(os.path.join(config.output_dir, "logs"))
    print(f"Full log: {log_path}")
    try:
        run = local_runner.run_local(config)
    except source_lib.DataError as e:
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


def _compile(args: argparse.Namespace) -> int:
    from runners.kubeflow.config import load_kubeflow_config

    config = load_kubeflow_config(args.config, args.set)
    # TFX (and TensorFlow) only once the config is valid: config errors are instant.
    from runners.kubeflow import compiler

    print(compiler.write_spec(compiler.compile_pipeline(config), args.output))
    return 0


def _check(args: argparse.Namespace) -> int:
    import yaml

    from runners.kubeflow import spec as spec_lib
    from runners.kubeflow.compiler import ALWAYS_RUN_TASKS

    text = _read_text(args.spec, "pipeline spec")
    try:
        docs = spec_lib.parse(text)
        spec_lib.check_strictly(docs)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise CommandError(f"{args.spec}: not valid YAML{where}: {problem}") from None
    except ValueError as e:
        raise CommandError(f"{args.spec}: {_message(e)}") from None
    problems = spec_lib.find_unsupported_constructs(docs, ALWAYS_RUN_TASKS)
    print("\n".join(problems) or "ok: every construct runs on open-source KFP v2")
    return 1 if problems else 0


def _read_text(path: str, what: str) -> str:
    """A text file's content; a missing, unreadable or binary file is a CommandError."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise CommandError(f"{path}: the {what} is not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise CommandError(f"{path}: cannot read the {what}: {e.strerror or e}") from None


def _params(pairs: list[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CommandError(f"--param must look like name=value, got {pair!r}")
        result[name] = value
    return result


def _submit(args: argparse.Namespace) -> int:
    from runners.kubeflow import submit as submit_lib

    request = submit_lib.SubmitRequest(
        spec_path=args.spec,
        host=args.host,
        namespace=args.namespace,
        experiment=args.experiment,
        run_name=args.run_name,
        parameters=_params(args.param),
        disable_caching=args.no_cache,
        pipeline_root=args.pipeline_root,
        pipeline_name=args.pipeline_name,
        version_name=args.version_name,
        cron=args.cron,
        max_concurrency=args.max_concurrency,
        allow_http_token=args.insecure_allow_http_token,
        connect_timeout_s=args.connect_timeout,
        read_timeout_s=args.read_timeout,
    )
    try:
        if args.dry_run:
            print(submit_lib.describe(request, submit_lib.check_request(request)))
            return 0
        submitted = submit_lib.submit(request)
    except submit_lib.SubmitError as e:
        # Already redacted; the host may carry a password in its userinfo.
        raise CommandError(str(e)) from None
    if submitted.version_id:
        print(f"pipeline {submitted.pipeline_id} version {submitted.version_id}")
    print(submitted.url)
    return 0


def _serve(argv: Sequence[str]) -> int:
    from serving import cli as serving_cli

    return int(serving_cli.main(list(argv)))


def _predict(argv: Sequence[str]) -> int:
    # `taxi predict --csv rows.csv` predicts; `taxi predict classify|status|... ` picks the
    # client's other methods (serving/client_cli.py owns the flags).
    argv = list(argv)
    if not argv or argv[0] not in _CLIENT_METHODS:
        if argv and argv[0] in ("-h", "--help"):
            print(
                f"usage: {PROG} predict [{'|'.join(_CLIENT_METHODS)}] [client flags]\n"
                f"The client's flags: {PROG} predict predict --help"
            )
            return 0
        argv = ["predict", *argv]
    from serving import client_cli

    return int(client_cli.main(argv))


def _schema_diff(args: argparse.Namespace) -> int:
    import schemas
    from components.data_prep.source import DataError, default_source
    from operations import schema_tools

    source = args.data or default_source()
    try:
        print(schema_tools.schema_diff_report(source, schemas.schema_path("taxi")))
    except (DataError, schema_tools.SchemaDiffError) as e:
        raise CommandError(str(e)) from None
    return 0


def _rollback(args: argparse.Namespace) -> int:
    config = config_lib.load_local_config(args.config, args.set)
    import tensorflow as tf

    import model_contract

    model_dir = args.model_dir or config.model_dir
    try:
        withdrawn = model_contract.roll_back(tf.io.gfile, model_dir, args.to)
    except (ValueError, OSError, tf.errors.OpError) as e:
        print(f"rollback error: {_message(e)}", file=sys.stderr)
        return EXIT_RUN_FAILED
    print(
        f"Withdrew versions {withdrawn} from {model_dir} "
        f"(renamed {model_contract.ROLLED_BACK_PREFIX}<v>); "
        f"TF Serving now serves version {model_contract.latest_version(tf.io.gfile, model_dir)}."
    )
    return 0


def _lineage(args: argparse.Namespace) -> int:
    config = config_lib.load_local_config(args.config, args.set)
    from absl import logging

    from metadata import store as mlmd
    from metadata.lineage_graph import LineageError
    from operations import lineage

    # TFMA warns while it probes which model names an evaluation holds; the answer is complete.
    logging.set_verbosity(logging.ERROR)

    model_dir = os.path.abspath(args.model_dir or config.model_dir)
    try:
        store = lineage.sqlite_store(os.path.abspath(args.metadata or config.metadata_path))
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


# `taxi monitor`'s named flags, each a MonitorConfig field (`--set field=value` sets any).
_MONITOR_FLAGS = {
    "logs": "logs",
    "output_dir": "output_dir",
    "schema": "schema_path",
    "baseline_statistics": "baseline_statistics",
    "metadata": "metadata",
    "model_dir": "model_dir",
    "window_hours": "window_hours",
    "max_training_age_days": "max_training_age_days",
    "pushgateway_url": "pushgateway_url",
}


def _monitor(args: argparse.Namespace) -> int:
    import schemas
    from operations.monitor_config import MonitorConfig

    # The curated schema unless the config file or a flag names one (overrides beat the file).
    overrides = (
        []
        if _file_sets(args.config, "schema_path")
        else [f"schema_path={schemas.schema_path('taxi')}"]
    )
    overrides += [
        f"{field}={getattr(args, flag)}"
        for flag, field in _MONITOR_FLAGS.items()
        if getattr(args, flag) not in (None, "")
    ]
    config = config_lib.load(MonitorConfig, args.config, [*overrides, *args.set])
    from operations import monitor  # TFDV: loaded once the config is valid.

    try:
        result = monitor.run_monitor(config)
    except monitor.MonitorError as e:
        print(f"monitor error: {e}", file=sys.stderr)
        return monitor.EXIT_ERROR
    except Exception as e:  # Process boundary: a crash must not exit 1, the code for "alert".
        print(f"monitor failed: {_message(e)}", file=sys.stderr)
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        return monitor.EXIT_ERROR
    for path, why in result.skipped:
        print(f"SKIPPED {path}: {why}")
    print(
        f"{result.requests} requests, {result.examples} examples from {len(result.files)} "
        f"files; report in {os.path.join(config.output_dir, 'report.html')}"
    )
    for line in result.alerts:
        print(f"ALERT {line}")
    for line in result.warnings:
        print(f"WARNING {line}")
    return result.exit_code


def _file_sets(config_file: str | None, field: str) -> bool:
    """Whether a JSON config file sets `field` (an unreadable file is reported by the loader)."""
    if not config_file:
        return False
    try:
        with open(config_file) as f:
            return field in json.load(f)
    except (OSError, ValueError, TypeError):
        return False


def _message(error: BaseException) -> str:
    """One line: the error's first line (TF's OpErrors carry theirs in `.message`)."""
    text = str(getattr(error, "message", "") or error) or type(error).__name__
    return text.strip().splitlines()[0]


def _add_config_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--config", help=f"JSON file with {what} fields")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field, e.g. settings.train_steps=200 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Returns the command's argument parser (`serve` and `predict` pass their flags on)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__,
        epilog="Config overrides are `--set field.path=value` everywhere.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the pipeline locally with BeamDagRunner")
    _add_config_args(run, "LocalConfig")
    run.set_defaults(func=_run)

    compile_ = sub.add_parser("compile", help="compile the pipeline into a KFP v2 spec")
    _add_config_args(compile_, "KubeflowConfig")
    compile_.add_argument("--output", default="out/kubeflow/pipeline.yaml")
    compile_.set_defaults(func=_compile)

    check = sub.add_parser("check", help="list constructs open-source KFP v2 cannot run")
    check.add_argument("--spec", default="out/kubeflow/pipeline.yaml")
    check.set_defaults(func=_check)

    submit = sub.add_parser("submit", help="submit a compiled spec to KFP (token: $KFP_AUTH_TOKEN)")
    submit.add_argument("--spec", default="out/kubeflow/pipeline.yaml")
    submit.add_argument(
        "--host", default=os.environ.get("KFP_HOST", ""), help="KFP API URL ($KFP_HOST)"
    )
    submit.add_argument("--namespace", default="")
    submit.add_argument("--experiment", default="chicago-taxi")
    submit.add_argument("--run-name", default="")
    submit.add_argument(
        "--param", action="append", default=[], help="name=value pipeline parameter"
    )
    submit.add_argument("--no-cache", action="store_true", help="disable caching for this run")
    submit.add_argument(
        "--pipeline-root", default="", help="artifact root (default: the compiled pipeline_root)"
    )
    submit.add_argument(
        "--pipeline-name", default="", help="upload the spec as a new version of this pipeline"
    )
    submit.add_argument("--version-name", default="", help="uploaded version name")
    submit.add_argument(
        "--cron", default="", help="recurring run schedule, 6 fields, seconds first"
    )
    submit.add_argument("--max-concurrency", type=int, default=1, help="recurring runs at once")
    submit.add_argument("--connect-timeout", type=float, default=10.0, help="seconds")
    submit.add_argument("--read-timeout", type=float, default=60.0, help="seconds per response")
    submit.add_argument("--dry-run", action="store_true", help="print what would be sent")
    submit.add_argument(
        "--insecure-allow-http-token",
        action="store_true",
        help="allow sending $KFP_AUTH_TOKEN to an http:// host (e.g. a port-forward)",
    )
    submit.set_defaults(func=_submit)

    sub.add_parser(
        "serve",
        add_help=False,
        help="the TF-Serving-compatible server; tensorflow_model_server's flags "
        f"(`{PROG} serve --help`)",
    )
    sub.add_parser(
        "predict",
        add_help=False,
        help="client: predict (or classify, regress, status, metadata) from CSV/JSON/TFRecord",
    )

    lineage = sub.add_parser(
        "lineage", help="what made a pushed version (default: the served one), or a data version"
    )
    _add_config_args(lineage, "LocalConfig")
    which = lineage.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="pushed version (default: the served one)")
    which.add_argument("--data", metavar="VERSION", help="list the models trained on this data")
    lineage.add_argument("--json", action="store_true", help="machine-readable output")
    lineage.add_argument("--model-dir", help="model directory (default: from the local config)")
    lineage.add_argument("--metadata", help="MLMD SQLite file (default: from the local config)")
    lineage.set_defaults(func=_lineage)

    monitor = sub.add_parser(
        "monitor",
        help="schema, skew and drift of logged serving requests (exit 1: alert, 3: stale model)",
        epilog=f"{DEBUG_ENV}=1 adds the traceback to an unexpected failure's one-line message.",
    )
    _add_config_args(monitor, "MonitorConfig")
    monitor.add_argument("--logs", help="request log folder or glob of files")
    monitor.add_argument("--output-dir", help="report, summary, statistics")
    monitor.add_argument("--schema", default="", help="curated schema (default: schemas/taxi)")
    monitor.add_argument("--baseline-statistics", help="served model's training FeatureStats.pb")
    monitor.add_argument("--metadata", help="MLMD SQLite file or metadata-grpc host:port")
    monitor.add_argument("--model-dir", help="serving model directory (with --metadata)")
    monitor.add_argument("--window-hours", help="only files modified this recently")
    monitor.add_argument("--max-training-age-days", help="warn past this age")
    monitor.add_argument("--pushgateway-url", default="", help="also push the gauges here")
    monitor.set_defaults(func=_monitor)

    rollback = sub.add_parser("rollback", help="withdraw the newest pushed version(s)")
    _add_config_args(rollback, "LocalConfig")
    rollback.add_argument("--to", type=int, help="version to serve (default: the previous one)")
    rollback.add_argument("--model-dir", help="model directory (default: from the local config)")
    rollback.set_defaults(func=_rollback)

    diff = sub.add_parser(
        "schema-diff", help="infer a schema from data and diff it against schemas/"
    )
    diff.add_argument("--data", default="", help="CSV file or directory (default: the taxi sample)")
    diff.set_defaults(func=_schema_diff)
    return parser


_PASSTHROUGH_MAIN: dict[str, Callable[[Sequence[str]], int]] = {
    "serve": _serve,
    "predict": _predict,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command.

    Args:
      argv: Arguments (default: sys.argv[1:]).

    Returns:
      Exit status: 0 ok, 1 failure (one line on stderr, no traceback), 2 usage or config
      error; `monitor` and `check` document their own codes.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if argv and argv[0] in PASSTHROUGH:
        return _PASSTHROUGH_MAIN[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except typed_config.ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except CommandError as e:
        print(f"{args.command} error: {e}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except (ValueError, OSError) as e:
        # The spec parser and the readers name the file in their message.
        print(f"{args.command} error: {_message(e)}", file=sys.stderr)
        return EXIT_RUN_FAILED


if __name__ == "__main__":
    sys.exit(main())
