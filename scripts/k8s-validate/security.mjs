// security.mjs — the security posture of rendered k8s/ overlays (run by
// scripts/check-k8s after validate.mjs, on the same renderings).
//
//   node security.mjs NAME=rendered.yaml ...
//
// Findings are printed as "NAME: Kind/name: [check] what"; any makes the exit
// status 1.  The checks, each named in its findings:
//
//   netpol-from      every NetworkPolicy ingress rule names its peers (`from`)
//                    and its ports; no peer is an empty selector (all pods or
//                    all namespaces) or an ipBlock of the whole internet.
//   netpol-isolated  every pod template of the rendering is selected by a
//                    NetworkPolicy of type Ingress (else it is open to all).
//   netpol-access    who may reach which named container port is exactly the
//                    ACCESS table below: the projector's admin port only from
//                    the rebuild jobs, Prometheus and the projectors (a new
//                    replica cloning a peer's checkpoint, partitioned pods reading
//                    slices), the query port from API clients and the projectors
//                    (a partitioned pod forwards a query to the partition's
//                    owner), the command services' health port only from Prometheus, the registry only from
//                    pods labelled escqrs.io/registry-client, ... ; and every
//                    pod that talks to the registry carries that label.
//   admin-port       the projector has a container port `admin` on the
//                    admin.listen port, bound to all interfaces, and no
//                    Service exposes it (by number, name or target).
//   rebuild-admin    every job that runs `escqrs ... rebuild` calls each pod's
//                    admin listener (projector.admin.url=http://$ip:<admin
//                    port>), never the query port, carries the escqrs-admin
//                    label and reads its token from a Secret.
//   auth-config      the gateway and every projector run with auth.mode=jwt,
//                    a policy file mounted from a ConfigMap, a JWKS (a mounted
//                    file or a URL, not both), an issuer and an audience.
//   metrics-auth     a monitor scraping a listener that wants tokens sends one
//                    from a Secret.
//   no-plaintext     no secret in plain sight: an env variable whose name says
//                    password, secret, token, JAAS, private key, passphrase or
//                    credential comes from a secretKeyRef (or, as *_FILE, names
//                    a file mounted from a Secret); no ConfigMap holds such a
//                    key or a JWT, a private key or a password= in its values;
//                    no command line carries --token or one of those; the
//                    renderings create no Secret with data.
//   kafka-mtls       Kafka clients authenticate by mutual TLS, never SASL
//                    (docs/kafka-security.md: librdkafka 2.0.2 cannot log in
//                    with SCRAM to the Kafka 4 of Strimzi 0.49+): every
//                    KafkaUser has authentication tls; every listener of the
//                    Kafka is tls with authentication tls; every container that
//                    talks to Kafka (an escqrs daemon, or ESCQRS_KAFKA_BOOTSTRAP_SERVERS
//                    in its env) sets ESCQRS_KAFKA_SECURITY_PROTOCOL=SSL,
//                    ESCQRS_KAFKA_SSL_CA_LOCATION to ca.crt of the mounted Secret
//                    <kafka>-cluster-ca-cert, ESCQRS_KAFKA_SSL_CERTIFICATE_LOCATION
//                    and ESCQRS_KAFKA_SSL_KEY_LOCATION to user.crt and user.key
//                    of one mounted KafkaUser Secret, its program's own user
//                    (escqrs-gateway, escqrs-<aggregate>-command-service,
//                    escqrs-projector-<projector.name>); the registry on kafkasql
//                    the same through APICURIO_KAFKA_COMMON_* (user.p12 with
//                    user.password by secretKeyRef, the cluster CA as PEM
//                    truststore); their pods carry escqrs.io/kafka-client=true
//                    (Strimzi's NetworkPolicy); and no SASL is left: no variable
//                    or ConfigMap key naming SASL, no SASL_* security protocol,
//                    no secretKeyRef to a KafkaUser's password or sasl.jaas.config.
import fs from "node:fs";
import path from "node:path";
import { parseAllDocuments } from "yaml";

const here = path.dirname(new URL(import.meta.url).pathname);
const operatorObjects = JSON.parse(fs.readFileSync(path.join(here, "operator-objects.json"), "utf8"));

let failures = 0;
const fail = (where, check, msg) => {
    failures++;
    console.log(`${where}: [${check}] ${msg}`);
};
const id = (o) => `${o?.kind}/${o?.metadata?.name}`;
const podTemplate = (o) => (o.kind === "CronJob" ? o.spec?.jobTemplate?.spec?.template : o.spec?.template);
const appName = (tpl) => tpl?.metadata?.labels?.["app.kubernetes.io/name"];

