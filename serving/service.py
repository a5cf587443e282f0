"""Transport-independent request handling shared by the gRPC and REST front ends."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from model_contract import CLASSIFY_METHOD, REGRESS_METHOD
from serving import tensors
from serving.errors import FailedPreconditionError, InvalidArgumentError, ServingError
from serving.manager import ModelManager
from serving.metrics import ServingMetrics
from serving.model import ServableVersion, SignatureInfo, TensorInfo, examples_of_input
from serving.validation import ExampleValidator

if TYPE_CHECKING:
    from serving.request_log import RequestLogger

logger = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
# Requests of at most this many examples run the plain signature and are schema-checked in
# Python after the call instead of by the detector fused into it. Python check against the
# detector's share of the fused call, one process, tfx-1.21 / tfx-1.16 (us): 1 example 35 vs
# 233 / 172 vs 259; 2: 100 vs 287 / 341 vs 395; 4: 200 vs 513 / 615 vs 327; 8: 355 vs 250 /
# 1313 vs 490.
PYTHON_CHECK_MAX_EXAMPLES = 2


@dataclasses.dataclass(frozen=True)
class Target:
    """Which model, version and signature a request addresses."""

    name: str
    version: int | None = None
    label: str | None = None
    signature: str = ""

    @classmethod
    def of_request(
        cls,
        request: predict_pb2.PredictRequest
        | classification_pb2.ClassificationRequest
        | regression_pb2.RegressionRequest
        | get_model_metadata_pb2.GetModelMetadataRequest
        | get_model_status_pb2.GetModelStatusRequest,
    ) -> Target:
        """Reads a request's ModelSpec; none is INVALID_ARGUMENT "Missing ModelSpec".

        As tensorflow_serving/servables/tensorflow/predict_impl.cc,
        classification_service.cc, regression_service.cc, and
        model_servers/get_model_metadata_impl.cc and get_model_status_impl.cc.
        """
        if not request.HasField("model_spec"):
            raise InvalidArgumentError("Missing ModelSpec")
        return cls.from_spec(request.model_spec)

    @classmethod
    def from_spec(cls, spec: model_pb2.ModelSpec) -> Target:
        """Reads a ModelSpec."""
        version = spec.version.value if spec.HasField("version") else None
        return cls(spec.name, version, spec.version_label or None, spec.signature_name)

    def to_spec(self) -> model_pb2.ModelSpec:
        """The ModelSpec addressing this target (what the REST routes send to the handlers)."""
        spec = model_pb2.ModelSpec(name=self.name, signature_name=self.signature)
        if self.version is not None:
            spec.version.value = self.version
        if self.label:
            spec.version_label = self.label
        return spec

    @property
    def signature_key(self) -> str:
        """The signature key, `serving_default` when none is given."""
        return self.signature or DEFAULT_SIGNATURE


@dataclasses.dataclass(frozen=True)
class Outputs:
    """Result of running a signature."""

    version: int
    signature: str
    values: dict[str, np.ndarray]


_METHOD_LABEL = {CLASSIFY_METHOD: "Classify", REGRESS_METHOD: "Regress"}
_METHOD_NOUN = {CLASSIFY_METHOD: "classification", REGRESS_METHOD: "regression"}


def _batch_size(arrays: Mapping[str, np.ndarray]) -> int:
    """Examples in a request: the inputs' first dimension (1 for scalar inputs)."""
    first = next(iter(arrays.values()), None)
    return 1 if first is None or first.ndim == 0 else int(first.shape[0])


def _compatible(shape: tuple[int, ...], expected: tuple[int, ...] | None) -> bool:
    if expected is None:
        return True
    return len(shape) == len(expected) and all(
        e in (-1, s) for s, e in zip(shape, expected, strict=True)
    )


