// Offline checks of rendered Kubernetes manifests (kubectl kustomize output):
// the OpenAPI schemas bundled in kubernetes-models and
// @kubernetes-models/prometheus-operator, plus craft's own rules:
//   - every resource has the app.kubernetes.io/name and part-of labels;
//   - every long-running container (containers and native sidecars) has
//     resource requests and limits, readiness and liveness probes, and an
//     image pinned to a version tag (not :latest);
//   - every container port is named, and metrics ports exist where monitors
//     point;
//   - craft's own containers run mutual TLS (--tls_cert, --tls_key, --tls_ca,
//     never --insecure) and have no grpc probes (they present no certificate);
//   - the planner's security.nodes has one name per cluster.num_nodes, and
//     they are the agents' node names: craft-node-ranks' keys in rank order
//     for the DaemonSet, the pod names for agents in StatefulSet pods.
//   - more than one planner replica only with the config's ha section; with
//     it: --advertise_address, the etcd TLS files in mounted volumes (never
//     etcd_insecure), a StatefulSet's replicas advertising names of its
//     headless Service that publishes not-ready addresses, and agents given
//     a list of planners naming exactly those replicas;
//   - no PodDisruptionBudget leaves a Deployment or StatefulSet no voluntary
//     disruption (minAvailable at or above its replicas).
//
//   node deploy/k8s/validate/validate.mjs rendered.yaml...
import fs from 'node:fs';
import { parse, parseAllDocuments } from 'yaml';

const problems = [];
let checked = 0;

async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const module = group === 'monitoring.coreos.com'
    ? `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`
    : `kubernetes-models/${group ? `${group}/` : ''}${version}/${kind}`;
  return (await import(module))[kind];
}

function podSpecOf(o) {
  return o.spec?.template?.spec ?? (o.kind === 'Pod' ? o.spec : undefined);
}

function checkContainer(where, c) {
  const name = `${where} container ${c.name}`;
  if (!/:[\w.-]+$/.test(c.image ?? '') || c.image.endsWith(':latest')) problems.push(`${name}: image ${c.image} is not pinned to a version tag`);
  for (const kind of ['requests', 'limits']) {
    if (!c.resources?.[kind] || !Object.keys(c.resources[kind]).length) problems.push(`${name}: no resource ${kind}`);
  }
  if (!c.readinessProbe) problems.push(`${name}: no readinessProbe`);
  if (!c.livenessProbe) problems.push(`${name}: no livenessProbe`);
  for (const p of c.ports ?? []) if (!p.name) problems.push(`${name}: port ${p.containerPort} has no name`);
  if (!(c.image ?? '').startsWith('ghcr.io/craft-moe/')) return;
  const argv = [...(c.command ?? []), ...(c.args ?? [])].join(' ');
  if (/--insecure\b/.test(argv)) problems.push(`${name}: runs --insecure`);
  for (const flag of ['--tls_cert', '--tls_key', '--tls_ca']) {
    if (!argv.includes(`${flag}=`)) problems.push(`${name}: no ${flag}`);
  }
  for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
    if (c[probe]?.grpc) problems.push(`${name}: ${probe} is a grpc probe; craft's ports need a client certificate`);
  }
}

// Where a workload's agents get their node names: {names} for StatefulSet
// pods whose agent is --node=$POD_NAME, {ranks} for a DaemonSet (the keys of
// craft-node-ranks); null for a workload without craft-agent.
function agentNodes(o, pod) {
  const agents = [...(pod.containers ?? []), ...(pod.initContainers ?? [])]
    .filter((c) => (c.image ?? '').startsWith('ghcr.io/craft-moe/craft-agent:'));
  if (!agents.length) return null;
  const argv = agents.flatMap((c) => [...(c.command ?? []), ...(c.args ?? [])]).join(' ');
  if (o.kind === 'StatefulSet' && /--node="?\$\{?POD_NAME\}?"?/.test(argv)) {
    return { names: Array.from({ length: o.spec.replicas ?? 1 }, (_, i) => `${o.metadata.name}-${i}`) };
  }
  if (o.kind === 'DaemonSet') return { ranks: true };
  return null;
}

// The value of --name=VALUE in a container's command line ("" when absent),
// a lone $VAR or ${VAR} taken from the container's env.
function flagValue(c, name) {
  const argv = [...(c.command ?? []), ...(c.args ?? [])].join(' ');
  const value = argv.match(new RegExp(`--${name}=("?)([^\\s"]+)\\1`))?.[2] ?? '';
  const variable = value.match(/^\$\{?(\w+)\}?$/)?.[1];
  return variable ? (c.env ?? []).find((e) => e.name === variable)?.value ?? '' : value;
}