// Peers, as written in k8s/base/escqrs/network-policy.yaml.
const PEER = {
    apiClients: { namespaceSelector: { matchLabels: { "escqrs.io/api-client": "true" } } },
    prometheus: {
        namespaceSelector: { matchLabels: { "escqrs.io/monitoring": "true" } },
        podSelector: { matchLabels: { "app.kubernetes.io/name": "prometheus" } },
    },
    escqrsAdmin: { podSelector: { matchLabels: { "app.kubernetes.io/component": "escqrs-admin" } } },
    registryClients: { podSelector: { matchLabels: { "escqrs.io/registry-client": "true" } } },
    projectors: { podSelector: { matchLabels: { "app.kubernetes.io/name": "projector" } } },
};
// "<app.kubernetes.io/name> <container port name>" -> the peers that may
// connect, exactly.  A container port not listed here may be reached by none.
const ACCESS = {
    "gateway http": ["apiClients", "prometheus"],
    "projector http": ["apiClients", "projectors"], // partitioned: forwarded to the owner
    "projector admin": ["escqrsAdmin", "prometheus", "projectors"],
    "command-service http": ["prometheus"],
    "registry http": ["registryClients"],
};
const REGISTRY_CLIENT_LABEL = ["escqrs.io/registry-client", "true"];

