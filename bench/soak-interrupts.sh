#!/usr/bin/env bash
# Soak test of interrupted deploys: many rounds of deploys killed (SIGKILL)
# or interrupted (SIGINT) at pseudo-random moments, from evaluation to the
# wait for the confirmation, each followed by a good deploy; once every
# guard's deadline has passed, the test host must run and boot that last
# good deploy, and the state must say so. The test suite runs the same test
# with 3 rounds (tests/interrupts.rs).
#
#   bash bench/soak-interrupts.sh [ROUNDS]     # default 30 (about 15 s a round)
#   NIXOPS_SOAK_SEED=N bash bench/soak-interrupts.sh   # replay the moments of a run
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-30}
bash scripts/install-deps.sh
source scripts/offline-nix.sh
export NIXOPS_SOAK_ITERATIONS=$rounds
exec cargo test --locked --test interrupts interrupts_at_random_moments_then_a_good_deploy -- --nocapture
