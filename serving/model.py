"""One loaded model version: load, warm up, run signatures, unload."""

from __future__ import annotations

import dataclasses
import functools
import gc
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from model_contract import MAX_WARMUP_RECORDS, SAVED_MODEL_FILE, WARMUP_FILE
from model_contract.serving_input import input_examples
from serving import tensors
from serving.batching import Arrays, BatchingSettings, BatchQueue
from serving.errors import (
    Code,
    FailedPreconditionError,
    InvalidArgumentError,
    ModelLoadError,
    ServingError,
    error_for_code,
)
from serving.tfcall import KeywordCall

logger = logging.getLogger(__name__)

EXAMPLE_INPUT_NAMES = ("examples", "inputs")


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """dtype (DataType enum) and shape (-1 = any; None = unknown rank) of a signature tensor."""

    dtype: int
    shape: tuple[int, ...] | None


@dataclasses.dataclass(frozen=True)
class SignatureInfo:
    """What a signature takes and returns.

    Attributes:
      key: Signature key.
      method_name: E.g. `tensorflow/serving/predict`.
      inputs: Input alias to TensorInfo.
      outputs: Output alias to TensorInfo.
      batchable: Every input and output has a leading batch dimension.
    """

    key: str
    method_name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    batchable: bool

    @functools.cached_property
    def example_input(self) -> str | None:
        """The input carrying serialized tf.Examples (`examples` or `inputs`, rank-1 string).

        Cached: every request asks (issue 19), and the signature never changes.
        """
        for name in EXAMPLE_INPUT_NAMES:
            info = self.inputs.get(name)
            if (
                info is not None
                and info.dtype == tf.string.as_datatype_enum
                and info.shape == (-1,)
            ):
                return name
        return None


