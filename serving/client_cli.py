"""`python -m serving.client_cli`: predict/classify/regress from CSV, JSON or TFRecord files."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

import schemas
from serving import logs, schema
from serving.client import (
    ClientSettings,
    ClientTls,
    ModelRef,
    PredictionClient,
    RestClient,
)
from serving.errors import ServingError
from serving.examples import ExampleBuilder, ExampleBuildError

logger = logging.getLogger(__name__)


def read_csv_rows(path: str) -> list[dict[str, object]]:
    """Reads CSV rows; empty cells become None (missing).

    Args:
      path: CSV file with a header row.

    Returns:
      One dict per row.
    """
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(f)]


def read_json_rows(path: str) -> list[dict[str, object]]:
    """Reads a JSON array of objects or JSON lines.

    Args:
      path: JSON file.

    Returns:
      One dict per row.

    Raises:
      ValueError: If the file holds something other than objects.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    stripped = text.lstrip()
    rows = (
        json.loads(text)
        if stripped.startswith("[")
        else [json.loads(line) for line in text.splitlines() if line.strip()]
    )
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: every row must be a JSON object")
    return rows


def read_tfrecord_examples(path: str) -> list[bytes]:
    """Reads serialized tf.Examples from a TFRecord file (GZIP if it ends in .gz)."""
    compression = "GZIP" if path.endswith(".gz") else ""
    return [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=compression)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [_jsonable(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.client_cli", description=__doc__)
    p.add_argument("command", choices=("predict", "classify", "regress", "status", "metadata"))
    p.add_argument("--target", default="localhost:8500", help="gRPC host:port")
    p.add_argument("--rest", default="", help="use the REST API at this base URL instead of gRPC")
    p.add_argument("--model", default="chicago_taxi")
    version = p.add_mutually_exclusive_group()
    version.add_argument("--version", type=int)
    version.add_argument("--label")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--csv", help="CSV file of raw rows")
    src.add_argument("--json", help="JSON array or JSON lines of feature dicts")
    src.add_argument("--tfrecord", help="TFRecord of serialized tf.Examples")
    p.add_argument("--schema", default="", help="schema.pbtxt typing the rows (default: taxi)")
    p.add_argument("--signature", default="")
    p.add_argument("--batch_size", type=int, default=100)
    p.add_argument(
        "--deadline", type=float, default=10.0, help="seconds per call, retries included"
    )
    p.add_argument("--retries", type=int, default=3, help="retries on UNAVAILABLE")
    p.add_argument("--max_message_mb", type=float, default=64.0)
    p.add_argument("--tls_ca", help="PEM CA of the server certificate (enables TLS)")
    p.add_argument("--tls_cert", help="PEM client certificate (mutual TLS)")
    p.add_argument("--tls_key", help="PEM client key")
    p.add_argument("--tls_server_name", help="override of the certificate host name")
    p.add_argument("--log_level", default="WARNING")
    return p


def _examples(args: argparse.Namespace) -> list[bytes]:
    if args.tfrecord:
        return read_tfrecord_examples(args.tfrecord)
    if not (args.csv or args.json):
        raise ValueError("Give --csv, --json or --tfrecord")
    rows = read_csv_rows(args.csv) if args.csv else read_json_rows(args.json)
    builder = ExampleBuilder(schema.load_features(args.schema or schemas.schema_path("taxi")))
    return [e.SerializeToString() for e in builder.build_all(rows)]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one client command and prints JSON lines (one per batch) to stdout.

    Args:
      argv: Command-line arguments.

    Returns:
      0 on success, 1 on a serving error, 2 on bad input.
    """
    args = _parser().parse_args(argv)
    logs.configure(args.log_level, "text")
    model = ModelRef(args.model, args.version, args.label)
    tls = None
    if args.tls_ca or args.tls_cert:
        tls = ClientTls(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    settings = ClientSettings(
        target=args.target,
        deadline_s=args.deadline,
        max_retries=args.retries,
        max_message_bytes=int(args.max_message_mb * 1024 * 1024),
        tls=tls,
    )
    client: PredictionClient | RestClient
    client = RestClient(args.rest, args.deadline) if args.rest else PredictionClient(settings)
    try:
        if args.command == "status":
            print(json.dumps(client.model_status(model)))
            return 0
        if args.command == "metadata":
            if isinstance(client, RestClient):
                print(json.dumps(client.metadata(model)))
            else:
                version, sig_map = client.metadata(model)
                print(json.dumps({"version": version, "signatures": sorted(sig_map.signature_def)}))
            return 0
        examples = _examples(args)
        for start in range(0, len(examples), args.batch_size):
            batch = examples[start : start + args.batch_size]
            if args.command == "predict":
                result = client.predict(model, batch, signature=args.signature or "serving_default")
                out = {
                    "version": result.version,
                    **{k: _jsonable(v) for k, v in result.outputs.items()},
                }
            elif args.command == "classify":
                c = client.classify(model, batch, signature=args.signature or "classify")
                out = {"version": c.version, "classes": c.classes}
            else:
                r = client.regress(model, batch, signature=args.signature or "regress")
                out = {"version": r.version, "values": r.values}
            print(json.dumps(out))
        return 0
    except (ExampleBuildError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ServingError as e:
        print(f"error: {e.code.name}: {e.message}", file=sys.stderr)
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
