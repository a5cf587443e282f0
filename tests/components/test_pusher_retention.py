"""AtomicPusher's retention knob (`custom_config['keep_versions']`) and staging cleanup."""

import json
import os

import pytest
import tensorflow as tf
from tfx import types
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

import model_contract
from components import ui_artifacts
from components.pusher import component as pusher_component
from components.pusher import executor as pusher


def _destination(model_dir: str) -> pusher_pb2.PushDestination:
    return pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=model_dir)
    )


def _tiny_saved_model(path: str) -> None:
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": x * 2.0}, [tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, path, signatures={"serving_default": module.f})


@pytest.mark.parametrize("keep", [0, -1, 1, 1.5, "2", True])
def test_bad_keep_versions_is_refused_when_the_pipeline_is_built(keep) -> None:
    with pytest.raises(ValueError, match=r"keep_versions'\] must be an integer >= 2"):
        pusher_component.AtomicPusher(
            model=types.Channel(type=standard_artifacts.Model),
            model_blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            push_destination=_destination("/m"),
            custom_config={"keep_versions": keep},
        )


def test_pusher_keeps_the_newest_versions_and_removes_dead_staging(tmp_path) -> None:
    model_dir = tmp_path / "serving" / "m"
    for version in (100, 200, 300):
        _tiny_saved_model(str(model_dir / str(version)))
    (model_dir / ".tmp-100-dead").mkdir()  # a push killed long ago
    _tiny_saved_model(str(tmp_path / "model" / "Format-Serving"))
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    report = ui_artifacts.Markdown()
    report.uri = str(tmp_path / "report" / "value")
    pusher.Executor().Do(
        {"model": [model], "model_blessing": [blessing]},
        {"pushed_model": [pushed], pusher.PUSH_REPORT_KEY: [report]},
        {
            "push_destination": proto_utils.proto_to_json(_destination(str(model_dir))),
            "custom_config": json.dumps({"keep_versions": 2}),
        },
    )
    version = int(pushed.get_string_custom_property("pushed_version"))
    assert sorted(os.listdir(model_dir)) == sorted(["300", str(version)])
    assert model_contract.latest_version(tf.io.gfile, str(model_dir)) == version
