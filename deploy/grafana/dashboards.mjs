// craft's Grafana dashboards as code: `node deploy/grafana/dashboards.mjs`
// writes dashboards/*.json; `--check` exits 1 when a committed file differs
// from what this script generates. Plain Node (>= 18), no packages.
//
// Every panel reads the `datasource` variable (no hard-coded uid), every
// query filters on the `job` and `instance` variables and uses
// $__rate_interval in rates, and every panel has a unit and a description:
// tools/dashlint checks all of it.
//
// Planner series belong to a placement group (the `group` label; "default"
// without groups), all but the planner's own craft_planner_epoch and
// craft_planner_leader. Queries of group series also filter on the `group`
// variable and keep the groups apart (`by (group, ...)`, {{group}} in
// legends); dashlint checks that too.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const DS = { type: 'prometheus', uid: '${datasource}' };
const RATE = '$__rate_interval';

const PLANNER_WIDE = new Set(['craft_planner_epoch', 'craft_planner_leader']);
const perGroup = (metric) => metric.startsWith('craft_planner_') && !PLANNER_WIDE.has(metric);

// A selector of `metric` filtered by the job and instance variables, and by
// the group variable when it is a series of a placement group.
const sel = (metric, matchers = '') => {
  const all = ['job=~"$job"', 'instance=~"$instance"'];
  if (perGroup(metric)) all.push('group=~"$group"');
  if (matchers) all.push(matchers);
  return `${metric}{${all.join(',')}}`;
};
const rate = (metric, matchers = '') => `rate(${sel(metric, matchers)}[${RATE}])`;
const increase = (metric, matchers = '') => `increase(${sel(metric, matchers)}[${RATE}])`;
// The q-quantile of a planner histogram, per group.
const quantile = (q, metric) =>
  `histogram_quantile(${q}, sum by (group, le) (${rate(metric + '_bucket')}))`;

const target = (expr, legendFormat = '') => ({ expr, legendFormat });

function timeseries(title, description, unit, targets, extra = {}) {
  return {
    type: 'timeseries', title, description, unit, targets,
    options: {
      legend: { displayMode: 'list', placement: 'bottom', showLegend: true },
      tooltip: { mode: 'multi', sort: 'none' },
    },
    custom: { drawStyle: 'line', lineWidth: 1, fillOpacity: 10, showPoints: 'never' },
    ...extra,
  };
}

function stat(title, description, unit, targets, extra = {}) {
  return {
    type: 'stat', title, description, unit, targets, w: 4, h: 4,
    options: {
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      colorMode: 'value', graphMode: 'area', justifyMode: 'auto', textMode: 'auto',
      orientation: 'auto',
    },
    ...extra,
  };
}

function bargauge(title, description, unit, targets, extra = {}) {
  return {
    type: 'bargauge', title, description, unit, targets,
    options: {
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      orientation: 'vertical', displayMode: 'gradient', showUnfilled: true,
    },
    ...extra,
  };
}

function heatmap(title, description, unit, targets, extra = {}) {
  return {
    type: 'heatmap', title, description, unit, targets,
    options: {
      calculate: false,
      yAxis: { axisLabel: 'layer', axisPlacement: 'left' },
      rowsFrame: { layout: 'auto' },
      color: { mode: 'scheme', scheme: 'RdYlGn', steps: 64, min: 0, max: 1, fill: 'dark-orange' },
      cellGap: 1,
      legend: { show: true },
      tooltip: { show: true, yHistogram: false },
    },
    ...extra,
  };
}

// Lays panels out left to right in a 24-column grid and fills in the parts
// every panel shares.
function layout(specs) {
  let x = 0, y = 0, rowHeight = 0, id = 1;
  return specs.map((spec) => {
    const w = spec.w ?? 12, h = spec.h ?? 8;
    if (x + w > 24) { x = 0; y += rowHeight; rowHeight = 0; }
    const gridPos = { h, w, x, y };
    x += w;
    rowHeight = Math.max(rowHeight, h);
    const defaults = { unit: spec.unit };
    if (spec.min !== undefined) defaults.min = spec.min;
    if (spec.max !== undefined) defaults.max = spec.max;
    if (spec.decimals !== undefined) defaults.decimals = spec.decimals;
    if (spec.custom) defaults.custom = spec.custom;
    return {
      datasource: DS,
      description: spec.description,
      fieldConfig: { defaults, overrides: [] },
      gridPos,
      id: id++,
      options: spec.options,
      targets: spec.targets.map((t, i) => ({
        datasource: DS,
        editorMode: 'code',
        expr: t.expr,
        legendFormat: t.legendFormat || '__auto',
        range: true,
        refId: String.fromCharCode(65 + i),
      })),
      title: spec.title,
      type: spec.type,
    };
  });
}

