"""PreparedData: the artifact DataPrep writes (`train/data.csv`, `eval/data.csv`)."""

from tfx.types import artifact


class PreparedData(artifact.Artifact):
    """A time-ordered train/eval split of the source CSVs; what it holds is in custom properties.

    TFX's KFP v2 compiler allows custom type names of the form `word.Word` only, so the type
    name is not the class path; the project's KFP compiler writes the class path into the
    spec so that the step's container can rebuild this class.
    """

    TYPE_NAME = "data_prep.PreparedData"
