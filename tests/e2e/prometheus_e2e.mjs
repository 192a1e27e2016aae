// End to end with a real Prometheus: a local craft cluster (craft-planner,
// two craft-agents, eight CPU craft-workers) is scraped every second by
// Debian's `prometheus` with deploy/prometheus/rules.yml loaded. Once
// traffic flows and an apply committed, it checks that
//   - every binary's /metrics passes `promtool check metrics`,
//   - every recording and alerting rule evaluates without error,
//   - every dashboard panel query (from tools/dashlint --queries) returns data,
// and renders one picture per dashboard from query_range results (gnuplot).
//
//   node tests/e2e/prometheus_e2e.mjs --bin DIR --root DIR --out DIR [--settle S]
//
// --bin holds tools/local_cluster/craft-local-cluster (which starts the
// cluster, with the binaries in its runfiles) and tools/craftctl/craftctl
// (forced replans drive the applies);
// --root the source tree (deploy/, tools/dashlint); --out gets the PNGs and
// a summary; --settle S keeps traffic flowing S seconds after the applies
// (default 4; longer pictures). Plain Node (>= 18), no packages. Exits 0 on
// success.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, a, i, all) =>
  (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []));
const BIN = args.bin, ROOT = args.root, OUT = args.out;
const NODES = 2, GPUS = 8, LAYERS = 6, EXPERTS = 32;
const RATE_INTERVAL = '20s';
const started = Date.now();
const log = (...m) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s]`, ...m);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const dir = fs.mkdtempSync('/tmp/craft-e2e-');  // short: Unix socket paths
const children = [];

function start(name, binary, argv) {
  const out = fs.openSync(path.join(dir, `${name}.log`), 'a');
  const child = spawn(binary, argv, { stdio: ['ignore', out, out] });
  child.name = name;
  children.push(child);
  return child;
}

// The key=value lines of `file` once it has `key` (while `child` runs).
async function readyFile(file, key, child, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && child.exitCode === null) {
    if (fs.existsSync(file)) {
      const values = Object.fromEntries(fs.readFileSync(file, 'utf8').trim().split('\n')
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
      if (values[key]) return values;
    }
    await sleep(50);
  }
  throw new Error(`no ${key} in ${file}`);
}

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function getJson(url) {
  const response = await fetch(url);
  return response.json();
}

// The cluster, from craft-local-cluster: every process's metrics port from
// its description (tools/local_cluster/description.h).
async function startCluster() {
  const launcher = start('cluster', `${BIN}/tools/local_cluster/craft-local-cluster`, [
    '--insecure', '--metrics', `--dir=${dir}`, `--nodes=${NODES}`, `--gpus_per_node=${GPUS / NODES}`,
    `--num_layers=${LAYERS}`, `--num_experts=${EXPERTS}`, '--top_k=4', '--expert_bytes=4096',
    '--window_ms=200', '--tokens_per_window=4096', '--skew=8', '--seed=7', '--verify_interval_ms=0',
    // Replans come from craftctl once Prometheus scrapes (see main).
    '--planner_config={loads: {window_horizon: 16}, apply: {timeout_ms: 10000}, '
      + 'replan: {interval_s: 3600, algorithm: craft, budget: 2, gain_threshold: 0.01}}',
    // One flaky GPU: some prepares fail, so applies also abort (agent_nack).
    '--', 'worker3:--fail_prepare_probability=0.5']);
  const cluster = await readyFile(`${dir}/cluster.env`, 'launcher_pid', launcher);
  const targets = { 'craft-planner': [], 'craft-agent': [], 'craft-worker': [] };
  for (const [key, port] of Object.entries(cluster)) {
    const role = key.match(/^(planner|agent|worker)\d*_metrics_port$/)?.[1];
    if (role) targets[`craft-${role}`].push(`127.0.0.1:${port}`);
  }
  return { targets, plannerAddress: cluster.planner_address };
}

async function startPrometheus(targets) {
  fs.copyFileSync(`${ROOT}/deploy/prometheus/rules.yml`, `${dir}/rules.yml`);
  const jobs = Object.entries(targets).map(([job, list]) =>
    `  - job_name: ${job}\n    static_configs:\n      - targets: [${list.map((t) => `'${t}'`).join(', ')}]`);
  fs.writeFileSync(`${dir}/prometheus.yml`, ['global:', '  scrape_interval: 1s',
    '  evaluation_interval: 1s', 'rule_files: [rules.yml]', 'scrape_configs:', ...jobs, ''].join('\n'));
  const port = await freePort();
  start('prometheus', 'prometheus', [`--config.file=${dir}/prometheus.yml`,
    `--storage.tsdb.path=${dir}/tsdb`, `--web.listen-address=127.0.0.1:${port}`]);
  return `http://127.0.0.1:${port}`;
}

async function query(prom, expr) {
  const body = await getJson(`${prom}/api/v1/query?query=${encodeURIComponent(expr)}`);
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
  return body.data.result;
}

