#!/bin/sh
# The CLI finds its domains through the module loader: `escqrs send --help`
# lists the verbs and fields of the loaded modules' aggregates (the default
# modules, cart and account, from the build tree), and a module the program
# cannot run is refused with exit 2 and a message naming it.
# $1 is the escqrs binary, $2 a fixture module built for the next SDK major
# (tests/modules/fixture.c, FIXTURE_MAJOR).
set -u
bin=$1
major=$2
fail=0
help=$("$bin" --set log.level=warn send --help 2>&1)
for line in "cart     add-item     sku=TEXT quantity=INT unit_price_cents=INT" \
            "account  deposit      amount_cents=INT"; do
    case "$help" in *"$line"*) ;; *) echo "FAIL: send --help lacks '$line': $help"; fail=1 ;; esac
done
help=$("$bin" --set log.level=warn --set modules=account send --help 2>&1)
case "$help" in *"cart     add-item"*) echo "FAIL: modules=account still lists cart"; fail=1 ;; esac
out=$("$bin" --set log.level=warn --set "modules=cart,$major" send cart c-1 checkout 2>&1)
rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL: a module for another SDK major: exit $rc, not 2: $out"; fail=1; }
case "$out" in
*"module $major (test_good) was built against escqrs SDK 4."*"; this program runs SDK 3."*) ;;
*) echo "FAIL: no version message: $out"; fail=1 ;;
esac
out=$("$bin" --set log.level=warn --set modules=nosuch send cart c-1 checkout 2>&1)
rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL: a missing module: exit $rc, not 2: $out"; fail=1; }
case "$out" in *"escqrs-nosuch.so"*) ;; *) echo "FAIL: no file name: $out"; fail=1 ;; esac
# escqrs history: an id past ES_ID_MAX (128 bytes) is refused, never sent truncated
# (a truncated id names another aggregate); one of 128 bytes that all need
# percent-encoding still goes out whole (here to a port nobody listens on)
long=$(printf 'a%.0s' $(seq 1 129))
out=$("$bin" --set log.level=warn --set projector.url=http://127.0.0.1:1 history cart "$long" 2>&1)
rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL: history with a 129-byte id: exit $rc, not 2: $out"; fail=1; }
case "$out" in *"at most 128 bytes"*) ;; *) echo "FAIL: no length message: $out"; fail=1 ;; esac
slashes=$(printf '/%.0s' $(seq 1 128))
out=$("$bin" --set log.level=warn --set projector.url=http://127.0.0.1:1 history cart "$slashes" 2>&1)
case "$out" in
*"at most 128 bytes"*) echo "FAIL: a 128-byte id was refused: $out"; fail=1 ;;
*"%2F%2F"*) ;;
*) echo "FAIL: the encoded id is not in the error: $out"; fail=1 ;;
esac
[ $fail -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $fail
