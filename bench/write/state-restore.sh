#!/usr/bin/env bash
# state-restore.sh — command-service cold start with an empty local store, at
# 1 M and 10 M events of history: replaying <agg>.events (before) against
# restoring from <agg>.state (after), same run, same topics.
#
#   bench/write/state-restore.sh [build-dir] [events...]   (default: build 1000000 10000000)
#
# For each history size, under a fresh topic prefix:
#   1. escqrs-bench-state-history writes N account events over ACCOUNTS
#      accounts (default 10 000: the history grows deeper, not wider) straight
#      to <prefix>account.events (state_history.c says why that is equivalent);
#      <prefix>account.state exists and is empty, as for topics made before it;
#   2. before: escqrs-command-service with an empty store.  The state partitions
#      hold no baseline marker, so it replays <agg>.events from offset 0 — today's
#      path, plus one empty read of each state partition.  Once it has answered
#      the first command and is idle, it writes the baseline of every state
#      partition itself (one real record per account, then the marker: the form
#      compaction leaves); the script waits for it, untimed;
#   3. after: an empty store again: it restores from the state topic and catches
#      up the events after it.
# Timed in 2 and 3, from the process start: /readyz 200, and the first command
# (a deposit through a gateway started beforehand, retried while it is 503)
# answered 200.  Prints `RESULT phase=cold_start ...` lines and the ratios;
# `grep 'poll interval'` in the logs shows whether a catch-up outlived
# max.poll.interval.ms (300 s) inside the rebalance callback.
#
# Environment: BOOTSTRAP, REGISTRY, ACCOUNTS.
set -euo pipefail
BUILD=${1:-build}
shift || true
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000000 10000000)
BOOTSTRAP=${BOOTSTRAP:-127.0.0.1:19092}
REGISTRY=${REGISTRY:-http://127.0.0.1:18081/apis/ccompat/v7}
ACCOUNTS=${ACCOUNTS:-10000}
DIR=$(mktemp -d /tmp/escqrs-state-bench.XXXXXX)
CS=
GW=
trap 'kill $CS $GW 2>/dev/null || true; wait $CS $GW 2>/dev/null || true' EXIT

now_ms() { date +%s%3N; }

# start_service LABEL PREFIX PORT [--set ...]: an empty store, the log in $DIR/LABEL.log
start_service() {
  local label=$1 prefix=$2 port=$3
  shift 3
  rm -rf "$DIR/store"
  "$BUILD"/producers/command-service/escqrs-command-service \
    --set kafka.bootstrap.servers="$BOOTSTRAP" --set registry.url="$REGISTRY" \
    --set aggregate.prefix="$prefix" --set aggregate=account --set store.path="$DIR/store" \
    --set http.listen=127.0.0.1:$port "$@" 2>"$DIR/$label.log" &
  CS=$!
}

stop_service() {
  kill $CS 2>/dev/null || true
  wait $CS 2>/dev/null || true
  CS=
}

# timed LABEL PREFIX N [--set ...]: start, then the times to /readyz and to a first 200
timed() {
  local label=$1 prefix=$2 n=$3
  shift 3
  local port=$((20000 + RANDOM % 5000)) t0 ready first key
  key="first-$label-$RANDOM"
  t0=$(now_ms)
  start_service "$label" "$prefix" $port "$@"
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.05; done
  ready=$(($(now_ms) - t0))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -XPOST -H "Idempotency-Key: $key" \
    -d '{"amount_cents":1}' "http://127.0.0.1:$GW_PORT/v1/accounts/acct-1/deposit")" = 200 ]; do
    sleep 0.05
  done
  first=$(($(now_ms) - t0))
  local rss caught restored
  rss=$(awk '/VmHWM/ {print $2}' /proc/$CS/status)
  caught=$(curl -s "http://127.0.0.1:$port/metrics" |
    awk '$1 == "escqrs_command_service_catchup_events_total" {print $2}')
  restored=$(curl -s "http://127.0.0.1:$port/metrics" |
    awk '$1 == "escqrs_command_service_restored_states_total" {print $2}')
  [ "$label" = replay ] || stop_service
  echo "RESULT phase=cold_start path=$label events=$n ready_ms=$ready first_command_ms=$first" \
    "events_caught_up=$caught states_restored=$restored peak_rss_kb=$rss"
  eval "${label}_$n=$first"
}

for n in "${SIZES[@]}"; do
  prefix="sr-$$-$n-"
  "$BUILD"/bench/write/escqrs-bench-state-history --prefix "$prefix" --events "$n" \
    --accounts "$ACCOUNTS"
  GW_PORT=$((25000 + RANDOM % 5000))
  "$BUILD"/producers/gateway/escqrs-gateway --set kafka.bootstrap.servers="$BOOTSTRAP" \
    --set registry.url="$REGISTRY" --set aggregate.prefix="$prefix" --set aggregates=account \
    --set request.timeout.ms=2000 --set http.listen=127.0.0.1:$GW_PORT 2>"$DIR/gw-$n.log" &
  GW=$!
  until curl -sf "http://127.0.0.1:$GW_PORT/healthz" >/dev/null; do sleep 0.1; done

  timed replay "$prefix" "$n"
  # the service wrote the baseline once idle, after the first command (not timed)
  for _ in $(seq 1 600); do
    [ "$(grep -c '"baseline of ' "$DIR/replay.log" || true)" -ge 3 ] && break
    sleep 0.5
  done
  stop_service
  grep -h '"baseline of \|"restored \|"caught up \|poll interval' "$DIR/replay.log" |
    sed 's/^/  /' >&2
  cp "$DIR/replay.log" "$DIR/replay-$n.log"

  timed restore "$prefix" "$n"
  grep -h '"restored \|"caught up \|poll interval' "$DIR/restore.log" | sed 's/^/  /' >&2
  cp "$DIR/restore.log" "$DIR/restore-$n.log"
  kill $GW 2>/dev/null || true
  wait $GW 2>/dev/null || true
  GW=
done

if [ ${#SIZES[@]} -ge 2 ]; then
  small=${SIZES[0]} large=${SIZES[-1]}
  for path in replay restore; do
    a=$(eval echo "\$${path}_$small") b=$(eval echo "\$${path}_$large")
    awk -v p=$path -v a="$a" -v b="$b" -v s=$small -v l=$large 'BEGIN {
      printf "RESULT phase=ratio path=%s first_command_ms_%d=%d first_command_ms_%d=%d ratio=%.2f\n",
             p, s, a, l, b, b / a }'
  done
fi
echo "logs in $DIR" >&2