async function waitFor(what, predicate, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try { if (await predicate()) { log(what); return; } } catch { /* not yet */ }
    await sleep(500);
  }
  throw new Error(`timed out waiting for: ${what}`);
}

function promtoolCheck(text) {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return r.status === 0 ? '' : `${r.stdout}${r.stderr}`;
}

// ---- Pictures ----------------------------------------------------------

const UNIT_LABEL = { percentunit: 'ratio', bytes: 'bytes', Bps: 'bytes / s', cps: 'per second',
  s: 'seconds', short: '', none: '' };

function legendOf(metric, legend) {
  if (!legend || legend === '__auto') {
    return Object.entries(metric).filter(([k]) => k !== '__name__').map(([k, v]) => `${k}=${v}`).join(' ') || metric.__name__ || 'value';
  }
  return legend.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, k) => metric[k] ?? '');
}

const gq = (s) => `"${String(s).replace(/["\\]/g, ' ').replace(/_/g, '\\\\_')}"`;

async function renderDashboards(prom, queries, startS, endS) {
  if (spawnSync('gnuplot', ['--version']).status !== 0) {
    log('gnuplot not installed: no pictures');
    return [];
  }
  const byDashboard = new Map();
  for (const q of queries) {
    if (!byDashboard.has(q.dashboard)) byDashboard.set(q.dashboard, new Map());
    const panels = byDashboard.get(q.dashboard);
    if (!panels.has(q.panel)) panels.set(q.panel, { ...q, targets: [] });
    panels.get(q.panel).targets.push(q);
  }
  const pictures = [];
  const step = Math.max(1, Math.round((endS - startS) / 200));
  for (const [uid, panels] of byDashboard) {
    const plots = [];
    let k = 0;
    for (const panel of panels.values()) {
      const series = [];
      for (const t of panel.targets) {
        const body = await getJson(`${prom}/api/v1/query_range?query=${encodeURIComponent(t.expr)}&start=${startS}&end=${endS}&step=${step}`);
        for (const s of body.data?.result || []) series.push({ name: legendOf(s.metric, t.legend), values: s.values });
      }
      const data = path.join(dir, `${uid}-${k++}.dat`);
      const unit = UNIT_LABEL[panel.unit] ?? panel.unit;
      let cmds = [`set title ${gq(`${panel.panel}  [${panel.type}]`)}`, `set ylabel ${gq(unit)}`,
        'set xlabel "seconds"', 'unset logscale', 'set key outside right top font ",8"',
        'set style fill solid 0.6', 'set grid', 'unset colorbox', 'set autoscale'];
      if (panel.type === 'heatmap') {
        series.sort((a, b) => Number(a.name) - Number(b.name));
        const lines = [];
        const times = [...new Set(series.flatMap((s) => s.values.map((v) => v[0])))].sort((a, b) => a - b);
        for (const ts of times) {
          series.forEach((s, row) => {
            const v = s.values.find((x) => x[0] === ts);
            lines.push(`${ts - startS} ${row} ${v ? v[1] : 'NaN'}`);
          });
          lines.push('');
        }
        fs.writeFileSync(data, lines.join('\n'));
        cmds.push('set ylabel "layer"', 'set cbrange [0:1]', 'set colorbox', 'set xrange [0:*]',
          'set palette defined (0 "#d73027", 0.5 "#fee08b", 1 "#1a9850")',
          `set yrange [-0.5:${series.length - 0.5}]`, `plot ${gq(data)} using 1:2:3 with image notitle`);
      } else if (panel.type === 'bargauge') {
        series.sort((a, b) => (Number(a.name) - Number(b.name)) || a.name.localeCompare(b.name));
        const last = series.map((s, i) => `${i} ${s.values.at(-1)?.[1] ?? 'NaN'} ${s.name}`);
        fs.writeFileSync(data, last.join('\n') + '\n');
        cmds.push('set xlabel ""', 'set boxwidth 0.7', 'set xtics rotate by 0 font ",8"', 'set yrange [0:*]',
          `plot ${gq(data)} using 1:2:xtic(3) with boxes lc rgb "#3274d9" notitle`);
      } else {
        const blocks = series.map((s) => s.values.map(([ts, v]) => `${ts - startS} ${v}`).join('\n'));
        fs.writeFileSync(data, blocks.join('\n\n\n') + '\n');
        cmds.push(`plot ${series.length ? series.map((s, i) => `${gq(data)} index ${i} using 1:2 with lines lw 2 title ${gq(s.name.slice(0, 28))}`).join(', ') : '1/0 notitle'}`);
      }
      plots.push(cmds.join('\n'));
    }
    const cols = 2, rows = Math.ceil(plots.length / cols);
    const png = path.join(OUT, `${uid}.png`);
    const script = [`set terminal pngcairo size 1400,${300 * rows} font ",9"`, `set output ${gq(png).replace(/\\\\_/g, '_')}`,
      `set multiplot layout ${rows},${cols} title ${gq(`craft dashboard ${uid}: local e2e cluster, ${GPUS} GPUs (CPU workers), real Prometheus data`)}`,
      ...plots, 'unset multiplot', ''].join('\n');
    fs.writeFileSync(path.join(dir, `${uid}.gp`), script);
    const r = spawnSync('gnuplot', [path.join(dir, `${uid}.gp`)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`gnuplot ${uid}: ${r.stderr}`);
    pictures.push(png);
  }
  return pictures;
}

// ---- Main --------------------------------------------------------------

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const problems = [];
  const { targets, plannerAddress } = await startCluster();
  log('cluster up:', JSON.stringify(targets));
  const prom = await startPrometheus(targets);
  const all = Object.values(targets).flat().length;
  await waitFor('every target scraped and up', async () =>
    (await query(prom, 'up == 1')).length === all, 40000);
  const firstScrape = Math.floor(Date.now() / 1000) - 1;

  // Real binaries' exposition passes promtool.
  for (const [job, list] of Object.entries(targets)) {
    const text = await (await fetch(`http://${list[0]}/metrics`)).text();
    const lint = promtoolCheck(text);
    if (lint) problems.push(`promtool check metrics (${job}): ${lint}`);
  }

  // Forced replans (the planner's own interval is an hour), 2 s apart, until
  // an apply committed and one aborted: every apply panel then has history.
  const applies = async (result) => Number((await query(prom,
    `sum(craft_planner_applies_total{result="${result}"})`))[0]?.value[1] ?? 0);
  await sleep(3000);  // baseline samples before the first apply
  for (let i = 0; i < 8; i++) {
    const r = spawnSync(`${BIN}/tools/craftctl/craftctl`, ['replan', '--force', '--insecure', '--planner', plannerAddress], { encoding: 'utf8' });
    log(`craftctl replan --force: ${(r.stdout || r.stderr).trim().slice(0, 100)}`);
    await sleep(2000);
    if (i >= 2 && (await applies('committed')) >= 1 && (await applies('aborted')) >= 1) break;
  }
  await waitFor('an apply committed', async () => (await applies('committed')) >= 1, 10000);
  await waitFor('every worker serves the committed layout', async () =>
    (await query(prom, 'craft_worker_serving_layout_seq > 0')).length === GPUS, 20000);
  // Rates over [20s] see the applies and the traffic after them; --settle
  // makes the pictures longer.
  await sleep(1000 * Number(args.settle ?? 4));

  // Every rule evaluates.
  const rules = await getJson(`${prom}/api/v1/rules`);
  for (const group of rules.data.groups) {
    for (const rule of group.rules) {
      if (rule.health !== 'ok') problems.push(`rule ${rule.name}: ${rule.health} ${rule.lastError || ''}`);
    }
  }

  // Every dashboard query returns data.
  const lint = spawnSync('node', [`${ROOT}/tools/dashlint/dashlint.mjs`, '--queries', '--rate-interval',
    RATE_INTERVAL, ...fs.readdirSync(`${ROOT}/deploy/grafana/dashboards`).map((f) => `${ROOT}/deploy/grafana/dashboards/${f}`)],
  { encoding: 'utf8' });
  if (lint.status !== 0) problems.push(`dashlint: ${lint.stderr}`);
  const queries = lint.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const summary = [];
  for (const q of queries) {
    const result = await query(prom, q.expr).catch((e) => { problems.push(`${q.dashboard}/${q.panel}: ${e.message}`); return []; });
    summary.push(`${result.length ? 'ok  ' : 'NONE'} ${String(result.length).padStart(3)} series  ${q.dashboard} / ${q.panel} / ${q.refId}`);
    if (!result.length) problems.push(`no data: ${q.dashboard} / ${q.panel} / ${q.refId}: ${q.expr}`);
  }
  log(`${queries.length - problems.filter((p) => p.startsWith('no data')).length} of ${queries.length} panel queries returned data`);
  fs.writeFileSync(path.join(OUT, 'queries.txt'), summary.join('\n') + '\n');

  const pictures = await renderDashboards(prom, queries, firstScrape, Math.floor(Date.now() / 1000));
  log('pictures:', pictures.map((p) => path.basename(p)).join(' '));
  return problems;
}

// SIGTERM to the launcher (which stops the cluster, SIGKILL after 10 s) and
// to Prometheus.
async function stopAll() {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  const deadline = Date.now() + 15000;
  while (children.some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < deadline) await sleep(100);
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

let problems;
try {
  problems = await main();
} catch (e) {
  problems = [e.stack || String(e)];
}
await stopAll();
for (const p of problems) console.log(`PROBLEM: ${p}`);
if (problems.length) {
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.log')).slice(0, 4)) {
    console.log(`--- ${f} (tail)\n${fs.readFileSync(path.join(dir, f), 'utf8').split('\n').slice(-15).join('\n')}`);
  }
} else {
  fs.rmSync(dir, { recursive: true, force: true });
}
log(problems.length ? 'FAIL' : 'PASS');
process.exit(problems.length ? 1 : 0);
