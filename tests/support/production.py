"""Slow shared fixture: two versions pushed from two resamples of the taxi sample."""

import csv
import dataclasses
import os

import pytest

from components.data_prep import source as source_lib
from operations import summary
from pipeline import config as config_lib
from runners import local as local_runner

Rows = list[dict[str, str]]


def sample_rows() -> tuple[list[str], Rows]:
    """The taxi sample's header and rows, oldest trip first."""
    with open(os.path.join(source_lib.default_source(), "data.csv")) as f:
        reader = csv.DictReader(f)
        rows = sorted(reader, key=lambda r: int(r["trip_start_timestamp"]))
        return list(reader.fieldnames or []), rows


def write_source(directory: str, rows: Rows) -> str:
    """Writes rows as `<directory>/data.csv` (columns of the first row); returns `directory`."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "data.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return directory


# A small, fast run: enough rows and steps for a useful model in about a minute.
SMALL_RUN: dict[str, object] = {
    "max_rows": 1500,
    "train_steps": 150,
    "eval_steps": 5,
    "hyperparameters": {"epochs": 3},
    # Latency bounds are test_load_test.py's concern: a busy shared machine must not decide
    # whether these runs push.
    "load_test": {"max_p99_ms": 10_000.0},
}


def small_run_config(
    output_dir: str, source_data: str | None = None, **settings: object
) -> config_lib.LocalConfig:
    """`SMALL_RUN` on `source_data` (default: the embedded sample), `settings` replacing keys."""
    return config_lib.build(
        config_lib.LocalConfig,
        {
            "output_dir": output_dir,
            "source_data": source_data,
            "serve_after_run": False,
            "settings": {**SMALL_RUN, **settings},
        },
    )


def production_config(output_dir: str, source_data: str) -> config_lib.LocalConfig:
    """A small, fast run on `source_data` that pushes whenever the model is not useless.

    The blessing bars are low on purpose: these runs test drift and lineage, not blessing.
    """
    return small_run_config(
        output_dir,
        source_data,
        evaluation={"min_auc": 0.5, "min_auc_credit_card": 0.0, "max_auc_drop": 1.0},
    )


def run_and_summarize(config: config_lib.LocalConfig) -> summary.RunSummary:
    """Runs the pipeline and summarises the run from MLMD."""
    local_runner.run_local(config)
    return latest_summary(config)


def latest_summary(config: config_lib.LocalConfig) -> summary.RunSummary:
    """The newest run's summary (also of a run that stopped)."""
    return summary.summarize_latest_run(
        os.path.abspath(config.metadata_path), config.settings.pipeline_name
    )


@dataclasses.dataclass(frozen=True)
class Production:
    """Two runs in one output directory, each pushing a version.

    Attributes:
      output_dir: The runs' output directory (MLMD, pipeline root, serving base).
      sources: Directory holding the source data sets written for the runs.
      first: The run on the even rows of the sample (no baseline: version 1).
      second: The run on the odd rows (a resample of the same period: passes the drift
        gate against the first and pushes version 2).
      config: The second run's config (model dir, metadata path).
    """

    output_dir: str
    sources: str
    first: summary.RunSummary
    second: summary.RunSummary
    config: config_lib.LocalConfig


@pytest.fixture(scope="session")
def production(tmp_path_factory) -> Production:
    root = tmp_path_factory.mktemp("production")
    output_dir, sources = str(root / "out"), str(root / "sources")
    _, rows = sample_rows()
    first = run_and_summarize(
        production_config(output_dir, write_source(os.path.join(sources, "even"), rows[0::2]))
    )
    config = production_config(output_dir, write_source(os.path.join(sources, "odd"), rows[1::2]))
    second = run_and_summarize(config)
    return Production(output_dir, sources, first, second, config)
