#!/usr/bin/env bash
# run.sh — build (when needed) and run the Kafka Streams peer of escqrs's item_stats
# rebuild once, against one topic, printing its one result line on stdout.
#
#   bench/peers/kstreams/run.sh BOOTSTRAP REGISTRY_URL TOPIC [GUARANTEE] [app flags...]
#   e.g. run.sh 127.0.0.1:19092 http://127.0.0.1:18081/apis/ccompat/v7 \
#               bench-123.cart.events exactly_once_v2 --dump /tmp/ks.jsonl
#
# GUARANTEE is at_least_once (default) or exactly_once_v2; further flags go to the app
# (--threads N, --dump FILE, --reader-schema FILE, --no-changelog, --keep; see
# ItemStatsApp.java). ESCQRS_PEER_JAVA_OPTS replaces the JVM flags.
#
# Design:
# - The shaded jar is rebuilt with `mvn -q -B package` only if it is missing or older
#   than pom.xml or a source file, so timed runs never include a build.
# - JVM flags: a 1 GiB heap (the stores live off-heap in RocksDB; the heap holds the
#   record cache and consumer buffers) and G1, the default server collector; nothing
#   exotic, so the numbers are what a user would see.
# - Each run gets its own state.dir under mktemp -d, removed on exit: every run starts
#   with empty stores, like the projector's initial build on an empty store.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
jar=$here/target/escqrs-peer-kstreams.jar

if [ $# -lt 3 ]; then
  sed -n '5,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
bootstrap=$1 registry=$2 topic=$3
shift 3
guarantee=at_least_once
if [ $# -gt 0 ] && [[ $1 != --* ]]; then
  guarantee=$1
  shift
fi

if [ ! -f "$jar" ] || [ -n "$(find "$here/pom.xml" "$here/src" -newer "$jar" -type f -print -quit)" ]; then
  echo "run.sh: building $jar (mvn -q -B package)" >&2
  log=$(mktemp)
  if ! (cd "$here" && mvn -q -B package) >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
fi

state=$(mktemp -d "${TMPDIR:-/tmp}/escqrs-peer-kstreams.XXXXXX")
trap 'rm -rf "$state"' EXIT

# shellcheck disable=SC2086 # ESCQRS_PEER_JAVA_OPTS is a list of flags
java ${ESCQRS_PEER_JAVA_OPTS:--Xms256m -Xmx1g -XX:+UseG1GC} -jar "$jar" \
  --bootstrap "$bootstrap" --registry "$registry" --topic "$topic" \
  --guarantee "$guarantee" --state-dir "$state/state" "$@"
