#!/usr/bin/python3
"""0205-kafka-security — the pipeline on a secure broker, one principal per program.

The broker is the secure profile of scripts/stack (docs/kafka-security.md): SASL_SSL with
SCRAM-SHA-512 for clients, a second listener with mutual TLS (a client certificate per
user from scripts/stack.d/kafka/make-certs, its CN the principal), mutual TLS on the
controller port, KRaft's StandardAuthorizer with allow.everyone.if.no.acl.found=false,
and the users and ACLs of k8s/kafka-acls.yaml, the source k8s/base/kafka/users.yaml is
generated from.  The test runs two of its own, one after the other (a temporary
ESCQRS_STACK_STATE_DIR each, free ports): Kafka 3.9.1 for SCRAM (parts 1-4), the only
line Debian's librdkafka can log in to with SCRAM, and the test stack's pinned Kafka 4
(kafka.version of scripts/stack.d/kafka/pom.xml) for mutual TLS (parts 5-6), the way the
programs log in on Kubernetes.  The registry is the test stack's (it keeps schemas in
H2, no Kafka).

  1. `scripts/stack up kafka` (profile secure); topics made by the admin user with
     `escqrs --config clients/escqrs-admin.conf topics create`;
  2. escqrs-gateway, escqrs-command-service (account) and escqrs-projector (accounts,
     account_balance) each log in as its own user, configured the way k8s does it
     (ESCQRS_KAFKA_* variables; the gateway's password in ESCQRS_KAFKA_SASL_PASSWORD,
     the others' in a file named by ESCQRS_KAFKA_SASL_PASSWORD_FILE); with the command
     service's group empty the gateway must say so (it may Describe that group);
  3. end to end: open, deposit, withdraw through the gateway, the balance read back from
     the projector; the broker logged no denial for any program while doing it;
  4. what must be refused, with librdkafka (python confluent-kafka), each printed with
     the client's error and the broker's own log line: the gateway writing an events
     topic, reading a commands topic, joining the command service's group, taking its
     transactional id; the projector writing any topic but its DLQ (its DLQ is the
     control that works); a wrong password, an unknown user, a plaintext client, a TLS
     client without SASL, a client that does not trust the stack's CA, a client without
     a certificate on the controller port; and the forged-event attack: a copy of a real
     Deposited event, re-encoded with a new id, the next version and a large amount,
     written straight to account.events by every principal but the command service's,
     each refused, the topic's end offsets and the balance unchanged.  As the control,
     the same record from the command service's principal is accepted and the projector
     applies it: the ACL, not the record, stopped the others;
  5. the same users on Kafka 4 (ESCQRS_STACK_KAFKA_VERSION): the Java client logs in
     (it applied the ACLs), librdkafka with the same password is refused while librdkafka
     is older than 2.6.1 (its SCRAM nonce bug; the reason the secure profile runs 3.9.1),
     and must log in once it is newer;
  6. mutual TLS on that Kafka 4 broker, as k8s/ configures it: the gateway, the account
     command service and the accounts projector each get only the ESCQRS_KAFKA_* keys of
     k8s/base/config/common.env (SSL, the CA, its own user.crt and user.key; the mount
     paths of the Secrets replaced by the stack's files) and run end to end; the broker
     denies them nothing, so each certificate became the principal its ACLs name (nothing
     is allowed without an ACL).  Refused: the gateway's certificate writing
     account.events and joining the command service's group, the projector's writing
     account.commands (the gateway's right), a certificate of the stack's CA for a user
     without ACLs (CN=mallory), each with the broker's "Principal = User:<cn> is Denied"
     line; a client without a certificate; a certificate CN=escqrs-gateway from another
     CA.
  Last, no user's password and no line of a private key is in any daemon log.

About 2 to 3 minutes on a 2-core machine shared with the test stack.  Every process this test starts stops on every exit: the daemons die with
it (PR_SET_PDEATHSIG), the brokers are stopped in `finally`, and a watchdog stops them
even if the test is killed with SIGKILL (ctest's timeout).

  0205-kafka-security.py         (ctest: integration.0205-kafka-security)
Environment: ESCQRS_BUILD_DIR, ESCQRS_SOURCE_DIR, ESCQRS_TEST_REGISTRY.
"""
import ctypes
import datetime
import glob
import io
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

import avro.io
import avro.schema
import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from escqrs_pipeline import free_port  # noqa: E402

