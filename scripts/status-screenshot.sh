#!/usr/bin/env bash
# Remakes docs/status-page.png: the status page of the demo federation after a few things
# happened, as headless Chromium draws it.
#
#   scripts/status-screenshot.sh [OUT.png]
#
# Runs `fedlb up topologies/demo.toml` (all on 127.0.0.x: the demo's addresses must be
# free), sends some slow requests to eu-west's servers so that their load charts move, fails
# eu-1 (its clients move: a `health` change), then brings it back (it wins back after the
# dwell), and screenshots the global node's page at 1280×1600, then shrinks it to a
# palette PNG (scripts/png-palette.py). Needs chromium and python3. FEDLB_BIN: the binary
# to run (default: builds target/debug/fedlb).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/status-page.png}
status=http://127.0.0.1:7480

chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$chromium" ] || { echo "error: chromium is not installed (apt-get install -y chromium)" >&2; exit 1; }
if curl -s -o /dev/null --max-time 1 "$status/healthz"; then
  echo "error: something already answers on $status (a demo running?)" >&2
  exit 1
fi
bin=${FEDLB_BIN:-}
if [ -z "$bin" ]; then
  cargo build -q -p fedlb --bin fedlb
  bin=target/debug/fedlb
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" up topologies/demo.toml >"$work/up.log" 2>&1 &
pids+=($!)

wait_for() { # what, command…
  local what=$1; shift
  for _ in $(seq 1 120); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "error: timed out waiting for $what; fedlb up said:" >&2
  cat "$work/up.log" >&2
  exit 1
}
published() { curl -sf "$status/status" | grep -q '"result":"ok"'; }
wait_for "the demo to publish" published

# slow answers and a few clients at a time: requests pile up, the load charts move
for host in 11 12; do
  curl -sf -X POST "http://127.0.0.$host:8080/admin/latency?ms=200" >/dev/null
done
load() { # host, clients
  for _ in $(seq 1 "$2"); do
    ( while true; do curl -s -o /dev/null --max-time 5 "http://127.0.0.$1:8080/" || sleep 0.2; done ) &
    pids+=($!)
  done
}
load 11 10
load 12 5
sleep 40
echo "eu-1 fails"
curl -sf -X POST http://127.0.0.11:8080/admin/fail >/dev/null
sleep 15
echo "eu-1 recovers"
curl -sf -X POST http://127.0.0.11:8080/admin/recover >/dev/null
sleep 20

profile="$work/chromium-profile"
"$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
  --user-data-dir="$profile" --window-size=1280,1600 --screenshot="$work/page.png" \
  "$status/" >/dev/null 2>&1
# a palette PNG: about a third of the size, the same look
python3 scripts/png-palette.py "$work/page.png" "$out"
echo "wrote $out ($(stat -c %s "$out") bytes)"
