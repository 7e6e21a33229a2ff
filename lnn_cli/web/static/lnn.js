// lnn serve: the page's script, served from the package (no CDN, no framework). It polls the JSON API and
// draws the cost curve as an inline SVG.
"use strict";

const RUNS_EVERY_MS = 3000;   // the runs table
const RUN_EVERY_MS = 1000;    // the selected run, while it is running
const SVG = "http://www.w3.org/2000/svg";
let selected = null;
let runTimer = null;
let latestRun = null;  // the selected run's newest poll, and when it was sent: {run, sentAt}

const $ = (id) => document.getElementById(id);

async function getJSON(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (failure) {
    throw new Error("lnn serve does not answer; is it still running?");
  }
  let body = null;
  try { body = await response.json(); } catch (failure) { /* not JSON */ }
  if (!response.ok) throw new Error((body && body.error) || `the server answered ${response.status}`);
  return body;
}

function show(element, text) {
  element.textContent = text || "";
  element.hidden = !text;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function fmt(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toPrecision(digits || 4);
}

async function refreshRuns() {
  const sentAt = performance.now();
  try {
    const body = await getJSON("/api/runs");
    const tbody = $("runs").tBodies[0];
    tbody.replaceChildren();
    if (!body.runs.length) {
      const row = tbody.insertRow();
      cell(row, "no runs yet; start one with `lnn start`").colSpan = 5;
    }
    for (const run of body.runs) {
      const row = tbody.insertRow();
      row.dataset.runId = run.run_id;
      if (run.run_id === selected) row.classList.add("selected");
      for (let i = 0; i < 5; i++) cell(row, "");
      // a poll of the selected run sent after this list was is newer: the row keeps it
      const newer = latestRun && latestRun.run.run_id === run.run_id && latestRun.sentAt > sentAt;
      fillRow(row, newer ? latestRun.run : run);
      row.addEventListener("click", () => select(run.run_id));
    }
    show($("runs-error"), "");
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    if (!selected && body.runs.length && !location.hash) select(body.runs[0].run_id);
  } catch (failure) {
    show($("runs-error"), failure.message);
  }
}

// One row of the runs table; the selected run's row is also refilled from each poll of that run, so the
// table never lags behind the panel.
function fillRow(row, run) {
  const [name, status, epoch, cost, created] = row.cells;
  name.textContent = run.run_id;
  const badge = document.createElement("span");
  badge.className = `status ${run.status}`;
  badge.textContent = run.status;
  status.replaceChildren(badge);
  epoch.textContent = `${run.epoch}/${run.epochs}`;
  cost.textContent = fmt(run.cost);
  created.textContent = (run.created_at || "").replace("T", " ").slice(5, 16);
  created.title = run.created_at || "";
}

function select(runId) {
  selected = runId;
  latestRun = null;
  history.replaceState(null, "", `#run=${encodeURIComponent(runId)}`);
  for (const row of $("runs").tBodies[0].rows) row.classList.toggle("selected", row.dataset.runId === runId);
  $("run-panel").hidden = false;
  $("run-id").textContent = runId;
  for (const id of ["run-status", "run-line", "model-line", "predict-source"]) $(id).textContent = "";
  $("curve").replaceChildren();
  $("figures").replaceChildren();
  show($("prediction"), "");
  show($("predict-error"), "");
  refreshRun();
}

async function refreshRun() {
  clearTimeout(runTimer);
  const runId = selected;
  if (!runId) return;
  const sentAt = performance.now();
  try {
    const run = await getJSON(`/api/runs/${encodeURIComponent(runId)}`);
    if (runId !== selected) return;
    latestRun = {run, sentAt};
    show($("run-error"), "");
    const row = [...$("runs").tBodies[0].rows].find((candidate) => candidate.dataset.runId === runId);
    if (row) fillRow(row, run);
    const status = $("run-status");
    status.textContent = run.status;
    status.className = `status ${run.status}`;
    const parts = [`epoch ${run.epoch}/${run.epochs}`, `granularity ${run.granularity}`];
    if (run.cost !== null) parts.push(`cost ${fmt(run.cost, 6)}`);
    if (run.final.seconds !== undefined) parts.push(`${run.final.seconds.toFixed(1)} s`, `${run.final.invocations} invocations`);
    if (run.reason) parts.push(`reason: ${run.reason}`);
    $("run-line").textContent = parts.join(", ");
    drawCurve(run.curve, run.epochs);
    drawFigures(run);
    $("model-line").textContent = run.model
      ? `model: ${run.model.features} features` +
        (run.model.example_shape ? `, images ${run.model.example_shape.join("×")}` : "") +
        (run.model.classes ? `, classes ${run.model.classes.join(", ")}` : "") + `, ${run.model.output} output`
      : "no model yet: predict after the run succeeds";
    $("predict-source").textContent = `predictions: ${run.predictor}`;
    if (run.status === "running") runTimer = setTimeout(refreshRun, RUN_EVERY_MS);
  } catch (failure) {
    show($("run-error"), failure.message);
    runTimer = setTimeout(refreshRun, RUN_EVERY_MS * 3);
  }
}

function drawFigures(run) {
  const list = $("figures");
  list.replaceChildren();
  const rows = [...run.figures];
  if (run.final.cost !== undefined) rows.unshift(["final cost", fmt(run.final.cost, 6)]);
  if (!rows.length) {
    const dt = document.createElement("dt");
    dt.className = "muted";
    dt.textContent = run.status === "running" ? "when the run ends" : "none";
    list.appendChild(dt);
  }
  for (const [label, text] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = text;
    list.append(dt, dd);
  }
}

function svg(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

function drawCurve(curve, epochs) {
  const chart = $("curve");
  chart.replaceChildren();
  const W = 640, H = 280, left = 56, right = 16, top = 14, bottom = 34;
  const train = curve.filter((p) => p.cost !== null).map((p) => [p.epoch, p.cost]);
  const test = curve.filter((p) => p.test_cost !== null).map((p) => [p.epoch, p.test_cost]);
  $("test-key").hidden = !test.length;
  const values = [...train, ...test].map((p) => p[1]);
  if (!values.length) {
    svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}, chart).textContent = "no epoch committed yet";
    return;
  }
  let low = Math.min(...values), high = Math.max(...values);
  if (high - low < 1e-12) { low -= 0.5; high += 0.5; }
  const pad = (high - low) * 0.05;
  low = Math.max(0, low - pad); high += pad;
  const lastEpoch = Math.max(epochs || 1, ...train.map((p) => p[0]), 2);
  const x = (epoch) => left + (epoch - 1) / (lastEpoch - 1) * (W - left - right);
  const y = (cost) => top + (high - cost) / (high - low) * (H - top - bottom);
  for (let i = 0; i <= 4; i++) {
    const value = low + (high - low) * i / 4;
    svg("line", {class: "grid", x1: left, x2: W - right, y1: y(value), y2: y(value)}, chart);
    svg("text", {x: left - 6, y: y(value) + 4, "text-anchor": "end"}, chart).textContent = value.toPrecision(3);
  }
  const step = Math.max(1, Math.ceil(lastEpoch / 10));
  for (let epoch = 1; epoch <= lastEpoch; epoch += step) {
    svg("text", {x: x(epoch), y: H - bottom + 16, "text-anchor": "middle"}, chart).textContent = String(epoch);
  }
  svg("text", {x: (W + left) / 2, y: H - 4, "text-anchor": "middle"}, chart).textContent = "epoch";
  svg("line", {class: "axis", x1: left, x2: left, y1: top, y2: H - bottom}, chart);
  svg("line", {class: "axis", x1: left, x2: W - right, y1: H - bottom, y2: H - bottom}, chart);
  for (const [points, kind] of [[train, "train"], [test, "test"]]) {
    if (!points.length) continue;
    svg("polyline", {class: `line ${kind}`, points: points.map((p) => `${x(p[0])},${y(p[1])}`).join(" ")}, chart);
    for (const [epoch, cost] of points) {
      const dot = svg("circle", {class: kind, cx: x(epoch), cy: y(cost), r: 3, "data-epoch": epoch}, chart);
      svg("title", {}, dot).textContent = `epoch ${epoch}: ${kind} cost ${cost}`;
    }
  }
}

async function predict(event) {
  event.preventDefault();
  show($("prediction"), "");
  show($("predict-error"), "");
  const form = new FormData();
  const file = $("image").files[0];
  if (file) form.append("image", file);
  form.append("row", $("row").value);
  $("predict-button").disabled = true;
  try {
    const result = await getJSON(`/api/runs/${encodeURIComponent(selected)}/predict`, {method: "POST", body: form});
    show($("prediction"), result.kind === "regression"
      ? `predicted value${result.values.length > 1 ? "s" : ""}: ${result.values.map((v) => fmt(v, 6)).join(", ")}`
      : `class ${result.class} (label ${result.label}), probability ${(100 * result.probability).toFixed(1)}%`);
    $("predict-source").textContent = `${result.input}, ${result.source}` + (result.note ? ` (${result.note})` : "");
  } catch (failure) {
    show($("predict-error"), failure.message);
  } finally {
    $("predict-button").disabled = false;
  }
}

$("predict-form").addEventListener("submit", predict);
const fromHash = new URLSearchParams(location.hash.slice(1)).get("run");
if (fromHash) select(fromHash);
refreshRuns();
setInterval(refreshRuns, RUNS_EVERY_MS);
