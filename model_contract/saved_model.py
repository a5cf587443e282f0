"""Signature method names in `saved_model.pb`, set without importing TensorFlow here."""

import os
from collections.abc import Mapping
from typing import Any, Protocol

from model_contract.filesystem import FileSystem
from model_contract.layout import SAVED_MODEL_FILE, SIGNATURE_METHODS


class SavedModelMessage(Protocol):
    """What is used of `tensorflow.core.protobuf.saved_model_pb2.SavedModel`."""

    meta_graphs: Any

    def ParseFromString(self, serialized: bytes) -> Any:  # noqa: N802 (protobuf's name)
        """Parses the message from bytes."""
        ...

    def SerializeToString(self) -> bytes:  # noqa: N802 (protobuf's name)
        """Serializes the message."""
        ...


def set_method_names(
    fs: FileSystem,
    export_dir: str,
    saved_model: SavedModelMessage,
    methods: Mapping[str, str] | None = None,
) -> None:
    """Rewrites signature method names in `saved_model.pb`.

    TF2's saver writes `tensorflow/serving/predict` for every signature, but TF Serving's
    Classify and Regress APIs refuse a signature whose method name is not classify / regress.

    Args:
      fs: The filesystem (`tf.io.gfile`).
      export_dir: SavedModel directory.
      saved_model: An empty `saved_model_pb2.SavedModel()` to parse into (the contract
        does not import TensorFlow).
      methods: Signature key -> method name; default: the contract's classify and regress
        signatures (`SIGNATURE_METHODS` minus the predict default).

    Raises:
      KeyError: If a named signature is not in the SavedModel, naming those it has.
    """
    if methods is None:
        methods = {k: m for k, m in SIGNATURE_METHODS.items() if k != "serving_default"}
    path = os.path.join(export_dir, SAVED_MODEL_FILE)
    with fs.GFile(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        signature_defs = meta_graph.signature_def
        for key, method in methods.items():
            if key not in signature_defs:
                raise KeyError(f"Signature {key!r} not in {path}: has {sorted(signature_defs)}")
            signature_defs[key].method_name = method
    with fs.GFile(path, "wb") as f:
        f.write(saved_model.SerializeToString())
