"""Custom components on tiny real artifacts: anomalies gate, baseline resolver, atomic pusher."""

import json
import os

import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

import model_contract
from components import ui_artifacts
from components.anomalies_gate import component as gate_component
from components.anomalies_gate import executor as gate
from components.anomalies_gate import policies
from components.latest_pushed_model import component as baseline_component
from components.latest_pushed_model import executor as baseline
from components.latest_pushed_model import served
from components.pusher import component as pusher_component
from components.pusher import executor as pusher
from components.reports import markdown
from model import features


def _md(value: object) -> str:
    """A value as the reports write it: text escaped for the KFP UI's Markdown renderer."""
    return markdown.text(value).markdown


def _artifact(cls, uri: str, **custom):
    artifact = cls()
    artifact.uri = uri
    for key, value in custom.items():
        if isinstance(value, int):
            artifact.set_int_custom_property(key, value)
        else:
            artifact.set_string_custom_property(key, value)
    return artifact


def _tiny_saved_model(path: str, constant: float) -> None:
    module = tf.Module()
    module.f = tf.function(
        lambda x: {"y": x * constant}, input_signature=[tf.TensorSpec([None], tf.float32)]
    )
    tf.saved_model.save(module, path, signatures={"serving_default": module.f})


# --- AnomaliesGate ---------------------------------------------------------------------------


@pytest.fixture
def anomalies_and_schema(tmp_path):
    """ExampleValidator-shaped artifacts: real TFDV anomalies for a bad eval split."""
    schema = features.load_schema()
    anomalies = _artifact(standard_artifacts.ExampleAnomalies, str(tmp_path / "anomalies"))
    anomalies.split_names = artifact_utils.encode_split_names(["train", "eval"])
    frames = {
        "train": pd.DataFrame({"payment_type": ["Cash", "Credit Card"], "trip_start_hour": [1, 2]}),
        "eval": pd.DataFrame({"payment_type": ["Bitcoin", "Cash"], "trip_start_hour": [99, 2]}),
    }
    for split, frame in frames.items():
        stats = tfdv.generate_statistics_from_dataframe(frame)
        found = tfdv.validate_statistics(stats, schema, environment="TRAINING")
        # Only keep the anomalies of the two features the frame has: the test is about them.
        for name in list(found.anomaly_info):
            if name not in frame.columns:
                del found.anomaly_info[name]
        path = os.path.join(anomalies.uri, f"Split-{split}", "SchemaDiff.pb")
        tf.io.gfile.makedirs(os.path.dirname(path))
        with open(path, "wb") as f:
            f.write(found.SerializeToString())
    schema_artifact = _artifact(standard_artifacts.Schema, str(tmp_path / "schema"))
    os.makedirs(schema_artifact.uri)
    with open(os.path.join(schema_artifact.uri, "schema.pbtxt"), "w") as f:
        f.write("feature { name: 'x' type: INT }\n")
    return anomalies, schema_artifact


def _run_gate(anomalies, schema, policy, out_uri):
    validated = _artifact(standard_artifacts.Schema, out_uri)
    # TFX gives a value artifact a file URI inside its output directory.
    os.makedirs(out_uri + "-report", exist_ok=True)
    report = _artifact(ui_artifacts.Markdown, os.path.join(out_uri + "-report", "value"))
    gate.Executor().Do(
        {gate.ANOMALIES_KEY: [anomalies], gate.SCHEMA_KEY: [schema]},
        {gate.VALIDATED_SCHEMA_KEY: [validated], gate.ANOMALIES_REPORT_KEY: [report]},
        {gate.POLICY_KEY: policy},
    )
    return validated


