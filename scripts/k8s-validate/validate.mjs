// validate.mjs — offline validation of rendered k8s/ overlays (run by
// scripts/check-k8s, which installs the pinned packages of package.json).
//
//   node validate.mjs NAME=rendered.yaml ...
//
// Three passes over every object of every rendering; any finding makes the
// exit status 1 and is printed as "NAME: Kind/name: what".
//
// 1. Schema (types, enums, required fields, patterns): each object is built
//    as its kubernetes-models class and validate()d against the JSON schema
//    that package compiled from the upstream OpenAPI/CRD schemas:
//      kubernetes-models                         Kubernetes core/apps/batch/...
//      @kubernetes-models/strimzi-kafka-operator kafka.strimzi.io/v1 (the
//                                                Strimzi 0.49/1.0 CRDs)
//      @kubernetes-models/prometheus-operator    monitoring.coreos.com/v1
//    An apiVersion/kind none of them knows is an error, not a skip.
// 2. Unknown fields: those schemas let unknown properties through (the API
//    server would prune them, or refuse them with strict field validation),
//    so every object is also type-checked by TypeScript as an object literal
//    of the package's interface: excess property checks name a misspelt
//    field.  TypeScript reports one unknown field per object at a time.
// 3. Cross-references the schemas cannot see: Strimzi resources name an
//    existing Kafka; an aggregate's topics agree on partitions; ACL topics
//    exist; Secrets, ConfigMaps, Services, HPA, PDB and PodMonitor targets
//    resolve (a Secret or ConfigMap the operator creates resolves when
//    operator-objects.json, next to this file, lists it and the key used); every
//    escqrs container is hardened, has a memory limit and a pinned image; a key
//    of a Secret Strimzi writes (a KafkaUser's, by its authentication type, or
//    <kafka>-cluster-ca-cert) is one Strimzi writes (how each program logs in
//    to Kafka is security.mjs's check kafka-mtls); a rendering that
//    puts objects in a namespace creates that Namespace (kubectl apply -k on a
//    fresh cluster fails otherwise).
// 4. Apicurio Registry on kafkasql storage (registry-kafka.json, next to this
//    file, lists the topics it writes and the variables that name them): every
//    topic its container's env names, or leaves at Apicurio's default, is a
//    KafkaTopic with the settings Apicurio needs, and the registry's KafkaUser
//    may do there what Apicurio does; its consumer-group prefix is allowed, and
//    no fixed group id is set.  Neither the broker nor the registry creates a
//    missing topic: a registry without one fails at its first write.
// 5. Domains: every aggregate and projector has all its pieces (topics with
//    their settings, command service, ACLs of its program and of the gateway,
//    the gateway's list, DLQ, a rebuild job per projection); see domainPass.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { parseAllDocuments } from "yaml";

const require = createRequire(import.meta.url);
const ts = require("typescript");
const here = path.dirname(new URL(import.meta.url).pathname);

let failures = 0;
const fail = (where, msg) => {
    failures++;
    console.log(`${where}: ${msg}`);
};
const id = (o) => `${o?.kind}/${o?.metadata?.name}`;

// apiVersion -> module directory of the class for that kind
function modulePath(apiVersion, kind) {
    if (!apiVersion || !kind) return null;
    if (apiVersion.startsWith("kafka.strimzi.io/"))
        return `@kubernetes-models/strimzi-kafka-operator/${apiVersion}/${kind}`;
    if (apiVersion.startsWith("monitoring.coreos.com/"))
        return `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`;
    return `kubernetes-models/${apiVersion}/${kind}`;
}

async function loadClass(mod, kind) {
    try {
        const m = await import(mod);
        return m[kind] ?? null;
    } catch {
        return null;
    }
}

function schemaPass(name, objs, classes) {
    for (const o of objs) {
        const cls = classes.get(`${o.apiVersion} ${o.kind}`);
        if (!cls) {
            fail(`${name}: ${id(o)}`, `no schema for apiVersion ${o.apiVersion} kind ${o.kind}`);
            continue;
        }
        try {
            new cls(o).validate();
        } catch (e) {
            for (const line of String(e.message).split(/,\s*(?=data)/))
                fail(`${name}: ${id(o)}`, line.replace(/^data/, "schema: "));
        }
    }
}

