"""Renders data-validation anomalies as the Markdown the KFP UI shows for `system.Markdown`."""

from collections.abc import Sequence

from components.reports.markdown import Column, Document, bold, code


def anomalies_markdown(found: Sequence[dict[str, str]], splits: Sequence[str], policy: str) -> str:
    """Renders anomalies per split and feature as Markdown tables.

    Args:
      found: One dict per anomaly with `split`, `feature` ("" for the data set as a whole),
        `severity`, `short` and `description` (as the AnomaliesGate reads them).
      splits: Every split that was validated, so a split without anomalies is named too.
      policy: The gate's policy (`fail` or `warn`), stated in the report.

    Returns:
      A Markdown document: a per-split count table, then one row per anomaly, or a plain
      sentence saying that no split has anomalies.
    """
    doc = Document().heading("Data validation")
    if found:
        outcome = (
            ("the run stops before Transform and Trainer",)
            if policy == "fail"
            else ("the run goes on (", code("anomalies_policy=warn"), ")")
        )
        doc.paragraph(
            bold(f"{len(found)} anomalies"), " against the curated schema: ", *outcome, "."
        )
    else:
        doc.paragraph(
            bold("No anomalies"),
            f": every split ({', '.join(splits)}) matches the curated schema.",
        )
    doc.table(
        ["split", Column("anomalies", numeric=True)],
        [(split, sum(1 for a in found if a["split"] == split)) for split in splits],
    )
    if found:
        doc.table(
            ["split", "feature", "severity", "anomaly", "description"],
            [
                (
                    a["split"],
                    a["feature"] or "(data set)",
                    a["severity"],
                    a["short"],
                    a["description"],
                )
                for a in found
            ],
        )
    return str(doc)