SRC = os.environ.get("ESCQRS_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("ESCQRS_BUILD_DIR") or os.path.join(SRC, "build")
REGISTRY = os.environ.get("ESCQRS_TEST_REGISTRY") or "http://127.0.0.1:18081/apis/ccompat/v7"
STACK = os.path.join(SRC, "scripts", "stack")
DEADLINE = time.monotonic() + 240  # ctest's TIMEOUT is 300: cleanup always runs


def pom_property(name):
    with open(os.path.join(SRC, "scripts", "stack.d", "kafka", "pom.xml")) as f:
        m = re.search(r"<%s>([^<]+)</%s>" % (re.escape(name), re.escape(name)), f.read())
    return m.group(1)


KAFKA4 = pom_property("kafka.version")  # the test stack's broker, a Kafka 4 like Strimzi 0.49+ runs

passed = 0
failed = 0
results = []  # (check, what was seen) for the summary


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


def die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def lib_version():
    return confluent_kafka.libversion()[0]  # the librdkafka escqrs links too: Debian's


# ------------------------------------------------------------------ the secure broker

class SecureBroker:
    """A secure-profile broker of scripts/stack in its own directory, on free ports."""

    def __init__(self, work, name, version=None):
        self.state = os.path.join(work, name)
        self.port = free_port()
        self.mtls_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ESCQRS_")}
        self.env.update({
            "ESCQRS_STACK_PROFILE": "secure",
            "ESCQRS_STACK_STATE_DIR": self.state,
            "ESCQRS_STACK_KAFKA_PORT": str(self.port),
            "ESCQRS_STACK_CONTROLLER_PORT": str(free_port()),
            "ESCQRS_STACK_MTLS_PORT": str(self.mtls_port),
            "ESCQRS_STACK_TIMEOUT": "90",
        })
        if version:
            self.env["ESCQRS_STACK_KAFKA_VERSION"] = version
        self.ctrl_port = int(self.env["ESCQRS_STACK_CONTROLLER_PORT"])
        self.up_output = ""

    def stack(self, verb):
        r = subprocess.run([STACK, verb, "kafka"], env=self.env, capture_output=True, text=True,
                           timeout=max(10, min(150, left())))
        return r.returncode, r.stdout + r.stderr

    def up(self):
        t0 = time.monotonic()
        rc, out = self.stack("up")
        self.up_output = out
        for line in out.splitlines():
            if not line.startswith("[") and "Failed authentication" not in line:
                print("     " + line[:200], flush=True)
        if rc:
            raise Abort("scripts/stack up kafka (secure) failed (%d):\n%s" % (rc, out[-3000:]))
        print("     broker up in %.0f s" % (time.monotonic() - t0), flush=True)

    def down(self):
        if not os.path.isdir(self.state):
            return
        rc, out = self.stack("down")
        print("     " + " / ".join(out.strip().splitlines()), flush=True)

    def client(self, user, mtls=False, **extra):
        """librdkafka settings of @p user: the stack's clients/<user>.properties (SCRAM),
        or with @p mtls clients/<user>.mtls.properties (its client certificate)."""
        conf = {}
        with open(os.path.join(self.state, "clients", user + (".mtls" if mtls else "") + ".properties")) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    k, v = line.split("=", 1)
                    conf[k] = v
        conf["log_level"] = "0"  # the checks print what the client saw
        conf.update(extra)
        return conf

    def password(self, user):
        with open(os.path.join(self.state, "users", user + ".password")) as f:
            return f.read().strip()

    @property
    def ca(self):
        return os.path.join(self.state, "tls", "ca.crt")

    def user_dir(self, user):
        """make-certs' client certificate of @p user: user.crt and user.key, the keys of
        the Secret Strimzi writes for a KafkaUser with `authentication: type: tls`."""
        return os.path.join(self.state, "tls", "users", user)

    def make_cert(self, user):
        """A certificate of the stack's CA for @p user, whether or not it has ACLs."""
        subprocess.run([os.path.join(SRC, "scripts", "stack.d", "kafka", "make-certs"),
                        os.path.join(self.state, "tls"), user], check=True, capture_output=True, timeout=60)
        return self.user_dir(user)

    @property
    def log(self):
        return os.path.join(self.state, "logs", "kafka.log")

    def log_mark(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def log_since(self, mark, pattern, wait=3.0):
        """Broker log lines written after @p mark that match @p pattern (waits a little:
        the broker logs a denial as it answers)."""
        rx = re.compile(pattern)
        end = time.monotonic() + wait
        while True:
            with open(self.log, errors="replace") as f:
                f.seek(mark)
                hits = [line.rstrip() for line in f if rx.search(line)]
            if hits or time.monotonic() > end:
                return hits
            time.sleep(0.2)


def watchdog(brokers):
    """A process of its own session that stops the brokers once this test is gone,
    whatever the way (ctest kills a test past its TIMEOUT with SIGKILL)."""
    downs = " ; ".join(
        "ESCQRS_STACK_PROFILE=secure ESCQRS_STACK_STATE_DIR='%s' '%s' down kafka" % (b.state, STACK)
        for b in brokers)
    script = "while kill -0 %d 2>/dev/null; do sleep 1; done; %s" % (os.getpid(), downs)
    return subprocess.Popen(["sh", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ------------------------------------------------------------------ daemons

# Where k8s/base/escqrs mounts the cluster CA (Secret <cluster>-cluster-ca-cert) and the
# workload's KafkaUser Secret; common.env's paths must be under these.
K8S_CA_MOUNT = "/etc/kafka-ca/"
K8S_USER_MOUNT = "/etc/kafka-user/"


def k8s_kafka_env(broker, user):
    """The ESCQRS_KAFKA_* settings of k8s/base/config/common.env for @p user on @p broker's
    mutual-TLS listener: the bootstrap address is the broker's, the files of the mounted
    Secrets are the stack's (ca.crt; tls/users/<user>/user.crt and user.key)."""
    env = {}
    with open(os.path.join(SRC, "k8s", "base", "config", "common.env")) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("ESCQRS_KAFKA_"):
                continue
            k, v = line.split("=", 1)
            if k == "ESCQRS_KAFKA_BOOTSTRAP_SERVERS":
                v = "127.0.0.1:%d" % broker.mtls_port
            elif v.startswith(K8S_CA_MOUNT):
                v = os.path.join(os.path.dirname(broker.ca), v[len(K8S_CA_MOUNT):])
            elif v.startswith(K8S_USER_MOUNT):
                v = os.path.join(broker.user_dir(user), v[len(K8S_USER_MOUNT):])
            elif v.startswith("/"):
                raise Abort("k8s/base/config/common.env: %s=%s is in no mount this test knows" % (k, v))
            env[k] = v
    return env


class Daemon:
    def __init__(self, name, binary, user, broker, work, sets, password_file=False, mtls=False):
        self.name, self.user = name, user
        self.port = free_port()
        self.log = os.path.join(work, name + ".log")
        self.cmd = [os.path.join(BUILD, binary), "--set", "http.listen=127.0.0.1:%d" % self.port,
                    "--set", "registry.url=" + REGISTRY] + [a for s in sets for a in ("--set", s)]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ESCQRS_")}
        if mtls:  # exactly what k8s/ gives a workload: common.env and its mounted Secrets
            self.env.update(k8s_kafka_env(broker, user))
        else:  # SCRAM, as k8s/ did before it moved to mutual TLS
            self.env.update({
                "ESCQRS_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:%d" % broker.port,
                "ESCQRS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "ESCQRS_KAFKA_SASL_MECHANISMS": "SCRAM-SHA-512",
                "ESCQRS_KAFKA_SSL_CA_LOCATION": broker.ca,
                "ESCQRS_KAFKA_SASL_USERNAME": user,
            })
            if password_file:  # a mounted Secret
                self.env["ESCQRS_KAFKA_SASL_PASSWORD_FILE"] = os.path.join(broker.state, "users",
                                                                           user + ".password")
            else:  # a secretKeyRef
                self.env["ESCQRS_KAFKA_SASL_PASSWORD"] = broker.password(user)
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.proc = None

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=log,
                                         stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)

    def get(self, path, timeout=10):
        return http("GET", "http://127.0.0.1:%d%s" % (self.port, path), timeout=timeout)

    def post(self, path, body):
        return http("POST", "http://127.0.0.1:%d%s" % (self.port, path), body)

    def wait_ready(self, timeout=90):
        end = time.monotonic() + min(timeout, left())
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise Abort("%s exited (%d) before it was ready:\n%s" % (self.name, self.proc.returncode,
                                                                        self.tail()))
            if self.get("/readyz", timeout=2)[0] == 200:
                return
            time.sleep(0.3)
        raise Abort("%s not ready in time:\n%s" % (self.name, self.tail()))

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def tail(self, n=15):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(line[:300] for line in f.readlines()[-n:])
        except OSError:
            return ""


def http(method, url, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=max(1, min(timeout, left()))) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    except (urllib.error.URLError, OSError):
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


def cli(broker, *args, mtls=False):
    cmd = [os.path.join(BUILD, "cli", "escqrs"), "--config",
           os.path.join(broker.state, "clients", "escqrs-admin%s.conf" % (".mtls" if mtls else "")),
           "--set", "registry.url=" + REGISTRY]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCQRS_")}
    r = subprocess.run(cmd + list(args), env=env, capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise Abort("escqrs %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr[-2000:]))
    return r.stdout


# ------------------------------------------------------------------ librdkafka probes

def errname(err):
    return err.name() if isinstance(err, KafkaError) else str(err)


def produce(conf, topic, value=b"x", key=b"k", headers=None, partition=None, timeout=15):
    """Produce one record; returns (error or None, the delivered message)."""
    got = {}

    def dr(err, msg):
        got["err"], got["msg"] = err, msg

    p = Producer(dict(conf, **{"message.timeout.ms": str(timeout * 1000)}))
    kw = {"partition": partition} if partition is not None else {}
    p.produce(topic, value=value, key=key, headers=headers or [], on_delivery=dr, **kw)
    p.flush(timeout + 5)
    return got.get("err", "no delivery report"), got.get("msg")


def consume_error(conf, topic, group, subscribe=False, timeout=15):
    """The first error a consumer of @p topic sees (None when it reads a record)."""
    c = Consumer(dict(conf, **{"group.id": group, "enable.auto.commit": "false",
                               "auto.offset.reset": "earliest"}))
    try:
        if subscribe:
            c.subscribe([topic])
        else:
            c.assign([TopicPartition(topic, p, -2) for p in range(3)])  # OFFSET_BEGINNING
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                return m.error()
            return None
        return "nothing in %d s" % timeout
    finally:
        c.close()


def connect_errors(conf, timeout=8):
    """Errors a client meets asking for metadata ([] when it gets it): what its error
    callback was told (the cause), then the failed request's own error."""
    errs, last = [], None
    p = Producer(dict(conf, error_cb=lambda e: errs.append(e), log_level="0"))
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            p.list_topics(timeout=1)
            return []
        except KafkaException as e:
            last = e.args[0]
        p.poll(0.1)  # serves the error callback
        causes = [x for x in errs if x.code() != KafkaError._ALL_BROKERS_DOWN]
        if causes:
            return causes + [last]
    return [last]


def first(errs):
    e = errs[0]
    return "%s: %s" % (errname(e), e.str() if isinstance(e, KafkaError) else e)


def connect_refused(broker, what, conf, expect=None, pattern=None):
    """A client that must not get in: its first error (of @p expect when given) and,
    when @p pattern is given, the broker's log line about it."""
    mark = broker.log_mark()
    errs = connect_errors(conf)
    hits = broker.log_since(mark, pattern) if pattern else []
    saw = (first(errs) if errs else "got metadata")
    if hits:
        saw += "; broker: " + hits[0].split("] ", 1)[-1][:220]
    check(bool(errs) and (expect is None or errname(errs[0]) == expect) and (not pattern or hits),
          "%s -> %s" % (what, saw))
    results.append((what, saw))


# ------------------------------------------------------------------ the forged event

def schema_by_id(sid):
    status, body = http("GET", "%s/schemas/ids/%d" % (REGISTRY, sid))
    if status != 200:
        raise Abort("registry: schema id %d: %s %s" % (sid, status, body))
    return avro.schema.parse(body["schema"])


def read_all(conf, topic):
    c = Consumer(dict(conf, **{"group.id": "escqrs-unused", "enable.partition.eof": "true",
                               "isolation.level": "read_committed", "enable.auto.commit": "false"}))
    out, eof = [], set()
    try:
        c.assign([TopicPartition(topic, p, -2) for p in range(3)])
        end = time.monotonic() + 20
        while len(eof) < 3 and time.monotonic() < end:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                raise Abort("reading %s: %s" % (topic, m.error()))
            out.append(m)
        return out
    finally:
        c.close()


def end_offsets(conf, topic):
    c = Consumer(dict(conf, **{"group.id": "escqrs-unused"}))
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3)]
    finally:
        c.close()


def forge(admin_conf, account, amount):
    """A Deposited event for @p account indistinguishable from the command service's: the
    last real one, decoded with its writer schema, given a new id, the next version and
    @p amount, re-encoded with the same schema id and headers."""
    recs = [m for m in read_all(admin_conf, "account.events") if m.key() == account.encode()]
    dep = [m for m in recs if dict(m.headers() or []).get("event-type") == b"Deposited"]
    if not dep:
        raise Abort("no Deposited event of %s in account.events" % account)
    real = dep[-1]
    value = real.value()
    sid = struct.unpack(">I", value[1:5])[0]
    schema = schema_by_id(sid)
    datum = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(value[5:])))
    version = max(int(dict(m.headers())["aggregate-version"]) for m in recs) + 1
    event_id, command_id = str(uuid.uuid4()), "forged-" + uuid.uuid4().hex[:8]
    datum.update(event_id=event_id, version=version, command_id=command_id,
                 occurred_at=datetime.datetime.now(datetime.timezone.utc), payload={"amount_cents": amount})
    # Field by field: for a union Python's avro writes the *last* branch the value fits,
    # and Deposited and Withdrawn have the same fields, so the payload's branch is named.
    buf = io.BytesIO()
    enc, w = avro.io.BinaryEncoder(buf), avro.io.DatumWriter()
    for f in schema.fields:
        if f.name == "payload":
            branch = [i for i, b in enumerate(f.type.schemas) if b.name == "Deposited"][0]
            enc.write_long(branch)
            w.write_data(f.type.schemas[branch], datum["payload"], enc)
        else:
            w.write_data(f.type, datum[f.name], enc)
    headers = [("event-type", b"Deposited"), ("event-id", event_id.encode()),
               ("command-id", command_id.encode()), ("aggregate-version", str(version).encode())]
    return b"\0" + struct.pack(">I", sid) + buf.getvalue(), headers, real.partition(), version


# ------------------------------------------------------------------ the test

def denied(broker, mark, principal, op, resource):
    """The broker's own log line of a denial (kafka.authorizer.logger)."""
    hits = broker.log_since(mark, r"Principal = User:%s is Denied operation = %s .* resource = %s\b"
                            % (re.escape(principal), op, re.escape(resource)))
    return hits[0][hits[0].index("Principal"):].split(" (kafka.authorizer")[0] if hits else None


def refused(broker, what, err, expect, principal=None, op=None, resource=None):
    """A refusal check: the client's error is @p expect and (for ACLs) the broker logged it."""
    name = errname(err) if err is not None else "accepted"
    line = denied(broker, refused.mark, principal, op, resource) if principal else None
    saw = "%s%s" % (name, "; broker: " + line if line else "")
    good = name == expect and (line is not None or principal is None)
    check(good, "%s -> %s" % (what, saw))
    results.append((what, saw))
    refused.mark = broker.log_mark()


refused.mark = 0


def run(work):
    lib = lib_version()
    print("     librdkafka %s (python confluent-kafka), registry %s" % (lib, REGISTRY), flush=True)
    broker = SecureBroker(work, "stack")
    broker4 = SecureBroker(work, "stack-" + KAFKA4, version=KAFKA4)
    dog = watchdog([broker, broker4])
    daemons = []
    try:
        secure_pipeline(broker, work, daemons)
        for d in daemons:
            rc = d.stop()
            check(rc == 0, "%s stopped cleanly (exit %s)" % (d.name, rc))
        broker.down()
        daemons.clear()
        kafka4_scram(broker4, lib)
        mtls_pipeline(broker4, work, daemons)
        for d in daemons:
            rc = d.stop()
            check(rc == 0, "%s stopped cleanly (exit %s)" % (d.name, rc))
        no_secrets_in_logs(work, [broker, broker4])
    finally:
        for d in daemons:
            d.stop()
        broker.down()
        broker4.down()
        dog.kill()
        dog.wait()


def secure_pipeline(broker, work, daemons):
    print("\n== 1. the secure broker (scripts/stack, profile secure)", flush=True)
    broker.up()
    bindings = subprocess.run([os.path.join(SRC, "scripts", "kafka-acls"), "bindings"], capture_output=True,
                              text=True, check=True).stdout.count("\n")
    check("%d ACLs" % bindings in broker.up_output,
          "the broker got the %d ACL bindings of k8s/kafka-acls.yaml" % bindings)
    for agg, dlq in (("account", "accounts"), ("cart", "carts")):
        cli(broker, "topics", "create", agg, "--dlq", dlq)
    ok("topics of account and cart created as escqrs-admin (escqrs topics create)")

    print("\n== 2. each program as its own principal", flush=True)
    mark = broker.log_mark()
    gw = Daemon("gateway", "producers/gateway/escqrs-gateway", "escqrs-gateway", broker, work,
                ["aggregates=account", "topics.create=false", "health.interval.ms=500"])
    cs = Daemon("command-service", "producers/command-service/escqrs-command-service",
                "escqrs-account-command-service", broker, work,
                ["aggregate=account", "topics.create=false", "store.path=" + os.path.join(work, "cs")],
                password_file=True)
    pj = Daemon("projector", "consumers/projector/escqrs-projector", "escqrs-projector-accounts", broker, work,
                ["projections=account_balance", "projector.name=accounts",
                 "store.path=" + os.path.join(work, "pj"), "admin.listen=127.0.0.1:%d" % free_port()],
                password_file=True)
    daemons += [gw, cs, pj]
    # The gateway reads the command service group's state (Describe on the group):
    # with no member it must say so, not take commands nobody reads.  A group that
    # never had a member or an offset is not listed at all, which the gateway also
    # takes for empty (integration test 0201); here the group exists, so that the
    # broker lists it to the gateway only through that ACL: the admin commits offset
    # 0, as a command service that ran and stopped would have left it.
    c = Consumer(dict(broker.client("escqrs-admin"), **{"group.id": "account.command-service"}))
    c.commit(offsets=[TopicPartition("account.commands", p, 0) for p in range(3)], asynchronous=False)
    c.close()
    gw.start()
    pj.start()
    why, status = "", 0
    end = time.monotonic() + 60
    while time.monotonic() < end and "no command service" not in why:
        if gw.proc.poll() is not None:
            raise Abort("gateway exited:\n" + gw.tail())
        status, body = gw.get("/readyz", timeout=2)
        why = (body or {}).get("reason", "") if isinstance(body, dict) else ""
        time.sleep(0.3)
    check(status == 503 and "no command service" in why,
          "before the command service runs the gateway's /readyz says %d %r" % (status, why))
    status, body = gw.post("/v1/accounts/a1/open", {"owner": "Ada"})
    check(status == 503, "and a command is answered %d %s, nothing written" % (status, (body or {}).get("error")))
    cs.start()
    for d in (cs, gw, pj):
        d.wait_ready()
    ok("command service, gateway and projector ready, each logged in as its own user")

    print("\n== 3. end to end", flush=True)
    pos = None
    for path, body, want in (("/v1/accounts/a1/open", {"owner": "Ada"}, 1),
                             ("/v1/accounts/a1/deposit", {"amount_cents": 1500}, 2),
                             ("/v1/accounts/a1/withdraw", {"amount_cents": 200}, 3)):
        status, ans = gw.post(path, body)
        if not check(status == 200 and ans.get("version") == want,
                     "POST %s -> %d version %s position %s" % (path, status, (ans or {}).get("version"),
                                                               (ans or {}).get("position"))):
            raise Abort("the pipeline does not work on the secure broker:\n" + gw.tail() + cs.tail())
        pos = ans["position"]
    status, view = pj.get("/v1/accounts/a1?min_position=" + pos)
    check(status == 200 and view.get("balance_cents") == 1300 and view.get("version") == 3,
          "projector GET /v1/accounts/a1 -> %d %s" % (status, view))
    denials = broker.log_since(mark, r"is Denied operation", wait=0)
    check(not denials, "the broker denied the programs nothing while they worked (%d denial(s)%s)"
          % (len(denials), ": " + denials[0][:200] if denials else ""))

    print("\n== 4. what the broker must refuse", flush=True)
    admin = broker.client("escqrs-admin")
    gwc = broker.client("escqrs-gateway")
    refused.mark = broker.log_mark()
    err, _ = produce(gwc, "account.events")
    refused(broker, "gateway writes account.events", err, "TOPIC_AUTHORIZATION_FAILED",
            "escqrs-gateway", "(WRITE|DESCRIBE)", "Topic:LITERAL:account.events")
    err = consume_error(gwc, "account.commands", "escqrs-gateway-unused")
    refused(broker, "gateway reads account.commands", err, "TOPIC_AUTHORIZATION_FAILED",
            "escqrs-gateway", "READ", "Topic:LITERAL:account.commands")
    err = consume_error(gwc, "account.command-results", "account.command-service", subscribe=True)
    refused(broker, "gateway joins group account.command-service", err, "GROUP_AUTHORIZATION_FAILED",
            "escqrs-gateway", "READ", "Group:LITERAL:account.command-service")
    txid = "account.command-service-" + socket.gethostname()
    p = Producer(dict(gwc, **{"transactional.id": txid}))
    try:
        p.init_transactions(15)
        err = None
    except KafkaException as e:
        err = e.args[0]
    refused(broker, "gateway takes transactional.id %s (would fence the command service)" % txid, err,
            "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", "escqrs-gateway", "(WRITE|DESCRIBE)",
            "TransactionalId:LITERAL:" + txid)

    pjc = broker.client("escqrs-projector-accounts")
    for topic in ("account.commands", "account.events", "account.command-results", "cart.commands",
                  "cart.events", "cart.command-results", "cart.events.dlq.carts"):
        err, _ = produce(pjc, topic)
        refused(broker, "projector accounts writes %s" % topic, err, "TOPIC_AUTHORIZATION_FAILED",
                "escqrs-projector-accounts", "(WRITE|DESCRIBE)", "Topic:LITERAL:" + topic)
    err, msg = produce(pjc, "account.events.dlq.accounts", headers=[("it0205", b"control")])
    check(err is None, "projector accounts writes its DLQ account.events.dlq.accounts -> %s (offset %s)"
          % ("accepted" if err is None else errname(err), msg.offset() if msg else None))
    results.append(("projector accounts writes its DLQ (control)", "accepted" if err is None else errname(err)))

    connect_refused(broker, "gateway with a wrong password",
                    dict(gwc, **{"sasl.password": "not-" + broker.password("escqrs-gateway")}),
                    "_AUTHENTICATION", r"Failed authentication .*invalid credentials")
    connect_refused(broker, "an unknown user (mallory)", dict(gwc, **{"sasl.username": "mallory"}),
                    "_AUTHENTICATION", r"Failed authentication .*invalid credentials")
    plain = {"bootstrap.servers": gwc["bootstrap.servers"]}
    connect_refused(broker, "a plaintext client on the SASL_SSL port", dict(plain, **{"security.protocol": "plaintext"}),
                    None, r"Failed authentication|SSL handshake")
    connect_refused(broker, "a TLS client without SASL",
                    dict(plain, **{"security.protocol": "ssl", "ssl.ca.location": broker.ca}),
                    None, r"Failed authentication|SASL|Unexpected Kafka request")
    conf = dict(gwc)
    conf.pop("ssl.ca.location")
    connect_refused(broker, "a client that does not trust the stack's CA", conf, None, r"SSL handshake")
    connect_refused(broker, "the controller port, TLS without a client certificate",
                    {"bootstrap.servers": "127.0.0.1:%d" % broker.ctrl_port, "security.protocol": "ssl",
                     "ssl.ca.location": broker.ca}, None, r"SSL handshake|Failed authentication")

    print("\n== 4b. the forged-event attack on account.events", flush=True)
    amount = 100_000_000
    value, headers, part, version = forge(admin, "a1", amount)
    print("     forged: Deposited %d cents to a1, version %d, partition %d, %d bytes, headers %s"
          % (amount, version, part, len(value), [(k, v.decode()) for k, v in headers]), flush=True)
    before = end_offsets(admin, "account.events")
    refused.mark = broker.log_mark()
    for user in ("escqrs-gateway", "escqrs-projector-accounts", "escqrs-projector-carts",
                 "escqrs-cart-command-service", "escqrs-registry"):
        err, _ = produce(broker.client(user), "account.events", value, b"a1", headers, part)
        refused(broker, "forged Deposited as %s" % user, err, "TOPIC_AUTHORIZATION_FAILED",
                user, "(WRITE|DESCRIBE)", "Topic:LITERAL:account.events")
    after = end_offsets(admin, "account.events")
    check(before == after, "account.events end offsets unchanged: %s -> %s" % (before, after))
    status, view = pj.get("/v1/accounts/a1")
    check(status == 200 and view.get("balance_cents") == 1300, "balance still %s" % (view or {}).get("balance_cents"))
    err, msg = produce(broker.client("escqrs-account-command-service"), "account.events", value, b"a1", headers,
                       part)
    check(err is None, "control: the same record as escqrs-account-command-service -> %s (%s)"
          % ("accepted" if err is None else errname(err), "%d:%d" % (msg.partition(), msg.offset()) if msg else ""))
    results.append(("forged Deposited as escqrs-account-command-service (control)",
                    "accepted" if err is None else errname(err)))
    if err is None:
        status, view = pj.get("/v1/accounts/a1?min_position=%d:%d" % (msg.partition(), msg.offset()))
        check(status == 200 and view.get("balance_cents") == 1300 + amount and view.get("version") == version,
              "and the projector applies it: balance %s, version %s (the ACL is what stops a forgery)"
              % ((view or {}).get("balance_cents"), (view or {}).get("version")))


def kafka4_scram(broker, lib):
    print("\n== 5. the same users on Kafka %s (the pinned broker of the other profiles)" % KAFKA4, flush=True)
    broker.up()
    check(re.search(r"\d+ ACLs", broker.up_output) is not None,
          "the Java client (kafka-clients %s) logged in as escqrs-admin and applied the ACLs" % KAFKA4)
    errs = connect_errors(broker.client("escqrs-admin"))
    fixed = tuple(int(x) for x in lib.split(".")[:3]) >= (2, 6, 1)
    if fixed:
        check(not errs, "librdkafka %s logs in with SCRAM to Kafka %s: the secure profile can move to it "
              "(kafka.secure.version)%s" % (lib, KAFKA4, ": " + first(errs) if errs else ""))
    else:
        check(errs and errname(errs[0]) == "_AUTHENTICATION",
              "librdkafka %s, same user and password -> %s (its SCRAM nonce bug, fixed in 2.6.1: why the "
              "secure profile runs Kafka 3.9.1, and why k8s/ uses mutual TLS)"
              % (lib, first(errs) if errs else "logged in"))
    results.append(("librdkafka %s SCRAM on Kafka %s" % (lib, KAFKA4), first(errs) if errs else "logged in"))


def no_secrets_in_logs(work, brokers):
    """No user's SCRAM password and no line of a client certificate's private key is in
    any daemon log of the run."""
    secrets = []
    for b in brokers:
        for f in glob.glob(os.path.join(b.state, "users", "*.password")):
            with open(f) as fh:
                secrets.append(fh.read().strip())
        for f in glob.glob(os.path.join(b.state, "tls", "users", "*", "user.key")):
            with open(f) as fh:
                secrets += [line.strip() for line in fh if len(line.strip()) >= 40 and "-----" not in line]
    logs = sorted(glob.glob(os.path.join(work, "*.log")))
    hits = []
    for log in logs:
        with open(log, errors="replace") as fh:
            text = fh.read()
        hits += [os.path.basename(log) for x in secrets if x and x in text]
    check(secrets and logs and not hits, "no Kafka password or private key line in the daemons' logs "
          "(%d secrets in %d logs%s)" % (len(secrets), len(logs), ": found in " + ", ".join(sorted(set(hits)))
                                         if hits else ""))


def other_ca_cert(work, cn):
    """A certificate CN=@p cn signed by a CA of its own (not the stack's): what someone
    without the CA's key can make."""
    d = os.path.join(work, "other-ca")
    os.makedirs(d, exist_ok=True)
    run_ = lambda *a: subprocess.run(list(a), cwd=d, check=True, capture_output=True, timeout=30)
    run_("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=another CA")
    run_("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "user.key", "-out", "user.csr", "-subj", "/CN=" + cn)
    run_("openssl", "x509", "-req", "-in", "user.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-out", "user.crt")
    return d


def mtls_pipeline(broker, work, daemons):
    print("\n== 6. mutual TLS on Kafka %s, as k8s/ configures the programs" % KAFKA4, flush=True)
    cli(broker, "topics", "create", "account", "--dlq", "accounts", mtls=True)
    ok("topics of account created as escqrs-admin by its client certificate (escqrs topics create)")
    env = k8s_kafka_env(broker, "escqrs-gateway")
    print("     the gateway's Kafka settings (k8s/base/config/common.env, local files): %s"
          % ", ".join("%s=%s" % (k, v.replace(broker.state, "$STATE")) for k, v in sorted(env.items())), flush=True)
    check(env.get("ESCQRS_KAFKA_SECURITY_PROTOCOL") == "SSL" and not any("SASL" in k for k in env)
          and {"ESCQRS_KAFKA_SSL_CERTIFICATE_LOCATION", "ESCQRS_KAFKA_SSL_KEY_LOCATION"} <= set(env),
          "k8s/base/config/common.env sets SSL with a client certificate and key, no SASL")
    mark = broker.log_mark()
    cs = Daemon("command-service-mtls", "producers/command-service/escqrs-command-service",
                "escqrs-account-command-service", broker, work,
                ["aggregate=account", "topics.create=false", "store.path=" + os.path.join(work, "cs-mtls")],
                mtls=True)
    gw = Daemon("gateway-mtls", "producers/gateway/escqrs-gateway", "escqrs-gateway", broker, work,
                ["aggregates=account", "topics.create=false", "health.interval.ms=500"], mtls=True)
    pj = Daemon("projector-mtls", "consumers/projector/escqrs-projector", "escqrs-projector-accounts", broker, work,
                ["projections=account_balance", "projector.name=accounts",
                 "store.path=" + os.path.join(work, "pj-mtls"), "admin.listen=127.0.0.1:%d" % free_port()],
                mtls=True)
    daemons += [cs, gw, pj]
    for d in daemons:
        d.start()
    for d in daemons:
        d.wait_ready()
    ok("command service, gateway and projector ready on Kafka %s, each by its own client certificate" % KAFKA4)
    pos = None
    for path, body, want in (("/v1/accounts/m1/open", {"owner": "Grace"}, 1),
                             ("/v1/accounts/m1/deposit", {"amount_cents": 2500}, 2),
                             ("/v1/accounts/m1/withdraw", {"amount_cents": 700}, 3)):
        status, ans = gw.post(path, body)
        if not check(status == 200 and (ans or {}).get("version") == want,
                     "mutual TLS: POST %s -> %d version %s position %s"
                     % (path, status, (ans or {}).get("version"), (ans or {}).get("position"))):
            raise Abort("the pipeline does not work with mutual TLS:\n" + gw.tail() + cs.tail())
        pos = ans["position"]
    status, view = pj.get("/v1/accounts/m1?min_position=" + pos)
    check(status == 200 and view.get("balance_cents") == 1800 and view.get("version") == 3,
          "mutual TLS: projector GET /v1/accounts/m1 -> %d %s" % (status, view))
    results.append(("mutual TLS on Kafka %s: open, deposit, withdraw; balance" % KAFKA4,
                    "200, 200, 200; balance %s, version %s" % ((view or {}).get("balance_cents"),
                                                              (view or {}).get("version"))))
    denials = broker.log_since(mark, r"is Denied operation", wait=0)
    check(not denials, "the broker denied the programs nothing (%d denial(s)%s): with no ACL nothing is allowed, "
          "so each certificate was mapped to the principal its ACLs name"
          % (len(denials), ": " + denials[0][:200] if denials else ""))
    results.append(("mutual TLS: denials while the programs worked", "%d" % len(denials)))

    gwc = broker.client("escqrs-gateway", mtls=True)
    refused.mark = broker.log_mark()
    err, _ = produce(gwc, "account.events")
    refused(broker, "mutual TLS: gateway's certificate writes account.events", err, "TOPIC_AUTHORIZATION_FAILED",
            "escqrs-gateway", "(WRITE|DESCRIBE)", "Topic:LITERAL:account.events")
    err = consume_error(gwc, "account.command-results", "account.command-service", subscribe=True)
    refused(broker, "mutual TLS: gateway's certificate joins group account.command-service", err,
            "GROUP_AUTHORIZATION_FAILED", "escqrs-gateway", "READ", "Group:LITERAL:account.command-service")
    err, _ = produce(broker.client("escqrs-projector-accounts", mtls=True), "account.commands")
    refused(broker, "mutual TLS: projector's certificate writes account.commands (the gateway's right)", err,
            "TOPIC_AUTHORIZATION_FAILED", "escqrs-projector-accounts", "(WRITE|DESCRIBE)",
            "Topic:LITERAL:account.commands")
    mallory = broker.make_cert("mallory")
    mc = dict(gwc, **{"ssl.certificate.location": os.path.join(mallory, "user.crt"),
                      "ssl.key.location": os.path.join(mallory, "user.key")})
    err, _ = produce(mc, "account.commands")
    refused(broker, "mutual TLS: a certificate of the stack's CA for CN=mallory (no ACLs) writes account.commands",
            err, "TOPIC_AUTHORIZATION_FAILED", "mallory", "(WRITE|DESCRIBE)", "Topic:LITERAL:account.commands")
    nocert = {k: v for k, v in gwc.items() if k not in ("ssl.certificate.location", "ssl.key.location")}
    connect_refused(broker, "mutual TLS: a client without a certificate", nocert, None,
                    r"SSL handshake failed|Failed authentication")
    other = other_ca_cert(work, "escqrs-gateway")
    connect_refused(broker, "mutual TLS: CN=escqrs-gateway signed by another CA",
                    dict(gwc, **{"ssl.certificate.location": os.path.join(other, "user.crt"),
                                 "ssl.key.location": os.path.join(other, "user.key")}),
                    None, r"SSL handshake failed|Failed authentication")


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the finally blocks run
    work = tempfile.mkdtemp(prefix="escqrs-it0205-")
    t0 = time.monotonic()
    try:
        run(work)
    except Abort as e:
        bad(str(e))
    except (KafkaException, subprocess.SubprocessError, OSError) as e:
        bad("%s: %s" % (type(e).__name__, e))
    print("\nsummary (what each client saw):")
    for what, saw in results:
        print("  %-62s %s" % (what, saw[:160]))
    if failed:
        print("kept for reading: %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed (%.0f s)" % (passed, failed, time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
