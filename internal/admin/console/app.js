// fanout console: plain JavaScript over the admin API (/v1). The token
// stays in this tab's sessionStorage and goes out as a bearer token.
"use strict";

const state = { connector: "", cursor: "", lastDryRun: null, lastSelection: "" };

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
  if ($("f-since").value.trim()) p.set("since", $("f-since").value.trim());
  return p;
}

function filterObject() {
  const f = {};
  if ($("f-key").value.trim()) f.key = $("f-key").value.trim();
  if ($("f-class").value) f.error_class = $("f-class").value;
  if ($("f-status").value.trim()) f.http_status = parseInt($("f-status").value.trim(), 10);
  if ($("f-since").value.trim()) f.since = $("f-since").value.trim();
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
      cell(tr, d.key, "key");
      cell(tr, d.id);
      cell(tr, d.version, "num");
      cell(tr, d.error_class);
      cell(tr, d.http_status, "num");
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
  const tbody = $("trace");
  tbody.replaceChildren();
  $("trace-table").hidden = true;
  try {
    const data = await api("GET", path);
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
  for (const id of ["force", "rate", "f-key", "f-class", "f-status", "f-since"]) {
    $(id).addEventListener("change", resetReplay);
  }
  $("dry-run").addEventListener("click", dryRun);
  $("confirm-replay").addEventListener("click", confirmReplay);
  refreshConnectors();
  setInterval(refreshConnectors, 3000);
});
