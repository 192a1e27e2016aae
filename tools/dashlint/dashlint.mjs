// dashlint: an offline linter for Grafana dashboard JSON, with the rules of
// grafana/dashboard-linter that matter here (that tool is Go and not
// installable offline). Plain Node (>= 18), no packages.
//
//   node tools/dashlint/dashlint.mjs deploy/grafana/dashboards/*.json
//   node tools/dashlint/dashlint.mjs --queries --rate-interval 20s FILES   # one JSON line per query
//
// Rules (each error names the file and panel):
//   dashboard:  uid ([a-z0-9-], at most 40), title, schemaVersion, id null,
//               panels, no __inputs/__requires (export-only sections)
//   template:   a `datasource` variable (type datasource, query prometheus),
//               and `job`, `instance` and `group` query variables that use it
//   datasource: every datasource reference is {type: prometheus, uid: ${datasource}};
//               no hard-coded uid anywhere
//   panel:      unique id, title, description, gridPos inside 24 columns,
//               a known unit (fieldConfig.defaults.unit), at least one target
//   target:     unique refId, an expr; every craft_* / up selector matches
//               job=~"$job" and instance=~"$instance"; rate/irate/increase/delta
//               ranges are [$__rate_interval]
//   group:      every selector of a placement group's planner series (all
//               craft_planner_* but craft_planner_epoch and craft_planner_leader)
//               matches group=~"$group", and an expression that selects one
//               keeps `group` through every aggregation (by (group, ...)) and
//               in its legend ({{group}})
//   promql:     every expr (variables substituted) parses: `promtool check rules`
//               on the exprs wrapped as recording rules (skipped, with a note,
//               when promtool is not installed)
//
// Exit status: 0 clean, 1 findings, 2 usage.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

const UNITS = new Set(['none', 'short', 'percent', 'percentunit', 's', 'ms', 'bytes', 'decbytes',
  'Bps', 'binBps', 'ops', 'cps', 'reqps', 'dtdurations', 'dateTimeAsIso']);
const PANEL_TYPES = new Set(['timeseries', 'stat', 'bargauge', 'heatmap', 'gauge', 'table', 'row']);
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

// Grafana variables replaced for checks and queries.
export function substitute(expr, rateInterval = '1m') {
  return expr.replaceAll('$__rate_interval', rateInterval)
    .replaceAll('${job}', '.*').replaceAll('$job', '.*')
    .replaceAll('${instance}', '.*').replaceAll('$instance', '.*')
    .replaceAll('${group}', '.*').replaceAll('$group', '.*');
}

// The planner's own series; every other craft_planner_* series belongs to a
// placement group and carries its `group` label.
const PLANNER_WIDE = new Set(['craft_planner_epoch', 'craft_planner_leader']);
const isGroupSeries = (metric) => metric.startsWith('craft_planner_') && !PLANNER_WIDE.has(metric);

