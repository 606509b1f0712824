#!/usr/bin/python3
"""0308-history-audit-trace — one aggregate's history, the audit of its commands and the
trace context, end to end on the real stack (issue 15; docs/projector.md, "History and
audit", docs/operations.md, "Tracing").

  1. A scripted history of commands on one cart, sent by a client that never retries on
     its own: accepted, accepted with If-Match, a stale If-Match (409), an
     Idempotency-Key, its retry (same body: the first outcome, no new event), the same key
     with another body (409), a checkout, a rejected second checkout (422).  The first
     request carries a W3C traceparent and an X-Correlation-Id.
  2. GET /v1/carts/{id}/events answers exactly the accepted commands' events, in version
     order, each with its command id, the position its command's answer gave, and the
     trace ids; GET /v1/carts/{id}/commands answers every outcome, in order, with status,
     reason, command type and trace ids.  The oracle is the test's own record of what the
     gateway answered, and `escqrs export` of the events and results topics read back and
     folded here (not by the projector).
  3. The first request's trace id is in its command record (value and header), its
     events, its outcome, the gateway's, the command service's and the projector's log
     lines, the HTTP answer's traceparent, and the export.  Without a traceparent a new
     trace starts; the correlation id is never null.
  4. Pagination is stable (pages chained by next_from_version equal the whole); hostile
     query and header values get 400 (or, for a malformed traceparent, a new trace as
     the W3C spec says) and change nothing.
  5. as_of is answered from the history index (escqrs_projector_as_of_total{path="index"})
     and agrees with the events.
  6. Frozen views of both as of the second event's time hold exactly what was there then.
  7. The history and the audit survive kill -9 of the projector, and a blue/green rebuild
     of both ends with the same answers and digests.
  8. The history's store, read by ranges only, builds no Bloom filters and writes 16 KiB
     blocks; the audit's and the view's, which point reads use, keep filters and 4 KiB
     blocks (their RocksDB OPTIONS files); after the rebuild every store is open with
     RocksDB's skip list (the history's shadow, written into a vector memtable, was
     opened again at its swap).
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from escqrs_pipeline import Abort, Pipeline, check, finish, http  # noqa: E402

TRACE_ID = uuid.uuid4().hex  # 32 lowercase hex
TRACEPARENT = "00-%s-%s-01" % (TRACE_ID, uuid.uuid4().hex[:16])
CORRELATION = "order-%s" % uuid.uuid4().hex[:8]


def post(p, cart, verb, body, headers=None):
    return http("POST", "%s/v1/carts/%s/%s" % (p.gateway, cart, verb), body, headers)


def get(p, path):
    st, body, _ = http("GET", p.query + path)
    return st, body


def export(p, topic):
    out = subprocess.run(p.cli + ["export", "--topic", topic], capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        raise Abort("escqrs export %s: %s" % (topic, out.stderr[-2000:]))
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def script(p, cart):
    """Send the scripted history; return what the gateway answered, in order."""
    sent = []  # (what, status, body, headers)

    def send(what, verb, body, headers=None):
        st, b, h = post(p, cart, verb, body, headers)
        sent.append((what, st, b, h))
        return st, b, h

    st, b, h = send("add first", "add-item", {"sku": "a", "quantity": 2, "unit_price_cents": 150},
                    {"traceparent": TRACEPARENT, "tracestate": "vendor=x",
                     "X-Correlation-Id": CORRELATION})
    check(st == 200, "first command accepted: %s %s" % (st, b))
    tp = h.get("traceparent") or h.get("Traceparent") or ""
    check(tp.split("-")[1:2] == [TRACE_ID] and tp != TRACEPARENT,
          "the answer's traceparent continues the trace with the gateway's span: %s" % tp)
    check((h.get("X-Correlation-Id") or h.get("x-correlation-id")) == CORRELATION,
          "the answer returns X-Correlation-Id")
    st, b, _ = send("add if-match 1", "add-item", {"sku": "b", "quantity": 1, "unit_price_cents": 99},
                    {"If-Match": "1"})
    check(st == 200 and b.get("version") == 2, "If-Match 1 accepted at version 2: %s" % b)
    st, b, _ = send("stale if-match", "add-item", {"sku": "c", "quantity": 1, "unit_price_cents": 1},
                    {"If-Match": "1"})
    check(st == 409 and b.get("error") == "version_conflict", "stale If-Match: 409 %s" % b)
    key = str(uuid.uuid4())
    body = {"sku": "d", "quantity": 3, "unit_price_cents": 10}
    st, first, _ = send("idempotency key", "add-item", body, {"Idempotency-Key": key})
    check(st == 200 and first.get("command_id") == key, "Idempotency-Key is the command id")
    st, again, _ = send("retry", "add-item", body, {"Idempotency-Key": key})
    check(st == 200 and again == first, "the retry answers the first outcome: %s" % again)
    st, b, _ = send("key reused", "add-item", {"sku": "e", "quantity": 1, "unit_price_cents": 1},
                    {"Idempotency-Key": key})
    check(st == 409 and b.get("error") == "idempotency_key_reused", "same key, other body: 409")
    st, b, _ = send("checkout", "checkout", {})
    check(st == 200 and b.get("version") == 4, "checkout accepted at version 4: %s" % b)
    st, b, _ = send("checkout again", "checkout", {})
    check(st == 422 and b.get("reason") == "cart_checked_out", "second checkout: 422 %s" % b)
    return sent


def wait_history(p, cart, versions, seqs, seconds=30):
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        st1, ev = get(p, "/v1/carts/%s/events" % cart)
        st2, cm = get(p, "/v1/carts/%s/commands" % cart)
        if st1 == 200 and st2 == 200 and len(ev["events"]) >= versions and \
                len(cm["commands"]) >= seqs:
            return ev, cm
        time.sleep(0.2)
    raise Abort("history of %s not complete in %d s" % (cart, seconds))


def comparable(entries, keys):
    return [{k: e.get(k) for k in keys} for e in entries]


EVENT_KEYS = ("version", "type", "command_id", "event_id", "payload", "position",
              "correlation_id", "traceparent", "trace_id")
COMMAND_KEYS = ("command_id", "status", "reason", "version", "actual_version", "expected_version",
                "command_type", "position", "correlation_id", "traceparent", "trace_id")


def log_fold(p, prefix, cart):
    """The history and the audit as the test folds them from `escqrs export`."""
    events = sorted((r for r in export(p, prefix + "cart.events") if r["key"] == cart),
                    key=lambda r: r["value"]["version"])
    hist = []
    for r in events:
        v = r["value"]
        (etype, payload), = v["payload"].items()
        tp = (v.get("traceparent") or {}).get("string") if v.get("traceparent") else None
        hist.append({"version": v["version"], "type": etype.split(".")[-1],
                     "command_id": v["command_id"], "event_id": v["event_id"],
                     "payload": payload, "position": "%d:%d" % (r["partition"], r["offset"]),
                     "correlation_id": (v.get("correlation_id") or {}).get("string"),
                     "traceparent": tp, "trace_id": tp.split("-")[1] if tp else None,
                     "headers": r["headers"]})
    results = [r for r in export(p, prefix + "cart.command-results") if r["key"] == cart]
    results.sort(key=lambda r: (r["partition"], r["offset"]))
    audit = []
    for r in results:
        v = r["value"]

        def opt(name):
            x = v.get(name)
            return list(x.values())[0] if isinstance(x, dict) else x
        tp = opt("traceparent")
        audit.append({"command_id": v["command_id"], "status": v["status"],
                      "reason": opt("reason"), "version": v["version"],
                      "actual_version": v["actual_version"],
                      "expected_version": opt("expected_version"),
                      "command_type": opt("command_type"), "position": opt("position"),
                      "correlation_id": opt("correlation_id"), "traceparent": tp,
                      "trace_id": tp.split("-")[1] if tp else None, "headers": r["headers"]})
    return hist, audit


def check_against_answers(sent, ev, cm):
    accepted = [(w, b) for (w, st, b, _) in sent if st == 200 and w != "retry"]
    want_versions = [(e["type"], e["version"], b["command_id"])
                     for (_, b) in accepted for e in b["events"]]
    got = [(e["type"], e["version"], e["command_id"]) for e in ev["events"]]
    check(got == want_versions, "/events: exactly the accepted commands' events in order: %s" % got)
    last_pos = {b["command_id"]: b["position"] for (_, b) in accepted}
    check(all(e["position"] == last_pos[e["command_id"]] for e in ev["events"]),
          "/events: positions are those the answers gave")
    statuses = [c["status"] for c in cm["commands"]]
    want = ["ACCEPTED", "ACCEPTED", "VERSION_CONFLICT", "ACCEPTED", "ACCEPTED",
            "IDEMPOTENCY_KEY_REUSED", "ACCEPTED", "REJECTED"]
    check(statuses == want, "/commands: every outcome in order (the retry answered again): %s"
          % statuses)
    check(cm["commands"][7]["reason"] == "cart_checked_out", "/commands: the rejection's reason")
    check(cm["commands"][4]["command_id"] == cm["commands"][3]["command_id"],
          "/commands: the retry is the same command id")
    check(all(c.get("command_type") in ("AddItem", "Checkout") for c in cm["commands"]),
          "/commands: command types: %s" % [c.get("command_type") for c in cm["commands"]])
    check(all(c.get("correlation_id") for c in cm["commands"]) and
          all(e.get("correlation_id") for e in ev["events"]),
          "correlation_id is never null (events and outcomes)")


def check_trace(p, prefix, cart, ev, cm, hist, audit):
    first = ev["events"][0]
    check(first["trace_id"] == TRACE_ID and first["correlation_id"] == CORRELATION,
          "/events: the first event carries the trace id and the correlation id")
    check(cm["commands"][0]["trace_id"] == TRACE_ID, "/commands: its outcome carries the trace id")
    check(all(e["trace_id"] and e["trace_id"] != TRACE_ID for e in ev["events"][1:]),
          "/events: requests without traceparent got traces of their own")
    check(hist[0]["trace_id"] == TRACE_ID and
          TRACE_ID in hist[0]["headers"].get("traceparent", ""),
          "export of the events: value and header carry the trace id")
    check(audit[0]["trace_id"] == TRACE_ID and
          TRACE_ID in audit[0]["headers"].get("traceparent", ""),
          "export of the results: value and header carry the trace id")
    cmds = [r for r in export(p, prefix + "cart.commands") if r["key"] == cart]
    tps = [((r["value"].get("traceparent") or {}).get("string") or "") for r in cmds]
    check(TRACE_ID in tps[0] and TRACE_ID in cmds[0]["headers"].get("traceparent", ""),
          "export of the commands: the command record carries the trace id (value and header)")
    for name, d in p.daemons.items():
        lines = [line for line in d.output().splitlines() if TRACE_ID in line]
        check(any('"trace_id":"%s"' % TRACE_ID in line for line in lines),
              "%s log has lines with trace_id %s (%d)" % (name, TRACE_ID, len(lines)))


def check_pages(p, cart, ev):
    pages, nxt = [], 1
    while nxt:
        st, b = get(p, "/v1/carts/%s/events?from_version=%d&limit=3" % (cart, nxt))
        if not check(st == 200, "page from %d: %s" % (nxt, st)):
            return
        pages += b["events"]
        nxt = b["next_from_version"]
    check(pages == ev["events"], "pages of 3 chained by next_from_version equal the whole")
    st, b = get(p, "/v1/carts/%s/events?from_version=3&limit=1" % cart)
    check(st == 200 and [e["version"] for e in b["events"]] == [3] and b["next_from_version"] == 4,
          "from_version=3&limit=1: version 3, next 4")
    st, b = get(p, "/v1/carts/%s/events?from_version=99" % cart)
    check(st == 200 and b["events"] == [] and b["next_from_version"] is None,
          "from_version past the end: an empty page")
    st, b = get(p, "/v1/carts/%s-nobody/events" % cart)
    check(st == 404, "an aggregate without events: 404")


def check_hostile(p, cart, ev, cm):
    for q in ("from_version=0", "from_version=-1", "from_version=abc", "from_version=1.5",
              "from_version=9223372036854775808", "limit=0", "limit=1001", "limit=x",
              "from_seq=0"):
        res = "commands" if q.startswith("from_seq") else "events"
        st, b = get(p, "/v1/carts/%s/%s?%s" % (cart, res, q))
        check(st == 400 and b.get("error") == "invalid_query" and b.get("message"),
              "%s: 400 invalid_query (%s)" % (q, b.get("message") if isinstance(b, dict) else b))
    before = len(export(p, p.prefix + "cart.commands"))
    st, b, _ = post(p, cart + "-x", "add-item", {"sku": "a", "quantity": 1, "unit_price_cents": 1},
                    {"X-Correlation-Id": "c" * 129})
    check(st == 400 and isinstance(b, dict) and b.get("message"),
          "a 129-byte X-Correlation-Id: 400 (%s)" % (b.get("message") if isinstance(b, dict) else b))
    st, b, _ = post(p, cart + "-x", "add-item", {"sku": "a", "quantity": 1, "unit_price_cents": 1},
                    {"X-Correlation-Id": "bad\x01id"})
    check(st == 400, "an X-Correlation-Id with a control character: 400")
    check(len(export(p, p.prefix + "cart.commands")) == before,
          "refused requests wrote no command")
    for bad in ("00-%s-%s-01" % ("0" * 32, "1" * 16), "00-%s-%s-01" % (TRACE_ID.upper(), "1" * 16),
                "garbage", "ff-%s-%s-01" % (TRACE_ID, "1" * 16)):
        st, b, h = post(p, cart + "-y", "add-item", {"sku": "a", "quantity": 1,
                                                      "unit_price_cents": 1}, {"traceparent": bad})
        tp = h.get("traceparent") or h.get("Traceparent") or ""
        check(st == 200 and re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$", tp) and
              TRACE_ID.upper() not in tp and "0" * 32 not in tp,
              "malformed traceparent %r ignored: accepted with a new trace %s" % (bad[:20], tp))
    st1, ev2 = get(p, "/v1/carts/%s/events" % cart)
    st2, cm2 = get(p, "/v1/carts/%s/commands" % cart)
    check(ev2 == ev and cm2 == cm, "hostile requests changed nothing of the cart's history")


def check_as_of(p, cart, ev):
    def metric():
        st, text, _ = http("GET", p.admin + "/metrics")
        m = re.search(r'escqrs_projector_as_of_total\{path="index"\} (\d+)', str(text))
        return int(m.group(1)) if m else -1
    n0 = metric()
    ok = 0
    for e in ev["events"]:
        st, b = get(p, "/v1/carts/%s?as_of=%d" % (cart, e["timestamp"]))
        ok += st == 200 and b.get("version") == e["version"]
    check(ok == len(ev["events"]), "as_of each event's time answers its version (%d/%d)"
          % (ok, len(ev["events"])))
    check(metric() - n0 == len(ev["events"]),
          "as_of answered from the history index (%d of %d)" % (metric() - n0, len(ev["events"])))


def digests(p):
    """The views' digests (the offsets may move past transaction markers on a restart)."""
    out = {}
    for name in ("cart_history", "cart_commands"):
        st, b, _ = http("GET", "%s/admin/projections/%s/digest" % (p.admin, name))
        out[name] = (b.get("view_keys"), b.get("views_fnv1a64")) if st == 200 else None
    return out


