"""One training replica: `python -m model.trainer.replica --fn-args FILE` runs run_fn.

What each TFJob replica (and the multi-worker test's processes) runs: the Trainer arguments
the KFP Trainer step resolved, written as JSON on shared storage, rebuilt into TFX's FnArgs
and passed to the same `run_fn`; TF_CONFIG (set by the Training Operator) decides the
strategy and which replica exports.
"""

import argparse
import json
from collections.abc import Sequence
from typing import Any

from tfx import v1 as tfx

# FnArgs fields run_fn reads; data_accessor (Beam/tfx_bsl objects) is not serialisable and
# run_fn does not use it.
FN_ARGS_FIELDS = (
    "working_dir",
    "train_files",
    "eval_files",
    "train_steps",
    "eval_steps",
    "schema_path",
    "schema_file",
    "transform_graph_path",
    "transform_output",
    "serving_model_dir",
    "eval_model_dir",
    "model_run_dir",
    "base_model",
    "hyperparameters",
    "custom_config",
)


def fn_args_to_json(fn_args: tfx.components.FnArgs, **replace: Any) -> dict[str, Any]:
    """The FnArgs fields a replica needs, with `replace` applied."""
    values = {name: getattr(fn_args, name) for name in FN_ARGS_FIELDS}
    values.update(replace)
    return values


def main(argv: Sequence[str] | None = None) -> None:
    """Reads the FnArgs JSON and runs the project's run_fn."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fn-args", required=True, help="JSON file written by the launcher")
    args = parser.parse_args(argv)
    import tensorflow as tf

    from model.trainer import run

    with tf.io.gfile.GFile(args.fn_args) as f:
        values = json.load(f)
    unknown = sorted(set(values) - set(FN_ARGS_FIELDS))
    if unknown:
        raise ValueError(f"{args.fn_args}: unknown FnArgs fields {unknown}")
    run.run_fn(tfx.components.FnArgs(**values))


if __name__ == "__main__":
    main()
