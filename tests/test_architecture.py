"""Dependency direction between folders and the repository's code rules, checked on the AST."""

import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = (
    "schemas",
    "typed_config",
    "model_contract",
    "metadata",
    "model",
    "components",
    "pipeline",
    "operations",
    "runners",
    "commands",
    "serving",
)
# Each folder's role, lowest first: a folder may import only folders listed before it
# (serving/ is its own branch: it builds on the three contracts and nothing else).
#   schemas, model_contract, typed_config: contracts every other folder reads
#   metadata:    reading ML-Metadata and TFMA results (the one place that knows their layout)
#   model:       what is learned (feature roles, preprocessing_fn, the Keras trainer)
#   components:  the custom TFX components, one folder each with its settings
#   pipeline:    what the DAG is (create_pipeline, its settings, Beam arguments), no I/O
#   operations:  operating what was pushed (summary, lineage, monitor, telemetry, schema diff)
#   runners:     where the DAG runs (local BeamDagRunner, Kubeflow compile/submit, pod code)
#   commands:    the one command people type
LAYERS = (
    "schemas",
    "model_contract",
    "typed_config",
    "metadata",
    "model",
    "components",
    "pipeline",
    "operations",
    "runners",
    "commands",
)


def _modules(folder: str) -> list[pathlib.Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _top(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("folder", ["schemas", "model_contract"])
def test_folder_depends_on_nothing_but_the_standard_library(folder: str) -> None:
    for path in _modules(folder):
        outside = _top(_imports(path)) - set(sys.stdlib_module_names) - {folder}
        assert not outside, f"{path.relative_to(ROOT)} imports {outside}"


def test_typed_config_depends_on_the_standard_library_and_pydantic_only() -> None:
    # Below components/, pipeline/ and serving/: every settings class builds on it.
    for path in _modules("typed_config"):
        outside = (
            _top(_imports(path)) - set(sys.stdlib_module_names) - {"pydantic", "pydantic_core"}
        )
        assert not outside, f"{path.relative_to(ROOT)} imports {outside}"


@pytest.mark.parametrize("index", range(len(LAYERS)))
def test_each_layer_imports_only_the_layers_below_it(index: int) -> None:
    folder, above = LAYERS[index], set(LAYERS[index + 1 :])
    for path in _modules(folder):
        bad = _top(_imports(path)) & (above | {"tests", "devtools", "bench", "kubeflow"})
        assert not bad, f"{path.relative_to(ROOT)} ({folder}) imports {bad}, which is above it"


def test_code_that_runs_inside_a_kfp_pod_does_not_import_the_compiler() -> None:
    # runners/kubeflow/pod/ is what the image runs in each step; the compile/submit side needs
    # the kfp SDK's compiler and client and the whole DAG, which a step must not depend on (the
    # spec's protos, kfp.pipeline_spec, are what the launcher hands the step, so they are fine).
    for path in _modules("runners/kubeflow/pod"):
        names = _imports(path)
        bad = {
            n
            for n in names
            if n.startswith("runners.") and not n.startswith("runners.kubeflow.pod")
        }
        bad |= {n for n in names if n.split(".")[0] in {"pipeline", "commands", "operations"}}
        bad |= {
            n for n in names if n.split(".")[0] == "kfp" and not n.startswith("kfp.pipeline_spec")
        }
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("components", {"pipeline", "kubeflow", "serving"}),
        (
            "serving",
            {"tfx", "kubeflow", "kfp", "apache_beam", "tests", *LAYERS[3:]},
        ),
        ("schemas", {"serving", *LAYERS[1:]}),
        # The model directory contract sits below everything that reads or writes it.
        ("model_contract", {"schemas", "serving", "kubeflow", *LAYERS[2:]}),
    ],
)
def test_folders_import_only_downstream(folder: str, forbidden: set[str]) -> None:
    for path in _modules(folder):
        bad = _top(_imports(path)) & forbidden
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_product_folders_never_import_devtools() -> None:
    # `devtools/` (the emulated KFP backend, the platform validator) is for developers and
    # tests; it is not installed with the product.
    for folder in PACKAGES:
        for path in _modules(folder):
            assert "devtools" not in _top(_imports(path)), (
                f"{path.relative_to(ROOT)} imports devtools"
            )
    assert "devtools" not in (ROOT / "setup.py").read_text()


# What a TF Serving model directory is, written anywhere but in model_contract/ (docstrings aside).
_CONTRACT_LITERALS = (
    "tensorflow/serving/predict",
    "tensorflow/serving/classify",
    "tensorflow/serving/regress",
    "tf_serving_warmup_requests",
    "push_manifest.json",
    "_rolled_back_",
)


@pytest.mark.parametrize("folder", [f for f in PACKAGES if f not in {"model_contract"}])
def test_model_directory_contract_is_written_only_in_model_contract(folder: str) -> None:
    for path in _modules(folder):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in docstrings:
                    continue
                found = [s for s in _CONTRACT_LITERALS if s in node.value]
                assert not found, (
                    f"{path.relative_to(ROOT)}:{node.lineno} writes {found}: import it from "
                    "model_contract instead"
                )


def test_kubeflow_folder_is_not_a_python_package() -> None:
    # The import name `kubeflow` belongs to the official Kubeflow SDK.
    assert not (ROOT / "kubeflow" / "__init__.py").exists()
    assert not list((ROOT / "kubeflow").rglob("*.py"))


def test_no_sys_path_manipulation_anywhere() -> None:
    for folder in (*PACKAGES, "tests", "bench"):
        for path in _modules(folder):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr == "path":
                    assert not (isinstance(node.value, ast.Name) and node.value.id == "sys"), (
                        f"{path.relative_to(ROOT)} touches sys.path"
                    )


def test_components_use_no_future_annotations_and_no_module_file() -> None:
    for path in _modules("components") + _modules("pipeline") + _modules("model"):
        source = path.read_text()
        assert "from __future__ import annotations" not in source, path
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword):
                assert node.arg != "module_file", f"{path.relative_to(ROOT)} passes module_file"


def test_every_pipeline_node_is_named_and_user_code_is_a_dotted_path(tmp_path) -> None:
    from pipeline import pipeline as pipeline_lib
    from pipeline.config import PipelineSettings

    built = pipeline_lib.create_pipeline(
        PipelineSettings(),
        pipeline_root=str(tmp_path),
        source_uri=str(tmp_path / "data"),
        source_fingerprint="0" * 64,
        served_model="none",
        schema_path=str(tmp_path / "schema.pbtxt"),
        model_dir=str(tmp_path / "serving" / "m"),
    )
    assert sorted(c.id for c in built.components) == sorted(pipeline_lib.NODE_IDS)
    by_id = {c.id: c for c in built.components}
    assert (
        by_id["Transform"].exec_properties["preprocessing_fn"]
        == "model.preprocessing.preprocessing_fn"
    )
    assert by_id["Trainer"].exec_properties["run_fn"] == "model.trainer.run.run_fn"
    assert not by_id["Trainer"].exec_properties.get("module_file")
    # Transform and Trainer run only after both gates passed: the AnomaliesGate's schema, and
    # after DriftGate without its output (cached on the served model, it must not retrain).
    assert by_id["DriftGate"].inputs["schema"].producer_component_id == "AnomaliesGate"
    assert by_id["Transform"].inputs["schema"].producer_component_id == "AnomaliesGate"
    assert by_id["Trainer"].inputs["schema"].producer_component_id == "AnomaliesGate"
    assert by_id["DriftGate"] in by_id["Transform"].upstream_nodes
