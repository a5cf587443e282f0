#!/usr/bin/env bash
# Creates .venv with Python 3.10 and installs the project under the pinned constraints.
# Python 3.10 is required: TFX 1.16 declares python_requires ">=3.9,<3.11".
set -euo pipefail
venv="${1:-.venv}"

is_py310() { "$@" -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }

find_python() {
  if command -v python3.10 >/dev/null 2>&1 && is_py310 python3.10; then
    command -v python3.10; return 0
  fi
  # pyenv's shim exists but refuses to run unless 3.10 is selected: ask pyenv directly.
  local roots=()
  if command -v pyenv >/dev/null 2>&1; then roots+=("$(pyenv root)"); fi
  roots+=("${PYENV_ROOT:-$HOME/.pyenv}")
  local root candidate
  for root in "${roots[@]}"; do
    for candidate in $(ls -d "$root"/versions/3.10.*/bin/python3.10 2>/dev/null | sort -V -r); do
      if is_py310 "$candidate"; then echo "$candidate"; return 0; fi
    done
  done
  return 1
}

if [ -x "$venv/bin/python" ] && is_py310 "$venv/bin/python"; then
  py="$venv/bin/python"
else
  if ! base=$(find_python); then
    echo "error: Python 3.10 not found (TFX 1.16 supports Python >=3.9,<3.11)." >&2
    echo "Install it, e.g. 'pyenv install 3.10.13' or your OS package 'python3.10' with 'python3.10-venv'," >&2
    echo "then run make again." >&2
    exit 1
  fi
  echo "Creating $venv with $base"
  rm -rf "$venv"
  "$base" -m venv "$venv"
  py="$venv/bin/python"
fi
"$py" -m pip install --quiet --disable-pip-version-check --upgrade "pip==24.3.1" "setuptools==75.6.0" "wheel==0.45.1"
echo "Installing the project into $venv under constraints.txt (a few minutes on a fresh machine)"
"$py" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
