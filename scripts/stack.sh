#!/usr/bin/env bash
# Which stacks this host can run, and how: read by the Makefile (mk/stack.mk) and by people.
#   scripts/stack.sh default     the stack `make` uses when STACK is not set
#   scripts/stack.sh all         every stack this host can run (what `make test` runs)
#   scripts/stack.sh mode STACK  native | root (Debian 13 root, scripts/debian-root.sh) | none
#   scripts/stack.sh python STACK  the interpreter a native venv of STACK is made with
#   scripts/stack.sh explain     one line per stack saying whether and how it runs here
#
# tfx-1.21 (primary): TFX 1.21.0 on Python 3.11-3.13. Its ML-Metadata wheels are manylinux_2_39
#   (glibc >= 2.39, GCC 14's libstdc++) and TFDV's extension needs GLIBC_2.38, so an older host
#   runs it in a Debian 13 root (as root only: chroot and mounts).
# tfx-1.16 (compat, Python 3.10, end of life since October 2026): any glibc >= 2.17 host with a
#   Python 3.10 (OS package or pyenv).
set -euo pipefail

MIN_GLIBC_121="2.39"

glibc_version() { getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}'; }

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

python_is() {  # python_is PYTHON MIN_MINOR MAX_MINOR (Python 3.x)
  "$1" -c "import sys; raise SystemExit(not (sys.version_info[0] == 3 and $2 <= sys.version_info[1] <= $3))" \
    >/dev/null 2>&1
}

find_python() {  # find_python MIN_MINOR MAX_MINOR: newest python3.N on PATH or in pyenv
  local minor candidate root roots=()
  for minor in $(seq "$2" -1 "$1"); do
    if command -v "python3.$minor" >/dev/null 2>&1 && python_is "python3.$minor" "$1" "$2"; then
      command -v "python3.$minor"; return 0
    fi
  done
  # A pyenv shim exists but refuses to run unless its version is selected: look in pyenv itself.
  if command -v pyenv >/dev/null 2>&1; then roots+=("$(pyenv root)"); fi
  roots+=("${PYENV_ROOT:-$HOME/.pyenv}")
  for root in "${roots[@]}"; do
    for minor in $(seq "$2" -1 "$1"); do
      for candidate in $(ls -d "$root"/versions/3."$minor".*/bin/python3."$minor" 2>/dev/null | sort -V -r); do
        if python_is "$candidate" "$1" "$2"; then echo "$candidate"; return 0; fi
      done
    done
  done
  return 1
}

stack_python() {
  case "$1" in
    tfx-1.21) find_python 11 13 ;;
    tfx-1.16) find_python 10 10 ;;
    *) echo "unknown stack '$1' (known: tfx-1.21, tfx-1.16)" >&2; return 2 ;;
  esac
}

mode() {
  case "$1" in
    tfx-1.21)
      local glibc; glibc=$(glibc_version)
      if [ -n "$glibc" ] && version_ge "$glibc" "$MIN_GLIBC_121" && stack_python tfx-1.21 >/dev/null; then
        echo native
      elif [ "$(uname -s)" = Linux ] && [ "$(id -u)" = 0 ] \
        && { command -v debootstrap >/dev/null || command -v apt-get >/dev/null; }; then
        echo root
      else
        echo none
      fi ;;
    tfx-1.16)
      if stack_python tfx-1.16 >/dev/null; then echo native; else echo none; fi ;;
    *) echo "unknown stack '$1' (known: tfx-1.21, tfx-1.16)" >&2; return 2 ;;
  esac
}

case "${1:-explain}" in
  default)
    # The primary stack when it runs natively; else the compat stack natively; else the primary
    # stack in the Debian 13 root. A host that needs the root for 1.21 but has Python 3.10
    # defaults to 1.16 so `make run` needs no root build; `make test` still runs both.
    if [ "$(mode tfx-1.21)" = native ]; then echo tfx-1.21
    elif [ "$(mode tfx-1.16)" = native ]; then echo tfx-1.16
    elif [ "$(mode tfx-1.21)" = root ]; then echo tfx-1.21
    else echo none; fi ;;
  all)
    stacks=()
    for s in tfx-1.21 tfx-1.16; do [ "$(mode "$s")" != none ] && stacks+=("$s"); done
    echo "${stacks[*]}" ;;
  mode) mode "$2" ;;
  python) stack_python "$2" ;;
  explain)
    echo "glibc $(glibc_version); TFX 1.21 needs glibc >= $MIN_GLIBC_121 natively"
    for s in tfx-1.21 tfx-1.16; do
      case "$(mode "$s")" in
        native) echo "$s: native ($(stack_python "$s"))" ;;
        root) echo "$s: in a Debian 13 root (scripts/debian-root.sh; host glibc too old)" ;;
        none) echo "$s: cannot run here" ;;
      esac
    done ;;
  *) echo "usage: $0 default|all|mode STACK|python STACK|explain" >&2; exit 2 ;;
esac
