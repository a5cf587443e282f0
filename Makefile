# Two commands matter: `make run` and `make test`. Both create the stack's venv on first use.
# STACK=tfx-1.21 | tfx-1.16 picks the stack for any target (mk/stack.mk, docs/stack.md).
SHELL := /bin/bash
include mk/stack.mk
# Reproducible, quiet TF: no oneDNN nondeterminism, no CUDA probing noise on CPU machines.
# 3: the CUDA plugin-registration messages TF prints on CPU-only machines are noise.
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONWARNINGS ?= ignore::FutureWarning
export TF_ENABLE_ONEDNN_OPTS ?= 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv run test test-stack test-fast lint schema-diff bench bench-scale rollback clean

## Create (or check) the selected stack's environment and say which stack it is.
venv: $(STAMP)
	@$(PY) -c 'import platform, tfx; print(f"stack $(STACK) ($(STACK_MODE)): TFX {tfx.__version__}, Python {platform.python_version()}")'

## Run the whole pipeline locally (BeamDagRunner) on the taxi sample shipped in the tfx wheel.
run: $(STAMP)
	$(PY) -m commands run $(ARGS)

## Every test, end-to-end included, on every stack this host runs (or only STACK=...).
test:
	@rc=0; for s in $(STACKS); do \
	  start=$$(date +%s); echo "== make test on stack $$s"; \
	  if $(MAKE) --no-print-directory STACK=$$s test-stack; then r=passed; else r=FAILED; rc=1; fi; \
	  echo "== stack $$s: $$r in $$(( $$(date +%s) - start ))s"; \
	done; exit $$rc

## Every test on the selected stack only.
test-stack: $(STAMP)
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

## Unit tests only (no pipeline runs).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests $(PYTEST_ARGS)

lint: $(STAMP)
	$(RUN) $(VENV)/bin/ruff check . && $(RUN) $(VENV)/bin/ruff format --check . && $(RUN) $(VENV)/bin/mypy

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
-include $(filter-out mk/stack.mk,$(wildcard mk/*.mk))
