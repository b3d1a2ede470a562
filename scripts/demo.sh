#!/usr/bin/env bash
# The demo: starts two local test hosts, then creates and deploys the
# user's example network (demo/network-staging.nix) with the real nixops
# binary, and shows `nixops info` and what the hosts now run.
#
# The test hosts are sshd processes on 127.0.0.1 in private mount
# namespaces (tests/fleet/fleet.sh); the machines run a stand-in NixOS
# (tests/nixpkgs) since there is no real NixOS here.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bash scripts/install-deps.sh
source scripts/offline-nix.sh
bash tests/nixpkgs/link-lib.sh >/dev/null  # says which lib
cargo build --release --locked -q
fleet=$(mktemp -d /tmp/nixops-demo.XXXXXX)
cleanup() { bash "$repo/tests/fleet/fleet.sh" stop "$fleet" >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "== starting test hosts proxy.example.com and git.example.com"
bash tests/fleet/fleet.sh start "$fleet" proxy.example.com git.example.com >/dev/null
# The network in a directory of its own, as in a project: the hosts' files
# beside it would change between commands, which the evaluation cache must
# count as a possible input.
mkdir "$fleet/network"
cp demo/*.nix "$fleet/network/"
export NIXOPS_STATE="$fleet/state.nixops" NIX_PATH="nixpkgs=$repo/tests/nixpkgs"
# Run nixops as a user whose ~/.ssh/config maps the two names to the hosts.
nixops() { bash "$repo/tests/fleet/fleet.sh" run "$fleet" -- "$repo/target/release/nixops" "$@"; }
cd "$fleet/network"
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
run deploy -d staging
nixops delete -d staging --force >/dev/null