def check_frozen(p, cart, ev, cm):
    """A frozen view of the history and of the audit as of the second event's time."""
    until = ev["events"][1]["timestamp"]
    for name in ("cart_history", "cart_commands"):
        r = subprocess.run(p.cli + ["freeze", name, "--until", str(until), "--label", "v2"],
                           capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, "escqrs freeze %s --until %d: exit %d %s"
              % (name, until, r.returncode, r.stderr[-300:]))
    st, b = get(p, "/v1/carts/%s/events?view=v2" % cart)
    check(st == 200 and b["events"] == ev["events"][:2],
          "the frozen history holds exactly the first two events (%s)"
          % [e["version"] for e in b.get("events", [])] if isinstance(b, dict) else b)
    st, b = get(p, "/v1/carts/%s/commands?view=v2" % cart)
    want = [c for c in cm["commands"] if c["timestamp"] <= until]
    check(st == 200 and b["commands"] == want,
          "the frozen audit holds the outcomes recorded by then (%d)" % len(want))


def check_survives(p, cart, ev, cm):
    d0 = digests(p)
    pj = p.daemons["projector"]
    pj.kill9()
    pj.start()
    t_end = time.monotonic() + 60
    while time.monotonic() < t_end and http("GET", p.admin + "/readyz")[0] != 200:
        time.sleep(0.3)
    st1, ev2 = get(p, "/v1/carts/%s/events" % cart)
    st2, cm2 = get(p, "/v1/carts/%s/commands" % cart)
    check(ev2 == ev and cm2 == cm, "after kill -9 of the projector: the same history and audit")
    check(digests(p) == d0, "after kill -9: the same digests")
    for name in ("cart_history", "cart_commands"):
        r = subprocess.run(p.cli + ["rebuild", name], capture_output=True, text=True, timeout=300)
        check(r.returncode == 0, "escqrs rebuild %s: exit %d %s" % (name, r.returncode,
                                                                    r.stderr[-300:]))
    check(digests(p) == d0, "after a rebuild of both: the same digests %s" % d0)
    st1, ev3 = get(p, "/v1/carts/%s/events" % cart)
    st2, cm3 = get(p, "/v1/carts/%s/commands" % cart)
    check(ev3 == ev and cm3 == cm, "after the rebuild: the same history and audit")


