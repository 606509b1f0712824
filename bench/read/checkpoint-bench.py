#!/usr/bin/python3
"""checkpoint-bench — time-to-ready of a new projector replica on a large events topic: from
offset 0 against from a peer's checkpoint (bootstrap.from), measured in the same run on the same
topic.

  bench/read/checkpoint-bench.py --build DIR --topic-prefix bench-10000000 [--runs 2]
                                 [--projections cart_view]

Each run:
1. starts escqrs-projector A on an empty store and times it until /readyz answers 200 (every
   projection running, lag within ready.max.lag): a new replica from offset 0;
2. starts replica B on an empty store with bootstrap.from=<A's admin URL> and times it the
   same way: a new replica from a checkpoint (B clones A's checkpoint, verifies it, then catches
   up from its offsets); records the clone's own time and size from B's log and A's checkpoint
   answer, and how many events B applied itself (escqrs_projector_events_applied_total);
3. checks that B's digest equals A's (GET /admin/projections/<name>/digest) once both are at
   the topic's end.
Prints `RESULT phase=replica ...` lines.  Uses the stack of ESCQRS_TEST_BOOTSTRAP /
ESCQRS_TEST_REGISTRY.  A benchmark: it asserts only that the two replicas agree.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "integration"))
import escqrs_pipeline as ep  # noqa: E402


def get_json(url, timeout=600):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def status_of(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:
        return 0


def start(build, prefix, projections, store, log, extra=()):
    port, admin = ep.free_port(), ep.free_port()
    argv = [os.path.join(build, "consumers", "projector", "escqrs-projector"),
            "--set", "kafka.bootstrap.servers=" + ep.BOOTSTRAP,
            "--set", "registry.url=" + ep.REGISTRY,
            "--set", "aggregate.prefix=%s." % prefix,
            "--set", "projections=" + projections,
            "--set", "store.path=" + store,
            "--set", "http.listen=127.0.0.1:%d" % port,
            "--set", "admin.listen=127.0.0.1:%d" % admin]
    for kv in extra:
        argv += ["--set", kv]
    t0 = time.monotonic()
    d = ep.Daemon("projector", argv, log)
    return d, admin, t0


def wait_ready(d, admin, t0):
    while status_of("http://127.0.0.1:%d/readyz" % admin) != 200:
        if d.p.poll() is not None:
            raise SystemExit("projector exited: see %s" % d.log)
        time.sleep(0.2)
    return time.monotonic() - t0


def wait_end(admin):
    """Until every partition applied its high watermark (readiness allows a small lag)."""
    while True:
        b = get_json("http://127.0.0.1:%d/admin/projections" % admin, timeout=10)
        if all(p["lag"] == 0 for p in b["projections"]):
            return
        time.sleep(0.5)


def applied(admin, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin) as r:
        m = re.search(r'escqrs_projector_events_applied_total\{projection="%s"\} (\d+)' % name,
                      r.read().decode())
    return int(m.group(1)) if m else -1


def du(path):
    n = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                n += os.stat(os.path.join(d, f)).st_size
            except OSError:
                pass
    return n


def one_run(a, tmp, run):
    store_a, store_b = os.path.join(tmp, "a%d" % run), os.path.join(tmp, "b%d" % run)
    log_a, log_b = os.path.join(tmp, "a%d.log" % run), os.path.join(tmp, "b%d.log" % run)
    names = a.projections.split(",")
    pa = pb = None
    try:
        pa, admin_a, t0 = start(a.build, a.topic_prefix, a.projections, store_a, log_a)
        from0_s = wait_ready(pa, admin_a, t0)
        wait_end(admin_a)
        size = du(store_a)
        pb, admin_b, t0 = start(a.build, a.topic_prefix, a.projections, store_b, log_b,
                                ["bootstrap.from=http://127.0.0.1:%d" % admin_a])
        ckpt_s = wait_ready(pb, admin_b, t0)
        wait_end(admin_b)
        clone_ms = [int(x) for x in re.findall(r"cloned from \S+ in (\d+) ms", pb.output())]
        served = [int(x) for x in re.findall(r"serving a checkpoint .*?(\d+) bytes\)", pa.output())]
        if len(clone_ms) != len(names):
            raise SystemExit("B did not clone every projection: see %s" % log_b)
        for n in names:
            da = get_json("http://127.0.0.1:%d/admin/projections/%s/digest" % (admin_a, n))
            db = get_json("http://127.0.0.1:%d/admin/projections/%s/digest" % (admin_b, n))
            keys = ("views_fnv1a64", "view_keys", "offsets_fnv1a64", "offset_keys")
            if any(da[k] != db[k] for k in keys):
                raise SystemExit("%s: digests differ: A %s, B %s" % (n, da, db))
        b_applied = sum(applied(admin_b, n) for n in names)
        a_applied = sum(applied(admin_a, n) for n in names)
        print("RESULT phase=replica run=%d projections=%s from0_ready_s=%.1f "
              "checkpoint_ready_s=%.1f speedup=%.1f clone_s=%.1f checkpoint_bytes=%d "
              "store_bytes=%d a_applied=%d b_applied=%d digests=equal"
              % (run, a.projections, from0_s, ckpt_s, from0_s / ckpt_s, sum(clone_ms) / 1000,
                 sum(served), size, a_applied, b_applied), flush=True)
        return from0_s, ckpt_s
    finally:
        for p in (pb, pa):
            if p:
                p.stop()
        shutil.rmtree(store_a, ignore_errors=True)
        shutil.rmtree(store_b, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--topic-prefix", required=True)
    ap.add_argument("--projections", default="cart_view")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--tmp", default=None, help="directory of the stores (default: $TMPDIR)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="checkpoint-bench-", dir=a.tmp) as tmp:
        res = [one_run(a, tmp, r + 1) for r in range(a.runs)]
    f0 = [r[0] for r in res]
    ck = [r[1] for r in res]
    print("# median time to ready: from offset 0 %.1f s, from a checkpoint %.1f s (%.1fx)"
          % (statistics.median(f0), statistics.median(ck),
             statistics.median(f0) / statistics.median(ck)), flush=True)


if __name__ == "__main__":
    main()
