"""Each private TFX/KFP call sits in one adapter, pinned to the library versions it was read on."""

import inspect

import kfp
import pytest
import tfx
from kfp import client as kfp_client_lib
from tfx.orchestration.beam import beam_dag_runner
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

from runners import tfx_beam
from runners.kubeflow import kfp_client
from runners.kubeflow.pod import tfx_executor


@pytest.mark.parametrize(
    ("adapter", "tested", "installed"),
    [
        ("runners/tfx_beam.py", tfx_beam.TESTED_TFX_VERSIONS, tfx.__version__),
        ("runners/kubeflow/pod/tfx_executor.py", tfx_executor.TESTED_TFX_VERSIONS, tfx.__version__),
        ("runners/kubeflow/kfp_client.py", kfp_client.TESTED_KFP_VERSIONS, kfp.__version__),
    ],
)
def test_the_installed_library_is_one_the_adapter_was_checked_against(
    adapter: str, tested: tuple[str, ...], installed: str
) -> None:
    assert installed in tested, (
        f"{adapter} wraps private API checked on {tested}, but {installed} is installed: read "
        "the library's source of that API, adapt the module, then add the version"
    )


def test_beam_dag_runner_internals_the_node_hook_uses_are_there() -> None:
    source = inspect.getsource(beam_dag_runner.PipelineNodeAsDoFn.__init__)
    for attribute in ("_node_id", "_pipeline", "_pipeline_info", "_mlmd_connection_config"):
        assert f"self.{attribute} =" in source, attribute
    assert inspect.signature(beam_dag_runner.PipelineNodeAsDoFn._run_node).parameters.keys() == {
        "self"
    }
    assert beam_dag_runner.BeamDagRunner._PIPELINE_NODE_DO_FN_CLS is (
        beam_dag_runner.PipelineNodeAsDoFn
    )
    runner = tfx_beam.HookedBeamDagRunner()
    assert runner._PIPELINE_NODE_DO_FN_CLS is tfx_beam.NodeDoFn
    assert issubclass(tfx_beam.NodeDoFn, beam_dag_runner.PipelineNodeAsDoFn)


def test_executor_entry_takes_parsed_flags_and_beam_args() -> None:
    parameters = list(inspect.signature(kubeflow_v2_run_executor._run_executor).parameters)
    assert parameters == ["args", "beam_args"]


def test_kfp_client_ui_url_is_the_ui_host_or_the_in_cluster_path() -> None:
    client = kfp_client_lib.Client.__new__(kfp_client_lib.Client)  # No server to reach.
    client._uihost = "kfp.example:8080"
    assert (
        kfp_client.ui_url(client, "#/runs/details/r1")
        == "http://kfp.example:8080/#/runs/details/r1"
    )
    client._uihost = ""
    assert kfp_client.ui_url(client, "#/runs/details/r1") == "/pipeline/#/runs/details/r1"
