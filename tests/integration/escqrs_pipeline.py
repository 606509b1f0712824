"""escqrs_pipeline — what the Python integration tests share: checks that count, free ports,
HTTP with headers, the three daemons of a build tree under a fresh topic prefix.

Environment: ESCQRS_BUILD_DIR, ESCQRS_SOURCE_DIR, ESCQRS_TEST_BOOTSTRAP, ESCQRS_TEST_REGISTRY.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

SRC = os.environ.get("ESCQRS_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("ESCQRS_BUILD_DIR") or os.path.join(SRC, "build-test")
BOOTSTRAP = os.environ.get("ESCQRS_TEST_BOOTSTRAP") or "127.0.0.1:19092"
REGISTRY = os.environ.get("ESCQRS_TEST_REGISTRY") or "http://127.0.0.1:18081/apis/ccompat/v7"

counts = {"passed": 0, "failed": 0}


class Abort(Exception):
    """The test cannot go on (a daemon not ready, a command failed)."""


def check(cond, what):
    counts["passed" if cond else "failed"] += 1
    print("%s %s" % ("ok  " if cond else "FAIL", what), flush=True)
    return cond


def finish(name):
    """Print the tally and exit non-zero on any failure."""
    print("%s: %d passed, %d failed" % (name, counts["passed"], counts["failed"]), flush=True)
    sys.exit(1 if counts["failed"] else 0)


def run(cmd, what, timeout=300, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if p.returncode != 0:
        sys.stdout.write(p.stdout[-4000:] + p.stderr[-4000:])
        raise Abort("%s: exit %d: %s" % (what, p.returncode, " ".join(cmd)))
    return p


_ports_given = set()


def free_port():
    """A free loopback port, never the same twice in this run (two daemons started one after
    the other could otherwise get the same port before the first listens)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def http(method, url, body=None, headers=None, timeout=30, raw_body=None):
    """(status, decoded JSON body or text, response headers); status 0 when unreachable."""
    data = raw_body if raw_body is not None else (
        json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            try:
                return r.status, json.loads(raw or b"null"), dict(r.headers)
            except ValueError:  # /metrics and other text
                return r.status, raw.decode(errors="replace"), dict(r.headers)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw), dict(e.headers)
        except ValueError:
            return e.code, raw.decode(errors="replace"), dict(e.headers)
    except (urllib.error.URLError, ConnectionError, socket.timeout):
        return 0, None, {}


def wait_ready(url, what, seconds=90):
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        st, _, _ = http("GET", url + "/readyz", timeout=5)
        if st == 200:
            check(True, "%s ready" % what)
            return
        time.sleep(0.3)
    raise Abort("%s not ready in %d s" % (what, seconds))


class Daemon:
    """One program of the build tree, its output in @log (appended across restarts)."""

    def __init__(self, name, argv, log):
        self.name, self.argv, self.log = name, argv, log
        self.p = None
        self.start()

    def start(self):
        self.p = subprocess.Popen(self.argv, stdout=open(self.log, "a"), stderr=subprocess.STDOUT)

    def kill9(self):
        self.p.kill()
        self.p.wait()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode

    def output(self):
        with open(self.log, errors="replace") as f:
            return f.read()


def program(name):
    return os.path.join(BUILD, name) if os.path.isabs(name) else {
        "escqrs": os.path.join(BUILD, "cli", "escqrs"),
        "escqrs-gateway": os.path.join(BUILD, "producers", "gateway", "escqrs-gateway"),
        "escqrs-command-service": os.path.join(BUILD, "producers", "command-service",
                                               "escqrs-command-service"),
        "escqrs-projector": os.path.join(BUILD, "consumers", "projector", "escqrs-projector"),
    }[name]


class Pipeline:
    """Gateway, one command service and one projector for @aggregate under topic prefix
    @prefix, state and logs in @tmp.  Extra --set values per program in @sets.  The
    gateway and the projector serve every loaded module, so every aggregate of
    @all_aggregates gets its topics."""

    def __init__(self, tmp, prefix, aggregate, sets=None, all_aggregates=("cart", "account")):
        sets = sets or {}
        self.tmp, self.prefix, self.aggregate = tmp, prefix, aggregate
        self.common = ["--set", "kafka.bootstrap.servers=" + BOOTSTRAP,
                       "--set", "registry.url=" + REGISTRY,
                       "--set", "aggregate.prefix=" + prefix]
        gw, cs, pj, adm = free_port(), free_port(), free_port(), free_port()
        self.gateway, self.query, self.admin, self.service = (
            "http://127.0.0.1:%d" % p for p in (gw, pj, adm, cs))
        self.cli = [program("escqrs")] + self.common + [
            "--set", "gateway.url=" + self.gateway, "--set", "projector.admin.url=" + self.admin,
            "--set", "projector.url=" + self.query]
        for agg in all_aggregates:
            run(self.cli + ["topics", "create", agg, "--dlq", "projector"], "topics create " + agg)
        run(self.cli + ["schemas", "register"], "schemas register")

        def extra(prog):
            out = []
            for kv in sets.get(prog, []):
                out += ["--set", kv]
            return out

        self.daemons = {}
        self.daemons["command-service"] = Daemon(
            "command-service", [program("escqrs-command-service")] + self.common +
            ["--set", "aggregate=" + aggregate, "--set", "store.path=" + os.path.join(tmp, "cs"),
             "--set", "http.listen=127.0.0.1:%d" % cs] + extra("command-service"),
            os.path.join(tmp, "cs.log"))
        self.daemons["gateway"] = Daemon(
            "gateway", [program("escqrs-gateway")] + self.common +
            ["--set", "http.listen=127.0.0.1:%d" % gw] + extra("gateway"),
            os.path.join(tmp, "gw.log"))
        self.daemons["projector"] = Daemon(
            "projector", [program("escqrs-projector")] + self.common +
            ["--set", "store.path=" + os.path.join(tmp, "pj"),
             "--set", "http.listen=127.0.0.1:%d" % pj,
             "--set", "admin.listen=127.0.0.1:%d" % adm] + extra("projector"),
            os.path.join(tmp, "pj.log"))
        wait_ready(self.service, "command service")
        wait_ready(self.gateway, "gateway")
        wait_ready(self.admin, "projector")

    def stop(self):
        for d in self.daemons.values():
            rc = d.stop()
            if not check(rc == 0, "%s stopped cleanly (exit %s)" % (d.name, rc)):
                sys.stdout.write(d.output()[-3000:])
