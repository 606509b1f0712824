#!/bin/sh
# A program given bad configuration exits 2 with a message naming the key.
# $1 is the escqrs binary.
set -u
bin=$1
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
[ $fail -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $fail
