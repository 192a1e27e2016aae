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

const portsByPodLabel = [];  // [{labels, ports}] for monitor checks
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
    }
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
}
for (const p of problems) console.log(`INVALID ${p}`);
console.log(`validate: ${checked} resources, ${problems.length} problems`);
process.exit(problems.length ? 1 : 0);
