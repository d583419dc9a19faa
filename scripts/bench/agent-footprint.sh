#!/usr/bin/env bash
# Benchmark 7: agent footprint (5 probes at 1/s; RSS and CPU over a minute).
# Usage: scripts/bench/agent-footprint.sh [--smoke] [--trials N] [more: target/release/fedlb-bench agent-footprint --help]
source "$(dirname "$0")/lib.sh"
run_bench agent-footprint "$@"
