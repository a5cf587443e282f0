"""The emulated KFP v2 backend on tiny specs: each modelled driver/launcher behaviour."""

import json
import os

import pytest
from ml_metadata.proto import metadata_store_pb2

from devtools.kfp_backend import backend as backend_lib
from devtools.kfp_backend import cache as cache_lib
from devtools.kfp_backend.mlmd import MetadataConversionError, from_mlmd_value, to_mlmd_value
from devtools.kfp_backend.objectstore import ObjectStore
from metadata import lineage_graph
from metadata import store as mlmd
from runners.kubeflow import compiler
from runners.kubeflow import spec as spec_lib
from runners.kubeflow.config import load_kubeflow_config
from tests.runners.kubeflow.conftest import EXAMPLE_CONFIG

# Writes a file and an empty directory into its output, metadata from its second argument to the
# ExecutorOutput file and its output parameter to the parameter's file.
LOCAL = """
def local(uri):
    scheme, rest = uri.split("://")
    return {"gs": "/gcs/", "s3": "/s3/", "minio": "/minio/"}[scheme] + rest
"""
PRODUCE = (
    LOCAL
    + """
import json, os, sys
ei = json.loads(sys.argv[1])
out = ei["outputs"]
art = out["artifacts"]["data"]["artifacts"][0]
path = local(art["uri"])
os.makedirs(os.path.join(path, "empty"))
with open(os.path.join(path, "rows.txt"), "w") as f:
    f.write("a\\nb\\n")
with open(out["outputFile"], "w") as f:
    json.dump({"artifacts": {"data": {"artifacts": [{"metadata": json.loads(sys.argv[2])}]}}}, f)
with open(out["parameters"]["count"]["outputFile"], "w") as f:
    f.write("3")
print("produced", path)
"""
)
# Records what it saw (its ExecutorInput, its input's files as the pod shows them).
CONSUME = (
    LOCAL
    + """
import json, os, sys
ei = json.loads(sys.argv[1])
data = ei["inputs"]["artifacts"]["data"]["artifacts"][0]
seen = {"executor_input": ei, "files": sorted(os.listdir(local(data["uri"]))), "count": sys.argv[2]}
out = ei["outputs"]["artifacts"]["seen"]["artifacts"][0]["uri"]
with open(local(out), "w") as f:
    json.dump(seen, f)
"""
)
METADATA = {"rows": 3, "ok": True, "splits": ["a"], "info": {"k": 1}, "label": "x"}


