// lnn serve: the page's script, served from the package (no CDN, no framework). It polls the JSON API and draws
// the cost curve with uPlot (static/vendor/uPlot.iife.min.js, a copy of npm's uplot: see lnn_cli/web/__init__.py).
"use strict";

const RUNS_EVERY_MS = 3000;   // the runs table
const RUN_EVERY_MS = 1000;    // the selected run, while it is running
const CHART_HEIGHT = 280;
const POINTS_UP_TO = 60;      // epochs drawn as dots up to this many; a line only above
let selected = null;
let runTimer = null;
let latestRun = null;  // the selected run's newest poll, and when it was sent: {run, sentAt}
let curve = null;      // the selected run's epochs so far: {epochs, costs, testCosts}; polls fetch only later ones
let chart = null;      // the uPlot instance, and whether its cost scale is logarithmic: {plot, log}

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

function cell(row, text, label) {
  const td = document.createElement("td");
  td.textContent = text;
  if (label) td.dataset.label = label;
  row.appendChild(td);
  return td;
}

function fmt(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toPrecision(digits || 4);
}

// A fraction as a percentage with as many decimals as keep it off 100 % (and 0 %) unless it is exactly that.
function percent(fraction) {
  if (fraction === 0 || fraction === 1) return `${fraction * 100} %`;
  for (let decimals = 1; decimals < 10; decimals++) {
    const text = (fraction * 100).toFixed(decimals);
    if (Number(text) > 0 && Number(text) < 100) return `${text} %`;
  }
  return `${fraction * 100} %`;
}

function dollars(value) {
  return value >= 1 ? `$${value.toFixed(2)}` : `$${Number(value.toPrecision(3))}`;
}

const COLUMNS = ["run", "status", "epoch", "cost", "created"];