// Canonical JSON (sorted keys), to compare peers.
const canon = (v) =>
    Array.isArray(v)
        ? `[${v.map(canon).join(",")}]`
        : v && typeof v === "object"
          ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(",")}}`
          : JSON.stringify(v);
const peerName = new Map(Object.entries(PEER).map(([k, v]) => [canon(v), k]));

// Does a label selector (matchLabels and matchExpressions) select these labels?
function selects(sel, labels = {}) {
    if (!sel) return false;
    for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
    for (const e of sel.matchExpressions ?? []) {
        const has = Object.hasOwn(labels, e.key);
        const val = labels[e.key];
        if (e.operator === "In" && !(has && e.values.includes(val))) return false;
        if (e.operator === "NotIn" && has && e.values.includes(val)) return false;
        if (e.operator === "Exists" && !has) return false;
        if (e.operator === "DoesNotExist" && has) return false;
    }
    return true;
}
const emptySelector = (sel) =>
    sel !== undefined && !Object.keys(sel?.matchLabels ?? {}).length && !(sel?.matchExpressions ?? []).length;

const SECRET_NAME = /PASSWORD|PASSWD|SECRET|TOKEN|JAAS|PRIVATE_?KEY|PASSPHRASE|CREDENTIAL|API_?KEY/i;
const JWT = /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/;
const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;
const PASSWORD_ASSIGN = /password\s*[=:]\s*"?[^\s"$]/i;

function checkRendering(name, objs) {
    const by = (kind) => objs.filter((o) => o.kind === kind);
    const configMaps = new Map(by("ConfigMap").map((c) => [c.metadata.name, c]));
    const secrets = new Map(by("Secret").map((s) => [s.metadata.name, s]));
    const workloads = objs.filter((o) => podTemplate(o)?.spec);
    const policies = by("NetworkPolicy");

    // The variables a container sees: name -> {value} | {secretKeyRef} |
    // {configMapKeyRef, value?}.  envFrom ConfigMaps first, env wins.
    const envOf = (c) => {
        const env = new Map();
        for (const ef of c.envFrom ?? []) {
            const cm = ef.configMapRef && configMaps.get(ef.configMapRef.name);
            for (const [k, v] of Object.entries(cm?.data ?? {})) env.set((ef.prefix ?? "") + k, { value: v, from: id(cm) });
            if (ef.secretRef) env.set(`(all of Secret ${ef.secretRef.name})`, { secretRef: ef.secretRef });
        }
        for (const e of c.env ?? []) {
            const cref = e.valueFrom?.configMapKeyRef;
            if (cref) env.set(e.name, { configMapKeyRef: cref, value: configMaps.get(cref.name)?.data?.[cref.key] });
            else if (e.valueFrom?.secretKeyRef) env.set(e.name, { secretKeyRef: e.valueFrom.secretKeyRef });
            else if (e.valueFrom) env.set(e.name, { other: e.valueFrom });
            else env.set(e.name, { value: e.value ?? "" });
        }
        return env;
    };
    // The object and key a file path inside the container comes from, or null.
    const mountedFile = (spec, c, file) => {
        for (const m of c.volumeMounts ?? []) {
            const dir = m.mountPath.replace(/\/$/, "");
            if (!file.startsWith(dir + "/")) continue;
            const rel = m.subPath ? null : file.slice(dir.length + 1);
            const v = (spec.volumes ?? []).find((x) => x.name === m.name);
            if (!v || rel === null) continue;
            for (const src of [v, ...(v.projected?.sources ?? [])]) {
                const [kind, ref] = src.secret ? ["Secret", src.secret] : src.configMap ? ["ConfigMap", src.configMap] : [];
                if (!kind) continue;
                const refName = ref.secretName ?? ref.name;
                const item = ref.items ? ref.items.find((i) => i.path === rel) : { key: rel };
                if (item) return { kind, name: refName, key: item.key };
            }
        }
        return null;
    };
    const exists = ({ kind, name: n, key }) => {
        const rendered = (kind === "Secret" ? secrets : configMaps).get(n);
        if (rendered) return Object.hasOwn({ ...rendered.data, ...rendered.stringData, ...rendered.binaryData }, key);
        const own = (kind === "Secret" ? operatorObjects.secrets : operatorObjects.configMaps)[n];
        return !!own && own.keys.includes(key);
    };
    const portOf = (listen) => Number(String(listen ?? "").split(":").pop());

    // ---------------------------------------------------------- netpol-from
    for (const p of policies) {
        const w = `${name}: ${id(p)}`;
        (p.spec?.ingress ?? []).forEach((r, i) => {
            if (!r.from?.length) fail(w, "netpol-from", `ingress rule ${i} has no \`from\`: it lets in every source`);
            if (!r.ports?.length) fail(w, "netpol-from", `ingress rule ${i} has no \`ports\`: it opens every port`);
            for (const peer of r.from ?? []) {
                if (!peer.podSelector && !peer.namespaceSelector && !peer.ipBlock)
                    fail(w, "netpol-from", `ingress rule ${i} has an empty peer`);
                if (emptySelector(peer.namespaceSelector))
                    fail(w, "netpol-from", `ingress rule ${i}: namespaceSelector {} is every namespace`);
                if (emptySelector(peer.podSelector) && !peer.namespaceSelector)
                    fail(w, "netpol-from", `ingress rule ${i}: podSelector {} is every pod of the namespace`);
                if (["0.0.0.0/0", "::/0"].includes(peer.ipBlock?.cidr))
                    fail(w, "netpol-from", `ingress rule ${i}: ipBlock ${peer.ipBlock.cidr} is everyone`);
            }
        });
    }

    // ---------------------------------------------- netpol-isolated, -access
    for (const o of workloads) {
        const w = `${name}: ${id(o)}`;
        const tpl = podTemplate(o);
        const labels = tpl.metadata?.labels ?? {};
        const mine = policies.filter(
            (p) => selects(p.spec?.podSelector, labels) && (p.spec?.policyTypes ?? ["Ingress"]).includes("Ingress"),
        );
        if (!mine.length) {
            fail(w, "netpol-isolated", "no NetworkPolicy of type Ingress selects its pods: every pod may connect to them");
            continue;
        }
        for (const c of tpl.spec.containers ?? [])
            for (const cp of c.ports ?? []) {
                const allowed = new Set();
                for (const p of mine)
                    for (const r of p.spec?.ingress ?? []) {
                        const hit = !r.ports?.length || r.ports.some((rp) => rp.port === cp.containerPort || rp.port === cp.name);
                        if (!hit) continue;
                        if (!r.from?.length) allowed.add("everyone (a rule without `from`)");
                        for (const peer of r.from ?? []) allowed.add(peerName.get(canon(peer)) ?? canon(peer));
                    }
                const key = `${appName(tpl)} ${cp.name}`;
                const want = new Set(ACCESS[key] ?? []);
                const extra = [...allowed].filter((x) => !want.has(x));
                const missing = [...want].filter((x) => !allowed.has(x));
                if (extra.length)
                    fail(w, "netpol-access", `port ${cp.name} (${cp.containerPort}) is open to ${extra.join(", ")}; ` +
                        `the access table allows ${[...want].join(", ") || "nobody"} (security.mjs ACCESS)`);
                if (missing.length)
                    fail(w, "netpol-access", `port ${cp.name} (${cp.containerPort}) is closed to ${missing.join(", ")}, ` +
                        "which the access table lets in (security.mjs ACCESS)");
            }
        for (const c of tpl.spec.containers ?? [])
            if (envOf(c).has("ESCQRS_REGISTRY_URL") && labels[REGISTRY_CLIENT_LABEL[0]] !== REGISTRY_CLIENT_LABEL[1])
                fail(w, "netpol-access", `container ${c.name} talks to the registry but its pods lack ` +
                    `${REGISTRY_CLIENT_LABEL.join("=")}: the registry's NetworkPolicy keeps them out`);
    }

    // --------------------------------------------------------- admin-port
    const projectors = workloads.filter((o) => podTemplate(o).spec.containers?.some((c) => (c.command ?? [])[0] === "escqrs-projector"));
    const adminPorts = new Set();
    for (const o of projectors) {
        const w = `${name}: ${id(o)}`;
        const c = podTemplate(o).spec.containers.find((x) => (x.command ?? [])[0] === "escqrs-projector");
        const env = envOf(c);
        const listen = env.get("ESCQRS_ADMIN_LISTEN")?.value;
        const admin = (c.ports ?? []).find((p) => p.name === "admin");
        if (!admin) fail(w, "admin-port", "the projector has no container port named admin");
        if (!listen || !/^(0\.0\.0\.0|\[::\]|):\d+$/.test(listen))
            fail(w, "admin-port", `ESCQRS_ADMIN_LISTEN is ${listen ?? "unset (loopback)"}: the rebuild jobs and Prometheus cannot reach it; set 0.0.0.0:<port>`);
        else if (admin && portOf(listen) !== admin.containerPort)
            fail(w, "admin-port", `ESCQRS_ADMIN_LISTEN port ${portOf(listen)} is not the admin container port ${admin.containerPort}`);
        if (admin) adminPorts.add(admin.containerPort);
        const http = (c.ports ?? []).find((p) => p.name === "http");
        if (http && admin && http.containerPort === admin.containerPort)
            fail(w, "admin-port", "the query and admin ports are the same");
        for (const s of by("Service")) {
            if (!selects({ matchLabels: s.spec?.selector }, podTemplate(o).metadata?.labels) || !s.spec?.selector) continue;
            for (const sp of s.spec?.ports ?? []) {
                const target = sp.targetPort ?? sp.port;
                if (sp.name === "admin" || (admin && [sp.port, target].includes(admin.containerPort)) || target === "admin")
                    fail(`${name}: ${id(s)}`, "admin-port", `port ${sp.name ?? sp.port} (${sp.port} -> ${target}) exposes the projector's admin listener`);
            }
        }
    }

    // ------------------------------------------------------ rebuild-admin
    let rebuildJobs = 0;
    for (const o of workloads.filter((x) => ["CronJob", "Job"].includes(x.kind))) {
        const tpl = podTemplate(o);
        for (const c of tpl.spec.containers ?? []) {
            const cmd = [...(c.command ?? []), ...(c.args ?? [])].join(" ");
            if (!/\bescqrs\b.*\brebuild\b/s.test(cmd)) continue;
            rebuildJobs++;
            const w = `${name}: ${id(o)} container ${c.name}`;
            const m = cmd.match(/projector\.admin\.url=https?:\/\/[^\s"':]+:(\d+)/);
            if (!m) fail(w, "rebuild-admin", "runs escqrs rebuild without --set projector.admin.url=http://<pod IP>:<admin port>");
            else if (!adminPorts.has(Number(m[1])))
                fail(w, "rebuild-admin", `projector.admin.url uses port ${m[1]}, not the projector's admin port (${[...adminPorts].join(", ") || "none"})`);
            if (/projector\.url=|:8090\b/.test(cmd)) fail(w, "rebuild-admin", "calls the projector's query port (projector.url or :8090); the admin routes are on the admin port only");
            if (tpl.metadata?.labels?.["app.kubernetes.io/component"] !== "escqrs-admin")
                fail(w, "rebuild-admin", "its pods lack app.kubernetes.io/component=escqrs-admin: the projector's NetworkPolicy keeps them out");
            const env = envOf(c);
            const tokenFile = env.get("ESCQRS_TOKEN_FILE")?.value;
            const src = tokenFile && mountedFile(tpl.spec, c, tokenFile);
            if (env.get("ESCQRS_TOKEN")?.secretKeyRef) continue;
            if (!tokenFile) fail(w, "rebuild-admin", "no admin token: set ESCQRS_TOKEN_FILE to a file of a mounted Secret (or ESCQRS_TOKEN from a secretKeyRef)");
            else if (!src || src.kind !== "Secret")
                fail(w, "rebuild-admin", `ESCQRS_TOKEN_FILE ${tokenFile} is not a file of a mounted Secret`);
            else if (!exists(src)) fail(w, "rebuild-admin", `ESCQRS_TOKEN_FILE ${tokenFile}: Secret ${src.name} has no key ${src.key}`);
        }
    }
    if (projectors.length && !rebuildJobs) fail(name, "rebuild-admin", "projectors but no rebuild job (a job running escqrs rebuild)");

    // -------------------------------------------------------- auth-config
    const authed = new Set(["escqrs-gateway", "escqrs-projector"]);
    const seenAuthed = new Set();
    for (const o of workloads) {
        const spec = podTemplate(o).spec;
        for (const c of spec.containers ?? []) {
            if (!authed.has((c.command ?? [])[0])) continue;
            seenAuthed.add(c.command[0]);
            const w = `${name}: ${id(o)} container ${c.name}`;
            const env = envOf(c);
            const val = (k) => env.get(k);
            if (val("ESCQRS_AUTH_MODE")?.value !== "jwt")
                fail(w, "auth-config", `ESCQRS_AUTH_MODE is ${val("ESCQRS_AUTH_MODE")?.value ?? "unset (none)"}, not jwt`);
            const policy = val("ESCQRS_AUTH_POLICY_FILE")?.value;
            const psrc = policy && mountedFile(spec, c, policy);
            if (!policy) fail(w, "auth-config", "no ESCQRS_AUTH_POLICY_FILE");
            else if (!psrc) fail(w, "auth-config", `ESCQRS_AUTH_POLICY_FILE ${policy} is in no mounted ConfigMap`);
            else if (psrc.kind !== "ConfigMap" || !exists(psrc))
                fail(w, "auth-config", `ESCQRS_AUTH_POLICY_FILE ${policy}: ${psrc.kind} ${psrc.name} has no key ${psrc.key}`);
            const file = val("ESCQRS_AUTH_JWKS_FILE"), url = val("ESCQRS_AUTH_JWKS_URL");
            if (!file && !url) fail(w, "auth-config", "neither ESCQRS_AUTH_JWKS_FILE nor ESCQRS_AUTH_JWKS_URL");
            if (file && url) fail(w, "auth-config", "both ESCQRS_AUTH_JWKS_FILE and ESCQRS_AUTH_JWKS_URL (the program refuses that)");
            if (file) {
                const jsrc = file.value && mountedFile(spec, c, file.value);
                if (!jsrc || !exists(jsrc)) fail(w, "auth-config", `ESCQRS_AUTH_JWKS_FILE ${file.value} is no key of a mounted ConfigMap or Secret`);
            }
            if (url && !url.configMapKeyRef && !/^https:\/\//.test(url.value ?? ""))
                fail(w, "auth-config", `ESCQRS_AUTH_JWKS_URL ${url.value} is not https`);
            for (const k of ["ESCQRS_AUTH_ISSUER", "ESCQRS_AUTH_AUDIENCE"]) {
                const v = val(k);
                if (!v || (!v.configMapKeyRef && !v.value)) fail(w, "auth-config", `no ${k}`);
                else if (v.configMapKeyRef && !exists({ kind: "ConfigMap", name: v.configMapKeyRef.name, key: v.configMapKeyRef.key }))
                    fail(w, "auth-config", `${k}: ConfigMap ${v.configMapKeyRef.name} has no key ${v.configMapKeyRef.key}`);
            }
        }
    }
    for (const prog of authed)
        if (!seenAuthed.has(prog)) fail(name, "auth-config", `no workload runs ${prog}`);

    // ------------------------------------------------------- metrics-auth
    // A scrape target: the container port a monitor endpoint reaches.
    const wantsToken = (c, portNumber) => {
        const env = envOf(c);
        return env.get("ESCQRS_AUTH_MODE")?.value === "jwt" && portOf(env.get("ESCQRS_HTTP_LISTEN")?.value) === portNumber;
    };
    const scraped = [];
    for (const m of by("ServiceMonitor"))
        for (const s of by("Service").filter((x) => selects(m.spec?.selector, x.metadata?.labels)))
            for (const ep of m.spec?.endpoints ?? []) {
                const sp = (s.spec?.ports ?? []).find((p) => p.name === ep.port);
                if (!sp) continue;
                for (const o of workloads.filter((x) => s.spec?.selector && selects({ matchLabels: s.spec.selector }, podTemplate(x).metadata?.labels)))
                    for (const c of podTemplate(o).spec.containers ?? []) {
                        const t = sp.targetPort ?? sp.port;
                        const cp = (c.ports ?? []).find((p) => p.name === t || p.containerPort === t);
                        if (cp) scraped.push([m, ep, c, cp.containerPort]);
                    }
            }
    for (const m of by("PodMonitor"))
        for (const o of workloads.filter((x) => selects(m.spec?.selector, podTemplate(x).metadata?.labels)))
            for (const ep of m.spec?.podMetricsEndpoints ?? [])
                for (const c of podTemplate(o).spec.containers ?? []) {
                    const cp = (c.ports ?? []).find((p) => p.name === ep.port);
                    if (cp) scraped.push([m, ep, c, cp.containerPort]);
                }
    for (const [m, ep, c, port] of scraped)
        if (wantsToken(c, port) && !ep.authorization?.credentials?.name)
            fail(`${name}: ${id(m)}`, "metrics-auth", `endpoint ${ep.port} scrapes ${c.name}:${port}, which wants a token for /metrics, without authorization.credentials`);

    // --------------------------------------------------------- kafka-mtls
    // The Secrets Strimzi writes: a KafkaUser's (by its authentication type) and
    // each Kafka's cluster CA; none is rendered.
    const kafkaUsers = new Map(by("KafkaUser").map((u) => [u.metadata.name, u]));
    const clusterCas = new Set(by("Kafka").map((k) => `${k.metadata.name}-cluster-ca-cert`));
    const USER_KEYS = { tls: ["ca.crt", "user.crt", "user.key", "user.p12", "user.password"] };
    const CA_KEYS = ["ca.crt", "ca.p12", "ca.password"];
    const strimziKey = (src) =>
        src?.kind === "Secret" &&
        (clusterCas.has(src.name)
            ? CA_KEYS.includes(src.key)
            : (USER_KEYS[kafkaUsers.get(src.name)?.spec?.authentication?.type] ?? []).includes(src.key));
    for (const u of kafkaUsers.values())
        if (u.spec?.authentication?.type !== "tls")
            fail(`${name}: ${id(u)}`, "kafka-mtls", `authentication is ${u.spec?.authentication?.type ?? "unset"}, not tls: ` +
                "librdkafka 2.0.2 cannot log in with SCRAM to Kafka 4 (scripts/kafka-acls write makes tls users)");
    for (const k of by("Kafka"))
        for (const l of k.spec?.kafka?.listeners ?? [])
            if (l.tls !== true || l.authentication?.type !== "tls")
                fail(`${name}: ${id(k)}`, "kafka-mtls", `listener ${l.name} (port ${l.port}) is ` +
                    `${l.tls === true ? "TLS" : "not TLS"} with authentication ${l.authentication?.type ?? "none"}; ` +
                    "every listener must be tls: true with authentication type tls");
    // The KafkaUser a program logs in as (the user names of k8s/kafka-acls.yaml).
    const USER_OF = {
        "escqrs-gateway": () => "escqrs-gateway",
        "escqrs-command-service": (env) => `escqrs-${env.get("ESCQRS_AGGREGATE")?.value}-command-service`,
        "escqrs-projector": (env) => `escqrs-projector-${env.get("ESCQRS_PROJECTOR_NAME")?.value}`,
    };
    const SASL = /SASL/i;
    for (const o of workloads) {
        const tpl = podTemplate(o);
        const spec = tpl.spec;
        const kafkaLabel = tpl.metadata?.labels?.["escqrs.io/kafka-client"] === "true";
        for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
            const w = `${name}: ${id(o)} container ${c.name}`;
            const env = envOf(c);
            for (const [k, v] of env) {
                if (/KAFKA/i.test(k) && SASL.test(k))
                    fail(w, "kafka-mtls", `env ${k}${v.from ? ` (from ${v.from})` : ""}: SASL is left; Kafka clients use mutual TLS`);
                if (/SECURITY_PROTOCOL$/.test(k) && SASL.test(String(v.value ?? "")))
                    fail(w, "kafka-mtls", `env ${k}=${v.value}: SASL is left; Kafka clients use SSL (mutual TLS)`);
                const ref = v.secretKeyRef;
                if (ref && kafkaUsers.has(ref.name) && ["password", "sasl.jaas.config"].includes(ref.key))
                    fail(w, "kafka-mtls", `env ${k} reads the SCRAM ${ref.key} of KafkaUser ${ref.name}; Kafka clients use its certificate`);
            }
            const cmd = (c.command ?? [])[0];
            const escqrs = Object.hasOwn(USER_OF, cmd) || env.has("ESCQRS_KAFKA_BOOTSTRAP_SERVERS");
            const apicurio = env.has("APICURIO_KAFKASQL_BOOTSTRAP_SERVERS") || env.get("APICURIO_STORAGE_KIND")?.value === "kafkasql";
            if (!escqrs && !apicurio) continue;
            if (!kafkaLabel)
                fail(w, "kafka-mtls", "talks to Kafka but its pods lack escqrs.io/kafka-client=true: Strimzi's NetworkPolicy keeps them out");
            // a variable naming a file of a mounted Secret: that Secret and key, checked
            const fileOf = (k, want, what) => {
                const path = env.get(k)?.value;
                if (!path) {
                    fail(w, "kafka-mtls", `no ${k} (${what})`);
                    return null;
                }
                const src = mountedFile(spec, c, path);
                if (!src || src.kind !== "Secret")
                    fail(w, "kafka-mtls", `${k}=${path} is no file of a mounted Secret (${what})`);
                else if (!want(src))
                    fail(w, "kafka-mtls", `${k}=${path} is key ${src.key} of Secret ${src.name}; want ${what}`);
                else if (!strimziKey(src))
                    fail(w, "kafka-mtls", `${k}=${path}: Strimzi writes no key ${src.key} into Secret ${src.name}`);
                return src;
            };
            const isCa = (key) => (src) => clusterCas.has(src.name) && src.key === key;
            const isUser = (key) => (src) => kafkaUsers.has(src.name) && src.key === key;
            if (escqrs) {
                const proto = env.get("ESCQRS_KAFKA_SECURITY_PROTOCOL")?.value;
                if (proto !== "SSL") fail(w, "kafka-mtls", `ESCQRS_KAFKA_SECURITY_PROTOCOL is ${proto ?? "unset (plaintext)"}, not SSL`);
                if (!env.has("ESCQRS_KAFKA_BOOTSTRAP_SERVERS")) fail(w, "kafka-mtls", "no ESCQRS_KAFKA_BOOTSTRAP_SERVERS");
                fileOf("ESCQRS_KAFKA_SSL_CA_LOCATION", isCa("ca.crt"),
                    `ca.crt of the cluster CA Secret (${[...clusterCas].join(", ")}); a KafkaUser Secret's ca.crt is the clients CA`);
                const cert = fileOf("ESCQRS_KAFKA_SSL_CERTIFICATE_LOCATION", isUser("user.crt"), "user.crt of a KafkaUser's Secret");
                const key = fileOf("ESCQRS_KAFKA_SSL_KEY_LOCATION", isUser("user.key"), "user.key of a KafkaUser's Secret");
                if (cert && key && cert.name !== key.name)
                    fail(w, "kafka-mtls", `certificate of ${cert.name} but key of ${key.name}`);
                const want = USER_OF[cmd]?.(env);
                if (want && cert && kafkaUsers.has(cert.name) && cert.name !== want)
                    fail(w, "kafka-mtls", `${cmd} logs in as ${cert.name} (the certificate it mounts); its KafkaUser is ${want}`);
                if (want && !kafkaUsers.has(want)) fail(w, "kafka-mtls", `${cmd}'s KafkaUser ${want} is not in this rendering`);
            }
            if (apicurio) {
                const val = (k) => env.get(`APICURIO_KAFKA_COMMON_${k}`)?.value;
                if (val("SECURITY_PROTOCOL") !== "SSL")
                    fail(w, "kafka-mtls", `APICURIO_KAFKA_COMMON_SECURITY_PROTOCOL is ${val("SECURITY_PROTOCOL") ?? "unset (plaintext)"}, not SSL`);
                if (val("SSL_KEYSTORE_TYPE") !== "PKCS12")
                    fail(w, "kafka-mtls", `APICURIO_KAFKA_COMMON_SSL_KEYSTORE_TYPE is ${val("SSL_KEYSTORE_TYPE") ?? "unset"}, not PKCS12 (the user Secret's user.p12)`);
                const store = fileOf("APICURIO_KAFKA_COMMON_SSL_KEYSTORE_LOCATION", isUser("user.p12"), "user.p12 of a KafkaUser's Secret");
                const pw = env.get("APICURIO_KAFKA_COMMON_SSL_KEYSTORE_PASSWORD")?.secretKeyRef;
                if (store && !(pw && pw.name === store.name && pw.key === "user.password"))
                    fail(w, "kafka-mtls", `APICURIO_KAFKA_COMMON_SSL_KEYSTORE_PASSWORD must be a secretKeyRef to ${store.name}, key user.password`);
                if (val("SSL_TRUSTSTORE_TYPE") !== "PEM")
                    fail(w, "kafka-mtls", `APICURIO_KAFKA_COMMON_SSL_TRUSTSTORE_TYPE is ${val("SSL_TRUSTSTORE_TYPE") ?? "unset"}, not PEM`);
                fileOf("APICURIO_KAFKA_COMMON_SSL_TRUSTSTORE_LOCATION", isCa("ca.crt"), "ca.crt of the cluster CA Secret");
            }
        }
    }
    for (const cm of configMaps.values())
        for (const [k, v] of Object.entries(cm.data ?? {}))
            if ((/KAFKA/i.test(k) && SASL.test(k)) || (/SECURITY_PROTOCOL$/.test(k) && SASL.test(String(v))))
                fail(`${name}: ${id(cm)}`, "kafka-mtls", `key ${k}=${v}: SASL is left; Kafka clients use mutual TLS`);

    // ------------------------------------------------------- no-plaintext
    for (const o of workloads) {
        const spec = podTemplate(o).spec;
        for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
            const w = `${name}: ${id(o)} container ${c.name}`;
            for (const e of c.env ?? []) {
                if (!SECRET_NAME.test(e.name)) continue;
                if (/_FILE$/.test(e.name)) {
                    const src = e.value && mountedFile(spec, c, e.value);
                    if (!src || src.kind !== "Secret")
                        fail(w, "no-plaintext", `env ${e.name}=${e.value}: not a file of a mounted Secret`);
                } else if (!e.valueFrom?.secretKeyRef)
                    fail(w, "no-plaintext", `env ${e.name} is ${e.valueFrom ? "from a ConfigMap or field" : "set inline"}: use a secretKeyRef or ${e.name}_FILE`);
            }
            for (const ef of c.envFrom ?? [])
                if (ef.configMapRef) {
                    const cm = configMaps.get(ef.configMapRef.name);
                    for (const k of Object.keys(cm?.data ?? {}))
                        if (SECRET_NAME.test(k) && !/_FILE$/.test(k))
                            fail(w, "no-plaintext", `env ${k} comes from ConfigMap ${ef.configMapRef.name}: use a secretKeyRef or ${k}_FILE`);
                }
            const cmd = [...(c.command ?? []), ...(c.args ?? [])].join(" ");
            if (/--token\b|\btoken=|\bpassword=/i.test(cmd) || JWT.test(cmd))
                fail(w, "no-plaintext", "a token or password on the command line (visible in the pod spec and ps)");
            for (const e of c.env ?? [])
                if (typeof e.value === "string" && (JWT.test(e.value) || PRIVATE_KEY.test(e.value)))
                    fail(w, "no-plaintext", `env ${e.name} holds a token or a private key`);
        }
    }
    for (const cm of configMaps.values())
        for (const [k, v] of Object.entries(cm.data ?? {})) {
            const w = `${name}: ${id(cm)}`;
            if (SECRET_NAME.test(k) && !/_FILE$/.test(k)) fail(w, "no-plaintext", `key ${k} looks like a secret; put it in a Secret`);
            if (JWT.test(v)) fail(w, "no-plaintext", `key ${k} holds a JWT`);
            if (PRIVATE_KEY.test(v)) fail(w, "no-plaintext", `key ${k} holds a private key`);
            if (PASSWORD_ASSIGN.test(v)) fail(w, "no-plaintext", `key ${k} assigns a password`);
        }
    for (const s of secrets.values())
        if (Object.keys({ ...s.data, ...s.stringData }).length)
            fail(`${name}: ${id(s)}`, "no-plaintext", "a Secret with data in the manifests: the operator creates Secrets (operator-objects.json)");
}

const renders = new Map();
for (const arg of process.argv.slice(2)) {
    const [name, file] = arg.split("=");
    const objs = [];
    for (const doc of parseAllDocuments(fs.readFileSync(file, "utf8"))) {
        const o = doc.toJS();
        if (o) objs.push(o);
    }
    renders.set(name, objs);
}
if (!renders.size) {
    console.error("usage: node security.mjs NAME=rendered.yaml ...");
    process.exit(2);
}
for (const [name, objs] of renders) checkRendering(name, objs);
if (failures) {
    console.log(`security: ${failures} problem(s)`);
    process.exit(1);
}
console.log(`security: ok (${[...renders.keys()].join(", ")}: NetworkPolicies, admin port, rebuild jobs, authentication, secrets, Kafka mutual TLS)`);
