// The checks k8s/validate/run.sh applies to a rendered set of manifests (the objects of
// one or more `kubectl kustomize` outputs deployed together): every object against the
// Kubernetes OpenAPI schemas (kubernetes-models), then the invariants below. Each check
// returns messages, "" free; run.sh fails on any. checks.test.js breaks a copy of the
// objects once per invariant and expects that invariant's message.
//
// What the schemas do not catch: kubernetes-models' schemas accept unknown fields (a
// misspelt `securityContxt` passes), so the invariants check the fields that matter by
// name and fail when they are missing.
"use strict";

const fs = require("fs");
const path = require("path");

// Objects of a kind kubernetes-models has no schema for, and why that is fine.
const NOT_SCHEMA_CHECKED = {
  "cert-manager.io/v1": "cert-manager's CRDs (tls/): no schema in kubernetes-models",
};

// Secrets the manifests use that `kubectl apply -k` does not create (they hold keys and
// tokens, which do not belong in git). Each must be described in k8s/README.md.
const EXTERNAL_SECRETS = [
  "blockserve-router-tls", "blockserve-prefill-tls", "blockserve-decoder-tls",
  "blockserve-encoder-tls", "blockserve-ca", "blockserve-redis", "blockserve-tenants",
  "blockserve-ingest-token",
];

// The calls the trust boundary allows (docs/SECURITY.md), as NetworkPolicies must allow
// them: "source->destination:port". "*" is any source (clients), "monitoring" the
// namespace Prometheus scrapes from. Pods of a source absent from the set are skipped.
const ALLOWED_EDGES = [
  "*->router:50050",
  "router->query-prefill:50062",
  "router->decoder:50063",
  "router->passage-encoder:50061",
  "query-prefill->decoder:50063",
  "query-prefill->redis:6379",
  "passage-encoder->redis:6379",
  "blockserve-ingest->router:50050",
  "monitoring->router:9090",
  "monitoring->query-prefill:9090",
  "monitoring->decoder:9090",
  "monitoring->passage-encoder:9090",
];

// Router and prefill flags that name other services, and the binary that must serve them.
const BACKEND_FLAGS = {
  prefill: "/app/query_prefill",
  decoder: "/app/decoder",
  encoder: "/app/passage_encoder",
  allowed_decoders: "/app/decoder",
  router: "/app/router",
};

// The roles that run the model, which the GPU overlay gives a GPU.
const MODEL_ROLES = ["query-prefill", "decoder", "passage-encoder"];

const WORKLOAD_KINDS = ["Deployment", "StatefulSet", "DaemonSet", "Job"];
const LONG_RUNNING = ["Deployment", "StatefulSet", "DaemonSet"];

function schemaModule(apiVersion) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  return group === "" ? `kubernetes-models/${version}` : `kubernetes-models/${group}/${version}`;
}

function checkSchemas(objects) {
  const errors = [];
  for (const o of objects) {
    const name = `${o.kind}/${o.metadata && o.metadata.name}`;
    if (NOT_SCHEMA_CHECKED[o.apiVersion]) continue;
    let models;
    try {
      models = require(schemaModule(String(o.apiVersion)));
    } catch (e) {
      errors.push(`${name}: unknown apiVersion ${o.apiVersion} (no schema)`);
      continue;
    }
    const Model = models[o.kind];
    if (!Model) {
      errors.push(`${name}: unknown kind ${o.kind} in ${o.apiVersion} (no schema)`);
      continue;
    }
    try {
      new Model(o).validate();
    } catch (e) {
      errors.push(`${name}: schema: ${e.message}`);
    }
  }
  return errors;
}

const workloads = (objects) => objects.filter((o) => WORKLOAD_KINDS.includes(o.kind));
const podSpec = (w) => w.spec.template.spec;
const podLabels = (w) => (w.spec.template.metadata && w.spec.template.metadata.labels) || {};
const appOf = (w) => podLabels(w)["app.kubernetes.io/name"] || w.metadata.name;
const allContainers = (spec) => [...(spec.initContainers || []), ...(spec.containers || [])];
const matches = (selector, labels) =>
  Object.entries((selector && selector.matchLabels) || {}).every(([k, v]) => labels[k] === v) &&
  ((selector && selector.matchExpressions) || []).length === 0;