function typePass(renders, classes) {
    // One .ts file per rendering; line N+2 holds object N.
    const files = [];
    const where = new Map();
    for (const [name, objs] of renders) {
        const lines = [];
        const imports = new Set();
        objs.forEach((o, i) => {
            const mod = modulePath(o.apiVersion, o.kind);
            if (!classes.get(`${o.apiVersion} ${o.kind}`)) return;
            const alias = `T${i}`;
            imports.add(`import type { I${o.kind} as ${alias} } from "${mod}";`);
            lines.push(`export const o${i}: ${alias} = ${JSON.stringify(o)};`);
            where.set(`${name}:${lines.length}`, `${name}: ${id(o)}`);
        });
        const file = path.join(here, `rendered-${name}.ts`);
        fs.writeFileSync(file, [...imports].join("\n") + "\n// objects\n" + lines.join("\n") + "\n");
        files.push([name, file, imports.size]);
    }
    const program = ts.createProgram(
        files.map((f) => f[1]),
        {
            noEmit: true,
            strict: true,
            skipLibCheck: true,
            target: ts.ScriptTarget.ES2022,
            module: ts.ModuleKind.NodeNext,
            moduleResolution: ts.ModuleResolutionKind.NodeNext,
        },
    );
    for (const d of ts.getPreEmitDiagnostics(program)) {
        const msg = ts.flattenDiagnosticMessageText(d.messageText, " ").replace(/\s+/g, " ");
        if (!d.file) {
            fail("typescript", msg);
            continue;
        }
        const entry = files.find((f) => path.resolve(f[1]) === path.resolve(d.file.fileName));
        const { line } = d.file.getLineAndCharacterOfPosition(d.start ?? 0);
        const objLine = line - entry[2] - 1 + 1; // 1-based index among object lines
        const loc = where.get(`${entry[0]}:${objLine}`) ?? `${entry[0]}: line ${line + 1}`;
        // the source text at the diagnostic is the offending property key
        const at = d.file.text.slice(d.start, d.start + Math.min(d.length ?? 0, 80));
        fail(loc, `field ${at}: ${msg.slice(0, 300)}`);
    }
    for (const f of files) fs.rmSync(f[1], { force: true });
}

// Does one of the user's ACLs allow `op` on the resource `type`/`name`?  With
// `asPrefix`, `name` is itself a prefix (group names Apicurio makes up): only a
// prefix ACL that is a prefix of it covers every name that starts with it.
function aclAllows(user, type, name, op, asPrefix = false) {
    return (user?.spec?.authorization?.acls ?? []).some((acl) => {
        const r = acl.resource ?? {};
        if (r.type !== type) return false;
        const prefix = (r.patternType ?? "literal") === "prefix";
        const hit = prefix ? name.startsWith(r.name ?? "") : !asPrefix && name === r.name;
        const ops = acl.operations ?? [];
        return hit && (ops.includes(op) || ops.includes("All"));
    });
}

// Secrets and ConfigMaps the operator creates (not rendered), with their keys.
const operatorObjects = JSON.parse(fs.readFileSync(path.join(here, "operator-objects.json"), "utf8"));
// Keys of the Secrets Strimzi writes: a KafkaUser's, by its authentication
// type (Strimzi 0.49 docs, "Configuring user authentication"), and a Kafka's
// cluster CA certificate <name>-cluster-ca-cert.
const STRIMZI_USER_KEYS = {
    tls: ["ca.crt", "user.crt", "user.key", "user.p12", "user.password"],
    "scram-sha-512": ["password", "sasl.jaas.config"],
};
const STRIMZI_CA_KEYS = ["ca.crt", "ca.p12", "ca.password"];
// The reason a reference to `kind` `name` (key `key`, if any) does not
// resolve, or null.  `rendered` holds the names the rendering creates;
// `strimzi` (Secrets only) maps the names Strimzi writes to their keys.
function unresolved(kind, rendered, name, key, strimzi) {
    const made = strimzi?.get(name);
    if (made && key !== undefined && !made.keys.includes(key))
        return `Secret ${name} (${made.what}) has no key ${key}; Strimzi writes ${made.keys.join(", ")}`;
    if (rendered.has(name)) return null;
    const own = (kind === "Secret" ? operatorObjects.secrets : operatorObjects.configMaps)[name];
    const what = kind === "Secret" ? "neither a KafkaUser's nor a cluster CA" : "not in this rendering";
    if (!own) return `${kind} ${name} is ${what}, nor in operator-objects.json`;
    if (key !== undefined && !own.keys.includes(key))
        return `${kind} ${name} (created by the operator) has no key ${key} in operator-objects.json`;
    return null;
}

