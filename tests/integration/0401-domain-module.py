#!/usr/bin/python3
"""0401-domain-module — a team's domain, built out of tree against the installed SDK and
loaded by the stock programs (issue 14; docs/extending.md).

  1. `cmake --install` of this build into a temporary prefix: the programs,
     libescqrs.so, the SDK headers, escqrs.pc and the CMake package;
  2. examples/inventory copied to an empty directory and built there with nothing but
     `find_package(escqrs)` (CMAKE_PREFIX_PATH = the prefix); its own CUnit tests pass;
     `cmake --install` puts escqrs-inventory.so into <prefix>/lib/escqrs/modules;
     the SDK headers it was compiled with include no Kafka, RocksDB or HTTP header;
  3. refusals at start-up, for every program: a module claiming the next SDK major and
     a shared object without the entry point each exit 2 with a message naming the
     module (and, for the version, both versions);
  4. the stock programs of the prefix with `modules=inventory`, under a fresh topic
     prefix on the test stack:
     - gateway: restock and reserve accepted (events, position), a reservation beyond
       the stock refused 422 `insufficient_stock`, a stale If-Match 409
       `version_conflict` with expected and actual, the current one accepted, an
       Idempotency-Key retried answers the first outcome (same command id, no new
       event), the same key with another body 409 `idempotency_key_reused`;
     - projector: the item's view with `min_position` (read-your-writes), `as_of`
       between two commands answers the earlier state, a blue/green rebuild of
       stock_view ends with a digest equal to the live one's;
     - CLI: `escqrs send` on the module's verbs (0 accepted, 3 refused: a reservation
       released twice), `escqrs send --help` lists the module's verbs, `escqrs export`
       of the events topic holds exactly the accepted commands' events, in order.

  0401-domain-module.py         (ctest: integration.0401-domain-module)
Environment: ESCQRS_BUILD_DIR, ESCQRS_SOURCE_DIR, ESCQRS_TEST_BOOTSTRAP, ESCQRS_TEST_REGISTRY.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from escqrs_pipeline import BOOTSTRAP, BUILD, REGISTRY, SRC, Daemon, free_port  # noqa: E402
from escqrs_pipeline import http as pipeline_http  # noqa: E402

RUN = "it0401-%s-" % uuid.uuid4().hex[:8]

passed = 0
failed = 0


def ok(what):
    global passed
    passed += 1
    print("ok   %s" % what, flush=True)


def bad(what):
    global failed
    failed += 1
    print("FAIL %s" % what, flush=True)


def check(cond, what):
    (ok if cond else bad)(what)
    return cond


class Abort(Exception):
    pass


def run(cmd, what, cwd=None, env=None, timeout=900):
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        sys.stdout.write(p.stdout[-4000:] + p.stderr[-4000:])
        raise Abort("%s: exit %d: %s" % (what, p.returncode, " ".join(cmd)))
    ok("%s (%.1f s)" % (what, time.monotonic() - t0))
    return p


def sanitizer_flags():
    """The flags of a sanitized escqrs build: the module of refusals() is compiled by hand
    (escqrs::escqrs gives them to a CMake project)."""
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        cache = f.read()
    if re.search(r"^ESCQRS_SANITIZE:BOOL=(ON|1|TRUE)$", cache, re.M):
        return "-fsanitize=address,undefined"
    return ""


# ------------------------------------------------------------ 1 and 2: the SDK

def install_sdk(tmp):
    prefix = os.path.join(tmp, "prefix")
    run(["cmake", "--install", BUILD, "--prefix", prefix], "cmake --install into %s" % prefix)
    for f in ("bin/escqrs-gateway", "bin/escqrs-command-service", "bin/escqrs-projector",
              "bin/escqrs", "lib/libescqrs.so", "lib/pkgconfig/escqrs.pc",
              "lib/cmake/escqrs/escqrsConfig.cmake", "include/escqrs/module.h",
              "include/escqrs/version.h"):
        check(os.path.exists(os.path.join(prefix, f)), "installed: %s" % f)
    for h in ("kafka.h", "store.h", "http_server.h", "http_client.h", "registry.h"):
        check(not os.path.exists(os.path.join(prefix, "include", "escqrs", h)),
              "not in the SDK: escqrs/%s" % h)
    return prefix


def build_example(tmp, prefix):
    work = os.path.join(tmp, "inventory")
    shutil.copytree(os.path.join(SRC, "examples", "inventory"), work)
    cfg = ["cmake", "-S", work, "-B", os.path.join(work, "build"),
           "-DCMAKE_PREFIX_PATH=" + prefix]
    run(cfg, "examples/inventory configured out of tree with find_package(escqrs) only")
    run(["cmake", "--build", os.path.join(work, "build"), "-j2"], "examples/inventory built")
    p = run(["ctest", "--test-dir", os.path.join(work, "build"), "--output-on-failure"],
            "examples/inventory's own tests")
    m = re.search(r"(\d+)% tests passed, (\d+) tests failed out of (\d+)", p.stdout)
    check(m and m.group(2) == "0" and int(m.group(3)) > 0, "its tests: %s" % (m.group(0) if m else "?"))
    run(["cmake", "--install", os.path.join(work, "build"), "--prefix", prefix],
        "examples/inventory installed")
    so = os.path.join(prefix, "lib", "escqrs", "modules", "escqrs-inventory.so")
    check(os.path.exists(so), "the module: %s" % so)
    # what the module exports: only the entry point
    nm = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True).stdout
    syms = sorted(l.split()[-1] for l in nm.splitlines() if re.search(r" [TDBR] ", l))
    check(syms == ["escqrs_module_v1"], "the module exports only escqrs_module_v1 (%s)" % syms)
    # the SDK headers pull in no Kafka, RocksDB, HTTP or curl header
    probe = os.path.join(tmp, "probe.c")
    with open(probe, "w") as f:
        f.write('#include "escqrs/module.h"\nint main(void) { return 0; }\n')
    pc = subprocess.run(["pkg-config", "--cflags", "escqrs"], capture_output=True, text=True,
                        env=dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig")))
    check(pc.returncode == 0, "pkg-config --cflags escqrs: %s" % pc.stdout.strip())
    deps = subprocess.run(["cc", "-M"] + pc.stdout.split() + [probe], capture_output=True,
                          text=True).stdout
    leaked = [h for h in ("librdkafka", "rocksdb", "microhttpd", "curl/") if h in deps]
    check(not leaked, "escqrs/module.h includes no Kafka, RocksDB or HTTP header (%s)" %
          (leaked or "none"))
    return work


# ------------------------------------------------------------- 3: refusals

BAD_VERSION_C = r'''
#include "escqrs/module.h"
static const es_module_schema_t none[] = {{NULL, NULL}};
static const es_module_t m = {.sdk_version = ES_SDK_VERSION + (1 << 16), .name = "future",
                              .description = "built against the next SDK major",
                              .schemas = none};
ES_MODULE_DEFINE(m)
'''


def refusals(tmp, prefix):
    flags = sanitizer_flags().split()
    inc = os.path.join(prefix, "include")
    bad_version = os.path.join(tmp, "escqrs-future.so")
    src = os.path.join(tmp, "future.c")
    with open(src, "w") as f:
        f.write(BAD_VERSION_C)
    run(["cc", "-shared", "-fPIC", "-I", inc] + flags + ["-o", bad_version, src] +
        subprocess.run(["pkg-config", "--cflags", "avro-c", "jansson"], capture_output=True,
                       text=True).stdout.split(), "a module claiming the next SDK major built")
    no_entry = os.path.join(tmp, "escqrs-noentry.so")
    src = os.path.join(tmp, "noentry.c")
    with open(src, "w") as f:
        f.write("int not_a_module(void);\nint not_a_module(void) { return 0; }\n")
    run(["cc", "-shared", "-fPIC"] + flags + ["-o", no_entry, src], "a shared object without the entry point built")
    have = subprocess.run([os.path.join(prefix, "bin", "escqrs"), "--version"], capture_output=True,
                          text=True)
    for prog in ("escqrs-gateway", "escqrs-command-service", "escqrs-projector", "escqrs"):
        for so, want in ((bad_version, r"escqrs-future\.so.*4\.0\.0.*3\.0\.0"),
                         (no_entry, r"escqrs-noentry\.so.*escqrs_module_v1")):
            args = [os.path.join(prefix, "bin", prog), "--set", "modules=" + so]
            if prog == "escqrs":
                args += ["send", "--help"]
            p = subprocess.run(args, capture_output=True, text=True, timeout=60)
            out = p.stdout + p.stderr
            check(p.returncode == 2 and re.search(want, out),
                  "%s refuses %s: exit %d, %s" % (prog, os.path.basename(so), p.returncode,
                                                  (re.search(r"module[^\n]*", out) or
                                                   re.search(r".*", out)).group(0)[:200]))


# ------------------------------------------------------------ 4: the pipeline

def http(method, url, body=None, headers=None, timeout=30):
    """(status, body): the shared client without the answer's headers."""
    st, answer, _ = pipeline_http(method, url, body, headers, timeout)
    return st, answer