function containerPorts(c) {
  return (c.ports || []).map((p) => ({ name: p.name, port: p.containerPort }));
}
function servesPort(workload, port) {
  return allContainers(podSpec(workload)).some((c) =>
    containerPorts(c).some((p) => p.port === port || (p.name !== undefined && p.name === port)));
}

// Probes, resources and the security context of every container.
function checkContainers(objects) {
  const errors = [];
  for (const w of workloads(objects)) {
    const spec = podSpec(w);
    const where = `${w.kind}/${w.metadata.name}`;
    const pod = spec.securityContext || {};
    if (pod.runAsNonRoot !== true) errors.push(`${where}: pod securityContext.runAsNonRoot is not true`);
    if (!pod.seccompProfile || pod.seccompProfile.type !== "RuntimeDefault") {
      errors.push(`${where}: pod securityContext.seccompProfile is not RuntimeDefault`);
    }
    for (const c of allContainers(spec)) {
      const at = `${where} container ${c.name}`;
      if (LONG_RUNNING.includes(w.kind)) {
        for (const probe of ["readinessProbe", "livenessProbe"]) {
          if (!c[probe]) {
            errors.push(`${at}: no ${probe}`);
            continue;
          }
          const action = c[probe].httpGet || c[probe].tcpSocket || c[probe].grpc;
          if (action && !containerPorts(c).some((p) => p.port === action.port || p.name === action.port)) {
            errors.push(`${at}: ${probe} port ${action.port} is not a port of the container`);
          }
        }
      }
      const r = c.resources || {};
      for (const kind of ["requests", "limits"]) {
        for (const res of ["cpu", "memory"]) {
          if (!r[kind] || r[kind][res] === undefined) errors.push(`${at}: no resources.${kind}.${res}`);
        }
      }
      const s = c.securityContext || {};
      if (s.runAsNonRoot !== true) errors.push(`${at}: securityContext.runAsNonRoot is not true`);
      const uid = s.runAsUser !== undefined ? s.runAsUser : pod.runAsUser;
      if (!Number.isInteger(uid) || uid <= 0) errors.push(`${at}: securityContext.runAsUser is not a fixed non-root UID`);
      if (s.readOnlyRootFilesystem !== true) errors.push(`${at}: securityContext.readOnlyRootFilesystem is not true`);
      if (s.allowPrivilegeEscalation !== false) errors.push(`${at}: securityContext.allowPrivilegeEscalation is not false`);
      if (!s.capabilities || !(s.capabilities.drop || []).includes("ALL")) {
        errors.push(`${at}: securityContext.capabilities does not drop ALL`);
      }
      if (s.privileged) errors.push(`${at}: securityContext.privileged`);
      const seccomp = s.seccompProfile || pod.seccompProfile;
      if (!seccomp || seccomp.type !== "RuntimeDefault") {
        errors.push(`${at}: securityContext.seccompProfile is not RuntimeDefault`);
      }
      // A KV store in shared memory needs a writable /dev/shm of its own size: an
      // in-memory emptyDir (the root filesystem is read-only).
      if ((c.args || []).some((a) => a.startsWith("--kv_store="))) {
        const mount = (c.volumeMounts || []).find((m) => m.mountPath === "/dev/shm");
        const volume = mount && (spec.volumes || []).find((v) => v.name === mount.name);
        if (!volume || !volume.emptyDir || volume.emptyDir.medium !== "Memory") {
          errors.push(`${at}: runs a KV store without an emptyDir {medium: Memory} at /dev/shm`);
        }
      }
    }
  }
  return errors;
}

