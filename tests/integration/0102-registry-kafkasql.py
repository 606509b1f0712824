#!/usr/bin/python3
"""0102-registry-kafkasql — the registry as Kubernetes deploys it: Apicurio on kafkasql.

The local stack runs Apicurio on H2; k8s/ runs it on kafkasql storage, where every
write goes through Kafka topics that must exist beforehand (the broker does not
auto-create topics, and neither does the registry: APICURIO_KAFKASQL_TOPIC_AUTO_CREATE
is false).  This test runs the same Apicurio jar as scripts/stack on the test broker,
configured from the rendered prod overlay, so a topic, setting or variable missing
there fails here:

  1. `kubectl kustomize k8s/overlays/prod` (ESCQRS_IT0102_K8S picks another
     kustomization); the registry container's env, the KafkaTopics it names
     (scripts/k8s-validate/registry-kafka.json lists the variables that name topics,
     and their defaults; checked against the jar's application.properties);
  2. creates those KafkaTopics, and only those, on the broker: run-unique names
     (prefix it0102-<run>-), the manifest's partitions and config, one replica and
     min.insync.replicas 1 (one broker);
  3. starts the registry with the container's env (Kafka credentials and TLS left
     out: the test broker is plaintext), on a free port, with a small heap;
  4. `escqrs schemas register` as in docs/operations.md, then checks every subject of
     schemas/, GET /schemas/ids/{id}, PUT /config/{subject} BACKWARD_TRANSITIVE, a
     compatible change (check and register pass) and an incompatible one (both fail);
  5. checks that the consumer groups it made are allowed by its KafkaUser's ACLs;
  6. restarts it (a container restart: same env) and checks that every subject,
     version, id and level came back from the journal.

About 30 s when all is well.  A missing topic costs the registry's 60 s metadata wait
per write (the CLI gives up after its own timeouts; the test then shows the registry's
answer), and a registry not ready within the deadline fails; the whole run stays under
ctest's TIMEOUT.  The JVM is stopped and the topics deleted on every exit; the JVM also
dies with this process (PR_SET_PDEATHSIG) if the test is killed.

  0102-registry-kafkasql.py ESCQRS_CLI      (ctest: integration.0102-registry-kafkasql)
Environment: ESCQRS_TEST_BOOTSTRAP (default 127.0.0.1:19092), ESCQRS_SOURCE_DIR.
"""
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile

import yaml
from confluent_kafka.admin import AdminClient, NewTopic

