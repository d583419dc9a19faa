#!/usr/bin/env bash
# Benchmark 1: failover with remote probing (SIGKILL and SIGSTOP of the answered backend; T = 1 s and 200 ms),
# then side by side with PowerDNS 4.7 LUA records (ifurlup / ifportup) on the same backends and faults.
# Usage: scripts/bench/failover-remote.sh [--smoke] [--trials N] [--no-pdns] [more: target/release/fedlb-bench failover-remote --help]
source "$(dirname "$0")/lib.sh"
need_pdns
run_bench failover-remote "$@"
