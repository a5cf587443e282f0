# Two commands matter: `make run` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Reproducible, quiet TF: no oneDNN nondeterminism, no CUDA probing noise on CPU machines.
# 3: the CUDA plugin-registration messages TF prints on CPU-only machines are noise.
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONWARNINGS ?= ignore::FutureWarning
export TF_ENABLE_ONEDNN_OPTS ?= 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv run test test-fast lint schema-diff bench bench-scale rollback clean

venv: $(STAMP)

$(STAMP): setup.py constraints.txt scripts/bootstrap-venv.sh
	@bash scripts/bootstrap-venv.sh $(VENV)
	@touch $@

## Run the whole pipeline locally (BeamDagRunner) on the taxi sample shipped in the tfx wheel.
run: $(STAMP)
	$(PY) -m commands run $(ARGS)

## Every test, end-to-end included.
test: $(STAMP)
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

## Unit tests only (no pipeline runs).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

## Infer a schema from new data and print its diff against the curated one: make schema-diff DATA=dir
schema-diff: $(STAMP)
	$(PY) -m commands schema-diff --data "$(DATA)"

## Roll the served model back: make rollback [VERSION=<version to serve>]
rollback: $(STAMP)
	$(PY) -m commands rollback $(if $(VERSION),--to $(VERSION),)

## Cold pipeline against TFX's own taxi example (its settings and Beam in_memory), side by side.
bench: $(STAMP)
	$(PY) bench/pipeline_bench.py

## The pipeline cold at 15 k / 150 k / 1.5 M rows: per step wall, rows/s, peak RSS, growth.
bench-scale: $(STAMP)
	$(PY) -m bench.scale_bench $(ARGS)

clean:
	rm -rf out

# Targets owned by the serving and Kubeflow parts of the repository.
-include $(wildcard mk/*.mk)