def test_gate_fails_naming_split_feature_and_reason(anomalies_and_schema, tmp_path) -> None:
    anomalies, schema = anomalies_and_schema
    with pytest.raises(gate.AnomaliesFoundError) as error:
        _run_gate(anomalies, schema, gate.FAIL, str(tmp_path / "out"))
    message = str(error.value)
    assert "split 'eval', feature 'payment_type': Unexpected string values" in message
    assert "split 'eval', feature 'trip_start_hour': Out-of-range values" in message
    assert "split 'train'" not in message
    assert not (tmp_path / "out" / "schema.pbtxt").exists()
    # A failed execution publishes no outputs (TFX deletes their dirs): no report file either.
    assert not (tmp_path / "out-report" / "value").exists()


def test_gate_warn_policy_records_anomalies_and_passes_the_schema(
    anomalies_and_schema, tmp_path
) -> None:
    anomalies, schema = anomalies_and_schema
    validated = _run_gate(anomalies, schema, policies.WARN, str(tmp_path / "out"))
    assert validated.get_int_custom_property(gate.ANOMALIES_FOUND_PROPERTY) == 2
    report = json.loads(validated.get_string_custom_property(gate.REPORT_PROPERTY))
    assert {(a["split"], a["feature"]) for a in report} == {
        ("eval", "payment_type"),
        ("eval", "trip_start_hour"),
    }
    assert (tmp_path / "out" / "schema.pbtxt").read_text() == "feature { name: 'x' type: INT }\n"
    markdown = (tmp_path / "out-report" / "value").read_text()
    assert "**2 anomalies** against the curated schema" in markdown
    assert "| train | 0 |" in markdown and "| eval | 2 |" in markdown
    # Names are escaped for the KFP UI's Markdown renderer (components/reports/markdown.py).
    assert "| eval | payment\\_type | ERROR | Unexpected string values |" in markdown
    assert "| eval | trip\\_start\\_hour | ERROR | Out-of-range values |" in markdown


def test_gate_reports_plainly_that_there_are_no_anomalies(anomalies_and_schema, tmp_path) -> None:
    anomalies, schema = anomalies_and_schema
    for split in ("train", "eval"):  # what ExampleValidator writes for clean data
        path = os.path.join(anomalies.uri, f"Split-{split}", "SchemaDiff.pb")
        with open(path, "wb") as f:
            f.write(anomalies_pb2.Anomalies().SerializeToString())
    validated = _run_gate(anomalies, schema, gate.FAIL, str(tmp_path / "out"))
    assert validated.get_int_custom_property(gate.ANOMALIES_FOUND_PROPERTY) == 0
    markdown = (tmp_path / "out-report" / "value").read_text()
    assert "**No anomalies**: every split (train, eval) matches the curated schema." in markdown


def test_gate_declares_a_markdown_report_output() -> None:
    from tfx import types

    built = gate_component.AnomaliesGate(
        anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies),
        schema=types.Channel(type=standard_artifacts.Schema),
    )
    assert built.outputs["anomalies_report"].type is ui_artifacts.Markdown
    assert built.outputs["anomalies_report"].type.TYPE_NAME == "system.Markdown"


def test_gate_rejects_unknown_policy_when_the_pipeline_is_built() -> None:
    channel = standard_artifacts.ExampleAnomalies
    from tfx import types

    with pytest.raises(
        ValueError, match="policy must be one of \\('fail', 'warn'\\), got 'ignore'"
    ):
        gate_component.AnomaliesGate(
            anomalies=types.Channel(type=channel),
            schema=types.Channel(type=standard_artifacts.Schema),
            policy="ignore",
        )


# --- LatestPushedModel ------------------------------------------------------------------------


def _resolve(candidate_uri: str, model_dir: str, out_uri: str):
    candidate = _artifact(standard_artifacts.Model, candidate_uri)
    out = _artifact(standard_artifacts.Model, out_uri)
    baseline.Executor().Do(
        {baseline.CANDIDATE_MODEL_KEY: [candidate]},
        {baseline.BASELINE_MODEL_KEY: [out]},
        {
            baseline.MODEL_DIR_KEY: model_dir,
            baseline.SERVED_MODEL_KEY: served.served_model_identity(tf.io.gfile, model_dir),
        },
    )
    return out