function variable(name, label, query) {
  return {
    allValue: '.*',
    current: { selected: true, text: ['All'], value: ['$__all'] },
    datasource: DS,
    definition: query,
    hide: 0,
    includeAll: true,
    label,
    multi: true,
    name,
    options: [],
    query: { query, refId: `${name}-variable` },
    refresh: 2,
    regex: '',
    sort: 1,
    type: 'query',
  };
}

function dashboard(uid, title, description, panels) {
  return {
    annotations: { list: [] },
    description,
    editable: false,
    graphTooltip: 1,
    id: null,
    links: [],
    panels: layout(panels),
    refresh: '30s',
    schemaVersion: 39,
    tags: ['craft'],
    templating: {
      list: [
        {
          current: {}, hide: 0, includeAll: false, label: 'Data source', multi: false,
          name: 'datasource', options: [], query: 'prometheus', refresh: 1, regex: '',
          type: 'datasource',
        },
        variable('job', 'Job', 'label_values(up{job=~"craft.*"}, job)'),
        variable('instance', 'Instance', 'label_values(up{job=~"$job"}, instance)'),
        variable('group', 'Group',
          'label_values(craft_planner_configured_gpus{job=~"$job",instance=~"$instance"}, group)'),
      ],
    },
    time: { from: 'now-1h', to: 'now' },
    timepicker: {},
    timezone: 'utc',
    title,
    uid,
    version: 1,
  };
}

// Balancedness is a ratio in [0, 1].
const balance = () => ({ min: 0, max: 1 });

const overview = dashboard('craft-overview', 'craft / Cluster overview',
  'Is the MoE cluster balanced, how much does it serve, which layout runs and are the agents there?', [
  stat('Balancedness (mean over layers)',
    'Measured mean / max GPU tokens per layer under the committed layout, averaged over layers (1 = perfectly balanced). From the planner\'s recent complete load windows.',
    'percentunit', [target(sel('craft_planner_balancedness', 'stat="mean"'), '{{group}}')], balance()),
  stat('Worst layer balancedness',
    'The lowest per-layer balancedness: the layer whose busiest GPU holds up every step the most.',
    'percentunit', [target(sel('craft_planner_balancedness', 'stat="min"'), '{{group}}')], balance()),
  stat('Tokens / s', 'Tokens each group routes per second (planner load windows: assignments / (layers x top_k)).',
    'short', [target(`sum by (group) (${rate('craft_planner_tokens_total')})`, '{{group}}')]),
  stat('Committed layout', 'The committed layout version <epoch>.<seq>: its epoch and its sequence number.',
    'none', [target(sel('craft_planner_committed_layout_epoch'), '{{group}} epoch'),
      target(sel('craft_planner_committed_layout_seq'), '{{group}} seq')]),
  stat('Agents connected', 'Agents with an open stream to the planner, and the nodes configured.',
    'none', [target(sel('craft_planner_connected_agents'), '{{group}} connected'),
      target(sel('craft_planner_configured_nodes'), '{{group}} configured')]),
  stat('GPUs on the committed layout', 'GPUs whose agent is connected and in sync with the committed layout, and the GPUs configured.',
    'none', [target(sel('craft_planner_gpus_on_committed_layout'), '{{group}} on committed'),
      target(sel('craft_planner_configured_gpus'), '{{group}} configured')]),
  timeseries('Balancedness over layers',
    'min, 10th percentile and mean over layers of the measured per-layer balancedness. Gaps right after an apply: the new layout has no complete window yet.',
    'percentunit', [target(sel('craft_planner_balancedness'), '{{group}} {{stat}}')], balance()),
  timeseries('Tokens / s', 'Tokens each group routes per second, from the planner\'s ingested load windows.',
    'short', [target(`sum by (group) (${rate('craft_planner_tokens_total')})`, '{{group}}')]),
  timeseries('Token load per GPU',
    'Token-to-expert assignments each GPU computes per second (workers). Even lines mean a balanced cluster.',
    'cps', [target(`sum by (gpu) (${rate('craft_worker_expert_tokens_total')})`, 'GPU {{gpu}}')]),
  timeseries('Agents', 'Connected agents, those serving the committed layout, and those out of sync (the planner re-drives its commit to them).',
    'none', [target(sel('craft_planner_connected_agents'), '{{group}} connected'),
      target(sel('craft_planner_agents_on_committed_layout'), '{{group}} on committed layout'),
      target(sel('craft_planner_agents_out_of_sync'), '{{group}} out of sync')]),
]);

