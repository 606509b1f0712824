#!/bin/sh
# The installed SDK is enough to build a module out of tree, and the
# installed programs load it: cmake --install into a temporary prefix; the
# SDK headers pull in no librdkafka, RocksDB, libmicrohttpd or curl header;
# tests/data/sdk-module builds with find_package(escqrs 3.0) and
# escqrs_add_module() and exports only the entry point; find_package(escqrs
# 4.0) is refused (SameMajorVersion); the installed escqrs loads the shipped
# modules from <prefix>/lib/escqrs/modules by default and the probe by path.
# $1 the build tree, $2 the source tree.
set -u
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

cmake --install "$build" --prefix "$tmp/p" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; bad "cmake --install"; }
for h in kafka.h store.h http_server.h http_client.h registry.h conf.h; do
    [ -e "$tmp/p/include/escqrs/$h" ] && bad "include/escqrs/$h is installed"
done
for f in lib/libescqrs.so.3 lib/pkgconfig/escqrs.pc lib/cmake/escqrs/escqrsConfig.cmake \
         lib/cmake/escqrs/escqrsConfigVersion.cmake lib/escqrs/modules/escqrs-cart.so \
         lib/escqrs/modules/escqrs-account.so bin/escqrs bin/escqrs-gateway; do
    [ -e "$tmp/p/$f" ] || bad "$f is not installed"
done
foreign=$(echo '#include <escqrs/module.h>' |
    cc -H -fsyntax-only -I"$tmp/p/include" $(pkg-config --cflags avro-c jansson) -x c - 2>&1 |
    grep -E 'rdkafka|rocksdb|microhttpd|curl')
[ -z "$foreign" ] || bad "module.h includes $foreign"

cmake -S "$src/tests/data/sdk-module" -B "$tmp/b" -DCMAKE_PREFIX_PATH="$tmp/p" \
      -DESCQRS_WANT_VERSION=3.0 >"$tmp/conf.log" 2>&1 || { cat "$tmp/conf.log"; bad "configure"; }
cmake --build "$tmp/b" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; bad "build"; }
exports=$(nm -D --defined-only "$tmp/b/escqrs-probe.so" 2>/dev/null | awk '{print $3}' | grep -v '^_')
[ "$exports" = escqrs_module_v1 ] || bad "the module exports: $exports"
cmake -S "$src/tests/data/sdk-module" -B "$tmp/b2" -DCMAKE_PREFIX_PATH="$tmp/p" \
      -DESCQRS_WANT_VERSION=4.0 >"$tmp/conf2.log" 2>&1 && bad "find_package(escqrs 4.0) succeeded"

help=$("$tmp/p/bin/escqrs" --set log.level=warn --set "modules=cart,account,$tmp/b/escqrs-probe.so" \
       send --help 2>&1) || bad "installed escqrs send --help: $help"
case "$help" in *"cart     add-item"*) ;; *) bad "installed escqrs lacks cart: $help" ;; esac
[ $fail -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $fail