const matches = (sel, labels) =>
    sel && Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => labels?.[k] === v);

function podTemplate(o) {
    if (o.kind === "CronJob") return o.spec?.jobTemplate?.spec?.template;
    return o.spec?.template;
}

function crossPass(name, objs) {
    const by = (kind) => objs.filter((o) => o.kind === kind);
    const names = (kind) => new Set(by(kind).map((o) => o.metadata?.name));
    const kafkas = names("Kafka");
    const topics = by("KafkaTopic");
    const topicNames = new Set(topics.map((t) => t.spec?.topicName ?? t.metadata?.name));
    const users = names("KafkaUser");
    const configMaps = names("ConfigMap");
    // Secrets: the User Operator's and the cluster CA; rendered ones resolve too
    // (security.mjs refuses any that carries data)
    const secrets = new Set([...users, ...[...kafkas].map((k) => `${k}-cluster-ca-cert`), ...names("Secret")]);
    const strimzi = new Map([
        ...by("KafkaUser").map((u) => {
            const type = u.spec?.authentication?.type;
            return [u.metadata?.name, { keys: STRIMZI_USER_KEYS[type] ?? [], what: `KafkaUser, authentication ${type}` }];
        }),
        ...[...kafkas].map((k) => [`${k}-cluster-ca-cert`, { keys: STRIMZI_CA_KEYS, what: `cluster CA of Kafka ${k}` }]),
    ]);
    const workloads = objs.filter((o) => podTemplate(o));

    const seen = new Set();
    for (const o of objs) {
        const w = `${name}: ${id(o)}`;
        if (!o.metadata?.name) fail(w, "no metadata.name");
        if (seen.has(id(o))) fail(w, "defined twice");
        seen.add(id(o));
        if (JSON.stringify(o).includes("set-by-instance"))
            fail(w, 'a template placeholder "set-by-instance" was not replaced');
        if (o.apiVersion?.startsWith("kafka.strimzi.io/") && o.kind !== "Kafka") {
            const c = o.metadata?.labels?.["strimzi.io/cluster"];
            if (!kafkas.has(c)) fail(w, `label strimzi.io/cluster=${c} names no Kafka in this rendering`);
        }
    }

    const parts = new Map();
    for (const t of topics) {
        const agg = t.metadata?.labels?.["escqrs.io/aggregate"];
        if (!agg) continue;
        parts.set(agg, [...(parts.get(agg) ?? []), [t.metadata.name, t.spec?.partitions]]);
    }
    for (const [agg, list] of parts)
        if (new Set(list.map((x) => x[1])).size > 1)
            fail(`${name}: aggregate ${agg}`, `topics disagree on partitions: ${list.map((x) => x.join("=")).join(", ")}`);

    for (const u of by("KafkaUser"))
        for (const acl of u.spec?.authorization?.acls ?? []) {
            const r = acl.resource ?? {};
            if (r.type === "topic" && (r.patternType ?? "literal") === "literal" && !topicNames.has(r.name))
                fail(`${name}: ${id(u)}`, `ACL on topic ${r.name}, which no KafkaTopic declares`);
        }

    for (const o of workloads) {
        const w = `${name}: ${id(o)}`;
        const tpl = podTemplate(o);
        const spec = tpl.spec ?? {};
        if (o.spec?.selector?.matchLabels && !matches(o.spec.selector.matchLabels, tpl.metadata?.labels))
            fail(w, "selector does not match the pod template's labels");
        if (spec.securityContext?.runAsNonRoot !== true) fail(w, "pod securityContext.runAsNonRoot is not true");
        if (spec.securityContext?.seccompProfile?.type !== "RuntimeDefault")
            fail(w, "pod seccompProfile is not RuntimeDefault");
        for (const v of spec.volumes ?? []) {
            // a volume's own secret/configMap, or a projected volume's sources;
            // the keys it mounts (all of them without `items`)
            const keysOf = (ref) => (ref.items?.length ? ref.items.map((i) => i.key) : [undefined]);
            for (const src of [v, ...(v.projected?.sources ?? [])]) {
                const refs = [];
                if (src.secret) refs.push(["Secret", secrets, src.secret.secretName ?? src.secret.name, src.secret]);
                if (src.configMap) refs.push(["ConfigMap", configMaps, src.configMap.name, src.configMap]);
                for (const [kind, rendered, refName, ref] of refs)
                    for (const k of keysOf(ref)) {
                        const why = unresolved(kind, rendered, refName, k, strimzi);
                        if (why) fail(w, `volume ${v.name}: ${why}`);
                    }
            }
        }
        for (const c of spec.containers ?? []) {
            const cw = `${w} container ${c.name}`;
            const sc = c.securityContext ?? {};
            if (sc.allowPrivilegeEscalation !== false) fail(cw, "allowPrivilegeEscalation is not false");
            if (sc.readOnlyRootFilesystem !== true) fail(cw, "readOnlyRootFilesystem is not true");
            if (!(sc.capabilities?.drop ?? []).includes("ALL")) fail(cw, "capabilities do not drop ALL");
            if (!c.resources?.limits?.memory) fail(cw, "no memory limit");
            if (!/:[A-Za-z0-9._-]+(@sha256:[0-9a-f]{64})?$/.test(c.image ?? "") || /:latest$/.test(c.image))
                fail(cw, `image ${c.image} is not pinned to a tag`);
            for (const e of c.envFrom ?? [])
                if (e.configMapRef && !configMaps.has(e.configMapRef.name))
                    fail(cw, `envFrom: no ConfigMap ${e.configMapRef.name}`);
            for (const e of c.env ?? []) {
                const ref = e.valueFrom?.secretKeyRef;
                const why = ref && unresolved("Secret", secrets, ref.name, ref.key, strimzi);
                if (why) fail(cw, `env ${e.name}: ${why}`);
                const cref = e.valueFrom?.configMapKeyRef;
                const cwhy = cref && unresolved("ConfigMap", configMaps, cref.name, cref.key);
                if (cwhy) fail(cw, `env ${e.name}: ${cwhy}`);
            }
        }
    }

    namespacePass(name, objs);
    registryPass(name, objs, workloads);
    domainPass(name, objs, workloads);

    for (const s of by("Service")) {
        const w = `${name}: ${id(s)}`;
        const pods = workloads.filter((o) => matches(s.spec?.selector, podTemplate(o).metadata?.labels));
        if (!pods.length) fail(w, "selector matches no pod template");
        for (const p of s.spec?.ports ?? [])
            if (typeof p.targetPort === "string" &&
                !pods.some((o) => podTemplate(o).spec.containers.some((c) => (c.ports ?? []).some((cp) => cp.name === p.targetPort))))
                fail(w, `targetPort ${p.targetPort} is no named container port of its pods`);
    }
    for (const o of by("StatefulSet"))
        if (!names("Service").has(o.spec?.serviceName)) fail(`${name}: ${id(o)}`, `serviceName ${o.spec?.serviceName} is no Service`);
    for (const h of by("HorizontalPodAutoscaler")) {
        const t = h.spec?.scaleTargetRef ?? {};
        if (!objs.some((o) => o.kind === t.kind && o.metadata?.name === t.name))
            fail(`${name}: ${id(h)}`, `scaleTargetRef ${t.kind}/${t.name} does not exist`);
    }
    for (const p of by("PodDisruptionBudget"))
        if (!workloads.some((o) => matches(p.spec?.selector?.matchLabels, podTemplate(o).metadata?.labels)))
            fail(`${name}: ${id(p)}`, "selector matches no pod template");
    for (const m of by("ServiceMonitor")) {
        const svcs = by("Service").filter((s) => matches(m.spec?.selector?.matchLabels, s.metadata?.labels));
        if (!svcs.length) fail(`${name}: ${id(m)}`, "selector matches no Service");
        for (const ep of m.spec?.endpoints ?? [])
            for (const s of svcs)
                if (ep.port && !(s.spec?.ports ?? []).some((p) => p.name === ep.port))
                    fail(`${name}: ${id(m)}`, `Service ${s.metadata.name} has no port named ${ep.port}`);
        for (const ep of m.spec?.endpoints ?? []) {
            const cred = ep.authorization?.credentials;
            const why = cred && unresolved("Secret", secrets, cred.name, cred.key);
            if (why) fail(`${name}: ${id(m)}`, `authorization: ${why}`);
        }
    }
    for (const m of by("PodMonitor")) {
        const pods = workloads.filter((o) => matches(m.spec?.selector?.matchLabels, podTemplate(o).metadata?.labels));
        if (!pods.length) fail(`${name}: ${id(m)}`, "selector matches no pod template");
        for (const ep of m.spec?.podMetricsEndpoints ?? [])
            for (const o of pods)
                if (ep.port && !podTemplate(o).spec.containers.some((c) => (c.ports ?? []).some((cp) => cp.name === ep.port)))
                    fail(`${name}: ${id(m)}`, `pods of ${id(o)} have no container port named ${ep.port}`);
    }
}

