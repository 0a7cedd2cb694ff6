// The imgclf page: upload photos to POST /predict and draw each one's top classes as
// bars (a photo the model flags unknown shows "none of: <classes>" instead); the report view shows the evaluate stage's metrics and pictures. With a token
// (IMGCLF_SERVE_TOKEN on the server) every call sends it as a bearer token; it is kept
// in this tab's sessionStorage only.
"use strict";

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("imgclf-token") || "";
let info = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

async function call(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) $("token-box").hidden = false;
  return response;
}

async function detail(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
  } catch (e) {
    return response.status + " " + response.statusText;
  }
}

// --- predict view -----------------------------------------------------------------------

function card(file, result) {
  const node = el("div", { class: "card", "data-file": result.path });
  if (file && file.type.startsWith("image/")) {
    node.append(el("img", { src: URL.createObjectURL(file), alt: result.path }));
  }
  node.append(el("div", { class: "name" }, result.path));
  if (result.error) {
    node.append(el("div", { class: "error" }, "Could not use it: " + result.error));
    return node;
  }
  // An unknown photo (its OOD score above the model's threshold) is none of the classes:
  // said so instead of the top class, and no bar is the green answer.
  if (result.unknown) {
    node.classList.add("unknown");
    const names = info ? info.classes : result.top_k.map(([name]) => name);
    node.append(el("div", { class: "predicted none-of" }, "none of: " + names.join(", ")));
    node.append(el("div", { class: "closest muted" }, "closest: " + result.predicted +
      " (score " + Number(result.ood_score).toPrecision(4) + " above " +
      (info ? Number(info.unknown_threshold).toPrecision(4) : "the threshold") + ")"));
  } else {
    node.append(el("div", { class: "predicted" }, result.predicted));
  }
  for (const [name, p] of result.top_k) {
    const fill = el("div", { class: "fill" });
    fill.style.width = (100 * p).toFixed(1) + "%";
    // the first is the answer, unless the photo is none of the classes
    const top = node.querySelector(".bar") || result.unknown ? "bar" : "bar top";
    node.append(el("div", { class: top, "data-class": name },
      el("span", {}, name), el("div", { class: "track" }, fill),
      el("span", { class: "p" }, (100 * p).toFixed(1) + "%")));
  }
  return node;
}

async function predict(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  $("status").textContent = "Classifying " + files.length + " photo(s)…";
  const k = info ? info.classes.length : 3;
  let response;
  try {
    response = await call("/predict?top_k=" + Math.min(k, 5), { method: "POST", body: form });
  } catch (e) {
    $("status").textContent = "The server did not answer: " + e;
    return;
  }
  if (response.status !== 200 && response.status !== 422) {
    $("status").textContent = "Refused: " + (await detail(response));
    return;
  }
  const results = await response.json();
  const byName = new Map(files.map((f) => [f.name, f]));
  const done = results.filter((r) => !r.error).length;
  $("status").textContent = done + " of " + results.length + " classified.";
  for (const r of results.reverse()) $("results").prepend(card(byName.get(r.path), r));
  remember(files);  // the "why" toggle's heatmaps (below)
}

function setUpDrop() {
  const drop = $("drop");
  $("file-input").addEventListener("change", (e) => {
    predict(Array.from(e.target.files));
    e.target.value = "";
  });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    predict(Array.from(e.dataTransfer.files));
  });
}

// --- why it decided: the heatmap overlay (POST /explain), off by default --------------

const uploaded = new Map();  // file name -> the File, for heatmaps asked for later

function remember(files) {
  for (const f of files) uploaded.set(f.name, f);
  explainCards();
}

// With the toggle on: ask /explain for the cards that have no heatmap yet and put it
// on them (the page then shows it instead of the plain photo); off: the photos again.
async function explainCards() {
  const on = $("explain").checked;
  document.body.classList.toggle("explaining", on);
  const pending = Array.from(document.querySelectorAll(".card")).filter((c) =>
    on && c.querySelector(".predicted") && !c.dataset.explained && uploaded.has(c.dataset.file));
  if (!pending.length) return;
  const form = new FormData();
  for (const c of pending) {
    c.dataset.explained = "asked";
    form.append("files", uploaded.get(c.dataset.file), c.dataset.file);
  }
  const response = await call("/explain", { method: "POST", body: form });
  const answers = response.ok || response.status === 422 ? await response.json() : null;
  const why = answers ? "" : await detail(response);
  pending.forEach((c, i) => {
    const a = answers ? answers[i] : { error: why };
    const shown = a.overlay
      ? el("img", { class: "overlay", src: a.overlay, alt: "heatmap of " + a.predicted })
      : el("div", { class: "overlay-error" }, "No heatmap: " + a.error);
    c.querySelector(".name").before(shown);
    c.dataset.explained = a.overlay ? "1" : "failed";
  });
}

