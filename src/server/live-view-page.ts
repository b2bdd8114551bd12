// The live view's single HTML page: continuous batching drawn as it happens. Each row is a request,
// each column a step of the engine, flowing left to right; a cell is coloured by what the request
// did in that step (prefill chunk, decode, or waiting), and a bar marks where it finished; running
// requests come first, then the queue, then finished ones. Above it:
// queue length, running requests, KV-cache usage and throughput. Everything is inline (no CDN), and
// the data is polled from /v1/stepwise/steps. With an API key, open the page as /#key=YOUR_KEY.

export const LIVE_VIEW_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Stepwise live batch</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  :root { --bg: #0f1117; --fg: #e6e6e6; --dim: #8a8f98; --prefill: #4f8cff; --decode: #38c172; --done: #e3342f; --wait: #5a5f6a; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
  header { display: flex; gap: 24px; align-items: baseline; padding: 12px 16px; flex-wrap: wrap; border-bottom: 1px solid #222; }
  h1 { font-size: 16px; margin: 0; }
  .stat { display: flex; flex-direction: column; min-width: 90px; }
  .stat b { font-size: 20px; font-variant-numeric: tabular-nums; }
  .stat span { color: var(--dim); font-size: 12px; }
  .kv { width: 140px; height: 10px; background: #222; border-radius: 5px; overflow: hidden; margin-top: 6px; }
  .kv div { height: 100%; background: var(--prefill); width: 0; transition: width .2s; }
  #legend { padding: 6px 16px; color: var(--dim); font-size: 12px; }
  #legend i { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; vertical-align: middle; }
  #wrap { padding: 8px 16px; }
  canvas { width: 100%; background: #141821; border-radius: 6px; }
  #status { color: var(--dim); font-size: 12px; padding: 0 16px 12px; }
  table { margin: 0 16px 16px; border-collapse: collapse; font-size: 12px; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 2px 12px 2px 0; }
  th { color: var(--dim); font-weight: normal; }
  td.running { color: var(--decode); } td.waiting { color: var(--dim); } td.finished { color: var(--done); }
</style>
</head>
<body>
<header>
  <h1>Stepwise — <span id="model">…</span></h1>
  <div class="stat"><b id="running">0</b><span>running</span></div>
  <div class="stat"><b id="waiting">0</b><span>waiting (queue)</span></div>
  <div class="stat"><b id="kvtext">0%</b><span>KV cache used</span><div class="kv"><div id="kvbar"></div></div></div>
  <div class="stat"><b id="tps">0</b><span>tokens/s (generated)</span></div>
  <div class="stat"><b id="steprate">0</b><span>steps/s</span></div>
  <div class="stat" id="specstat" hidden><b id="spec">0%</b><span>proposals accepted</span></div>
  <div class="stat"><b id="step">0</b><span>step</span></div>
</header>
<div id="legend">
  rows: requests · columns: engine steps (newest right)
  <i style="background:var(--prefill)"></i>prefill
  <i style="background:var(--decode)"></i>decode
  <i style="background:var(--wait)"></i>waiting
  <i style="background:var(--done)"></i>finished
</div>
<div id="wrap"><canvas id="grid" height="360"></canvas></div>
<div id="status">connecting…</div>
<table id="requests">
  <thead><tr><th>request</th><th>state</th><th>arrived at step</th><th>steps run (in view)</th></tr></thead>
  <tbody></tbody>
</table>
<script>
(() => {
  const MAX_STEPS = 160, MAX_ROWS = 48, POLL_MS = 250;
  const key = new URLSearchParams(location.hash.slice(1)).get('key');
  const headers = key ? { authorization: 'Bearer ' + key } : {};
  const $ = (id) => document.getElementById(id);
  const css = getComputedStyle(document.documentElement);
  const color = (name) => css.getPropertyValue('--' + name).trim();
  let steps = [];          // newest last
  let requests = [];       // recent requests: { id, arrivedStep, finishedStep?, finishReason? }
  let after = -1;
  let stats = null;

  function draw() {
    const canvas = $('grid');
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = w * dpr; canvas.height = h * dpr;
    const g = canvas.getContext('2d');
    g.scale(dpr, dpr);
    g.clearRect(0, 0, w, h);
    if (!steps.length) return;
    const last = steps[steps.length - 1].step;
    const first = last - MAX_STEPS + 1;
    const shown = steps.filter((s) => s.step >= first);
    // Which steps each request ran in, inside the window.
    const ran = new Map();
    for (const s of shown) for (const r of s.rows) {
      if (!ran.has(r.id)) ran.set(r.id, new Map());
      ran.get(r.id).set(s.step, r.phase);
    }
    // Rows: the server's recent requests (they know when they arrived and ended), then any other
    // sequence the trace shows (requests added through the library directly).
    const info = new Map(requests.map((r) => [r.id, r]));
    const ids = requests.filter((r) => r.finishedStep === undefined || r.finishedStep >= first || ran.has(r.id)).map((r) => r.id);
    for (const id of ran.keys()) if (!info.has(id)) ids.push(id);
    // Running requests first, then the queue, then the finished (newest first): what the batch is
    // doing now leads, as in the seed's diagram.
    const now = new Set(steps[steps.length - 1].rows.map((r) => r.id));
    const stateOf = (id) => (now.has(id) ? 'running' : info.get(id) && info.get(id).finishedStep !== undefined ? 'finished' : 'waiting');
    const rank = { running: 0, waiting: 1, finished: 2 };
    const order = new Map(ids.map((id, i) => [id, i]));
    const sorted = ids.slice(-MAX_ROWS).sort((a, b) => {
      const ra = rank[stateOf(a)], rb = rank[stateOf(b)];
      if (ra !== rb) return ra - rb;
      return ra === 2 ? order.get(b) - order.get(a) : order.get(a) - order.get(b);
    });
    const rows = sorted;
    const labelW = 124, cw = Math.max(2, (w - labelW - 8) / MAX_STEPS);
    const rh = Math.max(4, Math.min(18, (h - 8) / Math.max(rows.length, 1)));
    const x = (step) => labelW + (step - first) * cw;
    g.font = '11px system-ui, sans-serif';
    rows.forEach((id, i) => {
      const y = 4 + i * rh, steps = ran.get(id) || new Map(), r = info.get(id);
      g.fillStyle = color('dim');
      g.fillText(id.length > 16 ? '\u2026' + id.slice(-14) : id, 4, y + rh * 0.75);
      // Waiting: from arrival until it ends (or now), wherever it did not run.
      if (r) {
        const end = r.finishedStep !== undefined ? r.finishedStep : last;
        g.fillStyle = color('wait');
        for (let s = Math.max(first, r.arrivedStep); s <= end; s++) if (!steps.has(s)) g.fillRect(x(s), y + rh * 0.35, Math.max(1, cw - 1), rh * 0.3);
      }
      for (const [s, phase] of steps) {
        g.fillStyle = color(phase);
        g.fillRect(x(s), y, Math.max(1, cw - 1), rh - 2);
      }
      if (r && r.finishedStep !== undefined && r.finishedStep >= first) {
        g.fillStyle = color('done');
        g.fillRect(x(r.finishedStep) + cw - 3, y, 3, rh - 2);
      }
    });
    // The same rows as a table, in the same order: readable figures, and what a screen reader gets.
    const body = document.querySelector('#requests tbody');
    body.replaceChildren(...rows.slice(0, 20).map((id) => {
      const r = info.get(id);
      const state = stateOf(id);
      const tr = document.createElement('tr');
      const cells = [id, state + (state === 'finished' && r.finishReason ? ' (' + r.finishReason + ')' : ''), r ? r.arrivedStep : '', (ran.get(id) || new Map()).size];
      cells.forEach((text, i) => {
        const td = document.createElement('td');
        td.textContent = String(text);
        if (i === 1) td.className = state;
        tr.appendChild(td);
      });
      tr.dataset.state = state;
      return tr;
    }));
  }

  function update() {
    if (stats) {
      $('running').textContent = stats.running;
      $('waiting').textContent = stats.waiting;
      const pct = Math.round(stats.kvUsage * 1000) / 10;
      $('kvtext').textContent = pct + '%';
      $('kvbar').style.width = Math.min(100, pct) + '%';
    }
    const recent = steps.slice(-40);
    if (recent.length >= 2) {
      const span = (recent[recent.length - 1].t - recent[0].t) / 1000;
      const gen = recent.slice(1).reduce((a, s) => a + s.generated, 0);
      $('tps').textContent = span > 0 ? Math.round(gen / span) : 0;
      $('steprate').textContent = span > 0 ? Math.round((recent.length - 1) / span) : 0;
      const proposed = recent.reduce((a, s) => a + (s.proposed || 0), 0);
      if (proposed > 0) {
        $('specstat').hidden = false;
        $('spec').textContent = Math.round((100 * recent.reduce((a, s) => a + (s.accepted || 0), 0)) / proposed) + '% of ' + proposed;
      }
    }
    if (steps.length) $('step').textContent = steps[steps.length - 1].step;
    draw();
  }

  async function poll() {
    try {
      const res = await fetch('/v1/stepwise/steps?after=' + after, { headers, cache: 'no-store' });
      if (!res.ok) throw new Error('HTTP ' + res.status + (res.status === 401 ? ' (open this page as /#key=YOUR_API_KEY)' : ''));
      const data = await res.json();
      $('model').textContent = data.model;
      stats = data.stats;
      requests = data.requests;
      if (data.steps.length) {
        // A restarted engine numbers steps from 0 again: start over.
        if (data.steps[0].step <= after - MAX_STEPS) steps = [];
        steps = steps.concat(data.steps).slice(-MAX_STEPS * 2);
        after = data.steps[data.steps.length - 1].step;
      }
      $('status').textContent = 'live · ' + new Date().toLocaleTimeString();
      document.body.dataset.running = String(stats ? stats.running : 0);
      update();
    } catch (e) {
      $('status').textContent = 'disconnected: ' + e.message;
    }
    setTimeout(poll, POLL_MS);
  }
  window.addEventListener('resize', draw);
  poll();
})();
</script>
</body>
</html>
`;
