"""Command line: `python -m runners.kubeflow compile|check|submit`."""

import argparse
import os
import sys

from typed_config import ConfigError

EXIT_CONFIG_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runners.kubeflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    compile_ = sub.add_parser("compile", help="compile the pipeline into a KFP v2 spec")
    compile_.add_argument("--config", default=None, help="JSON file of KubeflowConfig fields")
    compile_.add_argument("--output", default="out/kubeflow/pipeline.yaml")
    compile_.add_argument("overrides", nargs="*", help="field.path=value overrides")
    check = sub.add_parser("check", help="list constructs open-source KFP v2 cannot run")
    check.add_argument("--spec", default="out/kubeflow/pipeline.yaml")
    submit = sub.add_parser("submit", help="submit a compiled spec with kfp.Client")
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
    submit.add_argument("--dry-run", action="store_true", help="print what would be sent")
    submit.add_argument(
        "--insecure-allow-http-token",
        action="store_true",
        help="allow sending $KFP_AUTH_TOKEN to an http:// host (e.g. a port-forward)",
    )
    return parser


def _params(pairs: list[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--param must look like name=value, got {pair!r}")
        result[name] = value
    return result


def main(argv: list[str] | None = None) -> int:
    """Runs a subcommand.

    Args:
      argv: Arguments (default: sys.argv[1:]).

    Returns:
      Exit status: 0 ok, 1 failure (message on stderr, no traceback), 2 usage or config error.
    """
    args = _parser().parse_args(argv)
    # kfp, TFX and TensorFlow are imported inside each command, after parsing and after the
    # config is valid: --help and config errors stay instant.
    try:
        if args.command == "compile":
            from runners.kubeflow.config import load_kubeflow_config

            config = load_kubeflow_config(args.config, args.overrides)
            # TFX (and TensorFlow) only once the config is valid: config errors are instant.
            from runners.kubeflow import compiler

            print(compiler.write_spec(compiler.compile_pipeline(config), args.output))
        elif args.command == "check":
            from runners.kubeflow import spec as spec_lib
            from runners.kubeflow.compiler import ALWAYS_RUN_TASKS

            with open(args.spec) as f:
                docs = spec_lib.parse(f.read())
            spec_lib.check_strictly(docs)
            problems = spec_lib.find_unsupported_constructs(docs, ALWAYS_RUN_TASKS)
            print("\n".join(problems) or "ok: every construct runs on open-source KFP v2")
            return 1 if problems else 0
        elif args.command == "submit":
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
            )
            if args.dry_run:
                print(submit_lib.describe(request, submit_lib.check_request(request)))
            else:
                submitted = submit_lib.submit(request)
                if submitted.version_id:
                    print(f"pipeline {submitted.pipeline_id} version {submitted.version_id}")
                print(submitted.url)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except (ValueError, OSError, RuntimeError) as e:  # submit.SubmitError is a RuntimeError
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
