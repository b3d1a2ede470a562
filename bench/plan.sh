#!/usr/bin/env bash
# bench/plan.sh — `nixops plan` of N unchanged machines against the no-op
# deploys of the same run: bench/deploy.sh -p (see there; same options).
exec "$(dirname "${BASH_SOURCE[0]}")/deploy.sh" -p "$@"