// Kinds without a namespace that a rendering may hold.
const clusterScoped = new Set(["Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass"]);

function namespacePass(name, objs) {
    const namespaced = objs.filter((o) => !clusterScoped.has(o.kind));
    const used = new Set(namespaced.map((o) => o.metadata?.namespace).filter(Boolean));
    if (!used.size) return; // the base: applied into the current namespace
    const created = new Set(objs.filter((o) => o.kind === "Namespace").map((o) => o.metadata?.name));
    for (const ns of used)
        if (!created.has(ns))
            fail(`${name}: namespace ${ns}`, "objects are put in it but the rendering has no Namespace object for it");
    for (const o of namespaced)
        if (!o.metadata?.namespace) fail(`${name}: ${id(o)}`, `no namespace, while others are in ${[...used].join(", ")}`);
    if (used.size > 1) fail(name, `objects in several namespaces: ${[...used].join(", ")}`);
}

// The settings of es_topic_spec_for() (common/src/kafka.c) per kind of aggregate
// topic: cleanup.policy, retention.ms (null: not set, a compacted topic), and
// whether min.insync.replicas is set.
const TOPIC_KINDS = {
    commands: { suffix: ".commands", policy: "delete", retention: -1, isr: true },
    events: { suffix: ".events", policy: "delete", retention: -1, isr: true },
    results: { suffix: ".command-results", policy: "delete", retention: -1, isr: true },
    state: { suffix: ".state", policy: "compact", retention: null, isr: true },
    dlq: { suffix: null, policy: "delete", retention: -1, isr: true },
};

