#!/usr/bin/env bash
# write-bench.sh — commands/s and latency of the command path through the gateway.
#
# Starts escqrs-command-service (account), escqrs-gateway and an
# escqrs-projector (account_balance) against the test stack under a fresh
# topic prefix, then runs bench/write/write_load:
#   1. closed loop with 1, 8, 32, 128, 256 and 512 clients: saturation is the
#      best rate (answered 200; the closed loop stops being a search for it when
#      the rate still grows at its largest level, so it goes past 128);
#   2. open loop at 25 %, 50 % and 90 % of saturation (as many clients as reached
#      saturation, so the schedule is not held back by answers): latency from the
#      schedule, so queueing counts;
#   3. open loop at 25 % with a min_position query after every command: the
#      end-to-end latency from command sent to visible in a view.
# Prints one `RESULT phase=command ...` line per level (level= names it).
#
#   bench/write/write-bench.sh [build-dir]      (needs the test stack running)
#
# Environment: BOOTSTRAP, REGISTRY, DURATION (s per level, default 10),
# EXTRA_CS / EXTRA_GW (more --set flags), WRAP_CS / WRAP_GW (a command the
# daemon runs under, e.g. WRAP_CS="perf record -e cpu-clock -g -o cs.perf --"),
# CLIENTS (closed-loop levels, default "1 8 32 128 256 512"), OPEN_LOOP=0 (closed loop only),
# CS_INSTANCES (command services sharing the commands' partitions, default 1),
# SATURATION (the rate the open-loop levels take their percentages of, instead of the
# closed loop's best: for comparing two builds at the same rates), REFUSED=1 (every
# command a withdrawal the account refuses, 422: transactions with outcomes and no
# event; no e2e level), WARMUP (s of one client before the levels, not reported; default
# 20, 0: none).
# All the clients come from one address: the gateway's and the projector's
# per-client connection limit (256 by default, a guard against one peer holding
# the server) is raised for this run only.
set -euo pipefail
BUILD=${1:-build}
BOOTSTRAP=${BOOTSTRAP:-127.0.0.1:19092}
REGISTRY=${REGISTRY:-http://127.0.0.1:18081/apis/ccompat/v7}
DURATION=${DURATION:-10}
PREFIX="bench-$$-$(date +%s)-"
DIR=$(mktemp -d /tmp/escqrs-bench.XXXXXX)
CS_PORT=$((20000 + RANDOM % 5000))
GW_PORT=$((CS_PORT + 1))
PJ_PORT=$((CS_PORT + 2))
common=(--set kafka.bootstrap.servers="$BOOTSTRAP" --set registry.url="$REGISTRY"
        --set aggregate.prefix="$PREFIX" --set topics.create=true)

# CS_INSTANCES command services (default 1) share the commands' partitions as one
# consumer group, each with its own transactional id, store and port; the first
# creates the topics.  CS is the first one's pid, CS_ALL every one's.
CS_INSTANCES=${CS_INSTANCES:-1}
CS_ALL=()
CS_PORTS=()
start_cs() { # instance-number port
  ${WRAP_CS:-} "$BUILD"/producers/command-service/escqrs-command-service "${common[@]}" \
    --set aggregate=account --set transactional.id="${PREFIX}account.cs-$1" \
    --set store.path="$DIR/store-$1" --set http.listen=127.0.0.1:$2 ${EXTRA_CS:-} \
    2>"$DIR/cs-$1.log" &
  CS_ALL+=($!)
  CS_PORTS+=("$2")
}
start_cs 0 $CS_PORT
CS=${CS_ALL[0]}
one_address=(--set http.max.connections.per.client=2048)
${WRAP_GW:-} "$BUILD"/producers/gateway/escqrs-gateway "${common[@]}" --set aggregates=account \
  --set http.listen=127.0.0.1:$GW_PORT "${one_address[@]}" ${EXTRA_GW:-} 2>"$DIR/gw.log" &
GW=$!
PJ=
# the run's topics go with it: thousands of them slow the test broker down
cleanup() {
  kill $GW "${CS_ALL[@]}" $PJ 2>/dev/null
  wait $GW "${CS_ALL[@]}" $PJ 2>/dev/null || true
  ESCQRS_TEST_BOOTSTRAP=$BOOTSTRAP "$BUILD"/bench/read/escqrs-bench-rebuild --delete-topics "$PREFIX" \
    2>&1 | grep -v '^{' >&2 || true
}
trap cleanup EXIT
wait_ready() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0
    sleep 0.1
  done
}
wait_ready $CS_PORT
for i in $(seq 1 $((CS_INSTANCES - 1))); do
  start_cs "$i" $((PJ_PORT + i))
  wait_ready $((PJ_PORT + i))