const layers = dashboard('craft-layers', 'craft / Per layer',
  'Balance and replicas layer by layer: where the skew is and where the replicas went.', [
  heatmap('Balancedness per layer over time',
    'Measured balancedness of every layer (rows) under the committed layout: red rows are skewed layers that hold up every step.',
    'percentunit', [target(sel('craft_planner_layer_balancedness'), '{{group}} {{layer}}')], { w: 24, h: 10 }),
  bargauge('Replicas per layer', 'Redundant replicas of each layer in the committed layout (slots beyond one per expert).',
    'none', [target(sel('craft_planner_layer_replicas'), '{{group}} {{layer}}')]),
  bargauge('Replica memory per GPU', 'Expert memory each GPU holds in the committed layout beyond the replica-free initial layout.',
    'bytes', [target(sel('craft_planner_gpu_replica_memory_bytes'), '{{group}} {{gpu}}')]),
  bargauge('Last apply: balancedness gain per layer',
    'At the last pushed plan, per layer: the new layout\'s balancedness minus the committed layout\'s, both replayed on the planning windows.',
    'percentunit', [target(`${sel('craft_planner_apply_layer_balancedness', 'when="after"')} - ignoring(when) ${sel('craft_planner_apply_layer_balancedness', 'when="before"')}`, '{{group}} {{layer}}')]),
  timeseries('Last apply: balancedness before and after',
    'mean and min over layers of the balancedness at the last pushed plan: before (committed layout) and after (new layout), on the planning windows.',
    'percentunit', [target(sel('craft_planner_apply_balancedness', 'stat=~"mean|min"'), '{{group}} {{when}} {{stat}}')], balance()),
]);

const apply = dashboard('craft-apply', 'craft / Apply pipeline',
  'The two-phase apply: how often, how long, how many bytes, and why applies abort.', [
  timeseries('Applies', 'Applies finished per interval, by result: committed or aborted.',
    'none', [target(`sum by (group, result) (${increase('craft_planner_applies_total')})`, '{{group}} {{result}}')]),
  timeseries('Aborts by reason', 'Aborted applies per interval: agent_nack (see Nacks), timeout, agent_left, draining, persist_failed.',
    'none', [target(`sum by (group, reason) (${increase('craft_planner_apply_aborts_total')})`, '{{group}} {{reason}}')]),
  timeseries('Prepare to commit',
    'From Prepare sent to every agent PREPARED (the commit point): 50th and 90th percentile per interval, and the mean since start.',
    's', [target(quantile(0.5, 'craft_planner_apply_prepare_to_commit_seconds'), '{{group}} p50'),
      target(quantile(0.9, 'craft_planner_apply_prepare_to_commit_seconds'), '{{group}} p90'),
      target(`${sel('craft_planner_apply_prepare_to_commit_seconds_sum')} / ${sel('craft_planner_apply_prepare_to_commit_seconds_count')}`, '{{group}} mean since start')]),
  timeseries('Bytes moved', 'Expert bytes copied between GPUs per second: planned by committed applies (planner) and received by workers.',
    'Bps', [target(`sum by (group) (${rate('craft_planner_transfer_bytes_total')})`, '{{group}} committed applies'),
      target(`sum(${rate('craft_worker_fetched_bytes_total')})`, 'received by workers')]),
  timeseries('Transfer rate while staging',
    'Bytes a worker fetched from peers per second of staging (fetch, copy, verify), per worker; empty between applies.',
    'Bps', [target(`sum by (instance) (${rate('craft_worker_fetched_bytes_total')}) / sum by (instance) (${rate('craft_worker_staging_seconds_total')})`, '{{instance}}')]),
  timeseries('Layout version rollout', 'Sequence number of the committed layout (planner) and of the layout each worker serves: lines join when a commit reached every GPU.',
    'none', [target(sel('craft_planner_committed_layout_seq'), '{{group}} committed'),
      target(`max by (instance) (${sel('craft_worker_serving_layout_seq')})`, '{{instance}}')]),
  timeseries('Worker prepares', 'Prepares answered by workers per interval: ready (staged and verified) or failed.',
    'none', [target(`sum by (result) (${increase('craft_worker_prepares_total')})`, '{{result}}')]),
  timeseries('Nacks by code', 'Nacks the planner received per interval, by error code (worker_failed, worker_missing, timeout, ...).',
    'none', [target(`sum by (group, code) (${increase('craft_planner_agent_nacks_total')})`, '{{group}} {{code}}')]),
  stat('Apply in progress', '1 while an apply is preparing or waiting for commit acks.', 'none',
    [target(sel('craft_planner_apply_in_progress'), '{{group}}')]),
  stat('Agents out of sync', 'Connected agents serving another version than the committed one.', 'none',
    [target(sel('craft_planner_agents_out_of_sync'), '{{group}}')]),
]);