// --- report view ------------------------------------------------------------------------

const METRICS = [["accuracy", "Accuracy"], ["precision", "Precision (macro)"],
  ["recall", "Recall (macro)"], ["f1", "F1 (macro)"], ["auroc", "AUROC (macro)"],
  ["ece", "Expected calibration error"], ["loss", "Loss"], ["n", "Test images"]];
const PICTURES = [["confusion.png", "Confusion matrix"],
  ["calibration.png", "Reliability diagram"], ["misclassified.png", "Most confident mistakes"]];

const COUNTS = new Set(["n", "support"]);  // whole numbers; every other metric a fraction

function fmt(key, x) {
  return typeof x === "number" && !COUNTS.has(key) ? x.toFixed(4) : String(x);
}

function metricsTables(m) {
  const overall = el("table", { id: "metrics-table" },
    el("tr", {}, el("th", {}, "Test split"), el("th", {}, "")));
  for (const [key, label] of METRICS) {
    if (!(key in m)) continue;
    overall.append(el("tr", {}, el("td", {}, label), el("td", {}, fmt(key, m[key]))));
  }
  const per = el("table", {}, el("tr", {}, ...["Class", "Precision", "Recall", "F1", "AUROC",
    "Images"].map((h) => el("th", {}, h))));
  for (const [name, c] of Object.entries(m.per_class || {})) {
    per.append(el("tr", {}, el("td", {}, name), ...["precision", "recall", "f1", "auroc",
      "support"].map((k) => el("td", {}, k in c ? fmt(k, c[k]) : "-"))));
  }
  return [overall, per];
}

async function showReport() {
  $("report-status").textContent = "Loading the report…";
  const response = await call("/report");
  if (!response.ok) {
    $("report-status").textContent = "Cannot show the report: " + (await detail(response));
    return;
  }
  const report = await response.json();
  $("report-status").textContent = "";
  $("report-missing").replaceChildren(...report.missing.map((m) =>
    el("div", { class: "missing" }, "Not available: " + m)));
  $("report-metrics").replaceChildren(...(report.metrics ? metricsTables(report.metrics) : []));
  const figures = [];
  for (const [name, caption] of PICTURES) {
    if (!report.pictures[name]) continue;
    // fetched with the token, then shown from memory (an <img src> cannot send headers)
    const picture = await call("/report/" + name);
    if (!picture.ok) continue;
    const img = el("img", { alt: caption, src: URL.createObjectURL(await picture.blob()) });
    figures.push(el("figure", {}, el("figcaption", {}, caption), img));
  }
  $("report-pictures").replaceChildren(...figures);
}

// --- start ------------------------------------------------------------------------------

function show(view) {
  for (const name of ["predict", "report"]) {
    $("view-" + name).hidden = name !== view;
    $("tab-" + name).classList.toggle("active", name === view);
  }
  if (view === "report") showReport();
}

async function loadInfo() {
  const response = await call("/info");
  if (!response.ok) {
    $("model-info").textContent = response.status === 401 ? "token needed" : "";
    return;
  }
  info = await response.json();
  $("model-info").textContent = info.model + " · " + info.classes.join(", ") + " · " +
    info.image_size + " px";
}

window.addEventListener("DOMContentLoaded", async () => {
  setUpDrop();
  $("tab-predict").addEventListener("click", () => show("predict"));
  $("tab-report").addEventListener("click", () => show("report"));
  $("explain").addEventListener("change", explainCards);
  $("token-save").addEventListener("click", () => {
    token = $("token").value.trim();
    sessionStorage.setItem("imgclf-token", token);
    $("token-box").hidden = true;
    loadInfo();
  });
  const health = await (await fetch("/healthz")).json();
  if (health.token_required && !token) $("token-box").hidden = false;
  await loadInfo();
  document.body.dataset.ready = "1";
});
