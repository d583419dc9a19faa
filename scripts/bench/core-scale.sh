#!/usr/bin/env bash
# Benchmark 6: scale of fedlb-core in process (1,000 farms × 100 servers × 3 services).
# Usage: scripts/bench/core-scale.sh [--smoke] [--trials N] [more: target/release/fedlb-bench core-scale --help]
source "$(dirname "$0")/lib.sh"
run_bench core-scale "$@"