// 5. Domains (k8s/components/domain-<name>/, made by scripts/k8s-domain): what a
//    domain needs, whichever domain it is, so that one rendered by hand or from
//    a changed template cannot go unnoticed.  Every aggregate with a topic, a
//    command service or a place in the gateway's list has all three: its topics
//    (commands, events, command-results, state, each with its kind's label and the
//    settings of es_topic_spec_for()), a command service (ESCQRS_AGGREGATE) whose
//    KafkaUser may do what service.c does, and a place in the gateway's
//    ESCQRS_AGGREGATES with the gateway's ACLs on its topics and group.  Every
//    projector has a DLQ topic <agg>.events.dlq.<projector> per aggregate it
//    reads, its KafkaUser may read the events and use the DLQ, and each of its
//    projections has a rebuild job that calls it through its headless Service.
//    Every topic some KafkaUser's ACL covers (no topic nobody may use), and a
//    program loading a domain module (ESCQRS_MODULES) has ESCQRS_MODULES_DIR and
//    its modules are in the gateway's list.
function domainPass(name, objs, workloads) {
    const by = (kind) => objs.filter((o) => o.kind === kind);
    const configMaps = new Map(by("ConfigMap").map((c) => [c.metadata?.name, c]));
    const users = new Map(by("KafkaUser").map((u) => [u.metadata?.name, u]));
    const topics = new Map(by("KafkaTopic").map((t) => [t.spec?.topicName ?? t.metadata?.name, t]));
    const list = (v) => String(v ?? "").split(/[\s,]+/).filter(Boolean);
    // the variables a container sees (plain values; envFrom first, env wins)
    const envOf = (c) => {
        const env = new Map();
        for (const ef of c.envFrom ?? [])
            for (const [k, v] of Object.entries(configMaps.get(ef.configMapRef?.name)?.data ?? {})) env.set(k, v);
        for (const e of c.env ?? []) {
            const cref = e.valueFrom?.configMapKeyRef;
            if (cref) {
                const v = configMaps.get(cref.name)?.data?.[cref.key];
                if (v !== undefined) env.set(e.name, v);
                else env.delete(e.name);
            } else if (!e.valueFrom) env.set(e.name, e.value ?? "");
        }
        return env;
    };
    const programs = [];
    for (const o of workloads)
        for (const c of podTemplate(o).spec?.containers ?? [])
            programs.push({ o, c, cmd: [...(c.command ?? []), ...(c.args ?? [])], env: envOf(c) });
    const runs = (p, prog) => p.cmd[0] === prog;
    const must = (where, user, type, res, ops) => {
        const u = users.get(user);
        if (!u) return fail(where, `its KafkaUser ${user} is not in this rendering`);
        for (const op of ops)
            if (!aclAllows(u, type, res, op)) fail(`${name}: ${id(u)}`, `no ${op} ACL on ${type} ${res}, which ${where.split(": ").pop()} needs`);
    };

    const gateways = programs.filter((p) => runs(p, "escqrs-gateway"));
    const services = programs.filter((p) => runs(p, "escqrs-command-service"));
    const projectors = programs.filter((p) => runs(p, "escqrs-projector"));
    const aggs = new Set();
    for (const t of topics.values()) if (t.metadata?.labels?.["escqrs.io/topic-kind"] === "aggregate") aggs.add(t.metadata.labels["escqrs.io/aggregate"]);
    for (const p of services) aggs.add(p.env.get("ESCQRS_AGGREGATE"));
    for (const p of gateways) for (const a of list(p.env.get("ESCQRS_AGGREGATES"))) aggs.add(a);

    for (const agg of aggs) {
        const w = `${name}: aggregate ${agg}`;
        if (!agg) {
            fail(name, "a KafkaTopic labelled escqrs.io/topic-kind=aggregate without escqrs.io/aggregate, or a command service without ESCQRS_AGGREGATE");
            continue;
        }
        for (const [kind, spec] of Object.entries(TOPIC_KINDS)) {
            if (!spec.suffix) continue;
            const t = topics.get(agg + spec.suffix);
            if (!t) fail(w, `no KafkaTopic ${agg}${spec.suffix}`);
        }
        const svc = services.filter((p) => p.env.get("ESCQRS_AGGREGATE") === agg);
        if (svc.length !== 1) fail(w, `${svc.length} command services (ESCQRS_AGGREGATE=${agg}); want one`);
        for (const p of svc) {
            const sw = `${name}: ${id(p.o)}: the command service of ${agg}`;
            const user = `escqrs-${agg}-command-service`;
            must(sw, user, "topic", `${agg}.commands`, ["Read", "Describe"]);
            must(sw, user, "topic", `${agg}.events`, ["Read", "Write", "Describe"]);
            must(sw, user, "topic", `${agg}.command-results`, ["Write", "Describe"]);
            must(sw, user, "topic", `${agg}.state`, ["Read", "Write", "Describe"]);
            must(sw, user, "group", `${agg}.command-service`, ["Read", "Describe"]);
            must(sw, user, "transactionalId", `${agg}.command-service-${p.o.metadata?.name}-0`, ["Write", "Describe"]);
        }
        if (!gateways.length) continue;
        for (const p of gateways) {
            const gw = `${name}: ${id(p.o)}: the gateway`;
            if (!list(p.env.get("ESCQRS_AGGREGATES")).includes(agg))
                fail(gw, `ESCQRS_AGGREGATES (${p.env.get("ESCQRS_AGGREGATES")}) lacks ${agg}: its commands would be refused`);
            must(gw, "escqrs-gateway", "topic", `${agg}.commands`, ["Write", "Describe"]);
            must(gw, "escqrs-gateway", "topic", `${agg}.command-results`, ["Read", "Describe"]);
            must(gw, "escqrs-gateway", "group", `${agg}.command-service`, ["Describe"]);
        }
    }

    for (const t of topics.values()) {
        const labels = t.metadata?.labels ?? {};
        if (labels["escqrs.io/topic-kind"] !== "aggregate") continue;
        const tw = `${name}: ${id(t)}`;
        const kind = TOPIC_KINDS[labels["escqrs.io/topic"]];
        const tname = t.spec?.topicName ?? t.metadata?.name;
        const agg = labels["escqrs.io/aggregate"];
        if (!kind) fail(tw, `label escqrs.io/topic=${labels["escqrs.io/topic"]}: one of ${Object.keys(TOPIC_KINDS).join(", ")}`);
        else if (kind.suffix ? tname !== agg + kind.suffix : !tname.startsWith(`${agg}.events.dlq.`))
            fail(tw, `named otherwise than its labels say (aggregate ${agg}, topic ${labels["escqrs.io/topic"]})`);
        else {
            const cfg = t.spec?.config ?? {};
            if (kind.retention === null ? Object.hasOwn(cfg, "retention.ms") : Number(cfg["retention.ms"]) !== kind.retention)
                fail(tw, `retention.ms ${cfg["retention.ms"]}, es_topic_spec_for() gives ${kind.retention ?? "none"}`);
            if (cfg["cleanup.policy"] !== kind.policy) fail(tw, `cleanup.policy ${cfg["cleanup.policy"]}, not ${kind.policy}`);
            if (kind.isr !== Object.hasOwn(cfg, "min.insync.replicas"))
                fail(tw, kind.isr ? "no min.insync.replicas" : "min.insync.replicas set (es_topic_spec_for() leaves it to the broker on results)");
        }
        const covered = [...users.values()].some((u) => ["Read", "Write"].some((op) => aclAllows(u, "topic", tname, op)));
        if (!covered) fail(tw, "no KafkaUser may read or write it");
    }

    const dlqs = [...topics.values()].filter((t) => t.metadata?.labels?.["escqrs.io/topic"] === "dlq");
    const projectorNames = new Set();
    for (const p of projectors) {
        const proj = p.env.get("ESCQRS_PROJECTOR_NAME");
        projectorNames.add(proj);
        const pw = `${name}: ${id(p.o)}: the projector ${proj}`;
        const user = `escqrs-projector-${proj}`;
        const mine = dlqs.filter((t) => (t.spec?.topicName ?? t.metadata.name).endsWith(`.events.dlq.${proj}`));
        if (!mine.length) fail(pw, `no DLQ topic <agg>.events.dlq.${proj}`);
        for (const t of mine) {
            const agg = t.metadata.labels["escqrs.io/aggregate"];
            must(pw, user, "topic", `${agg}.events`, ["Read", "Describe"]);
            must(pw, user, "topic", t.spec?.topicName ?? t.metadata.name, ["Read", "Write", "Create", "Describe"]);
        }
        must(pw, user, "group", `escqrs-projector.${proj}.x`, ["Read"]);
        // each projection: a rebuild job calling this projector's pods
        const headless = by("Service").filter((s) => s.spec?.clusterIP === "None" &&
            matches(s.spec?.selector, podTemplate(p.o).metadata?.labels)).map((s) => s.metadata.name);
        for (const proj of list(p.env.get("ESCQRS_PROJECTIONS"))) {
            const jobs = programs.filter((j) => ["CronJob", "Job"].includes(j.o.kind) && j.env.get("PROJECTION") === proj &&
                /\bescqrs\b.*\brebuild\b/s.test(j.cmd.join(" ")));
            if (!jobs.length) fail(pw, `projection ${proj} has no rebuild job (a CronJob with PROJECTION=${proj})`);
            for (const j of jobs)
                if (!headless.includes(j.env.get("PROJECTOR_SERVICE")))
                    fail(`${name}: ${id(j.o)}`, `PROJECTOR_SERVICE ${j.env.get("PROJECTOR_SERVICE")} is not the headless Service of ${id(p.o)} (${headless.join(", ") || "none"}), which hosts ${proj}`);
        }
    }
    for (const t of dlqs) {
        const proj = (t.spec?.topicName ?? t.metadata.name).split(".events.dlq.")[1];
        if (!projectorNames.has(proj)) fail(`${name}: ${id(t)}`, `the DLQ of projector ${proj}, which no StatefulSet runs (ESCQRS_PROJECTOR_NAME)`);
    }

    const gwModules = new Set(gateways.flatMap((p) => list(p.env.get("ESCQRS_MODULES"))));
    for (const p of programs) {
        const mods = list(p.env.get("ESCQRS_MODULES"));
        if (!mods.length) continue;
        const mw = `${name}: ${id(p.o)} container ${p.c.name}`;
        if (!p.env.get("ESCQRS_MODULES_DIR")) fail(mw, "loads modules (ESCQRS_MODULES) but has no ESCQRS_MODULES_DIR");
        if (gateways.length)
            for (const m of mods)
                if (!gwModules.has(m)) fail(mw, `loads module ${m}, which the gateway does not (its ESCQRS_MODULES): it could not take that domain's commands`);
    }
}

