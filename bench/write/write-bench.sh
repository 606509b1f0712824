#!/usr/bin/env bash
# write-bench.sh — commands/s and latency of the command path through the gateway.
#
# Starts escqrs-command-service (account) and escqrs-gateway against the test
# stack under a fresh topic prefix, then runs bench/write/write_load at a few load
# levels: closed loop with 1, 8, 32 and 128 clients (the most the path sustains),
# then open loop at fixed rates.  Prints one line per level.
#
#   bench/write/write-bench.sh [build-dir]      (needs the test stack running)
#
# Environment: BOOTSTRAP, REGISTRY, DURATION (s per level, default 10),
# RATES (default "250 500 1000"), EXTRA_CS / EXTRA_GW (more --set flags).
set -euo pipefail
BUILD=${1:-build}
BOOTSTRAP=${BOOTSTRAP:-127.0.0.1:19092}
REGISTRY=${REGISTRY:-http://127.0.0.1:18081/apis/ccompat/v7}
DURATION=${DURATION:-10}
RATES=${RATES:-250 500 1000}
PREFIX="bench-$$-$(date +%s)-"
DIR=$(mktemp -d /tmp/escqrs-bench.XXXXXX)
CS_PORT=$((20000 + RANDOM % 5000))
GW_PORT=$((CS_PORT + 1))
common=(--set kafka.bootstrap.servers="$BOOTSTRAP" --set registry.url="$REGISTRY"
        --set aggregate.prefix="$PREFIX" --set topics.create=true)

"$BUILD"/producers/command-service/escqrs-command-service "${common[@]}" --set aggregate=account \
  --set store.path="$DIR/store" --set http.listen=127.0.0.1:$CS_PORT ${EXTRA_CS:-} 2>"$DIR/cs.log" &
CS=$!
"$BUILD"/producers/gateway/escqrs-gateway "${common[@]}" --set aggregates=account \
  --set http.listen=127.0.0.1:$GW_PORT ${EXTRA_GW:-} 2>"$DIR/gw.log" &
GW=$!
trap 'kill $GW $CS 2>/dev/null; wait $GW $CS 2>/dev/null || true' EXIT
for port in $CS_PORT $GW_PORT; do
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.1
  done
done
echo "# escqrs write path: account deposits via gateway :$GW_PORT, logs in $DIR"
echo "# $(nproc) cores shared with the broker and registry; ${DURATION}s per level"
LOAD="$BUILD/bench/write/write_load"
for c in 1 8 32 128; do
  "$LOAD" -u "http://127.0.0.1:$GW_PORT" -c "$c" -d "$DURATION" -a 1000 -p acct
done
for r in $RATES; do
  "$LOAD" -u "http://127.0.0.1:$GW_PORT" -c 64 -d "$DURATION" -r "$r" -a 1000 -p acct
done
curl -s "http://127.0.0.1:$CS_PORT/metrics" |
  grep -E '^escqrs_(batch_commands|transaction_commit_seconds)_(sum|count)' | sed 's/^/# /'
