#!/usr/bin/env bash
# Benchmark 2: failover with agents on the servers and crash detection on (one network namespace per server; needs root for ip netns, falls back to shared loopback).
# Usage: scripts/bench/failover-intrusive.sh [--smoke] [--trials N] [more: target/release/fedlb-bench failover-intrusive --help]
source "$(dirname "$0")/lib.sh"
need_pkg ip iproute2
run_bench failover-intrusive "$@"
