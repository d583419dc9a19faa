#!/usr/bin/env bash
# Smoke mode of every benchmark, for .ci/run: each runs for seconds and must write a result
# with numbers in it. Asserts only that they ran, never a speed. Uses the debug build that
# the tests already compiled (FEDLB_BENCH_PROFILE=release to override).
source "$(dirname "$0")/lib.sh"
export FEDLB_BENCH_PROFILE="${FEDLB_BENCH_PROFILE:-debug}"
need_pkg ip iproute2
need_pkg named bind9
need_pkg dnsperf dnsperf
need_pdns
out="${FEDLB_BENCH_OUT:-${CARGO_TARGET_DIR:-target}/bench}/smoke"
export FEDLB_BENCH_OUT="$out"
rm -rf "$out"; mkdir -p "$(dirname "$out")"
start=$(date +%s)
benches="failover-remote failover-intrusive propagation farm-failover ingest core-scale agent-footprint dns-qps dns-regions fault-cost global-scale"
for b in $benches; do
  t=$(date +%s)
  run_bench "$b" --smoke >"$out.$b.log" 2>&1 || { echo "smoke: $b failed:"; tail -30 "$out.$b.log"; exit 1; }
  echo "smoke: $b ran in $(( $(date +%s) - t )) s"
done
files=""
for b in $benches; do files="$files $out/$b.json"; done
run_bench check $files
echo "smoke: all benchmarks ran in $(( $(date +%s) - start )) s"
