#!/usr/bin/python3
"""asof-bench — as_of latency for one aggregate on a large events topic: re-reading the
partition (the projector without the history index) against the history index (the
projector hosting <agg>_history), measured in the same run on the same topic.

  bench/read/asof-bench.py --build DIR --topic-prefix bench-10000000 [--queries 10]

1. picks --queries cart ids spread over the topic (kcat, keys at offsets across every
   partition);
2. starts escqrs-projector with projections=cart_view on an empty store, waits until it
   has caught up (the build time is printed), and times GET /v1/carts/{id}?as_of=<now>
   for every id: the log path reads the aggregate's partition from offset 0;
3. the same with projections=cart_view,cart_history: the index path;
4. checks that both answered the same bodies and that the second answered every query from
   the index (escqrs_projector_as_of_total{path="index"}).
Prints `RESULT phase=as_of path=log|index ...` lines for bench/run.  Uses the stack of
ESCQRS_TEST_BOOTSTRAP / ESCQRS_TEST_REGISTRY.  A benchmark: it asserts only that the two
paths agree.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "integration"))
import escqrs_pipeline as ep  # noqa: E402


def get(url, timeout=600):
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
            return r.status, json.loads(body), time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), time.monotonic() - t0


def pick_ids(topic, n):
    meta = subprocess.run(["kcat", "-L", "-b", ep.BOOTSTRAP, "-t", topic, "-J"], capture_output=True,
                          text=True, check=True).stdout
    parts = [p["partition"] for p in json.loads(meta)["topics"][0]["partitions"]]
    ids = []
    i = 0
    while len(ids) < n:
        part = parts[i % len(parts)]
        lo_hi = subprocess.run(["kcat", "-Q", "-b", ep.BOOTSTRAP, "-t", "%s:%d:-1" % (topic, part)],
                               capture_output=True, text=True).stdout
        m = re.search(r"offset (\d+)", lo_hi)
        high = int(m.group(1)) if m else 1000
        rounds = n // len(parts) + 2
        off = high * (i // len(parts) + 1) // rounds  # spread along the partition
        out = subprocess.run(["kcat", "-C", "-b", ep.BOOTSTRAP, "-t", topic, "-p", str(part),
                              "-o", str(off), "-c", "1", "-e", "-q", "-f", "%k\n"],
                             capture_output=True, text=True).stdout.split()
        if out and out[0] not in ids:
            ids.append(out[0])
        i += 1
    return ids


def run_projector(build, prefix, projections, ids, now_ms, tmp):
    port, admin = ep.free_port(), ep.free_port()
    store = tempfile.mkdtemp(prefix="asof-", dir=tmp)
    d = ep.Daemon("projector", [os.path.join(build, "consumers", "projector", "escqrs-projector"),
                                "--set", "kafka.bootstrap.servers=" + ep.BOOTSTRAP,
                                "--set", "registry.url=" + ep.REGISTRY,
                                "--set", "aggregate.prefix=%s." % prefix,
                                "--set", "projections=" + projections,
                                "--set", "store.path=" + store,
                                "--set", "http.listen=127.0.0.1:%d" % port,
                                "--set", "admin.listen=127.0.0.1:%d" % admin],
                  os.path.join(tmp, "projector-%s.log" % projections.replace(",", "+")))
    t0 = time.monotonic()
    try:
        while True:
            st, b, _ = get("http://127.0.0.1:%d/admin/projections" % admin, timeout=5) \
                if _up(admin) else (0, None, 0)
            if st == 200 and all(p["lag"] == 0 and p["state"] == "running" for p in b["projections"]):
                break
            if d.p.poll() is not None:
                raise SystemExit("projector exited: see %s" % d.log)
            time.sleep(0.5)
        build_s = time.monotonic() - t0
        bodies, lat = [], []
        for cid in ids:
            st, body, dt = get("http://127.0.0.1:%d/v1/carts/%s?as_of=%d" % (port, cid, now_ms))
            if st != 200:
                raise SystemExit("as_of for %s: HTTP %d %s" % (cid, st, body))
            bodies.append(body)
            lat.append(dt * 1000)
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin) as r:
            metrics = r.read().decode()
        index = int(re.search(r'escqrs_projector_as_of_total\{path="index"\} (\d+)', metrics).group(1))
        return build_s, lat, bodies, index
    finally:
        d.stop()
        shutil.rmtree(store, ignore_errors=True)


def _up(admin):
    try:
        urllib.request.urlopen("http://127.0.0.1:%d/healthz" % admin, timeout=2).read()
        return True
    except Exception:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--topic-prefix", required=True)
    ap.add_argument("--queries", type=int, default=10)
    a = ap.parse_args()
    topic = a.topic_prefix + ".cart.events"
    ids = pick_ids(topic, a.queries)
    now_ms = int(time.time() * 1000)
    with tempfile.TemporaryDirectory(prefix="asof-bench-") as tmp:
        res = {}
        for path, projs in (("log", "cart_view"), ("index", "cart_view,cart_history")):
            build_s, lat, bodies, index = run_projector(a.build, a.topic_prefix, projs, ids, now_ms,
                                                        tmp)
            res[path] = bodies
            print("RESULT phase=as_of path=%s projections=%s queries=%d build_s=%.1f "
                  "p50_ms=%.1f max_ms=%.1f mean_ms=%.1f index_answers=%d"
                  % (path, projs, len(lat), build_s, statistics.median(lat), max(lat),
                     statistics.mean(lat), index), flush=True)
        if res["log"] != res["index"]:
            raise SystemExit("the two paths answered differently")
        print("# the log and index paths answered the same %d bodies" % len(ids), flush=True)


if __name__ == "__main__":
    main()
