#!/usr/bin/env bash
# librdkafka-bench.sh — the projector's rebuild benchmark on two librdkafka builds
# and two prefetch settings, alternated in one run (issue #17: is Debian 12's 2.0.2
# the limit?).  Results: bench/results/2026-12-01-librdkafka.md.
#
#   bench/read/librdkafka-bench.sh SYS_BUILD NEW_BUILD [SIZE]   (test stack running)
#
# SYS_BUILD is built against the system's librdkafka, NEW_BUILD with
# -DESCQRS_RDKAFKA_PREFIX=...  Per round (ROUNDS, default 3), in this order:
#   sys        SYS_BUILD, the projector's defaults (queued.min.messages=1000000,
#              queued.max.messages.kbytes=65536: prefetch past 2.0's 1 s back-off)
#   new        NEW_BUILD, the same defaults (fetch.queue.backoff.ms stays 1000)
#   new-small  NEW_BUILD, librdkafka's own queued.min.messages (100000), a small
#              prefetch (PREFETCH_KB, default 8192 KiB),
#              fetch.queue.backoff.ms=$BACKOFF_MS (default 10)
#   sys-small  SYS_BUILD, the same small prefetch (2.0 has no back-off setting)
# VARIANTS picks a subset.  Each is one escqrs-bench-rebuild (kcat ceiling with the
# system's kcat, initial build, blue/green rebuild, CPU s, peak RSS) over
# bench-SIZE.cart.events, projection cart_view; settings reach the projector
# through ESCQRS_KAFKA_* variables.  Also per round: kcat once more with the new
# library (LD_LIBRARY_PATH), as the new transport's own ceiling.
# Prints `RESULT variant=... ` lines (bench_rebuild's, prefixed) to stdout.
set -euo pipefail
SYS=${1:?system build dir}
NEW=${2:?new librdkafka build dir}
SIZE=${3:-1000000}
ROUNDS=${ROUNDS:-3}
BACKOFF_MS=${BACKOFF_MS:-10}
PREFETCH_KB=${PREFETCH_KB:-8192}
VARIANTS=${VARIANTS:-sys new new-small sys-small}
BOOTSTRAP=${ESCQRS_TEST_BOOTSTRAP:-127.0.0.1:19092}
export ESCQRS_TEST_BOOTSTRAP=$BOOTSTRAP
export ESCQRS_TEST_REGISTRY=${ESCQRS_TEST_REGISTRY:-http://127.0.0.1:18081/apis/ccompat/v7}
topic=bench-$SIZE.cart.events
newlib=$(ldd "$NEW/consumers/projector/escqrs-projector" | awk '/librdkafka.so/{print $3}')

small=(ESCQRS_KAFKA_QUEUED_MIN_MESSAGES=100000 ESCQRS_KAFKA_QUEUED_MAX_MESSAGES_KBYTES=$PREFETCH_KB)
one() { # variant build env...
  local v=$1 b=$2 pk=65536
  case $v in *-small) pk=$PREFETCH_KB ;; esac
  shift 2
  env "$@" "$b/bench/read/escqrs-bench-rebuild" --events "$SIZE" --topic-prefix "bench-$SIZE" \
    --projector "$b/consumers/projector/escqrs-projector" --projection cart_view 2>&1 |
    grep '^RESULT' | sed "s/^RESULT /RESULT round=$r variant=$v size=$SIZE prefetch_kb=$pk /"
}

echo "# $(date -u +%FT%TZ) SIZE=$SIZE ROUNDS=$ROUNDS BACKOFF_MS=$BACKOFF_MS PREFETCH_KB=$PREFETCH_KB"
echo "# sys: $(ldd "$SYS/consumers/projector/escqrs-projector" | awk '/librdkafka.so/{print $3}')"
echo "# new: $newlib"
for r in $(seq 1 "$ROUNDS"); do
  for v in $VARIANTS; do
    case $v in
      sys) one sys "$SYS" ;;
      new) one new "$NEW" ;;
      new-small) one new-small "$NEW" "${small[@]}" ESCQRS_KAFKA_FETCH_QUEUE_BACKOFF_MS="$BACKOFF_MS" ;;
      sys-small) one sys-small "$SYS" "${small[@]}" ;;
      *) echo "unknown variant $v" >&2; exit 2 ;;
    esac
  done
  t0=$(date +%s.%N)
  LD_LIBRARY_PATH=$(dirname "$newlib") kcat -C -e -q -o beginning -t "$topic" -b "$BOOTSTRAP" -f ''
  t1=$(date +%s.%N)
  awk -v r="$r" -v n="$SIZE" -v a="$t0" -v b="$t1" 'BEGIN{printf "RESULT round=%s variant=kcat-new size=%s seconds=%.3f events_per_s=%.0f\n", r, n, b-a, n/(b-a)}'
done
