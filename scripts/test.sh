#!/usr/bin/env bash
# The whole test suite: what a newcomer runs, and what CI runs (via .ci/run).
# Tests that need real DNS servers (BIND, Knot, PowerDNS) skip with a loud message when
# the server is not installed, except under CI=true, where a missing server fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/check-core-purity.sh
# benchmark binaries run as tests in their quick smoke mode (they assert they ran, not speed)
export FEDLB_BENCH_QUICK=1
cargo test --workspace --all-targets "$@"