def _spec(
    produce: str = PRODUCE, display_names: bool = True, consume_cache: bool = True
) -> spec_lib.PipelineDocs:
    dataset = {"artifactType": {"schemaTitle": "system.Dataset"}}
    spec = {
        "schemaVersion": "2.1.0",
        "pipelineInfo": {"name": "tiny"},
        "root": {
            "inputDefinitions": {
                "parameters": {
                    "meta": {"parameterType": "STRING", "defaultValue": json.dumps(METADATA)}
                }
            },
            "dag": {
                "tasks": {
                    "produce": {
                        "taskInfo": {"name": "Produce data" if display_names else "produce"},
                        "componentRef": {"name": "comp-produce"},
                        "cachingOptions": {"enableCache": True},
                        "inputs": {"parameters": {"meta": {"componentInputParameter": "meta"}}},
                    },
                    "consume": {
                        "taskInfo": {"name": "Consume data" if display_names else "consume"},
                        "componentRef": {"name": "comp-consume"},
                        "cachingOptions": {"enableCache": True} if consume_cache else {},
                        "dependentTasks": ["produce"],
                        "inputs": {
                            "artifacts": {
                                "data": {
                                    "taskOutputArtifact": {
                                        "producerTask": "produce",
                                        "outputArtifactKey": "data",
                                    }
                                }
                            },
                            "parameters": {
                                "count": {
                                    "taskOutputParameter": {
                                        "producerTask": "produce",
                                        "outputParameterKey": "count",
                                    }
                                }
                            },
                        },
                    },
                }
            },
        },
        "components": {
            "comp-produce": {
                "executorLabel": "exec-produce",
                "inputDefinitions": {"parameters": {"meta": {"parameterType": "STRING"}}},
                "outputDefinitions": {
                    "artifacts": {"data": dataset},
                    "parameters": {"count": {"parameterType": "NUMBER_INTEGER"}},
                },
            },
            "comp-consume": {
                "executorLabel": "exec-consume",
                "inputDefinitions": {
                    "artifacts": {"data": dataset},
                    "parameters": {"count": {"parameterType": "NUMBER_INTEGER"}},
                },
                "outputDefinitions": {
                    "artifacts": {"seen": {"artifactType": {"schemaTitle": "system.Artifact"}}}
                },
            },
        },
        "deploymentSpec": {
            "executors": {
                "exec-produce": {
                    "container": {
                        "image": "tiny:1",
                        "command": ["python", "-c", produce],
                        "args": ["{{$}}", "{{$.inputs.parameters['meta']}}"],
                    }
                },
                "exec-consume": {
                    "container": {
                        "image": "tiny:1",
                        "command": ["python", "-c", CONSUME],
                        "args": ["{{$}}", "{{$.inputs.parameters['count']}}"],
                    }
                },
            }
        },
    }
    return spec_lib.PipelineDocs(spec, {})


def _seen(state_dir, result: backend_lib.RunResult) -> dict:
    store = ObjectStore(os.path.join(state_dir, "objectstore"))
    with open(store.path(result.tasks["consume"].outputs["seen"]["uri"])) as f:
        return json.load(f)


def test_steps_see_what_the_real_driver_hands_over(tmp_path):
    backend = backend_lib.Backend(str(tmp_path), version="2.14.0")
    result = backend.run(_spec(), run_id="r1")
    seen = _seen(tmp_path, result)
    produce = result.tasks["produce"]
    data = seen["executor_input"]["inputs"]["artifacts"]["data"]["artifacts"][0]
    # Rebuilt from MLMD: named by id, untyped, metadata through the converter.
    assert data["name"] == produce.outputs["data"]["name"]
    assert data["name"].isdigit()
    assert data["type"] == {"instanceSchema": ""}
    session = json.loads(data["metadata"].pop("store_session_info"))
    assert session["Provider"] == "minio"
    assert data["metadata"] == {
        "rows": 3.0,
        "ok": 1.0,
        "splits": {"list": ["a"]},
        "info": {"struct": {"k": 1}},
        "label": "x",
        "display_name": "data",  # RecordArtifact's default: the output name.
    }
    # Files only: the empty directory did not survive the upload.
    assert seen["files"] == ["rows.txt"]
    # The output parameter file was read as NUMBER_INTEGER (a double) and passed on.
    assert produce.parameters == {"count": 3.0}
    assert seen["count"] == "3.0"
    outputs = seen["executor_input"]["outputs"]
    assert outputs["artifacts"]["executor-logs"]["artifacts"][0]["type"] == {
        "schemaTitle": "system.Artifact"
    }
    assert outputs["outputFile"] == "/tmp/kfp_outputs/output_metadata.json"
    uri = outputs["artifacts"]["seen"]["artifacts"][0]["uri"]
    assert uri.startswith("minio://mlpipeline/v2/artifacts/tiny/r1/consume/")
    assert uri.endswith("/seen")
    # The launcher wrote the step's output into executor-logs and uploaded it.
    store = ObjectStore(str(tmp_path / "objectstore"))
    with open(store.path(produce.outputs["executor-logs"]["uri"])) as f:
        assert "produced /minio/mlpipeline/v2/artifacts/tiny/r1/produce/" in f.read()
    assert produce.output_titles == {
        "data": "system.Dataset",
        "executor-logs": "system.Artifact",
    }


