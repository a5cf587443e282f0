# Serving: the TF-Serving-compatible local server, its client, tests and benchmark.
SERVING_MODEL ?= chicago_taxi
SERVING_BASE ?= out/local/serving/$(SERVING_MODEL)
SERVING_GRPC_PORT ?= 8500
SERVING_REST_PORT ?= 8501

.PHONY: serve serve-predict test-serving serving-bench serving-manifests

## Serve the pushed model (TF Serving's gRPC on 8500, REST on 8501) until Ctrl-C.
serve: $(STAMP)
	$(PY) -m commands serve --model_name=$(SERVING_MODEL) --model_base_path=$(SERVING_BASE) \
	  --port=$(SERVING_GRPC_PORT) --rest_api_port=$(SERVING_REST_PORT) --log_format=text $(ARGS)

## Predict with the client from a CSV of raw rows: make serve-predict CSV=rows.csv
serve-predict: $(STAMP)
	$(PY) -m commands predict --target=localhost:$(SERVING_GRPC_PORT) \
	  --model=$(SERVING_MODEL) --csv=$(CSV) $(ARGS)

## Serving tests (contract, hot reload, manifests). Against a real TF Serving:
## SERVING_TEST_GRPC_ADDR=host:8500 SERVING_TEST_REST_URL=http://host:8501 make test-serving
test-serving: $(STAMP)
	$(PY) -m pytest -q tests/serving $(PYTEST_ARGS)

## Latency/throughput of gRPC and REST vs the in-process SavedModel (writes out/bench/serving-*.md),
## then what the request-log front adds over calling TF Serving's ports directly (out/bench/front.md;
## FRONT_ARGS="--sampling_rate 1.0" for every call logged).
serving-bench: $(STAMP)
	$(PY) -m bench.serving_bench $(ARGS)
	$(PY) -m bench.front_bench $(FRONT_ARGS)

## Print the rendered Kubernetes manifests of an overlay (pvc, gcs, kserve; needs kubectl): make serving-manifests OVERLAY=gcs
serving-manifests:
	kubectl kustomize kubeflow/tf-serving/overlays/$(or $(OVERLAY),pvc)
