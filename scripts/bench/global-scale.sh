#!/usr/bin/env bash
# Benchmark 10: the global node at scale (1,000 real mTLS QUIC farm-node connections sending
# a summary a second each).
# Usage: scripts/bench/global-scale.sh [--smoke] [more: target/release/fedlb-bench global-scale --help]
source "$(dirname "$0")/lib.sh"
run_bench global-scale "$@"
