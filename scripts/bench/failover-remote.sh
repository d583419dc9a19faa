#!/usr/bin/env bash
# Benchmark 1: failover with remote probing (SIGKILL and SIGSTOP of the answered backend; T = 1 s and 200 ms).
# Usage: scripts/bench/failover-remote.sh [--smoke] [--trials N] [more: target/release/fedlb-bench failover-remote --help]
source "$(dirname "$0")/lib.sh"
run_bench failover-remote "$@"