// The value of a container's environment variable, from env or envFrom ConfigMaps;
// undefined when it is not set, null when Kubernetes sets it at run time (fieldRef...).
function envValue(objects, c, name) {
  const e = (c.env || []).find((v) => v.name === name);
  if (e) return e.value !== undefined ? e.value : null;
  for (const from of c.envFrom || []) {
    if (!from.configMapRef) continue;
    const cm = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === from.configMapRef.name);
    if (cm && cm.data && cm.data[name] !== undefined) return cm.data[name];
  }
  return undefined;
}

// Every $(VAR) in command and args is defined; Kubernetes passes an undefined one on as
// the literal text "$(VAR)". Indexed Jobs define JOB_COMPLETION_INDEX themselves.
function checkVariables(objects) {
  const errors = [];
  for (const w of workloads(objects)) {
    for (const c of allContainers(podSpec(w))) {
      for (const arg of [...(c.command || []), ...(c.args || [])]) {
        for (const m of arg.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) {
          const indexed = w.kind === "Job" && w.spec.completionMode === "Indexed";
          if (m[1] === "JOB_COMPLETION_INDEX" && indexed) continue;
          if (envValue(objects, c, m[1]) === undefined) {
            errors.push(`${w.kind}/${w.metadata.name} container ${c.name}: $(${m[1]}) is not defined`);
          }
        }
      }
    }
  }
  return errors;
}

// Secrets, ConfigMaps and claims that pods use exist in the set, or (Secrets) are
// external and described in the README.
function checkReferences(objects, readme) {
  const errors = [];
  const has = (kind, name) => objects.some((o) => o.kind === kind && o.metadata.name === name);
  const secret = (where, name) => {
    if (has("Secret", name)) return;
    if (!EXTERNAL_SECRETS.includes(name)) {
      errors.push(`${where}: Secret ${name} is neither in the manifests nor a documented external Secret`);
    } else if (readme !== undefined && !readme.includes(name)) {
      errors.push(`${where}: external Secret ${name} is not described in k8s/README.md`);
    }
  };
  const configMap = (where, name) => {
    if (!has("ConfigMap", name)) errors.push(`${where}: ConfigMap ${name} does not exist`);
  };
  for (const w of workloads(objects)) {
    const where = `${w.kind}/${w.metadata.name}`;
    const spec = podSpec(w);
    for (const v of spec.volumes || []) {
      if (v.secret) secret(where, v.secret.secretName);
      if (v.configMap) configMap(where, v.configMap.name);
      if (v.persistentVolumeClaim && !has("PersistentVolumeClaim", v.persistentVolumeClaim.claimName)) {
        errors.push(`${where}: PersistentVolumeClaim ${v.persistentVolumeClaim.claimName} does not exist`);
      }
    }
    for (const c of allContainers(spec)) {
      for (const m of c.volumeMounts || []) {
        if (!(spec.volumes || []).some((v) => v.name === m.name)) {
          errors.push(`${where} container ${c.name}: mounts volume ${m.name}, which the pod does not have`);
        }
      }
      for (const from of c.envFrom || []) {
        if (from.configMapRef) configMap(where, from.configMapRef.name);
        if (from.secretRef) secret(where, from.secretRef.name);
      }
      for (const e of c.env || []) {
        const ref = e.valueFrom || {};
        if (ref.secretKeyRef) secret(where, ref.secretKeyRef.name);
        if (ref.configMapKeyRef) configMap(where, ref.configMapKeyRef.name);
      }
    }
  }
  return errors;
}