const portsByPodLabel = [];  // [{labels, ports}] for monitor checks
const planners = [];  // [{where, o, c}]: craft-planner containers and their workloads
const agentPlanners = [];  // [{where, targets}]: each craft-agent's --planner list
const services = [];
const budgets = [];  // PodDisruptionBudgets
const scaled = [];  // Deployments and StatefulSets
const configMaps = [];  // ConfigMaps, for the node-name checks
const agentWorkloads = [];  // [{where, names} or {where, ranks}]

for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(fs.readFileSync(file, 'utf8'))) {
    const o = doc.toJS();
    if (!o) continue;
    const where = `${o.kind}/${o.metadata?.name}`;
    checked++;
    try {
      const Model = await modelFor(o.apiVersion, o.kind);
      new Model(o).validate();
    } catch (e) {
      problems.push(`${where}: ${e.message.split('\n').slice(0, 3).join(' | ')}`);
    }
    const labels = o.metadata?.labels ?? {};
    if (o.kind !== 'Namespace' && o.kind !== 'ConfigMap' && !labels['app.kubernetes.io/name']) problems.push(`${where}: no app.kubernetes.io/name label`);
    if (!labels['app.kubernetes.io/part-of']) problems.push(`${where}: no app.kubernetes.io/part-of label`);
    const pod = podSpecOf(o);
    if (pod) {
      const longRunning = [...(pod.containers ?? []),
        ...(pod.initContainers ?? []).filter((c) => c.restartPolicy === 'Always')];
      longRunning.forEach((c) => checkContainer(where, c));
      portsByPodLabel.push({ labels: o.spec.template.metadata.labels,
        ports: new Set(longRunning.flatMap((c) => (c.ports ?? []).map((p) => p.name))) });
      const nodes = agentNodes(o, pod);
      if (nodes) agentWorkloads.push({ where, ...nodes });
      for (const c of longRunning) {
        if ((c.image ?? '').startsWith('ghcr.io/craft-moe/craft-planner:')) planners.push({ where, o, c });
        if ((c.image ?? '').startsWith('ghcr.io/craft-moe/craft-agent:')) {
          agentPlanners.push({ where, targets: flagValue(c, 'planner').split(',').filter(Boolean) });
        }
      }
      if (o.kind === 'Deployment' || o.kind === 'StatefulSet') scaled.push(o);
    }
    if (o.kind === 'Service') services.push(o);
    if (o.kind === 'PodDisruptionBudget') budgets.push(o);
    if (o.kind === 'ConfigMap') configMaps.push(o);
    if (o.kind === 'PodMonitor') {
      const selector = o.spec.selector.matchLabels;
      const pods = portsByPodLabel.filter((p) => Object.entries(selector).every(([k, v]) => p.labels[k] === v));
      for (const endpoint of o.spec.podMetricsEndpoints) {
        if (pods.length && !pods.some((p) => p.ports.has(endpoint.port))) problems.push(`${where}: no selected pod has a port named ${endpoint.port}`);
      }
    }
  }
}

// configMapGenerator appends a content hash to the names.
const generated = (name) => configMaps.find((m) => new RegExp(`^${name}(-[a-z0-9]+)?$`).test(m.metadata.name));
const plannerConfig = generated('craft-planner-config');
if (plannerConfig) {
  const where = `ConfigMap/${plannerConfig.metadata.name}`;
  let config = {};
  try {
    const parsed = parse(plannerConfig.data?.['planner.yaml'] ?? '');
    if (parsed && typeof parsed === 'object') config = parsed;
  } catch (e) {
    problems.push(`${where}: planner.yaml: ${e.message}`);
  }
  const nodes = config.security?.nodes ?? [];
  const numNodes = config.cluster?.num_nodes ?? 1;
  const perNode = (config.cluster?.num_gpus ?? 0) / numNodes;
  if (nodes.length !== numNodes) problems.push(`${where}: security.nodes has ${nodes.length} names for cluster.num_nodes ${numNodes}`);
  if ('admin_token' in config) problems.push(`${where}: admin_token is refused (security.admin_token_file)`);
  for (const w of agentWorkloads) {
    if (w.names && w.names.join() !== nodes.join()) {
      problems.push(`${w.where}: its agents are nodes [${w.names}], security.nodes is [${nodes}]`);
    }
    if (w.ranks) {
      const ranks = generated('craft-node-ranks')?.data ?? {};
      const named = Object.keys(ranks).sort((a, b) => parseInt(ranks[a]) - parseInt(ranks[b]));
      if (named.join() !== nodes.join()) problems.push(`${w.where}: craft-node-ranks names [${named}] in rank order, security.nodes is [${nodes}]`);
      nodes.forEach((node, i) => {
        const want = Array.from({ length: perNode }, (_, r) => i * perNode + r).join(',');
        if (node in ranks && ranks[node].replace(/\s/g, '') !== want) problems.push(`${w.where}: craft-node-ranks gives ${node} ranks ${ranks[node]}, node ${i} holds ${want}`);
      });
    }
  }
  checkHighAvailability(where, config);
}

