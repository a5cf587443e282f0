"""TFMA's default extractors, with the extracts pruned to what metrics and slicing read before
they are split into one Python dict per example."""

from typing import Any

import apache_beam as beam
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.extractors import unbatch_extractor
from tensorflow_model_analysis.proto import config_pb2

PRUNE_STAGE_NAME = "PruneUnreadExtracts"
# Dropped whole: the serialized examples and their Arrow batch, read only by the feature,
# transform and predict extractors and by SQL slicing, all of which run before the pruning.
# Raw and transformed features are cut down to the slicing keys (the label has already been
# taken out of the transformed features by LabelsExtractor).
_DROPPED_KEYS = (constants.INPUT_KEY, constants.ARROW_RECORD_BATCH_KEY)


def slicing_feature_keys(eval_config: config_pb2.EvalConfig) -> set[str]:
    """Feature names any slicing or cross-slicing spec of the EvalConfig slices on."""
    specs = list(eval_config.slicing_specs)
    for cross in eval_config.cross_slicing_specs:
        specs.append(cross.baseline_spec)
        specs.extend(cross.slicing_specs)
    keys: set[str] = set()
    for spec in specs:
        keys.update(spec.feature_keys)
        keys.update(spec.feature_values)
    return keys


def check_prunable(eval_config: config_pb2.EvalConfig) -> None:
    """Raises if the EvalConfig reads features after unbatching in a way pruning would break.

    Raises:
      ValueError: If a metrics spec has a `query_key` (per-query metrics group examples by a
        feature after unbatching).
    """
    for spec in eval_config.metrics_specs:
        if spec.query_key:
            raise ValueError(
                f"metrics spec with query_key={spec.query_key!r}: query metrics read features "
                "after unbatching; leave the extracts unpruned for such an EvalConfig"
            )


def _prune(extract: dict[str, Any], keep_features: frozenset[str]) -> dict[str, Any]:
    def only_slicing(features: Any) -> Any:
        if not isinstance(features, dict):
            return features
        return {k: v for k, v in features.items() if k in keep_features}

    pruned = {k: v for k, v in extract.items() if k not in _DROPPED_KEYS}
    if constants.FEATURES_KEY in pruned:
        pruned[constants.FEATURES_KEY] = only_slicing(pruned[constants.FEATURES_KEY])
    transformed = pruned.get(constants.TRANSFORMED_FEATURES_KEY)
    if isinstance(transformed, dict):
        # Keyed by model name when several models are evaluated (model_util.py).
        nested = transformed and all(isinstance(v, dict) for v in transformed.values())
        pruned[constants.TRANSFORMED_FEATURES_KEY] = (
            {name: only_slicing(f) for name, f in transformed.items()}
            if nested
            else only_slicing(transformed)
        )
    return pruned


@beam.ptransform_fn
def _PruneExtracts(  # noqa: N802 (Beam's PTransform naming)
    extracts: beam.PCollection, keep_features: frozenset[str]
) -> beam.PCollection:
    return extracts | "Prune" >> beam.Map(_prune, keep_features)


def custom_extractors(
    eval_shared_model: Any,
    eval_config: config_pb2.EvalConfig,
    tensor_adapter_config: Any,
) -> list[tfma.extractors.Extractor]:
    """TFMA's default extractors plus a pruning stage right before the unbatching.

    TFMA splits every batched extract into one dict per example, every raw and transformed
    feature of every model included, although after that only the labels, predictions,
    example weights and slicing features are read. This hook (TFX's Evaluator calls it
    `custom_extractors`) keeps the same extractors and drops the rest first, so the metrics
    are computed from the same values.

    Args:
      eval_shared_model: The model(s), as TFX's Evaluator passes them.
      eval_config: The EvalConfig.
      tensor_adapter_config: As TFX's Evaluator passes it (None without a schema).

    Returns:
      The extractors.
    """
    check_prunable(eval_config)
    extractors = tfma.default_extractors(
        eval_shared_model=eval_shared_model,
        eval_config=eval_config,
        tensor_adapter_config=tensor_adapter_config,
    )
    stages = [e.stage_name for e in extractors]
    position = stages.index(unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME)
    prune = tfma.extractors.Extractor(
        stage_name=PRUNE_STAGE_NAME,
        ptransform=_PruneExtracts(frozenset(slicing_feature_keys(eval_config))),
    )
    return [*extractors[:position], prune, *extractors[position:]]