const registrySpec = JSON.parse(fs.readFileSync(path.join(here, "registry-kafka.json"), "utf8"));

function registryPass(name, objs, workloads) {
    const topics = new Map(objs.filter((o) => o.kind === "KafkaTopic").map((t) => [t.spec?.topicName ?? t.metadata?.name, t]));
    const users = new Map(objs.filter((o) => o.kind === "KafkaUser").map((u) => [u.metadata?.name, u]));
    const apicurio = `Apicurio ${registrySpec.version}`;
    for (const o of workloads)
        for (const c of podTemplate(o).spec?.containers ?? []) {
            const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e]));
            if (env.APICURIO_STORAGE_KIND?.value !== "kafkasql") continue;
            const w = `${name}: ${id(o)} container ${c.name}`;
            // Its KafkaUser: the one whose Secret it reads (the SASL JAAS line).
            const userName = (c.env ?? []).map((e) => e.valueFrom?.secretKeyRef?.name).find((n) => users.has(n));
            const user = users.get(userName);
            if (!user) fail(w, "kafkasql storage, but the container reads no KafkaUser's Secret");
            for (const t of registrySpec.topics) {
                const e = env[t.env];
                if (e && e.value === undefined) {
                    fail(w, `${t.env} must be a plain value, so that its topic can be checked`);
                    continue;
                }
                const topic = e ? String(e.value) : t.default;
                const how = e ? t.env : `${t.env} unset, ${apicurio}'s default`;
                const kt = topics.get(topic);
                if (!kt)
                    fail(w, `topic ${topic} (${how}: ${t.use}) has no KafkaTopic; nothing else creates it`);
                else
                    for (const [k, v] of Object.entries(registrySpec.config))
                        if (String(kt.spec?.config?.[k]) !== String(v))
                            fail(`${name}: ${id(kt)}`, `config ${k} is ${kt.spec?.config?.[k] ?? "unset"}, ${apicurio} needs ${v} (registry-kafka.json)`);
                if (user)
                    for (const op of t.operations)
                        if (!aclAllows(user, "topic", topic, op))
                            fail(`${name}: ${id(user)}`, `no ${op} ACL on topic ${topic} (${how}), which the registry needs`);
            }
            const g = registrySpec.group;
            if (env[g.forbidden.env]) fail(w, `${g.forbidden.env} is set: ${g.forbidden.why}`);
            const prefix = env[g.env]?.value ?? g.default;
            if (user && !env[g.forbidden.env])
                for (const op of g.operations)
                    if (!aclAllows(user, "group", String(prefix), op, true))
                        fail(`${name}: ${id(user)}`, `no prefix ${op} ACL covering consumer groups ${prefix}<uuid> (${env[g.env] ? g.env : `${g.env} unset, ${apicurio}'s default`})`);
        }
}

