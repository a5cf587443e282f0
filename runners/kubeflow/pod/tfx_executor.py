"""The one place a KFP pod calls TFX's private executor entry (`kubeflow_v2_run_executor`).

TFX's container module runs an executor from the KFP `ExecutorInput` only through its
`main()`, which parses `sys.argv` and exits; the pod code needs to run it between its own
steps (URI mapping before, output fixes after), which only the private `_run_executor(args,
beam_args)` allows (tfx/orchestration/kubeflow/v2/container/kubeflow_v2_run_executor.py,
identical in TFX 1.16.0 and 1.21.0). `tests/runners/test_private_adapters.py` pins it to
`TESTED_TFX_VERSIONS`.
"""

import argparse

# TFX releases whose `kubeflow_v2_run_executor._run_executor` this module was checked against.
TESTED_TFX_VERSIONS = ("1.16.0", "1.21.0")


def run_executor(args: argparse.Namespace, beam_args: list[str]) -> None:
    """Runs the executor TFX's container entry would run, writing the KFP output file.

    Args:
      args: TFX's container flags (`--executor_class_path`, `--json_serialized_invocation_args`,
        `--json_serialized_inputs_spec_args`) as its own parser gives them.
      beam_args: The remaining Beam arguments.
    """
    # Imported here: TFX is heavy and only needed when a step actually runs.
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

    kubeflow_v2_run_executor._run_executor(args, beam_args)