async function refreshRuns() {
  const sentAt = performance.now();
  try {
    const body = await getJSON("/api/runs");
    const tbody = $("runs").tBodies[0];
    tbody.replaceChildren();
    if (!body.runs.length) {
      const row = tbody.insertRow();
      cell(row, "no runs yet; start one with `lnn start`").colSpan = COLUMNS.length;
    }
    for (const run of body.runs) {
      const row = tbody.insertRow();
      row.dataset.runId = run.run_id;
      if (run.run_id === selected) row.classList.add("selected");
      for (const label of COLUMNS) cell(row, "", label);
      // a poll of the selected run sent after this list was is newer: the row keeps it
      const newer = latestRun && latestRun.run.run_id === run.run_id && latestRun.sentAt > sentAt;
      fillRow(row, newer ? latestRun.run : run);
      row.addEventListener("click", () => select(run.run_id));
    }
    listSweeps(body.runs);
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
  cost.textContent = fmt(run.training_cost);
  created.textContent = (run.created_at || "").replace("T", " ").slice(5, 16);
  created.title = run.created_at || "";
}

function select(runId) {
  selected = runId;
  latestRun = null;
  curve = null;
  history.replaceState(null, "", `#run=${encodeURIComponent(runId)}`);
  for (const row of $("runs").tBodies[0].rows) row.classList.toggle("selected", row.dataset.runId === runId);
  $("run-panel").hidden = false;
  $("run-id").textContent = runId;
  for (const id of ["run-status", "run-line", "model-line", "predictor", "curve-note"]) $(id).textContent = "";
  $("run-status").className = "status";
  for (const id of ["run-cost", "run-warnings", "prediction", "predict-error", "run-error"]) show($(id), "");
  $("figures").replaceChildren();
  drawCurve();
  show($("run-loading"), "loading…");
  refreshRun();
}

async function refreshRun() {
  clearTimeout(runTimer);
  const runId = selected;
  if (!runId) return;
  const sentAt = performance.now();
  const after = curve ? curve.epochs.length : 0;
  try {
    const run = await getJSON(`/api/runs/${encodeURIComponent(runId)}?after=${after}`);
    if (runId !== selected || (curve ? curve.epochs.length : 0) !== after) return;  // another run, or a newer poll
    latestRun = {run, sentAt};
    show($("run-loading"), "");
    show($("run-error"), "");
    const row = [...$("runs").tBodies[0].rows].find((candidate) => candidate.dataset.runId === runId);
    if (row) fillRow(row, run);
    const status = $("run-status");
    status.textContent = run.status;
    status.className = `status ${run.status}`;
    $("run-line").textContent = runLine(run);
    drawCost(run.cost);
    drawWarnings((run.final && run.final.warnings) || []);
    addEpochs(run.curve);
    drawCurve();
    drawFigures(run);
    $("model-line").textContent = modelLine(run);
    const predictor = $("predictor");
    predictor.textContent = run.predictor.label;
    predictor.title = run.predictor.title;
    if (run.status === "running") runTimer = setTimeout(refreshRun, RUN_EVERY_MS);
  } catch (failure) {
    show($("run-loading"), "");
    show($("run-error"), failure.message);
    runTimer = setTimeout(refreshRun, RUN_EVERY_MS * 3);
  }
}

function runLine(run) {
  const parts = [run.status === "stopped" ? `stopped after epoch ${run.epoch} of ${run.epochs}` : `epoch ${run.epoch}/${run.epochs}`,
                 `granularity ${run.granularity}`];
  if (run.training_cost !== null) parts.push(`cost ${fmt(run.training_cost, 6)}`);
  if (run.final.seconds !== undefined) parts.push(`${run.final.seconds.toFixed(1)} s`, `${run.final.invocations} invocations`);
  if (run.reason) parts.push(`reason: ${run.reason}`);
  return parts.join(", ");
}

function modelLine(run) {
  if (!run.model) {
    return run.status === "running" ? "no model yet: predict after the run succeeds" : `run ${run.status}: it has no model`;
  }
  const from = run.model_epoch ? `model from epoch ${run.model_epoch}: ` : "model: ";
  return from + `${run.model.features} features` +
    (run.model.example_shape ? `, images ${run.model.example_shape.join("×")}` : "") +
    (run.model.classes ? `, classes ${run.model.classes.join(", ")}` : "") + `, ${run.model.output} output`;
}

function drawCost(cost) {
  const line = $("run-cost");
  if (!cost || typeof cost.dollars !== "number") return show(line, "");
  const figure = document.createElement("strong");
  figure.textContent = dollars(cost.dollars);
  line.replaceChildren(figure, cost.label ? ` — ${cost.label}` : "");
  line.hidden = false;
}

function drawWarnings(warnings) {
  const block = $("run-warnings");
  block.replaceChildren(...warnings.map((sentence) => {
    const line = document.createElement("p");
    line.textContent = sentence;
    return line;
  }));
  block.hidden = !warnings.length;
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

// The epochs a poll brought: the server sends only those after the last one the page has.
function addEpochs(points) {
  curve = curve || {epochs: [], costs: [], testCosts: []};
  for (const point of points) {
    if (point.epoch !== curve.epochs.length + 1) continue;  // already here (a retried poll)
    curve.epochs.push(point.epoch);
    curve.costs.push(point.cost);
    curve.testCosts.push(point.test_cost);
  }
}

function drawCurve() {
  const box = $("curve");
  const epochs = curve ? curve.epochs : [];
  const log = $("log-scale").checked;
  const tested = curve ? curve.testCosts.filter((cost) => cost !== null).length : 0;
  box.dataset.points = epochs.length;
  box.dataset.testPoints = tested;
  if (!epochs.length) {
    if (chart) chart.plot.destroy();
    chart = null;
    box.replaceChildren();
    $("curve-note").textContent = curve ? "no epoch committed yet" : "";
    return;
  }
  $("curve-note").textContent = `epochs 1–${epochs.length}`;
  const positive = (costs) => (log ? costs.map((cost) => (cost > 0 ? cost : null)) : costs);
  const data = [epochs, positive(curve.costs), positive(curve.testCosts)];
  const dots = epochs.length <= POINTS_UP_TO;
  if (chart && chart.log === log && chart.dots === dots && box.contains(chart.plot.root)) {
    chart.plot.setData(data);
  } else {
    if (chart) chart.plot.destroy();
    box.replaceChildren();
    chart = {log, dots, plot: new uPlot(chartOptions(box.clientWidth, log, dots, tested), data, box)};
  }
}

function chartOptions(width, log, dots, tested) {
  return {
    width: Math.max(200, width),
    height: CHART_HEIGHT,
    scales: {
      x: {time: false, range: (plot, min, max) => (min === max ? [min - 0.5, max + 0.5] : [min, max])},
      y: log ? {distr: 3, log: 10} : {},
    },
    axes: [
      {label: "epoch", incrs: [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 50000]},
      {label: log ? "cost (log scale)" : "cost", size: 64},
    ],
    series: [
      {label: "epoch"},
      {label: "training cost", stroke: "#2563eb", width: 2, points: {show: dots, size: 5},
       value: (plot, value) => fmt(value, 6)},
      {label: "test cost", stroke: "#ea7317", width: 2, dash: [6, 4], spanGaps: true, points: {show: true, size: 6},
       value: (plot, value) => fmt(value, 6), show: tested > 0},
    ],
    cursor: {drag: {x: false, y: false}},
    hooks: {draw: [(plot) => {  // the drawn epoch range, for the tests (uPlot sets its scales when it draws)
      plot.root.parentNode.dataset.xMin = plot.scales.x.min;
      plot.root.parentNode.dataset.xMax = plot.scales.x.max;
    }]},
  };
}

window.addEventListener("resize", () => {
  if (chart) chart.plot.setSize({width: Math.max(200, $("curve").clientWidth), height: CHART_HEIGHT});
});

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
      : `class ${result.class} (label ${result.label}), probability ${percent(result.probability)}`);
    const predictor = $("predictor");
    predictor.textContent = `${result.input}, ${result.source}` + (result.note ? ` (${result.note})` : "");
    predictor.title = result.source_title || "";
  } catch (failure) {
    show($("predict-error"), failure.message);
  } finally {
    $("predict-button").disabled = false;
  }
}

$("predict-form").addEventListener("submit", predict);
$("log-scale").addEventListener("change", drawCurve);
const fromHash = new URLSearchParams(location.hash.slice(1)).get("run");
if (fromHash) select(fromHash);
refreshRuns();
setInterval(refreshRuns, RUNS_EVERY_MS);