// Aggregation operators with their optional by/without clause (leading form).
const AGGREGATION = /\b(sum|avg|min|max|count|stddev|stdvar|topk|bottomk|quantile|group)\s*(?:(by|without)\s*\(([^)]*)\))?\s*\(/g;

function isDatasourceVariable(ds) {
  return ds && typeof ds === 'object' && ds.type === DATASOURCE.type && ds.uid === DATASOURCE.uid;
}

// Every `datasource` value anywhere in the document but the datasource
// variable itself must be the variable.
function checkDatasources(node, where, errors) {
  if (Array.isArray(node)) {
    node.forEach((child) => checkDatasources(child, where, errors));
    return;
  }
  if (!node || typeof node !== 'object') return;
  if (node.type === 'datasource' && node.name === 'datasource') return;
  for (const [key, value] of Object.entries(node)) {
    if (key === 'datasource' && !isDatasourceVariable(value)) {
      errors.push(`${where}: hard-coded datasource ${JSON.stringify(value)} (use {"type":"prometheus","uid":"\${datasource}"})`);
    } else {
      checkDatasources(value, where, errors);
    }
  }
}

// Selectors of craft metrics (and `up`) in an expression, with their
// matcher block ('' when there is none).
function selectors(expr) {
  const found = [];
  const re = /(?<![\w:.])(craft_[a-z0-9_]+|craft:[a-z0-9_:]+|up)\b(\s*\{[^}]*\})?(\s*\()?/g;
  for (const m of expr.matchAll(re)) {
    if (m[3]) continue;  // a function call, not a metric
    found.push({ metric: m[1], matchers: m[2] || '' });
  }
  return found;
}

export function checkExpr(expr) {
  const problems = [];
  for (const { metric, matchers } of selectors(expr)) {
    if (!matchers.includes('job=~"$job"')) problems.push(`${metric} has no job=~"$job" matcher`);
    if (!matchers.includes('instance=~"$instance"')) {
      problems.push(`${metric} has no instance=~"$instance" matcher`);
    }
  }
  if (selectors(expr).length === 0) problems.push('no craft metric in the query');
  const groupSeries = selectors(expr).filter(({ metric }) => isGroupSeries(metric));
  for (const { metric, matchers } of groupSeries) {
    if (!matchers.includes('group=~"$group"')) problems.push(`${metric} has no group=~"$group" matcher`);
  }
  if (groupSeries.length > 0) {
    for (const m of expr.matchAll(AGGREGATION)) {
      const labels = (m[3] ?? '').split(',').map((l) => l.trim());
      const keeps = m[2] === 'without' ? !labels.includes('group') : labels.includes('group');
      if (!keeps) problems.push(`${m[1]}${m[2] ? ` ${m[2]} (${m[3]})` : ''} merges the groups of ${groupSeries[0].metric} (keep group: by (group, ...))`);
    }
  }
  for (const m of expr.matchAll(/\b(rate|irate|increase|delta|deriv)\s*\([^\[]*\[([^\]]*)\]/g)) {
    if (m[2] !== '$__rate_interval') problems.push(`${m[1]}() over [${m[2]}], not [$__rate_interval]`);
  }
  return problems;
}

function checkTemplating(d, where, errors) {
  const vars = new Map((d.templating?.list || []).map((v) => [v.name, v]));
  const ds = vars.get('datasource');
  if (!ds || ds.type !== 'datasource' || ds.query !== 'prometheus') {
    errors.push(`${where}: no datasource variable (type datasource, query prometheus)`);
  }
  for (const name of ['job', 'instance', 'group']) {
    const v = vars.get(name);
    if (!v || v.type !== 'query') errors.push(`${where}: no ${name} query variable`);
    else if (!isDatasourceVariable(v.datasource)) errors.push(`${where}: variable ${name} does not use \${datasource}`);
  }
}

function* panelsOf(panels) {
  for (const p of panels || []) {
    yield p;
    yield* panelsOf(p.panels);
  }
}

// Lints one parsed dashboard; returns [errors, queries].
export function lintDashboard(d, file) {
  const errors = [];
  const queries = [];
  for (const key of ['uid', 'title', 'schemaVersion', 'panels']) {
    if (d[key] === undefined) errors.push(`${file}: missing ${key}`);
  }
  if (typeof d.uid === 'string' && !/^[a-z0-9-]{1,40}$/.test(d.uid)) errors.push(`${file}: uid "${d.uid}" is not [a-z0-9-]{1,40}`);
  if (d.id !== null && d.id !== undefined) errors.push(`${file}: id must be null (provisioned dashboards get theirs from Grafana)`);
  for (const key of ['__inputs', '__requires']) if (key in d) errors.push(`${file}: ${key} is for export only`);
  checkTemplating(d, file, errors);
  checkDatasources(d, file, errors);
  const ids = new Set();
  for (const p of panelsOf(d.panels)) {
    const where = `${file}: panel "${p.title ?? p.id}"`;
    if (!PANEL_TYPES.has(p.type)) errors.push(`${where}: unknown panel type ${p.type}`);
    if (ids.has(p.id)) errors.push(`${where}: duplicate id ${p.id}`);
    ids.add(p.id);
    const g = p.gridPos;
    if (!g || !(g.w > 0 && g.h > 0 && g.x >= 0 && g.y >= 0 && g.x + g.w <= 24)) errors.push(`${where}: bad gridPos ${JSON.stringify(g)}`);
    if (p.type === 'row') continue;
    if (!p.title) errors.push(`${where}: no title`);
    if (!p.description) errors.push(`${where}: no description`);
    const unit = p.fieldConfig?.defaults?.unit;
    if (!unit) errors.push(`${where}: no unit`);
    else if (!UNITS.has(unit)) errors.push(`${where}: unknown unit ${unit}`);
    if (!p.targets?.length) errors.push(`${where}: no targets`);
    const refIds = new Set();
    for (const t of p.targets || []) {
      if (refIds.has(t.refId)) errors.push(`${where}: duplicate refId ${t.refId}`);
      refIds.add(t.refId);
      if (!t.expr) { errors.push(`${where}: target ${t.refId} has no expr`); continue; }
      for (const problem of checkExpr(t.expr)) errors.push(`${where}: ${t.refId}: ${problem}`);
      const legend = t.legendFormat ?? '';
      const namesGroup = legend === '' || legend === '__auto' || legend.includes('{{group}}');
      if (!namesGroup && selectors(t.expr).some(({ metric }) => isGroupSeries(metric))) {
        errors.push(`${where}: ${t.refId}: legend "${legend}" does not tell the groups apart ({{group}})`);
      }
      queries.push({ dashboard: d.uid, panel: p.title, type: p.type, unit, refId: t.refId,
        legend: t.legendFormat, expr: t.expr });
    }
  }
  return [errors, queries];
}

// Parses every query with promtool; returns the errors ([] when clean or
// when promtool is missing, with a note on stderr).
export function checkPromql(queries) {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' });
  } catch {
    console.error('dashlint: promtool not installed: PromQL syntax not checked');
    return [];
  }
  const dir = fs.mkdtempSync(path.join(process.env.TEST_TMPDIR || os.tmpdir(), 'dashlint-'));
  const file = path.join(dir, 'queries.yml');
  const rules = queries.map((q, i) => ({ record: `dashlint:query_${i}`, expr: substitute(q.expr) }));
  fs.writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashlint', rules }] }));
  try {
    execFileSync('promtool', ['check', 'rules', file], { stdio: 'pipe' });
    return [];
  } catch (e) {
    const out = `${e.stdout}${e.stderr}`;
    // promtool names the rule index; map it back to the panel.
    return [out.replace(/dashlint:query_(\d+)/g, (_, i) => `"${queries[i].dashboard}/${queries[i].panel}/${queries[i].refId}"`)];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function main(argv) {
  const files = [];
  let printQueries = false, rateInterval = '1m';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--queries') printQueries = true;
    else if (argv[i] === '--rate-interval') rateInterval = argv[++i];
    else if (argv[i].startsWith('--')) { console.error(`dashlint: unknown flag ${argv[i]}`); return 2; }
    else files.push(argv[i]);
  }
  if (!files.length) { console.error('usage: dashlint [--queries [--rate-interval 1m]] DASHBOARD.json...'); return 2; }
  let errors = [], queries = [];
  for (const file of files) {
    let d;
    try { d = JSON.parse(fs.readFileSync(file, 'utf8')); } catch (e) { errors.push(`${file}: ${e.message}`); continue; }
    const [e, q] = lintDashboard(d, path.basename(file));
    errors = errors.concat(e);
    queries = queries.concat(q);
  }
  errors = errors.concat(checkPromql(queries));
  if (printQueries) {
    for (const q of queries) console.log(JSON.stringify({ ...q, expr: substitute(q.expr, rateInterval) }));
  }
  for (const e of errors) console.error(`ERROR ${e}`);
  console.error(`dashlint: ${files.length} dashboards, ${queries.length} queries, ${errors.length} errors`);
  return errors.length ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('dashlint.mjs')) {
  process.exit(main(process.argv.slice(2)));
}