SRC = os.environ.get("ESCQRS_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BOOTSTRAP = os.environ.get("ESCQRS_TEST_BOOTSTRAP") or "127.0.0.1:19092"
K8S = os.environ.get("ESCQRS_IT0102_K8S") or os.path.join(SRC, "k8s", "overlays", "prod")
DEADLINE = time.monotonic() + 240  # ctest's TIMEOUT is larger: cleanup always runs
RUN = "it0102-%s-" % uuid.uuid4().hex[:8]
POD = RUN + "registry-0"  # for env taken from the pod's metadata.name

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


def left():
    return DEADLINE - time.monotonic()


# ------------------------------------------------------------------ manifests

def render(kdir):
    try:
        out = subprocess.run(["kubectl", "kustomize", kdir], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise Abort("kubectl kustomize %s failed (kubectl is needed, as for scripts/check-k8s): %s%s"
                    % (kdir, e, getattr(e, "stderr", "") or ""))
    return [o for o in yaml.safe_load_all(out.stdout) if o]


def registry_container(objs):
    for o in objs:
        if o.get("kind") != "Deployment":
            continue
        for c in o["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in c.get("env", [])}
            if env.get("APICURIO_STORAGE_KIND", {}).get("value") == "kafkasql":
                return o, c
    raise Abort("no Deployment container with APICURIO_STORAGE_KIND=kafkasql in %s" % K8S)


def expand(value, env):
    """Kubernetes' $(VAR) expansion, from variables defined earlier."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def registry_env(container):
    """The container's env as the test runs it: credentials and TLS out, our broker in."""
    env = {}
    for e in container.get("env", []):
        name = e["name"]
        if "value" in e:
            env[name] = expand(str(e["value"]), env)
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[name] = POD
        # other valueFrom (the SASL secret) cannot apply to a plaintext broker
    for name in list(env):
        if re.match(r"APICURIO_KAFKA_COMMON_(SECURITY|SASL|SSL)_", name):
            del env[name]
    env["APICURIO_KAFKASQL_BOOTSTRAP_SERVERS"] = BOOTSTRAP
    return env


def registry_user(container, objs):
    users = {o["metadata"]["name"]: o for o in objs if o.get("kind") == "KafkaUser"}
    for e in container.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["name"] in users:
            return users[ref["name"]]
    raise Abort("the registry container reads no KafkaUser's Secret")


def acl_allows(user, rtype, name, op):
    for acl in user["spec"].get("authorization", {}).get("acls", []):
        r = acl.get("resource", {})
        if r.get("type") != rtype:
            continue
        pattern = r.get("patternType", "literal")
        hit = name == r.get("name") if pattern == "literal" else name.startswith(r.get("name", ""))
        if hit and (op in acl.get("operations", []) or "All" in acl.get("operations", [])):
            return True
    return False


# ------------------------------------------------------------------ the jar

def pom_version():
    with open(os.path.join(SRC, "scripts", "stack.d", "registry", "pom.xml")) as f:
        return re.search(r"<registry.version>([^<]+)</registry.version>", f.read()).group(1)


def find_jar(version):
    jar = os.path.join(SRC, ".local", "cache", "apicurio-registry-" + version,
                       "apicurio-registry-app-%s-runner.jar" % version)
    if not os.path.exists(jar):
        # the same pinned fetch as `scripts/stack up` (which `make test` ran already)
        subprocess.run([os.path.join(SRC, "scripts", "stack"), "fetch"], check=True)
    return jar


def jar_properties(jar):
    props = {}
    with zipfile.ZipFile(jar) as z:
        for line in z.read("application.properties").decode().splitlines():
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                props[k.strip()] = v.strip().replace("\\:", ":")
    return props


# ------------------------------------------------------------------ processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Registry:
    def __init__(self, jar, env, port, workdir):
        self.jar, self.env, self.port, self.workdir = jar, env, port, workdir
        self.proc = None
        self.log = os.path.join(workdir, "registry.log")
        self.url = "http://127.0.0.1:%d" % port

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APICURIO_", "QUARKUS_", "ESCQRS_"))}
        env.update(self.env)
        env.update({
            "QUARKUS_HTTP_HOST": "127.0.0.1",
            "QUARKUS_HTTP_PORT": str(self.port),
            "APICURIO_STORAGE_SNAPSHOT_LOCATION": self.workdir,
        })
        # the local stack's JVM flags (scripts/stack), a smaller heap
        cmd = ["java", "-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               "-XX:+ExitOnOutOfMemoryError", "-jar", self.jar]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir,
                                         preexec_fn=die_with_parent)
        start = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise Abort("the registry exited (%d) before it was ready" % self.proc.returncode)
            if left() < 0:
                raise Abort("the registry was not ready in time")
            status, _ = http("GET", self.url + "/health/ready", timeout=2)
            if status == 200 and http("GET", self.ccompat("/subjects"), timeout=2)[0] == 200:
                print("     registry ready after %.1f s (pid %d, port %d)"
                      % (time.monotonic() - start, self.proc.pid, self.port), flush=True)
                return
            time.sleep(0.5)

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def ccompat(self, path):
        return self.url + "/apis/ccompat/v7" + path

    def tail(self, n=30):
        """The log's last lines, without the access log and the start banner."""
        try:
            with open(self.log, errors="replace") as f:
                lines = [line[:400] for line in f if re.match(r"\d{4}-", line) and "accesslog" not in line]
            return "".join(lines[-n:])
        except OSError:
            return ""


def http(method, url, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=max(1, min(timeout, left()))) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, None
    except (OSError, ValueError) as e:
        return 0, str(e)


def cli(escqrs, registry, *args, timeout=60):
    """`escqrs schemas ARGS` against the registry: (exit status or None if killed, output)."""
    cmd = [escqrs, "--set", "registry.url=" + registry.ccompat(""), "schemas"] + list(args)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=max(5, min(timeout, left())))
    except subprocess.TimeoutExpired as e:
        text = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        return None, "%s%s(killed after %d s: stdout is block-buffered, lines may be missing)\n" % (
            text(e.stdout), text(e.stderr), e.timeout)
    return r.returncode, r.stdout + r.stderr


def indent(text):
    return "".join("     | %s\n" % line for line in text.rstrip().splitlines())


# ------------------------------------------------------------------ the test

def expected_subjects(schema_dir):
    names = sorted(f[:-5] for f in os.listdir(schema_dir) if f.endswith(".avsc"))
    aggs = [n[:-len(".events")] for n in names if n.endswith(".events")]
    subjects = {}
    for n in names:
        with open(os.path.join(schema_dir, n + ".avsc")) as f:
            text = json.load(f)
        per_aggregate = {"command-result": ".command-results", "aggregate-state": ".state"}
        if n in per_aggregate:  # the library's own schemas: one subject per aggregate's topic
            for a in aggs:
                subjects[a + per_aggregate[n] + "-value"] = text
        else:
            subjects[n + "-value"] = text
    return subjects


def state(reg, subjects):
    """Everything the registry answers about our subjects: versions, ids, schemas, levels."""
    out = {}
    for s in subjects:
        st, versions = http("GET", reg.ccompat("/subjects/%s/versions" % s))
        entry = {"versions": versions if st == 200 else st}
        for v in versions if st == 200 else []:
            st2, body = http("GET", reg.ccompat("/subjects/%s/versions/%d" % (s, v)))
            entry[v] = (body.get("id"), json.loads(body.get("schema"))) if st2 == 200 else st2
        st3, cfg = http("GET", reg.ccompat("/config/%s" % s))
        entry["level"] = cfg.get("compatibilityLevel") if st3 == 200 else st3
        out[s] = entry
    return out


def changed_schema(schema_dir, out_dir, name, field):
    shutil.copytree(schema_dir, out_dir)
    path = os.path.join(out_dir, name + ".avsc")
    with open(path) as f:
        schema = json.load(f)
    schema["fields"].append(field)
    with open(path, "w") as f:
        json.dump(schema, f, indent=2)
    return out_dir


def run(escqrs, work):
    version = pom_version()
    jar = find_jar(version)
    spec = json.load(open(os.path.join(SRC, "scripts", "k8s-validate", "registry-kafka.json")))

    # The list of topic variables must be the jar's: same keys, same defaults.
    props = jar_properties(jar)
    jar_topics = {k: v for k, v in props.items() if re.fullmatch(r"apicurio\.[a-z.]*topic", k)}
    ours = {t["property"]: t["default"] for t in spec["topics"]}
    check(spec["version"] == version and jar_topics == ours,
          "registry-kafka.json lists the jar's topic keys and defaults (Apicurio %s: %s)"
          % (version, ", ".join("%s=%s" % kv for kv in sorted(jar_topics.items()))))

    objs = render(K8S)
    deploy, container = registry_container(objs)
    user = registry_user(container, objs)
    env = registry_env(container)
    print("     manifests: %s (Deployment %s, KafkaUser %s)"
          % (os.path.relpath(K8S, SRC) if K8S.startswith(SRC) else K8S,
             deploy["metadata"]["name"], user["metadata"]["name"]), flush=True)
    print("     registry env: %s" % " ".join("%s=%s" % kv for kv in sorted(env.items())), flush=True)
    check(env.get("APICURIO_KAFKASQL_TOPIC_AUTO_CREATE") == "false",
          "the registry does not create topics itself (APICURIO_KAFKASQL_TOPIC_AUTO_CREATE=false)")

    kafkatopics = {o.get("spec", {}).get("topicName") or o["metadata"]["name"]: o
                   for o in objs if o.get("kind") == "KafkaTopic"}
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    created = []
    try:
        setup_and_test(escqrs, work, jar, spec, env, user, kafkatopics, admin, created)
    finally:
        if created:
            for topic, fut in admin.delete_topics(created, operation_timeout=30).items():
                try:
                    fut.result()
                except Exception as e:  # cleanup goes on
                    print("     could not delete %s: %s" % (topic, e))


def setup_and_test(escqrs, work, jar, spec, env, user, kafkatopics, admin, created):
    new = []
    for t in spec["topics"]:
        name = env.get(t["env"], t["default"])
        kt = kafkatopics.get(name)
        env[t["env"]] = RUN + name
        if not kt:
            # As in the cluster: nothing creates a topic that has no KafkaTopic.
            bad("%s names topic %s, which no KafkaTopic declares: not created" % (t["env"], name))
            continue
        config = {k: str(v) for k, v in (kt["spec"].get("config") or {}).items()}
        config["min.insync.replicas"] = "1"  # one broker here
        new.append(NewTopic(RUN + name, kt["spec"]["partitions"], 1, config=config))
        print("     topic %s%s: %d partition(s), %s" % (RUN, name, kt["spec"]["partitions"],
              ", ".join("%s=%s" % kv for kv in sorted(config.items()))), flush=True)
    for topic, fut in admin.create_topics(new, operation_timeout=30).items():
        created.append(topic)
        fut.result()

    reg = Registry(jar, env, free_port(), work)
    try:
        reg.start()

        # 4. the runbook's step: register everything (built-in schemas = schemas/).
        subjects = expected_subjects(os.path.join(SRC, "schemas"))
        t0 = time.monotonic()
        rc, out = cli(escqrs, reg, "register", timeout=100)
        print(indent(out), end="")
        if not check(rc == 0, "escqrs schemas register exits 0 (exit %s after %.1f s)" % (rc, time.monotonic() - t0)):
            # What the CLI's 10 s timeouts hide: the registry's own answer.
            t0 = time.monotonic()
            st, body = http("PUT", reg.ccompat("/config/cart.events-value"),
                            {"compatibility": "BACKWARD_TRANSITIVE"}, timeout=75)
            print("     PUT /config/cart.events-value answers %s after %.1f s: %s"
                  % (st, time.monotonic() - t0, json.dumps(body)), flush=True)
            raise Abort("registration failed; the rest needs it")
        ids = dict(re.findall(r"^registered (\S+) id=(\d+)", out, re.M))
        check(set(ids) == set(subjects), "every subject of schemas/ registered: %s" % ", ".join(sorted(ids)))

        for s, text in sorted(subjects.items()):
            st, body = http("GET", reg.ccompat("/schemas/ids/%s" % ids.get(s, 0)))
            check(st == 200 and json.loads(body["schema"]) == text,
                  "GET /schemas/ids/%s answers %s's schema" % (ids.get(s), s))
        events = sorted(s for s in subjects if s.endswith(".events-value"))
        for s in events:
            st, body = http("PUT", reg.ccompat("/config/%s" % s), {"compatibility": "BACKWARD_TRANSITIVE"})
            # Apicurio names the field compatibilityLevel, Confluent compatibility
            level = body.get("compatibility", body.get("compatibilityLevel")) if isinstance(body, dict) else body
            check(st == 200 and level == "BACKWARD_TRANSITIVE",
                  "PUT /config/%s BACKWARD_TRANSITIVE answers 200 (%s %s)" % (s, st, level))
            st, body = http("GET", reg.ccompat("/config/%s" % s))
            check(st == 200 and body.get("compatibilityLevel") == "BACKWARD_TRANSITIVE",
                  "GET /config/%s is BACKWARD_TRANSITIVE" % s)

        # A compatible change (a new field with a default) and an incompatible one
        # (a new field without): check, then register, each through the CLI.
        good = changed_schema(os.path.join(SRC, "schemas"), os.path.join(work, "good"), "cart.events",
                              {"name": "it0102_note", "type": ["null", "string"], "default": None})
        worse = changed_schema(os.path.join(SRC, "schemas"), os.path.join(work, "bad"), "cart.events",
                               {"name": "it0102_required", "type": "string"})
        rc, out = cli(escqrs, reg, "check", "--dir", good)
        check(rc == 0, "schemas check passes a compatible change (exit %s)" % rc) or print(indent(out), end="")
        rc, out = cli(escqrs, reg, "register", "--dir", good)
        check(rc == 0 and re.search(r"^registered cart\.events-value id=\d+", out, re.M),
              "schemas register takes a compatible change (exit %s)" % rc) or print(indent(out), end="")
        st, versions = http("GET", reg.ccompat("/subjects/cart.events-value/versions"))
        check(st == 200 and versions == [1, 2], "cart.events-value has versions [1, 2] (%s)" % versions)
        rc, out = cli(escqrs, reg, "check", "--dir", worse)
        check(rc == 1 and "INCOMPATIBLE cart.events-value" in out,
              "schemas check refuses an incompatible change (exit %s)" % rc) or print(indent(out), end="")
        rc, out = cli(escqrs, reg, "register", "--dir", worse)
        check(rc == 1 and "cart.events-value" in out and "registered cart.events-value" not in out,
              "schemas register refuses an incompatible change (exit %s)" % rc) or print(indent(out), end="")

        # 5. the groups it reads our topics in: its KafkaUser must allow them
        # (the ACLs are checked offline too; this is what the registry really uses).
        made = sorted(g.id for g in admin.list_groups(timeout=10)
                      if any(t.startswith(RUN) for m in g.members for t in assigned_topics(m.assignment)))
        check(made and all(acl_allows(user, "group", g, "Read") for g in made),
              "its consumer groups are allowed by KafkaUser %s: %s" % (user["metadata"]["name"], ", ".join(made)))
        for t in spec["topics"]:
            topic = env[t["env"]]
            if topic in created:
                lo, hi = watermarks(topic)
                if t["default"] != "kafkasql-snapshots":
                    check(hi > 0, "%s holds %d record(s)" % (topic, hi))

        # 6. a container restart: same pod name, state read back from the journal.
        before = state(reg, subjects)
        reg.stop()
        print("     registry stopped; starting it again (a container restart: same env, same topics)", flush=True)
        reg.start()
        after = state(reg, subjects)
        check(after == before, "after a restart every subject, version, id and level is the same")
        if after != before:
            for s in sorted(subjects):
                if after.get(s) != before.get(s):
                    print("     %s: before %s\n     %s  after %s" % (s, summary(before[s]), " " * len(s), summary(after[s])))
        st, body = http("GET", reg.ccompat("/schemas/ids/%s" % ids.get("cart.events-value", 0)))
        check(st == 200 and json.loads(body["schema"]) == subjects["cart.events-value"],
              "GET /schemas/ids/%s still answers cart.events-value's first schema" % ids.get("cart.events-value"))
    finally:
        reg.stop()
        if failed:
            print("     last lines of the registry's log:\n" + indent(reg.tail()), end="")


def summary(entry):
    if not isinstance(entry, dict):
        return str(entry)
    return "versions %s, ids %s, level %s" % (
        entry.get("versions"),
        [entry[v][0] for v in entry if isinstance(v, int) and isinstance(entry[v], tuple)],
        entry.get("level"))


def assigned_topics(blob):
    """Topic names in a member's assignment (Kafka's ConsumerProtocol: version,
    then [topic name, [partition]], then user data)."""
    topics = set()
    try:
        (count,) = struct.unpack_from(">i", blob, 2)
        off = 6
        for _ in range(count):
            (n,) = struct.unpack_from(">h", blob, off)
            topics.add(blob[off + 2:off + 2 + n].decode())
            (parts,) = struct.unpack_from(">i", blob, off + 2 + n)
            off += 2 + n + 4 + 4 * parts
    except (struct.error, TypeError, UnicodeDecodeError):
        pass
    return topics


def watermarks(topic):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": RUN + "reader", "enable.auto.commit": False})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    escqrs = os.path.abspath(sys.argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the finally blocks run
    work = tempfile.mkdtemp(prefix=RUN)
    t0 = time.monotonic()
    try:
        run(escqrs, work)
    except Abort as e:
        bad(str(e))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed (%.0f s)" % (passed, failed, time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