def _signature_info(key: str, sig: meta_graph_pb2.SignatureDef) -> SignatureInfo:
    def infos(m: object) -> dict[str, TensorInfo]:
        return {
            alias: TensorInfo(t.dtype, tensors.shape_of(t.tensor_shape))
            for alias, t in m.items()  # type: ignore[attr-defined]
        }

    inputs, outputs = infos(sig.inputs), infos(sig.outputs)
    batchable = all(
        t.shape is not None and len(t.shape) >= 1 and t.shape[0] == -1
        for t in list(inputs.values()) + list(outputs.values())
    )
    return SignatureInfo(key, sig.method_name, inputs, outputs, batchable)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A signature's outputs, and the fused schema detector's flags (None: no detector ran)."""

    outputs: Arrays
    flags: np.ndarray | None


def tf_error(e: tf.errors.OpError, context: str) -> ServingError:
    """Maps a TensorFlow runtime error to a ServingError with the same canonical code."""
    try:
        code = Code(e.error_code)
    except ValueError:
        code = Code.INTERNAL
    first_line = (e.message or str(e)).strip().splitlines()[0] if (e.message or str(e)) else ""
    return error_for_code(code, f"{context}: {first_line}")


class ServableVersion:
    """A SavedModel version with an explicit lifecycle: load -> (ready) -> run -> unload."""

    def __init__(
        self,
        name: str,
        version: int,
        path: str,
        batching: BatchingSettings | None,
        detector: tf.types.experimental.ConcreteFunction | None = None,
    ) -> None:
        """Creates an unloaded version.

        Args:
          name: Model name.
          version: Version number.
          path: SavedModel directory.
          batching: Server-side batching settings; None disables batching.
          detector: Schema violation detector (`ExampleValidator.detector`) to fuse into the
            signatures that take serialized examples (see `run`); None: no fusing.
        """
        self.name = name
        self.version = version
        self.path = path
        self._batching = batching
        self._detector = detector
        self._loaded: object | None = None
        self._functions: dict[str, tf.types.experimental.ConcreteFunction] = {}
        self._fused: dict[str, tf.types.experimental.ConcreteFunction] = {}
        # Per function (by identity): its flat call (`tfcall`), worked out once at load.
        self._callers: dict[int, KeywordCall] = {}
        self._dtypes: dict[str, dict[str, tf.DType]] = {}
        self._signatures: dict[str, SignatureInfo] = {}
        self._signature_defs: dict[str, meta_graph_pb2.SignatureDef] = {}
        self._queues: dict[str, BatchQueue] = {}
        self._lock = threading.Lock()
        self.warmup_requests = 0
        self.load_seconds = 0.0

    @property
    def signature_defs(self) -> dict[str, meta_graph_pb2.SignatureDef]:
        """Signature key to SignatureDef, as saved in saved_model.pb."""
        return self._signature_defs

    def load(self, warmup: bool = True) -> None:
        """Reads saved_model.pb, loads the SavedModel and replays the warm-up requests.

        Args:
          warmup: Replay `assets.extra/tf_serving_warmup_requests` when present.

        Raises:
          ModelLoadError: If any step fails; nothing stays half-loaded: what was loaded is
            dropped and collected (a failed load of corrupt variables kept ~42 MB each time
            in reference cycles of the loaded functions until a collection, issue 17).
        """
        try:
            self._load(warmup)
        except ModelLoadError:
            self._release()
            raise
        except Exception as e:  # the load boundary: any failure is this version's load error
            self._release()
            raise ModelLoadError(f"Cannot load {self.path}: {type(e).__name__}: {e}") from e

    def _release(self) -> None:
        self.unload()
        self._signatures, self._signature_defs, self._dtypes = {}, {}, {}
        gc.collect()

    def _load(self, warmup: bool) -> None:
        start = time.monotonic()
        pb_path = os.path.join(self.path, SAVED_MODEL_FILE)
        try:
            with tf.io.gfile.GFile(pb_path, "rb") as f:
                proto = saved_model_pb2.SavedModel.FromString(f.read())
        except (OSError, tf.errors.OpError, DecodeError) as e:
            raise ModelLoadError(f"Cannot read {pb_path}: {e}") from e
        graphs = [g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags]
        if not graphs:
            raise ModelLoadError(f"{self.path} has no MetaGraph tagged 'serve'")
        # Metadata lists every entry, as TF Serving's (get_model_metadata_impl.cc);
        # `__saved_model_init_op` and other internal entries are not servable signatures.
        self._signature_defs = dict(graphs[0].signature_def)
        self._signatures = {
            k: _signature_info(k, s)
            for k, s in self._signature_defs.items()
            if not k.startswith("__")
        }
        try:
            loaded = tf.saved_model.load(self.path, tags=["serve"])
        except Exception as e:
            raise ModelLoadError(f"Cannot load SavedModel {self.path}: {e}") from e
        self._loaded = loaded
        self._functions = {
            k: loaded.signatures[k] for k in self._signatures if k in loaded.signatures
        }
        missing = set(self._signatures) - set(self._functions)
        if missing:
            raise ModelLoadError(f"{self.path}: signatures {sorted(missing)} cannot be loaded")
        self._dtypes = {
            key: {name: tf.dtypes.as_dtype(t.dtype) for name, t in info.inputs.items()}
            for key, info in self._signatures.items()
        }
        if self._detector is not None:
            try:
                self._fused = {
                    key: _fuse(self._functions[key], info, self._detector)
                    for key, info in self._signatures.items()
                    if info.example_input is not None
                }
            except Exception as e:  # a model we cannot fuse still serves, in two calls
                # Not fusable (unusual input specs): requests take the two-call path.
                logger.warning("Cannot fuse schema validation into %s: %s", self.path, e)
                self._fused = {}
        self._callers = {
            id(fn): KeywordCall(fn) for fn in [*self._functions.values(), *self._fused.values()]
        }
        if self._batching is not None:
            for key, info in self._signatures.items():
                if info.batchable:
                    self._queues[key] = BatchQueue(
                        f"{self.name}/{self.version}/{key}",
                        functools.partial(self._call_with_flags, key),
                        self._batching,
                    )
        if warmup:
            try:
                self._warm_up()
            except ServingError as e:
                raise ModelLoadError(f"Warm-up of {self.path} failed: {e.message}") from e
            except (tf.errors.OpError, DecodeError) as e:
                # A file that is not TFRecord (DataLossError) or a record that is not a
                # PredictionLog: TF Serving's warm-up fails the load the same way
                # (servables/tensorflow/saved_model_warmup_util.cc, RunSavedModelWarmup).
                first = (str(e).strip().splitlines() or [""])[0][:300]
                raise ModelLoadError(
                    f"Warm-up of {self.path} failed: {type(e).__name__}: {first}. Please verify "
                    f"your warmup data is in TFRecord format ({WARMUP_FILE}: PredictionLog "
                    "records)"
                ) from e
        self.load_seconds = time.monotonic() - start

    def _warm_up(self) -> None:
        path = os.path.join(self.path, WARMUP_FILE)
        if not tf.io.gfile.exists(path):
            return
        count = 0
        for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            kind = log.WhichOneof("log_type")
            if kind == "predict_log":
                request = log.predict_log.request
                key = request.model_spec.signature_name or "serving_default"
                inputs = {k: tensors.to_ndarray(v) for k, v in request.inputs.items()}
                self._warm_run(key, inputs)
            elif kind in ("classify_log", "regress_log"):
                request = getattr(log, kind).request
                key = request.model_spec.signature_name or "serving_default"
                info = self.signature(key)
                name = info.example_input or "inputs"
                serialized = examples_of_input(request.input)
                self._warm_run(key, {name: np.array(serialized, dtype=object)})
            else:
                raise InvalidArgumentError(f"Unsupported warm-up record type {kind}")
            count += 1
        self.warmup_requests = count
        logger.info(
            "Replayed %d warm-up requests for %s version %d", count, self.name, self.version
        )

    def _warm_run(self, key: str, inputs: Arrays) -> None:
        # The same call requests take (fused when there is a fused function); the flags only
        # matter to requests: warm-up records are the model author's.
        self.run(key, inputs)

    def signature(self, key: str) -> SignatureInfo:
        """Returns a signature's description.

        Args:
          key: Signature key ("" means `serving_default`).

        Returns:
          The SignatureInfo.

        Raises:
          FailedPreconditionError: If the model has no such signature.
        """
        info = self._signatures.get(key or "serving_default")
        if info is None:
            raise FailedPreconditionError(
                f'Serving signature name: "{key}" not found in signature def'
            )
        return info

    @property
    def fused_signatures(self) -> frozenset[str]:
        """Signature keys whose call also runs the schema detector (see `run`)."""
        return frozenset(self._fused)

    def run(self, key: str, inputs: Arrays, detect: bool = True) -> RunResult:
        """Runs a signature once: the one way from a request to the SavedModel.

        Signatures taking serialized examples have, when a detector was given, the schema
        detector compiled into the same TF call (one dispatch and one conversion of the
        examples instead of two, the detector's ops running beside the model's); the model
        runs even on violating examples and the caller decides from the flags. With
        server-side batching the call goes through the signature's batch queue; a merged
        call's flags cover every request in it, so they are passed on only when clean (else
        None: the caller checks its own examples).

        Args:
          key: Signature key.
          inputs: Input alias to array, already checked against the signature.
          detect: Run the fused detector; False: the plain signature, flags None (the caller
            checks the examples itself, e.g. a few in Python). Batched signatures always
            take the batch queue, whose merged calls run the detector.

        Returns:
          The outputs, and the detector's flags (one bool per schema feature) or None.

        Raises:
          ServingError: With TensorFlow's status code when the call fails (e.g. unparseable
            examples: the caller may then explain which example is at fault).
        """
        queue = self._queues.get(key)
        if queue is None:
            if not detect:
                return RunResult(self._call(key, inputs), None)
            outputs, flags = self._call_with_flags(key, inputs)
            return RunResult(outputs, flags)
        batched = queue.submit(inputs)
        flags = batched.flags
        if batched.merged > 1 and flags is not None and flags.any():
            flags = None  # another request's examples may be the ones at fault
        return RunResult(batched.outputs, flags)

    def _call_with_flags(self, key: str, inputs: Arrays) -> tuple[Arrays, np.ndarray | None]:
        # The fused call when there is one (also the batch queue's runner, on merged batches).
        fused = self._fused.get(key)
        if fused is None:
            return self._call(key, inputs), None
        outputs, flags = self._invoke(fused, key, inputs)
        return _numpy(outputs), flags.numpy()

    def _call(self, key: str, inputs: Arrays) -> Arrays:
        # The plain signature.
        fn = self._functions.get(key)
        if fn is None:
            raise FailedPreconditionError(f"Version {self.version} of {self.name} is not loaded")
        return _numpy(self._invoke(fn, key, inputs))

    def _invoke(self, fn: tf.types.experimental.ConcreteFunction, key: str, inputs: Arrays) -> Any:
        dtypes = self._dtypes[key]
        try:
            feed = {name: tf.constant(value, dtype=dtypes[name]) for name, value in inputs.items()}
            caller = self._callers.get(id(fn))
            return caller(feed) if caller is not None and caller.fn is fn else fn(**feed)
        except tf.errors.OpError as e:
            raise tf_error(e, f"Signature {key!r} of {self.name} version {self.version}") from None
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(f"Signature {key!r}: {e}") from None

    def unload(self) -> None:
        """Stops batch queues and drops the model; in-flight calls that hold it finish first."""
        for queue in self._queues.values():
            queue.close()
        self._queues = {}
        self._functions = {}
        self._fused = {}
        self._callers = {}
        self._loaded = None


def _numpy(result: Mapping[str, tf.Tensor]) -> Arrays:
    return {name: value.numpy() for name, value in result.items()}


def _fuse(
    fn: tf.types.experimental.ConcreteFunction,
    info: SignatureInfo,
    detector: tf.types.experimental.ConcreteFunction,
) -> tf.types.experimental.ConcreteFunction:
    """Compiles `fn` and `detector` (on the example input) into one function.

    It takes the signature's inputs as keyword arguments and returns (outputs, flags).
    """
    example_input = info.example_input
    assert example_input is not None
    specs = {
        name: tf.TensorSpec(
            None if t.shape is None else [None if d == -1 else d for d in t.shape],
            tf.dtypes.as_dtype(t.dtype),
            name=name,
        )
        for name, t in info.inputs.items()
    }

    @tf.function(autograph=False)
    def fused(**inputs: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        return fn(**inputs), detector(tf.reshape(inputs[example_input], [-1]))

    return fused.get_concrete_function(**specs)


def examples_of_input(model_input: object) -> list[bytes]:
    """Serializes the examples of a tensorflow.serving.Input (context merged into each).

    Args:
      model_input: An `Input` proto with `example_list` or `example_list_with_context`.

    Returns:
      Serialized tf.Examples, as TF Serving feeds them (`model_contract.input_examples`).

    Raises:
      InvalidArgumentError: If the input holds no examples.
    """
    out = input_examples(model_input)
    if not out:
        # servables/tensorflow/util.cc (InputToSerializedExampleTensor): its text, with what to set.
        raise InvalidArgumentError(
            "Input is empty: set example_list or example_list_with_context with examples"
        )
    return out
