"""Artifact types the Kubeflow Pipelines v2 UI renders, written beside TFX's own outputs.

The KFP UI (`frontend/src/components/viewers/MetricsVisualizations.tsx`) shows only four
artifact types: `system.Metrics` (scalars read from the artifact's metadata),
`system.ClassificationMetrics` (`confidenceMetrics` for a ROC curve, `confusionMatrix`),
and `system.HTML` / `system.Markdown` (the artifact URI read as one file). TFX's `tfx.*`
artifacts show only their URI and properties, so the steps add these outputs for people.

HTML and Markdown are value artifacts: TFX then makes their URI a file (`<dir>/value`) rather
than a directory, which is what the UI reads. Metrics carry everything in custom properties.
On KFP the compiled spec names these types by their `system.*` titles (the UI's key), and
the container entrypoint maps those titles back to these classes.
"""

from tfx.types import artifact, value_artifact

# TFX tags every output artifact with this custom property after the executor ran
# (tfx/orchestration/portable/outputs_utils.py, tag_output_artifacts_with_version, called by
# the launcher, the publisher and kubeflow_v2_run_executor).
TFX_VERSION_PROPERTY = "tfx_version"


class Metrics(artifact.Artifact):
    """Scalar metrics, one custom property each (numbers only: KFP stores them as doubles).

    Every custom property is a row in the KFP UI, so TFX's `tfx_version` tag is not kept: it
    is not a metric, and the version stays on the step's other outputs.
    """

    TYPE_NAME = "system.Metrics"

    def set_string_custom_property(self, key: str, value: str) -> None:
        """Sets a string row, except TFX's version tag (not a metric)."""
        if key == TFX_VERSION_PROPERTY:
            return
        super().set_string_custom_property(key, value)


class ClassificationMetrics(artifact.Artifact):
    """ROC points (`confidenceMetrics`) and a `confusionMatrix`, as JSON custom properties."""

    TYPE_NAME = "system.ClassificationMetrics"


class _TextFile(value_artifact.ValueArtifact):
    """A UTF-8 text file at the artifact's URI."""

    def encode(self, value: str) -> bytes:
        """Encodes the text for the file."""
        if not isinstance(value, str):
            raise TypeError(f"{self.TYPE_NAME} holds text, got {type(value).__name__}")
        return value.encode("utf-8")

    def decode(self, serialized_value: bytes) -> str:
        """Decodes the file's text."""
        return serialized_value.decode("utf-8")


class HTML(_TextFile):
    """A self-contained HTML page (no script, style or font fetched from elsewhere)."""

    TYPE_NAME = "system.HTML"


class Markdown(_TextFile):
    """A Markdown document."""

    TYPE_NAME = "system.Markdown"


# Class path of each UI type, keyed by the title KFP and its UI know it by.
CLASS_PATH_BY_TITLE = {
    cls.TYPE_NAME: f"{cls.__module__}.{cls.__qualname__}"
    for cls in (Metrics, ClassificationMetrics, HTML, Markdown)
}
