// lnn serve: a sweep's trials ranked and their cost curves overlaid (GET /api/sweeps/<id>). Loaded after lnn.js,
// whose helpers ($, getJSON, cell, fmt, percent, dollars, show, select) it uses; lnn.js lists the sweeps it finds.
"use strict";

let selectedSweep = null;
let sweepTimer = null;
let sweepChart = null;

function listSweeps(runs) {
  const names = [...new Set(runs.map((run) => run.sweep).filter(Boolean))].sort();
  const list = $("sweep-list");
  list.replaceChildren(...names.map((name) => {
    const link = document.createElement("a");
    link.href = `#sweep=${encodeURIComponent(name)}`;
    link.textContent = name;
    link.className = "sweep-link";
    link.addEventListener("click", (event) => { event.preventDefault(); selectSweep(name); });
    return link;
  }));
  $("sweeps-panel").hidden = !names.length;
}

function selectSweep(name) {
  selectedSweep = name;
  history.replaceState(null, "", `#sweep=${encodeURIComponent(name)}`);
  $("sweep-panel").hidden = false;
  $("sweep-id").textContent = name;
  refreshSweep();
}

async function refreshSweep() {
  clearTimeout(sweepTimer);
  const name = selectedSweep;
  try {
    const sweep = await getJSON(`/api/sweeps/${encodeURIComponent(name)}`);
    if (name !== selectedSweep) return;
    show($("sweep-error"), "");
    drawSweepTable(sweep);
    drawSweepCurves(sweep);
    const counts = Object.entries(sweep.counts).map(([status, count]) => `${count} ${status}`).join(", ");
    $("sweep-line").textContent = `${sweep.trials.length} trials, ${sweep.done ? "done" : "in progress"} (${counts}); ` +
      `${sweep.seconds.toFixed(1)} s` + (sweep.dollars !== null ? `, ${dollars(sweep.dollars)}` : "") +
      (sweep.best ? `; best ${sweep.best}, whose model is the sweep's` : "");
    if (!sweep.done) sweepTimer = setTimeout(refreshSweep, RUNS_EVERY_MS);
  } catch (failure) {
    show($("sweep-error"), failure.message);
  }
}

function metricText(value, name) {
  if (value === null || value === undefined) return "–";
  return name && name.endsWith("accuracy") ? percent(value) : fmt(value);
}

function drawSweepTable(sweep) {
  const label = (name) => name.replace("_", " ");
  const headers = ["trial", ...sweep.varied, "status", "epochs", "cost",
                   ...(sweep.validation_metric ? [label(sweep.validation_metric)] : []), label(sweep.test_metric), "AWS $", "warnings"];
  const head = $("sweep-trials").tHead;
  head.replaceChildren();
  const top = head.insertRow();
  for (const text of headers) {
    const th = document.createElement("th");
    th.textContent = text;
    top.appendChild(th);
  }
  const body = $("sweep-trials").tBodies[0];
  body.replaceChildren();
  for (const trial of sweep.trials) {
    const row = body.insertRow();
    row.dataset.runId = trial.run_id;
    if (trial.run_id === sweep.best) row.classList.add("best");
    cell(row, trial.run_id, "trial");
    for (const name of sweep.varied) {
      const value = trial.varied[name];
      cell(row, typeof value === "number" ? String(Number(value.toPrecision(4))) : String(value), name);
    }
    cell(row, trial.status, "status");
    cell(row, trial.status === "queued" ? "–" : `${trial.epoch}/${trial.epochs}`, "epochs");
    cell(row, fmt(trial.training_cost), "cost");
    if (sweep.validation_metric) cell(row, metricText(trial.validation, sweep.validation_metric), "validation");
    cell(row, metricText(trial.test, sweep.test_metric), "test");
    cell(row, trial.dollars === null ? "–" : dollars(trial.dollars), "AWS $");
    cell(row, trial.warnings ? `⚠ ${trial.warnings}${trial.collapsed ? " collapsed" : ""}` : "", "warnings");
    if (trial.status !== "queued") row.addEventListener("click", () => select(trial.run_id));
  }
}

function drawSweepCurves(sweep) {
  const box = $("sweep-curves");
  const drawn = sweep.trials.filter((trial) => trial.curve.length);
  box.dataset.series = drawn.length;
  if (sweepChart) sweepChart.destroy();
  sweepChart = null;
  box.replaceChildren();
  if (!drawn.length) return;
  const longest = Math.max(...drawn.map((trial) => trial.curve.length));
  const epochs = Array.from({length: longest}, (_, index) => index + 1);
  const data = [epochs, ...drawn.map((trial) => epochs.map((epoch) => {
    const cost = trial.curve[epoch - 1];
    return cost > 0 ? cost : null;
  }))];
  const series = [{label: "epoch"}, ...drawn.map((trial, index) => ({
    label: trial.run_id, width: trial.run_id === sweep.best ? 3 : 1,
    stroke: trial.run_id === sweep.best ? "#111827" : `hsl(${(index * 137) % 360} 65% 50% / 0.75)`,
    value: (plot, value) => fmt(value, 5),
  }))];
  sweepChart = new uPlot({
    width: Math.max(200, box.clientWidth), height: CHART_HEIGHT,
    scales: {x: {time: false}, y: {distr: 3, log: 10}},
    axes: [{label: "epoch"}, {label: "training cost (log scale)", size: 64}],
    series, legend: {show: drawn.length <= 12}, cursor: {drag: {x: false, y: false}},
  }, data, box);
}

const sweepFromHash = new URLSearchParams(location.hash.slice(1)).get("sweep");
if (sweepFromHash) selectSweep(sweepFromHash);
