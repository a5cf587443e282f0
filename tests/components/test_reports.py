"""UI reports on tiny real inputs: the anomalies Markdown and the evaluation's Metrics,
ClassificationMetrics and HTML, checked in the shapes the KFP UI reads."""

import os
import re

import pytest
import tensorflow_model_analysis as tfma
from google.protobuf import struct_pb2
from tensorflow_model_analysis.proto import config_pb2
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
from tfx.types import standard_artifacts

from components import ui_artifacts
from components.evaluator import component as evaluator_component
from components.evaluator import executor as evaluator
from components.reports import anomalies as anomalies_report
from components.reports import evaluation as evaluation_lib
from components.reports import html_report
from pipeline.config import EvaluationSettings
from pipeline.evaluation import build_eval_config
from tests.support.scored_examples import write_scored_examples

_COMPANIES = ("Flash Cab", "Taxi Affiliation Services", "Yellow Cab")


def _write_examples(path: str, count: int = 240) -> None:
    """Scored trips: the candidate separates big tippers better than the baseline."""
    write_scored_examples(path, count, seed=7, companies=_COMPANIES, noise=(0.2, 0.3))


def _evaluate(tmp: str, *, with_baseline: bool) -> tuple[str, config_pb2.EvalConfig]:
    """Runs TFMA with the project's EvalConfig, scores read from the examples (no model)."""
    # A Credit Card bar the tiny data cannot reach, so the verdict has a reason to report.
    settings = EvaluationSettings(min_auc=0.7, min_auc_credit_card=0.99, max_auc_drop=0.0)
    config = build_eval_config(settings)
    specs = []
    for spec in config.model_specs:
        specs.append(
            config_pb2.ModelSpec(
                name=spec.name,
                is_baseline=spec.is_baseline,
                label_key=spec.label_key,
                prediction_key="p_baseline" if spec.is_baseline else "p_candidate",
            )
        )
    del config.model_specs[:]
    config.model_specs.extend(specs)
    data = os.path.join(tmp, "examples.tfrecord")
    _write_examples(data)
    out = os.path.join(tmp, "evaluation")
    # Without a baseline, TFX's Evaluator drops its spec and every change threshold
    # ("rubber stamp"). With one, TFMA's model-agnostic run_model_analysis cannot judge
    # change thresholds (it sees no baseline *model*), so they go; the diff metrics stay.
    # The reports get the config as configured, as the executor passes it.
    run_config = tfma.utils.update_eval_config_with_defaults(
        config, has_baseline=with_baseline, rubber_stamp=True
    )
    for metrics_spec in run_config.metrics_specs:
        for metric in metrics_spec.metrics:
            for per_slice in metric.per_slice_thresholds:
                per_slice.threshold.ClearField("change_threshold")
    tfma.run_model_analysis(eval_config=run_config, data_location=data, output_path=out)
    return out, config


@pytest.fixture(scope="module")
def with_baseline(tmp_path_factory):
    return _evaluate(str(tmp_path_factory.mktemp("with_baseline")), with_baseline=True)


@pytest.fixture(scope="module")
def without_baseline(tmp_path_factory):
    return _evaluate(str(tmp_path_factory.mktemp("without_baseline")), with_baseline=False)


def _outputs(tmp_path, evaluation_uri: str, blessed: int) -> dict:
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = evaluation_uri
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", blessed)
    outputs = {"evaluation": [evaluation], "blessing": [blessing]}
    for key, cls in (
        (evaluator.METRICS_KEY, ui_artifacts.Metrics),
        (evaluator.CLASSIFICATION_METRICS_KEY, ui_artifacts.ClassificationMetrics),
        (evaluator.REPORT_KEY, ui_artifacts.HTML),
    ):
        artifact = cls()
        # As TFX lays out outputs: a directory, and `<dir>/value` for value artifacts.
        directory = tmp_path / key
        directory.mkdir()
        artifact.uri = (
            str(directory / "value") if issubclass(cls, ui_artifacts.HTML) else str(directory)
        )
        outputs[key] = [artifact]
    return outputs


