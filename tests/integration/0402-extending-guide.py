#!/usr/bin/python3
"""0402-extending-guide — docs/extending.md, executed: every ```sh block of the guide, in
order, in one bash (`set -euo pipefail`), so the guide cannot drift from the code.

The guide's variables are given values for the test: ESCQRS_SRC is this checkout,
ESCQRS_BUILD this build (step 1 then only installs it), PREFIX and WORK are temporary
directories.  Its `scripts/stack up` and `down` run a stack of its own (a temporary
ESCQRS_STACK_STATE_DIR on free ports, as test 0205 does), and the programs of the guide
reach it through ESCQRS_KAFKA_BOOTSTRAP_SERVERS and ESCQRS_REGISTRY_URL (configuration
from the environment, docs/configuration.md); nothing else is changed.  The guide's own
ports (8072, 8080, 8090, 8091) must be free: the demo uses them.

Checked in the output: the example's tests pass, the module is installed, the restock
and the reservation are accepted, the over-reservation is refused 422
`insufficient_stock`, the query with min_position shows 8 reserved and 2 available, the
first release is accepted, the second refused with exit code 3, and the stack and the
daemons stop.

  0402-extending-guide.py         (ctest: integration.0402-extending-guide)
Environment: ESCQRS_BUILD_DIR, ESCQRS_SOURCE_DIR.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from escqrs_pipeline import free_port  # noqa: E402

SRC = os.environ.get("ESCQRS_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("ESCQRS_BUILD_DIR") or os.path.join(SRC, "build-test")
GUIDE = os.path.join(SRC, "docs", "extending.md")
GUIDE_PORTS = (8072, 8080, 8090, 8091)

passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
    print("%s %s" % ("ok  " if cond else "FAIL", what), flush=True)
    return cond


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def guide_blocks():
    with open(GUIDE) as f:
        text = f.read()
    return re.findall(r"^```sh\n(.*?)^```$", text, re.M | re.S)


def json_docs(out):
    """Every JSON object in the output, each with the HTTP status printed after it (or None)."""
    dec = json.JSONDecoder()
    docs, i = [], 0
    while True:
        i = out.find('{"', i)
        if i < 0:
            return docs
        try:
            doc, end = dec.raw_decode(out, i)
        except ValueError:
            i += 1
            continue
        m = re.match(r" HTTP (\d+)", out[end:])
        docs.append((doc, m.group(1) if m else None))
        i = end


def main():
    blocks = guide_blocks()
    if not check(len(blocks) >= 8, "docs/extending.md has %d sh blocks" % len(blocks)):
        return 1
    busy = [p for p in GUIDE_PORTS if not port_free(p)]
    if not check(not busy, "the guide's ports are free (%s in use: stop the demo with "
                 "scripts/demo-stop)" % busy if busy else "the guide's ports are free"):
        return 1
    tmp = tempfile.mkdtemp(prefix="escqrs-it0402-")
    kport, cport, rport = free_port(), free_port(), free_port()
    env = dict(os.environ,
               ESCQRS_SRC=SRC, ESCQRS_BUILD=BUILD,
               PREFIX=os.path.join(tmp, "prefix"), WORK=os.path.join(tmp, "work"),
               ESCQRS_STACK_PROFILE="demo", ESCQRS_STACK_STATE_DIR=os.path.join(tmp, "stack"),
               ESCQRS_STACK_KAFKA_PORT=str(kport), ESCQRS_STACK_CONTROLLER_PORT=str(cport),
               ESCQRS_STACK_REGISTRY_PORT=str(rport),
               ESCQRS_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:%d" % kport,
               ESCQRS_REGISTRY_URL="http://127.0.0.1:%d/apis/ccompat/v7" % rport)
    script = "set -euo pipefail\n" + "\n".join(
        "echo '### guide block %d'\n%s" % (i + 1, b) for i, b in enumerate(blocks))
    path = os.path.join(tmp, "guide.sh")
    with open(path, "w") as f:
        f.write(script)
    try:
        p = subprocess.run(["bash", path], env=env, capture_output=True, text=True, timeout=900)
        out = p.stdout
        sys.stdout.write(out[-6000:])
        if p.returncode != 0:
            sys.stdout.write(p.stderr[-4000:])
        check(p.returncode == 0, "every block of the guide ran (exit %d)" % p.returncode)
        check(re.search(r"100% tests passed, 0 tests failed out of [1-9]", out),
              "the example's tests pass")
        check("lib/escqrs/modules/escqrs-inventory.so" in out, "the module is installed")
        docs = json_docs(out)
        answers = [d for d, _ in docs if "command_id" in d]
        types = [e["type"] for d in answers for e in d.get("events", [])]
        check(types[:2] == ["Restocked", "StockReserved"], "restock and reserve accepted: %s" % types)
        refused = [(d, st) for d, st in docs if d.get("error") == "rejected"]
        check(any(d.get("reason") == "insufficient_stock" and st == "422" for d, st in refused),
              "reserving past the stock is refused 422 insufficient_stock")
        views = [d for d, _ in docs if "available" in d]
        check(views and views[0].get("reserved") == 8 and views[0].get("available") == 2,
              "the query with min_position: %s" % (views[0] if views else None))
        check("ReservationReleased" in types, "the first release is accepted")
        check(any(d.get("reason") == "already_released" for d, _ in refused) and
              "refused, exit code 3" in out, "the second release is refused, exit code 3")
        check(types[-1:] == ["StockReserved"] and len(answers) >= 4,
              "escqrs send reserve accepted: %s" % types)
    finally:
        # whatever the guide left running when it stopped early
        run_dir = os.path.join(tmp, "work", "run")
        for pidfile in (os.listdir(run_dir) if os.path.isdir(run_dir) else []):
            if pidfile.endswith(".pid"):
                try:
                    os.kill(int(open(os.path.join(run_dir, pidfile)).read()), signal.SIGTERM)
                except (OSError, ValueError):
                    pass
        subprocess.run([os.path.join(SRC, "scripts", "stack"), "down"], env=env,
                       capture_output=True, timeout=120)
    if failed == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print("kept %s for a look" % tmp)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