def test_without_log_publishing_there_is_no_executor_logs_output(tmp_path):
    backend = backend_lib.Backend(str(tmp_path), publish_logs=False)
    result = backend.run(_spec(), run_id="r1")
    assert "executor-logs" not in _seen(tmp_path, result)["executor_input"]["outputs"]["artifacts"]


def test_output_file_moves_to_the_task_root_from_2_15(tmp_path):
    result = backend_lib.Backend(str(tmp_path), version="2.15.0").run(_spec(), run_id="r1")
    outputs = _seen(tmp_path, result)["executor_input"]["outputs"]
    seen_uri = outputs["artifacts"]["seen"]["artifacts"][0]["uri"]
    task_root = "/minio/" + os.path.dirname(seen_uri)[len("minio://") :]
    assert outputs["outputFile"] == f"{task_root}/output_metadata.json"
    assert outputs["artifacts"]["seen"]["artifacts"][0]["name"] == "seen"
    assert result.tasks["produce"].outputs["data"]["metadata"]["rows"] == 3.0


def test_display_names_break_producer_lookup_before_2_14(tmp_path):
    with pytest.raises(backend_lib.BackendError, match="cannot find producer task 'produce'"):
        backend_lib.Backend(str(tmp_path / "a"), version="2.13.0").run(_spec())
    result = backend_lib.Backend(str(tmp_path / "b"), version="2.13.0").run(
        _spec(display_names=False), run_id="r1"
    )
    assert result.tasks["consume"].task_name == "consume"
    result = backend_lib.Backend(str(tmp_path / "c"), version="2.14.0").run(_spec())
    assert result.tasks["consume"].task_name == "consume"
    assert backend_lib.BackendVersion.parse("2.5.0").task_identity == "pre-2.14"
    with pytest.raises(ValueError, match=r"only 2\.5\.0 to 2\.17\.x"):
        backend_lib.BackendVersion.parse("1.8.5")


def test_cache_reuses_outputs_until_an_input_changes(tmp_path):
    backend = backend_lib.Backend(str(tmp_path))
    first = backend.run(_spec(), run_id="r1")
    second = backend.run(_spec(), run_id="r2")
    assert first.states() == {"produce": "COMPLETE", "consume": "COMPLETE"}
    assert second.states() == {"produce": "CACHED", "consume": "CACHED"}
    assert second.tasks["consume"].outputs == first.tasks["consume"].outputs
    assert second.tasks["produce"].parameters == {"count": 3.0}
    changed = backend.run(_spec(), run_id="r3", arguments={"meta": json.dumps({"rows": 4})})
    # A new parameter value re-runs the producer; its new artifact id re-runs the consumer.
    assert changed.states() == {"produce": "COMPLETE", "consume": "COMPLETE"}
    off = backend.run(_spec(consume_cache=False), run_id="r4")
    assert off.states() == {"produce": "CACHED", "consume": "COMPLETE"}
    assert off.tasks["consume"].fingerprint == ""


def test_cache_key_covers_ids_values_and_command_not_uris():
    def executor_input(name: str, uri: str, value: str) -> dict:
        return {
            "inputs": {
                "parameterValues": {"p": value},
                "artifacts": {"x": {"artifacts": [{"name": name, "uri": uri}]}},
            },
            "outputs": {
                "artifacts": {
                    "y": {"artifacts": [{"uri": uri + "/y", "type": {"schemaTitle": "t"}}]}
                },
                "parameters": {"n": {"outputFile": "/tmp/kfp/outputs/n"}},
            },
        }

    def key(ei: dict, image: str = "i:1", pvcs: tuple = ()) -> str:
        return cache_lib.fingerprint(
            cache_lib.cache_key(ei, {"n": "NUMBER_INTEGER"}, ["python", "-m", "m"], image, pvcs)
        )

    base = key(executor_input("7", "minio://b/run1/t", "v"))
    assert key(executor_input("7", "minio://b/run2/t", "v")) == base
    assert key(executor_input("8", "minio://b/run1/t", "v")) != base
    assert key(executor_input("7", "minio://b/run1/t", "w")) != base
    assert key(executor_input("7", "minio://b/run1/t", "v"), image="i:2") != base
    assert key(executor_input("7", "minio://b/run1/t", "v"), pvcs=("a", "a")) == key(
        executor_input("7", "minio://b/run1/t", "v"), pvcs=("a",)
    )
    with pytest.raises(ValueError, match="unknown parameter 'n'"):
        cache_lib.cache_key(executor_input("7", "u", "v"), {}, [], "i", [])