def check_store_options(tmp):
    for name, scans in (("cart_history", True), ("cart_commands", False), ("cart_view", False)):
        files = glob.glob(os.path.join(tmp, "pj", name, "*", "OPTIONS-*"))
        said = set()
        for f in files:
            with open(f) as fh:
                said |= set(re.findall(r"^\s*((?:filter_policy|block_size)=\w+)$", fh.read(), re.M))
        want = ({"filter_policy=nullptr", "block_size=16384"} if scans else
                {"filter_policy=bloomfilter", "block_size=4096"})
        check(files and said == want, "%s's store: %s in %d OPTIONS files, %s wanted"
              % (name, sorted(said), len(files), sorted(want)))
        # the store open now (the history's was rebuilt into a vector memtable, unread
        # until its swap) reads through the skip list: its newest OPTIONS file says so
        newest = {}
        for f in files:
            d = os.path.dirname(f)
            newest[d] = max(newest.get(d, f), f)
        memtables = {}
        for f in newest.values():
            with open(f) as fh:
                m = re.search(r"^\s*memtable_factory=(.*)$", fh.read(), re.M)
            memtables[os.path.relpath(f, tmp)] = m.group(1) if m else None
        check(all(v == "SkipListFactory" for v in memtables.values()),
              "%s's store opened with the skip list: %s" % (name, memtables))