const renders = new Map();
for (const arg of process.argv.slice(2)) {
    const [name, file] = arg.split("=");
    const objs = [];
    for (const doc of parseAllDocuments(fs.readFileSync(file, "utf8"))) {
        if (doc.errors.length) fail(`${name}`, `YAML: ${doc.errors[0].message}`);
        const o = doc.toJS();
        if (o) objs.push(o);
    }
    renders.set(name, objs);
}
if (!renders.size) {
    console.error("usage: node validate.mjs NAME=rendered.yaml ...");
    process.exit(2);
}

const classes = new Map();
for (const objs of renders.values())
    for (const o of objs) {
        const key = `${o.apiVersion} ${o.kind}`;
        if (!classes.has(key)) classes.set(key, await loadClass(modulePath(o.apiVersion, o.kind), o.kind));
    }

let total = 0;
for (const [name, objs] of renders) {
    total += objs.length;
    schemaPass(name, objs, classes);
    crossPass(name, objs);
}
typePass(renders, classes);

const kinds = [...classes.keys()].filter((k) => classes.get(k)).sort();
console.log(`validate: ${total} objects in ${renders.size} renderings, kinds: ${kinds.map((k) => k.split(" ")[1]).join(", ")}`);
if (failures) {
    console.log(`validate: ${failures} problem(s)`);
    process.exit(1);
}
console.log("validate: ok");