def test_null_metadata_fails_like_the_converter(tmp_path):
    backend = backend_lib.Backend(str(tmp_path))
    with pytest.raises(MetadataConversionError, match="'gone'"):
        backend.run(_spec(), arguments={"meta": json.dumps({"gone": None})})


def test_metadata_round_trip_follows_converter_go():
    assert from_mlmd_value(to_mlmd_value("k", "s")) == "s"
    assert from_mlmd_value(to_mlmd_value("k", 2)) == 2.0
    assert isinstance(from_mlmd_value(to_mlmd_value("k", 2)), float)
    assert to_mlmd_value("k", True) == {"int_value": 1}
    assert from_mlmd_value(to_mlmd_value("k", False)) == 0.0
    assert from_mlmd_value(to_mlmd_value("k", [1, "a"])) == {"list": [1, "a"]}
    assert from_mlmd_value(to_mlmd_value("k", {"a": 1})) == {"struct": {"a": 1}}
    with pytest.raises(MetadataConversionError, match="'k'"):
        to_mlmd_value("k", None)


def test_executor_output_is_parsed_strictly(tmp_path):
    bogus = PRODUCE.replace('json.dump({"artifacts"', 'json.dump({"bogus": 1, "artifacts"')
    with pytest.raises(backend_lib.BackendError, match="failed to unmarshall ExecutorOutput"):
        backend_lib.Backend(str(tmp_path)).run(_spec(produce=bogus))


def test_failed_step_uploads_only_its_logs(tmp_path):
    failing = "import sys; print('about to fail'); sys.exit(3)"
    with pytest.raises(backend_lib.StepFailedError, match=r"(?s)produce exited 3.*about to fail"):
        backend_lib.Backend(str(tmp_path)).run(_spec(produce=failing), run_id="r1")
    store = ObjectStore(str(tmp_path / "objectstore"))
    uploaded = store.list("minio://mlpipeline/v2/artifacts/tiny/r1")
    assert len(uploaded) == 1 and uploaded[0].endswith("/executor-logs")


def test_pipeline_root_comes_from_the_run_or_the_launcher_config(tmp_path):
    resolve = backend_lib.resolve_pipeline_root
    assert resolve(None, {}) == "minio://mlpipeline/v2/artifacts"
    assert resolve(None, {"defaultPipelineRoot": "s3://b/root"}) == "s3://b/root"
    assert resolve("gs://g/r", {"defaultPipelineRoot": "s3://b/root"}) == "gs://g/r"
    with pytest.raises(backend_lib.BackendError, match="unsupported provider"):
        resolve(None, {"defaultPipelineRoot": "/mnt/pvc/root"})
    docs = _spec()
    docs.pipeline_spec["defaultPipelineRoot"] = "gs://never/read"
    backend = backend_lib.Backend(
        str(tmp_path), launcher_config={"defaultPipelineRoot": "s3://b/x"}
    )
    result = backend.run(docs, run_id="r1")
    assert result.pipeline_root == "s3://b/x/tiny/r1"
    assert result.tasks["produce"].outputs["data"]["uri"].startswith("s3://b/x/tiny/r1/produce/")