def main():
    prefix = "it0308-%s." % uuid.uuid4().hex[:8]
    cart = "cart-%s" % uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="it0308-") as tmp:
        p = Pipeline(tmp, prefix, "cart", sets={
            "projector": ["projections=cart_view,cart_history,cart_commands", "log.level=debug"],
            "gateway": ["log.level=debug"], "command-service": ["log.level=debug"]})
        try:
            sent = script(p, cart)
            ev, cm = wait_history(p, cart, 4, 8)
            check_against_answers(sent, ev, cm)
            hist, audit = log_fold(p, prefix, cart)
            check(comparable(ev["events"], EVENT_KEYS) == comparable(hist, EVENT_KEYS),
                  "/events equals the test's own fold of the exported events topic")
            check(comparable(cm["commands"], COMMAND_KEYS) == comparable(audit, COMMAND_KEYS),
                  "/commands equals the test's own fold of the exported results topic")
            check_trace(p, prefix, cart, ev, cm, hist, audit)
            check_pages(p, cart, ev)
            check_hostile(p, cart, ev, cm)
            check_as_of(p, cart, ev)
            check_frozen(p, cart, ev, cm)
            check_survives(p, cart, ev, cm)
            check_store_options(tmp)
        except Abort as e:
            check(False, "aborted: %s" % e)
        except Exception:  # a bug of the test or an answer of the wrong shape: a failure
            import traceback
            traceback.print_exc()
            check(False, "aborted by an exception")
        finally:
            p.stop()
    finish("0308-history-audit-trace")


if __name__ == "__main__":
    main()
