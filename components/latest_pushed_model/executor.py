"""Executor of LatestPushedModel: copies the currently served model out as the baseline."""

import os
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

import model_contract
from components.latest_pushed_model import served

CANDIDATE_MODEL_KEY = "candidate_model"
BASELINE_MODEL_KEY = "baseline_model"
MODEL_DIR_KEY = "model_dir"
SERVED_MODEL_KEY = "served_model"
SOURCE_PROPERTY = "baseline_source"
VERSION_PROPERTY = "baseline_version"
SOURCE_PUSHED = "pushed"
SOURCE_NONE = "none"


class Executor(base_executor.BaseExecutor):
    """Resolves the baseline = the highest complete version in the serving model directory."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Copies the served model (or, before any push, the candidate) into the output.

        With no pushed model yet, the candidate stands in (so the output is a loadable model on
        every orchestrator) and `baseline_source = none` tells BaselineAwareEvaluator to judge
        the candidate on absolute thresholds alone, as TFX does on a first run.

        Args:
          input_dict: `candidate_model` (Model) from the Trainer.
          output_dict: `baseline_model` (Model).
          exec_properties: `model_dir`: `<serving_base>/<model_name>`; `served_model`: the
            served model's identity when the run started.

        Raises:
          served.ServedModelChangedError: If the served model is no longer that one.
        """
        model_dir = exec_properties[MODEL_DIR_KEY]
        # Cached on that identity: the baseline must be exactly the model it names.
        served.check_unchanged(
            tf.io.gfile, model_dir, exec_properties[SERVED_MODEL_KEY], "LatestPushedModel"
        )
        baseline = artifact_utils.get_single_instance(output_dict[BASELINE_MODEL_KEY])
        destination = path_utils.serving_model_dir(baseline.uri)
        version = model_contract.latest_version(tf.io.gfile, model_dir)
        if version is None:
            candidate = artifact_utils.get_single_instance(input_dict[CANDIDATE_MODEL_KEY])
            source = path_utils.serving_model_path(candidate.uri)
            baseline.set_string_custom_property(SOURCE_PROPERTY, SOURCE_NONE)
            logging.info("No model pushed in %s yet: the candidate is its own baseline.", model_dir)
        else:
            source = os.path.join(model_dir, str(version))
            baseline.set_string_custom_property(SOURCE_PROPERTY, SOURCE_PUSHED)
            baseline.set_string_custom_property(VERSION_PROPERTY, str(version))
            logging.info("Baseline is pushed version %s from %s.", version, source)
        io_utils.copy_dir(source, destination)