def test_backend_refuses_other_schema_versions_and_resolvers(tmp_path):
    docs = _spec()
    docs.pipeline_spec["schemaVersion"] = "2.0.0"
    with pytest.raises(spec_lib.UnsupportedConstructError, match=r"schema version 2\.1\.0"):
        backend_lib.Backend(str(tmp_path)).run(docs)
    docs = _spec()
    docs.pipeline_spec["deploymentSpec"]["executors"]["exec-r"] = {"resolver": {}}
    with pytest.raises(spec_lib.UnsupportedConstructError, match="resolver executors"):
        backend_lib.Backend(str(tmp_path)).run(docs)


def test_object_store_keeps_files_only(tmp_path):
    store = ObjectStore(str(tmp_path / "store"))
    local = tmp_path / "out"
    (local / "sub" / "empty").mkdir(parents=True)
    (local / "sub" / "f.txt").write_text("x")
    store.upload(str(local), "minio://b/a/model")
    assert store.list("minio://b/a/model") == ["minio://b/a/model/sub/f.txt"]
    assert not os.path.exists(store.path("minio://b/a/model/sub/empty"))
    (tmp_path / "other.txt").write_text("y")
    store.upload(str(tmp_path / "other.txt"), "minio://b/a/model_2")
    target = tmp_path / "down"
    assert store.download("minio://b/a/model", str(target)) == 1
    assert sorted(os.listdir(target)) == ["sub"]
    assert store.download("minio://b/a/nothing", str(tmp_path / "none")) == 0
    assert not os.path.exists(tmp_path / "none")
    assert store.download("minio://b/a/model_2", str(tmp_path / "file")) == 1
    assert (tmp_path / "file").read_text() == "y"
    with pytest.raises(FileNotFoundError):
        store.upload(str(tmp_path / "missing"), "minio://b/a/x")
    with pytest.raises(ValueError, match="not an object-store URI"):
        store.path("/local/path")


def test_order_follows_artifacts_and_rejects_cycles():
    spec = {
        "root": {
            "dag": {
                "tasks": {
                    "b": {
                        "inputs": {
                            "artifacts": {"x": {"taskOutputArtifact": {"producerTask": "a"}}}
                        }
                    },
                    "a": {},
                    "c": {"dependentTasks": ["b"]},
                }
            }
        }
    }
    assert backend_lib.order_tasks(spec) == ["a", "b", "c"]
    spec["root"]["dag"]["tasks"]["a"]["dependentTasks"] = ["c"]
    with pytest.raises(spec_lib.UnsupportedConstructError, match="dependency cycle"):
        backend_lib.order_tasks(spec)


def test_unresolvable_placeholder_fails_naming_it():
    with pytest.raises(
        spec_lib.UnsupportedConstructError, match=r"\{\{\$.inputs.artifacts\['x'\].path\}\}"
    ):
        backend_lib._fill("T", "--in={{$.inputs.artifacts['x'].path}}", {"{{$}}": "{}"})


def test_parameters_resolve_like_the_driver():
    component = {"inputDefinitions": {"parameters": {"n": {"parameterType": "NUMBER_INTEGER"}}}}
    task = {"inputs": {"parameters": {"n": {"runtimeValue": {"constant": "3"}}}}}
    with pytest.raises(ValueError, match="'n' is '3', not NUMBER_INTEGER"):
        backend_lib.resolve_parameters("T", task, component, {}, {})
    task = {"inputs": {"parameters": {"n": {"runtimeValue": {"constantValue": {"intValue": 3}}}}}}
    with pytest.raises(spec_lib.UnsupportedConstructError, match="constantValue"):
        backend_lib.resolve_parameters("T", task, component, {}, {})
    task = {
        "inputs": {
            "parameters": {
                "n": {"taskOutputParameter": {"producerTask": "P", "outputParameterKey": "o"}}
            }
        }
    }
    with pytest.raises(backend_lib.BackendError, match="cannot find producer task 'P'"):
        backend_lib.resolve_parameters("T", task, component, {}, {})
    assert backend_lib.parameter_from_text("2", "NUMBER_INTEGER") == 2.0
    assert backend_lib.parameter_from_text("true", "BOOLEAN") is True
    assert backend_lib.parameter_from_text(" abc\n", "STRING") == " abc\n"
    with pytest.raises(ValueError, match="not a LIST"):
        backend_lib.parameter_from_text('{"a": 1}', "LIST")


