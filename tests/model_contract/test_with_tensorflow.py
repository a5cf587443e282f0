"""The contract with what the components and the server pass it: tf.io.gfile and TF's protos."""

import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

import model_contract


def _saved_model(path: str) -> None:
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": x}, input_signature=[tf.TensorSpec([None], tf.string)])
    tf.saved_model.save(
        module,
        path,
        signatures={"serving_default": module.f, "classify": module.f, "regress": module.f},
    )


def _methods(path: str) -> dict[str, str]:
    with open(f"{path}/saved_model.pb", "rb") as f:
        proto = saved_model_pb2.SavedModel.FromString(f.read())
    # TF also saves an `__saved_model_init_op` entry; only the serving signatures matter here.
    defs = proto.meta_graphs[0].signature_def
    return {k: s.method_name for k, s in defs.items() if not k.startswith("__")}


def test_set_method_names_gives_classify_and_regress_their_methods(tmp_path) -> None:
    path = str(tmp_path / "model")
    _saved_model(path)
    assert set(_methods(path).values()) == {model_contract.PREDICT_METHOD}  # TF2's saver
    model_contract.set_method_names(tf.io.gfile, path, saved_model_pb2.SavedModel())
    assert _methods(path) == {
        "serving_default": "tensorflow/serving/predict",
        "classify": "tensorflow/serving/classify",
        "regress": "tensorflow/serving/regress",
    }
    assert tf.saved_model.load(path).signatures["classify"] is not None


def test_set_method_names_names_the_missing_signature(tmp_path) -> None:
    path = str(tmp_path / "model")
    _saved_model(path)
    with pytest.raises(KeyError, match=r"'predict_all' not in .*has \[.*'classify', 'regress'"):
        model_contract.set_method_names(
            tf.io.gfile, path, saved_model_pb2.SavedModel(), {"predict_all": "x"}
        )


def test_tf_io_gfile_is_a_contract_filesystem(tmp_path) -> None:
    _saved_model(str(tmp_path / "src"))
    base = str(tmp_path / "serving" / "m")
    result = model_contract.push_version(
        tf.io.gfile, base, str(tmp_path / "src"), {"model_uri": "u"}, now=3, token="t"
    )
    assert model_contract.list_version_dirs(tf.io.gfile, base) == {3: result.path}
    assert model_contract.read_manifest(tf.io.gfile, result.path)["model_uri"] == "u"
    loaded = tf.saved_model.load(result.path)
    assert loaded.signatures["serving_default"](tf.constant(["a"]))["y"].numpy().tolist() == [b"a"]