def _kfp_metadata(artifact) -> dict:
    """The artifact's metadata after TFX's KFP entrypoint and KFP's backend stored it.

    TFX: kubeflow_v2_entrypoint_utils.to_runtime_artifact. KFP: StructValueToMLMDValue in
    kubeflow/pipelines backend/src/v2/metadata/converter.go (numbers -> double, bool -> int,
    list -> {list: ...}, struct -> {struct: ...}, null rejected).
    """
    runtime = kubeflow_v2_entrypoint_utils.to_runtime_artifact(artifact, {})
    stored = {}
    for key, value in runtime.metadata.fields.items():
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            stored[key] = value.number_value
        elif kind == "string_value":
            stored[key] = value.string_value
        elif kind == "bool_value":
            stored[key] = int(value.bool_value)
        elif kind == "list_value":
            stored[key] = {"list": _plain(value)}
        elif kind == "struct_value":
            stored[key] = {"struct": _plain(value)}
        else:
            raise AssertionError(f"KFP rejects {kind} in metadata key {key!r}")
    return stored


def _plain(value: struct_pb2.Value):
    from google.protobuf import json_format

    return json_format.MessageToDict(value)


# --- Markdown anomalies report -----------------------------------------------------------


def test_anomalies_markdown_has_a_row_per_split_and_feature() -> None:
    found = [
        {
            "split": "eval",
            "feature": "payment_type",
            "severity": "ERROR",
            "short": "Unexpected string values",
            "description": "Examples contain values missing from the schema: Bitcoin | x.",
        },
        {
            "split": "eval",
            "feature": "",
            "severity": "WARNING",
            "short": "Low count",
            "description": "Too few\nexamples.",
        },
    ]
    text = anomalies_report.anomalies_markdown(found, ["train", "eval"], "warn")
    assert "**2 anomalies**" in text and "anomalies_policy=warn" in text
    assert "| train | 0 |" in text and "| eval | 2 |" in text
    assert "| split | feature | severity | anomaly | description |" in text
    assert (
        "| eval | payment_type | ERROR | Unexpected string values | Examples contain values "
        "missing from the schema: Bitcoin \\| x. |" in text
    )
    assert "| eval | (data set) | WARNING | Low count | Too few examples. |" in text


def test_anomalies_markdown_says_plainly_when_there_are_none() -> None:
    text = anomalies_report.anomalies_markdown([], ["train", "eval"], "fail")
    assert "**No anomalies**: every split (train, eval) matches the curated schema." in text
    assert "| train | 0 |" in text and "| eval | 0 |" in text
    assert "| severity |" not in text


# --- Evaluation: reading TFMA's output ----------------------------------------------------


def test_evaluation_reads_slices_roc_confusion_calibration_and_baseline(with_baseline) -> None:
    uri, config = with_baseline
    result = evaluation_lib.read_evaluation(uri, config)
    assert [s.name for s in result.headline] == ["overall", "payment_type=Credit Card"]
    overall, card = result.headline
    assert overall.candidate["example_count"] == 240 and card.candidate["example_count"] == 160
    assert overall.candidate["auc"] > overall.baseline["auc"] > 0.5
    assert {"precision", "recall", "binary_accuracy", "calibration"} <= set(overall.candidate)
    assert {s.feature for s in result.slices} == {"", "payment_type", "company", "trip_start_hour"}
    assert result.has_baseline
    # ROC from ConfusionMatrixPlot: from (1, 1) down to (0, 0), recall never rising.
    assert result.roc[0].recall == 1.0 and result.roc[0].false_positive_rate == 1.0
    assert result.roc[-1].recall == 0.0 and result.roc[-1].false_positive_rate == 0.0
    recalls = [p.recall for p in result.roc]
    assert recalls == sorted(recalls, reverse=True) and len(result.roc) > 10
    assert result.baseline_roc
    matrix = result.confusion
    assert matrix is not None and matrix.threshold == 0.5
    total = matrix.true_positives + matrix.false_positives
    total += matrix.true_negatives + matrix.false_negatives
    assert total == 240
    assert matrix.true_positives / (matrix.true_positives + matrix.false_negatives) == (
        pytest.approx(overall.candidate["recall"])
    )
    assert set(result.calibration) == {"overall", "payment_type=Credit Card"}
    buckets = result.calibration["overall"]
    assert sum(b.examples for b in buckets) == 240
    assert all(0 <= b.mean_label <= 1 and 0 <= b.mean_prediction <= 1 for b in buckets)


