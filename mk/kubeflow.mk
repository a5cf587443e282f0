# Kubeflow Pipelines v2: compile, check, submit, and the kfp-kubernetes tool venv.
KFP_CONFIG ?= kubeflow/pipeline/config.example.json
KFP_SPEC ?= out/kubeflow/pipeline.yaml
KFP_GOLDEN := kubeflow/pipeline/golden/pipeline.yaml
KFP_K8S_VENV := .venv-kfp-kubernetes
KFP_K8S_STAMP := $(KFP_K8S_VENV)/.installed

.PHONY: compile compile-golden submit kfp-kubernetes-venv validate-platform

## Compile the pipeline into a KFP v2 spec: make compile [KFP_CONFIG=...] [KFP_SPEC=...] [ARGS='--set key=value ...']
compile: $(STAMP)
	$(PY) -m commands compile --config $(KFP_CONFIG) --output $(KFP_SPEC) $(ARGS)

## Regenerate the checked-in golden spec from the example config (review the diff!).
compile-golden: $(STAMP)
	$(PY) -m commands compile --config kubeflow/pipeline/config.example.json --output $(KFP_GOLDEN)

## Submit the compiled spec: make submit HOST=https://kfp.example.com [ARGS='--dry-run --param source_uri=...']
submit: $(STAMP)
	$(PY) -m commands submit --spec $(KFP_SPEC) $(if $(HOST),--host $(HOST),) $(ARGS)

## Separate venv with kfp-kubernetes (needs protobuf>=4) to validate the spec's platform section.
kfp-kubernetes-venv: $(KFP_K8S_STAMP)

$(KFP_K8S_STAMP): kubeflow/pipeline/kfp-kubernetes-requirements.txt scripts/bootstrap-venv.sh | $(STAMP)
	@base=$$($(PY) -c 'import sys; print(sys.base_prefix)')/bin/python3.10; \
	  echo "Creating $(KFP_K8S_VENV) with $$base"; \
	  rm -rf $(KFP_K8S_VENV) && "$$base" -m venv $(KFP_K8S_VENV)
	@$(KFP_K8S_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	  -r kubeflow/pipeline/kfp-kubernetes-requirements.txt
	@touch $@

# kfp-kubernetes needs protobuf >= 4: on tfx-1.21 it is in the stack's own env, on tfx-1.16 in the
# tool venv.
ifeq ($(STACK),tfx-1.16)
KFP_K8S_PY := $(KFP_K8S_VENV)/bin/python
KFP_K8S_DEP := $(KFP_K8S_STAMP)
else
KFP_K8S_PY := $(PY)
KFP_K8S_DEP := $(STAMP)
endif

## Validate the compiled spec's Kubernetes section against kfp-kubernetes' protos.
validate-platform: $(KFP_K8S_DEP) compile
	$(KFP_K8S_PY) devtools/validate_platform.py $(KFP_SPEC)

# The platform-section test runs the validator in the tool venv (tfx-1.16 only).
ifeq ($(STACK),tfx-1.16)
test test-stack test-fast: $(KFP_K8S_STAMP)
endif
