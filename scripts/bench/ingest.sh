#!/usr/bin/env bash
# Benchmark 5: ingest (N = 1,000 and 10,000 real mTLS QUIC agents on one farm node), then a
# restart of the farm node (every agent reconnects at once; --no-restart skips it).
# Usage: scripts/bench/ingest.sh [--smoke] [--trials N] [more: target/release/fedlb-bench ingest --help]
source "$(dirname "$0")/lib.sh"
run_bench ingest "$@"
