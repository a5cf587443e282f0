"""UI reports on tiny real inputs: every Markdown report rendered as the KFP UI renders it, the
evaluation's Metrics, ClassificationMetrics and HTML, checked in the shapes the KFP UI reads."""

import os
import re

import pytest
import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
from google.protobuf import struct_pb2
from tensorflow_model_analysis.proto import config_pb2
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
from tfx.orchestration.portable import outputs_utils
from tfx.types import standard_artifacts

import schemas
from components import ui_artifacts
from components.drift_gate import drift
from components.drift_gate import executor as drift_executor
from components.evaluator import component as evaluator_component
from components.evaluator import executor as evaluator
from components.load_test import report as load_report
from components.load_test import settings as load_test_settings
from components.load_test.load import LoadResult
from components.load_test.report import Outcome
from components.pusher import executor as pusher_executor
from components.reports import anomalies as anomalies_report
from components.reports import html_report, kfp_metrics
from components.reports.evaluation import describe_blessing
from metadata import tfma_results
from pipeline.config import EvaluationSettings
from pipeline.evaluation import build_eval_config
from tests.support.markdown_render import render_text
from tests.support.scored_examples import (
    model_agnostic_run_config,
    scored_eval_config,
    write_scored_examples,
)

_COMPANIES = ("Flash Cab", "Taxi Affiliation Services", "Yellow Cab")


def _write_examples(path: str, count: int = 240) -> None:
    """Scored trips: the candidate separates big tippers better than the baseline."""
    write_scored_examples(path, count, seed=7, companies=_COMPANIES, noise=(0.2, 0.3))


def _evaluate(tmp: str, *, with_baseline: bool) -> tuple[str, config_pb2.EvalConfig]:
    """Runs TFMA with the project's EvalConfig, scores read from the examples (no model)."""
    config = scored_eval_config()
    data = os.path.join(tmp, "examples.tfrecord")
    _write_examples(data)
    out = os.path.join(tmp, "evaluation")
    # The reports get the config as configured, as the executor passes it.
    run_config = model_agnostic_run_config(config, has_baseline=with_baseline)
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
    assert "**2 anomalies**" in text and "`anomalies_policy=warn`" in text
    assert "| train | 0 |" in text and "| eval | 2 |" in text
    assert "| split | feature | severity | anomaly | description |" in text
    assert (
        "| eval | payment\\_type | ERROR | Unexpected string values | Examples contain values "
        "missing from the schema: Bitcoin \\| x. |" in text
    )
    assert "| eval | (data set) | WARNING | Low count | Too few examples. |" in text


def test_anomalies_markdown_says_plainly_when_there_are_none() -> None:
    text = anomalies_report.anomalies_markdown([], ["train", "eval"], "fail")
    assert "**No anomalies**: every split (train, eval) matches the curated schema." in text
    assert "| train | 0 |" in text and "| eval | 0 |" in text
    assert "| severity |" not in text


# --- Every Markdown report as the KFP UI renders it (markdown-to-jsx 6.11 and 7.x) -----------

_PIPELINE = "chicago_taxi_kfp_pipeline"


def _feature_names() -> list[str]:
    schema = tfdv.load_schema_text(schemas.schema_path("taxi"))
    return [f.name for f in schema.feature]


def _markdown_reports() -> dict[str, tuple[str, list[str]]]:
    """Report name -> (its Markdown, the names that must read intact in the UI)."""
    features = _feature_names()
    found = [
        {
            "split": "eval",
            "feature": name,
            "severity": "ERROR",
            "short": f"Unexpected values in {name}",
            "description": f"Examples of {name} contain values missing from the schema: a_b*c.",
        }
        for name in features
    ]
    checks = [
        check
        for i, name in enumerate(features)
        for check in (
            drift.FeatureCheck(name, drift.JENSEN_SHANNON, 0.01 * i, 0.1),
            drift.FeatureCheck(name, drift.PRESENCE, 1.0 - 0.1 * (i % 3), 0.9, baseline=0.95),
        )
    ]
    load = LoadResult(
        requests=300,
        failures=2,
        by_method={"warmup_requests/Predict": 150, "eval_split/Classify": 150},
        latencies_ms=(1.5, 2.5, 9.0),
        errors=tuple(f"Predict: INVALID_ARGUMENT: feature {n} missing" for n in features[:3]),
    )
    outcome = Outcome(
        blessed=False,
        reason=f"2 of 300 requests to {_PIPELINE} failed",
        result=load,
        load_time_s=3.2,
        max_p99_ms=50.0,
        load_timeout_s=120.0,
        server=load_test_settings.PYTHON_SERVER,
    )
    model_uri = f"/pipelines/{_PIPELINE}/Trainer/model/7"
    manifest = {
        "model_uri": model_uri,
        "model_artifact_id": 7,
        "model_blessing_uri": f"/pipelines/{_PIPELINE}/Evaluator/blessing/8",
        "pipeline_run_id": f"{_PIPELINE}_run_2026_12_06",
        "pipeline_name": _PIPELINE,
        "data_version": "d_1a2b",
        "pushed_at": "2026-12-06T23:00:00Z",
    }
    model_dir = "/serving_models/chicago_taxi"
    return {
        "anomalies": (
            anomalies_report.anomalies_markdown(found, ["train", "eval"], "warn"),
            [*features, "anomalies_policy=warn", "a_b*c"],
        ),
        "drift": (
            drift_executor.report_markdown(
                drift_executor.DRIFTED, "fail", checks, f"version 7 of {_PIPELINE}"
            ),
            [*features, _PIPELINE, "presence.min_fraction", "drift_comparator"],
        ),
        "load test": (load_report.render_markdown(outcome, model_uri), [model_uri, *features[:3]]),
        "push": (
            pusher_executor.render_push_report(pusher_executor.PUSHED, model_dir, manifest, 1765),
            [_PIPELINE, f"{_PIPELINE}_run_2026_12_06", model_dir + "/1765", model_uri],
        ),
        "not pushed": (
            pusher_executor.render_push_report(
                pusher_executor.NOT_INFRA_BLESSED, model_dir, manifest, None
            ),
            [_PIPELINE, model_dir],
        ),
    }


