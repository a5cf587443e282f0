"""The one place that reaches into TFX's BeamDagRunner internals, to wrap each node's run.

TFX has no public hook around a node's run: `BeamDagRunner` builds one
`PipelineNodeAsDoFn` per node from its class attribute `_PIPELINE_NODE_DO_FN_CLS`, and the
DoFn runs the node in `_run_node`, holding the node id, pipeline and ML-Metadata connection in
private attributes (tfx/orchestration/beam/beam_dag_runner.py, identical in TFX 1.16.0 and
1.21.0). `tests/runners/test_private_adapters.py` pins these names to `TESTED_TFX_VERSIONS`.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

from tfx.orchestration.beam import beam_dag_runner

# TFX releases whose BeamDagRunner internals this module was checked against.
TESTED_TFX_VERSIONS = ("1.16.0", "1.21.0")


@dataclasses.dataclass(frozen=True)
class NodeRun:
    """One node about to run.

    Attributes:
      node_id: The node's id (`.with_id()`).
      position: 1-based place of the node in the pipeline's topological order.
      total: Nodes in the pipeline.
      pipeline_id: The pipeline's id (TFX's node contexts are `<pipeline_id>.<node_id>`).
      mlmd_connection_config: The run's ML-Metadata connection.
    """

    node_id: str
    position: int
    total: int
    pipeline_id: str
    mlmd_connection_config: Any


class NodeDoFn(beam_dag_runner.PipelineNodeAsDoFn):
    """TFX's node DoFn with a public hook: override `run_node(node, run)` and call `run()`."""

    def _run_node(self) -> None:
        # TFX calls this for each node; `super()._run_node` is the node's real run.
        assert self._pipeline is not None  # BeamDagRunner always passes the pipeline.
        node_ids = [n.pipeline_node.node_info.id for n in self._pipeline.nodes]
        node = NodeRun(
            node_id=self._node_id,
            position=node_ids.index(self._node_id) + 1,
            total=len(node_ids),
            pipeline_id=self._pipeline_info.id,
            mlmd_connection_config=self._mlmd_connection_config,
        )
        self.run_node(node, super()._run_node)

    def run_node(self, node: NodeRun, run: Callable[[], None]) -> None:
        """Runs the node; subclasses wrap `run()` (it raises what the node raised)."""
        run()


class HookedBeamDagRunner(beam_dag_runner.BeamDagRunner):
    """BeamDagRunner that runs each node through `node_do_fn` (a `NodeDoFn` subclass)."""

    node_do_fn: ClassVar[type[NodeDoFn]] = NodeDoFn
    _PIPELINE_NODE_DO_FN_CLS = NodeDoFn

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._PIPELINE_NODE_DO_FN_CLS = cls.node_do_fn
