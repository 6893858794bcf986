// node checks.test.js --repo=DIR BASE.yaml... : every invariant of checks.js fails on a
// deliberately broken copy of the rendered manifests, with its own message, and the
// unbroken objects pass. run.sh calls it with the base and the ingest Job rendered.
"use strict";

const { checkAll } = require("./checks.js");
const { loadObjects, options } = require("./validate.js");

const args = process.argv.slice(2);
const repo = args.find((a) => a.startsWith("--repo=")).slice("--repo=".length);
const original = args.filter((a) => !a.startsWith("--")).flatMap(loadObjects);
const opts = options(repo, false);

const find = (objects, kind, name) => objects.find((o) => o.kind === kind && o.metadata.name === name);
const container = (objects, kind, name) => find(objects, kind, name).spec.template.spec.containers[0];
const setArg = (c, flag, value) => {
  const i = c.args.findIndex((a) => a.startsWith(`--${flag}=`));
  c.args[i] = `--${flag}=${value}`;
};

// name -> [mutation of a deep copy, text the problems must contain]
const CASES = {
  "no liveness probe": [(o) => { delete container(o, "StatefulSet", "decoder").livenessProbe; }, "decoder container decoder: no livenessProbe"],
  "no readiness probe": [(o) => { delete container(o, "Deployment", "router").readinessProbe; }, "router container router: no readinessProbe"],
  "a probe on a port not served": [(o) => { container(o, "Deployment", "router").readinessProbe.httpGet.port = "http"; }, "readinessProbe port http is not a port"],
  "no limits": [(o) => { delete container(o, "StatefulSet", "query-prefill").resources.limits; }, "no resources.limits.cpu"],
  "no memory request": [(o) => { delete container(o, "Deployment", "redis").resources.requests.memory; }, "no resources.requests.memory"],
  "writable root filesystem": [(o) => { container(o, "Deployment", "passage-encoder").securityContext.readOnlyRootFilesystem = false; }, "readOnlyRootFilesystem is not true"],
  "capabilities kept": [(o) => { delete container(o, "Deployment", "router").securityContext.capabilities; }, "does not drop ALL"],
  "privilege escalation": [(o) => { container(o, "StatefulSet", "decoder").securityContext.allowPrivilegeEscalation = true; }, "allowPrivilegeEscalation is not false"],
  "root user": [(o) => { container(o, "Job", "blockserve-ingest").securityContext.runAsUser = 0; }, "blockserve-ingest container ingest: securityContext.runAsUser is not a fixed non-root UID"],
  "runAsNonRoot off": [(o) => { container(o, "Deployment", "redis").securityContext.runAsNonRoot = false; }, "redis container redis: securityContext.runAsNonRoot"],
  "no seccomp": [(o) => {
    delete container(o, "StatefulSet", "decoder").securityContext.seccompProfile;
    delete find(o, "StatefulSet", "decoder").spec.template.spec.securityContext.seccompProfile;
  }, "seccompProfile is not RuntimeDefault"],
  "no /dev/shm for the shm store": [(o) => {
    const c = container(o, "StatefulSet", "query-prefill");
    c.volumeMounts = c.volumeMounts.filter((m) => m.mountPath !== "/dev/shm");
  }, "without an emptyDir {medium: Memory} at /dev/shm"],
  "schema: a port that is not a number": [(o) => { container(o, "StatefulSet", "decoder").ports[0].containerPort = "fifty"; }, "schema: "],
  "schema: unknown kind": [(o) => { find(o, "Deployment", "router").kind = "Deploymnet"; }, "unknown kind Deploymnet"],
  "an undefined $(VAR)": [(o) => { container(o, "Deployment", "router").args.push("--affinity_slack=$(AFINITY_SLACK)"); }, "$(AFINITY_SLACK) is not defined"],
  "a Secret nobody creates": [(o) => {
    find(o, "Deployment", "router").spec.template.spec.volumes.find((v) => v.name === "tenants").secret.secretName = "tenants";
  }, "Secret tenants is neither in the manifests nor a documented external Secret"],
  "a missing ConfigMap": [(o) => { container(o, "StatefulSet", "decoder").envFrom[0].configMapRef.name = "flags"; }, "ConfigMap flags does not exist"],
  "a missing claim": [(o) => { o.splice(o.indexOf(find(o, "PersistentVolumeClaim", "blockserve-model")), 1); }, "PersistentVolumeClaim blockserve-model does not exist"],
  "router names a Service that does not exist": [(o) => {
    setArg(container(o, "Deployment", "router"), "prefill", "dns:///query-prefil.$(POD_NAMESPACE).svc.cluster.local:50062");
  }, "--prefill names Service query-prefil, which does not exist"],
  "router names the wrong port": [(o) => {
    setArg(container(o, "Deployment", "router"), "decoder", "dns:///decoder.$(POD_NAMESPACE).svc.cluster.local:50064");
  }, "--decoder names port 50064 of Service decoder"],
  "router's decoder is a prefill": [(o) => {
    setArg(container(o, "Deployment", "router"), "decoder", "dns:///query-prefill.$(POD_NAMESPACE).svc.cluster.local:50062");
  }, "which does not run /app/decoder"],
  "DNS discovery behind a ClusterIP": [(o) => { delete find(o, "Service", "decoder").spec.clusterIP; }, "Service decoder is not headless"],
  "prefill hands KV to an unknown decoder": [(o) => {
    setArg(container(o, "StatefulSet", "query-prefill"), "allowed_decoders", "dns:///decoders.$(POD_NAMESPACE).svc.cluster.local:50063");
  }, "--allowed_decoders names Service decoders"],
  "redis host without a Service": [(o) => { find(o, "ConfigMap", "blockserve-flags").data.REDIS_HOST = "redis-master"; }, "name redis-master:6379, which no Service serves"],
  "the ingest client dials no router": [(o) => { setArg(container(o, "Job", "blockserve-ingest"), "router", "router:443"); }, "--router names port 443 of Service router"],
  "a policy opens a port no one serves": [(o) => { find(o, "NetworkPolicy", "decoder").spec.ingress[0].ports[0].port = 50064; }, "allows ingress to port 50064"],
  "an egress port no one serves": [(o) => { find(o, "NetworkPolicy", "router").spec.egress[0].ports[0].port = 50060; }, "allows egress to port 50060"],
  "decoder may reach Redis": [(o) => {
    find(o, "NetworkPolicy", "decoder").spec.egress.push({ to: [{ podSelector: { matchLabels: { "app.kubernetes.io/name": "redis" } } }], ports: [{ protocol: "TCP", port: 6379 }] });
    find(o, "NetworkPolicy", "redis").spec.ingress[0].from.push({ podSelector: { matchLabels: { "app.kubernetes.io/name": "decoder" } } });
  }, "allow decoder->redis:6379, which the trust boundary does not"],
  "router cannot reach the decoders": [(o) => { find(o, "NetworkPolicy", "router").spec.egress.splice(1, 1); }, "do not allow router->decoder:50063"],
  "metrics not scrapeable": [(o) => { find(o, "NetworkPolicy", "query-prefill").spec.ingress.splice(1, 1); }, "do not allow monitoring->query-prefill:9090"],
  "a pod without a policy": [(o) => { o.splice(o.indexOf(find(o, "NetworkPolicy", "redis")), 1); }, "Deployment/redis: no NetworkPolicy restricts its ingress"],
  "egress to anywhere": [(o) => { find(o, "NetworkPolicy", "decoder").spec.egress.push({ ports: [{ port: 443 }] }); }, "an egress rule without \"to\""],
  "HPA on a workload that does not exist": [(o) => { find(o, "HorizontalPodAutoscaler", "decoder").spec.scaleTargetRef.name = "decoders"; }, "scaleTargetRef apps/v1 StatefulSet/decoders does not exist"],
  "HPA on a metric the adapter does not serve": [(o) => {
    find(o, "HorizontalPodAutoscaler", "query-prefill").spec.metrics[0].pods.metric.name = "blockserve_prefill_queue_depth";
  }, "Pods metric blockserve_prefill_queue_depth is not served"],
  "HPA range excludes the replicas": [(o) => { find(o, "HorizontalPodAutoscaler", "router").spec.minReplicas = 3; }, "has 2 replicas, outside [3, 8]"],
  "no disruption budget": [(o) => { o.splice(o.indexOf(find(o, "PodDisruptionBudget", "decoder")), 1); }, "StatefulSet/decoder: no PodDisruptionBudget"],
  "a spread constraint on other pods": [(o) => {
    find(o, "Deployment", "router").spec.template.spec.topologySpreadConstraints[0].labelSelector.matchLabels["app.kubernetes.io/name"] = "decoder";
  }, "labelSelector does not select its own pods"],
  "shards that do not match completions": [(o) => { setArg(container(o, "Job", "blockserve-ingest"), "shards", "4"); }, "is not completions (8)"],
  "a sequential ingest Job": [(o) => { delete find(o, "Job", "blockserve-ingest").spec.completionMode; }, "need completionMode: Indexed"],
};

