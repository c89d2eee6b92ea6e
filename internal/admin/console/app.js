// fanout console: plain JavaScript over the admin API (/v1). The token
// stays in this tab's sessionStorage and goes out as a bearer token.
"use strict";

const state = { connector: "", cursor: "", lastDryRun: null, lastSelection: "", chartsLoaded: false, traceSeq: 0 };

function $(id) { return document.getElementById(id); }

function token() { return sessionStorage.getItem("fanout-token") || ""; }

function setStatus(msg, isError) {
  const s = $("status");
  s.textContent = msg;
  s.className = isError ? "error" : "";
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  const t = token();
  if (t) headers["Authorization"] = "Bearer " + t;
  const opts = { method, headers };
  if (method === "POST") {
    headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body || {});
  }
  const resp = await fetch(path, opts);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) {
    const msg = (data && data.error) ? data.error : resp.status + " " + resp.statusText;
    const err = new Error(resp.status + ": " + msg);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function button(label, cls, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

async function refreshConnectors() {
  try {
    const data = await api("GET", "/v1/connectors");
    const tbody = $("connectors");
    tbody.replaceChildren();
    for (const c of data.connectors) {
      const tr = document.createElement("tr");
      tr.dataset.connector = c.name;
      cell(tr, c.name);
      cell(tr, c.type);
      cell(tr, c.instances, "num");
      cell(tr, c.breaker, "breaker breaker-" + c.breaker);
      cell(tr, c.paused ? "paused" : "no", c.paused ? "paused" : "");
      cell(tr, c.in_flight, "num");
      cell(tr, c.held, "num");
      cell(tr, (c.rate || 0).toFixed(1), "num");
      cell(tr, c.lag_total, "num lag");
      cell(tr, c.dead_letters, "num dead-letters");
      cell(tr, c.usage ? c.usage.used + " / " + c.usage.limit : "");
      cell(tr, c.last_error || "", "error");
      const td = cell(tr, "");
      if (c.paused) {
        td.appendChild(button("Resume", "resume", () => setPaused(c.name, false)));
      } else {
        td.appendChild(button("Pause", "pause", () => setPaused(c.name, true)));
      }
      td.appendChild(button("Dead letters", "show-dlq", () => openDLQ(c.name)));
      tbody.appendChild(tr);
    }
    $("refreshed").textContent = "updated " + new Date().toLocaleTimeString();
    if ($("status").className === "error") setStatus("", false);
  } catch (e) {
    setStatus(e.status === 401 || e.status === 403 ? "Enter an admin token with the read scope (" + e.message + ")" : e.message, true);
  }
}

// fmtMS formats a latency in milliseconds, "-" without one.
function fmtMS(v) {
  if (v === null || v === undefined) return "-";
  return v >= 100 ? Math.round(v) + " ms" : v.toFixed(1) + " ms";
}

function fmtAge(s) {
  if (!s) return "0 s";
  if (s < 120) return s.toFixed(0) + " s";
  if (s < 7200) return (s / 60).toFixed(0) + " min";
  return (s / 3600).toFixed(1) + " h";
}

// stageRow adds one row of the pipeline view; every value goes in as
// text.
function stageRow(tbody, stage, what, stateText, stateClass, figures, problems, connector) {
  const tr = document.createElement("tr");
  tr.className = "stage";
  tr.dataset.stage = stage;
  if (connector) tr.dataset.connector = connector;
  const th = document.createElement("th");
  th.textContent = stage;
  tr.appendChild(th);
  cell(tr, what);
  cell(tr, stateText, "state " + (stateClass || ""));
  cell(tr, figures.filter(Boolean).join(" \u00b7 "), "figures");
  cell(tr, (problems || []).join("; "), "error");
  tbody.appendChild(tr);
}

async function refreshPipeline() {
  let p;
  try {
    p = await api("GET", "/v1/pipeline");
  } catch (e) { return; } // refreshConnectors reports the error
  const tbody = $("pipeline");
  tbody.replaceChildren();
  const lagParts = p.source.lag.map(l => "p" + l.partition + ": " + l.lag);
  stageRow(tbody, "source", p.source.topic + " (group " + p.source.group + ")", p.source.lag_total > 0 ? "behind" : "caught up", "",
    ["lag " + p.source.lag_total, lagParts.length ? "per partition " + lagParts.join(", ") : "no partitions read yet"], p.source.errors);
  const pr = p.projector;
  stageRow(tbody, "projector", pr.instances + " instance(s), " + pr.assigned_partitions + " partition(s)", pr.instances > 0 ? "running" : "no live instance", pr.instances > 0 ? "" : "warn",
    [pr.rate.toFixed(1) + " records/s", "projected " + pr.projected, "stale " + pr.stale, "duplicate " + pr.duplicate, "poison " + pr.poison, pr.store_errors ? "store errors " + pr.store_errors : ""], pr.errors);
  stageRow(tbody, "outbox", "entries not yet published", p.outbox.backlog > 0 ? "backlog" : "empty", "",
    ["backlog " + p.outbox.backlog, "oldest " + fmtAge(p.outbox.oldest_age_seconds)], p.outbox.errors);
  const r = p.relay;
  stageRow(tbody, "relay", "lease " + r.lease, r.holder ? (r.stale ? "stale (no publish for 30 s)" : "leading") : "no leader seen", r.stale ? "warn" : "",
    [r.holder ? "holder " + r.holder : "", "token " + r.token, r.held_total ? "held " + r.held_total : "", r.dead_lettered_total ? "dead-lettered " + r.dead_lettered_total : ""], r.errors);
  for (const c of p.connectors) {
    let st = "breaker " + c.breaker;
    let cls = "breaker breaker-" + c.breaker;
    if (c.halted) { st = "HALTED (" + c.halted + "), " + st; cls += " halted"; }
    if (c.paused) { st = "PAUSED, " + st; cls += " paused"; }
    const classes = Object.entries(c.dead_letters_by_class || {}).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n);
    stageRow(tbody, "connector", c.name + " (" + c.type + ", " + c.instances + " worker(s))", st, cls, [
      c.rate.toFixed(1) + " deliveries/s",
      "p50 " + fmtMS(c.latency_p50_ms) + ", p99 " + fmtMS(c.latency_p99_ms) + " (last " + Math.round(c.latency_window_seconds) + " s)",
      "in flight " + c.in_flight, "held " + c.held, "lag " + c.lag,
      "dead letters " + c.dead_letters + (classes.length ? " (since start: " + classes.join(", ") + ")" : ""),
    ], c.errors, c.name);
  }
  $("pipeline-refreshed").textContent = "updated " + new Date().toLocaleTimeString();
  ensureCharts(p.connectors.map(c => c.name));
}

// ensureCharts keeps one chart box per connector.
function ensureCharts(names) {
  const box = $("charts");
  for (const n of names) {
    if (box.querySelector('div.chart[data-connector="' + CSS.escape(n) + '"]')) continue;
    const div = document.createElement("div");
    div.className = "chart";
    div.dataset.connector = n;
    const h = document.createElement("h3");
    h.textContent = n;
    div.appendChild(h);
    box.appendChild(div);
  }
  if (!state.chartsLoaded) { state.chartsLoaded = true; refreshCharts(); }
}

// refreshCharts fetches each connector's chart, an SVG the admin draws,
// and puts it in the page (fetched with the token, so no <img>).
async function refreshCharts() {
  const minutes = $("chart-window").value;
  for (const div of document.querySelectorAll("#charts div.chart")) {
    const name = div.dataset.connector;
    const headers = {};
    if (token()) headers["Authorization"] = "Bearer " + token();
    try {
      const resp = await fetch("/v1/pipeline/charts/" + encodeURIComponent(name) + "?minutes=" + minutes, { headers });
      if (!resp.ok) continue;
      const doc = new DOMParser().parseFromString(await resp.text(), "image/svg+xml");
      const svg = doc.documentElement;
      if (svg.nodeName !== "svg") continue;
      const old = div.querySelector("svg");
      const node = document.importNode(svg, true);
      if (old) old.replaceWith(node); else div.appendChild(node);
    } catch (e) { /* the next refresh tries again */ }
  }
}

async function setPaused(name, paused) {
  try {
    await api("POST", "/v1/connectors/" + encodeURIComponent(name) + (paused ? "/pause" : "/resume"), {});
    setStatus(name + (paused ? " paused" : " resumed") + "; workers follow within about 2 s", false);
    refreshConnectors();
  } catch (e) { setStatus(e.message, true); }
}

function filterParams() {
  const p = new URLSearchParams();
  if ($("f-key").value.trim()) p.set("key", $("f-key").value.trim());
  if ($("f-class").value) p.set("error_class", $("f-class").value);
  if ($("f-status").value.trim()) p.set("http_status", $("f-status").value.trim());
  if ($("f-reason").value.trim()) p.set("reason", $("f-reason").value.trim());
  if ($("f-since").value.trim()) p.set("since", $("f-since").value.trim());
  if ($("f-until").value.trim()) p.set("until", $("f-until").value.trim());
  return p;
}

function filterObject() {
  const f = {};
  if ($("f-key").value.trim()) f.key = $("f-key").value.trim();
  if ($("f-class").value) f.error_class = $("f-class").value;
  if ($("f-status").value.trim()) f.http_status = parseInt($("f-status").value.trim(), 10);
  if ($("f-reason").value.trim()) f.reason = $("f-reason").value.trim();
  if ($("f-since").value.trim()) f.since = $("f-since").value.trim();
  if ($("f-until").value.trim()) f.until = $("f-until").value.trim();
  return f;
}

function openDLQ(name) {
  state.connector = name;
  $("dlq-title").textContent = name;
  $("dlq-section").hidden = false;
  resetReplay();
  loadDLQ(false);
}

async function loadDLQ(more) {
  const p = filterParams();
  p.set("limit", "100");
  if (more && state.cursor) p.set("cursor", state.cursor);
  try {
    const page = await api("GET", "/v1/connectors/" + encodeURIComponent(state.connector) + "/dead-letters?" + p.toString());
    const tbody = $("dlq");
    if (!more) tbody.replaceChildren();
    for (const d of page.items) {
      const tr = document.createElement("tr");
      tr.className = "dead-letter";
      tr.dataset.partition = d.partition;
      tr.dataset.offset = d.offset;
      const td0 = cell(tr, "");
      const cb = document.createElement("input");
      cb.type = "checkbox";
      cb.className = "pick";
      cb.dataset.partition = d.partition;
      cb.dataset.offset = d.offset;
      cb.addEventListener("change", resetReplay);
      td0.appendChild(cb);
      cell(tr, d.partition + "/" + d.offset);
      const kc = cell(tr, d.key, "key");
      if (d.projection) kc.title = "projection " + d.projection;
      cell(tr, d.id);
      cell(tr, d.version, "num");
      cell(tr, d.error_class);
      cell(tr, d.http_status, "num");
      cell(tr, d.error || "", "error dlq-error");
      cell(tr, d.attempts, "num");
      cell(tr, d.last_failure || "");
      cell(tr, d.replay ? "yes (" + d.replay.by + ")" : "", "replayed");
      const td = cell(tr, "");
      td.appendChild(button("Inspect", "inspect", () => inspect(d.partition, d.offset)));
      if (d.id) {
        td.appendChild(button("Trace", "trace", () => {
          $("trace-id").value = d.id;
          $("trace-kind").value = "event";
          traceSearch();
          $("trace-section").scrollIntoView();
        }));
      }
      tbody.appendChild(tr);
    }
    state.cursor = page.next_cursor;
    $("dlq-more").hidden = !page.more;
    $("dlq-count").textContent = $("dlq").children.length + " shown";
  } catch (e) { setStatus(e.message, true); }
}

async function inspect(p, o) {
  try {
    const d = await api("GET", "/v1/connectors/" + encodeURIComponent(state.connector) + "/dead-letters/" + p + "/" + o);
    $("detail-summary").textContent = "Dead letter " + d.partition + "/" + d.offset + " of " + state.connector +
      ": key " + (d.projection ? d.projection + ":" : "") + d.key + ", event " + (d.id || "(no id)") + ", version " + d.version + ", " + d.attempts + " attempt(s)" +
      (d.source ? ", read from " + d.source.topic + "/" + d.source.partition + "@" + d.source.offset : "");
    const err = [d.error_class + (d.http_status ? ", HTTP " + d.http_status : ", no HTTP response") + (d.error_code ? ", " + d.error_code : "")];
    if (d.error) err.push(d.error);
    if (d.first_failure) err.push("first failure " + d.first_failure + ", last " + (d.last_failure || "?"));
    $("detail-error").textContent = err.join("\n");
    $("detail-record").textContent = d.payload !== undefined ? JSON.stringify(d.payload, null, 2) : (d.payload_text || "(no value)");
    $("detail").textContent = JSON.stringify(d, null, 2);
  } catch (e) { setStatus(e.message, true); }
}

function selection() {
  const picked = Array.from(document.querySelectorAll("#dlq input.pick:checked"));
  const req = {};
  if (picked.length > 0) {
    req.records = picked.map(cb => ({ partition: parseInt(cb.dataset.partition, 10), offset: parseInt(cb.dataset.offset, 10) }));
  } else {
    req.filter = filterObject();
  }
  req.force = $("force").checked;
  const rate = parseFloat($("rate").value);
  if (rate > 0) req.rate = rate;
  return req;
}

function resetReplay() {
  state.lastDryRun = null;
  state.lastSelection = "";
  $("confirm-replay").disabled = true;
  $("confirm-replay").textContent = "Replay";
}

function showReplay(r) {
  const c = r.counts;
  const skipped = Object.entries(c.skipped_by_reason || {}).map(([k, v]) => k + ": " + v).join(", ");
  let line;
  if (r.dry_run) {
    line = "Dry run " + r.replay_id + ": " + c.replay + " of " + c.selected + " would be replayed";
  } else {
    line = "Replay " + r.replay_id + ": " + c.replayed + " of " + c.selected + " replayed to " + r.retry_topic;
    if (c.failed) line += ", " + c.failed + " failed";
    if (c.not_started) line += ", " + c.not_started + " not started";
  }
  if (c.skipped) line += "; skipped " + c.skipped + " (" + skipped + ")";
  if (r.truncated) line += "; the filter matched more than the limit";
  $("replay-summary").textContent = line;
  $("replay-result").textContent = JSON.stringify(r.items, null, 2);
}

async function dryRun() {
  if (!state.connector) return;
  const req = selection();
  req.dry_run = true;
  try {
    const r = await api("POST", "/v1/connectors/" + encodeURIComponent(state.connector) + "/replay", req);
    showReplay(r);
    delete req.dry_run;
    state.lastDryRun = r;
    state.lastSelection = JSON.stringify(req);
    const btn = $("confirm-replay");
    btn.disabled = r.counts.replay === 0;
    btn.textContent = "Replay " + r.counts.replay + " record(s)";
  } catch (e) { setStatus(e.message, true); }
}

async function confirmReplay() {
  const req = selection();
  if (JSON.stringify(req) !== state.lastSelection) {
    resetReplay();
    setStatus("The selection changed since the dry run: run it again first.", true);
    return;
  }
  $("confirm-replay").disabled = true;
  try {
    const r = await api("POST", "/v1/connectors/" + encodeURIComponent(state.connector) + "/replay", req);
    showReplay(r);
    setStatus("replay " + r.replay_id + " done: " + r.counts.replayed + " replayed", false);
    resetReplay();
    loadDLQ(false);
  } catch (e) { setStatus(e.message, true); }
}

// traceDetail is the detail column of one trace entry (as fanout trace).
function traceDetail(e) {
  const parts = [];
  if (e.projection) parts.push("projection " + e.projection);
  if (e.topic) parts.push(e.topic + "/" + e.partition + "@" + e.offset);
  if (e.token) parts.push("lease token " + e.token);
  if (e.attempt && (e.what === "attempt" || e.what === "replayed")) parts.push("attempt " + e.attempt);
  if (e.what === "attempt") parts.push((e.duration_ms || 0).toFixed(1) + " ms");
  if (e.status) parts.push("HTTP " + e.status);
  if (e.class) parts.push(e.class);
  if (e.code) parts.push(e.code);
  if (e.breaker && e.breaker !== "closed") parts.push("breaker " + e.breaker);
  if (e.by) parts.push("by " + e.by);
  if (e.reason) parts.push(e.reason);
  if (e.error) parts.push("error: " + e.error);
  return parts.join(", ");
}

async function traceSearch() {
  const id = $("trace-id").value.trim();
  if (!id) return;
  const kind = $("trace-kind").value;
  const path = kind === "aggregate"
    ? "/v1/aggregates/" + encodeURIComponent(id) + "/events"
    : "/v1/events/" + encodeURIComponent(id);
  // Only the latest search shows: an earlier one that answers later
  // would add its rows to the new ones.
  const seq = ++state.traceSeq;
  const tbody = $("trace");
  try {
    const data = await api("GET", path);
    if (seq !== state.traceSeq) return;
    tbody.replaceChildren();
    $("trace-table").hidden = true;
    const events = kind === "aggregate" ? data.events : [data];
    const lines = [];
    for (const ev of events) {
      const outcomes = ev.connectors.map(c => c.connector + ": " + c.outcome.replace("_", " ") + " after " + c.attempts + " attempt(s)");
      lines.push(ev.event + " (aggregate " + (ev.aggregate || "?") + ", version " + (ev.version || "?") + ")" +
        (outcomes.length ? ": " + outcomes.join("; ") : ": no delivery recorded yet"));
      for (const e of ev.entries) {
        const tr = document.createElement("tr");
        tr.className = "trace-entry" + (e.error ? " failed" : "");
        cell(tr, e.at.replace("T", " ").replace("Z", ""));
        cell(tr, e.event);
        cell(tr, e.stage);
        cell(tr, e.error ? e.what + " (failed)" : e.what, "outcome-" + e.what);
        cell(tr, e.connector || "");
        cell(tr, traceDetail(e));
        tbody.appendChild(tr);
      }
    }
    if (kind === "aggregate" && data.truncated) lines.push("older entries left out");
    $("trace-summary").textContent = lines.join(" | ");
    $("trace-table").hidden = false;
  } catch (e) {
    if (seq !== state.traceSeq) return;
    tbody.replaceChildren();
    $("trace-table").hidden = true;
    $("trace-summary").textContent = e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("trace-form").addEventListener("submit", ev => { ev.preventDefault(); traceSearch(); });
  $("token").value = token();
  $("token-form").addEventListener("submit", ev => {
    ev.preventDefault();
    sessionStorage.setItem("fanout-token", $("token").value.trim());
    setStatus("token set for this tab", false);
    refreshConnectors();
    refreshPipeline();
    refreshCharts();
  });
  $("clear-token").addEventListener("click", () => {
    sessionStorage.removeItem("fanout-token");
    $("token").value = "";
    setStatus("token forgotten", false);
  });
  $("dlq-filter").addEventListener("submit", ev => { ev.preventDefault(); resetReplay(); loadDLQ(false); });
  $("dlq-more").addEventListener("click", () => loadDLQ(true));
  $("pick-all").addEventListener("change", ev => {
    for (const cb of document.querySelectorAll("#dlq input.pick")) cb.checked = ev.target.checked;
    resetReplay();
  });
  for (const id of ["force", "rate", "f-key", "f-class", "f-status", "f-reason", "f-since", "f-until"]) {
    $(id).addEventListener("change", resetReplay);
  }
  $("dry-run").addEventListener("click", dryRun);
  $("confirm-replay").addEventListener("click", confirmReplay);
  $("chart-window").addEventListener("change", refreshCharts);
  refreshConnectors();
  refreshPipeline();
  setInterval(() => { refreshConnectors(); refreshPipeline(); }, 3000);
  setInterval(refreshCharts, 5000);
});