def test_importer_records_the_uri_it_is_given(tmp_path):
    docs = _spec()
    spec = docs.pipeline_spec
    spec["components"]["comp-import"] = {
        "executorLabel": "exec-import",
        "inputDefinitions": {"parameters": {"uri": {"parameterType": "STRING"}}},
        "outputDefinitions": {"artifacts": {"imported": {"artifactType": {"schemaTitle": "t.T"}}}},
    }
    spec["deploymentSpec"]["executors"]["exec-import"] = {
        "importer": {
            "artifactUri": {"runtimeParameter": "uri"},
            "typeSchema": {"schemaTitle": "system.Dataset"},
        }
    }
    spec["root"]["dag"]["tasks"] = {
        "imp": {
            "taskInfo": {"name": "imp"},
            "componentRef": {"name": "comp-import"},
            "inputs": {"parameters": {"uri": {"runtimeValue": {"constant": "gs://b/data"}}}},
        }
    }
    result = backend_lib.Backend(str(tmp_path)).run(docs)
    assert result.tasks["imp"].outputs["imported"]["uri"] == "gs://b/data"
    assert result.tasks["imp"].output_titles == {"imported": "system.Dataset"}


def _events(store, execution_id: int) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {"INPUT": {}, "OUTPUT": {}}
    for event in store.get_events_by_execution_ids([execution_id]):
        kind = metadata_store_pb2.Event.Type.Name(event.type)
        assert len(event.path.steps) == 1
        found[kind][event.path.steps[0].key] = event.artifact_id
    return found