const clone = (x) => JSON.parse(JSON.stringify(x));
let failures = 0;
const clean = checkAll(clone(original), opts);
if (clean.length) {
  failures++;
  console.error(`FAIL the unbroken manifests have problems:\n  ${clean.join("\n  ")}`);
}
for (const [name, [mutate, expected]] of Object.entries(CASES)) {
  const objects = clone(original);
  mutate(objects);
  const errors = checkAll(objects, opts);
  if (!errors.some((e) => e.includes(expected))) {
    failures++;
    console.error(`FAIL ${name}: expected a problem containing "${expected}", got:\n  ${errors.join("\n  ") || "(none)"}`);
  }
}
// The adapter rules name series the services export.
{
  const rules = clone(opts.adapterRules);
  rules[0].seriesQuery = 'blockserve_prefill_queue_depth{namespace!="",pod!=""}';
  const errors = checkAll(clone(original), { ...opts, adapterRules: rules });
  if (!errors.some((e) => e.includes("series blockserve_prefill_queue_depth is not exported"))) {
    failures++;
    console.error(`FAIL adapter rule on a series no service exports: got ${errors.join("; ") || "(none)"}`);
  }
}
// The GPU check, on the base (which has no GPUs).
if (!checkAll(clone(original), { ...opts, gpu: true }).some((e) => e.includes("no nvidia.com/gpu limit"))) {
  failures++;
  console.error("FAIL the GPU check passes manifests without GPUs");
}
const total = Object.keys(CASES).length + 3;
console.log(`${total - failures} of ${total} mutation checks passed`);
process.exit(failures ? 1 : 0);
