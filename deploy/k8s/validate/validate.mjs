// Offline checks of rendered Kubernetes manifests (kubectl kustomize output):
// the OpenAPI schemas bundled in kubernetes-models and
// @kubernetes-models/prometheus-operator, plus craft's own rules:
//   - every resource has the app.kubernetes.io/name and part-of labels;
//   - every long-running container (containers and native sidecars) has
//     resource requests and limits, readiness and liveness probes, and an
//     image pinned to a version tag (not :latest);
//   - every container port is named, and metrics ports exist where monitors
//     point.
//
//   node deploy/k8s/validate/validate.mjs rendered.yaml...
import fs from 'node:fs';
import { parseAllDocuments } from 'yaml';

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
}

const portsByPodLabel = [];  // [{labels, ports}] for monitor checks

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
    }
    if (o.kind === 'PodMonitor') {
      const selector = o.spec.selector.matchLabels;
      const pods = portsByPodLabel.filter((p) => Object.entries(selector).every(([k, v]) => p.labels[k] === v));
      for (const endpoint of o.spec.podMetricsEndpoints) {
        if (pods.length && !pods.some((p) => p.ports.has(endpoint.port))) problems.push(`${where}: no selected pod has a port named ${endpoint.port}`);
      }
    }
  }
}
for (const p of problems) console.log(`INVALID ${p}`);
console.log(`validate: ${checked} resources, ${problems.length} problems`);
process.exit(problems.length ? 1 : 0);
