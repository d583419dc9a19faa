#!/usr/bin/env bash
# Benchmark 8: DNS answer cost with dnsperf (embedded server and BIND) next to fedlb's UPDATE rate.
# Usage: scripts/bench/dns-qps.sh [--smoke] [--trials N] [more: target/release/fedlb-bench dns-qps --help]
source "$(dirname "$0")/lib.sh"
need_pkg named bind9
need_pkg dnsperf dnsperf
run_bench dns-qps "$@"
