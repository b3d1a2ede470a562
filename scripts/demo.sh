#!/usr/bin/env bash
# The demo: starts two local test hosts, then creates and deploys the
# user's example network (demo/network-staging.nix) with the real nixops
# binary, shows `nixops info` and what the hosts now run, and leaves it all
# up to try more commands. `bash scripts/demo.sh down` stops the hosts and
# removes everything the demo made.
#
# The test hosts are sshd processes on 127.0.0.1 in private mount
# namespaces (tests/fleet/fleet.sh); the machines run a stand-in NixOS
# (tests/nixpkgs) since there is no real NixOS here.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# One place, so that `down` (and a second run) find what the first made.
demo=${NIXOPS_DEMO_DIR:-/tmp/nixops-demo}

down() {
  if [[ -d $demo ]]; then
    bash "$repo/tests/fleet/fleet.sh" stop "$demo/fleet" >/dev/null 2>&1 || true
    rm -rf "$demo"
    echo "demo stopped; $demo removed"
  fi
}

if [[ ${1:-} == down ]]; then
  down
  exit 0
fi
[[ $# -eq 0 ]] || { echo "usage: bash scripts/demo.sh [down]" >&2; exit 2; }

bash scripts/install-deps.sh
source scripts/offline-nix.sh
bash tests/nixpkgs/link-lib.sh >/dev/null
if [[ ! -x target/release/nixops ]]; then
  echo "== building nixops (the first time takes a few minutes; cargo shows its progress)"
fi
cargo build --release --locked
# A demo left up by an earlier run is replaced.
down >/dev/null
mkdir -p "$demo"
fleet="$demo/fleet"
failed() { echo "the demo failed; 'bash scripts/demo.sh down' cleans up" >&2; }
trap failed ERR

echo "== starting test hosts proxy.example.com and git.example.com"
bash tests/fleet/fleet.sh start "$fleet" proxy.example.com git.example.com >/dev/null
# The network in a directory of its own, as in a project: the hosts' files
# beside it would change between commands, which the evaluation cache must
# count as a possible input.
mkdir "$demo/network"
cp demo/*.nix "$demo/network/"
# What a shell needs to run nixops against the demo: the state, the
# stand-in nixpkgs, and ssh's configuration that maps the two names to the
# hosts (fleet.sh run).
cat >"$demo/env.sh" <<EOF
export NIXOPS_STATE='$demo/state.nixops' NIX_PATH='nixpkgs=$repo/tests/nixpkgs'
source '$repo/scripts/offline-nix.sh'
nixops() { bash '$repo/tests/fleet/fleet.sh' run '$fleet' -- '$repo/target/release/nixops' "\$@"; }
cd '$demo/network'
EOF
# shellcheck disable=SC1091
source "$demo/env.sh"
run() { echo; echo "\$ nixops $*"; nixops "$@"; }

run create network-staging.nix -d staging
run deploy -d staging
run info -d staging
echo
echo "== what the hosts run now"
for h in proxy.example.com git.example.com; do
  bash "$repo/tests/fleet/fleet.sh" exec "$fleet" "$h" -- sh -c \
    'echo "$0: /run/current-system -> $(readlink /run/current-system)"
     grep -o "\"hostName\":\"[^\"]*\"\|\"proxyPass\":\"[^\"]*\"\|\"forgejo\":{[^}]*}" /run/current-system/config.json | sed "s/^/    /"' "$h"
done
echo
echo "== the same deploy again: nothing to evaluate or build, the systems activated again"
run deploy -d staging

cat <<EOF

== the demo is up: two hosts and the deployment 'staging'. Try:

  source $demo/env.sh         # nixops, state and ssh names for this shell
  nixops info -d staging
  nixops plan -d staging      # what a deploy would change (edit network-staging.nix first)
  nixops ssh -d staging proxy.example.com
  nixops check -d staging
  nixops history -d staging

When done:  bash scripts/demo.sh down
EOF