def test_baseline_is_the_candidate_before_any_push(tmp_path) -> None:
    _tiny_saved_model(str(tmp_path / "candidate" / "Format-Serving"), 1.0)
    out = _resolve(
        str(tmp_path / "candidate"), str(tmp_path / "serving" / "m"), str(tmp_path / "out")
    )
    assert out.get_string_custom_property(baseline.SOURCE_PROPERTY) == baseline.SOURCE_NONE
    assert (tmp_path / "out" / "Format-Serving" / "saved_model.pb").exists()


def test_baseline_is_the_highest_complete_pushed_version(tmp_path) -> None:
    _tiny_saved_model(str(tmp_path / "candidate" / "Format-Serving"), 1.0)
    model_dir = tmp_path / "serving" / "m"
    _tiny_saved_model(str(model_dir / "100"), 2.0)
    _tiny_saved_model(str(model_dir / "200"), 3.0)
    (model_dir / "300").mkdir()  # incomplete: no saved_model.pb
    _tiny_saved_model(str(model_dir / ".tmp-400-abc"), 4.0)  # staging, not a version
    out = _resolve(str(tmp_path / "candidate"), str(model_dir), str(tmp_path / "out"))
    assert out.get_string_custom_property(baseline.VERSION_PROPERTY) == "200"
    loaded = tf.saved_model.load(str(tmp_path / "out" / "Format-Serving"))
    assert float(loaded.signatures["serving_default"](tf.constant([1.0]))["y"][0]) == 3.0


def test_baseline_component_requires_a_model_dir() -> None:
    from tfx import types

    with pytest.raises(ValueError, match="needs model_dir"):
        baseline_component.LatestPushedModel(
            types.Channel(type=standard_artifacts.Model), "", served_model="none"
        )


# --- AtomicPusher -----------------------------------------------------------------------------


def _destination(model_dir: str, versioning: int = 0) -> pusher_pb2.PushDestination:
    return pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(
            base_directory=model_dir, versioning=versioning
        )
    )


def _push(tmp_path, model_uri: str, blessed: int, model_dir: str, run: str, versioning: int = 0):
    model = _artifact(standard_artifacts.Model, model_uri)
    model.id = 7
    blessing = _artifact(
        standard_artifacts.ModelBlessing, str(tmp_path / "blessing"), blessed=blessed
    )
    pushed = _artifact(standard_artifacts.PushedModel, str(tmp_path / f"pushed-{run}"))
    # A value artifact: TFX makes its URI a file inside the output directory.
    report = _artifact(ui_artifacts.Markdown, str(tmp_path / f"report-{run}" / "value"))
    pusher.Executor().Do(
        {"model": [model], "model_blessing": [blessing]},
        {"pushed_model": [pushed], pusher.PUSH_REPORT_KEY: [report]},
        {
            "push_destination": proto_utils.proto_to_json(_destination(model_dir, versioning)),
            "custom_config": json.dumps({"provenance": {"data_version": "taxi-abc"}}),
        },
    )
    return pushed, (tmp_path / f"report-{run}" / "value").read_text()


def test_unblessed_model_is_not_pushed_and_the_report_says_why(tmp_path) -> None:
    _tiny_saved_model(str(tmp_path / "model" / "Format-Serving"), 1.0)
    model_dir = str(tmp_path / "serving" / "m")
    pushed, report = _push(tmp_path, str(tmp_path / "model"), 0, model_dir, "a")
    assert pushed.get_int_custom_property("pushed") == 0
    assert pushed.get_string_custom_property(pusher.OUTCOME_PROPERTY) == pusher.NOT_BLESSED
    assert model_contract.list_versions(tf.io.gfile, model_dir) == []
    assert report.startswith("# Not pushed: the Evaluator did not bless this model (")
    assert f"| model artifact | {_md(tmp_path / 'model')} |" in report
    assert f"| blessing | {_md(tmp_path / 'blessing')} |" in report
    assert "| data version | taxi-abc |" in report and "| version | none |" in report
    assert "pushed at" not in report


