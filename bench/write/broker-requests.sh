#!/usr/bin/env bash
# broker-requests.sh — which requests the test stack's broker served for a few seconds,
# counted by client and API (and by topic or group where the request names one).
#
#   bench/write/broker-requests.sh [seconds]      (default 5; needs the test stack)
#
# Run it while a load runs (e.g. bench/write/write-bench.sh with CLIENTS=1): it turns the
# broker's request logger (kafka.request.logger) to DEBUG, waits, turns it back to WARN,
# and summarises the "Completed request" lines the broker logged meanwhile.  Divide a
# count by the transactions of the same seconds (escqrs_batch_commands_count of the
# command service) for requests per transaction (docs/write-side.md, "What one
# transaction costs the broker").  DEBUG logging costs the broker CPU while it is on.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_ON=${1:-5}
BOOTSTRAP=${BOOTSTRAP:-127.0.0.1:19092}
STACK_DIR=${STACK_DIR:-.local/stack/test}
LOG=$STACK_DIR/logs/kafka.log
lib=$(ls -d .local/cache/kafka-*/lib | tail -n 1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
javac -d "$tmp" -cp "$lib/*" bench/write/BrokerLogger.java
level() { java -cp "$tmp:$lib/*" BrokerLogger "$BOOTSTRAP" 1 kafka.request.logger "$1" 2>/dev/null; }
from=$(wc -l <"$LOG")
level DEBUG
sleep "$SECONDS_ON"
level WARN
tail -n +"$((from + 1))" "$LOG" >"$tmp/requests.log"
python3 - "$tmp/requests.log" "$SECONDS_ON" <<'PY'
import collections, json, sys
counts, local_ms = collections.Counter(), collections.Counter()
for line in open(sys.argv[1]):
    i = line.find('Completed request:')
    if i < 0:
        continue
    try:
        d = json.loads(line[i + len('Completed request:'):line.rfind('} (kafka') + 1])
    except ValueError:
        continue
    h, r = d['requestHeader'], d.get('request') or {}
    api, what = h['requestApiKeyName'], ''
    if api == 'PRODUCE':
        what = ','.join(sorted(t['name'] for t in r.get('topicData', [])))
    elif api in ('OFFSET_COMMIT', 'TXN_OFFSET_COMMIT'):
        what = 'group ' + r.get('groupId', '?')
    elif api == 'FETCH':
        what = ','.join(sorted(t.get('topic', '?') for t in r.get('topics', [])))
    elif api == 'ADD_PARTITIONS_TO_TXN':
        txns = r.get('transactions')
        if txns:
            what = ','.join(t['name'] for x in txns for t in x['topics']) + (' (verify)' if txns[0].get('verifyOnly') else '')
        else:
            what = ','.join(t['name'] for t in r.get('v3AndBelowTopics', []))
    k = (h['clientId'], api, what)
    counts[k] += 1
    local_ms[k] += d.get('localTimeMs', 0)
print(f"# requests the broker completed in {sys.argv[2]} s: {sum(counts.values())}")
print("count  local_ms_avg  client  api  topics")
for k, n in counts.most_common():
    print(f"{n:6d}  {local_ms[k] / n:11.3f}  {k[0]}  {k[1]}  {k[2]}")
PY
