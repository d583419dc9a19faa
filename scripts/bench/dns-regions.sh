#!/usr/bin/env bash
# Benchmark 8b: the embedded server's answer cost with regions (3 views, 42 prefixes) against
# none, plain and with EDNS Client Subnet, measured with dnsperf; prints medians and ratios.
# Usage: scripts/bench/dns-regions.sh [--smoke] [--trials N] [more: target/release/fedlb-bench dns-regions --help]
source "$(dirname "$0")/lib.sh"
need_pkg dnsperf dnsperf
run_bench dns-regions "$@"