// Resolves "host:port" or "dns:///host:port" (host = <service>[.<ns>.svc.cluster.local])
// to the Service it names and checks that Service and the pods behind it.
function checkAddress(objects, where, flag, address, container) {
  const errors = [];
  const expand = (text) => text.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, v) => {
    const value = envValue(objects, container, v);
    return typeof value === "string" ? value : all;
  });
  const dns = address.startsWith("dns:///");
  const target = expand(dns ? address.slice("dns:///".length) : address);
  const m = target.match(/^([a-z0-9-]+)(\.\$\(POD_NAMESPACE\)\.svc\.cluster\.local)?:(\d+)$/);
  if (!m) {
    errors.push(`${where}: --${flag} address ${address} is not <service>[.$(POD_NAMESPACE).svc.cluster.local]:<port>`);
    return errors;
  }
  const [, name, , portText] = m;
  const port = Number(portText);
  const svc = objects.find((o) => o.kind === "Service" && o.metadata.name === name);
  if (!svc) {
    errors.push(`${where}: --${flag} names Service ${name}, which does not exist`);
    return errors;
  }
  const sp = (svc.spec.ports || []).find((p) => p.port === port);
  if (!sp) {
    errors.push(`${where}: --${flag} names port ${port} of Service ${name}, which has no such port`);
    return errors;
  }
  if (dns && svc.spec.clusterIP !== "None") {
    errors.push(`${where}: --${flag} discovers pods by DNS, but Service ${name} is not headless (clusterIP: None)`);
  }
  const backends = workloads(objects).filter((w) => matches({ matchLabels: svc.spec.selector }, podLabels(w)));
  if (backends.length === 0) errors.push(`${where}: Service ${name} selects no workload`);
  for (const b of backends) {
    const binaries = allContainers(podSpec(b)).map((x) => (x.command || [])[0]);
    if (!binaries.includes(BACKEND_FLAGS[flag])) {
      errors.push(`${where}: --${flag} reaches ${b.kind}/${b.metadata.name}, which does not run ${BACKEND_FLAGS[flag]}`);
    }
    if (!servesPort(b, sp.targetPort !== undefined ? sp.targetPort : port)) {
      errors.push(`${where}: Service ${name} port ${port} targets ${sp.targetPort}, which ${b.kind}/${b.metadata.name} does not serve`);
    }
  }
  return errors;
}

// Flags that name other services (router --prefill/--decoder/--encoder, prefill
// --allowed_decoders, the ingest client's --router, --redis_host/--redis_port) name
// Services that exist, with that port, in front of the right binary.
function checkServiceFlags(objects) {
  const errors = [];
  for (const w of workloads(objects)) {
    for (const c of allContainers(podSpec(w))) {
      const where = `${w.kind}/${w.metadata.name} container ${c.name}`;
      const args = c.args || [];
      for (const arg of args) {
        const m = arg.match(/^--([a-z_]+)=(.*)$/);
        if (!m || !BACKEND_FLAGS[m[1]]) continue;
        for (const address of m[2].split(",")) {
          errors.push(...checkAddress(objects, where, m[1], address, c));
        }
      }
      const host = args.find((a) => a.startsWith("--redis_host="));
      if (host) {
        const portArg = args.find((a) => a.startsWith("--redis_port="));
        const expand = (t) => t.replace(/\$\(([A-Za-z_0-9]+)\)/g, (all, v) => envValue(objects, c, v) || all);
        const address = `${expand(host.split("=")[1])}:${portArg ? expand(portArg.split("=")[1]) : "6379"}`;
        const [name, port] = address.split(":");
        const svc = objects.find((o) => o.kind === "Service" && o.metadata.name === name);
        if (!svc || !(svc.spec.ports || []).some((p) => String(p.port) === port)) {
          errors.push(`${where}: --redis_host/--redis_port name ${address}, which no Service serves`);
        }
      }
    }
  }
  return errors;
}

