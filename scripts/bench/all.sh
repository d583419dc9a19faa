#!/usr/bin/env bash
# Every benchmark, one after the other (about 25 minutes on 2 cores); results in
# target/bench/*.json. Extra arguments go to every benchmark (e.g. --smoke).
source "$(dirname "$0")/lib.sh"
need_pkg ip iproute2
need_pkg named bind9
need_pkg dnsperf dnsperf
need_pdns
for b in failover-remote failover-intrusive propagation farm-failover ingest core-scale agent-footprint dns-qps dns-regions fault-cost global-scale; do
  "scripts/bench/$b.sh" "$@"
  echo
done
