"""Renders data-validation anomalies as the Markdown the KFP UI shows for `system.Markdown`."""

from collections.abc import Sequence


def _cell(text: str) -> str:
    # A pipe would end the cell and a newline the row in a Markdown table.
    return " ".join(text.replace("|", "\\|").split())


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
    lines = ["# Data validation", ""]
    if found:
        outcome = (
            "the run stops before Transform and Trainer"
            if policy == "fail"
            else "the run goes on (`anomalies_policy=warn`)"
        )
        lines += [f"**{len(found)} anomalies** against the curated schema: {outcome}.", ""]
    else:
        lines += [
            f"**No anomalies**: every split ({', '.join(splits)}) matches the curated schema.",
            "",
        ]
    lines += ["| split | anomalies |", "|---|---:|"]
    for split in splits:
        lines.append(f"| {_cell(split)} | {sum(1 for a in found if a['split'] == split)} |")
    if found:
        lines += [
            "",
            "| split | feature | severity | anomaly | description |",
            "|---|---|---|---|---|",
        ]
        for a in found:
            row = (a["split"], a["feature"] or "(data set)", a["severity"], a["short"])
            lines.append("| " + " | ".join(_cell(v) for v in (*row, a["description"])) + " |")
    lines.append("")
    return "\n".join(lines)