def test_mlmd_records_what_kfps_driver_and_launcher_record(tmp_path):
    backend = backend_lib.Backend(str(tmp_path), version="2.14.0")
    first = backend.run(_spec(), run_id="r1")
    second = backend.run(_spec(), run_id="r2")
    # A real MLMD store, opened read-only as a step opens it.
    store = mlmd.open_store(backend.metadata_path)
    # client.go GetPipeline: a pipeline context, a run context per run, its child.
    (pipeline,) = store.get_contexts_by_type("system.Pipeline")
    assert pipeline.name == "tiny"
    runs = {c.name: c for c in store.get_contexts_by_type("system.PipelineRun")}
    assert sorted(runs) == ["r1", "r2"]
    assert runs["r1"].custom_properties["pipeline_root"].string_value == first.pipeline_root
    assert runs["r1"].custom_properties["namespace"].string_value == "kubeflow"
    assert [p.id for p in store.get_parent_contexts_by_context(runs["r2"].id)] == [pipeline.id]
    # One system.ContainerExecution per task, in its pipeline and run contexts.
    produce, consume = first.tasks["produce"], first.tasks["consume"]
    executions = store.get_executions_by_context(runs["r1"].id)
    assert sorted(e.id for e in executions) == sorted([produce.execution_id, consume.execution_id])
    by_id = {e.id: e for e in executions}
    execution = by_id[consume.execution_id]
    assert execution.type == "system.ContainerExecution"
    assert execution.last_known_state == metadata_store_pb2.Execution.COMPLETE
    properties = execution.custom_properties
    assert properties["task_name"].string_value == "consume"
    assert properties["display_name"].string_value == "Consume data"
    assert properties["image"].string_value == "tiny:1"
    assert properties["cache_fingerprint"].string_value == consume.fingerprint
    assert dict(properties["inputs"].struct_value) == {"count": 3.0}
    assert dict(by_id[produce.execution_id].custom_properties["outputs"].struct_value) == {
        "count": 3.0
    }
    # Events keyed by input/output name (client.go eventPath): the consumer's INPUT `data` is
    # the producer's OUTPUT `data`.
    data_id = int(produce.outputs["data"]["name"])
    assert _events(store, produce.execution_id) == {
        "INPUT": {},
        "OUTPUT": {"data": data_id, "executor-logs": int(produce.outputs["executor-logs"]["name"])},
    }
    assert _events(store, consume.execution_id)["INPUT"] == {"data": data_id}
    assert sorted(_events(store, consume.execution_id)["OUTPUT"]) == ["executor-logs", "seen"]
    # RecordArtifact: type named by schema title, state LIVE, URI, metadata as properties.
    (data,) = store.get_artifacts_by_id([data_id])
    assert data.type == "system.Dataset"
    assert data.state == metadata_store_pb2.Artifact.LIVE
    assert data.uri == produce.outputs["data"]["uri"]
    assert data.custom_properties["rows"].double_value == 3.0
    assert data.custom_properties["ok"].int_value == 1
    assert data.custom_properties["display_name"].string_value == "data"
    # A cache hit: a new execution, CACHED, naming the cached one, OUTPUT events to its artifacts.
    cached = second.tasks["consume"]
    (hit,) = store.get_executions_by_id([cached.execution_id])
    assert hit.last_known_state == metadata_store_pb2.Execution.CACHED
    assert hit.custom_properties["cached_execution_id"].string_value == str(consume.execution_id)
    assert (
        _events(store, cached.execution_id)["OUTPUT"]
        == _events(store, consume.execution_id)["OUTPUT"]
    )
    assert [c.name for c in store.get_contexts_by_execution(cached.execution_id)] == [
        "tiny",
        "r2",
    ]


def test_failed_step_is_published_failed(tmp_path):
    backend = backend_lib.Backend(str(tmp_path))
    with pytest.raises(backend_lib.StepFailedError):
        backend.run(_spec(produce="import sys; sys.exit(3)"), run_id="r1")
    (execution,) = mlmd.open_store(backend.metadata_path).get_executions()
    assert execution.last_known_state == metadata_store_pb2.Execution.FAILED
    assert execution.custom_properties["task_name"].string_value == "produce"


def test_drift_gate_connection_reads_the_recorded_lineage(tmp_path):
    backend = backend_lib.Backend(str(tmp_path))
    result = backend.run(_spec(), run_id="r1")
    assert compiler.baseline_metadata_connection(
        load_kubeflow_config(EXAMPLE_CONFIG)
    ) == metadata_store_pb2.MetadataStoreClientConfig(
        host="metadata-grpc-service.kubeflow", port=8080
    )
    config = load_kubeflow_config(
        EXAMPLE_CONFIG, [f"emulated_metadata_sqlite={backend.metadata_path}"]
    )
    # The exec property DriftGate gets, opened as the gate opens it.
    encoded = lineage_graph.encode_connection(compiler.baseline_metadata_connection(config))
    store = lineage_graph.connect(encoded)
    produce, consume = result.tasks["produce"], result.tasks["consume"]
    data_id = int(produce.outputs["data"]["name"])
    assert lineage_graph.producer(store, data_id) == produce.execution_id
    assert lineage_graph.consumers(store, data_id) == [consume.execution_id]
    assert [a.id for a in lineage_graph.inputs(store, consume.execution_id)["data"]] == [data_id]
    assert sorted(lineage_graph.outputs(store, produce.execution_id)) == ["data", "executor-logs"]
    with pytest.raises(ValueError, match="absolute path"):
        load_kubeflow_config(EXAMPLE_CONFIG, ["emulated_metadata_sqlite=relative.sqlite"])
