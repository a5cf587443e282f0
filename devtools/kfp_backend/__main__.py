"""Command line: `python -m devtools.kfp_backend run --spec SPEC --state-dir DIR [--param k=v]`."""

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    """Runs a compiled spec on the emulated backend and prints each task's state and outputs.

    Returns:
      0 when the run succeeded, 1 otherwise (message on stderr).
    """
    parser = argparse.ArgumentParser(prog="python -m devtools.kfp_backend")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a compiled spec as open-source KFP's v2 backend does")
    run.add_argument("--spec", default="out/kubeflow/pipeline.yaml")
    run.add_argument("--state-dir", default="out/kubeflow/emulated-backend")
    run.add_argument("--backend-version", default="2.14.0", help="2.5.0 .. 2.17.x")
    run.add_argument("--pipeline-root", default=None, help="the run's pipeline_root")
    run.add_argument("--param", action="append", default=[], help="name=value pipeline parameter")
    args = parser.parse_args(argv)
    # Imported after parsing: --help stays fast.
    from devtools.kfp_backend.backend import Backend, BackendError
    from runners.kubeflow import spec as spec_lib

    parameters = {}
    for pair in args.param:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            print(f"error: --param must look like name=value, got {pair!r}", file=sys.stderr)
            return 2
        parameters[name] = value
    try:
        with open(args.spec) as f:
            docs = spec_lib.parse(f.read())
        backend = Backend(args.state_dir, version=args.backend_version)
        result = backend.run(docs, arguments=parameters, pipeline_root=args.pipeline_root)
    except (BackendError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    summary = {
        name: {"state": task.state, "outputs": {k: a["uri"] for k, a in task.outputs.items()}}
        for name, task in result.tasks.items()
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
