#!/bin/bash
# bench/read/history-bench.sh — the history index (issue 15) in one run: rebuild
# events/s of cart_view and of cart_history on the 10 M-event topic (twice each), then
# as_of latency from the log and from the index (asof-bench.py).  Needs the RelWithDebInfo
# build in build/ and the test stack; writes bench/results/<date>-history.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
export ESCQRS_TEST_BOOTSTRAP=${ESCQRS_TEST_BOOTSTRAP:-127.0.0.1:19092}
export ESCQRS_TEST_REGISTRY=${ESCQRS_TEST_REGISTRY:-http://127.0.0.1:18081/apis/ccompat/v7}
log=${LOG:-bench/results/$(date -u +%F)-history.log}
B=build/bench/read/escqrs-bench-rebuild
P=build/consumers/projector/escqrs-projector
echo "# $(date -u +%FT%TZ) git $(git rev-parse --short HEAD) $(nproc) cores" > $log
$B --events 10000000 --partitions 4 --topic-prefix bench-10000000 --prepare-only 2>&1 | grep -v '^{' | tee -a $log
for run in 1 2; do
  for proj in cart_view cart_history; do
    echo "== run $run $proj" | tee -a $log
    $B --events 10000000 --topic-prefix bench-10000000 --projector $P --projection $proj 2>&1 | grep -v '^{' | sed "s/^RESULT /RESULT run=$run size=10000000 /" | tee -a $log
  done
done
echo "== as_of" | tee -a $log
python3 bench/read/asof-bench.py --build build --topic-prefix bench-10000000 --queries 10 2>&1 | grep -v '^{' | tee -a $log
echo "== done" | tee -a $log
