#!/usr/bin/env bash
# Benchmark 9: cost of a fault (N backends behind one farm node; all up, one SIGKILLed, one
# SIGSTOPped; CPU, RSS, probes/s and TCP connects/s to the faulty backend against all-up).
# Connects/s are read from the machine's /proc/net/snmp: run it with nothing else busy.
# Usage: scripts/bench/fault-cost.sh [--smoke] [--servers N] [--seconds S] [more: target/release/fedlb-bench fault-cost --help]
source "$(dirname "$0")/lib.sh"
run_bench fault-cost "$@"