def wait_ready(url, what, seconds=90):
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        st, _ = http("GET", url + "/readyz", timeout=5)
        if st == 200:
            ok("%s ready" % what)
            return
        time.sleep(0.3)
    raise Abort("%s not ready in %d s" % (what, seconds))


def wait_caught_up(admin, name, topic, seconds=60):
    """Until the projection has applied every partition of @topic up to the end the broker
    gives a read_committed reader now (past the last commit marker). The projector's own
    "high" is the watermark it last fetched or looked up (at most once a second while
    busy), and a rebuilt store moves past the last marker: a digest of a live store that
    has not yet is one offset short, which is no difference in what it holds."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "it0401-watermarks",
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        n = len(c.list_topics(topic, timeout=10).topics[topic].partitions)
        end = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(n)]
    finally:
        c.close()
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        st, j = http("GET", "%s/admin/projections" % admin, timeout=5)
        ps = [p for p in (j or {}).get("projections", []) if p.get("name") == name] if st == 200 else []
        applied = {x.get("partition"): x.get("applied", -1) for x in (ps[0].get("partitions") or [])} if ps else {}
        if all(applied.get(p, -1) >= end[p] for p in range(n)):
            return True
        time.sleep(0.1)
    return False


def pipeline(tmp, prefix):
    bindir = os.path.join(prefix, "bin")
    mods = ["--set", "modules=inventory",
            "--set", "modules.dir=" + os.path.join(prefix, "lib", "escqrs", "modules")]
    common = mods + ["--set", "kafka.bootstrap.servers=" + BOOTSTRAP,
                     "--set", "registry.url=" + REGISTRY,
                     "--set", "aggregate.prefix=" + RUN]
    gw, cs_port, pj, adm = free_port(), free_port(), free_port(), free_port()
    gateway, query, admin = ("http://127.0.0.1:%d" % p for p in (gw, pj, adm))
    cli = [os.path.join(bindir, "escqrs")] + common + ["--set", "gateway.url=" + gateway,
                                                         "--set", "projector.admin.url=" + admin]
    daemons = []
    try:
        run(cli + ["topics", "create", "inventory", "--dlq", "projector"], "escqrs topics create inventory")
        run(cli + ["schemas", "register"], "escqrs schemas register (the module's schemas)")
        daemons.append(Daemon("command-service", [os.path.join(bindir, "escqrs-command-service")] + common +
                              ["--set", "aggregate=inventory", "--set", "store.path=" + os.path.join(tmp, "cs"),
                               "--set", "http.listen=127.0.0.1:%d" % cs_port], os.path.join(tmp, "cs.log")))
        daemons.append(Daemon("gateway", [os.path.join(bindir, "escqrs-gateway")] + common +
                              ["--set", "http.listen=127.0.0.1:%d" % gw], os.path.join(tmp, "gw.log")))
        daemons.append(Daemon("projector", [os.path.join(bindir, "escqrs-projector")] + common +
                              ["--set", "store.path=" + os.path.join(tmp, "pj"),
                               "--set", "http.listen=127.0.0.1:%d" % pj,
                               "--set", "admin.listen=127.0.0.1:%d" % adm], os.path.join(tmp, "pj.log")))
        wait_ready("http://127.0.0.1:%d" % cs_port, "command service (inventory)")
        wait_ready(gateway, "gateway")
        wait_ready(admin, "projector")
        drive(cli, gateway, query, admin)
    finally:
        for d in daemons:
            d.stop()
        for d in daemons:
            check(d.p.returncode == 0, "%s stopped cleanly (exit %s)" % (d.name, d.p.returncode))
            if d.p.returncode != 0:
                with open(d.log) as f:
                    sys.stdout.write(f.read()[-3000:])


def post(gateway, item, verb, body, headers=None):
    return http("POST", "%s/v1/inventory/%s/%s" % (gateway, item, verb), body, headers)


def drive(cli, gateway, query, admin):
    item = "sku-" + uuid.uuid4().hex[:8]
    accepted = []  # (type, version) of every event the gateway answered, in order

    def accept(st, body, what):
        if check(st == 200 and isinstance(body, dict) and body.get("events"),
                 "%s: 200 %s" % (what, body)):
            accepted.extend((e["type"], e["version"]) for e in body["events"])
        return body

    b1 = accept(*post(gateway, item, "restock", {"quantity": 10}), "restock 10")
    t_between = int(time.time() * 1000)
    time.sleep(0.05)
    b2 = accept(*post(gateway, item, "reserve", {"reservation_id": "order-1", "quantity": 8},
                      {"Idempotency-Key": item + "-order-1"}), "reserve 8 for order-1")
    st, body = post(gateway, item, "reserve", {"reservation_id": "order-2", "quantity": 5})
    check(st == 422 and body.get("error") == "rejected" and body.get("reason") == "insufficient_stock",
          "reserve 5 more with 2 available: %d %s" % (st, body))
    # the same Idempotency-Key again: the first outcome, nothing new
    st, body = post(gateway, item, "reserve", {"reservation_id": "order-1", "quantity": 8},
                    {"Idempotency-Key": item + "-order-1"})
    check(st == 200 and body.get("command_id") == b2.get("command_id") and
          body.get("version") == b2.get("version"),
          "the retried Idempotency-Key answers the first outcome: %d %s" % (st, body))
    st, body = post(gateway, item, "reserve", {"reservation_id": "order-9", "quantity": 1},
                    {"Idempotency-Key": item + "-order-1"})
    check(st == 409 and body.get("error") == "idempotency_key_reused",
          "the key with another command: %d %s" % (st, body))
    # If-Match
    version = b2["version"]
    st, body = post(gateway, item, "restock", {"quantity": 1}, {"If-Match": str(version - 1)})
    check(st == 409 and body.get("error") == "version_conflict" and body.get("actual") == version,
          "a stale If-Match: %d %s" % (st, body))
    b3 = accept(*post(gateway, item, "restock", {"quantity": 1}, {"If-Match": str(version)}),
                "restock 1 with the current If-Match")

    # the projector: read-your-writes, as_of
    st, view = http("GET", "%s/v1/inventory/%s?min_position=%s" % (query, item, b3["position"]))
    check(st == 200 and view.get("on_hand") == 11 and view.get("reserved") == 8 and
          view.get("available") == 3 and view.get("version") == b3["version"],
          "the view with min_position: %d %s" % (st, view))
    st, then = http("GET", "%s/v1/inventory/%s?as_of=%d" % (query, item, t_between))
    check(st == 200 and then.get("on_hand") == 10 and then.get("reserved") == 0 and
          then.get("version") == b1["version"], "as_of between restock and reserve: %d %s" % (st, then))

    # the CLI: send (0 accepted, 3 refused), help from the module
    p = subprocess.run(cli + ["send", "inventory", item, "release", "--field", "reservation_id=order-1"],
                       capture_output=True, text=True, timeout=60)
    if check(p.returncode == 0, "escqrs send inventory release: exit %d %s" % (p.returncode, p.stdout.strip())):
        accepted.extend((e["type"], e["version"]) for e in json.loads(p.stdout)["events"])
    p = subprocess.run(cli + ["send", "inventory", item, "release", "--field", "reservation_id=order-1"],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 3 and "already_released" in p.stdout,
          "released twice: exit %d %s" % (p.returncode, p.stdout.strip()))
    p = subprocess.run(cli + ["send", "--help"], capture_output=True, text=True, timeout=60)
    check("inventory" in p.stdout and "reserve" in p.stdout and "add-item" not in p.stdout,
          "escqrs send --help lists the loaded module's verbs only")

    # a blue/green rebuild of stock_view: the same bytes
    check(wait_caught_up(admin, "stock_view", RUN + "inventory.events"),
          "stock_view caught up to the broker's end of the log before the digest")
    st, before = http("GET", "%s/admin/projections/stock_view/digest" % admin)
    check(st == 200, "digest before: %s" % before)
    p = subprocess.run(cli + ["rebuild", "stock_view"], capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, "escqrs rebuild stock_view: exit %d %s" % (p.returncode, p.stdout.strip()[-200:]))
    st, after = http("GET", "%s/admin/projections/stock_view/digest" % admin)
    check(st == 200 and after.get("generation") == before.get("generation") + 1 and
          after.get("views_fnv1a64") == before.get("views_fnv1a64") and
          after.get("offsets_fnv1a64") == before.get("offsets_fnv1a64"),
          "rebuilt: generation %s -> %s, views %s -> %s, offsets %s (%s keys) -> %s (%s keys)" % (
              before.get("generation"), after.get("generation"), before.get("views_fnv1a64"),
              after.get("views_fnv1a64"), before.get("offsets_fnv1a64"), before.get("offset_keys"),
              after.get("offsets_fnv1a64"), after.get("offset_keys")))

    # export: exactly the accepted events, in order
    p = subprocess.run(cli + ["export", "--topic", RUN + "inventory.events"], capture_output=True,
                       text=True, timeout=120)
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    got = [(l["headers"].get("event-type"), l["value"]["version"]) for l in lines if l.get("key") == item]
    check(p.returncode == 0 and got == accepted,
          "escqrs export %sinventory.events: %s (the gateway answered %s)" % (RUN, got, accepted))


def main():
    tmp = tempfile.mkdtemp(prefix="escqrs-it0401-")
    try:
        prefix = install_sdk(tmp)
        build_example(tmp, prefix)
        refusals(tmp, prefix)
        pipeline(tmp, prefix)
    except Abort as e:
        bad(str(e))
    finally:
        if failed == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept %s for a look" % tmp)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
