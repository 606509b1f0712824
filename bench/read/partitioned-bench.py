#!/usr/bin/python3
"""partitioned-bench — the initial build of a view from offset 0 by one and by two projector
instances in partitioned mode (projector.mode=partitioned), measured in the same run on the
same topic: wall clock until every partition is applied, and CPU seconds per million events
(user + system of every instance, from /proc).

  bench/read/partitioned-bench.py --build DIR --topic-prefix bench-1000000 [--runs 2]
                                  [--projections cart_view]

Each run starts, on empty stores: 1 instance (it is given every partition), then 2 instances
(the group splits the partitions), and times each set from its start until the instances own
every partition between them, each current and at its high watermark.  A replica-mode
instance is measured in the same run as the reference.  `applied` counts the events the
instances folded (escqrs_projector_events_applied_total): more than the topic holds when
the group first gives every partition to the instance that joined first and then moves
some to the second, which replays them (the first one's slices of them stay unread).  CPU
seconds per million are per million events *of the topic*, so that waste counts.  Prints
`RESULT phase=partitioned ...` lines.  Uses the stack of ESCQRS_TEST_BOOTSTRAP /
ESCQRS_TEST_REGISTRY.  A benchmark: it asserts only that every event was applied.
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

TICKS = os.sysconf("SC_CLK_TCK")


def get_json(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def start(a, store, log, mode, group):
    port, admin = ep.free_port(), ep.free_port()
    argv = [os.path.join(a.build, "consumers", "projector", "escqrs-projector"),
            "--set", "kafka.bootstrap.servers=" + ep.BOOTSTRAP,
            "--set", "registry.url=" + ep.REGISTRY,
            "--set", "aggregate.prefix=%s." % a.topic_prefix,
            "--set", "projections=" + a.projections,
            "--set", "projector.name=" + group,
            "--set", "store.path=" + store,
            "--set", "log.level=warn",
            "--set", "http.listen=127.0.0.1:%d" % port,
            "--set", "admin.listen=127.0.0.1:%d" % admin,
            "--set", "projector.mode=" + mode]
    if mode == "partitioned":
        argv += ["--set", "projector.advertise.url=http://127.0.0.1:%d" % port,
                 "--set", "projector.advertise.admin_url=http://127.0.0.1:%d" % admin]
    return ep.Daemon("projector", argv, log), admin


def settled(admins, names, mode):
    """Every partition owned by exactly one instance, current and at its high watermark."""
    for n in names:
        owned, total = [], None
        for adm in admins:
            try:
                b = get_json("http://127.0.0.1:%d/admin/projections" % adm, timeout=5)
            except Exception:
                return False
            o = next(p for p in b["projections"] if p["name"] == n)
            total = len(o["partitions"])
            if mode == "replica":
                return o["lag"] == 0 and all(p["high"] >= 0 for p in o["partitions"])
            if not o["owned"] or not all(e["current"] for e in o["owned"]) or o["lag"] != 0:
                return False
            owned += [e["partition"] for e in o["owned"]]
        if sorted(owned) != list(range(total)):
            return False
    return True


def applied(admin, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin) as r:
        m = re.search(r'escqrs_projector_events_applied_total\{projection="%s"\} (\d+)' % name,
                      r.read().decode())
    return int(m.group(1)) if m else 0


def topic_events(a):
    out = os.popen("kcat -C -e -q -o beginning -b %s -t %s.cart.events -f 'x\\n' | wc -l"
                   % (ep.BOOTSTRAP, a.topic_prefix)).read()
    return int(out.strip() or 0)


def one_set(a, tmp, run, mode, n, total):
    names = a.projections.split(",")
    procs = []
    try:
        t0 = time.monotonic()
        for i in range(n):
            store = os.path.join(tmp, "%s-%d-%d-%d" % (mode, n, run, i))
            procs.append(start(a, store, store + ".log", mode,
                               "bench-%s-%d-%d-%d" % (mode, n, run, os.getpid())))
        admins = [adm for _, adm in procs]
        while not settled(admins, names, mode):
            for d, _ in procs:
                if d.p.poll() is not None:
                    raise SystemExit("projector exited: see %s" % d.log)
            time.sleep(0.2)
        wall = time.monotonic() - t0
        cpu = sum(cpu_s(d.p.pid) for d, _ in procs)
        done = sum(applied(adm, nm) for adm in admins for nm in names)
        events = total * len(names)
        if done < events:
            raise SystemExit("%s x%d applied %d of %d events" % (mode, n, done, events))
        print("RESULT phase=partitioned run=%d mode=%s instances=%d projections=%s wall_s=%.1f "
              "cpu_s=%.1f events=%d applied=%d cpu_s_per_million=%.2f events_per_s=%.0f"
              % (run, mode, n, a.projections, wall, cpu, events, done, cpu / events * 1e6,
                 events / wall), flush=True)
        return wall, cpu / events * 1e6, done
    finally:
        for d, _ in procs:
            d.stop()
        for i in range(n):
            shutil.rmtree(os.path.join(tmp, "%s-%d-%d-%d" % (mode, n, run, i)),
                          ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--topic-prefix", required=True)
    ap.add_argument("--projections", default="cart_view")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--sets", default="replica:1,partitioned:1,partitioned:2",
                    help="mode:instances,... measured in each run")
    ap.add_argument("--tmp", default=None, help="directory of the stores (default: $TMPDIR)")
    a = ap.parse_args()
    res = {}
    total = topic_events(a)
    with tempfile.TemporaryDirectory(prefix="partitioned-bench-", dir=a.tmp) as tmp:
        for r in range(a.runs):
            for mode, n in ((m, int(k)) for m, k in (x.split(":") for x in a.sets.split(","))):
                res.setdefault((mode, n), []).append(one_set(a, tmp, r + 1, mode, n, total))
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
           for k, v in res.items()}
    if set(med) != {("replica", 1), ("partitioned", 1), ("partitioned", 2)}:
        for k, v in sorted(med.items()):
            print("# median %s x%d: %.1f s, %.2f CPU s/M" % (k + v), flush=True)
        return
    one, two = med[("partitioned", 1)], med[("partitioned", 2)]
    print("# median: replica 1 instance %.1f s, %.2f CPU s/M; partitioned 1 instance %.1f s, "
          "%.2f CPU s/M; 2 instances %.1f s, %.2f CPU s/M; wall clock 1/2 = %.2fx"
          % (med[("replica", 1)] + one + two + (one[0] / two[0],)), flush=True)


if __name__ == "__main__":
    main()
