#!/usr/bin/env bash
# fedlb-core must stay sans-IO: no async runtime, no sockets, no DNS or QUIC stack.
# Fails if its normal (non-dev) dependency tree names any of them.
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='^(tokio|mio|quinn|quinn-proto|rustls|hickory-[a-z]+|socket2|axum|hyper|reqwest|async-std|smol|getrandom|libc)$'
deps=$(cargo tree -p fedlb-core -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u)
bad=$(grep -E "$forbidden" <<<"$deps" || true)
if [ -n "$bad" ]; then
  echo "check-core-purity: fedlb-core depends on I/O crates it must not use:" >&2
  sed 's/^/  /' <<<"$bad" >&2
  exit 1
fi
echo "check-core-purity: fedlb-core is sans-IO ($(wc -l <<<"$deps") crates in its tree, none forbidden)"