// NetworkPolicies: every port they allow is served by the pods it leads to, every
// workload is covered in both directions, and the edges they allow are ALLOWED_EDGES.
function checkNetworkPolicies(objects) {
  const errors = [];
  const policies = objects.filter((o) => o.kind === "NetworkPolicy");
  const pods = workloads(objects);
  const isDns = (peer) => peer.namespaceSelector && matches(peer.namespaceSelector, { "kubernetes.io/metadata.name": "kube-system" }) &&
    peer.podSelector && matches(peer.podSelector, { "k8s-app": "kube-dns" });
  const isMonitoring = (peer) => peer.namespaceSelector &&
    matches(peer.namespaceSelector, { "kubernetes.io/metadata.name": "monitoring" }) && !peer.podSelector;
  const rulePorts = (rule) => (rule.ports || []).map((p) => p.port);
  for (const np of policies) {
    const where = `NetworkPolicy/${np.metadata.name}`;
    const selected = pods.filter((w) => matches(np.spec.podSelector, podLabels(w)));
    if (selected.length === 0) errors.push(`${where}: selects no pods`);
    for (const rule of np.spec.ingress || []) {
      for (const port of rulePorts(rule)) {
        for (const w of selected) {
          if (!servesPort(w, port)) errors.push(`${where}: allows ingress to port ${port}, which ${w.kind}/${w.metadata.name} does not serve`);
        }
      }
    }
    for (const rule of np.spec.egress || []) {
      for (const peer of rule.to || []) {
        if (isDns(peer)) {
          if (!rulePorts(rule).every((p) => p === 53)) errors.push(`${where}: DNS egress to ports other than 53`);
          continue;
        }
        if (peer.namespaceSelector || peer.ipBlock || !peer.podSelector) {
          errors.push(`${where}: egress to something other than a pod of this namespace or cluster DNS`);
          continue;
        }
        const targets = pods.filter((w) => matches(peer.podSelector, podLabels(w)));
        if (targets.length === 0) errors.push(`${where}: egress to pods that no workload has`);
        for (const port of rulePorts(rule)) {
          for (const t of targets) {
            if (!servesPort(t, port)) errors.push(`${where}: allows egress to port ${port}, which ${t.kind}/${t.metadata.name} does not serve`);
          }
        }
      }
      if (!rule.to) errors.push(`${where}: an egress rule without "to" allows every destination`);
    }
  }
  // Allowed edges: the destination's ingress and the source's egress both allow it.
  const policiesOf = (w, type) => policies.filter((np) =>
    matches(np.spec.podSelector, podLabels(w)) && (np.spec.policyTypes || ["Ingress"]).includes(type));
  for (const w of pods) {
    for (const type of ["Ingress", "Egress"]) {
      if (policiesOf(w, type).length === 0) errors.push(`${w.kind}/${w.metadata.name}: no NetworkPolicy restricts its ${type.toLowerCase()}`);
    }
  }
  const portAllowed = (rule, port, named) => !rule.ports || rulePorts(rule).some((p) => p === port || p === named);
  const ingressAllows = (dst, src, port, named) => policiesOf(dst, "Ingress").some((np) =>
    (np.spec.ingress || []).some((rule) => portAllowed(rule, port, named) && (
      (!rule.from && src !== "monitoring") || (rule.from || []).some((peer) =>
        src === "*" ? false
          : src === "monitoring" ? isMonitoring(peer)
            : peer.podSelector && !peer.namespaceSelector && matches(peer.podSelector, podLabels(src))))));
  const egressAllows = (src, dst, port, named) => policiesOf(src, "Egress").length === 0 ||
    policiesOf(src, "Egress").some((np) => (np.spec.egress || []).some((rule) => portAllowed(rule, port, named) &&
      (!rule.to || rule.to.some((peer) => peer.podSelector && !peer.namespaceSelector && matches(peer.podSelector, podLabels(dst))))));
  const openToAll = (dst, port, named) => policiesOf(dst, "Ingress").some((np) =>
    (np.spec.ingress || []).some((rule) => portAllowed(rule, port, named) && !rule.from));
  const found = new Set();
  for (const dst of pods) {
    for (const c of allContainers(podSpec(dst))) {
      for (const p of containerPorts(c)) {
        if (openToAll(dst, p.port, p.name)) found.add(`*->${appOf(dst)}:${p.port}`);
        else if (ingressAllows(dst, "monitoring", p.port, p.name)) found.add(`monitoring->${appOf(dst)}:${p.port}`);
        for (const src of pods) {
          if (ingressAllows(dst, src, p.port, p.name) && egressAllows(src, dst, p.port, p.name)) {
            found.add(`${appOf(src)}->${appOf(dst)}:${p.port}`);
          }
        }
      }
    }
  }
  const apps = new Set(pods.map(appOf));
  for (const edge of found) {
    if (!ALLOWED_EDGES.includes(edge)) errors.push(`NetworkPolicies allow ${edge}, which the trust boundary does not`);
  }
  for (const edge of ALLOWED_EDGES) {
    const [src, rest] = edge.split("->");
    const dst = rest.split(":")[0];
    if ((src === "*" || src === "monitoring" || apps.has(src)) && apps.has(dst) && !found.has(edge)) {
      errors.push(`NetworkPolicies do not allow ${edge}, which the trust boundary needs`);
    }
  }
  return errors;
}