def test_blessed_model_appears_complete_with_manifest_report_and_no_duplicate(tmp_path) -> None:
    _tiny_saved_model(str(tmp_path / "model" / "Format-Serving"), 1.0)
    model_dir = tmp_path / "serving" / "m"
    _tiny_saved_model(str(model_dir / "9999999999"), 0.5)  # an older push with a future clock
    pushed, report = _push(tmp_path, str(tmp_path / "model"), 1, str(model_dir), "a")
    version = pushed.get_string_custom_property("pushed_version")
    assert version == "10000000000"
    assert pushed.get_string_custom_property(pusher.OUTCOME_PROPERTY) == pusher.PUSHED
    assert sorted(os.listdir(model_dir)) == ["10000000000", "9999999999"]  # no staging left
    manifest = model_contract.read_manifest(tf.io.gfile, str(model_dir / version))
    assert manifest["model_uri"] == str(tmp_path / "model")
    assert manifest["model_blessing_uri"] == str(tmp_path / "blessing")
    assert manifest["data_version"] == "taxi-abc" and manifest["version"] == int(version)
    assert report.startswith(f"# Pushed as version {version}\n")
    assert f"| destination | {_md(model_dir / version)} |" in report
    assert "| model artifact id | 7 |" in report and "| data version | taxi-abc |" in report
    loaded = tf.saved_model.load(str(model_dir / version))
    assert float(loaded.signatures["serving_default"](tf.constant([2.0]))["y"][0]) == 2.0

    again, report = _push(tmp_path, str(tmp_path / "model"), 1, str(model_dir), "b")
    assert again.get_string_custom_property(pusher.OUTCOME_PROPERTY) == pusher.ALREADY_SERVING
    assert again.get_string_custom_property("pushed_version") == version
    assert model_contract.list_versions(tf.io.gfile, str(model_dir)) == [9999999999, 10000000000]
    headline = f"# Not pushed again: this model is already served as version {version}\n"
    assert report.startswith(headline)


def test_pusher_raises_for_versioning_it_does_not_support(tmp_path) -> None:
    from tfx import types

    # Only AUTO and UNIX_TIMESTAMP exist in TFX 1.16; any other number is what a newer
    # TFX's spec (or a hand-edited one) could carry, and must not be ignored.
    with pytest.raises(ValueError, match=r"leave push_destination\.filesystem\.versioning unset"):
        pusher_component.AtomicPusher(
            model=types.Channel(type=standard_artifacts.Model),
            model_blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            push_destination=_destination(str(tmp_path / "m"), versioning=7),
        )
    _tiny_saved_model(str(tmp_path / "model" / "Format-Serving"), 1.0)
    with pytest.raises(ValueError, match="got versioning 7"):
        _push(tmp_path, str(tmp_path / "model"), 1, str(tmp_path / "m"), "a", versioning=7)
    assert not (tmp_path / "m").exists()


def test_pusher_rejects_unsupported_custom_config_and_destination() -> None:
    from tfx import types

    channels = {
        "model": types.Channel(type=standard_artifacts.Model),
        "model_blessing": types.Channel(type=standard_artifacts.ModelBlessing),
    }
    with pytest.raises(ValueError, match=r"reads only custom_config\['provenance'\]"):
        pusher_component.AtomicPusher(
            **channels, push_destination=_destination("/m"), custom_config={"ai_platform": {}}
        )
    with pytest.raises(ValueError, match="must map field names to strings"):
        pusher_component.AtomicPusher(
            **channels, push_destination=_destination("/m"), custom_config={"provenance": [1]}
        )
    with pytest.raises(ValueError, match=r"needs push_destination\.filesystem\.base_directory"):
        pusher_component.AtomicPusher(**channels, push_destination=pusher_pb2.PushDestination())


