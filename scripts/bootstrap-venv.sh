#!/usr/bin/env bash
# Creates a venv for one stack and installs the project under that stack's fully pinned constraints.
#   scripts/bootstrap-venv.sh STACK VENV [--deps-only] [PYTHON]
# STACK: tfx-1.21 (Python 3.11-3.13) or tfx-1.16 (Python 3.10; TFX 1.16 declares ">=3.9,<3.11").
# --deps-only: install the project's dependencies but not the project (the shared venv inside the
#   Debian 13 root serves every clone; each clone's code comes first on PYTHONPATH instead).
# PYTHON: the interpreter to use (default: found by scripts/stack.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
stack=${1:?usage: bootstrap-venv.sh STACK VENV [--deps-only] [PYTHON]}
venv=${2:?usage: bootstrap-venv.sh STACK VENV [--deps-only] [PYTHON]}
deps_only=0
if [ "${3:-}" = --deps-only ]; then deps_only=1; shift; fi
constraints=$here/constraints/$stack.txt
[ -f "$constraints" ] || { echo "error: no constraints file $constraints for stack '$stack'" >&2; exit 1; }

# extras: kfp-kubernetes joins the main environment only where protobuf >= 4 (tfx-1.21).
case "$stack" in
  tfx-1.21) lo=11; hi=13; extras="dev,kfp-kubernetes" ;;
  tfx-1.16) lo=10; hi=10; extras="dev" ;;
esac
fits() { "$1" -c "import sys; raise SystemExit(not (sys.version_info[0] == 3 and $lo <= sys.version_info[1] <= $hi))" >/dev/null 2>&1; }

if [ -x "$venv/bin/python" ] && fits "$venv/bin/python"; then
  py="$venv/bin/python"
else
  base=${3:-}
  if [ -z "$base" ] && ! base=$(bash "$here/scripts/stack.sh" python "$stack"); then
    echo "error: no Python 3.$lo-3.$hi found for $stack." >&2
    echo "Install one (e.g. 'pyenv install 3.10.13', or the OS package python3.N with python3.N-venv)," >&2
    echo "or pick the other stack: STACK=tfx-1.21 / STACK=tfx-1.16." >&2
    exit 1
  fi
  fits "$base" || { echo "error: $base is not Python 3.$lo-3.$hi (needed by $stack)" >&2; exit 1; }
  echo "Creating $venv with $base ($("$base" -V 2>&1))"
  rm -rf "$venv"
  "$base" -m venv "$venv"
  py="$venv/bin/python"
fi
pip=("$py" -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install --upgrade -c "$constraints" pip setuptools wheel
echo "Installing $stack into $venv under constraints/$stack.txt (a few minutes on a fresh machine)"
if [ "$deps_only" = 1 ]; then
  # setup.py alone in an empty folder: its packages are not found, so what gets installed is
  # every install_requires/extra plus the project's metadata without its code (each clone puts
  # its own code first on PYTHONPATH); the metadata stays, so the package version is known
  # (push manifests and lineage record it: operations/lineage.code_provenance).
  meta=$(mktemp -d)
  trap 'rm -rf "$meta"' EXIT
  cp "$here/setup.py" "$here/pyproject.toml" "$meta/"
  "${pip[@]}" install -c "$constraints" "$meta[$extras]"
else
  "${pip[@]}" install -c "$constraints" -e "$here[$extras]"
fi
"${pip[@]}" check
