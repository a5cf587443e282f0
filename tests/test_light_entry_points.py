"""`--help` and config errors of every command line load no TensorFlow, TFX, Beam or KFP.

That is what makes them answer at once (TensorFlow alone takes seconds to import and prints
start-up noise); timings themselves live in bench/.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = (
    "tensorflow",
    "tfx",
    "apache_beam",
    "kfp",
    "tensorflow_data_validation",
    "tensorflow_model_analysis",
    "tensorflow_transform",
    "ml_metadata",
)


def _probe(module: str, *args: str) -> tuple[int, list[str], str]:
    """Runs `python -m module args` in a fresh process.

    Returns:
      Its exit code, the heavy top-level packages it had imported by the end, its stderr.
    """
    code = (
        "import json, runpy, sys\n"
        "module, sys.argv = sys.argv[1], sys.argv[1:]\n"
        "try:\n"
        "    runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
        "    code = 0\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        f"heavy = sorted({{n.split('.')[0] for n in sys.modules}} & set({HEAVY!r}))\n"
        "print('PROBE ' + json.dumps({'code': code, 'heavy': heavy}), flush=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    probe = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    assert probe, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(probe[-1].removeprefix("PROBE "))
    return int(report["code"] or 0), report["heavy"], result.stderr


@pytest.mark.parametrize(
    ("argv", "exit_code", "message"),
    [
        (["commands", "--help"], 0, ""),
        (["commands", "serve", "--help"], 0, ""),
        (["commands", "monitor", "--help"], 0, ""),
        (
            ["commands", "run", "--set", "settings.train_steps=0"],
            2,
            "config error: Invalid config value for 'settings.train_steps': expected >= 1",
        ),
        (
            ["commands", "rollback", "--set", "settings.no_such_field=1"],
            2,
            "config error: Unknown config field(s) ['settings.no_such_field']",
        ),
        (
            ["commands", "compile", "--set", "image=tfx-taxi:latest"],
            2,
            "config error: Invalid config value for 'image'",
        ),
        (
            ["commands", "monitor", "--logs", "/l", "--output-dir", "/o", "--set", "now=x"],
            2,
            "config error: Invalid config value for 'now'",
        ),
        (
            ["commands", "serve", "--model_base_path=/tmp/m", "--num_versions=0"],
            2,
            "config error: Invalid config value for 'models.0.version_policy.num_versions'",
        ),
        (["serving", "--help"], 0, ""),
        (
            ["serving", "--model_base_path=/tmp/m", "--num_versions=0", "--log_format=text"],
            2,
            "config error: Invalid config value for 'models.0.version_policy.num_versions'",
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_help_and_config_errors_load_no_ml_framework(
    argv: list[str], exit_code: int, message: str
) -> None:
    code, heavy, stderr = _probe(*argv)
    assert code == exit_code, stderr[-2000:]
    assert heavy == [], f"{' '.join(argv)} imported {heavy}"
    assert message in stderr
    assert "Traceback" not in stderr


def test_the_probe_sees_heavy_imports() -> None:
    # The same probe on a module that does need TFX: proves the check above can fail.
    code, heavy, _ = _probe("pipeline.pipeline")
    assert code == 0
    assert {"tfx", "tensorflow"} <= set(heavy)
