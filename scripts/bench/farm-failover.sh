#!/usr/bin/env bash
# Benchmark 4: farm failover (the answered farm's node is SIGKILLed; the answer must move to the next farm).
# Usage: scripts/bench/farm-failover.sh [--smoke] [--trials N] [more: target/release/fedlb-bench farm-failover --help]
source "$(dirname "$0")/lib.sh"
run_bench farm-failover "$@"
