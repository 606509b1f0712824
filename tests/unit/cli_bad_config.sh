#!/bin/sh
# A program given bad configuration exits 2 with a message naming the key.
# $1 is the escqrs binary, $2 the command service's.
set -u
bin=$1
cs=$2
fail=0
check() {
    key=$1; envset=$2; shift 2
    out=$(env $envset "$bin" "$@" topics describe nothing 2>&1)
    rc=$?
    if [ "$rc" -ne 2 ]; then echo "FAIL: $* exited $rc, not 2: $out"; fail=1; fi
    case "$out" in *"$key"*) ;; *) echo "FAIL: $* did not name $key: $out"; fail=1 ;; esac
}
check kafka.acks "" --set kafka.acks=banana
check no.such.key "" --set no.such.key=1
check log.level "" --set log.level=loud
check topics.partitions ESCQRS_TOPICS_PARTITIONS=0
check topics.partitions ESCQRS_TOPICS_PARTITIONS=99999999999999999999 # never clamped
check topics.partitions "ESCQRS_TOPICS_PARTITIONS=+3"
# an empty broker list never connects: refused at start-up, by flag and by environment
check kafka.bootstrap.servers "" --set kafka.bootstrap.servers=
check kafka.bootstrap.servers ESCQRS_KAFKA_BOOTSTRAP_SERVERS=
# a command-line number that is not plain decimal in its range: exit 2 naming the option
opt() {
    name=$1; shift
    out=$("$bin" "$@" 2>&1)
    rc=$?
    if [ "$rc" -ne 2 ]; then echo "FAIL: $* exited $rc, not 2: $out"; fail=1; fi
    case "$out" in *"$name"*) ;; *) echo "FAIL: $* did not name $name: $out"; fail=1 ;; esac
}
opt --timeout-ms send account deposit acct-1 --timeout-ms 5x
opt --timeout-ms send account deposit acct-1 --timeout-ms 0
opt --ttl auth token --key k --issuer i --audience a --sub s --ttl 99999999999999999999
opt --ttl auth token --key k --issuer i --audience a --sub s --ttl " 300"
opt --not-before auth token --key k --issuer i --audience a --sub s --not-before 1e3
opt --from-offset export --from-offset -1 cart.events
# the command service: a record limit below what its outcome records need stops it at
# start-up, before any broker is asked (the bootstrap below answers nothing)
for v in 16383 1000; do
    out=$("$cs" --set kafka.bootstrap.servers=127.0.0.1:1 --set kafka.message.max.bytes=$v 2>&1)
    rc=$?
    if [ "$rc" -ne 2 ]; then echo "FAIL: command service with max.bytes $v exited $rc, not 2"; fail=1; fi
    case "$out" in *"kafka.message.max.bytes: '$v' is not a number of bytes of at least 16384"*) ;;
    *) echo "FAIL: command service with max.bytes $v did not name the key: $out"; fail=1 ;; esac
done
# an empty store path (it would put the stores under /) stops the command service
out=$("$cs" --set kafka.bootstrap.servers=127.0.0.1:1 --set store.path= 2>&1)
rc=$?
if [ "$rc" -ne 2 ]; then echo "FAIL: command service with store.path= exited $rc, not 2"; fail=1; fi
case "$out" in *"store.path: must not be empty"*) ;;
*) echo "FAIL: command service with store.path= did not name the key: $out"; fail=1 ;; esac
[ $fail -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $fail
