#!/usr/bin/env bash
# The primary stack (TFX 1.21) on a host whose C library is too old for its wheels (glibc < 2.39):
# a Debian 13 root made once with debootstrap plus the stack's venv inside it, both cached OUTSIDE
# the clone so every clone (and CI's fresh one) reuses them, each rebuilt only when its inputs change.
#
#   scripts/debian-root.sh ensure        build the root and the venv if missing (prints what it does)
#   scripts/debian-root.sh ensure-root   build only the root
#   scripts/debian-root.sh exec CMD...   run CMD in the root, in the current directory, with the
#                                        project mounted at the same path and the venv first on PATH
#   scripts/debian-root.sh venv          print the venv's path (inside the root)
#   scripts/debian-root.sh root          print the root's path on the host
#
# Cache: $TFX_TAXI_CACHE (default /var/cache/tfx-taxi)/root-<key>, key = hash of the root recipe
# below (suite, packages, revision); the venv is <root>/opt/tfx-taxi/venv-<key>, key = hash of the
# root key, constraints/tfx-1.21.txt, setup.py and scripts/bootstrap-venv.sh. Builds take a lock
# and publish atomically (a complete marker, a rename), so concurrent or aborted runs are safe.
# Every mount is made in a private mount namespace (unshare) and disappears with the command, so
# nothing is left mounted however the command ends. Needs root (chroot, mounts) and Linux.
set -euo pipefail

project=$(cd "$(dirname "$0")/.." && pwd)
cache=${TFX_TAXI_CACHE:-/var/cache/tfx-taxi}

# --- The root recipe: change any of these and the root is rebuilt. -----------------------------
SUITE=trixie
# g++ and python3-dev: pyfarmhash (a TFX dependency) builds from source on Python 3.13.
# git: code_provenance() reads the commit of the checkout.
PACKAGES="python3,python3-venv,python3-dev,g++,git,ca-certificates"
ROOT_REVISION=1
# ------------------------------------------------------------------------------------------------

hash_text() { sha256sum | cut -c1-12; }
root_key=$(printf '%s\n' "$SUITE" "$PACKAGES" "$ROOT_REVISION" | hash_text)
root=$cache/root-$root_key
venv_inputs=("$project/constraints/tfx-1.21.txt" "$project/setup.py" "$project/scripts/bootstrap-venv.sh")
for input in "${venv_inputs[@]}"; do
  [ -f "$input" ] || { echo "debian-root: missing $input" >&2; exit 1; }
done
venv_key=$( { echo "$root_key"; cat "${venv_inputs[@]}"; } | hash_text)
venv=/opt/tfx-taxi/venv-$venv_key
COMPLETE=.tfx-taxi-complete

die() { echo "debian-root: $*" >&2; exit 1; }

need_root() {
  [ "$(uname -s)" = Linux ] || die "needs Linux (debootstrap, chroot), this is $(uname -s)"
  [ "$(id -u)" = 0 ] || die "needs root for debootstrap, chroot and bind mounts; run as root or use STACK=tfx-1.16"
}

# The Debian mirror the host's apt sources name (deb822 or one-line format), else deb.debian.org.
host_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^URIs:/ {print $2}' | grep -E '/debian/?$' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^(https?|ftp):/) {print $i; break}}' \
      | grep -E '/debian/?$' | head -n1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# Runs "$@" on the host with the root's pseudo file systems, the project, the git directory of a