const health = dashboard('craft-planner-health', 'craft / Planner health',
  'The planner process and its inputs: scrape health, plan time, replan decisions, agent streams and load windows.', [
  stat('Planner up', '1 when Prometheus scraped the planner last time.', 'none',
    [target(sel('up', 'job=~".*planner.*"'), '{{instance}}')]),
  stat('Epoch', 'The planner\'s leadership term (bumped on every start).', 'none',
    [target(sel('craft_planner_epoch'), 'epoch')]),
  stat('Fenced', '1 while a connected agent has seen a newer planner epoch: it refuses this planner, so nothing is applied (lifts when that agent reconnects without the claim).', 'none',
    [target(sel('craft_planner_fenced'), '{{group}}')]),
  stat('GPUs without agent', 'Configured GPUs no connected agent claims; applies wait while above 0.', 'none',
    [target(sel('craft_planner_gpus_without_agent'), '{{group}}')]),
  timeseries('Plan duration', 'Time to compute one plan: 50th and 99th percentile per interval.', 's',
    [target(quantile(0.5, 'craft_planner_plan_duration_seconds'), '{{group}} p50'),
      target(quantile(0.99, 'craft_planner_plan_duration_seconds'), '{{group}} p99')]),
  timeseries('Replans by result', 'Replans per interval: pushed, gated (gain too small), no_loads, skipped (an apply or a resync in progress), failed.', 'none',
    [target(`sum by (group, result) (${increase('craft_planner_replans_total')})`, '{{group}} {{result}}')]),
  timeseries('Resyncs', 'Commits of the committed layout re-driven to nodes not on it (after a crash or restart), by result, and windows workers held back while being brought to it. Started without completed for long: a node cannot reach the committed layout.', 'none',
    [target(`sum by (group, result) (${increase('craft_planner_resyncs_total')})`, '{{group}} {{result}}'),
      target(`sum(${increase('craft_worker_windows_held_total')})`, 'windows held')]),
  timeseries('Agent streams', 'Agent streams accepted and ended per interval (planner), and reconnects the agents made.', 'none',
    [target(`sum by (group) (${increase('craft_planner_agent_connects_total')})`, '{{group}} accepted'),
      target(`sum by (group) (${increase('craft_planner_agent_disconnects_total')})`, '{{group}} ended'),
      target(`sum(${increase('craft_agent_planner_reconnects_total')})`, 'agent reconnects')]),
  timeseries('Load windows', 'Per-GPU load windows ingested per second, and rejected per second by reason (planner and agents).', 'cps',
    [target(`sum by (group) (${rate('craft_planner_load_windows_ingested_total')})`, '{{group}} ingested'),
      target(`sum by (group, reason) (${rate('craft_planner_load_windows_rejected_total')})`, '{{group}} rejected {{reason}}'),
      target(`sum by (reason) (${rate('craft_agent_load_windows_rejected_total')})`, 'agent rejected {{reason}}')]),
  timeseries('Token load per GPU (agents)', 'Token-to-expert assignments per second of each GPU, from the windows the agents accepted.', 'cps',
    [target(`sum by (gpu) (${rate('craft_agent_gpu_expert_tokens_total')})`, 'GPU {{gpu}}')]),
  timeseries('Workers attached', 'Workers attached to each agent on its Unix socket.', 'none',
    [target(sel('craft_agent_workers_attached'), '{{instance}}')]),
]);

const DASHBOARDS = { 'craft-overview': overview, 'craft-layers': layers, 'craft-apply': apply,
  'craft-planner-health': health };

const here = path.dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes('--check');
let stale = 0;
for (const [name, d] of Object.entries(DASHBOARDS)) {
  const file = path.join(here, 'dashboards', `${name}.json`);
  const text = JSON.stringify(d, null, 2) + '\n';
  if (check) {
    const current = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    if (current !== text) { console.log(`stale: ${file} (run node deploy/grafana/dashboards.mjs)`); stale++; }
  } else {
    fs.writeFileSync(file, text);
    console.log(`wrote ${file}`);
  }
}
process.exit(stale ? 1 : 0);