def test_every_markdown_report_keeps_every_name_intact_in_the_kfp_ui() -> None:
    reports = _markdown_reports()
    rendered = render_text([markdown for markdown, _ in reports.values()])
    for frontend, seen in rendered.items():
        for (report, (_, names)), (visible_text, tags) in zip(reports.items(), seen, strict=True):
            missing = [name for name in names if name not in visible_text]
            assert not missing, f"{frontend} {report} report: {missing} not intact"
            assert "em" not in tags, f"{frontend} {report} report has italics: {visible_text}"
            assert "table" in tags, f"{frontend} {report} report lost its table"


# --- Evaluation: reading TFMA's output ----------------------------------------------------


def test_evaluation_reads_slices_roc_confusion_calibration_and_baseline(with_baseline) -> None:
    uri, config = with_baseline
    result = tfma_results.read_evaluation(uri, config)
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
    result = tfma_results.read_evaluation(uri, config)
    assert len(result.failures) == 1, result.failures
    assert re.fullmatch(
        r"auc value on payment_type=Credit Card = 0\.\d{4} fails .*'lowerBound': 0\.99.*",
        result.failures[0],
    )
    assert describe_blessing(result, blessed=False) == result.failures[0]


def test_evaluation_without_a_baseline_has_no_baseline_parts(without_baseline) -> None:
    uri, config = without_baseline
    result = tfma_results.read_evaluation(uri, config)
    assert not result.has_baseline and result.baseline_roc == []
    assert result.headline[0].candidate["example_count"] == 240
    assert "no baseline was served yet" in describe_blessing(result, True)


def test_evaluation_of_an_empty_directory_names_it(tmp_path) -> None:
    config = build_eval_config(EvaluationSettings())
    with pytest.raises(ValueError, match="No TFMA metrics for model 'candidate' in"):
        tfma_results.read_evaluation(str(tmp_path), config)


# --- Evaluation: the UI artifacts ---------------------------------------------------------


def test_metrics_artifact_holds_numbers_and_strings_the_ui_lists(with_baseline, tmp_path) -> None:
    uri, config = with_baseline
    outputs = _outputs(tmp_path, uri, blessed=0)
    evaluator.write_ui_outputs(outputs, config, "version 1700000000")
    # What every TFX launcher (and kubeflow_v2_run_executor) does to outputs after Do().
    outputs_utils.tag_output_artifacts_with_version(outputs)
    metrics = outputs[evaluator.METRICS_KEY][0]
    assert metrics.TYPE_NAME == "system.Metrics"
    stored = _kfp_metadata(metrics)
    assert stored.pop("display_name") == "evaluation"
    assert all(isinstance(v, float | str) for v in stored.values()), stored
    # The UI's rows: every other custom property, sorted by name, 10 a page.
    rows = [name.split("_", 1)[1] for name in sorted(stored)]
    assert rows[:10] == [
        "blessed",
        "blessing_reason",
        *(f"{s}_{m}" for s in ("overall", "credit_card") for m in tfma_results.COMPARED_METRICS),
    ]
    assert "tfx_version" not in rows
    by_name = {name.split("_", 1)[1]: value for name, value in stored.items()}
    assert by_name["blessed"] == 0.0 and by_name["baseline"] == "version 1700000000"
    assert by_name["blessing_reason"].startswith("auc value on payment_type=Credit Card = ")
    assert by_name["operating_threshold"] == 0.5
    for prefix in ("overall", "credit_card", "baseline_overall", "baseline_credit_card"):
        for name in ("auc", "precision", "recall", "binary_accuracy", "example_count"):
            assert isinstance(by_name[f"{prefix}_{name}"], float), f"{prefix}_{name}"
    assert rows.index("baseline_overall_auc") > rows.index("credit_card_example_count")
    assert by_name["overall_example_count"] == 240.0
    assert by_name["credit_card_example_count"] == 160.0
    # The version tag stays on TFX's own outputs.
    assert outputs["blessing"][0].get_string_custom_property("tfx_version")


def test_ui_rows_refuses_more_rows_than_it_can_rank() -> None:
    assert list(kfp_metrics.ui_rows({"b": 1.0, "a": 2.0})) == ["01_b", "02_a"]
    with pytest.raises(ValueError, match="100 metrics rows"):
        kfp_metrics.ui_rows({f"m{i}": 0.0 for i in range(100)})


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
        tfma_results.read_evaluation(uri, config).headline[0].candidate["recall"]
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
    rows = {name.split("_", 1)[1]: value for name, value in stored.items() if name[:2].isdigit()}
    assert rows["blessed"] == 1.0 and not any(k.startswith("baseline_") for k in rows)


def test_html_escapes_slice_values() -> None:
    result = tfma_results.EvaluationResult(
        slices=[tfma_results.SliceResult("company", "<b>A & B</b>", {"auc": 0.7}, {})],
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
