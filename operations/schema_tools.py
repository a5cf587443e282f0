"""Infers a schema from new data and diffs it against the curated one, for review."""

import os

import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

from components.data_prep.source import list_source_files
from model import features

# Bytes read from the start of each file to tell a CSV from an empty or binary file.
_SNIFF_BYTES = 64 * 1024


class SchemaDiffError(ValueError):
    """The data cannot be compared: the message names the file and the problem."""


def check_csv_file(path: str) -> None:
    """Checks that a file starts like a CSV: text with a header row.

    Raises:
      SchemaDiffError: If the file is empty, unreadable or binary (NUL bytes, not UTF-8).
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except tf.errors.OpError as e:
        raise SchemaDiffError(f"{path}: cannot read: {e.message}") from None
    if not head.strip():
        raise SchemaDiffError(f"{path}: the file is empty (a CSV needs a header row)")
    if b"\x00" in head:
        raise SchemaDiffError(f"{path}: a binary file, not CSV text (it holds NUL bytes)")
    try:
        # A multi-byte character cut at the sniff boundary is not an error.
        head.decode("utf-8") if len(head) < _SNIFF_BYTES else head[:-4].decode("utf-8")
    except UnicodeDecodeError as e:
        raise SchemaDiffError(f"{path}: not UTF-8 CSV text (byte {e.start}: {e.reason})") from None


def infer_schema(source: str) -> tuple[schema_pb2.Schema, object]:
    """Computes statistics over CSVs and infers a schema from them.

    Args:
      source: A CSV file or a directory of CSV files.

    Returns:
      The inferred schema and the statistics it came from.

    Raises:
      DataError: If the source does not exist or a folder holds no `.csv` file.
      SchemaDiffError: If a file is empty or not CSV text.
    """
    files = list_source_files(source)
    for path in files:
        check_csv_file(path)
    stats = tfdv.generate_statistics_from_csv(
        files[0] if len(files) == 1 else os.path.join(source, "*.csv")
    )
    return tfdv.infer_schema(stats), stats


def _describe(feature: schema_pb2.Feature) -> dict[str, str]:
    out = {"type": schema_pb2.FeatureType.Name(feature.type)}
    out["presence"] = f"min_fraction={feature.presence.min_fraction:g}"
    for domain in ("int_domain", "float_domain"):
        if feature.HasField(domain):
            d = getattr(feature, domain)
            low = d.min if d.HasField("min") else "-inf"
            high = d.max if d.HasField("max") else "inf"
            out["domain"] = f"[{low}, {high}]"
    return out


def diff_schemas(curated: schema_pb2.Schema, inferred: schema_pb2.Schema) -> list[str]:
    """Lists how the inferred schema differs from the curated one, feature by feature.

    Only facts both schemas state are compared (type, presence, numeric domains, string
    values); curation-only fields (roles, environments, comments) are not differences.

    Args:
      curated: The reviewed schema in `schemas/`.
      inferred: A schema inferred from new data.

    Returns:
      Human-readable lines; empty when nothing differs.
    """
    lines = []
    cur = {f.name: f for f in curated.feature}
    new = {f.name: f for f in inferred.feature}
    for name in sorted(set(new) - set(cur)):
        lines.append(f"+ {name}: new in the data ({_describe(new[name])})")
    for name in sorted(set(cur) - set(new)):
        lines.append(f"- {name}: in the curated schema, absent from the data")
    for name in sorted(set(cur) & set(new)):
        a, b = _describe(cur[name]), _describe(new[name])
        if a["type"] != b["type"]:
            lines.append(f"~ {name}: type {a['type']} -> {b['type']}")
        if cur[name].presence.min_fraction >= 1.0 and new[name].presence.min_fraction < 1.0:
            lines.append(f"~ {name}: required in the curated schema, sometimes missing in the data")
    curated_domains = {d.name: set(d.value) for d in curated.string_domain}
    for domain in inferred.string_domain:
        known = curated_domains.get(domain.name)
        if known is not None and set(domain.value) - known:
            lines.append(f"~ {domain.name}: new values {sorted(set(domain.value) - known)}")
    return lines


def schema_diff_report(source: str, curated_path: str) -> str:
    """Infers a schema from `source` and reports its diff and the curated schema's anomalies.

    Args:
      source: CSV file or directory.
      curated_path: Curated schema file.

    Returns:
      A report for the terminal, including the inferred schema's path for copying.
    """
    curated = features.load_schema(curated_path)
    inferred, stats = infer_schema(source)
    anomalies = tfdv.validate_statistics(stats, curated, environment="TRAINING")
    lines = [
        f"Curated: {curated_path}",
        f"Data:    {source}",
        "",
        "Schema diff (curated -> inferred):",
    ]
    lines += ["  " + line for line in diff_schemas(curated, inferred)] or ["  (no differences)"]
    lines += ["", "Anomalies of the data against the curated schema:"]
    lines += [
        f"  {name}: {info.short_description} ({info.description})"
        for name, info in sorted(anomalies.anomaly_info.items())
    ] or ["  (none)"]
    return "\n".join(lines)