def test_failed_thresholds_are_the_blessing_reason(with_baseline) -> None:
    uri, config = with_baseline
    result = evaluation_lib.read_evaluation(uri, config)
    assert len(result.failures) == 1, result.failures
    assert re.fullmatch(
        r"auc value on payment_type=Credit Card = 0\.\d{4} fails .*'lowerBound': 0\.99.*",
        result.failures[0],
    )
    assert evaluation_lib.describe_blessing(result, blessed=False) == result.failures[0]


def test_evaluation_without_a_baseline_has_no_baseline_parts(without_baseline) -> None:
    uri, config = without_baseline
    result = evaluation_lib.read_evaluation(uri, config)
    assert not result.has_baseline and result.baseline_roc == []
    assert result.headline[0].candidate["example_count"] == 240
    assert "no baseline was served yet" in evaluation_lib.describe_blessing(result, True)


def test_evaluation_of_an_empty_directory_names_it(tmp_path) -> None:
    config = build_eval_config(EvaluationSettings())
    with pytest.raises(ValueError, match="No TFMA metrics for model 'candidate' in"):
        evaluation_lib.read_evaluation(str(tmp_path), config)


# --- Evaluation: the UI artifacts ---------------------------------------------------------


def test_metrics_artifact_holds_numbers_and_strings_the_ui_lists(with_baseline, tmp_path) -> None:
    uri, config = with_baseline
    outputs = _outputs(tmp_path, uri, blessed=0)
    evaluator.write_ui_outputs(outputs, config, "version 1700000000")
    metrics = outputs[evaluator.METRICS_KEY][0]
    assert metrics.TYPE_NAME == "system.Metrics"
    stored = _kfp_metadata(metrics)
    assert all(isinstance(v, float | str) for v in stored.values()), stored
    assert stored["blessed"] == 0.0 and stored["baseline"] == "version 1700000000"
    assert stored["blessing_reason"].startswith("auc value on payment_type=Credit Card = ")
    assert stored["operating_threshold"] == 0.5
    for prefix in ("overall", "credit_card", "baseline_overall", "baseline_credit_card"):
        for name in ("auc", "precision", "recall", "binary_accuracy", "example_count"):
            assert isinstance(stored[f"{prefix}_{name}"], float), f"{prefix}_{name}"
    assert stored["overall_example_count"] == 240.0
    assert stored["credit_card_example_count"] == 160.0
    assert stored["display_name"] == "evaluation"


