"""The Evaluator's pruned extracts: same metrics, plots and validation as TFMA's defaults, on
scores read from examples (fast) and on the pipeline's real models and examples (slow)."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.extractors import labels_extractor, unbatch_extractor
from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2, validation_result_pb2
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.components.util import udf_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import json_utils, proto_utils

import model_contract
from components import ui_artifacts
from components.evaluator import executor as evaluator
from components.evaluator import extractors
from metadata import store as mlmd
from pipeline.config import EvaluationSettings
from pipeline.evaluation import build_eval_config
from tests.support.scored_examples import (
    model_agnostic_run_config,
    scored_eval_config,
    write_scored_examples,
)

_COMPANIES = ("Flash Cab", "Taxi Affiliation Services", "Yellow Cab", "")


def _write_examples(path: str, count: int = 400) -> None:
    """Scored trips with every slicing feature, some company values missing, and a feature
    (fare) that slicing never reads."""
    write_scored_examples(path, count, seed=11, companies=_COMPANIES, noise=(0.25, 0.25), fare=True)


def _model_agnostic_config() -> config_pb2.EvalConfig:
    """The project's EvalConfig with scores read from the examples, change thresholds off
    (a model-agnostic run has no baseline *model* to judge them against)."""
    config = scored_eval_config()
    for spec in config.model_specs:
        spec.ClearField("signature_name")
        spec.ClearField("preprocessing_function_names")
    return model_agnostic_run_config(config, has_baseline=True)


def _results(output_dir: str) -> dict:
    """Every metric, plot and validation TFMA wrote, keyed by slice, as plain data."""
    found: dict = {}
    for kind, message in (
        ("metrics", metrics_for_slice_pb2.MetricsForSlice),
        ("plots", metrics_for_slice_pb2.PlotsForSlice),
    ):
        paths = glob.glob(os.path.join(output_dir, f"{kind}-*"))
        for record in tf.data.TFRecordDataset(paths).as_numpy_iterator():
            parsed = message.FromString(record)
            key = (kind, parsed.slice_key.SerializeToString(deterministic=True))
            entries = json_format.MessageToDict(parsed)
            entries.pop("sliceKey")
            found[key] = entries
    validation = next(
        tf.data.TFRecordDataset(
            os.path.join(output_dir, "validations.tfrecord")
        ).as_numpy_iterator()
    )
    result = validation_result_pb2.ValidationResult.FromString(validation)
    found["validation"] = (result.validation_ok, len(result.metric_validations_per_slice))
    return found


def _assert_same(expected, actual, path: str = "") -> None:
    """Equal structure and strings; numbers equal up to float summation-order noise."""
    if isinstance(expected, dict):
        assert set(expected) == set(actual), path
        for key in expected:
            _assert_same(expected[key], actual[key], f"{path}/{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(expected) == len(actual), path
        # Repeated metric entries come in no fixed order: compare them sorted.
        for e, a in zip(sorted(expected, key=str), sorted(actual, key=str), strict=True):
            _assert_same(e, a, path)
    elif isinstance(expected, float) and isinstance(actual, float):
        # Change metrics (`*_diff`) are differences of values near 0.1-1, and one run gave a
        # float32 result where the other gave a float64 one (`calibration_diff` 0.0034219027
        # against 0.0034218791): their absolute noise is float32 epsilon times the operands.
        # Dropping or changing an extract moves a metric by far more than 1e-6.
        assert actual == pytest.approx(expected, rel=1e-6, abs=1e-6), path
    else:
        assert expected == actual, path


def test_prune_keeps_what_metrics_and_slicing_read_and_drops_the_rest() -> None:
    batch = {
        constants.INPUT_KEY: np.array([b"serialized", b"examples"]),
        constants.FEATURES_KEY: {"payment_type": ["Cash", "Card"], "fare": [1.0, 2.0]},
        constants.TRANSFORMED_FEATURES_KEY: {
            "candidate": {"big_tipper": [0, 1], "fare_xf": [0.1, 0.2]},
            "baseline": {"big_tipper": [0, 1], "fare_xf": [0.1, 0.3]},
        },
        constants.LABELS_KEY: {"candidate": [0, 1], "baseline": [0, 1]},
        constants.PREDICTIONS_KEY: {"candidate": [0.2, 0.9], "baseline": [0.3, 0.7]},
        constants.EXAMPLE_WEIGHTS_KEY: None,
    }
    pruned = extractors._prune(batch, frozenset({"payment_type"}))

    assert constants.INPUT_KEY not in pruned
    assert pruned[constants.FEATURES_KEY] == {"payment_type": ["Cash", "Card"]}
    assert pruned[constants.TRANSFORMED_FEATURES_KEY] == {"candidate": {}, "baseline": {}}
    for key in (constants.LABELS_KEY, constants.PREDICTIONS_KEY, constants.EXAMPLE_WEIGHTS_KEY):
        assert pruned[key] is batch[key]
    # The input is not modified (Beam may hand the same element to other consumers).
    assert "fare" in batch[constants.FEATURES_KEY]


def test_slicing_feature_keys_cover_slicing_and_cross_slicing_specs() -> None:
    config = build_eval_config(EvaluationSettings())
    config.cross_slicing_specs.add(
        baseline_spec=config_pb2.SlicingSpec(feature_keys=["pickup_community_area"]),
        slicing_specs=[config_pb2.SlicingSpec(feature_values={"dropoff_community_area": "8"})],
    )
    assert extractors.slicing_feature_keys(config) == {
        "payment_type",
        "company",
        "trip_start_hour",
        "pickup_community_area",
        "dropoff_community_area",
    }


def test_query_metrics_are_refused_naming_the_query_key() -> None:
    config = build_eval_config(EvaluationSettings())
    config.metrics_specs[0].query_key = "trip_id"
    with pytest.raises(ValueError, match="query_key='trip_id'"):
        extractors.custom_extractors(None, config, None)


def test_prune_runs_right_before_the_unbatching() -> None:
    stages = [
        e.stage_name for e in extractors.custom_extractors(None, _model_agnostic_config(), None)
    ]
    position = stages.index(extractors.PRUNE_STAGE_NAME)
    assert stages[position + 1] == unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME
    assert stages.index(labels_extractor.LABELS_EXTRACTOR_STAGE_NAME) < position
    # TFMA's features_extractor.py stage name (private there).
    assert stages.index("ExtractFeatures") < position


def test_executor_points_tfx_at_the_extractors_unless_user_code_is_given() -> None:
    module_path = standard_component_specs.MODULE_PATH_KEY
    ours = evaluator.with_pruned_extracts({"eval_config": "{}"})
    # Resolved by TFX's own loader, as its Evaluator executor does.
    assert udf_utils.try_get_fn(ours, "custom_extractors") is extractors.custom_extractors
    assert udf_utils.try_get_fn(ours, "custom_eval_shared_model") is None
    users = {standard_component_specs.MODULE_FILE_KEY: "/user/module.py"}
    assert evaluator.with_pruned_extracts(users) == users
    assert evaluator.with_pruned_extracts({module_path: "user.module"}) == {
        module_path: "user.module"
    }


def test_pruned_extracts_give_the_same_metrics_plots_and_validation(tmp_path) -> None:
    data = str(tmp_path / "examples.tfrecord")
    _write_examples(data)
    config = _model_agnostic_config()
    default_out, pruned_out = str(tmp_path / "default"), str(tmp_path / "pruned")
    tfma.run_model_analysis(eval_config=config, data_location=data, output_path=default_out)
    tfma.run_model_analysis(
        eval_config=config,
        data_location=data,
        output_path=pruned_out,
        extractors=extractors.custom_extractors(None, config, None),
    )
    expected, actual = _results(default_out), _results(pruned_out)
    # Overall and every payment type (Credit Card among them), company (missing on some
    # examples) and hour.
    assert len([k for k in expected if k[0] == "metrics"]) == 1 + 2 + 3 + 24
    _assert_same(expected, actual)


def _newest(pattern: str) -> str:
    return max(glob.glob(pattern), key=lambda path: int(os.path.basename(path)))


def _baseline_artifact(production, out_dir: str) -> str:
    """The first pushed version laid out as a Model artifact (`Format-Serving/`)."""
    version = model_contract.list_versions(tf.io.gfile, production.config.model_dir)[0]
    artifact = os.path.join(out_dir, "baseline")
    os.makedirs(artifact)
    os.symlink(
        os.path.join(production.config.model_dir, str(version)),
        os.path.join(artifact, "Format-Serving"),
    )
    return artifact


def _training_examples_uri(production, model_uri: str) -> str:
    from metadata import lineage_graph

    store = mlmd.open_store(os.path.abspath(production.config.metadata_path))
    [model] = [a for a in store.get_artifacts_by_type("Model") if a.uri == model_uri]
    return lineage_graph.training_chain(store, model).examples.uri


def _run_executor(production, out_dir: str, *, pruned: bool) -> str:
    """Runs the Evaluator on the second production run's examples and model, with the first
    pushed version as the served baseline: BaselineAwareEvaluator's executor (pruned) or
    TFX's own (TFMA's default extractors). Returns the evaluation directory."""
    root = production.config.pipeline_root
    model = standard_artifacts.Model()
    model.uri = _newest(os.path.join(root, "Trainer", "model", "*"))
    examples = standard_artifacts.Examples()
    # The Examples that model was trained and evaluated on, as MLMD records them: other tests
    # add runs to the same root that stop before training (ExampleGen's newest output is not
    # necessarily the second run's).
    examples.uri = _training_examples_uri(production, model.uri)
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    baseline = standard_artifacts.Model()
    baseline.uri = _baseline_artifact(production, out_dir)
    baseline.set_string_custom_property("baseline_source", "pushed")
    baseline.set_string_custom_property("baseline_version", "1")
    outputs = {}
    for key, cls in (
        ("evaluation", standard_artifacts.ModelEvaluation),
        ("blessing", standard_artifacts.ModelBlessing),
        (evaluator.METRICS_KEY, ui_artifacts.Metrics),
        (evaluator.CLASSIFICATION_METRICS_KEY, ui_artifacts.ClassificationMetrics),
        (evaluator.REPORT_KEY, ui_artifacts.HTML),
    ):
        artifact = cls()
        directory = os.path.join(out_dir, key)
        os.makedirs(directory)
        artifact.uri = (
            os.path.join(directory, "value") if key == evaluator.REPORT_KEY else directory
        )
        outputs[key] = [artifact]
    properties = {
        standard_component_specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(
            build_eval_config(production.config.settings.evaluation)
        ),
        standard_component_specs.EXAMPLE_SPLITS_KEY: json_utils.dumps(["eval"]),
    }
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=[], tmp_dir=os.path.join(out_dir, "tmp"), unique_id="1"
    )
    inputs = {"examples": [examples], "model": [model], "baseline_model": [baseline]}
    if pruned:
        evaluator.Executor(context).Do(inputs, outputs, properties)
    else:
        tfx_outputs = {k: v for k, v in outputs.items() if k not in evaluator.UI_OUTPUT_KEYS}
        tfx_evaluator_executor.Executor(context).Do(inputs, tfx_outputs, properties)
    return outputs["evaluation"][0].uri


@pytest.mark.slow
def test_real_models_with_a_baseline_give_the_same_evaluation_pruned(production, tmp_path) -> None:
    default = _run_executor(production, str(tmp_path / "default"), pruned=False)
    pruned = _run_executor(production, str(tmp_path / "pruned"), pruned=True)
    expected, actual = _results(default), _results(pruned)
    assert expected["validation"][0] is True
    # Both models were evaluated: change metrics against the baseline are in the output.
    overall = tfma.load_eval_result(pruned, model_name="candidate").get_metrics_for_slice()
    assert "auc_diff" in overall
    _assert_same(expected, actual)