def test_pusher_outputs_a_markdown_push_report() -> None:
    from tfx import types

    built = pusher_component.AtomicPusher(
        model=types.Channel(type=standard_artifacts.Model),
        model_blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        push_destination=_destination("/serving/m"),
        custom_config={"provenance": {"data_version": "v1"}},
    )
    assert built.outputs[pusher.PUSH_REPORT_KEY].type is ui_artifacts.Markdown
    assert built.outputs["pushed_model"].type is standard_artifacts.PushedModel


def test_roll_back_withdraws_newest_versions_without_deleting(tmp_path) -> None:
    model_dir = tmp_path / "m"
    for version in (1, 2, 3):
        _tiny_saved_model(str(model_dir / str(version)), float(version))
    assert model_contract.roll_back(tf.io.gfile, str(model_dir)) == [3]
    assert model_contract.latest_version(tf.io.gfile, str(model_dir)) == 2
    assert (model_dir / "_rolled_back_3" / "saved_model.pb").exists()
    with pytest.raises(ValueError, match="Version 5 is not in"):
        model_contract.roll_back(tf.io.gfile, str(model_dir), 5)
    assert model_contract.roll_back(tf.io.gfile, str(model_dir), 1) == [2]
    with pytest.raises(ValueError, match="needs an earlier version"):
        model_contract.roll_back(tf.io.gfile, str(model_dir))


# --- BaselineAwareEvaluator -------------------------------------------------------------------


def test_evaluator_uses_a_baseline_only_when_one_was_served() -> None:
    from components.evaluator import executor as evaluator

    stand_in = _artifact(standard_artifacts.Model, "/b", baseline_source=baseline.SOURCE_NONE)
    served = _artifact(standard_artifacts.Model, "/b", baseline_source=baseline.SOURCE_PUSHED)
    resolved_elsewhere = _artifact(standard_artifacts.Model, "/b")  # e.g. TFX's Resolver
    assert not evaluator.has_served_baseline([stand_in])
    assert not evaluator.has_served_baseline([])
    assert evaluator.has_served_baseline([served])
    assert evaluator.has_served_baseline([resolved_elsewhere])


# --- LoadTest wiring ---------------------------------------------------------------------------


def _build(tmp_path, **load_test_settings):
    from pipeline import pipeline as pipeline_lib
    from pipeline.config import LoadTestSettings, PipelineSettings

    settings = PipelineSettings(load_test=LoadTestSettings(**load_test_settings))
    components = pipeline_lib.create_components(
        settings,
        source_uri=str(tmp_path / "data"),
        source_fingerprint="0" * 64,
        served_model="none",
        schema_path=str(tmp_path / "schema.pbtxt"),
        model_dir=str(tmp_path / "serving" / "m"),
    )
    return {c.id: c for c in components}


def test_load_test_sits_between_evaluator_and_pusher_with_its_settings(tmp_path) -> None:
    by_id = _build(tmp_path, max_p99_ms=250, sample_size=7, concurrency=3)
    load_test, pusher_node = by_id["LoadTest"], by_id["Pusher"]
    assert (
        list(by_id).index("Evaluator") < list(by_id).index("LoadTest") < list(by_id).index("Pusher")
    )
    assert load_test.inputs["model"] is by_id["Trainer"].outputs["model"]
    assert load_test.inputs["examples"] is by_id["ExampleGen"].outputs["examples"]
    assert load_test.inputs["model_blessing"] is by_id["Evaluator"].outputs["blessing"]
    assert pusher_node.inputs["infra_blessing"] is load_test.outputs["blessing"]
    assert load_test.outputs["blessing"].type is standard_artifacts.InfraBlessing
    props = load_test.exec_properties
    assert (props["max_p99_ms"], props["sample_size"], props["concurrency"]) == (250.0, 7, 3)
    assert props["model_name"] == "chicago_taxi" and props["example_split"] == "eval"


def test_load_test_disabled_drops_the_step_and_the_pusher_requirement(tmp_path) -> None:
    by_id = _build(tmp_path, enabled=False)
    assert "LoadTest" not in by_id
    assert "infra_blessing" not in by_id["Pusher"].inputs
