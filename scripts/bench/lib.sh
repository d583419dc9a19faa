# Shared by the benchmark scripts: installs what a benchmark needs (Debian packages, as
# root or with sudo), builds fedlb and fedlb-bench, and runs one benchmark.
#   FEDLB_BENCH_PROFILE=debug   build and run the debug profile (smoke.sh does: CI has it)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

# need_pkg COMMAND PACKAGE: installs PACKAGE unless COMMAND is already there
need_pkg() {
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ]; then
    echo "== installing Debian package $2 (for $1)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$2" >/dev/null \
      || { DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq && \
           DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }
  fi
}

# need_pdns: PowerDNS with its sqlite3 backend (failover-remote runs it beside fedlb)
need_pdns() {
  need_pkg pdns_server pdns-server
  need_pkg sqlite3 sqlite3
  [ -f /usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql ] \
    || need_pkg pdns-backend-sqlite3-is-missing pdns-backend-sqlite3
}

# run_bench NAME ARGS...: builds (once per shell) and runs fedlb-bench NAME ARGS...
run_bench() {
  local profile="${FEDLB_BENCH_PROFILE:-release}"
  local flag="--release"
  [ "$profile" = "release" ] || flag=""
  if [ -z "${FEDLB_BENCH_BUILT:-}" ]; then
    cargo build -q $flag -p fedlb -p fedlb-bench
    export FEDLB_BENCH_BUILT=1
  fi
  local target="${CARGO_TARGET_DIR:-target}"
  [ "$profile" = "release" ] && dir="$target/release" || dir="$target/debug"
  FEDLB_BIN="$dir/fedlb" "$dir/fedlb-bench" "$@"
}