// Planner replicas and their config's ha section (server/config.h HaConfig).
function checkHighAvailability(configWhere, config) {
  const ha = config.ha;
  if (ha?.etcd_insecure) problems.push(`${configWhere}: ha.etcd_insecure: etcd must be mutual TLS`);
  const port = String(config.listen_address ?? '').split(':').pop();
  for (const { where, o, c } of planners) {
    const replicas = o.spec.replicas ?? 1;
    if (!ha) {
      if (replicas > 1) problems.push(`${where}: ${replicas} replicas without the config's ha section (one writer per state file)`);
      continue;
    }
    for (const key of ['etcd_cert', 'etcd_key', 'etcd_ca']) {
      const file = String(ha[key] ?? '');
      if (!file && ha.etcd_insecure) continue;
      const mounted = (c.volumeMounts ?? []).some((m) => file.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
      if (!mounted) problems.push(`${where}: ha.${key} '${file}' is not in a volume the planner mounts`);
    }
    const advertise = flagValue(c, 'advertise_address');
    if (!advertise) {
      problems.push(`${where}: no --advertise_address (required with the config's ha section)`);
      continue;
    }
    if (o.kind !== 'StatefulSet') continue;
    // Each replica's advertised address, as the kubelet expands $(VAR).
    const namespace = o.metadata.namespace ?? 'default';
    const fields = (i) => ({ 'metadata.name': `${o.metadata.name}-${i}`, 'metadata.namespace': namespace });
    const addresses = Array.from({ length: replicas }, (_, i) => advertise.replace(/\$\((\w+)\)/g, (ref, name) => {
      const e = (c.env ?? []).find((v) => v.name === name);
      return e?.value ?? fields(i)[e?.valueFrom?.fieldRef?.fieldPath] ?? ref;
    }));
    const headless = services.find((svc) => svc.metadata.name === o.spec.serviceName &&
      (svc.metadata.namespace ?? 'default') === namespace);
    if (!headless || headless.spec.clusterIP !== 'None' || !headless.spec.publishNotReadyAddresses) {
      problems.push(`${where}: serviceName ${o.spec.serviceName} is not a headless Service with publishNotReadyAddresses (agents dial a new leader before it is ready)`);
    }
    addresses.forEach((address, i) => {
      const want = `${o.metadata.name}-${i}.${o.spec.serviceName}.${namespace}.svc`;
      if (address !== `${want}:${port}` && address !== `${want}.cluster.local:${port}`) {
        problems.push(`${where}: replica ${i} advertises ${address}, not ${want}:${port} (its name in serviceName ${o.spec.serviceName}, the config's port)`);
      }
    });
    // Agents given a list (not one Service address) must name every replica.
    for (const agent of agentPlanners) {
      if (agent.targets.length > 1 && [...agent.targets].sort().join() !== [...addresses].sort().join()) {
        problems.push(`${agent.where}: its planners are [${agent.targets}], the replicas advertise [${addresses}]`);
      }
    }
  }
}

for (const pdb of budgets) {
  const selector = pdb.spec.selector?.matchLabels ?? {};
  for (const o of scaled.filter((w) => w.metadata.namespace === pdb.metadata.namespace)) {
    const labels = o.spec.template.metadata?.labels ?? {};
    const selected = Object.keys(selector).length && Object.entries(selector).every(([k, v]) => labels[k] === v);
    if (selected && typeof pdb.spec.minAvailable === 'number' && pdb.spec.minAvailable >= (o.spec.replicas ?? 1)) {
      problems.push(`PodDisruptionBudget/${pdb.metadata.name}: minAvailable ${pdb.spec.minAvailable} of ${o.kind}/${o.metadata.name}'s ${o.spec.replicas ?? 1} replicas allows no voluntary disruption`);
    }
  }
}
for (const p of problems) console.log(`INVALID ${p}`);
console.log(`validate: ${checked} resources, ${problems.length} problems`);
process.exit(problems.length ? 1 : 0);