def _fmt_shape(shape: tuple[int, ...] | None) -> str:
    return "<unknown rank>" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """Per-request size limits (from `ServerSettings`), checked before tensors are built.

    Attributes:
      max_elements: Most tensor elements over all inputs (after broadcasting).
      max_examples: Most examples (inputs' first dimension, or serialized tf.Examples).
    """

    max_elements: int = 4_000_000
    max_examples: int = 10_000

    def check_examples(self, count: int) -> None:
        """Raises InvalidArgumentError naming the limit when `count` examples are too many."""
        if count > self.max_examples:
            raise InvalidArgumentError(
                f"Request has {count} examples, more than the limit of {self.max_examples} "
                "(max_examples_per_request)"
            )

    def check_elements(self, count: int) -> None:
        """Raises InvalidArgumentError naming the limit when `count` elements are too many."""
        if count > self.max_elements:
            raise InvalidArgumentError(
                f"Request has {count} tensor elements, more than the limit of "
                f"{self.max_elements} (max_request_elements)"
            )


class InferenceService:
    """Runs Predict, Classify, Regress, metadata and status requests against the manager."""

    def __init__(
        self,
        manager: ModelManager,
        metrics: ServingMetrics,
        validator: ExampleValidator | None,
        validation_mode: str,
        request_log: RequestLogger | None = None,
        limits: RequestLimits | None = None,
    ) -> None:
        """Creates the service.

        Args:
          manager: Model versions.
          metrics: Where validation failures are counted.
          validator: Schema validator of serialized examples; None disables validation.
          validation_mode: `enforce`, `log` or `off`.
          request_log: Samples answered requests into the request log; None = off.
          limits: Request size limits (default: `RequestLimits()`).
        """
        self._manager = manager
        self._metrics = metrics
        self._validator = validator if validation_mode != "off" else None
        self._mode = validation_mode
        self._request_log = request_log
        self.limits = limits or RequestLimits()

    # Core ------------------------------------------------------------------------------------

    def run(
        self,
        target: Target,
        build: Callable[[SignatureInfo], dict[str, np.ndarray]],
        output_filter: Sequence[str] = (),
        method: str | None = None,
    ) -> Outputs:
        """Checks inputs against the signature, validates examples, and runs the signature.

        Args:
          target: Model, version or label, and signature.
          build: Makes the input arrays once the signature is known (see `proto_inputs`,
            `example_inputs`; REST converts JSON with the signature's dtypes).
          output_filter: Output aliases to return (empty = all).
          method: Required signature method name (Classify/Regress), or None.

        Returns:
          The served version, signature key and output arrays.

        Raises:
          NotFoundError, UnavailableError, FailedPreconditionError, InvalidArgumentError: See
            the messages.
        """
        with self._manager.lease(target.name, target.version, target.label) as servable:
            key = target.signature_key
            try:
                info = servable.signature(key)
            except FailedPreconditionError:
                if method is None:
                    raise
                # servables/tensorflow/classifier.cc, regressor.cc (Get*SignatureDef).
                raise InvalidArgumentError(f"No signature was found with the name: {key}") from None
            if method is not None and info.method_name != method:
                # As TF Serving with --enable_signature_method_name_check (classifier.cc).
                raise InvalidArgumentError(
                    f"Expected {_METHOD_NOUN[method]} signature method_name to be {method}. "
                    f"Was: {info.method_name}"
                )
            arrays = build(info)
            self.limits.check_elements(sum(int(a.size) for a in arrays.values()))
            examples = _batch_size(arrays)
            self.limits.check_examples(examples)
            self._check_inputs(info, arrays)
            # servables/tensorflow/predict_util.cc (PreProcessPrediction): its texts.
            for i, name in enumerate(output_filter):
                if name not in info.outputs:
                    raise InvalidArgumentError(
                        f"output tensor alias not found in signature: {name} Outputs expected "
                        f"to be in the set {{{','.join(sorted(info.outputs))}}}."
                    )
                if name in output_filter[:i]:
                    raise InvalidArgumentError(f"duplicate output tensor alias: {name}")
            values = self._validate_and_run(servable, info, arrays)
            self._metrics.count_examples(
                servable.name,
                str(servable.version),
                _METHOD_LABEL.get(method or "", "Predict"),
                examples,
            )
            if output_filter:
                values = {k: v for k, v in values.items() if k in output_filter}
            if self._request_log is not None:  # Samples and enqueues; never blocks or raises.
                self._request_log.offer_answer(
                    servable.name, servable.version, key, method, arrays, values
                )
            return Outputs(servable.version, key, values)

    @staticmethod
    def proto_inputs(
        protos: Mapping[str, object], limits: RequestLimits | None = None
    ) -> Callable[[SignatureInfo], dict[str, np.ndarray]]:
        """Returns a `build` function converting TensorProtos (dtype-checked) to arrays.

        The element and example counts are checked against `limits` from the protos' shapes
        and value counts, before any array is allocated.
        """
        return lambda info: InferenceService._from_protos(info, protos, limits or RequestLimits())

    @staticmethod
    def example_inputs(
        examples: Sequence[bytes],
    ) -> Callable[[SignatureInfo], dict[str, np.ndarray]]:
        """Returns a `build` function feeding serialized examples to the example input."""

        def build(info: SignatureInfo) -> dict[str, np.ndarray]:
            batch = np.empty(len(examples), dtype=object)
            batch[:] = list(examples)
            return {info.example_input or "inputs": batch}

        return build

    @staticmethod
    def _from_protos(
        info: SignatureInfo, protos: Mapping[str, object], limits: RequestLimits
    ) -> dict[str, np.ndarray]:
        total = 0
        for name, proto in protos.items():
            total += tensors.element_count(
                proto,  # type: ignore[arg-type]
                f"Input {name!r}",
                limits.max_elements - total,
            )
            dims = proto.tensor_shape.dim  # type: ignore[attr-defined]
            if dims:
                limits.check_examples(dims[0].size)
        arrays = {}
        for name, proto in protos.items():
            expected = info.inputs.get(name)
            if expected is not None and proto.dtype != expected.dtype:  # type: ignore[attr-defined]
                raise InvalidArgumentError(
                    f"Input {name!r}: expects {tensors.dtype_name(expected.dtype)} but "
                    f"{tensors.dtype_name(proto.dtype)} is provided"  # type: ignore[attr-defined]
                )
            arrays[name] = tensors.to_ndarray(proto)  # type: ignore[arg-type]
        return arrays

    @staticmethod
    def _check_inputs(info: SignatureInfo, arrays: Mapping[str, np.ndarray]) -> None:
        if len(arrays) != len(info.inputs):
            # predict_util.cc VerifyRequestInputsSize (signatures here have no defaults).
            sent, wanted = sorted(arrays), sorted(info.inputs)
            raise InvalidArgumentError(
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({{{','.join(sent)}}}) != len({{{','.join(wanted)}}}). Sent extra: "
                f"{{{','.join(sorted(set(sent) - set(wanted)))}}}. Missing but required: "
                f"{{{','.join(sorted(set(wanted) - set(sent)))}}}."
            )
        unknown = sorted(set(arrays) - set(info.inputs))
        if unknown:
            raise InvalidArgumentError(
                f"input tensor alias not found in signature: {unknown[0]}. Inputs expected to "
                f"be in the set {{{','.join(sorted(info.inputs))}}}."
            )
        missing = sorted(set(info.inputs) - set(arrays))
        if missing:
            raise InvalidArgumentError(
                f"Request inputs do not match required inputs for signature {info.key!r}: "
                f"missing {missing}"
            )
        for name, array in arrays.items():
            expected: TensorInfo = info.inputs[name]
            if not _compatible(array.shape, expected.shape):
                raise InvalidArgumentError(
                    f"Input {name!r}: shape {_fmt_shape(array.shape)} is not compatible with "
                    f"the signature's {_fmt_shape(expected.shape)}"
                )

    def _validate_and_run(
        self, servable: ServableVersion, info: SignatureInfo, arrays: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Runs the model once, and schema-validates the example input (when on).

        The one path from a request to the SavedModel: `servable.run` is called exactly once.
        Versions loaded with the validator's detector fused into their example signatures
        return its flags with the outputs for requests of more than
        `PYTHON_CHECK_MAX_EXAMPLES` examples; otherwise (fewer: the plain signature runs, no
        fused detector, or a merged batch whose flags are set: another request's examples may
        be at fault) the examples are checked after the call (small batches in Python, larger
        ones by the detector). Flags are explained in Python, naming input, example and
        feature, then enforced or logged.
        A TF error from the call (e.g. unparseable or wrongly typed examples) is explained
        the same way when the schema check finds the cause, else answered as TF reported it.
        """
        name, validator = info.example_input, self._validator
        if validator is None or name is None:
            return servable.run(info.key, arrays).outputs
        examples = arrays[name]
        # One or two examples are checked in Python for less than the detector's share of the
        # fused call; from ~4 examples the detector is cheaper (issue 19, docs/serving.md).
        detect = examples.size > min(validator.python_max_batch, PYTHON_CHECK_MAX_EXAMPLES)
        try:
            result = servable.run(info.key, arrays, detect)
        except ServingError:
            # Name the example at fault (flags None: all that is known is that the call failed).
            self._report(servable, lambda: validator.explain(examples, name, None))
            raise
        flags = result.flags
        if flags is None:
            self._report(servable, lambda: validator.check(examples, name))
        else:
            self._report(servable, lambda: validator.explain(examples, name, flags))
        return result.outputs

    def _report(self, servable: ServableVersion, check: Callable[[], None]) -> None:
        """Runs a schema check; a violation is raised (enforce) or counted and logged (log)."""
        try:
            check()
        except InvalidArgumentError as e:
            self._metrics.validation_failures.labels(servable.name, self._mode).inc()
            if self._mode == "enforce":
                raise
            logger.warning(
                "Schema violation (log-only) for %s version %d: %s",
                servable.name,
                servable.version,
                e.message,
            )

    # gRPC-shaped APIs ------------------------------------------------------------------------

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Handles a PredictRequest.

        Args:
          request: The request.

        Returns:
          The PredictResponse (outputs as TensorProtos).

        Raises:
          ServingError: See `run`.
        """
        target = Target.of_request(request)
        result = self.run(
            target,
            self.proto_inputs(request.inputs, self.limits),
            list(request.output_filter),
        )
        response = predict_pb2.PredictResponse()
        self._fill_spec(response.model_spec, target, result)
        outputs = response.outputs
        for name, value in result.values.items():
            tensors.fill_response_proto(value, outputs[name])
        return response

    def classify_serialized(self, target: Target, serialized: Sequence[bytes]) -> Outputs:
        """Runs a classify signature on serialized examples.

        Args:
          target: Model and signature (must have method `tensorflow/serving/classify`).
          serialized: Serialized tf.Examples.

        Returns:
          Outputs with `classes` and/or `scores`, each [N, K].

        Raises:
          ServingError: See `run`; FailedPreconditionError if the outputs are not classify-shaped.
        """
        result = self._run_examples(target, serialized, CLASSIFY_METHOD)
        if "classes" not in result.values and "scores" not in result.values:
            raise FailedPreconditionError("Classify signature has neither 'classes' nor 'scores'")
        return result

    def regress_serialized(self, target: Target, serialized: Sequence[bytes]) -> Outputs:
        """Runs a regress signature on serialized examples (output `outputs`, [N] or [N, 1])."""
        result = self._run_examples(target, serialized, REGRESS_METHOD)
        if "outputs" not in result.values:
            raise FailedPreconditionError("Regress signature has no 'outputs'")
        return result

    def _run_examples(self, target: Target, serialized: Sequence[bytes], method: str) -> Outputs:
        self.limits.check_examples(len(serialized))
        return self.run(target, self.example_inputs(serialized), method=method)

    def classify(
        self, request: classification_pb2.ClassificationRequest
    ) -> classification_pb2.ClassificationResponse:
        """Handles a ClassificationRequest."""
        target = Target.of_request(request)
        result = self.classify_serialized(target, self._examples_of(request.input))
        response = classification_pb2.ClassificationResponse()
        self._fill_spec(response.model_spec, target, result)
        for labels, scores in classification_rows(result.values):
            row = response.result.classifications.add()
            for label, score in zip(labels, scores, strict=True):
                row.classes.add(label=label, score=score)
        return response

    def regress(
        self, request: regression_pb2.RegressionRequest
    ) -> regression_pb2.RegressionResponse:
        """Handles a RegressionRequest."""
        target = Target.of_request(request)
        result = self.regress_serialized(target, self._examples_of(request.input))
        response = regression_pb2.RegressionResponse()
        self._fill_spec(response.model_spec, target, result)
        for value in regression_values(result.values):
            response.result.regressions.add(value=value)
        return response

    def _examples_of(self, model_input: object) -> list[bytes]:
        """The Input's serialized examples, counted against the limit before the context merge."""
        kind = model_input.WhichOneof("kind")  # type: ignore[attr-defined]
        if kind is not None:
            self.limits.check_examples(len(getattr(model_input, kind).examples))
        return examples_of_input(model_input)

    def metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """Handles a GetModelMetadataRequest (only the `signature_def` field exists)."""
        target = Target.of_request(request)
        fields = list(request.metadata_field)
        if not fields:
            raise InvalidArgumentError(
                "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for field in fields:
            if field != "signature_def":
                raise InvalidArgumentError(f"Metadata field {field} is not supported")
        with self._manager.lease(target.name, target.version, target.label) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = target.name
            response.model_spec.version.value = servable.version
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            for key, sig in servable.signature_defs.items():
                sig_map.signature_def[key].CopyFrom(sig)
            response.metadata["signature_def"].Pack(sig_map)
            return response

    def status(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """Handles a GetModelStatusRequest: one version if given, else all (labels ignored).

        tensorflow_serving/model_servers/get_model_status_impl.cc (GetModelStatus): no
        ModelSpec is INVALID_ARGUMENT; only `version` narrows the answer, a `version_label`
        is not read (all versions are reported).
        """
        target = Target.of_request(request)
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in self._manager.statuses(target.name, target.version):
            entry = response.model_version_status.add(
                version=status.version, state=int(status.state)
            )
            entry.status.error_code = status.error_code
            entry.status.error_message = status.error_message
        return response

    @staticmethod
    def _fill_spec(spec: model_pb2.ModelSpec, target: Target, result: Outputs) -> None:
        spec.name = target.name
        spec.version.value = result.version
        spec.signature_name = result.signature


def classification_rows(
    values: Mapping[str, np.ndarray],
) -> Iterable[tuple[list[str], list[float]]]:
    """Yields (labels, scores) per example from classify outputs ('' / 0.0 when absent)."""
    classes, scores = values.get("classes"), values.get("scores")
    rows = len(classes) if classes is not None else len(scores)  # type: ignore[arg-type]
    for i in range(rows):
        if classes is not None:
            labels = [c.decode("utf-8", errors="replace") for c in np.atleast_1d(classes[i])]
        else:
            labels = [""] * len(np.atleast_1d(scores[i]))  # type: ignore[index]
        row_scores = (
            [float(s) for s in np.atleast_1d(scores[i])]
            if scores is not None
            else [0.0] * len(labels)
        )
        yield labels, row_scores


def regression_values(values: Mapping[str, np.ndarray]) -> list[float]:
    """Returns one float per example from a regress signature's `outputs`."""
    outputs = values["outputs"]
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        outputs = outputs[:, 0]
    if outputs.ndim != 1:
        raise FailedPreconditionError(
            f"Regress output 'outputs' must be [N] or [N, 1], got {list(outputs.shape)}"
        )
    return [float(v) for v in outputs]