done
wait_ready $GW_PORT
# after the command service has created the topics
"$BUILD"/consumers/projector/escqrs-projector "${common[@]:0:6}" --set projections=account_balance \
  --set store.path="$DIR/projector" --set http.listen=127.0.0.1:$PJ_PORT "${one_address[@]}" \
  2>"$DIR/pj.log" &
PJ=$!
wait_ready $PJ_PORT
commands=deposits
[ "${REFUSED:-0}" = 1 ] && commands="withdrawals the accounts refuse"
echo "# escqrs write path: account $commands via gateway :$GW_PORT, $CS_INSTANCES command service(s), logs in $DIR"
echo "# $(nproc) cores shared with the broker and registry; ${DURATION}s per level"
LOAD="$BUILD/bench/write/write_load"
level() { # name write_load-args...
  local name=$1
  shift
  local refused=()
  [ "${REFUSED:-0}" = 1 ] && refused=(-w)
  "$LOAD" -u "http://127.0.0.1:$GW_PORT" -d "$DURATION" -a 1000 -p acct "${refused[@]}" "$@" | sed "s/^RESULT /RESULT level=$name /"
}
# Where the machine's CPU goes per command in a closed-loop level: every process of
# the path, the broker and registry of the stack (STACK_DIR: their pid files) and the
# load generator itself; busy_cores says how much of the machine they used, and
# machine_busy_cores how much of it everything used (/proc/stat).  Measured in the middle
# of the level's timed load (from 1 s after it starts, which write_load says with -s,
# to 1 s before its end): around it, the load generator's start-up and the path's drain
# once answers stop counting added CPU without commands (2 December: the sums came to
# more than the machine's 2 cores), and before it the opening of the accounts, one
# command at a time, took most of a level's window (3 December: at 512 clients the
# window counted 2.2 k commands/s of the level's 4.7 k).
STACK_DIR=${STACK_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/.local/stack/test}
BROKER=$(cat "$STACK_DIR/kafka.pid" 2>/dev/null || true)
REG=$(cat "$STACK_DIR/registry.pid" 2>/dev/null || true)
HZ=$(getconf CLK_TCK)
ticks() { [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
cs_metrics() { for port in "${CS_PORTS[@]}"; do curl -s "http://127.0.0.1:$port/metrics"; done; }
decided() { # commands the services decided, and in how many transactions
  cs_metrics |
    awk '/^escqrs_batch_commands_sum /{s+=$2} /^escqrs_batch_commands_count /{c+=$2} END{print s+0, c+0}'
}
cs_ticks() {
  local t=0
  for pid in "${CS_ALL[@]}"; do t=$((t + $(ticks "$pid"))); done
  echo $t
}
# wall ms, commands decided, transactions, the ticks of each process, the load
# generator's (pid $1), then the machine's busy and all ticks
snapshot() {
  echo "$(date +%s%3N) $(decided) $(cs_ticks) $(ticks $GW) $(ticks $PJ) $(ticks "$BROKER") $(ticks "$REG")" \
    "$(ticks "${1:-}") $(awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)"
}
cpu_per_command() { # name before after
  awk -v b="$2" -v a="$3" -v hz="$HZ" -v lv="$1" 'BEGIN {
    split(b, x, " "); split(a, y, " "); split("command_service gateway projector broker registry load", k, " ")
    n = y[2] - x[2]; txns = y[3] - x[3]; wall = (y[1] - x[1]) / 1000; if (n <= 0) exit
    out = ""; total = 0
    for (i = 4; i <= 9; i++) { ms = (y[i] - x[i]) * 1000 / hz / n; total += ms; out = out sprintf(" %s=%.3f", k[i - 3], ms) }
    machine = (y[11] > x[11]) ? (y[10] - x[10]) / (y[11] - x[11]) * ENVIRON["NPROC"] : 0
    printf "# cpu_ms_per_command level=%s commands=%d per_transaction=%.1f%s total=%.3f busy_cores=%.2f machine_busy_cores=%.2f\n", lv, n, (txns > 0 ? n / txns : 0), out, total, total * n / 1000 / wall, machine
  }'
}
export NPROC=$(nproc)
# A level of one client first, WARMUP seconds (0: none), reported nowhere: a broker that
# has just started compiles its transaction paths under the first load.  On a fresh test
# stack (7 December), four one-client levels back to back: the broker's CPU per command
# 15.1, 9.0, 6.4, 6.8 ms.  Without it, a run's first level (and an A/B series' first run
# after a stack restart) measures that warm-up as well.
WARMUP=${WARMUP:-20}
if [ "$WARMUP" -gt 0 ]; then
  DURATION=$WARMUP level warm-up -c 1 >/dev/null
fi
best=0
best_clients=128
for c in ${CLIENTS:-1 8 32 128 256 512}; do
  rm -f "$DIR/started"
  level "closed-$c" -c "$c" -s "$DIR/started" >"$DIR/level.out" &
  job=$!
  for _ in $(seq 1200); do # the accounts are opened first: up to 2 minutes
    [ -e "$DIR/started" ] || ! kill -0 $job 2>/dev/null && break # started, or failed
    sleep 0.1
  done
  margin=$((DURATION >= 4 ? 1 : 0))
  sleep "$margin"
  before=$(snapshot "$(pgrep -n -x write_load || true)")
  sleep $((DURATION - 2 * margin))
  after=$(snapshot "$(pgrep -n -x write_load || true)")
  wait $job
  line=$(cat "$DIR/level.out")
  cpu_per_command "closed-$c" "$before" "$after"
  echo "$line"
  rate=$(sed -n 's/.* achieved=\([0-9]*\).*/\1/p' <<<"$line")
  if [ "${rate:-0}" -gt "$best" ]; then
    best=$rate
    best_clients=$c
  fi
done
echo "RESULT level=saturation phase=command_saturation achieved=$best clients=$best_clients"
best=${SATURATION:-$best} # the open-loop levels at a given rate: A/B runs compare like with like
open_clients=$((best_clients > 128 ? best_clients : 128))
if [ "${OPEN_LOOP:-1}" = 1 ]; then
  for pct in 25 50 90; do
    level "open-$pct" -c $open_clients -r $((best * pct / 100))
  done
  [ "${REFUSED:-0}" = 1 ] ||
    level "e2e-25" -c $open_clients -r $((best * 25 / 100)) -q "http://127.0.0.1:$PJ_PORT"
fi
# CPU seconds each daemon used since its start (start-up included; under WRAP_* the wrapper's)
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
echo "# cpu_s command_service=$(awk -v t="$(cs_ticks)" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", t / hz}') gateway=$(cpu_s $GW) commands=$(
  cs_metrics | awk '/^escqrs_batch_commands_sum /{s+=$2} END{print s+0}')"
cs_metrics |
  grep -E '^escqrs_(batch_commands|transaction_commit_seconds)_(sum|count)' | sed 's/^/# /'
