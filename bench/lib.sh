# shellcheck shell=bash
# Shared by the benchmarks (sourced, not run).
#
# The test hosts share this machine's /root, and bash runs root's ~/.bashrc
# for every command sshd starts. If that file does expensive work (here:
# `pyenv init`, ~0.1 s of CPU per SSH session), it swamps what we measure.
# mask_bashrc re-executes the calling script in a private mount namespace
# where ~/.bashrc is masked by /dev/null (nothing on disk changes), and sets
# BASHRC_NOTE for the report. Call it as: mask_bashrc "$MASK_BASHRC" "${ARGS[@]}".
# shellcheck disable=SC2034 # BASHRC_NOTE is for the caller
mask_bashrc() {
  local mask=$1; shift
  ROOT_HOME=$(getent passwd "$(id -un)" | cut -d: -f6)
  BASHRC_NOTE="test hosts: root's ~/.bashrc as is"
  if ((mask)) && [[ -f $ROOT_HOME/.bashrc ]]; then
    if [[ -z ${NIXOPS_BENCH_NS:-} ]]; then
      export NIXOPS_BENCH_NS=1
      exec unshare --mount --propagation private -- "$BASH" "${BASH_SOURCE[1]}" "$@"
    fi
    mount --bind /dev/null "$ROOT_HOME/.bashrc"
    BASHRC_NOTE="test hosts: root's ~/.bashrc masked (empty) in a private mount namespace (-B: keep it)"
  fi
}

# build_colmena — builds Colmena from its source (COLMENA_SRC, default
# ../shared/peers/colmena beside the repository) with `cargo build --release`
# in a copy under the cache (NIXOPS_BENCH_CACHE, default
# ~/.cache/nixops-bench), unless the binary there was built from the same
# source; sets COLMENA to it. Needs crates.io. Needs REPO, log and die.
build_colmena() {
  local src=${COLMENA_SRC:-$REPO/../shared/peers/colmena}
  local cache=${NIXOPS_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nixops-bench}/colmena
  [[ -f $src/Cargo.toml ]] || die "no Colmena source at $src (set COLMENA_SRC, or COLMENA=/path/to/colmena, or COLMENA=none)"
  src=$(cd "$src" && pwd -P)
  local sum
  sum=$(cd "$src" && find . -path ./target -prune -o -path ./.git -prune -o -type f -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  COLMENA=$cache/target/release/colmena
  if [[ -x $COLMENA && $(cat "$cache/source.sha256" 2>/dev/null) == "$sum" ]]; then
    return 0
  fi
  log "building Colmena from $src in $cache (cargo build --release; a few minutes)"
  mkdir -p "$cache"
  rm -rf "$cache/src" "$cache/source.sha256"
  cp -r "$src" "$cache/src"
  chmod -R u+w "$cache/src"
  rm -rf "$cache/src/target"
  (cd "$cache/src" && CARGO_TARGET_DIR=$cache/target cargo build --release --locked --quiet) >&2 ||
    die "building Colmena failed"
  echo "$sum" > "$cache/source.sha256"
}

# resolve_tools — COLMENA (when set) and NIXOPS as executables, building
# this checkout (cargo build --release) when NIXOPS is unset. Needs REPO and
# the caller's log and die.
resolve_tools() {
  if [[ -n ${COLMENA:-} ]]; then
    COLMENA=$(command -v "$COLMENA" || true)
    [[ -x $COLMENA ]] || die "COLMENA=${COLMENA:-?} is not an executable"
  fi
  if [[ -z ${NIXOPS:-} ]]; then
    log "building nixops (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet) >&2
    NIXOPS=$REPO/target/release/nixops
  else
    NIXOPS=$(command -v "$NIXOPS" || true)
    [[ -x $NIXOPS ]] || die "NIXOPS=${NIXOPS:-?} is not an executable"
  fi
}
