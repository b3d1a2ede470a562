#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the stand-in nixpkgs' and test
# fleet's self-checks, and the integration tests against real sshd test
# hosts, real VMs (tests/vm.rs, through libvirt) and real Nix builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/offline-nix.sh
# nixpkgs' real lib for the stand-in nixpkgs (says which one it found).
bash tests/nixpkgs/link-lib.sh >/dev/null
bash tests/nixpkgs/check.sh
bash tests/fleet/selftest.sh
# (tests/vm/selftest.sh checks the VM foundation alone, by hand; tests/vm.rs
# starts libvirt itself and covers what it does.)
# One private PostgreSQL server for every test binary (each would otherwise
# start its own); stopped at the end, whatever happens.
pgdir=$(mktemp -d /tmp/nixops-pg.XXXXXX)
trap 'bash tests/postgres/server.sh stop "$pgdir"' EXIT
bash tests/postgres/server.sh start "$pgdir"
export NIXOPS_TEST_PG=$pgdir
cargo test --locked -- --test-threads="${NIXOPS_TEST_THREADS:-2}"