// HorizontalPodAutoscalers target workloads that exist, within their replica range, on
// metrics that exist: Pods metrics come from the adapter rules, whose series the
// services export (a string in the C++ sources).
function checkAutoscalers(objects, adapterRules, exportedMetrics) {
  const errors = [];
  const asNames = new Set((adapterRules || []).map((r) => r.name && r.name.as));
  for (const rule of adapterRules || []) {
    const series = (rule.seriesQuery || "").match(/^'?([a-zA-Z_:][a-zA-Z0-9_:]*)/);
    const base = series && series[1].replace(/_(sum|count|bucket)$/, "");
    if (exportedMetrics && series && !exportedMetrics.has(series[1]) && !exportedMetrics.has(base)) {
      errors.push(`prometheus-adapter rule ${rule.name && rule.name.as}: series ${series[1]} is not exported by any service`);
    }
  }
  for (const hpa of objects.filter((o) => o.kind === "HorizontalPodAutoscaler")) {
    const where = `HorizontalPodAutoscaler/${hpa.metadata.name}`;
    const ref = hpa.spec.scaleTargetRef;
    const w = objects.find((o) => o.kind === ref.kind && o.metadata.name === ref.name && o.apiVersion === ref.apiVersion);
    if (!w) {
      errors.push(`${where}: scaleTargetRef ${ref.apiVersion} ${ref.kind}/${ref.name} does not exist`);
    } else {
      const replicas = w.spec.replicas === undefined ? 1 : w.spec.replicas;
      const min = hpa.spec.minReplicas === undefined ? 1 : hpa.spec.minReplicas;
      if (replicas < min || replicas > hpa.spec.maxReplicas) {
        errors.push(`${where}: ${ref.kind}/${ref.name} has ${replicas} replicas, outside [${min}, ${hpa.spec.maxReplicas}]`);
      }
      for (const m of hpa.spec.metrics || []) {
        if (m.type === "Resource") {
          const lacking = allContainers(podSpec(w)).filter((c) => !((c.resources || {}).requests || {})[m.resource.name]);
          if (lacking.length) errors.push(`${where}: scales on ${m.resource.name} utilization, but a container requests none`);
        }
      }
    }
    for (const m of hpa.spec.metrics || []) {
      if (m.type === "Pods" && !asNames.has(m.pods.metric.name)) {
        errors.push(`${where}: Pods metric ${m.pods.metric.name} is not served by the prometheus-adapter rules`);
      } else if (m.type !== "Pods" && m.type !== "Resource") {
        errors.push(`${where}: metric type ${m.type} (expected Pods or Resource)`);
      }
    }
  }
  return errors;
}

// Every long-running workload with more than one pod (or an autoscaler) has a
// PodDisruptionBudget and topology spread constraints that select its own pods.
function checkAvailability(objects) {
  const errors = [];
  const pdbs = objects.filter((o) => o.kind === "PodDisruptionBudget");
  const hpas = objects.filter((o) => o.kind === "HorizontalPodAutoscaler");
  for (const pdb of pdbs) {
    if (!workloads(objects).some((w) => matches(pdb.spec.selector, podLabels(w)))) {
      errors.push(`PodDisruptionBudget/${pdb.metadata.name}: selects no workload`);
    }
  }
  for (const w of workloads(objects).filter((x) => LONG_RUNNING.includes(x.kind))) {
    const where = `${w.kind}/${w.metadata.name}`;
    const scaled = hpas.some((h) => h.spec.scaleTargetRef.name === w.metadata.name && h.spec.scaleTargetRef.kind === w.kind);
    if ((w.spec.replicas || 1) < 2 && !scaled) continue;
    if (!pdbs.some((p) => matches(p.spec.selector, podLabels(w)))) errors.push(`${where}: no PodDisruptionBudget`);
    const spread = podSpec(w).topologySpreadConstraints || [];
    if (spread.length === 0) errors.push(`${where}: no topologySpreadConstraints`);
    for (const t of spread) {
      if (!matches(t.labelSelector, podLabels(w))) {
        errors.push(`${where}: a topologySpreadConstraint's labelSelector does not select its own pods`);
      }
    }
  }
  return errors;
}

// The ingest Job: indexed, one shard per completion index.
function checkJobs(objects) {
  const errors = [];
  for (const job of objects.filter((o) => o.kind === "Job")) {
    const where = `Job/${job.metadata.name}`;
    for (const c of allContainers(podSpec(job))) {
      const args = c.args || [];
      if (!args.includes("ingest")) continue;
      if (job.spec.completionMode !== "Indexed") errors.push(`${where}: ingest shards need completionMode: Indexed`);
      const shards = args.find((a) => a.startsWith("--shards="));
      if (!shards || Number(shards.split("=")[1]) !== job.spec.completions) {
        errors.push(`${where}: --shards (${shards}) is not completions (${job.spec.completions}): shards would be skipped or repeated`);
      }
      if ((job.spec.parallelism || 1) > job.spec.completions) errors.push(`${where}: parallelism above completions`);
    }
    if (job.spec.podFailurePolicy && podSpec(job).restartPolicy !== "Never") {
      errors.push(`${where}: podFailurePolicy needs restartPolicy: Never`);
    }
  }
  return errors;
}

// The GPU overlay: every model-running container has a GPU limit.
function checkGpu(objects) {
  const errors = [];
  for (const w of workloads(objects).filter((x) => MODEL_ROLES.includes(appOf(x)))) {
    for (const c of podSpec(w).containers) {
      if (!((c.resources || {}).limits || {})["nvidia.com/gpu"]) {
        errors.push(`${w.kind}/${w.metadata.name} container ${c.name}: no nvidia.com/gpu limit`);
      }
    }
  }
  return errors;
}

// Metric names the services register: the string literals passed to GetCounter,
// GetGauge and GetHistogram in the C++ sources of the servers under `repo`.
const SERVER_DIRS = ["common", "router", "query_prefill", "decoder", "passage_encoder",
  "kv_store", "store_config", "handoff", "security", "blocks", "engine"];
function exportedMetrics(repo) {
  const names = new Set();
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      if (entry.name.startsWith(".") || entry.name.startsWith("bazel-") || entry.name === "node_modules") continue;
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (/\.(cc|h)$/.test(entry.name) && !/_test\.cc$/.test(entry.name)) {
        const text = fs.readFileSync(p, "utf8");
        for (const m of text.matchAll(/Get(?:Counter|Gauge|Histogram)\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"/g)) names.add(m[1]);
      }
    }
  };
  for (const dir of SERVER_DIRS) if (fs.existsSync(path.join(repo, dir))) walk(path.join(repo, dir));
  return names;
}

// All checks of one set. options: {readme, adapterRules, exportedMetrics, gpu}.
function checkAll(objects, options = {}) {
  const errors = [
    ...checkSchemas(objects),
    ...checkContainers(objects),
    ...checkVariables(objects),
    ...checkReferences(objects, options.readme),
    ...checkServiceFlags(objects),
    ...checkNetworkPolicies(objects),
    ...checkAutoscalers(objects, options.adapterRules, options.exportedMetrics),
    ...checkAvailability(objects),
    ...checkJobs(objects),
  ];
  if (options.gpu) errors.push(...checkGpu(objects));
  return errors;
}

module.exports = { checkAll, exportedMetrics, ALLOWED_EDGES, EXTERNAL_SECRETS };