def test_classification_metrics_have_the_roc_and_confusion_shapes_the_ui_validates(
    with_baseline, tmp_path
) -> None:
    uri, config = with_baseline
    outputs = _outputs(tmp_path, uri, blessed=1)
    evaluator.write_ui_outputs(outputs, config, "version 1")
    artifact = outputs[evaluator.CLASSIFICATION_METRICS_KEY][0]
    assert artifact.TYPE_NAME == "system.ClassificationMetrics"
    stored = _kfp_metadata(artifact)
    # ROCCurveHelper.tsx validateConfidenceMetrics: a list of three numbers per point.
    points = stored["confidenceMetrics"]["list"]
    assert len(points) > 10
    for point in points:
        assert set(point) == {"confidenceThreshold", "recall", "falsePositiveRate"}
        assert all(isinstance(v, float) for v in point.values())
    # MetricsVisualizations.tsx validateConfusionMatrix: as many rows as annotationSpecs,
    # each row as long; rows are true labels, columns predicted.
    matrix = stored["confusionMatrix"]["struct"]
    names = [spec["displayName"] for spec in matrix["annotationSpecs"]]
    assert names == ["0 (negative)", "1 (positive)"]
    rows = [r["row"] for r in matrix["rows"]]
    assert len(rows) == 2 and all(len(r) == 2 for r in rows)
    assert sum(sum(r) for r in rows) == 240
    recall = rows[1][1] / (rows[1][0] + rows[1][1])
    assert recall == pytest.approx(
        evaluation_lib.read_evaluation(uri, config).headline[0].candidate["recall"]
    )


def test_html_report_is_one_self_contained_file_with_plots(with_baseline, tmp_path) -> None:
    uri, config = with_baseline
    outputs = _outputs(tmp_path, uri, blessed=0)
    evaluator.write_ui_outputs(outputs, config, "version 1")
    artifact = outputs[evaluator.REPORT_KEY][0]
    assert artifact.TYPE_NAME == "system.HTML"
    with open(artifact.uri, encoding="utf-8") as f:
        page = f.read()
    assert page.startswith("<!DOCTYPE html>")
    # Nothing fetched from anywhere, nothing run.
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page
    assert page.count("<svg") == 2 + 1 + 3  # ROC, calibration, comparison, 3 slice features
    assert "Not blessed" in page and "auc value on payment_type=Credit Card" in page
    assert "baseline (served model)" in page
    for heading in ("Candidate against baseline", "ROC curve", "Calibration", "Metrics per slice"):
        assert heading in page
    assert "trip_start_hour (12 largest of 24 slices)" in page


def test_html_report_without_baseline_says_so(without_baseline, tmp_path) -> None:
    uri, config = without_baseline
    outputs = _outputs(tmp_path, uri, blessed=1)
    evaluator.write_ui_outputs(outputs, config, evaluator.NO_BASELINE)
    page = outputs[evaluator.REPORT_KEY][0].read()
    assert "No baseline: nothing was served yet" in page and "Blessed" in page
    assert "baseline (served model)" not in page
    stored = _kfp_metadata(outputs[evaluator.METRICS_KEY][0])
    assert stored["blessed"] == 1.0 and not any(k.startswith("baseline_") for k in stored)


def test_html_escapes_slice_values() -> None:
    result = evaluation_lib.EvaluationResult(
        slices=[evaluation_lib.SliceResult("company", "<b>A & B</b>", {"auc": 0.7}, {})],
        headline=[],
        roc=[],
        baseline_roc=[],
        confusion=None,
        calibration={},
        failures=[],
    )
    page = html_report.render_html(result, blessed=True, reason="ok", baseline="none", title="t")
    assert "&lt;b&gt;A &amp; B&lt;/b&gt;" in page and "<b>A" not in page


def test_evaluator_declares_the_ui_outputs_beside_tfx_ones() -> None:
    from tfx import types

    built = evaluator_component.BaselineAwareEvaluator(
        examples=types.Channel(type=standard_artifacts.Examples),
        model=types.Channel(type=standard_artifacts.Model),
        baseline_model=types.Channel(type=standard_artifacts.Model),
        example_splits=["eval"],
        eval_config=build_eval_config(EvaluationSettings()),
    )
    assert {k: c.type.TYPE_NAME for k, c in built.outputs.items()} == {
        "evaluation": "ModelEvaluation",
        "blessing": "ModelBlessing",
        "metrics": "system.Metrics",
        "classification_metrics": "system.ClassificationMetrics",
        "report": "system.HTML",
    }
    assert built.exec_properties["example_splits"] == '["eval"]'