# worktree, /tmp and the pip cache mounted, in a private mount namespace.
in_namespace() {
  local target=$1; shift
  local gitdir
  gitdir=$(git -C "$project" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
  mkdir -p "$cache/pip"
  PROJECT="$project" GITDIR="$gitdir" PIPCACHE="$cache/pip" R="$target" \
    NODE="$(command -v node 2>/dev/null || true)" \
    unshare --mount --propagation private -- bash -euo pipefail -c '
      # The root a mount point of its own: inside it `unshare --mount` (the emulated KFP backend
      # gives each step a namespace) needs / to be one to make its propagation private.
      mount --bind "$R" "$R"
      mount --rbind /dev "$R/dev"
      mount -t proc proc "$R/proc"
      mount --rbind /sys "$R/sys"
      mount --bind /tmp "$R/tmp"
      mkdir -p "$R/root/.cache/pip" && mount --bind "$PIPCACHE" "$R/root/.cache/pip"
      cp /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null || true
      # The host names too: Beam job services advertise their endpoints by this host name,
      # which the workers they start inside the root must resolve (tests/pipeline/test_beam_runners).
      if [ -f /etc/hosts ] && [ -f "$R/etc/hosts" ]; then
        mount --bind /etc/hosts "$R/etc/hosts"
      fi
      # The host trusts what it trusts (a site CA, a TLS-inspecting proxy): so does the root.
      if [ -f /etc/ssl/certs/ca-certificates.crt ] && [ -f "$R/etc/ssl/certs/ca-certificates.crt" ]; then
        mount --bind /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/ca-certificates.crt"
      fi
      bind_same_path() {
        case "$1" in /tmp/*) return 0 ;; esac  # already visible through /tmp
        mkdir -p "$R$1" && mount --bind "$1" "$R$1"
      }
      bind_same_path "$PROJECT"
      case "$GITDIR" in ""|"$PROJECT"/*) ;; *) bind_same_path "$GITDIR" ;; esac
      # The host'"'"'s Node (a self-contained binary needing only libc and libstdc++, both in the
      # root) renders the Markdown reports as the KFP UI does (tests/support/markdown_render.py).
      # (The empty file left in the root is only a mount point.)
      if [ -n "$NODE" ]; then
        [ -e "$R/usr/local/bin/node" ] || touch "$R/usr/local/bin/node"
        mount --bind -o ro "$NODE" "$R/usr/local/bin/node"
      fi
      "$@"
    ' in-namespace "$@"
}

# Runs "$@" inside the root, in directory $1, with a clean PATH (venv first) and the project on
# PYTHONPATH: the venv holds the dependencies only, so every clone runs its own code.
in_root() {
  local dir=$1; shift
  in_namespace "$root" chroot "$root" /usr/bin/env -u PIP_FIND_LINKS -u PIP_CONFIG_FILE \
    PATH="$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    PYTHONPATH="$project${PYTHONPATH:+:$PYTHONPATH}" HOME=/root \
    /bin/bash -c 'cd "$1" && shift && exec "$@"' in-root "$dir" "$@"
}

ensure_root() {
  [ -f "$root/$COMPLETE" ] && return 0
  need_root
  mkdir -p "$cache"
  exec 8>"$cache/root-$root_key.lock"
  flock 8
  if [ -f "$root/$COMPLETE" ]; then exec 8>&-; return 0; fi
  if ! command -v debootstrap >/dev/null; then
    echo "debian-root: installing debootstrap on the host (apt-get)"
    apt-get install -y -q debootstrap >/dev/null
  fi
  local mirror start
  mirror=$(host_mirror)
  start=$(date +%s)
  echo "debian-root: building a Debian 13 ($SUITE) root in $root from $mirror (once; a few minutes)"
  # A previous run that was killed leaves a partial tree: --one-file-system keeps rm out of any
  # mount (there are none outside a namespace, but be safe).
  rm -rf --one-file-system "$root.partial" "$root"
  mkdir -p "$root.partial"
  # debootstrap mounts /proc and /sys in the target itself: a private namespace drops them.
  unshare --mount --propagation private -- \
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root.partial" "$mirror" \
    > "$cache/root-$root_key.log" 2>&1 \
    || die "debootstrap failed; see $cache/root-$root_key.log"
  touch "$root.partial/$COMPLETE"
  mv "$root.partial" "$root"
  echo "debian-root: root ready in $(( $(date +%s) - start ))s ($(chroot "$root" python3 -V))"
  exec 8>&-
}

ensure_venv() {
  [ -f "$root$venv/$COMPLETE" ] && return 0
  need_root
  exec 9>"$cache/venv-$venv_key.lock"
  flock 9
  if [ -f "$root$venv/$COMPLETE" ]; then exec 9>&-; return 0; fi
  local start
  start=$(date +%s)
  echo "debian-root: installing the tfx-1.21 venv in the root at $venv (once per constraints/setup.py; minutes)"
  rm -rf --one-file-system "$root$venv"
  in_root "$project" bash "$project/scripts/bootstrap-venv.sh" tfx-1.21 "$venv" --deps-only python3
  touch "$root$venv/$COMPLETE"
  echo "debian-root: venv ready in $(( $(date +%s) - start ))s, $(du -sh "$root$venv" | cut -f1)"
  # Venvs of older constraints in this root: nobody can select them any more (their inputs
  # changed), but a concurrent run might still be using one, so only remove those idle a day.
  find "$root/opt/tfx-taxi" -mindepth 1 -maxdepth 1 -name 'venv-*' ! -path "$root$venv" \
    -mmin +1440 -exec rm -rf --one-file-system {} + 2>/dev/null || true
  exec 9>&-
}

case "${1:-}" in
  ensure) ensure_root; ensure_venv ;;
  ensure-root) ensure_root ;;
  exec)
    shift
    [ $# -gt 0 ] || die "exec needs a command"
    [ -f "$root/$COMPLETE" ] && [ -f "$root$venv/$COMPLETE" ] \
      || die "the root or its venv is missing: run 'scripts/debian-root.sh ensure' (make venv STACK=tfx-1.21)"
    need_root
    in_root "$PWD" "$@" ;;
  venv) echo "$venv" ;;
  root) echo "$root" ;;
  *) echo "usage: $0 ensure | exec CMD... | venv | root" >&2; exit 2 ;;
esac
