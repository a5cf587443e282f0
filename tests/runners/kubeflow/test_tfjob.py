"""The optional distributed Trainer: TFJob manifest (field names of kubeflow/training-operator
release-1.9 `pkg/apis/kubeflow.org/v1/tensorflow_types.go` and `common_types.go`), its config,
the compiled Trainer step that launches it, and the launcher's wait on the job's conditions."""

import json

import pytest

from components.tfjob import launcher, manifest
from model.trainer import replica
from runners.kubeflow import compiler
from runners.kubeflow.config import load_kubeflow_config
from tests.runners.kubeflow.conftest import EXAMPLE_CONFIG
from typed_config import ConfigError

TFJOB = [
    "tfjob.enabled=true",
    "tfjob.workers=3",
    "tfjob.gpus_per_replica=2",
    "tfjob.node_selector=pool=a100",
    "tfjob.tolerations=nvidia.com/gpu:NoSchedule,dedicated=train:NoExecute",
]


def test_manifest_has_one_chief_and_n_gpu_workers_on_the_gpu_pool() -> None:
    config = load_kubeflow_config(EXAMPLE_CONFIG, TFJOB)
    params = compiler.tfjob_params(config)
    command = [*launcher.REPLICA_COMMAND, "/mnt/taxi/run/fn_args.json"]
    job = manifest.render_tfjob("trainer-x", "kubeflow", params, command)
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "TFJob")
    assert job["metadata"] == {"name": "trainer-x", "namespace": "kubeflow"}
    spec = job["spec"]
    assert set(spec) == {"runPolicy", "tfReplicaSpecs"}
    assert spec["runPolicy"] == {
        "cleanPodPolicy": "Running",
        "backoffLimit": 0,
        "activeDeadlineSeconds": 6 * 3600,
    }
    replicas = spec["tfReplicaSpecs"]
    assert {name: r["replicas"] for name, r in replicas.items()} == {"Chief": 1, "Worker": 3}
    for replica_spec in replicas.values():
        assert replica_spec["restartPolicy"] == "Never"
        pod = replica_spec["template"]["spec"]
        (container,) = pod["containers"]
        # The operator injects TF_CONFIG and port 2222 only into the container named
        # `tensorflow` (TFJobDefaultContainerName).
        assert container["name"] == "tensorflow"
        assert container["image"] == config.image
        assert container["command"] == command
        assert container["resources"]["limits"] == {
            "cpu": "4",
            "memory": "16G",
            "nvidia.com/gpu": "2",
        }
        assert "nvidia.com/gpu" not in container["resources"]["requests"]
        assert pod["nodeSelector"] == {"pool": "a100"}
        assert pod["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "operator": "Equal", "value": "train", "effect": "NoExecute"},
        ]
        assert container["volumeMounts"] == [{"name": "pvc-0", "mountPath": "/mnt/taxi"}]
        assert pod["volumes"] == [
            {"name": "pvc-0", "persistentVolumeClaim": {"claimName": "taxi-pipeline"}}
        ]
    # The params survive the trip through the Trainer's custom_config.
    assert manifest.TFJobParams.from_json(json.loads(json.dumps(params.to_json()))) == params


def test_chief_only_job_has_no_worker_replicas() -> None:
    params = manifest.TFJobParams(image="img:1", workers=0)
    job = manifest.render_tfjob("t", "ns", params, ["python"])
    assert list(job["spec"]["tfReplicaSpecs"]) == ["Chief"]
    container = job["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("tfjob.workers=-1", "tfjob.workers"),
        ("tfjob.tolerations=gpu", "tfjob.tolerations"),
        ("tfjob.node_selector=pool", "tfjob.node_selector"),
        ("tfjob.image=x:latest", "tfjob.image"),
        ("tfjob.timeout_s=5", "tfjob.timeout_s"),
    ],
)
def test_bad_tfjob_settings_fail_naming_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=f"'{field}'"):
        load_kubeflow_config(EXAMPLE_CONFIG, [override])


@pytest.fixture(scope="module")
def compiled_tfjob():
    return compiler.compile_pipeline(load_kubeflow_config(EXAMPLE_CONFIG, TFJOB))


def test_compiled_trainer_launches_the_tfjob_from_the_cpu_pool(compiled_tfjob) -> None:
    spec = compiled_tfjob.pipeline_spec
    trainer_inputs = spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]
    assert trainer_inputs["run_fn"]["runtimeValue"]["constant"] == compiler.TFJOB_RUN_FN
    custom_config = json.loads(trainer_inputs["custom_config"]["runtimeValue"]["constant"])
    assert custom_config["tfjob"]["workers"] == 3
    assert custom_config["tfjob"]["gpus_per_replica"] == 2
    assert "hyperparameters" in custom_config  # run_fn's own settings still reach the replicas
    container = spec["deploymentSpec"]["executors"]["Trainer_executor"]["container"]
    assert "resources" not in container  # the launcher pod needs no GPU
    platform = compiled_tfjob.platform_spec["platforms"]["kubernetes"]["deploymentSpec"]
    trainer_platform = platform["executors"]["Trainer_executor"]
    assert trainer_platform["nodeSelector"] == {"labels": {"pool": "cpu"}}
    assert "tolerations" not in trainer_platform


def test_wait_returns_on_succeeded_and_raises_on_failed_or_timeout() -> None:
    def job(*conditions: tuple[str, str]) -> dict:
        return {
            "status": {
                "conditions": [
                    {"type": t, "status": s, "message": f"{t} {s}"} for t, s in conditions
                ]
            }
        }

    succeeded = job(("Running", "True"), ("Succeeded", "True"))
    states = iter([job(), job(("Created", "True")), succeeded])
    slept: list[float] = []
    message = launcher.wait_for_tfjob(lambda: next(states), 100, poll_s=10, sleep=slept.append)
    assert message == "Succeeded True" and slept == [10, 10]
    failed = job(("Running", "False"), ("Failed", "True"))
    with pytest.raises(launcher.TFJobFailedError, match="Failed True"):
        launcher.wait_for_tfjob(lambda: failed, 100, poll_s=10, sleep=slept.append)
    with pytest.raises(launcher.TFJobFailedError, match="within 30"):
        launcher.wait_for_tfjob(lambda: job(("Running", "True")), 30, poll_s=10, sleep=slept.append)


def test_job_name_is_a_kubernetes_name_unique_per_run_dir() -> None:
    a = launcher.job_name("minio://mlpipeline/v2/artifacts/run-1/Trainer/model_run")
    b = launcher.job_name("minio://mlpipeline/v2/artifacts/run-2/Trainer/model_run")
    assert a != b
    for name in (a, b):
        assert len(name) <= 63 and name[0].isalpha() and name[-1].isalnum()
        assert all(c.isalnum() or c == "-" for c in name) and name == name.lower()


def test_replica_rejects_unknown_fn_args_fields(tmp_path) -> None:
    path = tmp_path / "fn_args.json"
    path.write_text(json.dumps({"train_files": [], "module_file": "x.py"}))
    with pytest.raises(ValueError, match="module_file"):
        replica.main(["--fn-args", str(path)])
