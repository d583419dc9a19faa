#!/usr/bin/env bash
# Benchmark 3: propagation overhead agent → farm → global → DNS UPDATE acknowledged (embedded server and BIND).
# Usage: scripts/bench/propagation.sh [--smoke] [--trials N] [more: target/release/fedlb-bench propagation --help]
source "$(dirname "$0")/lib.sh"
need_pkg named bind9
run_bench propagation "$@"
